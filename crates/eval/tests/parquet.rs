//! Reading a training parquet written by pyarrow (not by us): the committed fixture was made by
//! `tests/check_training_parquet.py --fixture` (pyarrow 26) from the shipped MuSiQue dev set.

use std::path::PathBuf;

use research_eval::parquet::{ExtraInfo, RewardModel};
use research_eval::{read_questions, read_training_parquet, TrainingRow};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn pyarrow_written_file_reads() {
    let rows = read_training_parquet(&root().join("tests/fixtures/pyarrow_training_rows.parquet")).unwrap();
    let dev = read_questions(&root().join("../../data/eval/musique/dev.jsonl.zst")).unwrap();
    let mut want: Vec<TrainingRow> = dev[..5]
        .iter()
        .map(|q| TrainingRow::from_question(q, "musique"))
        .collect();
    let hand = |id: &str, q: &str, answers: &[&str]| TrainingRow {
        data_source: "musique".into(),
        question: q.into(),
        ability: "qa".into(),
        reward_model: RewardModel {
            style: "rule".into(),
            ground_truth: answers.iter().map(|a| a.to_string()).collect(),
        },
        extra_info: ExtraInfo { id: id.into() },
    };
    want.push(hand("x_0", "no answers", &[]));
    want.push(hand("x_1", "Où est 多?", &["a", "b c"]));
    assert_eq!(rows, want);
}
