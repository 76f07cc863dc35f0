//! Writing a Qwen2 model back in the Hugging Face layout: `model.safetensors` with the HF names and
//! `[out, in]` linear weights, and `config.json`, so transformers loads the directory as is.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::config::Qwen2Config;
use crate::error::{io_err, Result};
use crate::model::{Linear, Qwen2ForCausalLM};

impl<B: Backend> Qwen2ForCausalLM<B> {
    /// Every weight under its HF name, in the HF layout (linear weights `[out, in]`), in the model's
    /// dtype. A tied `lm_head` is left out, as transformers saves it.
    pub fn hf_state(&self) -> Vec<(String, TensorData)> {
        fn linear<B: Backend>(out: &mut Vec<(String, TensorData)>, prefix: &str, l: &Linear<B>) {
            out.push((format!("{prefix}.weight"), l.weight.val().transpose().into_data()));
            if let Some(b) = &l.bias {
                out.push((format!("{prefix}.bias"), b.val().into_data()));
            }
        }
        let vec = |t: Tensor<B, 1>| t.into_data();
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            self.embed_tokens.val().into_data(),
        )];
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((
                format!("{p}.input_layernorm.weight"),
                vec(layer.input_layernorm.weight.val()),
            ));
            linear(&mut out, &format!("{p}.self_attn.q_proj"), &layer.self_attn.q_proj);
            linear(&mut out, &format!("{p}.self_attn.k_proj"), &layer.self_attn.k_proj);
            linear(&mut out, &format!("{p}.self_attn.v_proj"), &layer.self_attn.v_proj);
            linear(&mut out, &format!("{p}.self_attn.o_proj"), &layer.self_attn.o_proj);
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                vec(layer.post_attention_layernorm.weight.val()),
            ));
            linear(&mut out, &format!("{p}.mlp.gate_proj"), &layer.mlp.gate_proj);
            linear(&mut out, &format!("{p}.mlp.up_proj"), &layer.mlp.up_proj);
            linear(&mut out, &format!("{p}.mlp.down_proj"), &layer.mlp.down_proj);
        }
        out.push(("model.norm.weight".to_string(), vec(self.norm.weight.val())));
        if let Some(w) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), w.val().transpose().into_data()));
        }
        out
    }

    /// Writes `model.safetensors` and `config.json` (with `config`'s dtype set to the model's) into
    /// `dir`, which must exist. Each file is written under a temporary name and renamed.
    pub fn save_pretrained(&self, config: &Qwen2Config, dir: &Path) -> Result<()> {
        research_model_io::write_safetensors(&dir.join("model.safetensors"), &self.hf_state())?;
        let mut config = config.clone();
        config.torch_dtype = Some(
            match self.dtype() {
                burn::tensor::DType::BF16 => "bfloat16",
                burn::tensor::DType::F16 => "float16",
                _ => "float32",
            }
            .to_string(),
        );
        let text = serde_json::to_string_pretty(&config.to_json()).expect("a JSON value always serialises");
        let path = dir.join("config.json");
        let tmp = dir.join("config.json.partial");
        std::fs::write(&tmp, text + "\n").map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(())
    }
}
