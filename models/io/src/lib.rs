//! Checkpoint I/O shared by the research-rs model crates (`research-qwen2`, `research-bert`).
//!
//! - [`Checkpoint`]: memory-mapped safetensors, one `model.safetensors` or the shards listed by
//!   `model.safetensors.index.json`, decoded tensor by tensor into f32/bf16/f16 [`TensorData`]
//!   (HF `Linear` weights optionally transposed from `[out, in]` to `[in, out]`).
//! - [`FloatType`]: the float types a model can be loaded in, with their burn dtype and HF name.
//! - [`ModelError`]: the one error type of the model crates; every variant names the file (and the
//!   field or tensor) at fault.
//!
//! [`TensorData`]: burn::tensor::TensorData

pub mod error;
pub mod weights;
pub mod write;

pub use error::{io_err, ModelError, Result};
pub use weights::{encode, Checkpoint, FloatType, RawTensor};
pub use write::write_safetensors;

/// The bytes of a file as stored, decompressed when its name ends in `.zst` (the repository ships
/// large text files zstd-compressed). The error says what is wrong, without the path.
pub fn maybe_unzstd(path: &std::path::Path, bytes: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    if path.extension().is_none_or(|e| e != "zst") {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    let mut dec =
        ruzstd::decoding::StreamingDecoder::new(bytes.as_slice()).map_err(|e| format!("not a zstd stream: {e}"))?;
    std::io::Read::read_to_end(&mut dec, &mut out).map_err(|e| format!("corrupt zstd stream: {e}"))?;
    Ok(out)
}
