//! `config.json` of a Qwen2 checkpoint, as written by transformers 4.x and 5.x.
//!
//! The two generations differ in a few spellings: 4.x writes `torch_dtype` and a top-level
//! `rope_theta`; 5.x writes `dtype` and nests the RoPE settings under `rope_parameters`. Both are
//! read here into one [`Qwen2Config`], and [`Qwen2Config::to_json`] writes the 5.x spelling with the
//! 4.x keys beside it so both generations of transformers load what we write.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{io_err, ModelError, Result};

/// The hyperparameters of a Qwen2 / Qwen2.5 decoder.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Qwen2Config {
    /// Vocabulary size (rows of `embed_tokens`).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA); equals `num_attention_heads` when absent.
    pub num_key_value_heads: usize,
    /// Per-head width; `hidden_size / num_attention_heads` when absent.
    pub head_dim: usize,
    /// Longest context the model was trained for.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Whether `lm_head` shares `embed_tokens`.
    pub tie_word_embeddings: bool,
    /// The dtype the weights were saved in (`float32`, `bfloat16`, `float16`), if stated.
    pub torch_dtype: Option<String>,
    /// BOS id, if stated.
    pub bos_token_id: Option<u32>,
    /// EOS ids (a config may give one id or a list).
    pub eos_token_ids: Vec<u32>,
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

    fn opt_f64(&self, v: Option<&Value>, field: &str) -> Result<Option<f64>> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
                _ => Err(self.err(field, format!("expected a positive number, found {v}"))),
            },
        }
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(field, format!("expected true or false, found {v}"))),
        }
    }

    fn opt_id(&self, v: &Value, field: &str) -> Result<u32> {
        v.as_u64()
            .filter(|&n| n <= u32::MAX as u64)
            .map(|n| n as u32)
            .ok_or_else(|| self.err(field, format!("expected a token id, found {v}")))
    }
}

impl Qwen2Config {
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

        if let Some(mt) = map.get("model_type").and_then(Value::as_str) {
            if mt != "qwen2" {
                return Err(f.err("model_type", format!("expected \"qwen2\", found \"{mt}\"")));
            }
        }
        if let Some(act) = map.get("hidden_act").and_then(Value::as_str) {
            if act != "silu" {
                return Err(f.err("hidden_act", format!("only \"silu\" is supported, found \"{act}\"")));
            }
        }
        if f.opt_bool("use_sliding_window")? == Some(true) {
            return Err(f.err(
                "use_sliding_window",
                "sliding-window attention is not supported (Qwen2.5 checkpoints set it to false)",
            ));
        }

        let hidden_size = f.usize("hidden_size")?;
        let num_attention_heads = f.usize("num_attention_heads")?;
        let num_key_value_heads = f.opt_usize("num_key_value_heads")?.unwrap_or(num_attention_heads);
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(f.err(
                "num_key_value_heads",
                format!("{num_key_value_heads} does not divide num_attention_heads = {num_attention_heads}"),
            ));
        }
        let head_dim = match f.opt_usize("head_dim")? {
            Some(d) => d,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(f.err("hidden_size", format!("{hidden_size} is not a multiple of num_attention_heads = {num_attention_heads} and no head_dim is given")));
                }
                hidden_size / num_attention_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(f.err(
                "head_dim",
                format!("RoPE needs an even head dimension, found {head_dim}"),
            ));
        }

        // RoPE: 5.x nests it under `rope_parameters`, 4.x has `rope_theta` at the top level and an
        // optional `rope_scaling`.
        let rope_params = map.get("rope_parameters").filter(|v| !v.is_null());
        let rope_scaling = map.get("rope_scaling").filter(|v| !v.is_null());
        for (field, block) in [("rope_parameters", rope_params), ("rope_scaling", rope_scaling)] {
            if let Some(block) = block {
                let obj = block.as_object().ok_or_else(|| f.err(field, "expected an object"))?;
                let kind = obj.get("rope_type").or_else(|| obj.get("type")).and_then(Value::as_str);
                if let Some(kind) = kind {
                    if kind != "default" {
                        return Err(f.err(
                            field,
                            format!("rope type \"{kind}\" is not supported (only \"default\")"),
                        ));
                    }
                }
            }
        }
        let rope_theta = match f.opt_f64(
            rope_params.and_then(|p| p.get("rope_theta")),
            "rope_parameters.rope_theta",
        )? {
            Some(t) => t,
            None => f.opt_f64(map.get("rope_theta"), "rope_theta")?.unwrap_or(10_000.0),
        };

        let rms_norm_eps = f.opt_f64(map.get("rms_norm_eps"), "rms_norm_eps")?.unwrap_or(1e-6);
        let torch_dtype = ["dtype", "torch_dtype"]
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_str))
            .map(str::to_string);
        let bos_token_id = match map.get("bos_token_id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(f.opt_id(v, "bos_token_id")?),
        };
        let eos_token_ids = match map.get("eos_token_id") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a.iter().map(|v| f.opt_id(v, "eos_token_id")).collect::<Result<_>>()?,
            Some(v) => vec![f.opt_id(v, "eos_token_id")?],
        };

        Ok(Self {
            vocab_size: f.usize("vocab_size")?,
            hidden_size,
            intermediate_size: f.usize("intermediate_size")?,
            num_hidden_layers: f.usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            max_position_embeddings: f.opt_usize("max_position_embeddings")?.unwrap_or(32_768),
            rms_norm_eps,
            rope_theta,
            tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            torch_dtype,
            bos_token_id,
            eos_token_ids,
        })
    }

    /// The HF `config.json` for this configuration (transformers 5.x spelling, with the 4.x keys too).
    pub fn to_json(&self) -> Value {
        let eos: Value = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => (*one).into(),
            many => many.to_vec().into(),
        };
        serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_act": "silu",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "tie_word_embeddings": self.tie_word_embeddings,
            "use_sliding_window": false,
            "attention_dropout": 0.0,
            "dtype": self.torch_dtype,
            "torch_dtype": self.torch_dtype,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
        })
    }

    /// Number of query heads sharing one key/value head.
    pub fn gqa_group(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Parameter count implied by the shapes.
    pub fn num_parameters(&self) -> usize {
        let (h, i, d) = (self.hidden_size, self.intermediate_size, self.head_dim);
        let q = self.num_attention_heads * d;
        let kv = self.num_key_value_heads * d;
        let attn = h * q + q + 2 * (h * kv + kv) + q * h;
        let mlp = 3 * h * i;
        let layer = attn + mlp + 2 * h;
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + head + h + self.num_hidden_layers * layer
    }
}

impl Qwen2Config {
    /// Adds the EOS ids of a `generation_config.json` (what transformers' `generate` stops on) to
    /// [`Qwen2Config::eos_token_ids`]. A missing file is not an error.
    pub fn merge_generation_config(&mut self, path: &Path) -> Result<()> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(path)(e)),
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| ModelError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let Some(map) = value.as_object() else { return Ok(()) };
        let f = Fields { path, map };
        let ids: Vec<u32> = match map.get("eos_token_id") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a.iter().map(|v| f.opt_id(v, "eos_token_id")).collect::<Result<_>>()?,
            Some(v) => vec![f.opt_id(v, "eos_token_id")?],
        };
        for id in ids {
            if !self.eos_token_ids.contains(&id) {
                self.eos_token_ids.push(id);
            }
        }
        Ok(())
    }
}
