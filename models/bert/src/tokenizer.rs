//! The WordPiece tokenizer of a BERT checkpoint (HF `tokenizer.json`), through the `tokenizers`
//! crate (pure Rust, `fancy-regex`).
//!
//! Whatever padding and truncation `tokenizer.json` turns on (all-MiniLM-L6-v2's pads every input
//! to 128 and truncates) is switched off: [`BertTokenizer::encode`] returns HF's unpadded ids and
//! truncates itself the way transformers does with `truncation=True, max_length=n` (content tokens
//! cut on the right so that the result, `[CLS]` and `[SEP]` included, has at most `n` tokens).
//! Padding to the longest row of a batch is [`crate::PaddedBatch`]'s job.

use std::path::{Path, PathBuf};

use tokenizers::{PostProcessor, TruncationDirection};

use research_model_io::{ModelError, Result};

/// A loaded `tokenizer.json` with its own padding and truncation disabled.
pub struct BertTokenizer {
    inner: tokenizers::Tokenizer,
    pad_id: u32,
    path: PathBuf,
}

impl BertTokenizer {
    /// Loads `tokenizer.json` from a file or from a directory containing one.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("tokenizer.json");
        }
        let err = |message: String| ModelError::Tokenizer {
            path: path.clone(),
            message,
        };
        if !path.is_file() {
            return Err(err("no such file".into()));
        }
        let mut inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| err(e.to_string()))?;
        // The pad id: the one the file pads with, else `[PAD]`, else 0 (BERT's).
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("[PAD]"))
            .unwrap_or(0);
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| err(e.to_string()))?;
        Ok(Self { inner, pad_id, path })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id rows are padded with.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The wrapped `tokenizers` tokenizer (padding and truncation off).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Special tokens the post-processor adds to one sequence (2 for BERT: `[CLS]`, `[SEP]`).
    pub fn num_special_tokens(&self) -> usize {
        self.inner.get_post_processor().map_or(0, |p| p.added_tokens(false))
    }

    /// Ids of `text` with the special tokens, truncated to at most `max_len` tokens in all (as
    /// transformers' `truncation=True, max_length=max_len`); `None` keeps every token.
    pub fn encode(&self, text: &str, max_len: Option<usize>) -> Result<Vec<u32>> {
        let err = |e: tokenizers::Error| ModelError::Tokenizer {
            path: self.path.clone(),
            message: format!("encoding {text:?}: {e}"),
        };
        let mut enc = self.inner.encode(text, false).map_err(err)?;
        if let Some(max_len) = max_len {
            let special = self.num_special_tokens();
            if max_len <= special {
                return Err(ModelError::Input(format!(
                    "max length {max_len} leaves no room for text beside the {special} special tokens"
                )));
            }
            enc.truncate(max_len - special, 0, TruncationDirection::Right);
        }
        let enc = self.inner.post_process(enc, None, true).map_err(err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// The token strings of `ids` (for messages and debugging).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}
