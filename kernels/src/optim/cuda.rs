//! The fused AdamW kernel on burn-cuda's buffers and stream.
//!
//! Same mechanics as `linear/cuda.rs` and `attention/cuda.rs` (read the former's module docs):
//! the burn-cuda primitive is reached by `TypeId`, the outputs are allocated by burn
//! (`client.empty`), device pointers are resolved inside `DeviceHandle::submit_blocking` on
//! cubecl's device thread (ordered after burn's queued work) and the kernel is enqueued with
//! `cuLaunchKernel` on the server's own stream for this thread's slot. Only plain burn-cuda
//! tensors are taken (the optimizer works on the inner backend, outside autodiff).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, Tensor, TensorPrimitive};
use burn_cubecl::cubecl::cuda::CudaRuntime;
use burn_cubecl::cubecl::device::Device;
use burn_cubecl::cubecl::device_handle::DeviceHandle;
use burn_cubecl::cubecl::server::{ComputeServer, Handle};
use burn_cubecl::cubecl::stream_id::StreamId;
use burn_cubecl::cubecl::Runtime;
use burn_cubecl::tensor::CubeTensor;
use cudarc::driver::sys as cu;

use super::{AdamWOutput, AdamWStep, ADAMW_PARAMS_BYTES};
use crate::linear::cuda::{parse_sys, pool_entries};

type CT = CubeTensor<CudaRuntime>;
type Server = <CudaRuntime as Runtime>::Server;
type DevKey = (u16, u32);

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

/// Moves a value to type `T` when it is one (checked by `TypeId`), else gives it back.
fn cast<A: 'static, T: 'static>(a: A) -> Result<T, A> {
    let mut slot = Some(a);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<T>>() {
        Some(t) => Ok(t.take().expect("slot is full")),
        None => Err(slot.expect("slot is full")),
    }
}

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
    let device_id = gc.device.to_id();
    let key: DevKey = (device_id.type_id, device_id.index_id as u32);
    let device = DeviceHandle::<Server>::new(device_id);
    match device.submit_blocking(move |server| job.run(server, key)) {
        Ok(Ok(())) => LAUNCHED.fetch_add(1, Ordering::Relaxed),
        Ok(Err(reason)) => {
            warn_once(&reason);
            return None;
        }
        Err(err) => {
            warn_once(&format!("device call failed: {err:?}"));
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
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.iter().any(|s| s == reason) {
        tracing::warn!("fused AdamW fell back to the reference path: {reason}");
        seen.push(reason.to_string());
    }
}

struct Job {
    params: AdamWParams,
    inputs: [Handle; 4],
    outputs: [Handle; 3],
    value_out: Option<Handle>,
    blocks: u32,
}

/// Per device: the loaded function and the streams found so far.
#[derive(Default)]
struct KState {
    functions: HashMap<DevKey, Result<usize, String>>,
    streams: HashMap<(DevKey, u64), usize>,
}

// SAFETY: the raw CUDA handles are only used under the mutex, from cubecl's device calls, with
// the device's context current.
unsafe impl Send for KState {}

fn state() -> &'static Mutex<KState> {
    static STATE: OnceLock<Mutex<KState>> = OnceLock::new();
    STATE.get_or_init(|| Mutex::new(KState::default()))
}

fn check(what: &str, r: cu::CUresult) -> Result<(), String> {
    if r == cu::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(format!("{what}: {r:?}"))
    }
}

impl KState {
    fn function(&mut self, device: DevKey) -> Result<usize, String> {
        if let Some(f) = self.functions.get(&device) {
            return f.clone();
        }
        let loaded = load_function();
        self.functions.insert(device, loaded.clone());
        loaded
    }

    fn stream(&mut self, server: &Server, device: DevKey, stream_id: StreamId) -> Result<usize, String> {
        if let Some(&s) = self.streams.get(&(device, stream_id.value)) {
            return Ok(s);
        }
        let text = format!("{server:?}");
        let entries = pool_entries(&text).ok_or("stream pool not found in the CudaServer debug output")?;
        if entries.len() < 2 {
            return Err(format!("stream pool has {} entries", entries.len()));
        }
        let max_streams = entries.len() - 1; // one special (gc) stream follows the regular ones
        let index = (stream_id.value % max_streams as u64) as usize;
        let ptr = parse_sys(entries[index]).ok_or_else(|| format!("stream slot {index} holds no stream"))?;
        // SAFETY: querying a stream handle is harmless; a bogus handle returns an error code.
        let status = unsafe { cu::cuStreamQuery(ptr as cu::CUstream) };
        if !matches!(status, cu::CUresult::CUDA_SUCCESS | cu::CUresult::CUDA_ERROR_NOT_READY) {
            return Err(format!("stream {ptr:#x} failed cuStreamQuery: {status:?}"));
        }
        self.streams.insert((device, stream_id.value), ptr);
        Ok(ptr)
    }
}

/// Compiles the kernel for the current context's device and loads it (the module is kept for the
/// process).
fn load_function() -> Result<usize, String> {
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
    if major < 6 {
        return Err(format!("compute capability {major}.{minor} is too old"));
    }
    let ptx = super::adamw_ptx(&format!("sm_{major}{minor}"))?;
    let image = CString::new(ptx).map_err(|e| format!("PTX with NUL: {e}"))?;
    let name = CString::new("adamw_step").expect("no NUL");
    let mut module: cu::CUmodule = std::ptr::null_mut();
    let mut f: cu::CUfunction = std::ptr::null_mut();
    // SAFETY: a NUL-terminated PTX image (the module is kept for the process) and entry name.
    unsafe {
        check(
            "cuModuleLoadData",
            cu::cuModuleLoadData(&mut module, image.as_ptr() as *const c_void),
        )?;
        check(
            "cuModuleGetFunction(adamw_step)",
            cu::cuModuleGetFunction(&mut f, module, name.as_ptr()),
        )?;
    }
    Ok(f as usize)
}

impl Job {
    fn run(self, server: &mut Server, device: DevKey) -> Result<(), String> {
        let stream_id = StreamId::current();
        let mut held = Vec::new();
        let mut ptrs = Vec::with_capacity(8);
        let all = self
            .inputs
            .iter()
            .chain(self.outputs.iter())
            .chain(self.value_out.iter());
        for h in all {
            let r = server
                .get_resource(h.clone().binding(), stream_id)
                .map_err(|e| format!("get_resource: {e:?}"))?;
            ptrs.push(r.resource().ptr);
            held.push(r);
        }
        let mut p = self.params;
        [p.g, p.m, p.v, p.p, p.m_out, p.v_out, p.p_out] =
            [ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5], ptrs[6]];
        p.value_out = ptrs.get(7).copied().unwrap_or(0);
        let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
        let f = st.function(device)?;
        let stream = st.stream(server, device, stream_id)?;
        let mut args = [&mut p as *mut AdamWParams as *mut c_void];
        // SAFETY: the function takes one `AdamWParams` by value, mirrored above; every pointer is a
        // live burn buffer held in `held` until after the enqueue (burn's stream ordering keeps it
        // alive for the kernel); the stream is the server's.
        unsafe {
            check(
                "cuLaunchKernel(adamw_step)",
                cu::cuLaunchKernel(
                    f as cu::CUfunction,
                    self.blocks,
                    1,
                    1,
                    THREADS,
                    1,
                    1,
                    0,
                    stream as cu::CUstream,
                    args.as_mut_ptr(),
                    std::ptr::null_mut(),
                ),
            )?;
        }
        drop(held);
        Ok(())
    }
}
