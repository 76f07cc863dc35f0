//! `config.json` of a BERT checkpoint (`BertModel` as transformers writes it; E5, BGE and
//! sentence-transformers' MiniLM all use this architecture).
//!
//! Only what the encoder needs is read; every missing or wrong field is an error naming the file and
//! the field. Variants the model does not implement (another activation, relative position
//! embeddings, another `model_type`) are refused rather than silently computed wrong.

use std::path::Path;

use serde_json::{Map, Value};

use research_model_io::{io_err, ModelError, Result};

/// The hyperparameters of a BERT encoder.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BertConfig {
    /// Vocabulary size (rows of `embeddings.word_embeddings`).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads (`hidden_size / num_attention_heads` is the head width).
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Rows of `embeddings.position_embeddings`: the longest input the model takes.
    pub max_position_embeddings: usize,
    /// Rows of `embeddings.token_type_embeddings`.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// The activation of the feed-forward block; only `gelu` (exact, erf-based) is implemented.
    pub hidden_act: String,
    /// The padding id (`pad_token_id`, 0 for the uncased BERT vocabularies).
    pub pad_token_id: u32,
}

struct Fields<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> ModelError {
        ModelError::Config {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn opt_usize(&self, field: &str) -> Result<Option<usize>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some(n as usize)),
                _ => Err(self.err(field, format!("expected a positive integer, found {v}"))),
            },
        }
    }

    fn usize(&self, field: &str) -> Result<usize> {
        self.opt_usize(field)?
            .ok_or_else(|| self.err(field, "missing (expected a positive integer)"))
    }

    fn opt_str(&self, field: &str) -> Result<Option<&str>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(field, format!("expected a string, found {v}"))),
        }
    }
}

impl BertConfig {
    /// Reads a `config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::from_json_str(&text, path)
    }

    /// Parses the text of a `config.json`; `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| ModelError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let map = value.as_object().ok_or_else(|| ModelError::Config {
            path: path.to_path_buf(),
            field: "<root>".into(),
            message: "expected a JSON object".into(),
        })?;
        let f = Fields { path, map };

        if let Some(mt) = f.opt_str("model_type")? {
            if mt != "bert" {
                return Err(f.err("model_type", format!("expected \"bert\", found \"{mt}\"")));
            }
        }
        let hidden_act = f.opt_str("hidden_act")?.unwrap_or("gelu").to_string();
        if hidden_act != "gelu" {
            return Err(f.err(
                "hidden_act",
                format!("only \"gelu\" (exact, erf-based) is supported, found \"{hidden_act}\""),
            ));
        }
        if let Some(kind) = f.opt_str("position_embedding_type")? {
            if kind != "absolute" {
                return Err(f.err(
                    "position_embedding_type",
                    format!("only \"absolute\" is supported, found \"{kind}\""),
                ));
            }
        }
        let hidden_size = f.usize("hidden_size")?;
        let num_attention_heads = f.usize("num_attention_heads")?;
        if hidden_size % num_attention_heads != 0 {
            return Err(f.err(
                "num_attention_heads",
                format!("{num_attention_heads} does not divide hidden_size = {hidden_size}"),
            ));
        }
        let layer_norm_eps = match map.get("layer_norm_eps") {
            None | Some(Value::Null) => 1e-12,
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && x > 0.0 => x,
                _ => return Err(f.err("layer_norm_eps", format!("expected a positive number, found {v}"))),
            },
        };
        let pad_token_id = match map.get("pad_token_id") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .filter(|&n| n <= u32::MAX as u64)
                .ok_or_else(|| f.err("pad_token_id", format!("expected a token id, found {v}")))?
                as u32,
        };
        Ok(Self {
            vocab_size: f.usize("vocab_size")?,
            hidden_size,
            num_hidden_layers: f.usize("num_hidden_layers")?,
            num_attention_heads,
            intermediate_size: f.usize("intermediate_size")?,
            max_position_embeddings: f.opt_usize("max_position_embeddings")?.unwrap_or(512),
            type_vocab_size: f.opt_usize("type_vocab_size")?.unwrap_or(2),
            layer_norm_eps,
            hidden_act,
            pad_token_id,
        })
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The BERT-base shape of `bert-base-uncased`, E5-base-v2 and BGE-base: 12 layers, width 768,
    /// 12 heads, feed-forward 3072, vocabulary 30522, 512 positions (for benchmarks on random
    /// weights; a checkpoint's own `config.json` is read with [`Self::from_file`]).
    pub fn bert_base() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
            pad_token_id: 0,
        }
    }

    /// The shape of sentence-transformers' all-MiniLM-L6-v2: [`Self::bert_base`] with 6 layers,
    /// width 384 and feed-forward 1536.
    pub fn minilm_l6() -> Self {
        Self {
            hidden_size: 384,
            num_hidden_layers: 6,
            intermediate_size: 1536,
            ..Self::bert_base()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BertConfig> {
        BertConfig::from_json_str(text, Path::new("config.json"))
    }

    const BASE: &str = r#"{"model_type": "bert", "vocab_size": 30522, "hidden_size": 384,
        "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}"#;

    #[test]
    fn defaults_follow_transformers() {
        let c = parse(BASE).unwrap();
        assert_eq!(
            (
                c.max_position_embeddings,
                c.type_vocab_size,
                c.layer_norm_eps,
                c.pad_token_id
            ),
            (512, 2, 1e-12, 0)
        );
        assert_eq!(c.head_dim(), 32);
    }

    #[test]
    fn named_shapes_match_the_published_configs() {
        // bert-base-uncased / intfloat/e5-base-v2 config.json values.
        let e5 = parse(
            r#"{"model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
                "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu", "pad_token_id": 0}"#,
        )
        .unwrap();
        assert_eq!(BertConfig::bert_base(), e5);
        assert_eq!(BertConfig::minilm_l6(), parse(BASE).unwrap());
    }

    #[test]
    fn errors_name_file_and_field() {
        let bad = |from: &str, to: &str| parse(&BASE.replace(from, to)).unwrap_err().to_string();
        let e = bad(r#""hidden_size": 384"#, r#""hidden_size": "x""#);
        assert!(e.contains("config.json") && e.contains("`hidden_size`"), "{e}");
        let e = bad(r#""num_attention_heads": 12"#, r#""num_attention_heads": 7"#);
        assert!(e.contains("`num_attention_heads`") && e.contains("384"), "{e}");
        let e = bad(
            r#""model_type": "bert""#,
            r#""model_type": "bert", "hidden_act": "gelu_new""#,
        );
        assert!(e.contains("`hidden_act`") && e.contains("gelu_new"), "{e}");
        let e = bad(r#""model_type": "bert""#, r#""model_type": "xlm-roberta""#);
        assert!(e.contains("`model_type`"), "{e}");
        let e = bad(r#""vocab_size": 30522,"#, "");
        assert!(e.contains("`vocab_size`") && e.contains("missing"), "{e}");
        let e = bad(
            r#""model_type": "bert""#,
            r#""model_type": "bert", "position_embedding_type": "relative_key""#,
        );
        assert!(e.contains("`position_embedding_type`"), "{e}");
    }
}
