//! Run-time choice of backend and dtype among those compiled in.
//!
//! Model code is generic over the burn [`Backend`]; a program picks one at run time with
//! [`BackendKind`] and runs a generic closure-like [`WithBackend`] through [`dispatch`]. The
//! float dtype is a run-time value too ([`FloatType`]): burn 0.21 tensors carry their dtype.
//!
//! | kind | burn backend | feature | dtypes |
//! |---|---|---|---|
//! | `cpu` | burn-ndarray | `cpu` (default) | f32 |
//! | `cuda` | burn-cuda (CubeCL, no fusion) | `cuda` | f32, bf16, f16 |
//! | `tch-cpu` | burn-tch on the CPU | `tch` | f32, bf16, f16 |
//! | `tch-cuda` | burn-tch on CUDA | `tch` | f32, bf16, f16 |

use burn::tensor::backend::Backend;
use research_qwen2::FloatType;

use crate::error::{EngineError, Result};

/// A backend this program may run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// burn-ndarray on the CPU.
    Cpu,
    /// burn-cuda on an NVIDIA GPU.
    Cuda,
    /// libtorch on the CPU.
    TchCpu,
    /// libtorch on an NVIDIA GPU.
    TchCuda,
}

impl BackendKind {
    /// Every kind, compiled in or not.
    pub const ALL: [BackendKind; 4] = [
        BackendKind::Cpu,
        BackendKind::Cuda,
        BackendKind::TchCpu,
        BackendKind::TchCuda,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
            BackendKind::TchCpu => "tch-cpu",
            BackendKind::TchCuda => "tch-cuda",
        }
    }

    /// The cargo feature that compiles this backend in.
    pub fn feature(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
            BackendKind::TchCpu | BackendKind::TchCuda => "tch",
        }
    }

    /// Whether this binary was built with the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Cpu => cfg!(feature = "cpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
            BackendKind::TchCpu | BackendKind::TchCuda => cfg!(feature = "tch"),
        }
    }

    /// The kinds compiled into this binary.
    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|k| k.is_compiled()).collect()
    }

    /// The float types this backend computes in.
    pub fn supports(self, dtype: FloatType) -> bool {
        match self {
            BackendKind::Cpu => dtype == FloatType::F32,
            _ => true,
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            EngineError::Backend(format!(
                "unknown backend `{s}` (expected one of cpu, cuda, tch-cpu, tch-cuda; compiled in: {})",
                names(&Self::compiled())
            ))
        })
    }
}

fn names(kinds: &[BackendKind]) -> String {
    kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

/// Work generic over the backend, run by [`dispatch`].
pub trait WithBackend {
    /// What the work returns.
    type Output;
    /// Runs on backend `B` and `device`.
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

/// Work generic over an autodiff backend (training), run by [`dispatch_autodiff`].
pub trait WithAutodiffBackend {
    /// What the work returns.
    type Output;
    /// Runs on autodiff backend `B` and `device`.
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

/// The CPU backend type.
#[cfg(feature = "cpu")]
pub type CpuBackend = burn::backend::NdArray<f32>;
/// The CUDA backend type (CubeCL CUDA runtime, without the fusion wrapper).
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda<f32, i32>;
/// The libtorch backend type.
#[cfg(feature = "tch")]
pub type TchBackend = burn::backend::LibTorch<f32>;

fn check(kind: BackendKind, dtype: FloatType) -> Result<()> {
    if !kind.is_compiled() {
        return Err(EngineError::Backend(format!(
            "backend `{kind}` is not compiled into this binary (rebuild with `--features {}`; compiled in: {})",
            kind.feature(),
            names(&BackendKind::compiled())
        )));
    }
    if !kind.supports(dtype) {
        return Err(EngineError::Backend(format!(
            "backend `{kind}` does not compute in {dtype} (use --dtype f32, or a GPU/libtorch backend for bf16 and f16)"
        )));
    }
    Ok(())
}

/// Checks that `kind` is compiled in and computes in `dtype`, then runs `work` on it.
#[cfg_attr(
    not(any(feature = "cpu", feature = "cuda", feature = "tch")),
    allow(unused_variables)
)]
#[allow(unreachable_code)] // the final `unreachable!` when every backend is compiled in
pub fn dispatch<W: WithBackend>(kind: BackendKind, dtype: FloatType, work: W) -> Result<W::Output> {
    check(kind, dtype)?;
    #[allow(unreachable_code, unused_variables)]
    match kind {
        BackendKind::Cpu => {
            #[cfg(feature = "cpu")]
            return Ok(work.run::<CpuBackend>(Default::default()));
        }
        BackendKind::Cuda => {
            #[cfg(feature = "cuda")]
            return Ok(work.run::<CudaBackend>(burn::backend::cuda::CudaDevice::new(0)));
        }
        BackendKind::TchCpu => {
            #[cfg(feature = "tch")]
            return Ok(work.run::<TchBackend>(burn::backend::libtorch::LibTorchDevice::Cpu));
        }
        BackendKind::TchCuda => {
            #[cfg(feature = "tch")]
            return Ok(work.run::<TchBackend>(burn::backend::libtorch::LibTorchDevice::Cuda(0)));
        }
    }
    unreachable!("backend {kind} passed the compiled-in check")
}

/// Gradient checkpointing of the autodiff backend that [`dispatch_autodiff`] builds.
///
/// `Balanced` is burn's `BalancedCheckpointing`: the outputs of memory-bound operations (element-wise
/// ops, softmax, norms) are recomputed in the backward pass instead of kept, the outputs of
/// compute-bound ones (matrix products) are kept. It lowers peak memory for some recomputation; it is
/// op-level, not the per-decoder-layer recomputation of PyTorch's `gradient_checkpointing_enable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Checkpointing {
    /// Keep every intermediate the backward needs.
    #[default]
    Off,
    /// burn's `BalancedCheckpointing`.
    Balanced,
}

impl std::str::FromStr for Checkpointing {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "off" | "none" => Ok(Self::Off),
            "balanced" => Ok(Self::Balanced),
            other => Err(EngineError::Backend(format!(
                "unknown gradient checkpointing `{other}` (expected off or balanced)"
            ))),
        }
    }
}

/// Like [`dispatch`], for training: runs `work` on `Autodiff<kind's backend>` with the given
/// gradient checkpointing strategy.
pub fn dispatch_autodiff<W: WithAutodiffBackend>(
    kind: BackendKind,
    dtype: FloatType,
    checkpointing: Checkpointing,
    work: W,
) -> Result<W::Output> {
    use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, NoCheckpointing};
    match checkpointing {
        Checkpointing::Off => dispatch_autodiff_with::<W, NoCheckpointing>(kind, dtype, work),
        Checkpointing::Balanced => dispatch_autodiff_with::<W, BalancedCheckpointing>(kind, dtype, work),
    }
}

#[cfg_attr(
    not(any(feature = "cpu", feature = "cuda", feature = "tch")),
    allow(unused_variables)
)]
#[allow(unreachable_code)] // the final `unreachable!` when every backend is compiled in
fn dispatch_autodiff_with<W, C>(kind: BackendKind, dtype: FloatType, work: W) -> Result<W::Output>
where
    W: WithAutodiffBackend,
    C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy,
{
    use burn::backend::Autodiff;
    check(kind, dtype)?;
    #[allow(unreachable_code, unused_variables)]
    match kind {
        BackendKind::Cpu => {
            #[cfg(feature = "cpu")]
            return Ok(work.run::<Autodiff<CpuBackend, C>>(Default::default()));
        }
        BackendKind::Cuda => {
            #[cfg(feature = "cuda")]
            return Ok(work.run::<Autodiff<CudaBackend, C>>(burn::backend::cuda::CudaDevice::new(0)));
        }
        BackendKind::TchCpu => {
            #[cfg(feature = "tch")]
            return Ok(work.run::<Autodiff<TchBackend, C>>(burn::backend::libtorch::LibTorchDevice::Cpu));
        }
        BackendKind::TchCuda => {
            #[cfg(feature = "tch")]
            return Ok(work.run::<Autodiff<TchBackend, C>>(burn::backend::libtorch::LibTorchDevice::Cuda(0)));
        }
    }
    unreachable!("backend {kind} passed the compiled-in check")
}
