//! `manifest.json`: what an index was built from and how far the build got.
//!
//! It names the encoder (path, a checksum of its `config.json` and `tokenizer.json`, width,
//! prefixes, pooling, max lengths), the corpus (path, rows, bytes, checksum), the metric, the
//! quantization and HNSW parameters, and `rows_done`, the rows whose vectors are saved in
//! `vectors.f32`. It is always replaced atomically (temporary file + rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use research_bert::{EncoderOptions, Pooling};
use serde::{Deserialize, Serialize};

use crate::corpus::{write_atomically, CorpusStats};
use crate::error::{format_err, io_err, Result, RetrievalError};

/// File name of the manifest in an index folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the saved vectors (`rows_done × dims` little-endian f32, row-major).
pub const VECTORS_FILE: &str = "vectors.f32";
/// File name of the usearch HNSW index.
pub const HNSW_FILE: &str = "index.usearch";
/// The manifest format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// How the HNSW index stores vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// 32-bit floats.
    F32,
    /// IEEE half precision.
    F16,
    /// 8-bit integers (usearch scales unit vectors by 127).
    I8,
}

impl Quantization {
    /// Bytes per stored component.
    pub fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
            Self::I8 => 1,
        }
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::I8 => "i8",
        }
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Quantization {
    type Err = RetrievalError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "i8" => Ok(Self::I8),
            other => Err(RetrievalError::Input(format!(
                "unknown quantization `{other}` (expected f32, f16 or i8)"
            ))),
        }
    }
}

/// HNSW graph parameters (usearch's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Neighbours per node (`M`).
    pub connectivity: usize,
    /// Candidate list size while inserting (`efConstruction`).
    pub expansion_add: usize,
    /// Candidate list size while searching (`ef`); may be changed when opening.
    pub expansion_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            connectivity: 32,
            expansion_add: 128,
            expansion_search: 128,
        }
    }
}

/// The encoder an index was built with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderInfo {
    /// The checkpoint folder's name, e.g. `e5-base-v2`.
    pub name: String,
    /// The checkpoint folder as given.
    pub path: PathBuf,
    /// xxh3-64 (hex) of `config.json` followed by `tokenizer.json`.
    pub checksum: String,
    /// Embedding width.
    pub dims: usize,
    /// Prepended to queries.
    pub query_prefix: String,
    /// Prepended to passages.
    pub passage_prefix: String,
    /// `mean` or `cls`.
    pub pooling: String,
    /// Whether embeddings are L2-normalised.
    pub normalize: bool,
    /// Max query tokens, special tokens included.
    pub query_max_len: usize,
    /// Max passage tokens, special tokens included.
    pub passage_max_len: usize,
}

impl EncoderInfo {
    /// Describes an encoder folder and the options it runs with.
    pub fn new(dir: &Path, options: &EncoderOptions, dims: usize) -> Result<Self> {
        Ok(Self {
            name: dir
                .canonicalize()
                .unwrap_or_else(|_| dir.to_path_buf())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: absolute(dir),
            checksum: encoder_checksum(dir)?,
            dims,
            query_prefix: options.query_prefix.clone(),
            passage_prefix: options.passage_prefix.clone(),
            pooling: match options.pooling {
                Pooling::Mean => "mean".into(),
                Pooling::Cls => "cls".into(),
            },
            normalize: options.normalize,
            query_max_len: options.query_max_len,
            passage_max_len: options.passage_max_len,
        })
    }

    /// The encoder options these fields describe (with `batch_size`).
    pub fn options(&self, batch_size: usize) -> Result<EncoderOptions> {
        let pooling = match self.pooling.as_str() {
            "mean" => Pooling::Mean,
            "cls" => Pooling::Cls,
            other => {
                return Err(RetrievalError::Input(format!(
                    "manifest: unknown pooling `{other}` (expected mean or cls)"
                )))
            }
        };
        Ok(EncoderOptions {
            query_prefix: self.query_prefix.clone(),
            passage_prefix: self.passage_prefix.clone(),
            pooling,
            normalize: self.normalize,
            query_max_len: self.query_max_len,
            passage_max_len: self.passage_max_len,
            batch_size,
        })
    }
}

/// The canonical absolute path when it exists (so an index opens from any working directory).
fn absolute(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// xxh3-64 (hex) of an encoder folder's `config.json` bytes followed by its `tokenizer.json` bytes.
pub fn encoder_checksum(dir: &Path) -> Result<String> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for name in ["config.json", "tokenizer.json"] {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        h.update(&bytes);
    }
    Ok(format!("{:016x}", h.digest()))
}

/// The corpus an index was built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusInfo {
    /// The corpus file as given (maybe `.zst`).
    pub path: PathBuf,
    /// Rows (passages).
    pub rows: u64,
    /// Bytes of the plain jsonl.
    pub bytes: u64,
    /// xxh3-64 (hex) of the plain jsonl.
    pub checksum: String,
}

impl CorpusInfo {
    /// From a corpus path and its statistics.
    pub fn new(path: &Path, stats: CorpusStats) -> Self {
        Self {
            path: absolute(path),
            rows: stats.rows,
            bytes: stats.bytes,
            checksum: format!("{:016x}", stats.xxh3),
        }
    }
}

/// Everything an index was built from, and the build's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// The passage encoder (queries must use the same).
    pub encoder: EncoderInfo,
    /// The corpus; index keys are its row numbers.
    pub corpus: CorpusInfo,
    /// `ip`: inner product of L2-normalised vectors (score = cosine).
    pub metric: String,
    /// How the HNSW index stores vectors.
    pub quantization: Quantization,
    /// HNSW parameters.
    pub hnsw: HnswParams,
    /// Rows encoded per saved chunk.
    pub chunk_rows: u64,
    /// Rows whose vectors are saved in `vectors.f32`.
    pub rows_done: u64,
    /// Whether `index.usearch` (or, partitioned, every partition file) holds every row.
    pub hnsw_built: bool,
    /// 1: one HNSW graph in `index.usearch`; P > 1: a partition-routed index
    /// ([`crate::partition`]: `centroids.f32` and `part-NNNNN.usearch` in the index folder).
    /// Manifests written before this field existed read as 1.
    #[serde(default = "one_partition")]
    pub partitions: usize,
}

fn one_partition() -> usize {
    1
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let m: Manifest =
            serde_json::from_str(&text).map_err(|e| format_err(&path, format!("not an index manifest ({e})")))?;
        if m.format != FORMAT_VERSION {
            return Err(format_err(
                &path,
                format!(
                    "manifest format {} (this program reads format {FORMAT_VERSION})",
                    m.format
                ),
            ));
        }
        Ok(m)
    }

    /// Replaces `dir/manifest.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        write_atomically(&path, |w| w.write_all(text.as_bytes()))
    }

    /// Checks that `self` (a saved manifest) describes the same build as `other`: same encoder,
    /// corpus, metric, quantization, HNSW build parameters and chunking. Paths may differ (a
    /// moved file is fine), checksums may not. The error names the field and both values.
    pub fn check_same_build(&self, other: &Manifest, manifest_path: &Path) -> Result<()> {
        let mut diffs = Vec::new();
        let mut cmp = |field: &str, saved: String, asked: String| {
            if saved != asked {
                diffs.push(format!("{field}: index has {saved}, this run has {asked}"));
            }
        };
        let (a, b) = (&self.encoder, &other.encoder);
        cmp(
            "encoder checksum (config.json + tokenizer.json)",
            format!("{} ({})", a.checksum, a.path.display()),
            format!("{} ({})", b.checksum, b.path.display()),
        );
        cmp("encoder dims", a.dims.to_string(), b.dims.to_string());
        cmp(
            "query prefix",
            format!("{:?}", a.query_prefix),
            format!("{:?}", b.query_prefix),
        );
        cmp(
            "passage prefix",
            format!("{:?}", a.passage_prefix),
            format!("{:?}", b.passage_prefix),
        );
        cmp("pooling", a.pooling.clone(), b.pooling.clone());
        cmp("normalize", a.normalize.to_string(), b.normalize.to_string());
        cmp(
            "query max length",
            a.query_max_len.to_string(),
            b.query_max_len.to_string(),
        );
        cmp(
            "passage max length",
            a.passage_max_len.to_string(),
            b.passage_max_len.to_string(),
        );
        let (c, d) = (&self.corpus, &other.corpus);
        cmp(
            "corpus",
            format!("{} rows, checksum {} ({})", c.rows, c.checksum, c.path.display()),
            format!("{} rows, checksum {} ({})", d.rows, d.checksum, d.path.display()),
        );
        cmp("metric", self.metric.clone(), other.metric.clone());
        cmp(
            "quantization",
            self.quantization.to_string(),
            other.quantization.to_string(),
        );
        cmp(
            "connectivity",
            self.hnsw.connectivity.to_string(),
            other.hnsw.connectivity.to_string(),
        );
        cmp(
            "expansion_add",
            self.hnsw.expansion_add.to_string(),
            other.hnsw.expansion_add.to_string(),
        );
        cmp("chunk rows", self.chunk_rows.to_string(), other.chunk_rows.to_string());
        cmp("partitions", self.partitions.to_string(), other.partitions.to_string());
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(RetrievalError::Mismatch {
                path: manifest_path.to_path_buf(),
                message: format!(
                    "this index was built differently: {} (use the same settings to resume, or another --out)",
                    diffs.join("; ")
                ),
            })
        }
    }
}
