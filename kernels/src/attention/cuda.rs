//! The fused attention kernels on burn-cuda's buffers and stream.
//!
//! Same mechanics as `linear/cuda.rs` (read its module docs): the burn-cuda primitive is reached by
//! `TypeId` downcast, device pointers come from `ComputeServer::get_resource` inside
//! `DeviceHandle::submit_blocking` (ordered after burn's queued work), and the kernels are
//! enqueued with `cuLaunchKernel` on the server's own `CUstream` for this thread's stream slot,
//! found once from the server's `Debug` output. Outputs and scratch buffers are allocated by burn
//! (`client.empty`); nothing synchronises the host.
//!
//! The kernels (`*.cu` beside this file) are compiled by NVRTC for the device's architecture on
//! first use (`sm_90a` on compute capability 9.0, Hopper, for wgmma; `sm_XY` elsewhere), loaded
//! once per device, and looked up by name:
//! - forward, bf16/f16 with head dim 64/128 and at most 16 query rows per (batch, kv head)
//!   (GQA group × queries: decode): `attn_fwd_decode_*` (`decode.cu`, tensor-core flash-decoding,
//!   each K/V byte read once per kv head, keys split over blocks, then `attn_fwd_combine_*`);
//! - forward, bf16/f16 with head dim 64/128 and at least 16 queries otherwise: from 128 queries
//!   `attn_fwd_wg_*` on Hopper (`fwd_wg.cu`: wgmma, two warpgroups, two 128-row query blocks per
//!   block; the choice is made on the device thread, `Work::Forward::hopper`) and
//!   `attn_fwd_mma3_*` on other GPUs (mma.sync, FlashAttention-2 layout, 128-row blocks, 32 rows
//!   per warp), `attn_fwd_mma2_*` below 128 queries (64-row blocks); all fetch the next tile's
//!   K/V during this tile's products;
//! - forward otherwise (f32, head dim 32, unaligned): `attn_fwd_simple_*`, split over the keys when
//!   the grid would be too small to fill the GPU (decode), then `attn_fwd_combine_*`;
//! - backward (autodiff), from the forward's saved log-sum-exp: `attn_bwd_pre_*` (delta =
//!   rowsum(dO ⊙ O), and zeroing the f32 dQ accumulator), then for bf16/f16 with head dim 64/128
//!   and the forward's alignment rules the tensor-core `attn_bwd_mma_dkdv_*` (`bwd_mma.cu`: one
//!   block per KV head reducing the GQA group in registers, or, when that grid is small
//!   (`bwd_splits_group`), dK/dV per query head then `attn_bwd_mma_dkdv_reduce_*` over the group;
//!   `RESEARCH_ATTENTION_BWD=grouped|split` forces either; dQ added per step with f32 vector atomics, then
//!   `attn_bwd_mma_dq_convert_*`; `RESEARCH_ATTENTION_DQ=separate` runs `attn_bwd_mma_dq_*`
//!   instead, which recomputes S and dP), otherwise the scalar `attn_bwd_dkdv_*` and
//!   `attn_bwd_dq_*` (`bwd.cu`).
//!
//! `RESEARCH_ATTENTION_KERNEL=simple` forces the scalar forward, `=mma1` the first, unpipelined
//! tensor-core forward, `=wg` the wgmma forward (Hopper) and `=mma2` / `=mma3` the mma.sync
//! schedules at every query count
//! (none of them with the decode kernel), `=nodecode` the default routing without the decode
//! kernel (decode on the scalar split-K kernel); `RESEARCH_ATTENTION_BWD=simple` forces the scalar
//! backward (for comparisons). `RESEARCH_ATTENTION_SOURCES=dir` compiles the kernels from the
//! `.cu`/`.cuh` files in `dir` instead of the embedded ones (kernel development on a machine
//! without a Rust toolchain; see `nvrtc.rs`). Launches are counted per kernel kind
//! ([`kernel_counts`]).

use std::any::TypeId;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::Autodiff;
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::ops::IntTensorOps;
use burn::tensor::{DType, Shape, Tensor, TensorData, TensorPrimitive};
use burn_cubecl::cubecl::cuda::CudaRuntime;
use burn_cubecl::cubecl::device::Device;
use burn_cubecl::cubecl::device_handle::DeviceHandle;
use burn_cubecl::cubecl::server::{ComputeServer, Handle};
use burn_cubecl::cubecl::stream_id::StreamId;
use burn_cubecl::cubecl::Runtime;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;
use cudarc::driver::sys as cu;

use super::fused::{decode_splits, DECODE_ROWS};
use super::AttentionBias;
use crate::cuda_rt::{cast, dtype_name, float_prim};
use crate::linear::cuda::{parse_sys, pool_entries};

type Cuda = CubeBackend<CudaRuntime, f32, i32, u8>;
type CT = CubeTensor<CudaRuntime>;
type AutodiffTensor = <Autodiff<Cuda> as BackendTypes>::FloatTensorPrimitive;
type Server = <CudaRuntime as Runtime>::Server;
type DevKey = (u16, u32);

/// Fused attention kernels enqueued, and calls that fell back to the reference after trying.
pub(crate) static LAUNCHED: AtomicU64 = AtomicU64::new(0);
pub(crate) static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// Launches per kernel kind (the entry point without `attn_` and the `_<dtype>_d<D>` suffix).
fn kind_counts() -> &'static Mutex<BTreeMap<String, u64>> {
    static COUNTS: OnceLock<Mutex<BTreeMap<String, u64>>> = OnceLock::new();
    COUNTS.get_or_init(Default::default)
}

/// `(kernel kind, launches)` so far in this process, sorted by kind (e.g. `bwd_mma_dkdv`).
pub(crate) fn kernel_counts() -> Vec<(String, u64)> {
    let counts = kind_counts().lock().unwrap_or_else(|e| e.into_inner());
    counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

const SIMPLE_ROWS: usize = 16;
const SIMPLE_KT: usize = 32;
const BWD_KT: usize = 32;
const BWD_QB: usize = 32;
/// Blocks wanted in flight before the forward splits the keys (about two waves on an H100).
const TARGET_BLOCKS: usize = 264;

/// Mirrors `struct Params` in `common.cuh` field for field.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct KernelParams {
    q: u64,
    k: u64,
    v: u64,
    o: u64,
    lse: u64,
    bias: u64,
    kv_len: u64,
    part_o: u64,
    part_ml: u64,
    dout: u64,
    delta: u64,
    dq: u64,
    dk: u64,
    dv: u64,
    b: i64,
    h: i64,
    kvh: i64,
    t: i64,
    s: i64,
    q_sb: i64,
    q_sh: i64,
    q_st: i64,
    k_sb: i64,
    k_sh: i64,
    k_ss: i64,
    v_sb: i64,
    v_sh: i64,
    v_ss: i64,
    o_sb: i64,
    o_sh: i64,
    o_st: i64,
    do_sb: i64,
    do_sh: i64,
    do_st: i64,
    bias_sb: i64,
    bias_st: i64,
    bias_ss: i64,
    causal: i64,
    q_offset: i64,
    splits: i64,
    split_len: i64,
    scale: f32,
    pad: f32,
}

const _: () = assert!(std::mem::size_of::<KernelParams>() == super::fused::PARAMS_BYTES);

/// Why the fused route was not taken.
enum Fail {
    /// The problem is outside what the kernels handle (silently takes the reference path).
    Unsupported,
    /// Something failed after trying (counted and warned once per reason).
    Error(String),
}

fn warn_once(reason: &str) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    FALLBACKS.fetch_add(1, Ordering::Relaxed);
    crate::cuda_rt::warn_once(&SEEN, "fused attention", "the reference path", reason);
}

/// `RESEARCH_ATTENTION_KERNEL`: `simple` forces the scalar forward, `mma` the single-buffered
/// tensor-core forward of run K, `mma1` the unpipelined one, `mma2` the double-buffered 64-row one
/// `mma3` the FlashAttention-2-layout one (128-row blocks, 32 rows per warp) and `wg` the wgmma one
/// (compute capability 9.0; `mma3` elsewhere), whatever the query count (for comparisons);
/// anything else (or unset) the default choice: from 128 queries `fwd_wg` on 9.0 and `fwd_mma3`
/// elsewhere, `fwd_mma2` below. `simple`, `mma`, `mma1`, `mma2`, `mma3`, `wg` and `nodecode` also
/// keep decode shapes off the decode kernel (`nodecode` changes nothing else).
fn kernel_choice() -> Option<String> {
    std::env::var("RESEARCH_ATTENTION_KERNEL").ok()
}

/// `RESEARCH_ATTENTION_BWD=simple` forces the scalar backward (for comparisons).
fn bwd_simple_forced() -> bool {
    std::env::var("RESEARCH_ATTENTION_BWD").is_ok_and(|v| v == "simple")
}

/// Whether the tensor-core dK/dV kernel runs one block per query head (f32 partials, then
/// `attn_bwd_mma_dkdv_reduce`) instead of one block per KV head: [`super::bwd_splits_group`].
fn bwd_split_group(g: &Geometry) -> bool {
    super::fused::bwd_splits_group(g.b, g.h, g.kvh, g.s)
}

/// Queries from which the forward takes `attn_fwd_mma3_*` (one of its 128-row blocks; below that
/// `attn_fwd_mma2_*`'s 64-row blocks waste less). The tensor-core kernels' tile sizes, block sizes
/// and shared memory are declared by their sources (`KERNEL_GEOM`, read at load time).
const MMA3_MIN_T: usize = 128;

/// Whether the tensor-core backward adds dQ inside the dK/dV kernel (f32 atomics into an
/// accumulator, then `attn_bwd_mma_dq_convert`) instead of running `attn_bwd_mma_dq`, which
/// recomputes S and dP per query block: [`super::bwd_fused_dq`].
fn bwd_fused_dq(g: &Geometry) -> bool {
    super::fused::bwd_fused_dq(g.t, g.d)
}

/// Dynamic shared memory of `attn_fwd_decode_*` for head dim `d`: `DecodeCfg<D>::SMEM` in
/// `decode.cu`, the larger of the K/V rings (4 warps × 3 stages × K and V slices of 16 rows padded
/// to d + 8 elements) and the end-of-block merge area (4 warps × 16 rows × (d + 4) f32, plus m and
/// l). The kernel traps when given less.
fn decode_smem(d: usize) -> u32 {
    let ring = 4 * 3 * 2 * 16 * (d + 8) * 2;
    let merge = 4 * 16 * (d + 4) * 4 + 4 * 16 * 2 * 4;
    ring.max(merge) as u32
}

/// Whether `B` is burn-cuda or burn-cuda under autodiff (the backends [`try_fused`] takes).
pub(crate) fn is_cuda<B: Backend>() -> bool {
    let id = TypeId::of::<B>();
    id == TypeId::of::<Cuda>()
        || id == TypeId::of::<Autodiff<Cuda, NoCheckpointing>>()
        || id == TypeId::of::<Autodiff<Cuda, BalancedCheckpointing>>()
}

/// The fused route when `B` is burn-cuda or burn-cuda under autodiff, else `None`.
pub(crate) fn try_fused<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    causal: bool,
    q_offset: usize,
    kv_lens: Option<&[usize]>,
    bias: Option<&AttentionBias<B>>,
) -> Option<Tensor<B, 4>> {
    let id = TypeId::of::<B>();
    let plain = id == TypeId::of::<Cuda>();
    let ad_none = id == TypeId::of::<Autodiff<Cuda, NoCheckpointing>>();
    let ad_bal = id == TypeId::of::<Autodiff<Cuda, BalancedCheckpointing>>();
    if !(plain || ad_none || ad_bal) {
        return None;
    }
    let (qp, kp, vp) = (float_prim(q), float_prim(k), float_prim(v));
    let bp = bias.map(|b| float_prim(&b.bias));
    let mask = Mask { causal, q_offset };
    let result = if plain {
        let (qc, kc, vc) = (
            cast::<_, CT>(qp).ok()?,
            cast::<_, CT>(kp).ok()?,
            cast::<_, CT>(vp).ok()?,
        );
        let bc = match bp {
            Some(b) => Some(cast::<_, CT>(b).ok()?),
            None => None,
        };
        let lens = upload_lens(kv_lens, &qc)?;
        forward(&qc, &kc, &vc, bc.as_ref(), lens.as_ref(), mask, false)
            .map(|(o, _)| cast::<_, B::FloatTensorPrimitive>(o).ok())
    } else {
        type AT = AutodiffTensor;
        let (qa, ka, va) = (
            cast::<_, AT>(qp).ok()?,
            cast::<_, AT>(kp).ok()?,
            cast::<_, AT>(vp).ok()?,
        );
        let bc = match bp {
            Some(b) => Some(cast::<_, AT>(b).ok()?.primitive),
            None => None,
        };
        let lens = upload_lens(kv_lens, &qa.primitive)?;
        let out = if ad_none {
            autodiff_forward::<NoCheckpointing>(qa, ka, va, bc, lens, mask)
        } else {
            autodiff_forward::<BalancedCheckpointing>(qa, ka, va, bc, lens, mask)
        };
        out.map(|o| cast::<_, B::FloatTensorPrimitive>(o).ok())
    };
    match result {
        Ok(Some(o)) => Some(Tensor::from_primitive(TensorPrimitive::Float(o))),
        Ok(None) | Err(Fail::Unsupported) => None,
        Err(Fail::Error(reason)) => {
            warn_once(&reason);
            None
        }
    }
}

/// Per-sequence key lengths as an i32 device tensor (`Some(None)` without lengths; `None` when a
/// length does not fit i32).
fn upload_lens(kv_lens: Option<&[usize]>, like: &CT) -> Option<Option<CT>> {
    let Some(lens) = kv_lens else {
        return Some(None);
    };
    let values: Vec<i32> = lens.iter().map(|&l| i32::try_from(l).ok()).collect::<Option<_>>()?;
    let n = values.len();
    Some(Some(Cuda::int_from_data(TensorData::new(values, [n]), &like.device)))
}

#[derive(Clone, Copy, Debug)]
struct Mask {
    causal: bool,
    q_offset: usize,
}

/// Shapes and strides of one problem, validated.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    b: usize,
    h: usize,
    kvh: usize,
    t: usize,
    s: usize,
    d: usize,
    dtype: DType,
}

fn dims4(x: &CT) -> Option<([usize; 4], [usize; 4])> {
    let shape: [usize; 4] = x.meta.shape().to_vec().try_into().ok()?;
    let strides: [usize; 4] = x.meta.strides().to_vec().try_into().ok()?;
    Some((shape, strides))
}

fn geometry(q: &CT, k: &CT, v: &CT) -> Result<Geometry, Fail> {
    let dtype = q.dtype;
    if dtype_name(dtype).is_none() || k.dtype != dtype || v.dtype != dtype {
        return Err(Fail::Unsupported);
    }
    if q.qparams.is_some() || k.qparams.is_some() || v.qparams.is_some() {
        return Err(Fail::Unsupported);
    }
    let ((qs, qst), (ks, kst), (vs, vst)) = match (dims4(q), dims4(k), dims4(v)) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => return Err(Fail::Unsupported),
    };
    let [b, h, t, d] = qs;
    let [kb, kvh, s, kd] = ks;
    if kb != b || kd != d || vs != ks || kvh == 0 || h % kvh != 0 {
        return Err(Fail::Unsupported);
    }
    if b == 0 || h == 0 || t == 0 || s == 0 || !super::HEAD_DIMS.contains(&d) {
        return Err(Fail::Unsupported);
    }
    if qst[3] != 1 || kst[3] != 1 || vst[3] != 1 {
        return Err(Fail::Unsupported);
    }
    Ok(Geometry {
        b,
        h,
        kvh,
        t,
        s,
        d,
        dtype,
    })
}

/// Base parameters: shapes, input strides, mask, scale (pointers are filled on the device thread).
fn base_params(g: &Geometry, q: &CT, k: &CT, v: &CT, bias: Option<&CT>, mask: Mask) -> Result<KernelParams, Fail> {
    let st = |x: &CT| -> [i64; 4] {
        let s = x.meta.strides();
        [s[0] as i64, s[1] as i64, s[2] as i64, s[3] as i64]
    };
    let (qs, ks, vs) = (st(q), st(k), st(v));
    let mut p = KernelParams {
        b: g.b as i64,
        h: g.h as i64,
        kvh: g.kvh as i64,
        t: g.t as i64,
        s: g.s as i64,
        q_sb: qs[0],
        q_sh: qs[1],
        q_st: qs[2],
        k_sb: ks[0],
        k_sh: ks[1],
        k_ss: ks[2],
        v_sb: vs[0],
        v_sh: vs[1],
        v_ss: vs[2],
        o_sb: (g.h * g.t * g.d) as i64,
        o_sh: (g.t * g.d) as i64,
        o_st: g.d as i64,
        causal: i64::from(mask.causal),
        q_offset: mask.q_offset as i64,
        splits: 1,
        split_len: g.s.div_ceil(SIMPLE_KT) as i64 * SIMPLE_KT as i64,
        scale: 1.0 / (g.d as f32).sqrt(),
        ..Default::default()
    };
    if let Some(bias) = bias {
        let (shape, strides) = dims4(bias).ok_or(Fail::Unsupported)?;
        let [bb, one, bt, bs] = shape;
        if bias.dtype != DType::F32 || one != 1 || !(bb == 1 || bb == g.b) || !(bt == 1 || bt == g.t) || bs != g.s {
            return Err(Fail::Unsupported);
        }
        p.bias_sb = if bb == 1 { 0 } else { strides[0] as i64 };
        p.bias_st = if bt == 1 { 0 } else { strides[2] as i64 };
        p.bias_ss = if bs == 1 { 0 } else { strides[3] as i64 };
    }
    Ok(p)
}

/// Buffers of one device call, resolved to pointers on the device thread.
#[derive(Default)]
struct Buffers {
    q: Option<Handle>,
    k: Option<Handle>,
    v: Option<Handle>,
    o: Option<Handle>,
    lse: Option<Handle>,
    bias: Option<Handle>,
    kv_len: Option<Handle>,
    part_o: Option<Handle>,
    part_ml: Option<Handle>,
    dout: Option<Handle>,
    delta: Option<Handle>,
    dq: Option<Handle>,
    dk: Option<Handle>,
    dv: Option<Handle>,
}

/// One kernel launch: entry point, grid, dynamic shared memory, 128 threads; or, for the
/// tensor-core kernels (`tiled`), the geometry their source declares (`KERNEL_GEOM`).
#[derive(Clone, Debug)]
struct Launch {
    module: &'static str,
    /// The module instance: dtype name and head dim.
    dt: &'static str,
    d: usize,
    entry: String,
    grid: (u32, u32, u32),
    smem: u32,
    /// `Some(extent)`: the kernel's source declares its block size, dynamic shared memory and
    /// rows per block (`<entry>_geom`, see `KERNEL_GEOM` in common.cuh); grid x becomes
    /// `extent / rows` rounded up and `grid.0` / `smem` above are ignored. Tile sizes and warp
    /// counts then live in the `.cu` file alone (no mirror here), so a kernel variant loaded
    /// through `RESEARCH_ATTENTION_SOURCES` may change them without a rebuild.
    tiled: Option<usize>,
}

/// A tensor-core kernel's launch geometry as its source declares it (`KERNEL_GEOM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geom {
    threads: u32,
    smem: u32,
    rows: u32,
}

impl Geom {
    /// Parses the `<entry>_geom` array (threads, dynamic shared memory bytes, rows per block).
    fn parse(v: [i32; 3], entry: &str) -> Result<Geom, String> {
        let [threads, smem, rows] = v;
        let ok = (32..=1024).contains(&threads) && threads % 32 == 0 && (0..=227 * 1024).contains(&smem) && rows > 0;
        if !ok {
            return Err(format!(
                "{entry}_geom = {v:?}: expected threads (a multiple of 32, at most 1024), \
                 dynamic shared memory bytes (at most 227 KiB) and rows per block (> 0)"
            ));
        }
        Ok(Geom {
            threads: threads as u32,
            smem: smem as u32,
            rows: rows as u32,
        })
    }
}

/// What a device call does once pointers are known.
enum Work {
    /// Forward: the decode kernels when given and the pointers are 16-byte aligned, else the
    /// tensor-core kernel when asked and aligned, else the scalar kernel (`simple`, with its split
    /// count). `preload_bwd` also loads the backward module so that a compile failure shows now,
    /// while the reference path can still run.
    Forward {
        mma: Option<Launch>,
        /// Taken instead of `mma` on a compute capability 9.0 device (`attn_fwd_wg_*`, wgmma).
        /// (Boxed: keeps the variants of `Work` close in size.)
        hopper: Option<Box<Launch>>,
        decode: Option<DecodeLaunch>,
        simple: Vec<Launch>,
        preload_bwd: Vec<Launch>,
    },
    /// Backward: the tensor-core kernels when given and the pointers are 16-byte aligned, else
    /// the scalar ones.
    Backward {
        mma: Option<Vec<Launch>>,
        simple: Vec<Launch>,
    },
}

/// The decode kernel (then the combine when the keys are split) and its split of the keys; taken
/// before `mma` when present and the pointers are 16-byte aligned.
struct DecodeLaunch {
    launches: Vec<Launch>,
    splits: i64,
    split_len: i64,
}

struct Job {
    params: KernelParams,
    buffers: Buffers,
    work: Work,
}

fn grid(x: usize, y: usize, z: usize) -> Result<(u32, u32, u32), Fail> {
    let ok = |v: usize, max: usize| if v <= max { Ok(v as u32) } else { Err(Fail::Unsupported) };
    Ok((ok(x, i32::MAX as usize)?, ok(y, 65_535)?, ok(z, 65_535)?))
}

/// The tensor-core backward (`attn_bwd_pre_*` of the scalar module, then the two mma kernels),
/// with the fused dQ (`fused_dq`, decided once per backward: the accumulator is allocated by the
/// same decision) or the separate dQ kernel.
fn bwd_mma_launches(g: &Geometry, fused_dq: bool) -> Result<Vec<Launch>, Fail> {
    let dt = dtype_name(g.dtype).ok_or(Fail::Unsupported)?;
    let d = g.d;
    let mut pre = bwd_launches(g)?;
    pre.truncate(1);
    let split = bwd_split_group(g);
    pre.push(Launch {
        module: "bwd_mma",
        dt,
        d,
        entry: format!("attn_bwd_mma_dkdv_{dt}_d{d}"),
        grid: grid(1, if split { g.h } else { g.kvh }, g.b)?,
        smem: 0,
        tiled: Some(g.s),
    });
    if split {
        pre.push(Launch {
            module: "bwd_mma",
            dt,
            d,
            entry: format!("attn_bwd_mma_dkdv_reduce_{dt}_d{d}"),
            grid: grid((g.b * g.kvh * g.s * d).div_ceil(512), 1, 1)?,
            smem: 0,
            tiled: None,
        });
    }
    // dQ: the fused accumulator's convert, or the separate kernel.
    let (kind, dq_grid, tiled) = if fused_dq {
        ("dq_convert", grid((g.b * g.h * g.t * d).div_ceil(512), 1, 1)?, None)
    } else {
        ("dq", grid(1, g.h, g.b)?, Some(g.t))
    };
    pre.push(Launch {
        module: "bwd_mma",
        dt,
        d,
        entry: format!("attn_bwd_mma_{kind}_{dt}_d{d}"),
        grid: dq_grid,
        smem: 0,
        tiled,
    });
    Ok(pre)
}

/// Whether the tensor-core kernels take this problem (dtype, head dim, strides in multiples of 8
/// elements; pointer alignment is checked on the device thread).
fn mma_shape_ok(g: &Geometry, strides: &[i64]) -> bool {
    g.dtype != DType::F32 && (g.d == 64 || g.d == 128) && strides.iter().all(|s| s % 8 == 0)
}

fn bwd_launches(g: &Geometry) -> Result<Vec<Launch>, Fail> {
    let dt = dtype_name(g.dtype).ok_or(Fail::Unsupported)?;
    let d = g.d;
    let groups = g.h / g.kvh;
    let dkdv_smem = ((2 * BWD_KT * (d + 1) + 2 * BWD_QB * (d + 1) + 2 * BWD_QB * (BWD_KT + 1) + 2 * BWD_QB) * 4
        + BWD_QB * 8) as u32;
    let dq_smem = ((2 * BWD_KT * (d + 1) + 2 * SIMPLE_ROWS * d) * 4) as u32;
    Ok(vec![
        Launch {
            module: "bwd",
            dt,
            d,
            entry: format!("attn_bwd_pre_{dt}_d{d}"),
            grid: grid((g.b * g.h * g.t).div_ceil(4), 1, 1)?,
            smem: 0,
            tiled: None,
        },
        Launch {
            module: "bwd",
            dt,
            d,
            entry: format!("attn_bwd_dkdv_{dt}_d{d}"),
            grid: grid(g.s.div_ceil(BWD_KT), g.kvh, g.b)?,
            smem: dkdv_smem,
            tiled: None,
        },
        Launch {
            module: "bwd",
            dt,
            d,
            entry: format!("attn_bwd_dq_{dt}_d{d}"),
            grid: grid((groups * g.t).div_ceil(SIMPLE_ROWS), 1, g.b * g.kvh)?,
            smem: dq_smem,
            tiled: None,
        },
    ])
}

/// The forward on burn-cuda primitives: `(O [b, h, t, d], lse [b, h, t] f32)`.
fn forward(
    q: &CT,
    k: &CT,
    v: &CT,
    bias: Option<&CT>,
    kv_len: Option<&CT>,
    mask: Mask,
    preload_bwd: bool,
) -> Result<(CT, CT), Fail> {
    let g = geometry(q, k, v)?;
    if let Some(l) = kv_len {
        let lens_shape = l.meta.shape().to_vec();
        if l.dtype != DType::I32 || lens_shape.len() != 1 || lens_shape[0] != g.b {
            return Err(Fail::Unsupported);
        }
    }
    let mut p = base_params(&g, q, k, v, bias, mask)?;
    let dt = dtype_name(g.dtype).ok_or(Fail::Unsupported)?;
    let d = g.d;
    let groups = g.h / g.kvh;
    let elem = g.dtype.size();
    let client = &q.client;
    let o = client.empty(g.b * g.h * g.t * d * elem);
    let lse = client.empty(g.b * g.h * g.t * 4);

    let strides_ok = [p.q_sb, p.q_sh, p.q_st, p.k_sb, p.k_sh, p.k_ss, p.v_sb, p.v_sh, p.v_ss]
        .iter()
        .all(|s| s % 8 == 0);
    let choice = kernel_choice();
    // fwd_mma3 indexes rows and keys as 32-bit ints; its 128-row blocks suit prefill of at least
    // one block (fwd_mma2's 64-row blocks waste less on shorter chunks).
    let mma3_fits = g.t <= i32::MAX as usize && g.s <= i32::MAX as usize;
    let kind = match choice.as_deref() {
        Some("mma1") => "fwd_mma1",
        Some("mma") => "fwd_mma",
        Some("mma2") => "fwd_mma2",
        Some("mma3") if mma3_fits => "fwd_mma3",
        _ if mma3_fits && g.t >= MMA3_MIN_T => "fwd_mma3",
        _ => "fwd_mma2",
    };
    // On Hopper (decided on the device thread: `Work::Forward::hopper`) the wgmma forward takes
    // what `fwd_mma3` would, unless another kernel is forced; `wg` forces it from 16 queries.
    let wg = match choice.as_deref() {
        Some("wg") => mma3_fits,
        Some("mma1" | "mma" | "mma2" | "mma3") => false,
        _ => kind == "fwd_mma3",
    };
    let simple_forced = choice.as_deref() == Some("simple");
    let mma = (g.dtype != DType::F32 && (d == 64 || d == 128) && g.t >= 16 && strides_ok && !simple_forced)
        .then(|| -> Result<Launch, Fail> {
            Ok(Launch {
                module: "fwd_mma",
                dt,
                d,
                entry: format!("attn_{kind}_{dt}_d{d}"),
                grid: grid(1, g.h, g.b)?,
                smem: 0,
                tiled: Some(g.t),
            })
        })
        .transpose()?;
    let hopper = match &mma {
        Some(m) if wg => Some(Box::new(Launch {
            module: "fwd_wg",
            entry: format!("attn_fwd_wg_{dt}_d{d}"),
            ..m.clone()
        })),
        _ => None,
    };
    // Decode: the whole GQA group's query rows of one (batch, kv head) in one mma tile.
    let decode = (g.dtype != DType::F32
        && (d == 64 || d == 128)
        && groups * g.t <= DECODE_ROWS
        && strides_ok
        && choice
            .as_deref()
            .is_none_or(|c| !["simple", "mma", "mma1", "mma2", "mma3", "wg", "nodecode"].contains(&c)))
    .then(|| -> Result<DecodeLaunch, Fail> {
        let (splits, split_len) = decode_splits(g.b * g.kvh, g.s);
        let mut launches = vec![Launch {
            module: "decode",
            dt,
            d,
            entry: format!("attn_fwd_decode_{dt}_d{d}"),
            grid: grid(splits, g.kvh, g.b)?,
            smem: decode_smem(d),
            tiled: None,
        }];
        if splits > 1 {
            launches.push(Launch {
                module: "fwd_simple",
                dt,
                d,
                entry: format!("attn_fwd_combine_{dt}_d{d}"),
                grid: grid((g.b * g.h * g.t).div_ceil(4), 1, 1)?,
                smem: 0,
                tiled: None,
            });
        }
        Ok(DecodeLaunch {
            launches,
            splits: splits as i64,
            split_len: split_len as i64,
        })
    })
    .transpose()?;

    // The scalar kernel: split the keys when the grid alone would leave the GPU idle (decode).
    let row_blocks = (groups * g.t).div_ceil(SIMPLE_ROWS);
    let base_blocks = g.b * g.kvh * row_blocks;
    let mut splits = if mma.is_some() {
        1
    } else {
        TARGET_BLOCKS.div_ceil(base_blocks).clamp(1, g.s.div_ceil(SIMPLE_KT))
    };
    let split_len = g.s.div_ceil(splits).div_ceil(SIMPLE_KT) * SIMPLE_KT;
    splits = g.s.div_ceil(split_len);
    let mut simple = vec![Launch {
        module: "fwd_simple",
        dt,
        d,
        entry: format!("attn_fwd_simple_{dt}_d{d}"),
        grid: grid(splits, row_blocks, g.b * g.kvh)?,
        smem: 0,
        tiled: None,
    }];
    let mut buffers = Buffers {
        q: Some(q.handle.clone()),
        k: Some(k.handle.clone()),
        v: Some(v.handle.clone()),
        o: Some(o.clone()),
        lse: Some(lse.clone()),
        bias: bias.map(|b| b.handle.clone()),
        kv_len: kv_len.map(|l| l.handle.clone()),
        ..Default::default()
    };
    // Split-K partials for the scalar kernel's splits or the decode kernel's (whichever runs).
    let part_splits = splits.max(decode.as_ref().map_or(1, |dl| dl.splits as usize));
    if part_splits > 1 {
        let rows = g.b * g.h * g.t;
        buffers.part_o = Some(client.empty(part_splits * rows * d * 4));
        buffers.part_ml = Some(client.empty(part_splits * rows * 2 * 4));
    }
    if splits > 1 {
        let rows = g.b * g.h * g.t;
        simple.push(Launch {
            module: "fwd_simple",
            dt,
            d,
            entry: format!("attn_fwd_combine_{dt}_d{d}"),
            grid: grid(rows.div_ceil(4), 1, 1)?,
            smem: 0,
            tiled: None,
        });
    }
    p.splits = splits as i64;
    p.split_len = split_len as i64;
    let preload_bwd = if preload_bwd {
        let mut l = bwd_launches(&g)?;
        if mma_shape_ok(
            &g,
            &[p.q_sb, p.q_sh, p.q_st, p.k_sb, p.k_sh, p.k_ss, p.v_sb, p.v_sh, p.v_ss],
        ) && !bwd_simple_forced()
        {
            l.extend(bwd_mma_launches(&g, bwd_fused_dq(&g))?);
        }
        l
    } else {
        Vec::new()
    };
    let job = Job {
        params: p,
        buffers,
        work: Work::Forward {
            mma,
            hopper,
            decode,
            simple,
            preload_bwd,
        },
    };
    submit(q, job)?;
    let out = CT::new_contiguous(
        q.client.clone(),
        q.device.clone(),
        Shape::from(vec![g.b, g.h, g.t, d]),
        o,
        g.dtype,
    );
    let lse = CT::new_contiguous(
        q.client.clone(),
        q.device.clone(),
        Shape::from(vec![g.b, g.h, g.t]),
        lse,
        DType::F32,
    );
    Ok((out, lse))
}

/// The backward on burn-cuda primitives: `(dQ, dK, dV)`, contiguous, in the input dtype.
#[allow(clippy::too_many_arguments)]
fn backward(
    q: &CT,
    k: &CT,
    v: &CT,
    o: &CT,
    lse: &CT,
    bias: Option<&CT>,
    kv_len: Option<&CT>,
    mask: Mask,
    dout: CT,
) -> Result<(CT, CT, CT), Fail> {
    let g = geometry(q, k, v)?;
    let dout = if dout.dtype != g.dtype {
        return Err(Fail::Error(format!(
            "dO dtype {:?} differs from {:?}",
            dout.dtype, g.dtype
        )));
    } else if dout.meta.strides().last() != Some(&1) {
        burn_cubecl::kernel::into_contiguous(dout)
    } else {
        dout
    };
    let (_, ds) = dims4(&dout).ok_or(Fail::Unsupported)?;
    let mut p = base_params(&g, q, k, v, bias, mask)?;
    p.do_sb = ds[0] as i64;
    p.do_sh = ds[1] as i64;
    p.do_st = ds[2] as i64;
    let elem = g.dtype.size();
    let client = &q.client;
    let delta = client.empty(g.b * g.h * g.t * 4);
    let dq = client.empty(g.b * g.h * g.t * g.d * elem);
    let dk = client.empty(g.b * g.kvh * g.s * g.d * elem);
    let dv = client.empty(g.b * g.kvh * g.s * g.d * elem);
    let mma_ok = mma_shape_ok(
        &g,
        &[
            p.q_sb, p.q_sh, p.q_st, p.k_sb, p.k_sh, p.k_ss, p.v_sb, p.v_sh, p.v_ss, p.do_sb, p.do_sh, p.do_st,
        ],
    ) && !bwd_simple_forced();
    // The split-group dK/dV partials (f32 [2, B, H, S, D]) travel in the forward's split-K slot
    // `part_o`, which no backward kernel otherwise reads (the scalar fallback ignores it).
    let part_o = (mma_ok && bwd_split_group(&g)).then(|| client.empty(2 * g.b * g.h * g.s * g.d * 4));
    // The fused dQ's f32 accumulator ([B, H, T, D], zeroed by `attn_bwd_pre`) travels in the
    // forward's split-K slot `part_ml`. Taken only by the tensor-core route: were the scalar
    // kernels chosen on the device thread (misaligned pointers), `attn_bwd_pre` would zero it
    // unread.
    let fused_dq = bwd_fused_dq(&g);
    let part_ml = (mma_ok && fused_dq).then(|| client.empty(g.b * g.h * g.t * g.d * 4));
    let buffers = Buffers {
        q: Some(q.handle.clone()),
        k: Some(k.handle.clone()),
        v: Some(v.handle.clone()),
        o: Some(o.handle.clone()),
        lse: Some(lse.handle.clone()),
        bias: bias.map(|b| b.handle.clone()),
        kv_len: kv_len.map(|l| l.handle.clone()),
        dout: Some(dout.handle.clone()),
        delta: Some(delta),
        dq: Some(dq.clone()),
        dk: Some(dk.clone()),
        dv: Some(dv.clone()),
        part_o,
        part_ml,
    };
    let job = Job {
        params: p,
        buffers,
        work: Work::Backward {
            mma: if mma_ok {
                Some(bwd_mma_launches(&g, fused_dq)?)
            } else {
                None
            },
            simple: bwd_launches(&g)?,
        },
    };
    submit(q, job)?;
    let make = |h: Handle, shape: Vec<usize>| {
        CT::new_contiguous(q.client.clone(), q.device.clone(), Shape::from(shape), h, g.dtype)
    };
    Ok((
        make(dq, vec![g.b, g.h, g.t, g.d]),
        make(dk, vec![g.b, g.kvh, g.s, g.d]),
        make(dv, vec![g.b, g.kvh, g.s, g.d]),
    ))
}

fn submit(like: &CT, job: Job) -> Result<(), Fail> {
    let device_id = like.device.to_id();
    let key: DevKey = (device_id.type_id, device_id.index_id as u32);
    let device = DeviceHandle::<Server>::new(device_id);
    match device.submit_blocking(move |server| job.run(server, key)) {
        Ok(Ok(n)) => {
            LAUNCHED.fetch_add(n, Ordering::Relaxed);
            Ok(())
        }
        Ok(Err(reason)) => Err(Fail::Error(reason)),
        Err(err) => Err(Fail::Error(format!("device call failed: {err:?}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Device side: modules, functions, stream, launches.

#[derive(Default)]
struct KState {
    streams: HashMap<(DevKey, u64), usize>,
    /// `(major, minor)` compute capability per device.
    arch: HashMap<DevKey, (i32, i32)>,
    modules: HashMap<(DevKey, &'static str, &'static str, usize), Result<usize, String>>,
    functions: HashMap<(DevKey, String), (usize, Option<Geom>)>,
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

/// Reads `<entry>_geom` (three i32: threads, dynamic shared memory bytes, rows per block) from a
/// loaded module: the launch geometry the kernel's source declares with `KERNEL_GEOM`.
fn read_geom(module: cu::CUmodule, entry: &str) -> Result<Geom, String> {
    let symbol = format!("{entry}_geom");
    let name = CString::new(symbol.as_str()).map_err(|e| e.to_string())?;
    let mut ptr: cu::CUdeviceptr = 0;
    let mut bytes = 0usize;
    let mut v = [0i32; 3];
    // SAFETY: a loaded module and a NUL-terminated name; the copy reads 12 bytes from a global the
    // module declares with at least that size (checked first) into a 12-byte host array.
    unsafe {
        check(
            &format!("cuModuleGetGlobal({symbol}): the kernel source declares no launch geometry (KERNEL_GEOM)"),
            cu::cuModuleGetGlobal_v2(&mut ptr, &mut bytes, module, name.as_ptr()),
        )?;
        if bytes < std::mem::size_of_val(&v) {
            return Err(format!("{symbol} holds {bytes} bytes, expected 3 i32"));
        }
        check(
            &format!("reading {symbol}"),
            cu::cuMemcpyDtoH_v2(v.as_mut_ptr() as *mut c_void, ptr, std::mem::size_of_val(&v)),
        )?;
    }
    Geom::parse(v, entry)
}

impl KState {
    fn arch(&mut self, device: DevKey) -> Result<(i32, i32), String> {
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
        super::fused::note_compute_capability(major, minor);
        Ok((major, minor))
    }

    fn module(&mut self, device: DevKey, name: &'static str, dt: &'static str, d: usize) -> Result<usize, String> {
        if let Some(m) = self.modules.get(&(device, name, dt, d)) {
            return m.clone();
        }
        let (major, minor) = self.arch(device)?;
        // 9.0 compiles for `sm_90a`, the architecture-specific target that has wgmma (the
        // PTX it gives loads on 9.0 devices only, which is all it is used for).
        let arch = if (major, minor) == (9, 0) {
            "sm_90a".to_string()
        } else {
            format!("sm_{major}{minor}")
        };
        let loaded = if major < 8 {
            Err(format!(
                "compute capability {major}.{minor} < 8.0 (mma.sync bf16, cp.async)"
            ))
        } else {
            super::nvrtc::ptx(name, dt, d, &arch).and_then(|ptx| {
                let image = CString::new(ptx).map_err(|e| format!("PTX with NUL: {e}"))?;
                let mut module: cu::CUmodule = std::ptr::null_mut();
                // SAFETY: a NUL-terminated PTX image; the module is kept for the process.
                unsafe {
                    check(
                        "cuModuleLoadData",
                        cu::cuModuleLoadData(&mut module, image.as_ptr() as *const c_void),
                    )?;
                }
                Ok(module as usize)
            })
        };
        self.modules.insert((device, name, dt, d), loaded.clone());
        loaded
    }

    /// The launchable function of `launch` and, for a tiled launch, the geometry its source
    /// declares (cached per device and entry).
    fn function(&mut self, device: DevKey, launch: &Launch) -> Result<(usize, Option<Geom>), String> {
        if let Some(&f) = self.functions.get(&(device, launch.entry.clone())) {
            return Ok(f);
        }
        let module = self.module(device, launch.module, launch.dt, launch.d)? as cu::CUmodule;
        let name = CString::new(launch.entry.as_str()).map_err(|e| e.to_string())?;
        let mut f: cu::CUfunction = std::ptr::null_mut();
        // SAFETY: a loaded module and a NUL-terminated name.
        unsafe {
            check(
                &format!("cuModuleGetFunction({})", launch.entry),
                cu::cuModuleGetFunction(&mut f, module, name.as_ptr()),
            )?;
        }
        let geom = match launch.tiled {
            None => None,
            Some(_) => Some(read_geom(module, &launch.entry)?),
        };
        let smem = geom.map_or(launch.smem, |g| g.smem);
        if smem > 48 * 1024 {
            // SAFETY: a valid function handle; the size is at most 227 KiB (checked by Geom::parse
            // for tiled launches, constants of this file otherwise).
            unsafe {
                check(
                    "dynamic shared memory limit",
                    cu::cuFuncSetAttribute(
                        f,
                        cu::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        smem as i32,
                    ),
                )?;
            }
        }
        self.functions
            .insert((device, launch.entry.clone()), (f as usize, geom));
        Ok((f as usize, geom))
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

impl Job {
    /// Resolves the buffers, picks the kernels and enqueues them; returns how many were launched.
    fn run(self, server: &mut Server, device: DevKey) -> Result<u64, String> {
        let stream_id = StreamId::current();
        let mut p = self.params;
        let b = self.buffers;
        let mut held = Vec::new();
        let mut resolve = |server: &mut Server, h: Option<Handle>| -> Result<u64, String> {
            match h {
                None => Ok(0),
                Some(h) => {
                    let r = server
                        .get_resource(h.binding(), stream_id)
                        .map_err(|e| format!("get_resource: {e:?}"))?;
                    let ptr = r.resource().ptr;
                    held.push(r);
                    Ok(ptr)
                }
            }
        };
        p.q = resolve(server, b.q)?;
        p.k = resolve(server, b.k)?;
        p.v = resolve(server, b.v)?;
        p.o = resolve(server, b.o)?;
        p.lse = resolve(server, b.lse)?;
        p.bias = resolve(server, b.bias)?;
        p.kv_len = resolve(server, b.kv_len)?;
        p.part_o = resolve(server, b.part_o)?;
        p.part_ml = resolve(server, b.part_ml)?;
        p.dout = resolve(server, b.dout)?;
        p.delta = resolve(server, b.delta)?;
        p.dq = resolve(server, b.dq)?;
        p.dk = resolve(server, b.dk)?;
        p.dv = resolve(server, b.dv)?;

        let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
        let stream = st.stream(server, device, stream_id)?;
        let launches = match self.work {
            Work::Backward { mma, simple } => {
                let aligned = [p.q, p.k, p.v, p.dout].iter().all(|ptr| ptr % 16 == 0);
                match mma {
                    Some(m) if aligned => m,
                    _ => simple,
                }
            }
            Work::Forward {
                mma,
                hopper,
                decode,
                simple,
                preload_bwd,
            } => {
                for l in &preload_bwd {
                    st.function(device, l)?;
                }
                let mma = match hopper {
                    Some(h) if st.arch(device)? == (9, 0) => Some(*h),
                    _ => mma,
                };
                let aligned = [p.q, p.k, p.v, p.o].iter().all(|ptr| ptr % 16 == 0);
                match (decode, mma) {
                    (Some(dl), _) if aligned => {
                        p.splits = dl.splits;
                        p.split_len = dl.split_len;
                        dl.launches
                    }
                    (_, Some(m)) if aligned => vec![m],
                    _ => {
                        if simple.len() == 1 {
                            p.splits = 1;
                        }
                        simple
                    }
                }
            }
        };
        for l in &launches {
            let (f, geom) = st.function(device, l)?;
            let (grid, threads, smem) = match (l.tiled, geom) {
                (Some(extent), Some(g)) => {
                    let x = extent.div_ceil(g.rows as usize);
                    if x > i32::MAX as usize {
                        return Err(format!("{}: grid x {x} too large", l.entry));
                    }
                    ((x as u32, l.grid.1, l.grid.2), g.threads, g.smem)
                }
                _ => (l.grid, 128, l.smem),
            };
            let mut params = p;
            let mut args = [&mut params as *mut KernelParams as *mut c_void];
            // SAFETY: the function takes one `Params` by value, mirrored by `KernelParams`; every
            // pointer in it is a live burn buffer held in `held` until after the enqueue (burn's
            // stream ordering keeps it alive for the kernel); the stream is the server's.
            unsafe {
                check(
                    &format!("cuLaunchKernel({})", l.entry),
                    cu::cuLaunchKernel(
                        f as cu::CUfunction,
                        grid.0,
                        grid.1,
                        grid.2,
                        threads,
                        1,
                        1,
                        smem,
                        stream as cu::CUstream,
                        args.as_mut_ptr(),
                        std::ptr::null_mut(),
                    ),
                )?;
            }
        }
        drop(held);
        let mut counts = kind_counts().lock().unwrap_or_else(|e| e.into_inner());
        for l in &launches {
            let suffix = format!("_{}_d{}", l.dt, l.d);
            let kind = l.entry.trim_start_matches("attn_").trim_end_matches(suffix.as_str());
            *counts.entry(kind.to_string()).or_default() += 1;
        }
        Ok(launches.len() as u64)
    }
}

// ---------------------------------------------------------------------------------------------
// Autodiff: forward through the kernels (saving O and the log-sum-exp), backward through the
// backward kernels.

#[derive(Debug)]
struct AttentionBackward;

#[derive(Clone, Debug)]
struct AttentionState {
    q: NodeId,
    k: NodeId,
    v: NodeId,
    o: CT,
    lse: CT,
    bias: Option<CT>,
    kv_len: Option<CT>,
    causal: bool,
    q_offset: usize,
}

impl Backward<Cuda, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Cuda>(&ops.node);
        let st = ops.state;
        let q: CT = checkpointer.retrieve_node_output(st.q);
        let k: CT = checkpointer.retrieve_node_output(st.k);
        let v: CT = checkpointer.retrieve_node_output(st.v);
        let mask = Mask {
            causal: st.causal,
            q_offset: st.q_offset,
        };
        let (dq, dk, dv) = match backward(
            &q,
            &k,
            &v,
            &st.o,
            &st.lse,
            st.bias.as_ref(),
            st.kv_len.as_ref(),
            mask,
            grad,
        ) {
            Ok(g) => g,
            // The forward ran these very shapes and loaded the backward module, so this is a
            // device failure; there is no reference to fall back to inside the graph.
            Err(Fail::Unsupported) => panic!("fused attention backward: unsupported problem after a fused forward"),
            Err(Fail::Error(e)) => panic!("fused attention backward failed: {e}"),
        };
        let [pq, pk, pv] = ops.parents;
        if let Some(node) = pq {
            grads.register::<Cuda>(node.id, dq);
        }
        if let Some(node) = pk {
            grads.register::<Cuda>(node.id, dk);
        }
        if let Some(node) = pv {
            grads.register::<Cuda>(node.id, dv);
        }
    }
}

fn autodiff_forward<C: CheckpointStrategy>(
    q: AutodiffTensor,
    k: AutodiffTensor,
    v: AutodiffTensor,
    bias: Option<CT>,
    kv_len: Option<CT>,
    mask: Mask,
) -> Result<AutodiffTensor, Fail> {
    // Under autodiff the backward module is loaded up front (a compile failure then takes the
    // reference path for the whole op instead of failing inside the backward pass).
    let (o, lse) = forward(
        &q.primitive,
        &k.primitive,
        &v.primitive,
        bias.as_ref(),
        kv_len.as_ref(),
        mask,
        true,
    )?;
    Ok(
        match AttentionBackward
            .prepare::<C>([q.node.clone(), k.node.clone(), v.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = AttentionState {
                    q: prep.checkpoint(&q),
                    k: prep.checkpoint(&k),
                    v: prep.checkpoint(&v),
                    o: o.clone(),
                    lse,
                    bias,
                    kv_len,
                    causal: mask.causal,
                    q_offset: mask.q_offset,
                };
                prep.finish(state, o)
            }
            OpsKind::UnTracked(prep) => prep.finish(o),
        },
    )
}
