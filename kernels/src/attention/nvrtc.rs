//! The attention kernels' CUDA C++ sources and their run-time compilation with NVRTC.
//!
//! The sources (`*.cu` beside this file) are embedded with `include_str!`; `common.cuh` is
//! prepended to each, so they need no CUDA headers. Compilation targets one GPU architecture
//! (`sm_90` on Hopper) and is cached per process and architecture.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};

/// Definitions shared by every kernel source.
pub const COMMON: &str = include_str!("common.cuh");

/// `(module name, source)` of each kernel module.
pub const MODULES: [(&str, &str); 3] = [
    ("fwd_simple", include_str!("fwd_simple.cu")),
    ("fwd_mma", include_str!("fwd_mma.cu")),
    ("bwd", include_str!("bwd.cu")),
];

/// The full text NVRTC compiles for module `name` (common definitions + the module), or `None`
/// for an unknown name.
pub fn source(name: &str) -> Option<String> {
    MODULES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, src)| format!("{COMMON}\n#line 1 \"{name}.cu\"\n{src}"))
}

/// Whether libnvrtc can be loaded (checked once).
pub fn nvrtc_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to dlopen the library by its candidate names.
    *PRESENT.get_or_init(|| unsafe { cudarc::nvrtc::sys::is_culib_present() })
}

/// Compiles module `name` to PTX for `arch` (e.g. `sm_90`), uncached. Errors carry NVRTC's log.
pub fn compile(name: &str, arch: &str) -> Result<String, String> {
    let src = source(name).ok_or_else(|| format!("unknown attention kernel module `{name}`"))?;
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

/// [`compile`], cached per process by `(name, arch)` (failures too, so a broken source is
/// reported once).
pub fn ptx(name: &str, arch: &str) -> Result<String, String> {
    type Cache = Mutex<HashMap<(String, String), Result<String, String>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (name.to_string(), arch.to_string());
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return hit.clone();
    }
    let built = compile(name, arch);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, built.clone());
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel module compiles for Hopper and exports the entry points the launcher looks up.
    /// Needs libnvrtc (e.g. `LD_LIBRARY_PATH=<venv>/site-packages/nvidia/cu13/lib`); skipped with a
    /// note when it cannot be loaded (CI).
    #[test]
    fn kernels_compile_for_sm90() {
        if !nvrtc_present() {
            eprintln!("skipped: libnvrtc not found (set LD_LIBRARY_PATH to a CUDA 12/13 lib folder)");
            return;
        }
        for (name, _) in MODULES {
            let ptx = compile(name, "sm_90").unwrap_or_else(|e| panic!("{e}"));
            // For inspection with ptxas (`ptxas -arch=sm_90 -v`): registers, spills, shared memory.
            if let Some(dir) = std::env::var_os("RESEARCH_ATTENTION_PTX_DIR") {
                std::fs::write(std::path::Path::new(&dir).join(format!("{name}.ptx")), &ptx).unwrap();
            }
            for entry in crate::attention::fused::entries(name) {
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
            if name == "fwd_mma" {
                assert!(
                    ptx.contains("mma.sync.aligned.m16n8k16"),
                    "no tensor-core mma in {name}"
                );
                assert!(ptx.contains("ldmatrix.sync.aligned"), "no ldmatrix in {name}");
            }
        }
    }

    #[test]
    fn unknown_module_is_an_error() {
        assert!(source("nope").is_none());
        assert!(compile("nope", "sm_90").is_err());
    }
}
