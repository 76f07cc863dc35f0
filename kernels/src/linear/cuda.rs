//! cuBLASLt on burn-cuda's buffers and stream.
//!
//! How the pieces meet (burn 0.21 / cubecl 0.10):
//! - A burn-cuda float tensor is a `burn_cubecl::tensor::CubeTensor<CudaRuntime>`: a cubecl
//!   `Handle` (buffer + byte offsets) with shape and strides. We reach it from a generic
//!   `Tensor<B, D>` by `TypeId`: the primitive is downcast through `Any`, no unsafe casts.
//! - The device pointer of a handle is `ComputeServer::get_resource(binding, stream)` (the
//!   `GpuResource::ptr`, offset included). We call it inside `DeviceHandle::submit_blocking`, a
//!   closure that runs on cubecl's device thread with `&mut CudaServer`, in order with the kernel
//!   launches burn queued before; resolving the bindings there also makes the current stream wait
//!   for buffers written on another stream (cubecl's own event logic).
//! - The `CUstream` the server launches this thread's kernels on is private to cubecl-cuda 0.10
//!   (`compute::stream::Stream::sys`, `cubecl-cuda-0.10.0/src/compute/stream.rs:24`, inside the
//!   private `CudaServer::streams`, `src/compute/server.rs:54`; no accessor exists). `CudaServer`
//!   derives `Debug`, which prints each stream's `sys` pointer in pool order; we read the pointer of
//!   this thread's pool slot (`StreamId::value % max_streams`, `cubecl-runtime` `stream/base.rs`)
//!   from that output once per (device, stream id), check it with `cuStreamQuery`, and cache it.
//!   The cuBLASLt call is then enqueued on that stream from the device thread: ordered after
//!   burn's producers and before its consumers, no host synchronisation.
//! - The output is reserved in burn's memory pool on the same stream, as `client.empty` would
//!   (see "Host cost per call"); the cuBLASLt workspace (32 MiB per stream) is one `cuMemAlloc`
//!   kept for the process.
//!
//! Decode products (issue 7's second part). A forward linear product with `M ≤ 8` rows in
//! bf16/f16 whose weight layout `linear/gemv.rs` accepts runs our GEMV kernels (`gemv.cu`, NVRTC
//! for the device's architecture, loaded once per device and `(dtype, M)`, launched with
//! `cuLaunchKernel`, or `cuLaunchKernelEx` on Hopper (below), on the same stream; split-K needs an
//! f32 scratch buffer and arrival counters, both kept per stream for the process: the scratch one
//! `cuMemAlloc` grown when a larger product comes (a launch reads its partial sums only within
//! itself, and the next launch on the stream touches them only after its `griddepcontrol.wait`,
//! i.e. after this one has finished, or not before this one finished at all without programmatic
//! dependent launch, so it may reuse them; outgrown buffers are kept, not freed under a kernel that
//! may still run), the counters one `cuMemAlloc` of `gemv::COUNTERS` u32, zeroed once on that
//! stream and left at zero by every launch). The device call decides last: when `W` (or,
//! K-contiguous, `X`) is not 16-byte aligned, or the module fails to compile/load or launch, the
//! same call runs cuBLASLt instead (counted in `gemv_counts().1`, warned once per reason), so a
//! planned GEMV never needs a host-side fallback. `RESEARCH_GEMV=off` plans none (for
//! comparisons). Backward products and the batched `matmul` never take the GEMV route.
//!
//! Host round trips. `submit_blocking` makes the calling thread wait until cubecl's device thread
//! has run the closure: a few microseconds per product, comparable to a whole 25 MB GEMV. cubecl
//! enqueues its own kernels with the non-blocking `DeviceHandle::submit` (same FIFO queue, same
//! `StreamId` propagated), so the closure still runs in order with burn's work when submitted that
//! way; what is lost is the `Result`, i.e. the fallback to burn's path when the call fails. So:
//! the first product of each host-side key (device, dtype, shapes and strides, bias, GEMV geometry;
//! pointer alignment is not part of it) is blocking, and a failure there takes burn's path as
//! before; once a key has succeeded, later products of that key are submitted without waiting.
//! What can still fail on the device thread then is resolving a buffer (a cubecl bug), building a
//! cuBLASLt plan for a new pointer alignment, or a launch into a broken context; such a failure is
//! logged as an error, counted in `cublaslt_counts().1`, the product's output is left undefined,
//! and every later product waits again (falling back to burn's path on failure). GEMV problems
//! cannot fail that way (above). `RESEARCH_GEMM_SYNC=1` keeps every call blocking.
//!
//! Host cost per call. A decode GEMV over a 25 MB weight takes 6–8 µs of GPU time, so the host
//! path of a product must stay below that or the GPU idles between calls. Per product the calling
//! thread reserves the output and submits one closure: the reservation is cubecl's own
//! (`ComputeClient::empty` = the server's layout policy applied host-side, then an
//! `initialize_memory` task for the device thread; the policy is reached through the server
//! utilities of the public `DeviceHandle::utilities`), and with `RESEARCH_GEMM_ONE_TASK=1` its
//! `initialize_memory` runs at the start of the product's closure instead of as a task of its own
//! (one device-thread task per product, not two). Off by default: run L (one H200) measured it equal
//! at 500 back-to-back calls (3584 × 3584, M = 1: 7.78 against 7.71 µs) and slower at 50 (9.80
//! against 8.80 µs: cubecl's device thread starts on a batch of tasks, so halving the tasks per call
//! delays the first launch of a short burst). Environment switches are read
//! once per process, the `DeviceHandle`, its utilities and the keys that already succeeded are looked
//! up in thread-local lists (no global lock, no hashing on a hit), and the split-K scratch is not a
//! per-call allocation. On the device thread the closure resolves 3–4 buffers and makes one launch.
//!
//! Programmatic dependent launch. On Hopper (compute capability ≥ 9) the GEMV kernels are launched
//! with `cuLaunchKernelEx` and `CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION`: a GEMV that
//! follows another kernel on the stream may be scheduled while that one drains, prefetches its
//! first weight rows to L2, and waits (`griddepcontrol.wait`) before reading anything the previous
//! kernels wrote; every GEMV kernel signals `griddepcontrol.launch_dependents` first thing, so
//! back-to-back GEMVs overlap one's tail with the next one's start (`gemv.cu`'s doc comment gives
//! the reasoning, including why the prefetch is safe after an optimizer step). Counted in
//! `gemv_pdl_count()`; `RESEARCH_GEMV_PDL=0` launches plainly, as does any other device, and a
//! refused attribute launch falls back to `cuLaunchKernel` for the rest of the process (warned).

use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::Autodiff;
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, Shape, Tensor, TensorPrimitive};
use burn_cubecl::cubecl::cuda::CudaRuntime;
use burn_cubecl::cubecl::device::{Device, DeviceId};
use burn_cubecl::cubecl::device_handle::DeviceHandle;
use burn_cubecl::cubecl::server::{ComputeServer, Handle, MemoryLayoutDescriptor, MemoryLayoutPolicy, ServerUtilities};
use burn_cubecl::cubecl::stream_id::StreamId;
use burn_cubecl::cubecl::Runtime;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;
use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys as lts;

use super::gemv::{GemvGeometry, GemvParams, THREADS as GEMV_THREADS};
use super::{reference_forced, GemmPlan};
use crate::cuda_rt::{cast, float_prim};

/// The engine's burn-cuda backend type.
type Cuda = CubeBackend<CudaRuntime, f32, i32, u8>;
type CT = CubeTensor<CudaRuntime>;
/// burn-autodiff's tensor over burn-cuda (its module is private; the type is reached through the
/// backend's associated type).
type AutodiffTensor = <Autodiff<Cuda> as BackendTypes>::FloatTensorPrimitive;
type Server = <CudaRuntime as Runtime>::Server;
type DevKey = (u16, u32);

const WORKSPACE_BYTES: usize = 32 << 20;

/// The fused route when `B` is burn-cuda or burn-cuda under autodiff, else `None`.
pub(crate) fn try_linear<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    w: &Tensor<B, 2>,
    b: Option<&Tensor<B, 1>>,
) -> Option<Tensor<B, D>> {
    let id = TypeId::of::<B>();
    let plain = id == TypeId::of::<Cuda>();
    let ad_none = id == TypeId::of::<Autodiff<Cuda, NoCheckpointing>>();
    let ad_bal = id == TypeId::of::<Autodiff<Cuda, BalancedCheckpointing>>();
    if !(plain || ad_none || ad_bal) || reference_forced() || !cublaslt_present() {
        return None;
    }
    let xp = float_prim(x);
    let wp = float_prim(w);
    let bp = b.map(float_prim);
    let out: B::FloatTensorPrimitive = if plain {
        let y = gemm(
            cast::<_, CT>(xp).ok()?,
            cast::<_, CT>(wp).ok()?,
            bp.map(|b| cast::<_, CT>(b).ok()).unwrap_or(None),
            true,
        )?;
        cast(y).ok()?
    } else {
        type AT = AutodiffTensor;
        let xa = cast::<_, AT>(xp).ok()?;
        let wa = cast::<_, AT>(wp).ok()?;
        let ba = match bp {
            Some(b) => Some(cast::<_, AT>(b).ok()?),
            None => None,
        };
        let y = if ad_none {
            autodiff_linear::<NoCheckpointing>(xa, wa, ba)?
        } else {
            autodiff_linear::<BalancedCheckpointing>(xa, wa, ba)?
        };
        cast(y).ok()?
    };
    Some(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

/// The element strides of a burn-cuda (or burn-cuda under autodiff) tensor, else `None`.
pub(crate) fn strides_of<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<Vec<usize>> {
    let id = TypeId::of::<B>();
    let p = float_prim(t);
    if id == TypeId::of::<Cuda>() {
        return cast::<_, CT>(p).ok().map(|c| c.meta.strides().to_vec());
    }
    let is_ad = id == TypeId::of::<Autodiff<Cuda, NoCheckpointing>>()
        || id == TypeId::of::<Autodiff<Cuda, BalancedCheckpointing>>();
    if is_ad {
        return cast::<_, AutodiffTensor>(p)
            .ok()
            .map(|a| a.primitive.meta.strides().to_vec());
    }
    None
}

/// The fused batched product when `B` is burn-cuda or burn-cuda under autodiff, else `None`.
pub(crate) fn try_matmul<B: Backend, const D: usize>(a: &Tensor<B, D>, b: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    let id = TypeId::of::<B>();
    let plain = id == TypeId::of::<Cuda>();
    let ad_none = id == TypeId::of::<Autodiff<Cuda, NoCheckpointing>>();
    let ad_bal = id == TypeId::of::<Autodiff<Cuda, BalancedCheckpointing>>();
    if !(plain || ad_none || ad_bal) || D < 3 || reference_forced() || !cublaslt_present() {
        return None;
    }
    let (ap, bp) = (float_prim(a), float_prim(b));
    let out: B::FloatTensorPrimitive = if plain {
        cast(bmm(cast::<_, CT>(ap).ok()?, cast::<_, CT>(bp).ok()?)?).ok()?
    } else {
        let (aa, ba) = (cast::<_, AutodiffTensor>(ap).ok()?, cast::<_, AutodiffTensor>(bp).ok()?);
        let y = if ad_none {
            autodiff_bmm::<NoCheckpointing>(aa, ba)?
        } else {
            autodiff_bmm::<BalancedCheckpointing>(aa, ba)?
        };
        cast(y).ok()?
    };
    Some(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

/// Whether libcublasLt can be loaded (checked once).
fn cublaslt_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(|| {
        // SAFETY: only tries to dlopen the library by its candidate names.
        let ok = unsafe { lts::is_culib_present() };
        if !ok {
            tracing::warn!("libcublasLt not found; burn-cuda linear layers use the burn matmul path");
        }
        ok
    })
}

/// `x [.., K] @ w [K, N] (+ b [N])` on burn-cuda tensors through cuBLASLt (or, with `allow_gemv`,
/// the GEMV kernels when they take the problem), or `None` when the layout/dtype is not supported
/// or the call fails (the caller then takes the reference path).
pub(crate) fn gemm(x: CT, w: CT, bias: Option<CT>, allow_gemv: bool) -> Option<CT> {
    let dtype = x.dtype;
    if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) || w.dtype != dtype || x.qparams.is_some() {
        return None;
    }
    let plan = GemmPlan::new(x.meta.shape(), x.meta.strides(), w.meta.shape(), w.meta.strides())?;
    if let Some(b) = &bias {
        if b.dtype != dtype || b.meta.shape().len() != 1 || b.meta.shape()[0] != plan.n {
            return None;
        }
        if plan.n > 1 && b.meta.strides()[0] != 1 {
            return None;
        }
    }
    let mut out_dims: Vec<usize> = x.meta.shape().to_vec();
    *out_dims.last_mut()? = plan.n;
    let gemv = if allow_gemv {
        super::gemv_route_plan(dtype, &plan)
    } else {
        None
    };
    launch(&x, &w, bias.as_ref(), plan, out_dims, gemv)
}

/// Batched `a [.., M, K] @ b [.., K, N]` (equal batch dimensions) through one strided-batched
/// cuBLASLt call, or `None` when unsupported.
pub(crate) fn bmm(a: CT, b: CT) -> Option<CT> {
    let dtype = a.dtype;
    if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) || b.dtype != dtype || a.qparams.is_some() {
        return None;
    }
    let plan = GemmPlan::batched(a.meta.shape(), a.meta.strides(), b.meta.shape(), b.meta.strides())?;
    let mut out_dims: Vec<usize> = a.meta.shape().to_vec();
    *out_dims.last_mut()? = plan.n;
    launch(&a, &b, None, plan, out_dims, None)
}

/// What decides whether a product may be enqueued without waiting: everything the host knows
/// about it (not the pointers).
#[derive(Hash, PartialEq, Eq, Clone, Copy)]
struct HostKey {
    device: DevKey,
    dtype: u8,
    plan: GemmPlan,
    bias: bool,
    gemv: Option<GemvGeometry>,
}

fn dtype_code(dtype: DType) -> u8 {
    match dtype {
        DType::F32 => 0,
        DType::BF16 => 1,
        _ => 2,
    }
}

/// Keys whose first (blocking) product succeeded.
fn known_good() -> &'static Mutex<HashSet<HostKey>> {
    static KNOWN: OnceLock<Mutex<HashSet<HostKey>>> = OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// Set when a product enqueued without waiting failed: every later product waits again.
static POISONED: AtomicBool = AtomicBool::new(false);

/// Whether `RESEARCH_GEMM_SYNC=1` keeps every call blocking (read once per process).
fn sync_forced() -> bool {
    static SYNC: OnceLock<bool> = OnceLock::new();
    *SYNC.get_or_init(|| std::env::var("RESEARCH_GEMM_SYNC").is_ok_and(|v| v == "1"))
}

/// A device's handle and, with `RESEARCH_GEMM_ONE_TASK=1` (unless the downcast fails), its server
/// utilities (for reserving outputs host-side, see [`reserve_output`]).
type DeviceEntry = (DeviceId, DeviceHandle<Server>, Option<Arc<ServerUtilities<Server>>>);

thread_local! {
    /// This thread's copy of keys known to be good (a short list: one entry per layer shape).
    static KNOWN_HERE: std::cell::RefCell<Vec<HostKey>> = const { std::cell::RefCell::new(Vec::new()) };
    /// This thread's device handles (`DeviceHandle::new` takes cubecl's global channel lock).
    static HANDLES: std::cell::RefCell<Vec<DeviceEntry>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether burn's `client.empty` (its own device-thread task) reserves the output: the default;
/// `RESEARCH_GEMM_ONE_TASK=1` initializes the output inside the product's task instead (read once
/// per process; see the module docs for the measurement).
fn one_task_disabled() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    *OFF.get_or_init(|| !std::env::var("RESEARCH_GEMM_ONE_TASK").is_ok_and(|v| v.trim() == "1"))
}

fn device_handle(id: DeviceId) -> (DeviceHandle<Server>, Option<Arc<ServerUtilities<Server>>>) {
    HANDLES.with(|h| {
        let mut h = h.borrow_mut();
        if let Some((_, d, u)) = h.iter().find(|(i, _, _)| *i == id) {
            return (d.clone(), u.clone());
        }
        let d = DeviceHandle::<Server>::new(id);
        let u = if one_task_disabled() {
            None
        } else {
            d.utilities().downcast::<ServerUtilities<Server>>().ok()
        };
        h.push((id, d.clone(), u.clone()));
        (d, u)
    })
}

/// Reserves a contiguous `bytes`-byte output on this thread's stream the way cubecl's
/// `ComputeClient::empty` does (cubecl-runtime 0.10 `do_empty`: the server's layout policy applied
/// host-side), but returns the `initialize_memory` step to run on the device thread instead of
/// submitting it as a task of its own: [`Call::run`] does it first, so the output allocation and the
/// product are one device-thread task (in the same FIFO position `client.empty`'s task would have
/// had, right before the product's). Returns the output handle and the base handle to initialize.
fn reserve_output(utilities: &ServerUtilities<Server>, stream_id: StreamId, bytes: usize) -> Option<(Handle, Handle)> {
    let descriptor = MemoryLayoutDescriptor::contiguous([bytes].into(), 1);
    let (base, mut layouts) = utilities.layout_policy.apply(stream_id, &[descriptor]);
    if layouts.len() != 1 {
        return None;
    }
    Some((layouts.remove(0).memory, base))
}

fn may_skip_wait(key: &HostKey) -> bool {
    if sync_forced() || POISONED.load(Ordering::Relaxed) {
        return false;
    }
    if KNOWN_HERE.with(|k| k.borrow().contains(key)) {
        return true;
    }
    let known = known_good().lock().unwrap_or_else(|e| e.into_inner()).contains(key);
    if known {
        KNOWN_HERE.with(|k| k.borrow_mut().push(*key));
    }
    known
}

fn async_failure(reason: &str) {
    POISONED.store(true, Ordering::Relaxed);
    FALLBACKS.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        "a linear product enqueued without waiting failed on the device thread ({reason}); its output is \
         undefined; later products wait for the device thread and fall back to burn's path on failure"
    );
}

/// Allocates the contiguous output with burn and enqueues the product (GEMV kernels when `gemv`
/// is given, else cuBLASLt) on burn's stream: blocking the first time a key is seen, without
/// waiting afterwards (module docs).
fn launch(
    x: &CT,
    w: &CT,
    bias: Option<&CT>,
    plan: GemmPlan,
    out_dims: Vec<usize>,
    gemv: Option<GemvGeometry>,
) -> Option<CT> {
    let dtype = x.dtype;
    let elem = dtype.size();
    let bytes = plan.batch * plan.m * plan.n * elem;
    let device_id = x.device.to_id();
    let (device, utilities) = device_handle(device_id);
    // The output: reserved here and initialized by the product's own task when the server's
    // utilities are at hand, else through burn (`client.empty`, one more task).
    let stream_id = StreamId::current();
    let (out_handle, init) = match utilities.and_then(|u| reserve_output(&u, stream_id, bytes)) {
        Some((out, base)) => (out, Some((base, stream_id))),
        None => (x.client.empty(bytes), None),
    };
    let call = Call {
        plan,
        dtype,
        x: x.handle.clone(),
        w: w.handle.clone(),
        bias: bias.map(|b| b.handle.clone()),
        out: out_handle.clone(),
        init,
        gemv,
    };
    let key_device: DevKey = (device_id.type_id, device_id.index_id as u32);
    let key = HostKey {
        device: key_device,
        dtype: dtype_code(dtype),
        plan,
        bias: bias.is_some(),
        gemv,
    };
    let output = || {
        CT::new_contiguous(
            x.client.clone(),
            x.device.clone(),
            Shape::from(out_dims.clone()),
            out_handle.clone(),
            dtype,
        )
    };
    if may_skip_wait(&key) {
        device.submit(move |server| {
            if let Err(reason) = call.run(server, key_device) {
                async_failure(&reason);
            }
        });
        return Some(output());
    }
    match device.submit_blocking(move |server| call.run(server, key_device)) {
        Ok(Ok(())) => {
            known_good().lock().unwrap_or_else(|e| e.into_inner()).insert(key);
            Some(output())
        }
        Ok(Err(reason)) => {
            warn_once(&reason);
            None
        }
        Err(err) => {
            warn_once(&format!("device call failed: {err:?}"));
            None
        }
    }
}

fn warn_once(reason: &str) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    FALLBACKS.fetch_add(1, Ordering::Relaxed);
    crate::cuda_rt::warn_once(&SEEN, "cuBLASLt linear", "the burn matmul path", reason);
}

/// cuBLASLt products enqueued, and calls that failed over to burn's path after trying (or failed
/// on the device thread after being enqueued without waiting).
pub(crate) static LAUNCHED: AtomicU64 = AtomicU64::new(0);
pub(crate) static FALLBACKS: AtomicU64 = AtomicU64::new(0);
/// GEMV products enqueued, and planned GEMV products that ran on cuBLASLt instead.
pub(crate) static GEMV_LAUNCHED: AtomicU64 = AtomicU64::new(0);
pub(crate) static GEMV_DECLINED: AtomicU64 = AtomicU64::new(0);
/// GEMV products enqueued as programmatic dependents (`cuLaunchKernelEx`, Hopper); also counted in
/// `GEMV_LAUNCHED`.
pub(crate) static GEMV_PDL_LAUNCHED: AtomicU64 = AtomicU64::new(0);

fn gemv_declined(reason: &str) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    GEMV_DECLINED.fetch_add(1, Ordering::Relaxed);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.iter().any(|s| s == reason) {
        tracing::warn!("GEMV product ran on cuBLASLt instead: {reason}");
        seen.push(reason.to_string());
    }
}

struct Call {
    plan: GemmPlan,
    dtype: DType,
    x: Handle,
    w: Handle,
    bias: Option<Handle>,
    out: Handle,
    /// The output's base handle and the stream to initialize it on, first thing on the device
    /// thread ([`reserve_output`]); `None` when burn's `client.empty` already queued that.
    init: Option<(Handle, StreamId)>,
    /// The GEMV launch, when planned.
    gemv: Option<GemvGeometry>,
}

/// The cached cuBLASLt objects for one problem.
struct LtPlan {
    desc: lts::cublasLtMatmulDesc_t,
    a: lts::cublasLtMatrixLayout_t,
    b: lts::cublasLtMatrixLayout_t,
    d: lts::cublasLtMatrixLayout_t,
    algo: lts::cublasLtMatmulAlgo_t,
    workspace: usize,
}

#[derive(Hash, PartialEq, Eq, Clone, Copy)]
struct PlanKey {
    device: (u16, u32),
    dtype: u8,
    plan: (usize, usize, usize, bool, usize, bool, usize),
    batch: (usize, usize, usize),
    bias: bool,
    align: [u8; 4],
}

/// A GEMV kernel: device, layout, dtype name, rows, rows per step (N-contiguous).
type GemvFnKey = (DevKey, super::gemv::GemvLayout, &'static str, usize, usize);

#[derive(Default)]
struct LtState {
    handles: HashMap<(u16, u32), lts::cublasLtHandle_t>,
    streams: HashMap<((u16, u32), u64), usize>,
    workspaces: HashMap<usize, u64>,
    plans: HashMap<PlanKey, LtPlan>,
    /// `(major, minor)` compute capability per device.
    arch: HashMap<DevKey, (i32, i32)>,
    /// GEMV modules per device, dtype name and rows (failures cached too).
    gemv_modules: HashMap<(DevKey, &'static str, usize), Result<usize, String>>,
    gemv_functions: HashMap<GemvFnKey, usize>,
    /// Split-K arrival counters per stream (`gemv::COUNTERS` u32, zero between launches).
    gemv_counters: HashMap<usize, u64>,
    /// Split-K f32 scratch per stream: pointer and bytes.
    gemv_scratch: HashMap<usize, (u64, usize)>,
    /// Outgrown scratch buffers (kept: a launch enqueued earlier may still read them).
    gemv_retired: Vec<u64>,
}

// SAFETY: the raw cuBLASLt/CUDA handles are only used under the mutex, from cubecl's device
// threads, with the device's context current.
unsafe impl Send for LtState {}

fn state() -> &'static Mutex<LtState> {
    static STATE: OnceLock<Mutex<LtState>> = OnceLock::new();
    STATE.get_or_init(|| Mutex::new(LtState::default()))
}

fn align_of_ptr(p: u64) -> u8 {
    (p.trailing_zeros().min(8)) as u8
}

fn data_type(dtype: DType) -> lts::cudaDataType {
    match dtype {
        DType::BF16 => lts::cudaDataType::CUDA_R_16BF,
        DType::F16 => lts::cudaDataType::CUDA_R_16F,
        _ => lts::cudaDataType::CUDA_R_32F,
    }
}

fn lt_err(what: &str) -> impl Fn(lt::CublasError) -> String + '_ {
    move |e| format!("{what}: {e:?}")
}

impl Call {
    /// Resolves the buffers and enqueues the product: the GEMV kernels when planned and possible,
    /// else cuBLASLt. Counts what ran.
    fn run(mut self, server: &mut Server, device: DevKey) -> Result<(), String> {
        if let Some((base, init_stream)) = self.init.take() {
            // What `client.empty`'s own task would have done just before this one.
            let size = base.size();
            server.initialize_memory(base.memory, size, init_stream);
        }
        let stream_id = StreamId::current();
        let get = |server: &mut Server, h: Handle| {
            server
                .get_resource(h.binding(), stream_id)
                .map_err(|e| format!("get_resource: {e:?}"))
        };
        let rx = get(server, self.x)?;
        let rw = get(server, self.w)?;
        let rb = match self.bias {
            Some(b) => Some(get(server, b)?),
            None => None,
        };
        let ro = get(server, self.out)?;
        let gemv = self.gemv;
        let (px, pw, po) = (rx.resource().ptr, rw.resource().ptr, ro.resource().ptr);
        let pb = rb.as_ref().map(|r| r.resource().ptr);

        let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *st;
        let stream = match st.streams.get(&(device, stream_id.value)) {
            Some(&s) => s,
            None => {
                let s = find_stream(server, stream_id)?;
                st.streams.insert((device, stream_id.value), s);
                s
            }
        };
        if let Some(g) = gemv {
            let tried = if !g.pointers_aligned(px, pw) {
                Err("pointers not 16-byte aligned".to_string())
            } else {
                st.launch_gemv(device, stream, &g, self.dtype, |part, counters| {
                    GemvParams::new(&g, px, pw, pb.unwrap_or(0), po, part, counters)
                })
            };
            match tried {
                Ok(()) => {
                    GEMV_LAUNCHED.fetch_add(1, Ordering::Relaxed);
                    drop((rx, rw, rb, ro));
                    return Ok(());
                }
                // Whatever the GEMV kernels left in the output, cuBLASLt overwrites it below,
                // later on the same stream.
                Err(reason) => gemv_declined(&reason),
            }
        }
        let handle = match st.handles.get(&device) {
            Some(&h) => h,
            None => {
                let h = lt::create_handle().map_err(lt_err("cublasLtCreate"))?;
                st.handles.insert(device, h);
                h
            }
        };
        let workspace = match st.workspaces.get(&stream) {
            Some(&w) => w,
            None => {
                // SAFETY: plain device allocation in the server's current context.
                let w = unsafe { cudarc::driver::result::malloc_sync(WORKSPACE_BYTES) }
                    .map_err(|e| format!("workspace allocation: {e:?}"))?;
                st.workspaces.insert(stream, w);
                w
            }
        };
        let p = self.plan;
        let key = PlanKey {
            device,
            dtype: match self.dtype {
                DType::F32 => 0,
                DType::BF16 => 1,
                _ => 2,
            },
            plan: (p.m, p.n, p.k, p.trans_a, p.lda, p.trans_b, p.ldb),
            batch: (p.batch, p.stride_a, p.stride_b),
            bias: pb.is_some(),
            align: [
                align_of_ptr(pw),
                align_of_ptr(px),
                align_of_ptr(po),
                pb.map(align_of_ptr).unwrap_or(8),
            ],
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = st.plans.entry(key) {
            slot.insert(build_plan(handle, &key, self.dtype)?);
        }
        let lp = &st.plans[&key];
        let alpha = 1.0f32;
        let beta = 0.0f32;
        // SAFETY: descriptors are live (cached, never destroyed); pointers are burn buffers kept
        // alive by the resources held until after the enqueue; the stream is the server's.
        unsafe {
            if let Some(pb) = pb {
                let ptr = pb as *const c_void;
                lt::set_matmul_desc_attribute(
                    lp.desc,
                    lts::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                    &ptr as *const _ as *const c_void,
                    std::mem::size_of::<*const c_void>(),
                )
                .map_err(lt_err("bias pointer"))?;
            }
            lt::matmul(
                handle,
                lp.desc,
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                pw as *const c_void,
                lp.a,
                px as *const c_void,
                lp.b,
                po as *const c_void,
                lp.d,
                po as *mut c_void,
                lp.d,
                &lp.algo,
                workspace as *mut c_void,
                lp.workspace,
                stream as lts::cudaStream_t,
            )
            .map_err(lt_err("cublasLtMatmul"))?;
        }
        LAUNCHED.fetch_add(1, Ordering::Relaxed);
        drop((rx, rw, rb, ro));
        Ok(())
    }
}

fn check(what: &str, r: cudarc::driver::sys::CUresult) -> Result<(), String> {
    if r == cudarc::driver::sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(format!("{what}: {r:?}"))
    }
}

fn gemv_dtype_name(dtype: DType) -> Result<&'static str, String> {
    match dtype {
        DType::BF16 => Ok("bf16"),
        DType::F16 => Ok("f16"),
        other => Err(format!("GEMV kernels do not take {other:?}")),
    }
}

impl LtState {
    fn arch(&mut self, device: DevKey) -> Result<(i32, i32), String> {
        use cudarc::driver::sys as cu;
        if let Some(&a) = self.arch.get(&device) {
            return Ok(a);
        }
        let mut dev: cu::CUdevice = 0;
        let (mut major, mut minor) = (0i32, 0i32);
        // SAFETY: plain queries of the current context's device.
        unsafe {
            check("cuCtxGetDevice", cu::cuCtxGetDevice(&mut dev))?;
            check(
                "compute capability",
                cu::cuDeviceGetAttribute(
                    &mut major,
                    cu::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                    dev,
                ),
            )?;
            check(
                "compute capability",
                cu::cuDeviceGetAttribute(
                    &mut minor,
                    cu::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                    dev,
                ),
            )?;
        }
        self.arch.insert(device, (major, minor));
        Ok((major, minor))
    }

    /// The loaded GEMV function for `key`, compiling and loading its module on first use.
    fn gemv_function(&mut self, key: GemvFnKey, entry: impl FnOnce() -> String) -> Result<usize, String> {
        use cudarc::driver::sys as cu;
        if let Some(&f) = self.gemv_functions.get(&key) {
            return Ok(f);
        }
        let (device, _, dt, m, _) = key;
        let module = match self.gemv_modules.get(&(device, dt, m)) {
            Some(loaded) => loaded.clone()?,
            None => {
                let (major, minor) = self.arch(device)?;
                let loaded = if major < 8 {
                    Err(format!("compute capability {major}.{minor} < 8.0 (bf16 conversions)"))
                } else {
                    super::gemv::ptx(dt, m, &format!("sm_{major}{minor}")).and_then(|ptx| {
                        let image = std::ffi::CString::new(ptx).map_err(|e| format!("PTX with NUL: {e}"))?;
                        let mut module: cu::CUmodule = std::ptr::null_mut();
                        // SAFETY: a NUL-terminated PTX image; the module is kept for the process.
                        unsafe {
                            check(
                                "cuModuleLoadData(gemv)",
                                cu::cuModuleLoadData(&mut module, image.as_ptr() as *const c_void),
                            )?;
                        }
                        Ok(module as usize)
                    })
                };
                self.gemv_modules.insert((device, dt, m), loaded.clone());
                loaded?
            }
        };
        let entry = entry();
        let name = std::ffi::CString::new(entry.as_str()).map_err(|e| e.to_string())?;
        let mut f: cu::CUfunction = std::ptr::null_mut();
        // SAFETY: a loaded module and a NUL-terminated name.
        unsafe {
            check(
                &format!("cuModuleGetFunction({entry})"),
                cu::cuModuleGetFunction(&mut f, module as cu::CUmodule, name.as_ptr()),
            )?;
        }
        self.gemv_functions.insert(key, f as usize);
        Ok(f as usize)
    }

    /// The split-K arrival counters of `stream`, allocated and zeroed (on that stream) on first use.
    fn gemv_counters(&mut self, stream: usize) -> Result<u64, String> {
        use cudarc::driver::sys as cu;
        if let Some(&c) = self.gemv_counters.get(&stream) {
            return Ok(c);
        }
        let count = super::gemv::COUNTERS;
        // SAFETY: a plain allocation in the server's current context, zeroed by a memset enqueued on
        // the stream the kernels run on (so before any of them); kept for the process.
        let ptr = unsafe {
            let ptr = cudarc::driver::result::malloc_sync(count * 4).map_err(|e| format!("GEMV counters: {e:?}"))?;
            check(
                "cuMemsetD32Async(GEMV counters)",
                cu::cuMemsetD32Async(ptr, 0, count, stream as cu::CUstream),
            )?;
            ptr
        };
        self.gemv_counters.insert(stream, ptr);
        Ok(ptr)
    }

    /// The split-K scratch of `stream`, at least `bytes` long: allocated on first use and
    /// replaced by a larger one (at least twice the size) when outgrown.
    fn gemv_scratch(&mut self, stream: usize, bytes: usize) -> Result<u64, String> {
        if let Some(&(ptr, have)) = self.gemv_scratch.get(&stream) {
            if have >= bytes {
                return Ok(ptr);
            }
        }
        let old = self.gemv_scratch.get(&stream).copied();
        let size = bytes.max(old.map_or(0, |(_, n)| 2 * n)).max(1 << 20);
        // SAFETY: a plain allocation in the server's current context, kept for the process.
        let ptr = unsafe { cudarc::driver::result::malloc_sync(size) }
            .map_err(|e| format!("GEMV split-K scratch ({size} bytes): {e:?}"))?;
        if let Some((p, _)) = old {
            self.gemv_retired.push(p);
        }
        self.gemv_scratch.insert(stream, (ptr, size));
        Ok(ptr)
    }

    /// Enqueues the GEMV kernel on `stream`, with the parameters `params(part, counters)`.
    fn launch_gemv(
        &mut self,
        device: DevKey,
        stream: usize,
        g: &GemvGeometry,
        dtype: DType,
        params: impl FnOnce(u64, u64) -> GemvParams,
    ) -> Result<(), String> {
        use cudarc::driver::sys as cu;
        let dt = gemv_dtype_name(dtype)?;
        let f = self.gemv_function((device, g.layout, dt, g.m, g.unroll), || g.entry(dt))?;
        let (part, counters) = if g.splits > 1 {
            (
                self.gemv_scratch(stream, g.partial_bytes())?,
                self.gemv_counters(stream)?,
            )
        } else {
            (0, 0)
        };
        let mut p = params(part, counters);
        if pdl_enabled() && self.arch(device)?.0 >= 9 {
            p.pdl = 1;
            match launch_pdl(f, g, stream, &mut p) {
                Ok(()) => {
                    GEMV_PDL_LAUNCHED.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(reason) => {
                    // Not a sticky error (the launch was refused): plain launches from now on.
                    PDL_FAILED.store(true, Ordering::Relaxed);
                    tracing::warn!("GEMV programmatic dependent launch failed ({reason}); plain launches from now on");
                    p.pdl = 0;
                }
            }
        }
        let mut args = [&mut p as *mut GemvParams as *mut c_void];
        // SAFETY: every GEMV kernel takes one `GemvParams` by value, mirrored by the `#[repr(C)]`
        // struct; its pointers are live burn buffers held by the caller until after the enqueue
        // (burn's stream order keeps them alive for the kernel) or the counters kept for the
        // process; the stream is the server's; static shared memory only.
        unsafe {
            check(
                "cuLaunchKernel(gemv)",
                cu::cuLaunchKernel(
                    f as cu::CUfunction,
                    g.grid.0,
                    g.grid.1,
                    g.grid.2,
                    GEMV_THREADS,
                    1,
                    1,
                    0,
                    stream as cu::CUstream,
                    args.as_mut_ptr(),
                    std::ptr::null_mut(),
                ),
            )?;
        }
        Ok(())
    }
}

/// Whether GEMV kernels are launched as programmatic dependents on Hopper: not with
/// `RESEARCH_GEMV_PDL=0` (read once per process), nor after such a launch failed once.
fn pdl_enabled() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    !*OFF.get_or_init(|| std::env::var("RESEARCH_GEMV_PDL").is_ok_and(|v| v.trim() == "0"))
        && !PDL_FAILED.load(Ordering::Relaxed)
}

/// Set when a programmatic dependent launch failed: later GEMV launches are plain.
static PDL_FAILED: AtomicBool = AtomicBool::new(false);

/// Enqueues GEMV kernel `f` on `stream` with `cuLaunchKernelEx` and
/// `CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION`: the kernel may be scheduled before the
/// previous kernel on the stream has finished (once every block of that one executed
/// `griddepcontrol.launch_dependents`, or exited) and waits for it with `griddepcontrol.wait`
/// before touching anything that kernel may have written (`gemv.cu`'s doc comment). Kernels of
/// others that follow on the stream are launched plainly and still wait for this one to finish.
fn launch_pdl(f: usize, g: &GemvGeometry, stream: usize, p: &mut GemvParams) -> Result<(), String> {
    use cudarc::driver::sys as cu;
    // SAFETY: an all-zero attribute value is valid (a plain union of integers and PODs).
    let mut value: cu::CUlaunchAttributeValue = unsafe { std::mem::zeroed() };
    value.programmaticStreamSerializationAllowed = 1;
    let mut attr = cu::CUlaunchAttribute {
        id: cu::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        pad: [0; 4],
        value,
    };
    let config = cu::CUlaunchConfig {
        gridDimX: g.grid.0,
        gridDimY: g.grid.1,
        gridDimZ: g.grid.2,
        blockDimX: GEMV_THREADS,
        blockDimY: 1,
        blockDimZ: 1,
        sharedMemBytes: 0,
        hStream: stream as cu::CUstream,
        attrs: &mut attr,
        numAttrs: 1,
    };
    let mut args = [p as *mut GemvParams as *mut c_void];
    // SAFETY: as for the plain launch in `launch_gemv` (one `GemvParams` by value, live pointers,
    // the server's stream); `config` and `attr` outlive the call.
    unsafe {
        check(
            "cuLaunchKernelEx(gemv, programmatic stream serialization)",
            cu::cuLaunchKernelEx(&config, f as cu::CUfunction, args.as_mut_ptr(), std::ptr::null_mut()),
        )
    }
}

fn build_plan(handle: lts::cublasLtHandle_t, key: &PlanKey, dtype: DType) -> Result<LtPlan, String> {
    let (m, n, k, trans_a, lda, trans_b, ldb) = key.plan;
    let ty = data_type(dtype);
    // cublasOperation_t (an int-sized enum in cublas_api.h): CUBLAS_OP_N = 0, CUBLAS_OP_T = 1.
    let op = |t: bool| -> i32 { i32::from(t) };
    let (a_rows, a_cols) = if trans_a { (k, n) } else { (n, k) };
    let (b_rows, b_cols) = if trans_b { (m, k) } else { (k, m) };
    // SAFETY: descriptor creation and attribute setting with pointers to live locals.
    unsafe {
        let desc = lt::create_matmul_desc(
            lts::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            lts::cudaDataType::CUDA_R_32F,
        )
        .map_err(lt_err("matmul desc"))?;
        let set = |attr, value: *const c_void, size| {
            lt::set_matmul_desc_attribute(desc, attr, value, size).map_err(lt_err("matmul desc attribute"))
        };
        let (oa, ob) = (op(trans_a), op(trans_b));
        set(
            lts::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
            &oa as *const _ as *const c_void,
            std::mem::size_of_val(&oa),
        )?;
        set(
            lts::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB,
            &ob as *const _ as *const c_void,
            std::mem::size_of_val(&ob),
        )?;
        if key.bias {
            let epi = lts::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS;
            set(
                lts::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_EPILOGUE,
                &epi as *const _ as *const c_void,
                std::mem::size_of_val(&epi),
            )?;
            let bty = ty;
            set(
                lts::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                &bty as *const _ as *const c_void,
                std::mem::size_of_val(&bty),
            )?;
        }
        let layout = |r: usize, c: usize, ld: usize| {
            lt::create_matrix_layout(ty, r as u64, c as u64, ld as i64).map_err(lt_err("matrix layout"))
        };
        let a = layout(a_rows, a_cols, lda)?;
        let b = layout(b_rows, b_cols, ldb)?;
        let d = layout(n, m, n)?;
        let (batch, stride_a, stride_b) = key.batch;
        if batch > 1 {
            for (l, stride) in [(a, stride_a), (b, stride_b), (d, m * n)] {
                let count = batch as i32;
                let offset = stride as i64;
                lt::set_matrix_layout_attribute(
                    l,
                    lts::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                    &count as *const i32 as *const c_void,
                    4,
                )
                .map_err(lt_err("batch count"))?;
                lt::set_matrix_layout_attribute(
                    l,
                    lts::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                    &offset as *const i64 as *const c_void,
                    8,
                )
                .map_err(lt_err("batch stride"))?;
            }
        }
        let pref = lt::create_matmul_pref().map_err(lt_err("preference"))?;
        let ws = WORKSPACE_BYTES as u64;
        lt::set_matmul_pref_attribute(
            pref,
            lts::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            &ws as *const u64 as *const c_void,
            8,
        )
        .map_err(lt_err("workspace preference"))?;
        // Split-K partial sums are reduced in f32 (in the workspace) or not at all: the in-place and
        // output-type schemes round each partial sum to bf16/f16 first, which loses the f32
        // accumulation the callers rely on (seen as bound violations on narrow odd-N bf16 shapes).
        let reduction = lts::cublasLtReductionScheme_t::CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE as u32;
        lt::set_matmul_pref_attribute(
            pref,
            lts::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
            &reduction as *const u32 as *const c_void,
            4,
        )
        .map_err(lt_err("reduction scheme preference"))?;
        let aligns = [
            lts::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
            lts::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            lts::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
            lts::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
        ];
        let bytes = [key.align[0], key.align[1], key.align[2], key.align[2]];
        for (attr, log2) in aligns.into_iter().zip(bytes) {
            let v: u32 = 1 << log2;
            lt::set_matmul_pref_attribute(pref, attr, &v as *const u32 as *const c_void, 4)
                .map_err(lt_err("alignment preference"))?;
        }
        let heur = lt::get_matmul_algo_heuristic(handle, desc, a, b, d, d, pref).map_err(lt_err("heuristic"));
        let _ = lt::destroy_matmul_pref(pref);
        let heur = heur?;
        Ok(LtPlan {
            desc,
            a,
            b,
            d,
            algo: heur.algo,
            workspace: heur.workspaceSize.min(WORKSPACE_BYTES),
        })
    }
}

/// The `CUstream` of this thread's slot in the server's stream pool, read from the server's
/// `Debug` output (see the module docs for why), checked with `cuStreamQuery`.
fn find_stream(server: &Server, stream_id: StreamId) -> Result<usize, String> {
    let text = format!("{server:?}");
    let entries = pool_entries(&text).ok_or("stream pool not found in the CudaServer debug output")?;
    if entries.len() < 2 {
        return Err(format!("stream pool has {} entries", entries.len()));
    }
    let max_streams = entries.len() - 1; // one special (gc) stream follows the regular ones
    let index = (stream_id.value % max_streams as u64) as usize;
    let entry = entries[index];
    let ptr = parse_sys(entry).ok_or_else(|| format!("stream slot {index} holds no stream"))?;
    // SAFETY: querying a stream handle is harmless; a bogus handle returns an error code.
    let status = unsafe { cudarc::driver::sys::cuStreamQuery(ptr as cudarc::driver::sys::CUstream) };
    use cudarc::driver::sys::CUresult;
    if !matches!(status, CUresult::CUDA_SUCCESS | CUresult::CUDA_ERROR_NOT_READY) {
        return Err(format!("stream {ptr:#x} failed cuStreamQuery: {status:?}"));
    }
    Ok(ptr)
}

/// The top-level entries of `streams: StreamPool { streams: [ .. ]`.
pub(crate) fn pool_entries(text: &str) -> Option<Vec<&str>> {
    let marker = "streams: StreamPool { streams: [";
    let start = text.find(marker)? + marker.len();
    let bytes = text.as_bytes();
    let mut depth = 0i32;
    let mut in_str = false;
    let mut escaped = false;
    let mut entries = Vec::new();
    let mut entry_start = start;
    for (i, &c) in bytes.iter().enumerate().skip(start) {
        if in_str {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                if depth == 0 {
                    let last = text[entry_start..i].trim();
                    if !last.is_empty() {
                        entries.push(last);
                    }
                    return Some(entries);
                }
                depth -= 1;
            }
            b',' if depth == 0 => {
                entries.push(text[entry_start..i].trim());
                entry_start = i + 1;
            }
            _ => {}
        }
    }
    None
}

/// The first `sys: 0x..` pointer of a pool entry (`None` for an empty slot).
pub(crate) fn parse_sys(entry: &str) -> Option<usize> {
    if !entry.starts_with("Some(") {
        return None;
    }
    let at = entry.find("sys: 0x")? + "sys: 0x".len();
    let hex: String = entry[at..].chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    usize::from_str_radix(&hex, 16).ok().filter(|&p| p != 0)
}

// ---------------------------------------------------------------------------------------------
// Autodiff: forward through `gemm`, backward as two more GEMMs and a column sum.

#[derive(Debug)]
struct LinearBackward;

#[derive(Debug)]
struct LinearBiasBackward;

/// Saved for the backward: the input and the weight, as checkpointed nodes (so that under
/// `BalancedCheckpointing` a recomputable input is recomputed instead of kept alive).
type LinearState = (NodeId, NodeId);

fn transpose2(t: CT) -> CT {
    Cuda::float_transpose(t)
}

/// `a [.., K] @ b [K, N]` through cuBLASLt, or burn's matmul (2-D) when the layout is unsupported.
fn gemm_or_matmul(a: CT, b: CT) -> CT {
    if let Some(y) = gemm(a.clone(), b.clone(), None, false) {
        return y;
    }
    let shape: Vec<usize> = a.meta.shape().to_vec();
    let k = *shape.last().expect("rank >= 1");
    let m: usize = shape[..shape.len() - 1].iter().product();
    let n = b.meta.shape()[1];
    let a2 = Cuda::float_reshape(a, Shape::from(vec![m, k]));
    let y = Cuda::float_matmul(a2, b);
    let mut out = shape;
    *out.last_mut().expect("rank >= 1") = n;
    Cuda::float_reshape(y, Shape::from(out))
}

/// `dX = dY Wᵀ` with `dX` shaped like `x`.
fn grad_x(grad: CT, w: CT) -> CT {
    gemm_or_matmul(grad, transpose2(w))
}

/// `dW = Xᵀ dY` over all rows.
fn grad_w(x: CT, grad: CT) -> CT {
    let xs: Vec<usize> = x.meta.shape().to_vec();
    let k = *xs.last().expect("rank >= 1");
    let m: usize = xs[..xs.len() - 1].iter().product();
    let n = *grad.meta.shape().last().expect("rank >= 1");
    let x2 = Cuda::float_reshape(x, Shape::from(vec![m, k]));
    let g2 = Cuda::float_reshape(grad, Shape::from(vec![m, n]));
    gemm_or_matmul(transpose2(x2), g2)
}

/// `db = Σ_rows dY`, accumulated in f32.
fn grad_b(grad: CT) -> CT {
    let dtype = grad.dtype;
    let n = *grad.meta.shape().last().expect("rank >= 1");
    let m = grad.meta.shape().iter().product::<usize>() / n.max(1);
    let g2 = Cuda::float_reshape(grad, Shape::from(vec![m, n]));
    let s = Cuda::float_sum_dim(Cuda::float_cast(g2, burn::tensor::FloatDType::F32), 0);
    Cuda::float_cast(Cuda::float_reshape(s, Shape::from(vec![n])), dtype.into())
}

impl Backward<Cuda, 2> for LinearBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Cuda>(&ops.node);
        let (x, w) = ops.state;
        let (x, w): (CT, CT) = (
            checkpointer.retrieve_node_output(x),
            checkpointer.retrieve_node_output(w),
        );
        let [px, pw] = ops.parents;
        if let Some(node) = pw {
            grads.register::<Cuda>(node.id, grad_w(x, grad.clone()));
        }
        if let Some(node) = px {
            grads.register::<Cuda>(node.id, grad_x(grad, w));
        }
    }
}

impl Backward<Cuda, 3> for LinearBiasBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Cuda>(&ops.node);
        let (x, w) = ops.state;
        let (x, w): (CT, CT) = (
            checkpointer.retrieve_node_output(x),
            checkpointer.retrieve_node_output(w),
        );
        let [px, pw, pb] = ops.parents;
        if let Some(node) = pb {
            grads.register::<Cuda>(node.id, grad_b(grad.clone()));
        }
        if let Some(node) = pw {
            grads.register::<Cuda>(node.id, grad_w(x, grad.clone()));
        }
        if let Some(node) = px {
            grads.register::<Cuda>(node.id, grad_x(grad, w));
        }
    }
}

#[derive(Debug)]
struct BmmBackward;

fn swap_last(t: CT) -> CT {
    let d = t.meta.shape().len();
    Cuda::float_swap_dims(t, d - 2, d - 1)
}

fn bmm_or_matmul(a: CT, b: CT) -> CT {
    match bmm(a.clone(), b.clone()) {
        Some(y) => y,
        None => Cuda::float_matmul(a, b),
    }
}

impl Backward<Cuda, 2> for BmmBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Cuda>(&ops.node);
        let (a, b) = ops.state;
        let (a, b): (CT, CT) = (
            checkpointer.retrieve_node_output(a),
            checkpointer.retrieve_node_output(b),
        );
        let [pa, pb] = ops.parents;
        if let Some(node) = pb {
            grads.register::<Cuda>(node.id, bmm_or_matmul(swap_last(a), grad.clone()));
        }
        if let Some(node) = pa {
            grads.register::<Cuda>(node.id, bmm_or_matmul(grad, swap_last(b)));
        }
    }
}

fn autodiff_bmm<C: CheckpointStrategy>(a: AutodiffTensor, b: AutodiffTensor) -> Option<AutodiffTensor> {
    let y = bmm(a.primitive.clone(), b.primitive.clone())?;
    Some(
        match BmmBackward
            .prepare::<C>([a.node.clone(), b.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&a), prep.checkpoint(&b));
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
    )
}

fn autodiff_linear<C: CheckpointStrategy>(
    x: AutodiffTensor,
    w: AutodiffTensor,
    b: Option<AutodiffTensor>,
) -> Option<AutodiffTensor> {
    let y = gemm(
        x.primitive.clone(),
        w.primitive.clone(),
        b.as_ref().map(|b| b.primitive.clone()),
        true,
    )?;
    Some(match b {
        None => match LinearBackward
            .prepare::<C>([x.node.clone(), w.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&w));
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
        Some(b) => match LinearBiasBackward
            .prepare::<C>([x.node.clone(), w.node.clone(), b.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&w));
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stream_pool_debug() {
        let text = "CudaServer { ctx: CudaContext { x: \"a, ] weird\" }, streams: MultiStream { streams: \
                    StreamPool { streams: [None, Some(StreamWrapper { stream: Stream { sys: 0x5a5a10, \
                    memory: [1, 2] }, cursor: 3 }), None, None, Some(StreamWrapper { stream: Stream { \
                    sys: 0xbeef, m: {} } })], factory: F, max_streams: 4 } }";
        let entries = pool_entries(text).unwrap();
        assert_eq!(entries.len(), 5);
        assert_eq!(parse_sys(entries[0]), None);
        assert_eq!(parse_sys(entries[1]), Some(0x5a5a10));
        assert_eq!(parse_sys(entries[4]), Some(0xbeef));
    }

    #[test]
    fn cast_by_type() {
        assert_eq!(cast::<u32, u32>(7), Ok(7));
        assert_eq!(cast::<u32, i64>(7), Err(7));
    }
}
