//! The fused AdamW kernel on burn-cuda's buffers and stream.
//!
//! The raw-CUDA mechanics (reaching the burn-cuda primitive by `TypeId`, resolving device pointers
//! inside `DeviceHandle::submit_blocking` on cubecl's device thread, the server's stream, module
//! loading, `cuLaunchKernel`) are `crate::cuda_rt`'s; the outputs are allocated by burn
//! (`client.empty`). Only plain burn-cuda tensors are taken (the optimizer works on the inner
//! backend, outside autodiff).

use std::any::TypeId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, Tensor, TensorPrimitive};
use burn_cubecl::cubecl::server::Handle;

use super::{AdamWOutput, AdamWStep, ADAMW_PARAMS_BYTES};
use crate::cuda_rt::{self, cast, on_device, DevKey, Pointers, Server, CT};

/// Fused AdamW kernels enqueued, and calls that fell back to the reference after trying.
pub(crate) static LAUNCHED: AtomicU64 = AtomicU64::new(0);
pub(crate) static FALLBACKS: AtomicU64 = AtomicU64::new(0);

const THREADS: u32 = 256;
/// Upper bound on blocks (a grid-stride loop covers the rest): 16 waves of 132 SMs × 8 blocks.
const MAX_BLOCKS: u64 = 132 * 8 * 16;

/// Mirrors `struct AdamWParams` in `adamw.cu` field for field.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct AdamWParams {
    g: u64,
    m: u64,
    v: u64,
    p: u64,
    m_out: u64,
    v_out: u64,
    p_out: u64,
    value_out: u64,
    n: i64,
    decay: f32,
    grad_scale: f32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    sqrt_bc2: f32,
    eps: f32,
    step_size: f32,
    value_dtype: i32,
}

const _: () = assert!(std::mem::size_of::<AdamWParams>() == ADAMW_PARAMS_BYTES);

fn flat_f32<B: Backend>(t: &Tensor<B, 1>, n: usize) -> Option<CT> {
    let ct = cast::<_, CT>(t.clone().into_primitive().tensor()).ok()?;
    let ok = ct.dtype == DType::F32 && ct.meta.shape().to_vec() == [n] && ct.meta.strides().to_vec() == [1];
    ok.then_some(ct)
}

/// The fused step when `B` is burn-cuda and the operands are contiguous f32 `[n]`, else `None`.
pub(crate) fn try_adamw<B: Backend>(
    g: &Tensor<B, 1>,
    m: &Tensor<B, 1>,
    v: &Tensor<B, 1>,
    master: &Tensor<B, 1>,
    value_dtype: DType,
    h: &AdamWStep,
) -> Option<AdamWOutput<B>> {
    if TypeId::of::<B::FloatTensorPrimitive>() != TypeId::of::<CT>() {
        return None;
    }
    let n = g.dims()[0];
    let value_code = match value_dtype {
        DType::F32 => 0,
        DType::BF16 => 1,
        DType::F16 => 2,
        _ => return None,
    };
    if n == 0 {
        return None;
    }
    let (gc, mc, vc, pc) = (flat_f32(g, n)?, flat_f32(m, n)?, flat_f32(v, n)?, flat_f32(master, n)?);
    let client = gc.client.clone();
    let m_out = client.empty(n * 4);
    let v_out = client.empty(n * 4);
    let p_out = client.empty(n * 4);
    let value_out = (value_code != 0).then(|| client.empty(n * 2));
    let params = AdamWParams {
        n: n as i64,
        decay: (1.0 - h.lr * h.weight_decay) as f32,
        grad_scale: h.grad_scale as f32,
        beta1: h.beta1 as f32,
        one_minus_beta1: (1.0 - h.beta1) as f32,
        beta2: h.beta2 as f32,
        one_minus_beta2: (1.0 - h.beta2) as f32,
        sqrt_bc2: h.bias_correction2().sqrt() as f32,
        eps: h.eps as f32,
        step_size: (h.lr / h.bias_correction1()) as f32,
        value_dtype: value_code,
        ..Default::default()
    };
    let blocks = (n as u64).div_ceil(THREADS as u64).min(MAX_BLOCKS) as u32;
    let job = Job {
        params,
        inputs: [
            gc.handle.clone(),
            mc.handle.clone(),
            vc.handle.clone(),
            pc.handle.clone(),
        ],
        outputs: [m_out.clone(), v_out.clone(), p_out.clone()],
        value_out: value_out.clone(),
        blocks,
    };
    match on_device(&gc, move |server, key| job.run(server, key)) {
        Ok(()) => LAUNCHED.fetch_add(1, Ordering::Relaxed),
        Err(reason) => {
            warn_once(&reason);
            return None;
        }
    };
    let make = |handle: Handle, dtype: DType| -> Option<Tensor<B, 1>> {
        let ct = CT::new_contiguous(client.clone(), gc.device.clone(), Shape::from(vec![n]), handle, dtype);
        let prim = cast::<CT, B::FloatTensorPrimitive>(ct).ok()?;
        Some(Tensor::from_primitive(TensorPrimitive::Float(prim)))
    };
    let master = make(p_out, DType::F32)?;
    let value = match value_out {
        Some(h) => make(h, value_dtype)?,
        None => master.clone(),
    };
    Some(AdamWOutput {
        m: make(m_out, DType::F32)?,
        v: make(v_out, DType::F32)?,
        master,
        value,
    })
}

fn warn_once(reason: &str) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    FALLBACKS.fetch_add(1, Ordering::Relaxed);
    crate::cuda_rt::warn_once(&SEEN, "fused AdamW", "the reference path", reason);
}

struct Job {
    params: AdamWParams,
    inputs: [Handle; 4],
    outputs: [Handle; 3],
    value_out: Option<Handle>,
    blocks: u32,
}

/// Compiles the kernel for the device's architecture (compute capability 6.0 or newer).
fn adamw_ptx_for((major, minor): (i32, i32)) -> Result<String, String> {
    if major < 6 {
        return Err(format!("compute capability {major}.{minor} is too old"));
    }
    super::adamw_ptx(&format!("sm_{major}{minor}"))
}

impl Job {
    fn run(self, server: &mut Server, device: DevKey) -> Result<(), String> {
        let mut held = Pointers::new();
        let mut ptrs = Vec::with_capacity(8);
        let all = self
            .inputs
            .iter()
            .chain(self.outputs.iter())
            .chain(self.value_out.iter());
        for h in all {
            ptrs.push(held.resolve(server, h.clone())?);
        }
        let mut p = self.params;
        [p.g, p.m, p.v, p.p, p.m_out, p.v_out, p.p_out] =
            [ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5], ptrs[6]];
        p.value_out = ptrs.get(7).copied().unwrap_or(0);
        let f = cuda_rt::function(device, "adamw", "adamw_step", adamw_ptx_for)?;
        let stream = cuda_rt::stream(server, device, held.stream_id())?;
        // SAFETY: the function takes one `AdamWParams` by value, mirrored above; every pointer is a
        // live burn buffer held in `held` until after the enqueue (burn's stream ordering keeps it
        // alive for the kernel); the stream is the server's.
        unsafe {
            cuda_rt::launch("adamw_step", f, (self.blocks, 1, 1), (THREADS, 1, 1), 0, stream, &mut p)?;
        }
        drop(held);
        Ok(())
    }
}
