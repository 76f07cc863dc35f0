//! Shared raw-CUDA glue of the NVRTC kernels that run on burn-cuda's buffers and stream.
//!
//! The mechanics are those `linear/cuda.rs` documents (read its module docs): a burn-cuda tensor
//! primitive is a [`CubeTensor`] reached from a generic `Tensor<B, D>` by `TypeId` ([`cast`]);
//! device pointers are resolved with `ComputeServer::get_resource` inside
//! `DeviceHandle::submit_blocking` on cubecl's device thread ([`on_device`], [`Pointers`]), in
//! order with the work burn queued before; kernels are enqueued with `cuLaunchKernel` ([`launch`])
//! on the server's private stream for this thread's slot ([`stream`], read once per
//! (device, stream id) from the server's `Debug` output with `linear::cuda`'s parsers). Kernel
//! sources are compiled by NVRTC for the device's compute capability ([`compute_capability`]) once
//! per process and architecture ([`ptx_cached`]), loaded once per device and module, and their
//! entry points looked up once ([`function`]). Outputs are allocated by burn (`client.empty`);
//! nothing here synchronises the host with the GPU.
//!
//! Used by `optim/cuda.rs` (AdamW) and `loss/cuda.rs` (token log-prob + entropy). `linear/` and
//! `attention/` still carry their own copies of this code (candidates to move onto it).
//!
//! The NVRTC half ([`ptx_cached`]) only needs the `nvrtc` feature (the compile checks run
//! without a GPU); the driver half needs `cuda`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Compiles `source` (file name `name`, for NVRTC's messages) to PTX for `arch` (e.g. `sm_90`),
/// cached per process by `(name, arch)`, failures included (a broken source is reported once).
/// Errors carry NVRTC's log.
pub(crate) fn ptx_cached(name: &str, source: &str, arch: &str) -> Result<String, String> {
    type Cache = Mutex<HashMap<(String, String), Result<String, String>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (name.to_string(), arch.to_string());
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return hit.clone();
    }
    let built = compile(name, source, arch);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, built.clone());
    built
}

fn compile(name: &str, source: &str, arch: &str) -> Result<String, String> {
    use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
    if !crate::attention::nvrtc::nvrtc_present() {
        return Err("libnvrtc not found".into());
    }
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()],
        name: Some(name.into()),
        ..Default::default()
    };
    match compile_ptx_with_opts(source, opts) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(cudarc::nvrtc::CompileError::CompileError { log, .. }) => {
            Err(format!("NVRTC failed on {name} for {arch}:\n{}", log.to_string_lossy()))
        }
        Err(e) => Err(format!("NVRTC failed on {name} for {arch}: {e:?}")),
    }
}

#[cfg(feature = "cuda")]
pub(crate) use driver::*;

#[cfg(feature = "cuda")]
mod driver {
    use std::any::Any;
    use std::collections::HashMap;
    use std::ffi::{c_void, CString};
    use std::sync::{Mutex, OnceLock};

    use burn::backend::Autodiff;
    use burn::tensor::backend::BackendTypes;
    use burn_cubecl::cubecl::cuda::CudaRuntime;
    use burn_cubecl::cubecl::device::Device;
    use burn_cubecl::cubecl::device_handle::DeviceHandle;
    use burn_cubecl::cubecl::server::{ComputeServer, Handle};
    use burn_cubecl::cubecl::stream_id::StreamId;
    use burn_cubecl::cubecl::Runtime;
    use burn_cubecl::tensor::CubeTensor;
    use burn_cubecl::CubeBackend;
    use cudarc::driver::sys as cu;

    use crate::linear::cuda::{parse_sys, pool_entries};

    /// The engine's burn-cuda backend type.
    pub(crate) type Cuda = CubeBackend<CudaRuntime, f32, i32, u8>;
    /// burn-cuda's tensor primitive (float and int alike).
    pub(crate) type CT = CubeTensor<CudaRuntime>;
    /// burn-autodiff's float primitive over burn-cuda.
    pub(crate) type AutodiffTensor = <Autodiff<Cuda> as BackendTypes>::FloatTensorPrimitive;
    /// cubecl-cuda's compute server.
    pub(crate) type Server = <CudaRuntime as Runtime>::Server;
    /// A device: cubecl's `(type id, index)`.
    pub(crate) type DevKey = (u16, u32);

    /// Moves a value to type `T` when it is one (checked by `TypeId`), else gives it back.
    pub(crate) fn cast<A: 'static, T: 'static>(a: A) -> Result<T, A> {
        let mut slot = Some(a);
        match (&mut slot as &mut dyn Any).downcast_mut::<Option<T>>() {
            Some(t) => Ok(t.take().expect("slot is full")),
            None => Err(slot.expect("slot is full")),
        }
    }

    /// A float tensor's backend primitive (cloned).
    pub(crate) fn float_prim<B: burn::tensor::backend::Backend, const D: usize>(
        t: &burn::tensor::Tensor<B, D>,
    ) -> B::FloatTensorPrimitive {
        t.clone().into_primitive().tensor()
    }

    /// The kernels' dtype suffix (`f32`, `bf16`, `f16`), `None` for other dtypes.
    pub(crate) fn dtype_name(dtype: burn::tensor::DType) -> Option<&'static str> {
        match dtype {
            burn::tensor::DType::F32 => Some("f32"),
            burn::tensor::DType::BF16 => Some("bf16"),
            burn::tensor::DType::F16 => Some("f16"),
            _ => None,
        }
    }

    /// Warns once per distinct `reason` (remembered in `seen`) that `what` fell back to `to`.
    pub(crate) fn warn_once(seen: &Mutex<Vec<String>>, what: &str, to: &str, reason: &str) {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.iter().any(|s| s == reason) {
            tracing::warn!("{what} fell back to {to}: {reason}");
            seen.push(reason.to_string());
        }
    }

    /// `Ok` for `CUDA_SUCCESS`, else `what` and the code.
    pub(crate) fn check(what: &str, r: cu::CUresult) -> Result<(), String> {
        if r == cu::CUresult::CUDA_SUCCESS {
            Ok(())
        } else {
            Err(format!("{what}: {r:?}"))
        }
    }

    /// Runs `job` on cubecl's device thread of `like`'s device with the server and the device's
    /// key, in order with the work burn queued before, and waits for the closure (not the GPU).
    pub(crate) fn on_device<R: Send>(
        like: &CT,
        job: impl FnOnce(&mut Server, DevKey) -> Result<R, String> + Send,
    ) -> Result<R, String> {
        let device_id = like.device.to_id();
        let key: DevKey = (device_id.type_id, device_id.index_id as u32);
        let device = DeviceHandle::<Server>::new(device_id);
        match device.submit_blocking(move |server| job(server, key)) {
            Ok(r) => r,
            Err(err) => Err(format!("device call failed: {err:?}")),
        }
    }

    /// Buffers resolved to device pointers on the device thread, held until dropped (after the
    /// launches that use them are enqueued; burn's stream ordering keeps them alive for the
    /// kernels).
    pub(crate) struct Pointers {
        stream_id: StreamId,
        held: Vec<Box<dyn Any + Send>>,
    }

    impl Pointers {
        /// For the current thread's stream (call on the device thread).
        pub(crate) fn new() -> Self {
            Self {
                stream_id: StreamId::current(),
                held: Vec::new(),
            }
        }

        /// The stream id the pointers were resolved for.
        pub(crate) fn stream_id(&self) -> StreamId {
            self.stream_id
        }

        /// The device address of `handle` (its offset included).
        pub(crate) fn resolve(&mut self, server: &mut Server, handle: Handle) -> Result<u64, String> {
            let r = server
                .get_resource(handle.binding(), self.stream_id)
                .map_err(|e| format!("get_resource: {e:?}"))?;
            let ptr = r.resource().ptr;
            self.held.push(Box::new(r));
            Ok(ptr)
        }
    }

    /// Per process: compute capabilities, streams, loaded modules and functions, keyed by device.
    #[derive(Default)]
    struct RtState {
        arch: HashMap<DevKey, (i32, i32)>,
        streams: HashMap<(DevKey, u64), usize>,
        modules: HashMap<(DevKey, &'static str), Result<usize, String>>,
        functions: HashMap<(DevKey, &'static str, String), usize>,
    }

    fn state() -> &'static Mutex<RtState> {
        static STATE: OnceLock<Mutex<RtState>> = OnceLock::new();
        STATE.get_or_init(Default::default)
    }

    fn query_capability() -> Result<(i32, i32), String> {
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
        Ok((major, minor))
    }

    /// `(major, minor)` compute capability of `device` (call on its device thread, where its
    /// context is current); queried once.
    pub(crate) fn compute_capability(device: DevKey) -> Result<(i32, i32), String> {
        let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&a) = st.arch.get(&device) {
            return Ok(a);
        }
        let a = query_capability()?;
        st.arch.insert(device, a);
        Ok(a)
    }

    /// The server's `CUstream` for `stream_id` on `device` (found once, checked with
    /// `cuStreamQuery`, cached).
    pub(crate) fn stream(server: &Server, device: DevKey, stream_id: StreamId) -> Result<usize, String> {
        let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&s) = st.streams.get(&(device, stream_id.value)) {
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
        st.streams.insert((device, stream_id.value), ptr);
        Ok(ptr)
    }

    /// Entry point `entry` of module `module` on `device` (call on its device thread). The module
    /// is built once per device by `ptx` (given the device's compute capability; it may refuse an
    /// old one with an error) and loaded for the process; a failure is cached and returned again.
    pub(crate) fn function(
        device: DevKey,
        module: &'static str,
        entry: &str,
        ptx: impl FnOnce((i32, i32)) -> Result<String, String>,
    ) -> Result<usize, String> {
        let capability = compute_capability(device)?;
        let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&f) = st.functions.get(&(device, module, entry.to_string())) {
            return Ok(f);
        }
        let m = match st.modules.get(&(device, module)) {
            Some(m) => m.clone(),
            None => {
                let loaded = ptx(capability).and_then(|ptx| {
                    let image = CString::new(ptx).map_err(|e| format!("PTX with NUL: {e}"))?;
                    let mut m: cu::CUmodule = std::ptr::null_mut();
                    // SAFETY: a NUL-terminated PTX image; the module is kept for the process.
                    unsafe {
                        check(
                            "cuModuleLoadData",
                            cu::cuModuleLoadData(&mut m, image.as_ptr() as *const c_void),
                        )?;
                    }
                    Ok(m as usize)
                });
                st.modules.insert((device, module), loaded.clone());
                loaded
            }
        }?;
        let name = CString::new(entry).map_err(|e| e.to_string())?;
        let mut f: cu::CUfunction = std::ptr::null_mut();
        // SAFETY: a loaded module and a NUL-terminated name.
        unsafe {
            check(
                &format!("cuModuleGetFunction({entry})"),
                cu::cuModuleGetFunction(&mut f, m as cu::CUmodule, name.as_ptr()),
            )?;
        }
        st.functions.insert((device, module, entry.to_string()), f as usize);
        Ok(f as usize)
    }

    /// Enqueues `f` on `stream` with one by-value parameter `params`.
    ///
    /// # Safety
    /// `f` must take exactly one parameter laid out as `P`; every device pointer in `params` must
    /// be live (e.g. held by [`Pointers`] until after this call) and large enough for the grid;
    /// `stream` must be the server's stream of the buffers' device.
    pub(crate) unsafe fn launch<P>(
        what: &str,
        f: usize,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: u32,
        stream: usize,
        params: &mut P,
    ) -> Result<(), String> {
        let mut args = [params as *mut P as *mut c_void];
        // SAFETY: the caller's contract.
        unsafe {
            check(
                &format!("cuLaunchKernel({what})"),
                cu::cuLaunchKernel(
                    f as cu::CUfunction,
                    grid.0,
                    grid.1,
                    grid.2,
                    block.0,
                    block.1,
                    block.2,
                    shared_bytes,
                    stream as cu::CUstream,
                    args.as_mut_ptr(),
                    std::ptr::null_mut(),
                ),
            )
        }
    }
}
