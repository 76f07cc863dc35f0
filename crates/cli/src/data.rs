//! `research data`: training data preparation (REFERENCE.md §6).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use research::eval::{read_questions, write_training_jsonl, write_training_parquet, TrainingRow};

#[derive(Subcommand)]
pub enum DataCommand {
    /// MuSiQue (FlashRAG jsonl) to ReSearch's training parquet: train.parquet from train,
    /// test.parquet from dev, each beside a .jsonl of the same rows.
    PrepareMusique(PrepareMusiqueArgs),
}

#[derive(Args)]
pub struct PrepareMusiqueArgs {
    /// Folder with MuSiQue's train.jsonl[.zst] and dev.jsonl[.zst] (FlashRAG format).
    #[arg(long, default_value = "data/eval/musique")]
    input: PathBuf,
    /// Output folder (created); train.parquet, test.parquet, train.jsonl and test.jsonl are replaced.
    #[arg(long)]
    out: PathBuf,
}

fn split_file(dir: &Path, split: &str) -> Result<PathBuf> {
    for name in [format!("{split}.jsonl"), format!("{split}.jsonl.zst")] {
        let p = dir.join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "{}: no {split}.jsonl or {split}.jsonl.zst (the repository ships MuSiQue in data/eval/musique)",
        dir.display()
    )
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::PrepareMusique(a) => {
            std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
            for (split, name) in [("train", "train"), ("dev", "test")] {
                let input = split_file(&a.input, split)?;
                let rows: Vec<TrainingRow> = read_questions(&input)?
                    .iter()
                    .map(|q| TrainingRow::from_question(q, "musique"))
                    .collect();
                let parquet = a.out.join(format!("{name}.parquet"));
                write_training_parquet(&parquet, &rows)?;
                write_training_jsonl(&a.out.join(format!("{name}.jsonl")), &rows)?;
                println!("{}: {} rows from {}", parquet.display(), rows.len(), input.display());
            }
            Ok(())
        }
    }
}
