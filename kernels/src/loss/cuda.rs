//! The token log-prob + entropy kernels on burn-cuda's buffers and stream, with an autodiff
//! backward.
//!
//! The raw-CUDA mechanics (primitive by `TypeId`, pointers resolved on cubecl's device thread,
//! the server's stream, NVRTC module per device, `cuLaunchKernel`) are `crate::cuda_rt`'s. The op
//! has one tensor output `[2, T]` f32 (row 0 the log-probs, row 1 the entropies) that
//! [`try_fused`] slices into the two results, so that under autodiff one node carries both and
//! the slices' backward hands the kernel a `[2, T]` upstream gradient with zeros for an output
//! that has none. The forward also returns the rows' log-sum-exp, kept with the output and the
//! targets in the node's state; the logits are checkpointed like any input (so
//! `BalancedCheckpointing` may recompute them). Under autodiff the forward also loads the backward
//! entry point, so that a failure shows while the reference path can still be taken.

use std::any::TypeId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Shape, Tensor, TensorPrimitive};
use burn_cubecl::cubecl::server::Handle;

use super::TOKEN_STATS_PARAMS_BYTES;
use crate::cuda_rt::{self, cast, dtype_name, on_device, AutodiffTensor, Cuda, DevKey, Pointers, Server, CT};

/// Fused kernels enqueued (forward and backward), and calls that fell back after trying.
pub(crate) static LAUNCHED: AtomicU64 = AtomicU64::new(0);
pub(crate) static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// Threads per block (`THREADS` in `token_stats.cu`); one block per row.
const THREADS: u32 = 256;

/// Mirrors `struct TokenStatsParams` in `token_stats.cu` field for field.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct TokenStatsParams {
    logits: u64,
    targets: u64,
    out: u64,
    lse: u64,
    stats: u64,
    grad: u64,
    grad_logits: u64,
    t: i64,
    v: i64,
    ld: i64,
    target_stride: i64,
    g_s0: i64,
    g_s1: i64,
    target_i64: i32,
    pad: i32,
}

const _: () = assert!(std::mem::size_of::<TokenStatsParams>() == TOKEN_STATS_PARAMS_BYTES);

/// Why the fused route was not taken.
enum Fail {
    /// Outside what the kernels handle (silently takes the reference path).
    Unsupported,
    /// Something failed after trying (counted and warned once per reason).
    Error(String),
}

fn warn_once(reason: &str) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    FALLBACKS.fetch_add(1, Ordering::Relaxed);
    crate::cuda_rt::warn_once(&SEEN, "fused token log-prob/entropy", "the reference path", reason);
}

/// The fused route when `B` is burn-cuda or burn-cuda under autodiff (and the problem is one the
/// kernels take), else `None`.
pub(crate) fn try_fused<B: Backend>(
    logits: &Tensor<B, 2>,
    targets: &Tensor<B, 1, Int>,
    entropy: bool,
) -> Option<(Tensor<B, 1>, Option<Tensor<B, 1>>)> {
    let id = TypeId::of::<B>();
    let plain = id == TypeId::of::<Cuda>();
    let ad_none = id == TypeId::of::<Autodiff<Cuda, NoCheckpointing>>();
    let ad_bal = id == TypeId::of::<Autodiff<Cuda, BalancedCheckpointing>>();
    if !(plain || ad_none || ad_bal) {
        return None;
    }
    let [t, _] = logits.dims();
    let lp = logits.clone().into_primitive().tensor();
    let tc = cast::<_, CT>(targets.clone().into_primitive()).ok()?;
    let result = if plain {
        let lc = cast::<_, CT>(lp).ok()?;
        forward(&lc, &tc, false).map(|(out, _)| cast::<_, B::FloatTensorPrimitive>(out).ok())
    } else {
        let la = cast::<_, AutodiffTensor>(lp).ok()?;
        let out = if ad_none {
            autodiff_forward::<NoCheckpointing>(la, tc)
        } else {
            autodiff_forward::<BalancedCheckpointing>(la, tc)
        };
        out.map(|o| cast::<_, B::FloatTensorPrimitive>(o).ok())
    };
    let out = match result {
        Ok(Some(o)) => Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(o)),
        Ok(None) | Err(Fail::Unsupported) => return None,
        Err(Fail::Error(reason)) => {
            warn_once(&reason);
            return None;
        }
    };
    let logp = out.clone().narrow(0, 0, 1).reshape([t]);
    let ent = entropy.then(|| out.narrow(0, 1, 1).reshape([t]));
    Some((logp, ent))
}

/// Shapes and layout of one problem, validated.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    t: usize,
    v: usize,
    ld: usize,
    dtype: &'static str,
    target_stride: usize,
    target_i64: bool,
}

fn geometry(logits: &CT, targets: &CT) -> Result<Geometry, Fail> {
    let dtype = dtype_name(logits.dtype).ok_or(Fail::Unsupported)?;
    if logits.qparams.is_some() {
        return Err(Fail::Unsupported);
    }
    let (shape, strides) = (logits.meta.shape().to_vec(), logits.meta.strides().to_vec());
    let ([t, v], [ld, one]) = (
        <[usize; 2]>::try_from(shape).map_err(|_| Fail::Unsupported)?,
        <[usize; 2]>::try_from(strides).map_err(|_| Fail::Unsupported)?,
    );
    if t == 0 || v == 0 || (one != 1 && v > 1) || (ld < v && t > 1) || t > i32::MAX as usize {
        return Err(Fail::Unsupported);
    }
    let target_i64 = match targets.dtype {
        DType::I32 => false,
        DType::I64 => true,
        _ => return Err(Fail::Unsupported),
    };
    let (ts, tst) = (targets.meta.shape().to_vec(), targets.meta.strides().to_vec());
    if ts != [t] || tst.len() != 1 {
        return Err(Fail::Unsupported);
    }
    Ok(Geometry {
        t,
        v,
        ld,
        dtype,
        target_stride: tst[0],
        target_i64,
    })
}

fn base_params(g: &Geometry) -> TokenStatsParams {
    TokenStatsParams {
        t: g.t as i64,
        v: g.v as i64,
        ld: g.ld as i64,
        target_stride: g.target_stride as i64,
        target_i64: i32::from(g.target_i64),
        ..Default::default()
    }
}

fn module_ptx((major, minor): (i32, i32)) -> Result<String, String> {
    if major < 6 {
        return Err(format!("compute capability {major}.{minor} is too old"));
    }
    super::token_stats_ptx(&format!("sm_{major}{minor}"))
}

/// Buffers of one device call (resolved to pointers on the device thread) and the kernels to run.
struct Job {
    params: TokenStatsParams,
    logits: Handle,
    targets: Handle,
    out: Option<Handle>,
    lse: Handle,
    stats: Option<Handle>,
    grad: Option<Handle>,
    grad_logits: Option<Handle>,
    /// The entry point to launch, and (forward under autodiff) one to load for later.
    entry: String,
    preload: Option<String>,
    rows: u32,
}

impl Job {
    fn run(self, server: &mut Server, device: DevKey) -> Result<(), String> {
        let mut held = Pointers::new();
        let mut resolve = |server: &mut Server, h: Option<Handle>| -> Result<u64, String> {
            h.map_or(Ok(0), |h| held.resolve(server, h))
        };
        let mut p = self.params;
        p.logits = resolve(server, Some(self.logits))?;
        p.targets = resolve(server, Some(self.targets))?;
        p.out = resolve(server, self.out)?;
        p.lse = resolve(server, Some(self.lse))?;
        p.stats = resolve(server, self.stats)?;
        p.grad = resolve(server, self.grad)?;
        p.grad_logits = resolve(server, self.grad_logits)?;
        if let Some(entry) = &self.preload {
            cuda_rt::function(device, "token_stats", entry, module_ptx)?;
        }
        let f = cuda_rt::function(device, "token_stats", &self.entry, module_ptx)?;
        let stream = cuda_rt::stream(server, device, held.stream_id())?;
        // SAFETY: the kernel takes one `TokenStatsParams` by value, mirrored above; every pointer
        // is a live burn buffer held in `held` until after the enqueue, sized for `rows` rows of
        // the geometry in `p`; the stream is the server's.
        unsafe {
            cuda_rt::launch(&self.entry, f, (self.rows, 1, 1), (THREADS, 1, 1), 0, stream, &mut p)?;
        }
        drop(held);
        LAUNCHED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The forward kernel: `([2, T] f32 (log-probs, entropies), [T] f32 log-sum-exp)`. With
/// `preload_backward` the backward entry point is loaded too.
fn forward(logits: &CT, targets: &CT, preload_backward: bool) -> Result<(CT, CT), Fail> {
    let g = geometry(logits, targets)?;
    let client = &logits.client;
    let out = client.empty(2 * g.t * 4);
    let lse = client.empty(g.t * 4);
    let job = Job {
        params: base_params(&g),
        logits: logits.handle.clone(),
        targets: targets.handle.clone(),
        out: Some(out.clone()),
        lse: lse.clone(),
        stats: None,
        grad: None,
        grad_logits: None,
        entry: format!("token_stats_fwd_{}", g.dtype),
        preload: preload_backward.then(|| format!("token_stats_bwd_{}", g.dtype)),
        rows: g.t as u32,
    };
    on_device(logits, move |server, key| job.run(server, key)).map_err(Fail::Error)?;
    let make = |h: Handle, shape: Vec<usize>| {
        CT::new_contiguous(client.clone(), logits.device.clone(), Shape::from(shape), h, DType::F32)
    };
    Ok((make(out, vec![2, g.t]), make(lse, vec![g.t])))
}

/// The backward kernel: the gradient of the logits (contiguous `[T, V]`, their dtype) from the
/// upstream gradient `grad` `[2, T]` f32 of the forward's output `out`.
fn backward(logits: &CT, targets: &CT, out: &CT, lse: &CT, grad: &CT) -> Result<CT, Fail> {
    let g = geometry(logits, targets)?;
    let (gs, gst) = (grad.meta.shape().to_vec(), grad.meta.strides().to_vec());
    if grad.dtype != DType::F32 || gs != [2, g.t] || gst.len() != 2 {
        return Err(Fail::Unsupported);
    }
    let client = &logits.client;
    let grad_logits = client.empty(g.t * g.v * logits.dtype.size());
    let mut params = base_params(&g);
    params.g_s0 = gst[0] as i64;
    params.g_s1 = gst[1] as i64;
    let job = Job {
        params,
        logits: logits.handle.clone(),
        targets: targets.handle.clone(),
        out: None,
        lse: lse.handle.clone(),
        stats: Some(out.handle.clone()),
        grad: Some(grad.handle.clone()),
        grad_logits: Some(grad_logits.clone()),
        entry: format!("token_stats_bwd_{}", g.dtype),
        preload: None,
        rows: g.t as u32,
    };
    on_device(logits, move |server, key| job.run(server, key)).map_err(Fail::Error)?;
    Ok(CT::new_contiguous(
        client.clone(),
        logits.device.clone(),
        Shape::from(vec![g.t, g.v]),
        grad_logits,
        logits.dtype,
    ))
}

// ---------------------------------------------------------------------------------------------
// Autodiff: forward through the kernel (saving the output and the log-sum-exp), backward through
// the backward kernel.

#[derive(Debug)]
struct TokenStatsBackward;

#[derive(Clone, Debug)]
struct TokenStatsState {
    logits: NodeId,
    targets: CT,
    out: CT,
    lse: CT,
}

impl Backward<Cuda, 1> for TokenStatsBackward {
    type State = TokenStatsState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Cuda>(&ops.node);
        let st = ops.state;
        let logits: CT = checkpointer.retrieve_node_output(st.logits);
        let dz = match backward(&logits, &st.targets, &st.out, &st.lse, &grad) {
            Ok(g) => g,
            // The forward ran this very problem and loaded the backward entry point, so this is
            // a device failure (or an upstream gradient of another layout); there is no
            // reference to fall back to inside the graph.
            Err(Fail::Unsupported) => {
                panic!(
                    "fused token log-prob backward: unsupported gradient {:?}",
                    grad.meta.shape()
                )
            }
            Err(Fail::Error(e)) => panic!("fused token log-prob backward failed: {e}"),
        };
        let [parent] = ops.parents;
        if let Some(node) = parent {
            grads.register::<Cuda>(node.id, dz);
        }
    }
}

fn autodiff_forward<C: CheckpointStrategy>(logits: AutodiffTensor, targets: CT) -> Result<AutodiffTensor, Fail> {
    let (out, lse) = forward(&logits.primitive, &targets, true)?;
    Ok(
        match TokenStatsBackward
            .prepare::<C>([logits.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = TokenStatsState {
                    logits: prep.checkpoint(&logits),
                    targets,
                    out: out.clone(),
                    lse,
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
    )
}
