//! Writing safetensors files that transformers loads as is.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{DType, TensorData};
use safetensors::Dtype as StDtype;

use crate::error::{io_err, ModelError, Result};

/// Writes `tensors` (name, data) to `path` as one safetensors file with `{"format": "pt"}` metadata.
///
/// The file is written next to `path` under a temporary name and renamed into place, so a crash
/// never leaves a half-written file under the final name.
pub fn write_safetensors(path: &Path, tensors: &[(String, TensorData)]) -> Result<()> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, data) in tensors {
        let dtype = match data.dtype {
            DType::F32 => StDtype::F32,
            DType::BF16 => StDtype::BF16,
            DType::F16 => StDtype::F16,
            DType::F64 => StDtype::F64,
            other => {
                return Err(ModelError::Safetensors {
                    path: path.to_path_buf(),
                    message: format!("tensor `{name}` has dtype {other:?}; only float tensors are written"),
                })
            }
        };
        let view = safetensors::tensor::TensorView::new(dtype, data.shape.to_vec(), data.as_bytes()).map_err(|e| {
            ModelError::Safetensors {
                path: path.to_path_buf(),
                message: format!("tensor `{name}`: {e}"),
            }
        })?;
        views.push((name.clone(), view));
    }
    let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let tmp = path.with_extension("safetensors.partial");
    safetensors::serialize_to_file(views, Some(metadata), &tmp).map_err(|e| ModelError::Safetensors {
        path: tmp.clone(),
        message: format!("could not write: {e}"),
    })?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::{Checkpoint, FloatType};

    #[test]
    fn round_trips_through_the_checkpoint_reader() {
        let dir = tempfile::tempdir().unwrap();
        let a = TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]);
        let b = crate::weights::encode(vec![0.5, -1.25], vec![2], FloatType::Bf16);
        write_safetensors(
            &dir.path().join("model.safetensors"),
            &[("a".into(), a), ("b".into(), b)],
        )
        .unwrap();
        let ckpt = Checkpoint::open(dir.path()).unwrap();
        let a = ckpt.load("a", &[2, 3], true, FloatType::F32).unwrap();
        assert_eq!(a.to_vec::<f32>().unwrap(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let b = ckpt.load("b", &[2], false, FloatType::F32).unwrap();
        assert_eq!(b.to_vec::<f32>().unwrap(), vec![0.5, -1.25]);
        assert!(!dir.path().join("model.safetensors.partial").exists());
    }
}
