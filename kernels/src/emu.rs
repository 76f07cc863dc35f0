//! Test support: builds the CPU emulators of the CUDA kernels (`*_emu.cpp`, which compile the real
//! `.cu` sources as C++ with the GPU primitives emulated) for the emulation tests.

use std::path::PathBuf;
use std::process::Command;

/// Compiles `src` (relative to this crate) with `$CXX` (else `c++`), `-std=c++17 -O1` and `flags`,
/// into `exe_name` in a fresh per-process temporary folder named after `tag`. Returns the folder
/// (the caller removes it) and the executable; `None` when the compiler is missing or fails: then
/// the folder is removed, and the test either panics with the compiler's output (`require`) or
/// prints a one-line note naming `what` and is skipped.
pub(crate) fn build(
    src: &str,
    exe_name: &str,
    tag: &str,
    flags: &[&str],
    require: bool,
    what: &str,
) -> Option<(PathBuf, PathBuf)> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let dir = std::env::temp_dir().join(format!("research-{tag}-emu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(exe_name);
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(src);
    let built = Command::new(&cxx)
        .args(["-std=c++17", "-O1"])
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output();
    match built {
        Ok(out) if out.status.success() => Some((dir, exe)),
        other => {
            let why = match other {
                Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            let _ = std::fs::remove_dir_all(&dir);
            assert!(!require, "{cxx} could not build the emulator:\n{why}");
            eprintln!(
                "skipped: {cxx} could not build the {what} ({})",
                why.lines().next().unwrap_or("")
            );
            None
        }
    }
}

/// Runs the emulator `exe` with `args`, `input` on its standard input, and removes `dir` (the
/// folder [`build`] returned) once it has exited. Returns its exit status and output.
pub(crate) fn run(dir: &std::path::Path, exe: &std::path::Path, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    out
}
