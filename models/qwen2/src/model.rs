//! The Qwen2 decoder (`Qwen2ForCausalLM`), module by module, with the HF names.
//!
//! ```text
//! model.embed_tokens                       [vocab, hidden]
//! model.layers.{i}.input_layernorm         RMSNorm
//! model.layers.{i}.self_attn.{q,k,v}_proj  Linear with bias (GQA: k/v have fewer heads)
//! model.layers.{i}.self_attn.o_proj        Linear, no bias
//! model.layers.{i}.post_attention_layernorm
//! model.layers.{i}.mlp.{gate,up,down}_proj SwiGLU, no bias
//! model.norm                               RMSNorm
//! lm_head                                  untied, or `embed_tokens` transposed when tied
//! ```
//!
//! Numerics follow transformers: RMSNorm and softmax in f32, RoPE tables in f32 cast to the compute
//! dtype, rotate-half layout.

use burn::module::{Module, Param};
use burn::tensor::activation::{log_softmax, silu};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorCreationOptions};

use research_kernels::attention::{attention_auto, AttentionBias};

use crate::cache::KvCache;
use crate::config::Qwen2Config;
use crate::error::{ModelError, Result};
use crate::weights::{Checkpoint, FloatType};

/// A linear layer stored as `[in, out]` (HF stores `[out, in]`; the loader transposes).
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// `[in_features, out_features]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[out_features]`, when the layer has one.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Linear<B> {
    /// `x @ W (+ b)` over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        research_kernels::linear::linear(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()))
    }
}

/// Root-mean-square layer norm, computed in f32 like transformers' `Qwen2RMSNorm`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Epsilon added to the mean square.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// `weight * (x / sqrt(mean(x^2) + eps))`, the normalisation in f32.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let x32 = x.cast(DType::F32);
        let var = x32.clone().square().mean_dim(D - 1);
        let normed = x32 * (var + self.eps).sqrt().recip();
        self.weight.val().unsqueeze() * normed.cast(dtype)
    }
}

/// Self-attention with RoPE, q/k/v biases and grouped key/value heads.
#[derive(Module, Debug)]
pub struct Qwen2Attention<B: Backend> {
    /// Query projection `[hidden, heads * head_dim]`.
    pub q_proj: Linear<B>,
    /// Key projection `[hidden, kv_heads * head_dim]`.
    pub k_proj: Linear<B>,
    /// Value projection `[hidden, kv_heads * head_dim]`.
    pub v_proj: Linear<B>,
    /// Output projection `[heads * head_dim, hidden]`.
    pub o_proj: Linear<B>,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
}

/// The position-dependent inputs shared by all layers of one forward pass.
pub struct Rope<B: Backend> {
    /// `[batch, 1, seq, head_dim]`.
    pub cos: Tensor<B, 4>,
    /// `[batch, 1, seq, head_dim]`.
    pub sin: Tensor<B, 4>,
}

impl<B: Backend> Rope<B> {
    /// RoPE tables for integer positions `[batch, seq]`, as transformers computes them: inverse
    /// frequencies and angles in f32, then cos/sin cast to `dtype`.
    pub fn new(positions: Tensor<B, 2, Int>, head_dim: usize, theta: f64, dtype: DType) -> Self {
        let device = positions.device();
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let inv_freq = Tensor::<B, 1>::from_data(
            burn::tensor::TensorData::new(inv_freq, [half]),
            TensorCreationOptions::new(device).with_dtype(DType::F32),
        );
        let [b, s] = positions.dims();
        let pos = positions.float().cast(DType::F32).reshape([b, s, 1]);
        let freqs = pos * inv_freq.reshape([1, 1, half]);
        let emb = Tensor::cat(vec![freqs.clone(), freqs], 2).unsqueeze_dim::<4>(1);
        Self {
            cos: emb.clone().cos().cast(dtype),
            sin: emb.sin().cast(dtype),
        }
    }

    fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let d = x.dims()[3];
        let x1 = x.clone().narrow(3, 0, d / 2);
        let x2 = x.clone().narrow(3, d / 2, d / 2);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * self.cos.clone() + rotated * self.sin.clone()
    }
}

impl<B: Backend> Qwen2Attention<B> {
    /// `x`: `[batch, seq, hidden]`. With a cache, the new keys/values are written at the cache's
    /// next columns and attention runs over everything cached so far.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        bias: &AttentionBias<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let (h, kvh, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = self.q_proj.forward(x.clone()).reshape([b, s, h, d]).swap_dims(1, 2);
        let k = self.k_proj.forward(x.clone()).reshape([b, s, kvh, d]).swap_dims(1, 2);
        let v = self.v_proj.forward(x).reshape([b, s, kvh, d]).swap_dims(1, 2);
        let q = rope.apply(q);
        let k = rope.apply(k);
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v),
            None => (k, v),
        };
        // The fused CUDA kernels on burn-cuda (issue 6), the reference path elsewhere.
        let out = attention_auto(q, k, v, bias);
        let out = out.swap_dims(1, 2).reshape([b, s, h * d]);
        self.o_proj.forward(out)
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Qwen2Mlp<B: Backend> {
    /// `[hidden, intermediate]`.
    pub gate_proj: Linear<B>,
    /// `[hidden, intermediate]`.
    pub up_proj: Linear<B>,
    /// `[intermediate, hidden]`.
    pub down_proj: Linear<B>,
}

impl<B: Backend> Qwen2Mlp<B> {
    /// Applies the MLP to the last dimension.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

/// One pre-norm decoder block.
#[derive(Module, Debug)]
pub struct Qwen2DecoderLayer<B: Backend> {
    /// Norm before attention.
    pub input_layernorm: RmsNorm<B>,
    /// Attention.
    pub self_attn: Qwen2Attention<B>,
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm<B>,
    /// MLP.
    pub mlp: Qwen2Mlp<B>,
}

impl<B: Backend> Qwen2DecoderLayer<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        bias: &AttentionBias<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rope, bias, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

/// `Qwen2ForCausalLM`: the decoder stack and the LM head.
#[derive(Module, Debug)]
pub struct Qwen2ForCausalLM<B: Backend> {
    /// `model.embed_tokens.weight`, `[vocab, hidden]`.
    pub embed_tokens: Param<Tensor<B, 2>>,
    /// `model.layers.*`.
    pub layers: Vec<Qwen2DecoderLayer<B>>,
    /// `model.norm`.
    pub norm: RmsNorm<B>,
    /// `lm_head.weight` stored `[hidden, vocab]`; `None` when tied to `embed_tokens`.
    pub lm_head: Option<Param<Tensor<B, 2>>>,
    /// RoPE base.
    pub rope_theta: f64,
    /// Vocabulary size.
    pub vocab_size: usize,
}

impl<B: Backend> Qwen2ForCausalLM<B> {
    /// Loads a checkpoint's weights in `dtype` on `device`, checking every shape against `config`.
    pub fn load(config: &Qwen2Config, ckpt: &Checkpoint, dtype: FloatType, device: &B::Device) -> Result<Self> {
        let c = config;
        let (hid, inter, d) = (c.hidden_size, c.intermediate_size, c.head_dim);
        let (qd, kvd) = (c.num_attention_heads * d, c.num_key_value_heads * d);
        let opts = || TensorCreationOptions::<B>::new(device.clone()).with_dtype(dtype.dtype());
        let mat = |name: &str, rows: usize, cols: usize, transpose: bool| -> Result<Param<Tensor<B, 2>>> {
            let data = ckpt.load(name, &[rows, cols], transpose, dtype)?;
            Ok(Param::from_tensor(Tensor::from_data(data, opts())))
        };
        let vec = |name: &str, n: usize| -> Result<Param<Tensor<B, 1>>> {
            let data = ckpt.load(name, &[n], false, dtype)?;
            Ok(Param::from_tensor(Tensor::from_data(data, opts())))
        };
        let linear = |prefix: &str, fan_in: usize, fan_out: usize, bias: bool| -> Result<Linear<B>> {
            Ok(Linear {
                weight: mat(&format!("{prefix}.weight"), fan_out, fan_in, true)?,
                bias: if bias {
                    Some(vec(&format!("{prefix}.bias"), fan_out)?)
                } else {
                    None
                },
            })
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(Qwen2DecoderLayer {
                input_layernorm: RmsNorm {
                    weight: vec(&format!("{p}.input_layernorm.weight"), hid)?,
                    eps: c.rms_norm_eps,
                },
                self_attn: Qwen2Attention {
                    q_proj: linear(&format!("{p}.self_attn.q_proj"), hid, qd, true)?,
                    k_proj: linear(&format!("{p}.self_attn.k_proj"), hid, kvd, true)?,
                    v_proj: linear(&format!("{p}.self_attn.v_proj"), hid, kvd, true)?,
                    o_proj: linear(&format!("{p}.self_attn.o_proj"), qd, hid, false)?,
                    num_heads: c.num_attention_heads,
                    num_kv_heads: c.num_key_value_heads,
                    head_dim: d,
                },
                post_attention_layernorm: RmsNorm {
                    weight: vec(&format!("{p}.post_attention_layernorm.weight"), hid)?,
                    eps: c.rms_norm_eps,
                },
                mlp: Qwen2Mlp {
                    gate_proj: linear(&format!("{p}.mlp.gate_proj"), hid, inter, false)?,
                    up_proj: linear(&format!("{p}.mlp.up_proj"), hid, inter, false)?,
                    down_proj: linear(&format!("{p}.mlp.down_proj"), inter, hid, false)?,
                },
            });
        }
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(mat("lm_head.weight", c.vocab_size, hid, true)?)
        };
        Ok(Self {
            embed_tokens: mat("model.embed_tokens.weight", c.vocab_size, hid, false)?,
            layers,
            norm: RmsNorm {
                weight: vec("model.norm.weight", hid)?,
                eps: c.rms_norm_eps,
            },
            lm_head,
            rope_theta: c.rope_theta,
            vocab_size: c.vocab_size,
        })
    }

    /// A model with random weights (normal, std 0.02; norms at 1; biases 0), for benchmarks of big
    /// shapes without a checkpoint. Drawn on the device from the backend's generator, seeded with
    /// `seed` (so fast even at 7B; reproducible for one backend).
    pub fn random(config: &Qwen2Config, dtype: FloatType, seed: u64, device: &B::Device) -> Self {
        use burn::tensor::Distribution;
        B::seed(device, seed);
        let c = config;
        let (hid, inter, d) = (c.hidden_size, c.intermediate_size, c.head_dim);
        let (qd, kvd) = (c.num_attention_heads * d, c.num_key_value_heads * d);
        let opts = || TensorCreationOptions::<B>::new(device.clone()).with_dtype(dtype.dtype());
        let mat = |rows: usize, cols: usize| {
            Param::from_tensor(Tensor::<B, 2>::random(
                [rows, cols],
                Distribution::Normal(0.0, 0.02),
                opts(),
            ))
        };
        let ones = |n: usize| Param::from_tensor(Tensor::<B, 1>::ones([n], opts()));
        let zeros = |n: usize| Some(Param::from_tensor(Tensor::<B, 1>::zeros([n], opts())));
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for _ in 0..c.num_hidden_layers {
            layers.push(Qwen2DecoderLayer {
                input_layernorm: RmsNorm {
                    weight: ones(hid),
                    eps: c.rms_norm_eps,
                },
                self_attn: Qwen2Attention {
                    q_proj: Linear {
                        weight: mat(hid, qd),
                        bias: zeros(qd),
                    },
                    k_proj: Linear {
                        weight: mat(hid, kvd),
                        bias: zeros(kvd),
                    },
                    v_proj: Linear {
                        weight: mat(hid, kvd),
                        bias: zeros(kvd),
                    },
                    o_proj: Linear {
                        weight: mat(qd, hid),
                        bias: None,
                    },
                    num_heads: c.num_attention_heads,
                    num_kv_heads: c.num_key_value_heads,
                    head_dim: d,
                },
                post_attention_layernorm: RmsNorm {
                    weight: ones(hid),
                    eps: c.rms_norm_eps,
                },
                mlp: Qwen2Mlp {
                    gate_proj: Linear {
                        weight: mat(hid, inter),
                        bias: None,
                    },
                    up_proj: Linear {
                        weight: mat(hid, inter),
                        bias: None,
                    },
                    down_proj: Linear {
                        weight: mat(inter, hid),
                        bias: None,
                    },
                },
            });
        }
        let embed_tokens = mat(c.vocab_size, hid);
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(mat(hid, c.vocab_size))
        };
        Self {
            embed_tokens,
            layers,
            norm: RmsNorm {
                weight: ones(hid),
                eps: c.rms_norm_eps,
            },
            lm_head,
            rope_theta: c.rope_theta,
            vocab_size: c.vocab_size,
        }
    }

    /// The compute dtype (that of the embedding table).
    pub fn dtype(&self) -> DType {
        self.embed_tokens.val().dtype()
    }

    /// Final hidden states `[batch, seq, hidden]` (after `model.norm`).
    ///
    /// `positions` are the RoPE positions of the new tokens; `bias` masks keys (causal, padding);
    /// with a `cache`, the keys/values of the new tokens are appended to it.
    pub fn forward_hidden(
        &self,
        input_ids: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        bias: &AttentionBias<B>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let [b, s] = input_ids.dims();
        let head_dim = self.layers.first().map(|l| l.self_attn.head_dim).unwrap_or(2);
        let rope = Rope::new(positions, head_dim, self.rope_theta, self.dtype());
        let embed = self.embed_tokens.val();
        let hidden = embed.dims()[1];
        let mut x = embed.select(0, input_ids.reshape([b * s])).reshape([b, s, hidden]);
        for (i, layer) in self.layers.iter().enumerate() {
            let c = cache.as_deref_mut().map(|c| (c, i));
            x = layer.forward(x, &rope, bias, c);
        }
        if let Some(c) = cache {
            c.advance(s);
        }
        self.norm.forward(x)
    }

    /// Logits `[batch, seq, vocab]` in f32 from final hidden states.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let w = match &self.lm_head {
            Some(w) => w.val(),
            None => self.embed_tokens.val().transpose(),
        };
        research_kernels::linear::linear(hidden, w, None).cast(DType::F32)
    }

    /// Teacher-forced log-probs for one batch of equal-length sequences `[batch, seq]`:
    /// entry `[b, t]` is `log p(ids[b, t+1] | ids[b, ..=t])`, so the result is `[batch, seq-1]`.
    pub fn score(&self, input_ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 2>> {
        let [b, s] = input_ids.dims();
        if s < 2 {
            return Err(ModelError::Input("scoring needs at least two tokens".into()));
        }
        let device = input_ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..s as i64, &device)
            .reshape([1, s])
            .expand([b, s]);
        let bias = AttentionBias::causal(b, s, s, 0, &device);
        let hidden = self.forward_hidden(input_ids.clone(), positions, &bias, None);
        let logp = log_softmax(self.logits(hidden.narrow(1, 0, s - 1)), 2);
        let targets = input_ids.narrow(1, 1, s - 1).reshape([b, s - 1, 1]);
        Ok(logp.gather(2, targets).reshape([b, s - 1]))
    }
}
