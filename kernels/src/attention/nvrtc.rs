//! The attention kernels' CUDA C++ sources and their run-time compilation with NVRTC.
//!
//! The sources (`*.cu` beside this file) are embedded with `include_str!`; `common.cuh` is
//! prepended to each, so they need no CUDA headers. A module holds templates and an
//! instantiation macro; [`source`] appends the macro's invocations for the requested
//! `(dtype, head dim)` pairs, so a process compiles only what it launches. Compilation targets one
//! GPU architecture (`sm_90` on Hopper) and is cached per process.
//!
//! `RESEARCH_ATTENTION_SOURCES=dir` replaces the embedded text by the files of the same names in
//! `dir` (`common.cuh`, `mma.cuh`, `<module>.cu`; a file missing there keeps the embedded one), so
//! that a kernel can be edited and re-timed on the GPU machine with the binary built here. A
//! development switch: the entry points and `struct Params` must still match this build's
//! launcher.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};

/// Definitions shared by every kernel source.
pub const COMMON: &str = include_str!("common.cuh");

/// Tensor-core helpers (ldmatrix, mma.sync, cp.async), prepended after [`COMMON`] to the mma
/// modules (`fwd_mma`, `bwd_mma`, `decode`).
pub const MMA_COMMON: &str = include_str!("mma.cuh");

/// `(module name, source, instantiation macro)` of each kernel module.
pub const MODULES: [(&str, &str, &str); 6] = [
    ("fwd_simple", include_str!("fwd_simple.cu"), "SIMPLE_INSTANCES"),
    ("fwd_mma", include_str!("fwd_mma.cu"), "MMA_INSTANCE"),
    ("fwd_wg", include_str!("fwd_wg.cu"), "WG_INSTANCE"),
    ("decode", include_str!("decode.cu"), "DECODE_INSTANCE"),
    ("bwd", include_str!("bwd.cu"), "BWD_INSTANCES"),
    ("bwd_mma", include_str!("bwd_mma.cu"), "BWD_MMA_INSTANCE"),
];

/// Whether module `name` is a tensor-core module (bf16/f16, head dim 64/128 only).
pub fn is_mma(name: &str) -> bool {
    name == "fwd_mma" || name == "fwd_wg" || name == "bwd_mma" || name == "decode"
}

/// The element types the kernels take: name in entry points and the `DT` code of `common.cuh`.
pub const DTYPES: [(&str, u8); 3] = [("f32", 0), ("bf16", 1), ("f16", 2)];

/// Every `(dtype name, head dim)` module `name` can be instantiated for.
pub fn all_variants(name: &str) -> Vec<(&'static str, usize)> {
    let mut out = Vec::new();
    for (dt, _) in DTYPES {
        for d in super::HEAD_DIMS {
            if is_mma(name) && (dt == "f32" || d == 32) {
                continue;
            }
            out.push((dt, d));
        }
    }
    out
}

/// The text of `file` (`common.cuh`, `mma.cuh` or `<module>.cu`): from `RESEARCH_ATTENTION_SOURCES`
/// when that folder holds it, else `embedded`.
/// A folder that does not exist is reported once on stderr (a mistyped or relative path would
/// otherwise silently time the embedded kernels).
fn text_of(file: &str, embedded: &'static str) -> std::borrow::Cow<'static, str> {
    if let Some(dir) = std::env::var_os("RESEARCH_ATTENTION_SOURCES") {
        if !std::path::Path::new(&dir).is_dir() {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!(
                    "RESEARCH_ATTENTION_SOURCES={}: no such folder (from {}); using the embedded kernel sources",
                    std::path::Path::new(&dir).display(),
                    std::env::current_dir().map_or_else(|_| "?".into(), |d| d.display().to_string())
                )
            });
        }
        let path = std::path::Path::new(&dir).join(file);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text.into();
        }
    }
    embedded.into()
}

/// The full text NVRTC compiles for module `name` instantiated for `variants` (dtype name, head
/// dim), or `None` for an unknown module or dtype.
pub fn source(name: &str, variants: &[(&str, usize)]) -> Option<String> {
    let (_, src, mac) = MODULES.iter().find(|(n, _, _)| *n == name)?;
    let common = text_of("common.cuh", COMMON);
    let src = text_of(&format!("{name}.cu"), src);
    let mut text = if is_mma(name) {
        let mma = text_of("mma.cuh", MMA_COMMON);
        format!("{common}\n#line 1 \"mma.cuh\"\n{mma}\n#line 1 \"{name}.cu\"\n{src}\n")
    } else {
        format!("{common}\n#line 1 \"{name}.cu\"\n{src}\n")
    };
    for &(dt, d) in variants {
        let (_, code) = DTYPES.iter().find(|(n, _)| *n == dt)?;
        text += &format!("{mac}({dt}, {code}, {d})\n");
    }
    Some(text)
}

/// Whether libnvrtc can be loaded (checked once).
pub fn nvrtc_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to dlopen the library by its candidate names.
    *PRESENT.get_or_init(|| unsafe { cudarc::nvrtc::sys::is_culib_present() })
}

/// Compiles module `name` for `variants` to PTX for `arch` (e.g. `sm_90`), uncached. Errors carry
/// NVRTC's log.
pub fn compile(name: &str, variants: &[(&str, usize)], arch: &str) -> Result<String, String> {
    let src = source(name, variants).ok_or_else(|| format!("unknown attention kernel module `{name}` or dtype"))?;
    if !nvrtc_present() {
        return Err("libnvrtc not found".into());
    }
    let opts = CompileOptions {
        options: vec![
            format!("--gpu-architecture={arch}"),
            "--std=c++17".into(),
            "-lineinfo".into(),
        ],
        name: Some(format!("{name}.cu")),
        ..Default::default()
    };
    match compile_ptx_with_opts(src, opts) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(cudarc::nvrtc::CompileError::CompileError { log, .. }) => Err(format!(
            "NVRTC failed on {name}.cu for {arch}:\n{}",
            log.to_string_lossy()
        )),
        Err(e) => Err(format!("NVRTC failed on {name}.cu for {arch}: {e:?}")),
    }
}

/// [`compile`] for one `(dtype, head dim)`, cached per process (failures too, so a broken source
/// is reported once).
pub fn ptx(name: &str, dtype: &str, d: usize, arch: &str) -> Result<String, String> {
    type Cache = Mutex<HashMap<(String, String, usize, String), Result<String, String>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (name.to_string(), dtype.to_string(), d, arch.to_string());
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return hit.clone();
    }
    let built = compile(name, &[(dtype, d)], arch);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, built.clone());
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel module compiles for Hopper with all its instances and exports the entry points
    /// the launcher looks up, each taking the one parameter struct. Needs libnvrtc (e.g.
    /// `LD_LIBRARY_PATH=<venv>/site-packages/nvidia/cu13/lib`); skipped with a note when it cannot
    /// be loaded (CI). `RESEARCH_ATTENTION_PTX_DIR=dir` also writes the PTX there (for
    /// `ptxas -arch=sm_90 -v`: registers, spills, shared memory).
    #[test]
    fn kernels_compile_for_sm90() {
        if !nvrtc_present() {
            eprintln!("skipped: libnvrtc not found (set LD_LIBRARY_PATH to a CUDA 12/13 lib folder)");
            return;
        }
        for (name, _, _) in MODULES {
            // The launcher compiles for `sm_90a` on compute capability 9.0 (wgmma); the other
            // modules must also build for plain `sm_90` (and so for other GPUs).
            let ptx = compile(name, &all_variants(name), "sm_90").unwrap_or_else(|e| panic!("{e}"));
            let ptx = if name == "fwd_wg" || name == "bwd_mma" {
                assert!(!ptx.contains("wgmma"), "{name}.cu: wgmma outside sm_90a");
                compile(name, &all_variants(name), "sm_90a").unwrap_or_else(|e| panic!("{e}"))
            } else {
                ptx
            };
            if let Some(dir) = std::env::var_os("RESEARCH_ATTENTION_PTX_DIR") {
                std::fs::write(std::path::Path::new(&dir).join(format!("{name}.ptx")), &ptx).unwrap();
            }
            let entries = crate::attention::fused::entries(name);
            assert!(!entries.is_empty());
            for entry in entries {
                assert!(
                    ptx.contains(&format!(".entry {entry}(")),
                    "{name}.cu: PTX lacks entry {entry}"
                );
                // One by-value parameter of exactly the size the launcher passes.
                let param = format!(
                    ".param .align 8 .b8 {entry}_param_0[{}]",
                    crate::attention::fused::PARAMS_BYTES
                );
                assert!(ptx.contains(&param), "{name}.cu: {entry} does not take one {param}");
                assert!(
                    !ptx.contains(&format!("{entry}_param_1")),
                    "{entry} takes more than one parameter"
                );
            }
            // Every tensor-core kernel launched with a tiled grid declares its launch geometry
            // (KERNEL_GEOM: threads, dynamic shared memory, rows per block), sane for a launch.
            for entry in crate::attention::fused::entries(name) {
                let tiled = entry.starts_with("attn_fwd_mma")
                    || entry.starts_with("attn_fwd_wg")
                    || entry.starts_with("attn_bwd_mma_dkdv_") && !entry.contains("reduce")
                    || entry.starts_with("attn_bwd_mma_dq_") && !entry.contains("convert");
                if !tiled {
                    continue;
                }
                let [threads, smem, rows] =
                    ptx_geom(&ptx, &entry).unwrap_or_else(|| panic!("{name}.cu: no {entry}_geom[12] in the PTX"));
                assert!(
                    threads % 32 == 0 && (32..=1024).contains(&threads),
                    "{entry}: {threads} threads"
                );
                assert!(
                    (0..=227 * 1024).contains(&smem),
                    "{entry}: {smem} bytes of shared memory"
                );
                assert!([64, 128, 256, 512].contains(&rows), "{entry}: {rows} rows per block");
            }
            if name == "fwd_mma" {
                // Worked by hand: 4 warps; K and V, two stages of 64 keys, plus 128 query rows, each
                // row 128 + 8 bf16 elements: (4·64 + 128)·136·2 bytes; 128 queries per block.
                assert_eq!(ptx_geom(&ptx, "attn_fwd_mma3_bf16_d128"), Some([128, 104_448, 128]));
            }
            if name == "fwd_wg" {
                // Two warpgroups; two Q buffers (128 rows) and two stages of K and V (128 keys) of
                // 128 bf16 columns, plus 1024 bytes to align the swizzle atoms:
                // 1024 + (2·128 + 4·128)·128·2; two pairs of query blocks of 128 rows per block.
                assert_eq!(ptx_geom(&ptx, "attn_fwd_wg_bf16_d128"), Some([256, 197_632, 512]));
                assert!(ptx.contains("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16"));
                assert!(ptx.contains("wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16"));
            } else if is_mma(name) {
                if name == "bwd_mma" {
                    // sm_90a, d 128: the wgmma dK/dV kernel. Two warpgroups of 64 keys; 1024 bytes
                    // of alignment, K and V (128 keys), two buffers of Q and dO (64 queries) of 128
                    // bf16 columns, the dSᵀ tile (128 keys x 64 queries) and lse, delta (2 x 64 f32
                    // each): 1024 + (2·128 + 4·64)·128·2 + 128·64·2 + 4·64·4; 128 keys per block.
                    assert_eq!(ptx_geom(&ptx, "attn_bwd_mma_dkdv_bf16_d128"), Some([256, 149_504, 128]));
                    assert!(ptx.contains("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16"));
                    assert!(ptx.contains("wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16"));
                }
                assert!(
                    ptx.contains("mma.sync.aligned.m16n8k16"),
                    "no tensor-core mma in {name}"
                );
                assert!(ptx.contains("ldmatrix.sync.aligned"), "no ldmatrix in {name}");
            }
        }
    }

    /// The three i32 of `<entry>_geom` as NVRTC writes their initializer in the PTX (12 bytes,
    /// little-endian: `.const .align 4 .b8 NAME_geom[12] = {b0, b1, ...};`, trailing zeros may be
    /// left out).
    fn ptx_geom(ptx: &str, entry: &str) -> Option<[i32; 3]> {
        let key = format!(" {entry}_geom[12] = {{");
        let start = ptx.find(&key)? + key.len();
        let body = &ptx[start..start + ptx[start..].find('}')?];
        let mut bytes = [0u8; 12];
        for (i, b) in body.split(',').enumerate() {
            *bytes.get_mut(i)? = b.trim().parse().ok()?;
        }
        let word = |i: usize| i32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
        Some([word(0), word(1), word(2)])
    }

    /// A single-variant compile holds exactly that variant's entry points.
    #[test]
    fn single_variant_holds_only_its_entries() {
        let src = source("bwd", &[("bf16", 64)]).unwrap();
        assert!(src.ends_with("BWD_INSTANCES(bf16, 1, 64)\n"));
        assert_eq!(src.matches("BWD_INSTANCES(").count(), 2, "definition + one invocation");
        if !nvrtc_present() {
            eprintln!("skipped the NVRTC half: libnvrtc not found");
            return;
        }
        let ptx = ptx("bwd", "bf16", 64, "sm_90").unwrap_or_else(|e| panic!("{e}"));
        assert!(ptx.contains(".entry attn_bwd_dq_bf16_d64("));
        assert!(!ptx.contains("attn_bwd_dq_f32_d64"));
    }

    #[test]
    fn unknown_module_or_dtype_is_an_error() {
        assert!(source("nope", &[]).is_none());
        assert!(source("bwd", &[("f64", 64)]).is_none());
        assert!(compile("nope", &[], "sm_90").is_err());
    }
}
