//! Memory-mapped safetensors checkpoints, single-file or sharded (`model.safetensors.index.json`).
//!
//! Tensors are decoded straight from the map into the requested dtype (f32, bf16 or f16); HF
//! `Linear` weights (`[out, in]`) are transposed on the way to the `[in, out]` layout the models
//! multiply with.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{DType, TensorData};
use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype as StDtype, SafeTensors};

use crate::error::{io_err, ModelError, Result};

/// Element types the model can be loaded in and computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FloatType {
    /// 32-bit IEEE float.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
}

impl FloatType {
    /// The burn dtype.
    pub fn dtype(self) -> DType {
        match self {
            FloatType::F32 => DType::F32,
            FloatType::Bf16 => DType::BF16,
            FloatType::F16 => DType::F16,
        }
    }

    /// The name transformers writes in `config.json` (`torch_dtype` / `dtype`).
    pub fn hf_name(self) -> &'static str {
        match self {
            FloatType::F32 => "float32",
            FloatType::Bf16 => "bfloat16",
            FloatType::F16 => "float16",
        }
    }

    /// Parses `f32|bf16|f16` (and the HF names `float32|bfloat16|float16`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" | "float" => Ok(FloatType::F32),
            "bf16" | "bfloat16" => Ok(FloatType::Bf16),
            "f16" | "float16" | "half" => Ok(FloatType::F16),
            other => Err(ModelError::UnsupportedDtype {
                context: "requested dtype".into(),
                dtype: other.into(),
            }),
        }
    }
}

impl std::fmt::Display for FloatType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FloatType::F32 => "f32",
            FloatType::Bf16 => "bf16",
            FloatType::F16 => "f16",
        })
    }
}

impl std::str::FromStr for FloatType {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

struct Shard {
    path: PathBuf,
    map: Mmap,
}

/// An opened checkpoint: every weight file memory-mapped, with an index from tensor name to file.
pub struct Checkpoint {
    dir: PathBuf,
    shards: Vec<Shard>,
    index: HashMap<String, usize>,
}

/// One tensor as stored: dtype, shape and raw little-endian bytes.
pub struct RawTensor<'a> {
    /// The file that holds it.
    pub path: &'a Path,
    /// Stored element type.
    pub dtype: StDtype,
    /// Stored shape.
    pub shape: Vec<usize>,
    /// Raw bytes.
    pub data: &'a [u8],
}

fn parse_shard(path: &Path, map: &Mmap) -> Result<Vec<String>> {
    let st = SafeTensors::deserialize(map).map_err(|e| ModelError::Safetensors {
        path: path.to_path_buf(),
        message: format!("{e} (is the file truncated or still downloading?)"),
    })?;
    Ok(st.names().into_iter().map(str::to_string).collect())
}

impl Checkpoint {
    /// Opens `model.safetensors` or the shards listed by `model.safetensors.index.json` in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(io_err(&index_path))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Json {
                path: index_path.clone(),
                message: e.to_string(),
            })?;
            let wm = v
                .get("weight_map")
                .and_then(|w| w.as_object())
                .ok_or_else(|| ModelError::Config {
                    path: index_path.clone(),
                    field: "weight_map".into(),
                    message: "missing (expected an object from tensor name to file name)".into(),
                })?;
            let mut files: Vec<PathBuf> = Vec::new();
            for (name, file) in wm {
                let file = file.as_str().ok_or_else(|| ModelError::Config {
                    path: index_path.clone(),
                    field: format!("weight_map.{name}"),
                    message: "expected a file name".into(),
                })?;
                let p = dir.join(file);
                if !files.contains(&p) {
                    files.push(p);
                }
            }
            files
        } else if single.exists() {
            vec![single]
        } else {
            return Err(ModelError::NoWeights { dir });
        };

        let mut shards = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for (i, path) in files.into_iter().enumerate() {
            let file = std::fs::File::open(&path).map_err(io_err(&path))?;
            // SAFETY: the map is read-only; a checkpoint rewritten under us while mapped is outside
            // what we promise (as for every mmap-based loader).
            let map = unsafe { Mmap::map(&file) }.map_err(io_err(&path))?;
            for name in parse_shard(&path, &map)? {
                index.insert(name, i);
            }
            shards.push(Shard { path, map });
        }
        Ok(Self { dir, shards, index })
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// All tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// The stored tensor `name`.
    pub fn raw(&self, name: &str) -> Result<RawTensor<'_>> {
        let &i = self.index.get(name).ok_or_else(|| ModelError::MissingTensor {
            name: name.to_string(),
            dir: self.dir.clone(),
        })?;
        let shard = &self.shards[i];
        let st = SafeTensors::deserialize(&shard.map).map_err(|e| ModelError::Safetensors {
            path: shard.path.clone(),
            message: e.to_string(),
        })?;
        let view = st.tensor(name).map_err(|e| ModelError::Safetensors {
            path: shard.path.clone(),
            message: e.to_string(),
        })?;
        // Re-slice from the map so the borrow lives as long as `self`.
        let start = view.data().as_ptr() as usize - shard.map.as_ptr() as usize;
        let data = &shard.map[start..start + view.data().len()];
        Ok(RawTensor {
            path: &shard.path,
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
            data,
        })
    }

    /// Reads `name`, checks its shape, optionally transposes a matrix, and converts it to `target`.
    pub fn load(&self, name: &str, expected: &[usize], transpose: bool, target: FloatType) -> Result<TensorData> {
        let raw = self.raw(name)?;
        if raw.shape != expected {
            return Err(ModelError::Shape {
                path: raw.path.to_path_buf(),
                name: name.to_string(),
                expected: expected.to_vec(),
                found: raw.shape,
            });
        }
        let values = decode_f32(&raw, name)?;
        let (values, shape) = if transpose {
            debug_assert_eq!(expected.len(), 2);
            let (r, c) = (expected[0], expected[1]);
            (transpose_2d(&values, r, c), vec![c, r])
        } else {
            (values, expected.to_vec())
        };
        Ok(encode(values, shape, target))
    }
}

fn decode_f32(raw: &RawTensor<'_>, name: &str) -> Result<Vec<f32>> {
    let bytes = raw.data;
    Ok(match raw.dtype {
        StDtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        StDtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        StDtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        other => {
            return Err(ModelError::UnsupportedDtype {
                context: format!("{}: tensor `{name}`", raw.path.display()),
                dtype: format!("{other:?}"),
            })
        }
    })
}

fn transpose_2d(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; v.len()];
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = v[r * cols + c];
                }
            }
        }
    }
    out
}

/// Builds tensor data of the target float type from f32 values.
pub fn encode(values: Vec<f32>, shape: Vec<usize>, target: FloatType) -> TensorData {
    match target {
        FloatType::F32 => TensorData::new(values, shape),
        FloatType::Bf16 => TensorData::new(values.into_iter().map(bf16::from_f32).collect::<Vec<_>>(), shape),
        FloatType::F16 => TensorData::new(values.into_iter().map(f16::from_f32).collect::<Vec<_>>(), shape),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, tensors: &[(&str, StDtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(n, dt, shape, bytes)| {
                (
                    n.to_string(),
                    safetensors::tensor::TensorView::new(*dt, shape.clone(), bytes).unwrap(),
                )
            })
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join(file)).unwrap();
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn loads_transposes_and_converts() {
        let dir = tempfile::tempdir().unwrap();
        let bf: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_bits().to_le_bytes())
            .collect();
        write(
            dir.path(),
            "model.safetensors",
            &[
                ("w", StDtype::F32, vec![2, 3], f32_bytes(&[1., 2., 3., 4., 5., 6.])),
                ("b", StDtype::BF16, vec![2], bf),
            ],
        );
        let ck = Checkpoint::open(dir.path()).unwrap();
        assert!(ck.contains("w") && ck.contains("b") && !ck.contains("x"));
        let t = ck.load("w", &[2, 3], true, FloatType::F32).unwrap();
        assert_eq!(t.shape.to_vec(), vec![3, 2]);
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![1., 4., 2., 5., 3., 6.]);
        let b = ck.load("b", &[2], false, FloatType::F32).unwrap();
        assert_eq!(b.to_vec::<f32>().unwrap(), vec![1.5, -2.0]);
        let h = ck.load("w", &[2, 3], false, FloatType::F16).unwrap();
        assert_eq!(h.dtype, DType::F16);
    }

    #[test]
    fn errors_name_the_file_and_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let e = Checkpoint::open(dir.path()).err().unwrap();
        assert!(matches!(e, ModelError::NoWeights { .. }), "{e}");
        write(
            dir.path(),
            "model.safetensors",
            &[("w", StDtype::F32, vec![2], f32_bytes(&[1., 2.]))],
        );
        let ck = Checkpoint::open(dir.path()).unwrap();
        let e = ck.load("w", &[3], false, FloatType::F32).err().unwrap().to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("`w`") && e.contains("[3]"),
            "{e}"
        );
        let e = ck
            .load("missing", &[3], false, FloatType::F32)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`missing`"), "{e}");
        std::fs::write(dir.path().join("model.safetensors"), b"garbage").unwrap();
        let e = Checkpoint::open(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("not a valid safetensors"),
            "{e}"
        );
    }

    #[test]
    fn float_type_names() {
        for t in [FloatType::F32, FloatType::Bf16, FloatType::F16] {
            assert_eq!(FloatType::parse(t.hf_name()).unwrap(), t);
            assert_eq!(t.to_string().parse::<FloatType>().unwrap(), t);
        }
        assert!(FloatType::parse("fp8").unwrap_err().to_string().contains("fp8"));
    }
}
