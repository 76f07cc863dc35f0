//! The BERT encoder (`BertModel` without its pooler), module by module, with the HF names.
//!
//! ```text
//! [bert.]embeddings.word_embeddings                 [vocab, hidden]
//! [bert.]embeddings.position_embeddings             [max_positions, hidden]
//! [bert.]embeddings.token_type_embeddings           [type_vocab, hidden]
//! [bert.]embeddings.LayerNorm                       weight, bias
//! [bert.]encoder.layer.{i}.attention.self.{query,key,value}   Linear with bias
//! [bert.]encoder.layer.{i}.attention.output.dense             Linear with bias
//! [bert.]encoder.layer.{i}.attention.output.LayerNorm         post-norm after the residual
//! [bert.]encoder.layer.{i}.intermediate.dense                 Linear, then exact (erf) GELU
//! [bert.]encoder.layer.{i}.output.dense                       Linear
//! [bert.]encoder.layer.{i}.output.LayerNorm                   post-norm after the residual
//! ```
//!
//! The `bert.` prefix (checkpoints saved from `BertForMaskedLM` and friends) is detected and
//! accepted; `pooler.*` and any head are ignored. Inputs are right-padded; a key padding mask keeps
//! padding out of attention (an additive f32 bias, as transformers' mask). LayerNorm and softmax are
//! computed in f32 whatever the compute dtype.

use burn::module::{Module, Param};
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorCreationOptions, TensorData};

use research_kernels::attention::{attention, AttentionBias, MASKED};
use research_model_io::{Checkpoint, FloatType, ModelError, Result};

use crate::config::BertConfig;

/// A linear layer stored as `[in, out]` (HF stores `[out, in]`; the loader transposes), with bias.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// `[in_features, out_features]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[out_features]`.
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Linear<B> {
    /// `x @ W + b` over the last dimension (`research_kernels::linear`: one cuBLASLt call on
    /// burn-cuda, burn's matmul elsewhere).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        research_kernels::linear::linear(x, self.weight.val(), Some(self.bias.val()))
    }
}

/// `LayerNorm` over the last dimension, normalised in f32.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// `[hidden]`.
    pub bias: Param<Tensor<B, 1>>,
    /// Epsilon added to the variance.
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// `(x - mean) / sqrt(var + eps) * weight + bias` (biased variance), in f32, cast back.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let x = x.cast(DType::F32);
        let centred = x.clone() - x.mean_dim(D - 1);
        let var = centred.clone().square().mean_dim(D - 1);
        let normed = centred * (var + self.eps).sqrt().recip();
        let w = self.weight.val().cast(DType::F32).unsqueeze();
        let b = self.bias.val().cast(DType::F32).unsqueeze();
        (normed * w + b).cast(dtype)
    }
}

/// `embeddings.*`: word + token type + absolute position embeddings, then LayerNorm.
#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    /// `word_embeddings.weight`, `[vocab, hidden]`.
    pub word_embeddings: Param<Tensor<B, 2>>,
    /// `position_embeddings.weight`, `[max_positions, hidden]`.
    pub position_embeddings: Param<Tensor<B, 2>>,
    /// `token_type_embeddings.weight`, `[type_vocab, hidden]`.
    pub token_type_embeddings: Param<Tensor<B, 2>>,
    /// `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
}

impl<B: Backend> BertEmbeddings<B> {
    /// `[batch, seq]` ids (positions `0..seq`, token types 0 unless given) to `[batch, seq, hidden]`.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, token_type_ids: Option<Tensor<B, 2, Int>>) -> Tensor<B, 3> {
        let [b, s] = input_ids.dims();
        let table = self.word_embeddings.val();
        let hidden = table.dims()[1];
        let words = table.select(0, input_ids.reshape([b * s])).reshape([b, s, hidden]);
        let types = match token_type_ids {
            Some(t) => self
                .token_type_embeddings
                .val()
                .select(0, t.reshape([b * s]))
                .reshape([b, s, hidden]),
            None => self
                .token_type_embeddings
                .val()
                .narrow(0, 0, 1)
                .reshape([1, 1, hidden])
                .expand([b, s, hidden]),
        };
        let positions = self.position_embeddings.val().narrow(0, 0, s).reshape([1, s, hidden]);
        // transformers' order: (inputs_embeds + token_type_embeddings) + position_embeddings.
        self.layer_norm.forward(words + types + positions)
    }
}

/// `attention.self`: multi-head scaled dot-product attention.
#[derive(Module, Debug)]
pub struct BertSelfAttention<B: Backend> {
    /// `query`, `[hidden, hidden]`.
    pub query: Linear<B>,
    /// `key`, `[hidden, hidden]`.
    pub key: Linear<B>,
    /// `value`, `[hidden, hidden]`.
    pub value: Linear<B>,
    /// Heads.
    pub num_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
}

impl<B: Backend> BertSelfAttention<B> {
    /// `x`: `[batch, seq, hidden]`; `bias` masks padding keys.
    pub fn forward(&self, x: Tensor<B, 3>, bias: &AttentionBias<B>) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let (h, d) = (self.num_heads, self.head_dim);
        let split = |t: Tensor<B, 3>| t.reshape([b, s, h, d]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        attention(q, k, v, bias).swap_dims(1, 2).reshape([b, s, h * d])
    }
}

/// `attention.output` and `output`: dense, dropout (a no-op at inference), residual, LayerNorm.
#[derive(Module, Debug)]
pub struct BertResidualOutput<B: Backend> {
    /// `dense`.
    pub dense: Linear<B>,
    /// `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
}

impl<B: Backend> BertResidualOutput<B> {
    /// `LayerNorm(dense(x) + residual)`.
    pub fn forward(&self, x: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        self.layer_norm.forward(self.dense.forward(x) + residual)
    }
}

/// `encoder.layer.{i}.attention`.
#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    /// `attention.self`.
    pub self_attention: BertSelfAttention<B>,
    /// `attention.output`.
    pub output: BertResidualOutput<B>,
}

/// `encoder.layer.{i}`: post-norm block (attention, then GELU feed-forward).
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    /// `attention`.
    pub attention: BertAttention<B>,
    /// `intermediate.dense`, `[hidden, intermediate]`.
    pub intermediate: Linear<B>,
    /// `output` (`dense` `[intermediate, hidden]` and `LayerNorm`).
    pub output: BertResidualOutput<B>,
}

impl<B: Backend> BertLayer<B> {
    /// One block over `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>, bias: &AttentionBias<B>) -> Tensor<B, 3> {
        let a = self.attention.self_attention.forward(x.clone(), bias);
        let a = self.attention.output.forward(a, x);
        let i = gelu(self.intermediate.forward(a.clone()));
        self.output.forward(i, a)
    }
}

/// `BertModel` without the pooler: the embeddings and the encoder stack.
#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    /// `embeddings`.
    pub embeddings: BertEmbeddings<B>,
    /// `encoder.layer.*`.
    pub layers: Vec<BertLayer<B>>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest input.
    pub max_position_embeddings: usize,
    /// Model width.
    pub hidden_size: usize,
}

/// The tensor-name prefix of a checkpoint: `""` or `"bert."`.
pub fn detect_prefix(ckpt: &Checkpoint) -> &'static str {
    let probe = "embeddings.word_embeddings.weight";
    if !ckpt.contains(probe) && ckpt.contains(&format!("bert.{probe}")) {
        "bert."
    } else {
        ""
    }
}

impl<B: Backend> BertModel<B> {
    /// Loads a checkpoint's weights in `dtype` on `device`, checking every shape against `config`.
    /// Tensor names may carry a `bert.` prefix; the pooler and any task head are ignored.
    pub fn load(config: &BertConfig, ckpt: &Checkpoint, dtype: FloatType, device: &B::Device) -> Result<Self> {
        let c = config;
        let p = detect_prefix(ckpt);
        let (hid, inter) = (c.hidden_size, c.intermediate_size);
        let opts = || TensorCreationOptions::<B>::new(device.clone()).with_dtype(dtype.dtype());
        let mat = |name: &str, rows: usize, cols: usize, transpose: bool| -> Result<Param<Tensor<B, 2>>> {
            let data = ckpt.load(&format!("{p}{name}"), &[rows, cols], transpose, dtype)?;
            Ok(Param::from_tensor(Tensor::from_data(data, opts())))
        };
        let vec = |name: &str, n: usize| -> Result<Param<Tensor<B, 1>>> {
            let data = ckpt.load(&format!("{p}{name}"), &[n], false, dtype)?;
            Ok(Param::from_tensor(Tensor::from_data(data, opts())))
        };
        let linear = |prefix: &str, fan_in: usize, fan_out: usize| -> Result<Linear<B>> {
            Ok(Linear {
                weight: mat(&format!("{prefix}.weight"), fan_out, fan_in, true)?,
                bias: vec(&format!("{prefix}.bias"), fan_out)?,
            })
        };
        let norm = |prefix: &str| -> Result<LayerNorm<B>> {
            Ok(LayerNorm {
                weight: vec(&format!("{prefix}.weight"), hid)?,
                bias: vec(&format!("{prefix}.bias"), hid)?,
                eps: c.layer_norm_eps,
            })
        };
        let embeddings = BertEmbeddings {
            word_embeddings: mat("embeddings.word_embeddings.weight", c.vocab_size, hid, false)?,
            position_embeddings: mat(
                "embeddings.position_embeddings.weight",
                c.max_position_embeddings,
                hid,
                false,
            )?,
            token_type_embeddings: mat("embeddings.token_type_embeddings.weight", c.type_vocab_size, hid, false)?,
            layer_norm: norm("embeddings.LayerNorm")?,
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = format!("encoder.layer.{i}");
            layers.push(BertLayer {
                attention: BertAttention {
                    self_attention: BertSelfAttention {
                        query: linear(&format!("{l}.attention.self.query"), hid, hid)?,
                        key: linear(&format!("{l}.attention.self.key"), hid, hid)?,
                        value: linear(&format!("{l}.attention.self.value"), hid, hid)?,
                        num_heads: c.num_attention_heads,
                        head_dim: c.head_dim(),
                    },
                    output: BertResidualOutput {
                        dense: linear(&format!("{l}.attention.output.dense"), hid, hid)?,
                        layer_norm: norm(&format!("{l}.attention.output.LayerNorm"))?,
                    },
                },
                intermediate: linear(&format!("{l}.intermediate.dense"), hid, inter)?,
                output: BertResidualOutput {
                    dense: linear(&format!("{l}.output.dense"), inter, hid)?,
                    layer_norm: norm(&format!("{l}.output.LayerNorm"))?,
                },
            });
        }
        Ok(Self {
            embeddings,
            layers,
            vocab_size: c.vocab_size,
            max_position_embeddings: c.max_position_embeddings,
            hidden_size: hid,
        })
    }

    /// Random weights of `config`'s shape in `dtype` (for benchmarks): matrices and embeddings
    /// drawn from N(0, 0.02²) as transformers' `initializer_range`, biases 0, LayerNorm weights 1
    /// and biases 0. `seed` seeds the backend's generator.
    pub fn random(config: &BertConfig, dtype: FloatType, seed: u64, device: &B::Device) -> Self {
        use burn::tensor::Distribution;
        B::seed(device, seed);
        let c = config;
        let (hid, inter) = (c.hidden_size, c.intermediate_size);
        let opts = || TensorCreationOptions::<B>::new(device.clone()).with_dtype(dtype.dtype());
        let mat = |rows: usize, cols: usize| {
            Param::from_tensor(Tensor::<B, 2>::random(
                [rows, cols],
                Distribution::Normal(0.0, 0.02),
                opts(),
            ))
        };
        let zeros = |n: usize| Param::from_tensor(Tensor::<B, 1>::zeros([n], opts()));
        let ones = |n: usize| Param::from_tensor(Tensor::<B, 1>::ones([n], opts()));
        let linear = |fan_in: usize, fan_out: usize| Linear {
            weight: mat(fan_in, fan_out),
            bias: zeros(fan_out),
        };
        let norm = || LayerNorm {
            weight: ones(hid),
            bias: zeros(hid),
            eps: c.layer_norm_eps,
        };
        let embeddings = BertEmbeddings {
            word_embeddings: mat(c.vocab_size, hid),
            position_embeddings: mat(c.max_position_embeddings, hid),
            token_type_embeddings: mat(c.type_vocab_size, hid),
            layer_norm: norm(),
        };
        let layers = (0..c.num_hidden_layers)
            .map(|_| BertLayer {
                attention: BertAttention {
                    self_attention: BertSelfAttention {
                        query: linear(hid, hid),
                        key: linear(hid, hid),
                        value: linear(hid, hid),
                        num_heads: c.num_attention_heads,
                        head_dim: c.head_dim(),
                    },
                    output: BertResidualOutput {
                        dense: linear(hid, hid),
                        layer_norm: norm(),
                    },
                },
                intermediate: linear(hid, inter),
                output: BertResidualOutput {
                    dense: linear(inter, hid),
                    layer_norm: norm(),
                },
            })
            .collect();
        Self {
            embeddings,
            layers,
            vocab_size: c.vocab_size,
            max_position_embeddings: c.max_position_embeddings,
            hidden_size: hid,
        }
    }

    /// The compute dtype (that of the word embeddings).
    pub fn dtype(&self) -> DType {
        self.embeddings.word_embeddings.val().dtype()
    }

    /// Last hidden states `[batch, seq, hidden]` for `[batch, seq]` ids; `bias` masks padding keys
    /// (see [`padding_bias`]). Positions are `0..seq` for every row (right padding).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Option<Tensor<B, 2, Int>>,
        bias: &AttentionBias<B>,
    ) -> Tensor<B, 3> {
        let mut x = self.embeddings.forward(input_ids, token_type_ids);
        for layer in &self.layers {
            x = layer.forward(x, bias);
        }
        x
    }

    /// Last hidden states of a host-side [`PaddedBatch`], after checking ids and length.
    pub fn forward_batch(&self, batch: &PaddedBatch, device: &B::Device) -> Result<Tensor<B, 3>> {
        if batch.seq > self.max_position_embeddings {
            return Err(ModelError::Input(format!(
                "sequence of {} tokens is longer than max_position_embeddings = {}",
                batch.seq, self.max_position_embeddings
            )));
        }
        if let Some(&id) = batch.input_ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(ModelError::Input(format!(
                "token id {id} is out of the vocabulary (vocab_size = {})",
                self.vocab_size
            )));
        }
        let ids: Vec<i64> = batch.input_ids.iter().map(|&i| i as i64).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch.batch, batch.seq]), device);
        let bias = padding_bias(&batch.attention_mask, batch.batch, batch.seq, device);
        Ok(self.forward(ids, None, &bias))
    }
}

/// Right-padded token ids on the host, row-major `[batch, seq]`, with their attention mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    /// Rows.
    pub batch: usize,
    /// Columns (the longest row).
    pub seq: usize,
    /// `[batch * seq]` ids, padding filled with the pad id.
    pub input_ids: Vec<u32>,
    /// `[batch * seq]`, 1 on real tokens, 0 on padding.
    pub attention_mask: Vec<u32>,
}

impl PaddedBatch {
    /// Pads `rows` on the right to the longest with `pad_id`. Empty rows are an error (a BERT input
    /// has at least `[CLS]`), as is an empty batch.
    pub fn new(rows: &[Vec<u32>], pad_id: u32) -> Result<Self> {
        if rows.is_empty() {
            return Err(ModelError::Input("empty batch".into()));
        }
        if let Some(i) = rows.iter().position(Vec::is_empty) {
            return Err(ModelError::Input(format!("row {i} has no tokens")));
        }
        let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut input_ids = Vec::with_capacity(rows.len() * seq);
        let mut attention_mask = Vec::with_capacity(rows.len() * seq);
        for r in rows {
            input_ids.extend_from_slice(r);
            input_ids.extend(std::iter::repeat_n(pad_id, seq - r.len()));
            attention_mask.extend(std::iter::repeat_n(1, r.len()));
            attention_mask.extend(std::iter::repeat_n(0, seq - r.len()));
        }
        Ok(Self {
            batch: rows.len(),
            seq,
            input_ids,
            attention_mask,
        })
    }

    /// Real tokens in row `i`.
    pub fn len_of(&self, i: usize) -> usize {
        self.attention_mask[i * self.seq..(i + 1) * self.seq]
            .iter()
            .filter(|&&m| m != 0)
            .count()
    }
}

/// The additive key-padding bias `[batch, 1, 1, seq]` of an attention mask `[batch * seq]`
/// (1 = attend, 0 = padding): 0 or [`MASKED`].
pub fn padding_bias<B: Backend>(mask: &[u32], batch: usize, seq: usize, device: &B::Device) -> AttentionBias<B> {
    let values: Vec<f32> = mask.iter().map(|&m| if m != 0 { 0.0 } else { MASKED }).collect();
    AttentionBias::from_host(&values, batch, 1, seq, device)
}
