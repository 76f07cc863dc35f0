//! AdamW (PyTorch's `torch.optim.AdamW` update) with gradient accumulation over micro-batches,
//! global gradient-norm clipping (`clip_grad_norm_`), and f32 master weights for low-precision
//! parameters. State is keyed by the parameter's module path (e.g. `layers.3.mlp.up_proj.weight`),
//! so it survives a save and a reload of the model.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor, TensorData};

use research_kernels::optim::{adamw_step, AdamWOutput, AdamWStep};

use crate::error::{io_err, GrpoError, Result};

/// AdamW hyperparameters (REFERENCE §5 defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// Learning rate after warm-up (1e-6).
    pub lr: f64,
    /// β1 (0.9).
    pub beta1: f64,
    /// β2 (0.999).
    pub beta2: f64,
    /// ε (1e-8).
    pub eps: f64,
    /// Decoupled weight decay (0.01).
    pub weight_decay: f64,
    /// Global gradient-norm clip (1.0); 0 disables it.
    pub max_grad_norm: f64,
    /// Linear warm-up steps from 0 to `lr` (0: constant).
    pub warmup_steps: u64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-6,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            warmup_steps: 0,
        }
    }
}

impl AdamWConfig {
    /// The learning rate of optimizer step `step` (1-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if self.warmup_steps > 0 && step < self.warmup_steps {
            self.lr * step as f64 / self.warmup_steps as f64
        } else {
            self.lr
        }
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct StepStats {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Whether the step was applied (false when the gradient norm was not finite).
    pub applied: bool,
}

struct ParamState<B: Backend> {
    m: Tensor<B, 1>,
    v: Tensor<B, 1>,
    /// f32 copy of a parameter stored in bf16/f16.
    master: Option<Tensor<B, 1>>,
}

/// AdamW over the float parameters of an autodiff module `M`.
pub struct AdamW<B: AutodiffBackend> {
    config: AdamWConfig,
    /// Optimizer steps taken.
    step: u64,
    state: HashMap<String, ParamState<B::InnerBackend>>,
    grads: HashMap<String, Tensor<B::InnerBackend, 1>>,
}

fn path_key(stack: &[String]) -> String {
    stack.join(".")
}

struct Accumulate<'a, B: AutodiffBackend> {
    stack: Vec<String>,
    grads: &'a B::Gradients,
    into: &'a mut HashMap<String, Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Accumulate<'_, B> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            let n = g.shape().num_elements();
            let g = g.cast(DType::F32).reshape([n]);
            let key = path_key(&self.stack);
            let sum = match self.into.remove(&key) {
                Some(acc) => acc + g,
                None => g,
            };
            self.into.insert(key, sum);
        }
    }
}

struct Update<'a, B: AutodiffBackend> {
    stack: Vec<String>,
    config: AdamWConfig,
    lr: f64,
    step: u64,
    scale: f64,
    grads: &'a mut HashMap<String, Tensor<B::InnerBackend, 1>>,
    state: &'a mut HashMap<String, ParamState<B::InnerBackend>>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Update<'_, B> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.stack.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let key = path_key(&self.stack);
        let Some(g) = self.grads.remove(&key) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let inner = tensor.inner();
        let dtype = inner.dtype();
        let shape = inner.shape();
        let n = shape.num_elements();
        let c = self.config;
        let st = self.state.remove(&key);
        let (m, v, master) = match st {
            Some(s) => (s.m, s.v, s.master),
            None => (g.zeros_like(), g.zeros_like(), None),
        };
        let p = match master {
            Some(p) => p,
            None => inner.cast(DType::F32).reshape([n]),
        };
        let h = AdamWStep {
            lr: self.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            step: self.step,
            grad_scale: self.scale,
        };
        let AdamWOutput { m, v, master: p, value } = adamw_step(g, m, v, p, dtype, &h);
        let value = value.reshape(shape);
        let master = (dtype != DType::F32).then_some(p);
        self.state.insert(key, ParamState { m, v, master });
        let value = Tensor::<B, D>::from_inner(value).require_grad();
        Param::from_mapped_value(id, value, mapper)
    }
}

impl<B: AutodiffBackend> AdamW<B> {
    /// A fresh optimizer.
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            step: 0,
            state: HashMap::new(),
            grads: HashMap::new(),
        }
    }

    /// The hyperparameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Adds the gradients of `module`'s parameters in `grads` (from one micro-batch's `backward`) to
    /// the accumulated ones.
    pub fn accumulate<M: AutodiffModule<B>>(&mut self, module: &M, grads: &B::Gradients) {
        let mut v = Accumulate::<B> {
            stack: Vec::new(),
            grads,
            into: &mut self.grads,
        };
        module.visit(&mut v);
    }

    /// Drops the accumulated gradients (a skipped step).
    pub fn discard(&mut self) {
        self.grads.clear();
    }

    /// The global L2 norm of the accumulated gradients.
    pub fn grad_norm(&self) -> f64 {
        // Summed on the device and read back once (one host synchronisation, not one per tensor),
        // in key order so that the f32 sum, and with it the run, is reproducible.
        let mut keys: Vec<&String> = self.grads.keys().collect();
        keys.sort();
        let mut total: Option<Tensor<B::InnerBackend, 1>> = None;
        for g in keys.into_iter().map(|k| &self.grads[k]) {
            let s = g.clone().square().sum();
            total = Some(match total {
                Some(t) => t + s,
                None => s,
            });
        }
        total.map_or(0.0, |t| t.into_scalar_f64()).sqrt()
    }

    /// Clips the accumulated gradients to the global norm and applies one AdamW step to `module`.
    /// A non-finite gradient norm skips the step (the gradients are dropped).
    pub fn step<M: AutodiffModule<B>>(&mut self, module: M) -> (M, StepStats) {
        let grad_norm = self.grad_norm();
        let lr = self.config.lr_at(self.step + 1);
        if !grad_norm.is_finite() {
            self.grads.clear();
            return (
                module,
                StepStats {
                    grad_norm,
                    lr,
                    applied: false,
                },
            );
        }
        self.step += 1;
        let max = self.config.max_grad_norm;
        let scale = if max > 0.0 {
            (max / (grad_norm + 1e-6)).min(1.0)
        } else {
            1.0
        };
        let mut u = Update::<B> {
            stack: Vec::new(),
            config: self.config,
            lr,
            step: self.step,
            scale,
            grads: &mut self.grads,
            state: &mut self.state,
        };
        let module = module.map(&mut u);
        self.grads.clear();
        (
            module,
            StepStats {
                grad_norm,
                lr,
                applied: true,
            },
        )
    }

    /// Writes the state (`exp_avg`, `exp_avg_sq`, f32 masters) to `path` as safetensors, with the
    /// step count in the metadata file beside it (`path` with extension `json`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = Vec::new();
        let sorted: BTreeMap<_, _> = self.state.iter().collect();
        for (k, s) in sorted {
            tensors.push((format!("{k}.exp_avg"), s.m.clone().into_data()));
            tensors.push((format!("{k}.exp_avg_sq"), s.v.clone().into_data()));
            if let Some(p) = &s.master {
                tensors.push((format!("{k}.master"), p.clone().into_data()));
            }
        }
        research_model_io::write_safetensors(path, &tensors)?;
        let meta = serde_json::json!({ "step": self.step, "config": self.config });
        let meta_path = path.with_extension("json");
        std::fs::write(&meta_path, serde_json::to_string_pretty(&meta).unwrap_or_default())
            .map_err(io_err(&meta_path))?;
        Ok(())
    }

    /// Reads a state written by [`AdamW::save`] onto `device`. The hyperparameters stay those of
    /// `self` (a resumed run may change them on purpose); the step count comes from the file.
    pub fn load(&mut self, path: &Path, device: &burn::tensor::Device<B::InnerBackend>) -> Result<()> {
        let bad = |message: String| GrpoError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let meta_path = path.with_extension("json");
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&meta_path).map_err(io_err(&meta_path))?)
                .map_err(|e| bad(format!("{}: {e}", meta_path.display())))?;
        let step = meta["step"]
            .as_u64()
            .ok_or_else(|| bad(format!("{}: missing `step`", meta_path.display())))?;
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let mut state: HashMap<String, ParamState<B::InnerBackend>> = HashMap::new();
        let read = |name: &str| -> Result<Tensor<B::InnerBackend, 1>> {
            let view = st.tensor(name).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
            if view.dtype() != safetensors::Dtype::F32 || view.shape().len() != 1 {
                return Err(bad(format!("tensor `{name}`: expected a 1-d f32 tensor")));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let n = values.len();
            Ok(Tensor::from_data(TensorData::new(values, [n]), device))
        };
        for name in st.names() {
            if let Some(key) = name.strip_suffix(".exp_avg") {
                state.insert(
                    key.to_string(),
                    ParamState {
                        m: read(name)?,
                        v: read(&format!("{key}.exp_avg_sq"))?,
                        master: if st.names().iter().any(|n| *n == format!("{key}.master")) {
                            Some(read(&format!("{key}.master"))?)
                        } else {
                            None
                        },
                    },
                );
            }
        }
        self.step = step;
        self.state = state;
        self.grads.clear();
        Ok(())
    }
}

trait IntoScalarF64 {
    fn into_scalar_f64(self) -> f64;
}

impl<B: Backend> IntoScalarF64 for Tensor<B, 1> {
    fn into_scalar_f64(self) -> f64 {
        self.into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .map(|v| v[0])
            .unwrap_or(f64::NAN)
    }
}

impl<B: AutodiffBackend> AdamW<B> {
    /// The accumulated gradient of the parameter at module path `key` (flattened, in the
    /// parameter's own layout), if any.
    pub fn accumulated_grad(&self, key: &str) -> Option<Vec<f32>> {
        self.grads.get(key).map(|g| {
            g.clone()
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap_or_default()
        })
    }
}

struct Find<'a> {
    stack: Vec<String>,
    key: &'a str,
    found: Option<(Vec<usize>, Vec<f32>)>,
}

impl<B: Backend> ModuleVisitor<B> for Find<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if path_key(&self.stack) == self.key {
            let t = param.val();
            let shape = t.dims().to_vec();
            let values = t.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default();
            self.found = Some((shape, values));
        }
    }
}

/// The shape and values (as f32) of the float parameter at module path `key`
/// (e.g. `layers.0.self_attn.q_proj.weight`), if the module has one.
pub fn param_values<B: Backend, M: Module<B>>(module: &M, key: &str) -> Option<(Vec<usize>, Vec<f32>)> {
    let mut f = Find {
        stack: Vec::new(),
        key,
        found: None,
    };
    module.visit(&mut f);
    f.found
}
