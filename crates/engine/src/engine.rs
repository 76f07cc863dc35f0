//! The engine: a loaded model, its tokenizer, and the device it runs on.

use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use research_qwen2::{load_model, FloatType, ModelDir, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer};

use crate::batch::{Batch, FinishReason, GenerateOptions};
use crate::error::{EngineError, Result};

/// A model ready to generate and score.
pub struct Engine<B: Backend> {
    /// The architecture's hyperparameters.
    pub config: Qwen2Config,
    /// The weights.
    pub model: Qwen2ForCausalLM<B>,
    /// The tokenizer found beside the weights, if any.
    pub tokenizer: Option<Arc<Qwen2Tokenizer>>,
    /// Where tensors live.
    pub device: B::Device,
    /// Compute dtype.
    pub dtype: FloatType,
}

/// One finished generation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generation {
    /// New token ids.
    pub ids: Vec<u32>,
    /// Their log-probabilities.
    pub logprobs: Vec<f32>,
    /// Decoded new text (special tokens kept), when a tokenizer is loaded.
    pub text: Option<String>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// The stop string that ended it, if any.
    pub stop_string: Option<String>,
}

impl<B: Backend> Engine<B> {
    /// Loads `config.json`, the weights and (when present) `tokenizer.json` from `dir`.
    pub fn load(dir: &ModelDir, dtype: FloatType, device: B::Device) -> Result<Self> {
        let (config, model) = load_model::<B>(dir, dtype, &device)?;
        let has_tokenizer = ["tokenizer.json", "tokenizer.json.zst"]
            .iter()
            .any(|f| dir.path().join(f).exists());
        let tokenizer = if has_tokenizer {
            Some(Arc::new(Qwen2Tokenizer::from_path(dir.path())?))
        } else {
            None
        };
        Ok(Self {
            config,
            model,
            tokenizer,
            device,
            dtype,
        })
    }

    /// An engine around an existing model.
    pub fn new(
        config: Qwen2Config,
        model: Qwen2ForCausalLM<B>,
        tokenizer: Option<Arc<Qwen2Tokenizer>>,
        dtype: FloatType,
        device: B::Device,
    ) -> Self {
        Self {
            config,
            model,
            tokenizer,
            device,
            dtype,
        }
    }

    /// The tokenizer, or an error saying it is needed.
    pub fn tokenizer(&self) -> Result<&Qwen2Tokenizer> {
        self.tokenizer.as_deref().ok_or_else(|| {
            EngineError::Input("this model directory has no tokenizer.json; pass token ids instead of text".into())
        })
    }

    /// EOS ids from the config, when the caller gives none.
    pub fn default_eos(&self) -> Vec<u32> {
        self.config.eos_token_ids.clone()
    }

    /// Generates for a batch of prompts until each stops.
    pub fn generate(&self, prompts: Vec<Vec<u32>>, options: GenerateOptions) -> Result<Vec<Generation>> {
        let mut batch = Batch::new(self, prompts, options)?;
        batch.run()?;
        Ok(batch
            .into_sequences()
            .into_iter()
            .map(|s| Generation {
                text: self.tokenizer.as_ref().map(|t| t.decode(&s.response)),
                ids: s.response,
                logprobs: s.logprobs,
                finish_reason: s.finish_reason.unwrap_or(FinishReason::Length),
                stop_string: s.stop_string,
            })
            .collect())
    }

    /// Teacher-forced log-probs of one sequence: entry `t` is `log p(ids[t+1] | ids[..=t])`.
    pub fn score(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let vocab = self.config.vocab_size;
        if ids.len() < 2 {
            return Err(EngineError::Input(format!(
                "scoring needs at least 2 tokens, got {}",
                ids.len()
            )));
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(EngineError::Input(format!(
                "token id {bad} is outside the vocabulary (size {vocab})"
            )));
        }
        if ids.len() > self.config.max_position_embeddings {
            return Err(EngineError::Input(format!(
                "{} tokens exceed the model's context of {} tokens",
                ids.len(),
                self.config.max_position_embeddings
            )));
        }
        let data = TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, ids.len()]);
        let input = Tensor::<B, 2, Int>::from_data(data, &self.device);
        let lp = self.model.score(input)?;
        Ok(lp.into_data().convert::<f32>().to_vec().expect("f32 data"))
    }
}
