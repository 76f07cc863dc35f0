//! ReSearch's training parquet (REFERENCE.md §6), read and written without arrow.
//!
//! One row per question:
//! `{"data_source": "musique", "question": q, "ability": "qa", "reward_model": {"style": "rule",
//! "ground_truth": [answers]}, "extra_info": {"id": id}}`.
//!
//! Files are written with the schema pyarrow/pandas give that data (every field optional, the
//! answers a standard 3-level `LIST` of `element` strings), snappy-compressed, one row group.
//! Reading goes through parquet's record API, so files written by pyarrow (legacy `item` list
//! names, extra columns such as `__index_level_0__`, extra `extra_info` fields) read too; columns
//! this schema does not name are ignored. Compression codecs other than snappy are not compiled in
//! (to keep the build small); such a file is a clear error.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::{Field, ListAccessor, Row};
use parquet::schema::parser::parse_message_type;

use crate::dataset::Question;
use crate::EvalError;

/// How the rule reward is computed (`{"style": "rule", "ground_truth": [...]}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RewardModel {
    /// Always `"rule"` in ReSearch's data.
    pub style: String,
    /// Accepted answers.
    pub ground_truth: Vec<String>,
}

/// `extra_info` of a row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExtraInfo {
    /// The question's id in its FlashRAG file.
    pub id: String,
}

/// One row of ReSearch's training parquet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrainingRow {
    /// Dataset name, e.g. `"musique"`.
    pub data_source: String,
    /// The raw question (the prompt template is applied at rollout time).
    pub question: String,
    /// Always `"qa"`.
    pub ability: String,
    /// Reward style and golden answers.
    pub reward_model: RewardModel,
    /// The question id.
    pub extra_info: ExtraInfo,
}

impl TrainingRow {
    /// The row ReSearch's data preparation makes from a FlashRAG question.
    pub fn from_question(q: &Question, data_source: &str) -> Self {
        Self {
            data_source: data_source.to_string(),
            question: q.question.clone(),
            ability: "qa".to_string(),
            reward_model: RewardModel {
                style: "rule".to_string(),
                ground_truth: q.golden_answers.clone(),
            },
            extra_info: ExtraInfo { id: q.id.clone() },
        }
    }
}

/// The parquet schema written (as pyarrow writes these rows from pandas).
pub const SCHEMA: &str = "message schema {
  OPTIONAL BYTE_ARRAY data_source (STRING);
  OPTIONAL BYTE_ARRAY question (STRING);
  OPTIONAL BYTE_ARRAY ability (STRING);
  OPTIONAL group reward_model {
    OPTIONAL BYTE_ARRAY style (STRING);
    OPTIONAL group ground_truth (LIST) {
      REPEATED group list {
        OPTIONAL BYTE_ARRAY element (STRING);
      }
    }
  }
  OPTIONAL group extra_info {
    OPTIONAL BYTE_ARRAY id (STRING);
  }
}";

fn pq_err(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Io(path.to_path_buf(), format!("parquet: {e}"))
}

/// Writes rows to `path` (created or replaced).
pub fn write_training_parquet(path: &Path, rows: &[TrainingRow]) -> Result<(), EvalError> {
    let schema = Arc::new(parse_message_type(SCHEMA).expect("the schema literal parses"));
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let file = File::create(path).map_err(|e| EvalError::Io(path.to_path_buf(), e.to_string()))?;
    let mut writer = SerializedFileWriter::new(file, schema, props).map_err(|e| pq_err(path, e))?;
    let bytes = |s: &str| ByteArray::from(s.as_bytes().to_vec());
    // (values, definition levels, repetition levels) per leaf column, in schema order.
    let n = rows.len();
    let flat = |f: &dyn Fn(&TrainingRow) -> &str, def: i16| {
        (
            rows.iter().map(|r| bytes(f(r))).collect::<Vec<_>>(),
            vec![def; n],
            vec![0i16; n],
        )
    };
    let mut answers = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        if r.reward_model.ground_truth.is_empty() {
            // reward_model and ground_truth defined, the list has no element.
            answers.1.push(2);
            answers.2.push(0);
        }
        for (i, a) in r.reward_model.ground_truth.iter().enumerate() {
            answers.0.push(bytes(a));
            answers.1.push(4);
            answers.2.push(if i == 0 { 0 } else { 1 });
        }
    }
    let columns = [
        flat(&|r| &r.data_source, 1),
        flat(&|r| &r.question, 1),
        flat(&|r| &r.ability, 1),
        flat(&|r| &r.reward_model.style, 2),
        answers,
        flat(&|r| &r.extra_info.id, 2),
    ];
    let mut group = writer.next_row_group().map_err(|e| pq_err(path, e))?;
    for (values, def, rep) in &columns {
        let mut col = group
            .next_column()
            .map_err(|e| pq_err(path, e))?
            .expect("six leaf columns in the schema");
        col.typed::<ByteArrayType>()
            .write_batch(values, Some(def), Some(rep))
            .map_err(|e| pq_err(path, e))?;
        col.close().map_err(|e| pq_err(path, e))?;
    }
    group.close().map_err(|e| pq_err(path, e))?;
    writer.close().map_err(|e| pq_err(path, e))?;
    Ok(())
}

/// Reads every row of a training parquet file; a row missing a field (or with a field of the
/// wrong type) is an error naming the file, the row (from 1) and the field.
pub fn read_training_parquet(path: &Path) -> Result<Vec<TrainingRow>, EvalError> {
    let file = File::open(path).map_err(|e| EvalError::Io(path.to_path_buf(), e.to_string()))?;
    let reader = SerializedFileReader::new(file).map_err(|e| pq_err(path, e))?;
    let iter = reader.get_row_iter(None).map_err(|e| pq_err(path, e))?;
    let mut out = Vec::new();
    for (i, row) in iter.enumerate() {
        let row = row.map_err(|e| pq_err(path, format!("row {}: {e}", i + 1)))?;
        let bad = |message: String| EvalError::Record {
            path: path.to_path_buf(),
            row: i + 1,
            message,
        };
        out.push(row_from_record(&row).map_err(bad)?);
    }
    Ok(out)
}

fn field<'a>(row: &'a Row, name: &str, parent: &str) -> Result<&'a Field, String> {
    row.get_column_iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, f)| f)
        .ok_or_else(|| format!("no field `{parent}{name}`"))
}

fn string(row: &Row, name: &str, parent: &str) -> Result<String, String> {
    match field(row, name, parent)? {
        Field::Str(s) => Ok(s.clone()),
        other => Err(format!("field `{parent}{name}`: expected a string, found {other:?}")),
    }
}

fn group<'a>(row: &'a Row, name: &str) -> Result<&'a Row, String> {
    match field(row, name, "")? {
        Field::Group(g) => Ok(g),
        other => Err(format!("field `{name}`: expected a struct, found {other:?}")),
    }
}

fn row_from_record(row: &Row) -> Result<TrainingRow, String> {
    let rm = group(row, "reward_model")?;
    let answers = match field(rm, "ground_truth", "reward_model.")? {
        Field::ListInternal(list) => (0..list.len())
            .map(|k| {
                list.get_string(k)
                    .cloned()
                    .map_err(|e| format!("field `reward_model.ground_truth[{k}]`: expected a string ({e})"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => {
            return Err(format!(
                "field `reward_model.ground_truth`: expected a list of strings, found {other:?}"
            ))
        }
    };
    Ok(TrainingRow {
        data_source: string(row, "data_source", "")?,
        question: string(row, "question", "")?,
        ability: string(row, "ability", "")?,
        reward_model: RewardModel {
            style: string(rm, "style", "reward_model.")?,
            ground_truth: answers,
        },
        extra_info: ExtraInfo {
            id: string(group(row, "extra_info")?, "id", "extra_info.")?,
        },
    })
}

/// Writes rows as JSON lines (the same objects as the parquet rows).
pub fn write_training_jsonl(path: &Path, rows: &[TrainingRow]) -> Result<(), EvalError> {
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r).expect("serialisable"));
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| EvalError::Io(path.to_path_buf(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, q: &str, answers: &[&str]) -> TrainingRow {
        TrainingRow {
            data_source: "musique".into(),
            question: q.into(),
            ability: "qa".into(),
            reward_model: RewardModel {
                style: "rule".into(),
                ground_truth: answers.iter().map(|s| s.to_string()).collect(),
            },
            extra_info: ExtraInfo { id: id.into() },
        }
    }

    #[test]
    fn rows_round_trip_including_empty_and_unicode_answers() {
        let rows = vec![
            row("train_0", "Who wrote Dune?", &["Frank Herbert"]),
            row("train_1", "Où est Paris ?", &["France", "la France", ""]),
            row("train_2", "no answers", &[]),
            row("", "", &["多"]),
        ];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        write_training_parquet(&p, &rows).unwrap();
        assert_eq!(&std::fs::read(&p).unwrap()[..4], b"PAR1");
        assert_eq!(read_training_parquet(&p).unwrap(), rows);
    }

    #[test]
    fn from_question_is_the_reference_row() {
        let q: Question = serde_json::from_str(
            r#"{"id": "train_7", "question": "Q?", "golden_answers": ["a", "b"], "metadata": {"x": 1}}"#,
        )
        .unwrap();
        let v = serde_json::to_value(TrainingRow::from_question(&q, "musique")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"data_source": "musique", "question": "Q?", "ability": "qa",
                "reward_model": {"style": "rule", "ground_truth": ["a", "b"]}, "extra_info": {"id": "train_7"}})
        );
    }

    #[test]
    fn a_file_with_another_schema_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("other.parquet");
        let schema = Arc::new(parse_message_type("message m { OPTIONAL BYTE_ARRAY question (STRING); }").unwrap());
        let mut w = SerializedFileWriter::new(File::create(&p).unwrap(), schema, Default::default()).unwrap();
        let mut g = w.next_row_group().unwrap();
        let mut c = g.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>()
            .write_batch(&[ByteArray::from("q")], Some(&[1]), None)
            .unwrap();
        c.close().unwrap();
        g.close().unwrap();
        w.close().unwrap();
        let err = read_training_parquet(&p).unwrap_err().to_string();
        assert!(err.contains("other.parquet: row 1: no field `reward_model`"), "{err}");
        let err = read_training_parquet(&dir.path().join("missing.parquet"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.parquet"), "{err}");
    }
}
