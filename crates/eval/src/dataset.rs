//! FlashRAG question files: one JSON object per line, `{"id", "question", "golden_answers",
//! "metadata"}`, plain or zstd-compressed (`.zst`).

use std::path::{Path, PathBuf};

use crate::EvalError;

/// One question.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Question {
    /// The dataset's id.
    pub id: String,
    /// The question text.
    pub question: String,
    /// Accepted answers.
    pub golden_answers: Vec<String>,
    /// Anything else the dataset carries.
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// Reads a text file, decompressing `.zst`.
pub fn read_text(path: &Path) -> Result<String, EvalError> {
    let bytes = std::fs::read(path).map_err(|e| EvalError::Io(path.to_path_buf(), e.to_string()))?;
    let bytes = research_model_io::maybe_unzstd(path, bytes).map_err(|m| EvalError::Io(path.to_path_buf(), m))?;
    String::from_utf8(bytes).map_err(|e| EvalError::Io(path.to_path_buf(), format!("not UTF-8: {e}")))
}

/// Reads every question of a FlashRAG jsonl file; a bad line is an error naming file and line.
pub fn read_questions(path: &Path) -> Result<Vec<Question>, EvalError> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let q: Question = serde_json::from_str(line).map_err(|e| EvalError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("{e} (expected {{\"id\", \"question\", \"golden_answers\": [...]}})"),
        })?;
        out.push(q);
    }
    Ok(out)
}

/// The benchmark datasets and their default splits.
pub const DATASETS: [(&str, &str); 4] = [
    ("bamboogle", "test"),
    ("hotpotqa", "dev"),
    ("2wikimultihopqa", "dev"),
    ("musique", "dev"),
];

/// Finds `<data_dir>/<dataset>/<split>.jsonl[.zst]`.
pub fn dataset_file(data_dir: &Path, dataset: &str, split: Option<&str>) -> Result<PathBuf, EvalError> {
    let default = DATASETS
        .iter()
        .find(|(d, _)| *d == dataset)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            EvalError::Input(format!(
                "unknown dataset `{dataset}` (expected one of bamboogle, hotpotqa, 2wikimultihopqa, musique)"
            ))
        })?;
    let split = split.unwrap_or(default);
    for name in [format!("{split}.jsonl"), format!("{split}.jsonl.zst")] {
        let p = data_dir.join(dataset).join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(EvalError::Input(format!(
        "no {dataset} split `{split}` under {} (expected {dataset}/{split}.jsonl or .jsonl.zst; the repository ships them in data/eval)",
        data_dir.display()
    )))
}
