//! Searching an index folder: [`Retriever::open`], batched [`Retriever::search`] (HNSW) and
//! [`Retriever::search_exact`] (brute force over the saved vectors).
//!
//! Queries are encoded with the encoder the manifest names (its checksum must match), with the
//! manifest's query prefix and max length. The HNSW file is memory-mapped (`view`) by default.
//! A partitioned index (manifest `partitions` > 1) opens every partition file the same way and
//! searches the `probe` partitions whose centroids score highest ([`crate::partition`]).
//! usearch needs one reserved thread context per concurrent call, so searches take a slot from a
//! counting semaphore sized to the contexts reserved after `view`/`load`: more concurrent callers
//! than slots wait instead of crashing usearch.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use burn::tensor::backend::Backend;
use research_agent::Passage;
use research_bert::{Encoder, FloatType, TextKind};
use research_engine::{dispatch, BackendKind, WithBackend};

use crate::builder::{default_threads, new_usearch, Vectors};
use crate::corpus::Corpus;
use crate::error::{format_err, io_err, usearch_err, Result, RetrievalError};
use crate::manifest::{encoder_checksum, Manifest, HNSW_FILE, MANIFEST_FILE, VECTORS_FILE};

/// One search result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hit {
    /// The corpus id.
    pub id: String,
    /// `title\ntext`.
    pub contents: String,
    /// Inner product of the query and passage vectors (the cosine for unit vectors).
    pub score: f32,
    /// The row number (index key).
    pub row: u64,
}

impl From<Hit> for Passage {
    fn from(h: Hit) -> Self {
        Passage {
            id: h.id,
            contents: h.contents,
        }
    }
}

/// Turns query texts into vectors; implemented for every [`Encoder`].
pub trait QueryEncoder: Send {
    /// One vector per query.
    fn encode_queries(&self, queries: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// Vector width.
    fn dims(&self) -> usize;
}

impl<B: Backend> QueryEncoder for Encoder<B>
where
    Encoder<B>: Send,
{
    fn encode_queries(&self, queries: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(self.encode(queries, TextKind::Query)?)
    }
    fn dims(&self) -> usize {
        self.dim()
    }
}

/// How to open an index.
#[derive(Debug, Clone)]
pub struct RetrieverOptions {
    /// Backend of the query encoder.
    pub backend: BackendKind,
    /// Compute dtype of the query encoder.
    pub dtype: FloatType,
    /// Encoder folder (default: the manifest's path); its checksum must match the manifest.
    pub encoder: Option<PathBuf>,
    /// Corpus file (default: the manifest's path); its checksum must match the manifest.
    pub corpus: Option<PathBuf>,
    /// HNSW search candidate list (default: the manifest's).
    pub expansion_search: Option<usize>,
    /// Partitioned indexes: partitions searched per query (default
    /// [`crate::partition::DEFAULT_PROBE`]); ignored by a single graph.
    pub probe: Option<usize>,
    /// Concurrent usearch calls (thread contexts reserved after opening).
    pub threads: usize,
    /// Queries per encoder forward pass.
    pub query_batch_size: usize,
    /// Memory-map the HNSW file (`view`) rather than reading it into memory (`load`).
    pub view: bool,
}

impl Default for RetrieverOptions {
    fn default() -> Self {
        Self {
            backend: BackendKind::Cpu,
            dtype: FloatType::F32,
            encoder: None,
            corpus: None,
            expansion_search: None,
            probe: None,
            threads: default_threads(),
            query_batch_size: 64,
            view: true,
        }
    }
}

/// A counting semaphore over usearch's reserved thread contexts.
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Slots {
    fn new(n: usize) -> Self {
        Self {
            free: Mutex::new(n),
            cv: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

/// The searchable part of an index folder.
enum Graph {
    One(usearch::Index),
    Parts(crate::partition::PartitionedIndex),
}

/// An opened index: corpus, HNSW graph, saved vectors and query encoder. `Send + Sync`: searches
/// may run from several threads at once.
pub struct Retriever {
    dir: PathBuf,
    manifest: Manifest,
    corpus: Corpus,
    index: Graph,
    probe: usize,
    vectors: Vectors,
    slots: Slots,
    threads: usize,
    encoder: Mutex<Box<dyn QueryEncoder>>,
    query_batch_size: usize,
}

impl std::fmt::Debug for Retriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retriever")
            .field("dir", &self.dir)
            .field("rows", &self.manifest.corpus.rows)
            .field("encoder", &self.manifest.encoder.name)
            .finish()
    }
}

impl Retriever {
    /// Opens an index folder, loading the query encoder on `options.backend`.
    pub fn open(dir: impl AsRef<Path>, options: &RetrieverOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let manifest = Self::complete_manifest(dir)?;
        let encoder_dir = options.encoder.clone().unwrap_or_else(|| manifest.encoder.path.clone());
        check_encoder(&manifest, &encoder_dir, &dir.join(MANIFEST_FILE))?;
        let enc_options = manifest.encoder.options(options.query_batch_size.max(1))?;

        struct Load(PathBuf, research_bert::EncoderOptions, FloatType);
        impl WithBackend for Load {
            type Output = Result<Box<dyn QueryEncoder>>;
            fn run<B: Backend>(self, device: B::Device) -> Self::Output {
                let enc = Encoder::<B>::load(&self.0, self.1, self.2, &device)?;
                Ok(boxed(enc))
            }
        }
        let encoder = dispatch(
            options.backend,
            options.dtype,
            Load(encoder_dir, enc_options, options.dtype),
        )??;
        Self::with_encoder(dir, options, encoder)
    }

    /// Opens an index folder with a query encoder already loaded (it must be the manifest's: the
    /// caller is trusted on the model, only the width is checked).
    pub fn with_encoder(
        dir: impl AsRef<Path>,
        options: &RetrieverOptions,
        encoder: Box<dyn QueryEncoder>,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = Self::complete_manifest(dir)?;
        let dims = manifest.encoder.dims;
        if encoder.dims() != dims {
            return Err(RetrievalError::Mismatch {
                path: manifest_path,
                message: format!(
                    "the index holds {dims}-d vectors but the query encoder gives {}-d",
                    encoder.dims()
                ),
            });
        }
        let corpus_path = options.corpus.clone().unwrap_or_else(|| manifest.corpus.path.clone());
        let corpus = Corpus::open_expecting(&corpus_path, dir, &manifest.corpus, &manifest_path)?;
        let vectors = Vectors::open(&dir.join(VECTORS_FILE), manifest.rows_done, dims)?;

        let threads = options.threads.max(1);
        let hnsw_path = dir.join(HNSW_FILE);
        let index = if manifest.partitions > 1 {
            let spec = crate::partition::PartitionSpec {
                dims,
                quantization: manifest.quantization,
                hnsw: manifest.hnsw,
            };
            let parts =
                crate::partition::PartitionedIndex::open(dir, spec, manifest.partitions, threads, options.view)?;
            if let Some(ef) = options.expansion_search {
                parts.change_expansion_search(ef);
            }
            if parts.size() as u64 != manifest.corpus.rows {
                return Err(format_err(
                    dir,
                    format!(
                        "the {} partitions hold {} vectors; the manifest says {}",
                        manifest.partitions,
                        parts.size(),
                        manifest.corpus.rows
                    ),
                ));
            }
            Graph::Parts(parts)
        } else {
            let hnsw_str = hnsw_path
                .to_str()
                .ok_or_else(|| format_err(&hnsw_path, "the index path must be valid UTF-8 for usearch"))?;
            if !hnsw_path.is_file() {
                return Err(io_err(&hnsw_path)(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "HNSW file missing; rerun `research index` with the same arguments",
                )));
            }
            let index = new_usearch(&manifest)?;
            if options.view {
                index.view(hnsw_str).map_err(usearch_err("viewing the index"))?;
            } else {
                index.load(hnsw_str).map_err(usearch_err("loading the index"))?;
            }
            // view/load reset the thread contexts: reserve them again.
            index
                .reserve_capacity_and_threads(index.size(), threads)
                .map_err(usearch_err("reserving search threads"))?;
            if let Some(ef) = options.expansion_search {
                index.change_expansion_search(ef);
            }
            if index.size() as u64 != manifest.corpus.rows || index.dimensions() != dims {
                return Err(format_err(
                    &hnsw_path,
                    format!(
                        "holds {} vectors of {} dims; the manifest says {} of {dims}",
                        index.size(),
                        index.dimensions(),
                        manifest.corpus.rows
                    ),
                ));
            }
            Graph::One(index)
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            corpus,
            index,
            probe: options.probe.unwrap_or(crate::partition::DEFAULT_PROBE).max(1),
            vectors,
            slots: Slots::new(threads),
            threads,
            encoder: Mutex::new(encoder),
            query_batch_size: options.query_batch_size.max(1),
        })
    }

    fn complete_manifest(dir: &Path) -> Result<Manifest> {
        let manifest = Manifest::load(dir)?;
        if manifest.rows_done < manifest.corpus.rows || !manifest.hnsw_built {
            return Err(format_err(
                &dir.join(MANIFEST_FILE),
                format!(
                    "the index is unfinished ({} of {} rows encoded, HNSW {}); rerun `research index` with the same arguments to finish it",
                    manifest.rows_done,
                    manifest.corpus.rows,
                    if manifest.hnsw_built { "built" } else { "not built" }
                ),
            ));
        }
        Ok(manifest)
    }

    /// The index folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the index was built from.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The corpus.
    pub fn corpus(&self) -> &Corpus {
        &self.corpus
    }

    /// Number of passages.
    pub fn len(&self) -> u64 {
        self.manifest.corpus.rows
    }

    /// Whether the index has no passages.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Encodes queries (in batches of `query_batch_size`).
    pub fn encode_queries(&self, queries: &[String]) -> Result<Vec<Vec<f32>>> {
        let enc = self.encoder.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(queries.len());
        for chunk in queries.chunks(self.query_batch_size) {
            let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
            out.extend(enc.encode_queries(&texts)?);
        }
        Ok(out)
    }

    /// The `k` best passages of each query by HNSW search (fewer if the corpus is smaller).
    pub fn search(&self, queries: &[String], k: usize) -> Result<Vec<Vec<Hit>>> {
        let vecs = self.encode_queries(queries)?;
        self.search_vectors(&vecs, k)
    }

    /// The exact `k` best passages of each query (brute force over the saved vectors).
    pub fn search_exact(&self, queries: &[String], k: usize) -> Result<Vec<Vec<Hit>>> {
        let vecs = self.encode_queries(queries)?;
        self.search_vectors_exact(&vecs, k)
    }

    /// HNSW search for query vectors: `(row, score)` pairs, best first.
    pub fn nearest(&self, vecs: &[Vec<f32>], k: usize) -> Result<Vec<Vec<(u64, f32)>>> {
        self.check_queries(vecs)?;
        let k = k.min(self.len() as usize);
        if k == 0 || vecs.is_empty() {
            return Ok(vec![Vec::new(); vecs.len()]);
        }
        let workers = self.threads.min(vecs.len());
        let per = vecs.len().div_ceil(workers);
        let mut out: Vec<Vec<(u64, f32)>> = vec![Vec::new(); vecs.len()];
        std::thread::scope(|s| -> Result<()> {
            let handles: Vec<_> = out
                .chunks_mut(per)
                .zip(vecs.chunks(per))
                .map(|(outs, qs)| {
                    s.spawn(move || -> Result<()> {
                        let _slot = self.slots.acquire();
                        let index = match &self.index {
                            Graph::Parts(parts) => {
                                for (o, q) in outs.iter_mut().zip(qs) {
                                    *o = parts.search(q, k, self.probe)?;
                                }
                                return Ok(());
                            }
                            Graph::One(index) => index,
                        };
                        let i8_storage = self.manifest.quantization == crate::manifest::Quantization::I8;
                        let mut buf = vec![0i8; if i8_storage { self.manifest.encoder.dims } else { 0 }];
                        for (o, q) in outs.iter_mut().zip(qs) {
                            let m = if i8_storage {
                                // Quantized as the stored vectors were (see `quant`).
                                crate::quant::quantize_max_abs(q, &mut buf);
                                index.search(buf.as_slice(), k)
                            } else {
                                index.search(q.as_slice(), k)
                            }
                            .map_err(usearch_err("searching"))?;
                            *o = m
                                .keys
                                .iter()
                                .zip(&m.distances)
                                .map(|(&key, &d)| (key, 1.0 - d))
                                .collect();
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .unwrap_or_else(|_| Err(RetrievalError::Usearch("a search thread panicked".into())))?;
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Exact search for query vectors: `(row, score)` pairs by descending inner product (ties by
    /// row), computed in f32 over `vectors.f32`.
    pub fn nearest_exact(&self, vecs: &[Vec<f32>], k: usize) -> Result<Vec<Vec<(u64, f32)>>> {
        self.check_queries(vecs)?;
        Ok(exact_top_k(
            self.vectors.all(),
            self.manifest.encoder.dims,
            vecs,
            k,
            self.threads,
        ))
    }

    /// [`Self::nearest`] with passages.
    pub fn search_vectors(&self, vecs: &[Vec<f32>], k: usize) -> Result<Vec<Vec<Hit>>> {
        let found = self.nearest(vecs, k)?;
        self.hits(found)
    }

    /// [`Self::nearest_exact`] with passages.
    pub fn search_vectors_exact(&self, vecs: &[Vec<f32>], k: usize) -> Result<Vec<Vec<Hit>>> {
        let found = self.nearest_exact(vecs, k)?;
        self.hits(found)
    }

    fn check_queries(&self, vecs: &[Vec<f32>]) -> Result<()> {
        let dims = self.manifest.encoder.dims;
        match vecs.iter().position(|v| v.len() != dims) {
            Some(i) => Err(RetrievalError::Input(format!(
                "query vector {i} has {} components; the index holds {dims}-d vectors",
                vecs[i].len()
            ))),
            None => Ok(()),
        }
    }

    fn hits(&self, found: Vec<Vec<(u64, f32)>>) -> Result<Vec<Vec<Hit>>> {
        found
            .into_iter()
            .map(|list| {
                list.into_iter()
                    .map(|(row, score)| {
                        let p = self.corpus.row(row)?;
                        Ok(Hit {
                            id: p.id,
                            contents: p.contents,
                            score,
                            row,
                        })
                    })
                    .collect()
            })
            .collect()
    }
}

/// Boxes an encoder as a [`QueryEncoder`].
pub fn boxed<B: Backend>(encoder: Encoder<B>) -> Box<dyn QueryEncoder>
where
    Encoder<B>: Send,
{
    Box::new(encoder)
}

/// Checks an encoder folder's checksum against the manifest's.
fn check_encoder(manifest: &Manifest, encoder_dir: &Path, manifest_path: &Path) -> Result<()> {
    let sum = encoder_checksum(encoder_dir)?;
    if sum != manifest.encoder.checksum {
        return Err(RetrievalError::Mismatch {
            path: manifest_path.to_path_buf(),
            message: format!(
                "the index was built with encoder {} (config+tokenizer checksum {}), but {} has checksum {sum}",
                manifest.encoder.path.display(),
                manifest.encoder.checksum,
                encoder_dir.display()
            ),
        });
    }
    Ok(())
}

/// The `k` rows of `data` (row-major, `dims` wide) with the largest inner product with each
/// query, best first (ties by lower row), over `threads` threads.
pub fn exact_top_k(data: &[f32], dims: usize, queries: &[Vec<f32>], k: usize, threads: usize) -> Vec<Vec<(u64, f32)>> {
    let rows = data.len().checked_div(dims).unwrap_or(0);
    let k = k.min(rows);
    if k == 0 {
        return vec![Vec::new(); queries.len()];
    }
    let threads = threads.clamp(1, rows);
    let per = rows.div_ceil(threads);
    // Each thread keeps the best k of its rows for every query; the lists are merged after.
    let partial: Vec<Vec<Vec<(u64, f32)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let lo = t * per;
                    let hi = ((t + 1) * per).min(rows);
                    queries
                        .iter()
                        .map(|q| {
                            let mut best: Vec<(u64, f32)> = Vec::with_capacity(k + 1);
                            for r in lo..hi {
                                let v = &data[r * dims..(r + 1) * dims];
                                let score: f32 = v.iter().zip(q).map(|(a, b)| a * b).sum();
                                if best.len() == k && !better((r as u64, score), best[k - 1]) {
                                    continue;
                                }
                                let at = best.partition_point(|&e| better(e, (r as u64, score)));
                                best.insert(at, (r as u64, score));
                                best.truncate(k);
                            }
                            best
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("exact search thread"))
            .collect()
    });
    (0..queries.len())
        .map(|qi| {
            let mut all: Vec<(u64, f32)> = partial.iter().flat_map(|p| p[qi].iter().copied()).collect();
            all.sort_by(|&a, &b| rank(a, b));
            all.truncate(k);
            all
        })
        .collect()
}

/// The ranking order: higher score first, then lower row.
fn rank(a: (u64, f32), b: (u64, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Whether `a` ranks before `b`.
fn better(a: (u64, f32), b: (u64, f32)) -> bool {
    rank(a, b) == std::cmp::Ordering::Less
}

impl research_agent::Retriever for Retriever {
    fn search(&self, queries: &[String], k: usize) -> std::result::Result<Vec<Vec<Passage>>, String> {
        Retriever::search(self, queries, k)
            .map(|lists| {
                lists
                    .into_iter()
                    .map(|l| l.into_iter().map(Passage::from).collect())
                    .collect()
            })
            .map_err(|e| e.to_string())
    }
}
