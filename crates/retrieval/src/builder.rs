//! Building an index folder: encode every passage in chunks (resumable), then the HNSW graph.
//!
//! ```text
//! OUT/manifest.json     what the index was built from, rows_done, hnsw_built
//! OUT/vectors.f32       rows_done × dims little-endian f32 (unit vectors), row = key
//! OUT/index.usearch     usearch HNSW, metric inner product, f32 | f16 | i8 (one graph), or, with
//!                       `partitions` > 1, OUT/centroids.f32 and OUT/part-NNNNN.usearch (`partition`)
//! OUT/corpus.offsets    the corpus offset table (and OUT/corpus.jsonl for a .zst corpus)
//! ```
//!
//! Encoding runs chunk by chunk (`chunk_rows` rows): the chunk's vectors are appended to
//! `vectors.f32` and synced, then `manifest.json` is replaced (temporary file + rename) with the
//! new `rows_done`. An interrupted build loses at most the chunk in flight: rerunning it with the
//! same settings truncates `vectors.f32` to `rows_done` rows and goes on. Within a chunk, passages
//! are encoded in batches of similar token length (less padding); the chunking is part of the
//! manifest, so a resumed build forms exactly the batches an uninterrupted one would. When every
//! row is encoded the HNSW graph is built from `vectors.f32` with several threads and saved.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use burn::tensor::backend::Backend;
use indicatif::{ProgressBar, ProgressStyle};
use research_bert::{Encoder, EncoderFamily, EncoderOptions, FloatType, TextKind};
use research_engine::{dispatch, BackendKind, WithBackend};

use crate::corpus::Corpus;
use crate::error::{format_err, io_err, usearch_err, Result, RetrievalError};
use crate::manifest::{
    CorpusInfo, EncoderInfo, HnswParams, Manifest, Quantization, FORMAT_VERSION, HNSW_FILE, MANIFEST_FILE, VECTORS_FILE,
};

/// How to build an index.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// The FlashRAG corpus (`.jsonl` or `.jsonl.zst`).
    pub corpus: PathBuf,
    /// The encoder checkpoint folder (`config.json`, safetensors, `tokenizer.json`).
    pub encoder: PathBuf,
    /// The index folder (created; an unfinished build there is resumed).
    pub out: PathBuf,
    /// Encoder family (prefixes, pooling); guessed from the encoder path when `None`.
    pub family: Option<EncoderFamily>,
    /// Max passage tokens (default: the family's, 180).
    pub passage_max_len: Option<usize>,
    /// Max query tokens recorded for searches (default: the family's, 128).
    pub query_max_len: Option<usize>,
    /// HNSW vector storage.
    pub quantization: Quantization,
    /// HNSW parameters.
    pub hnsw: HnswParams,
    /// 1: one HNSW graph; P > 1: a partition-routed index of P graphs ([`crate::partition`]); 0:
    /// [`crate::partition::default_partitions`] of the corpus size.
    pub partitions: usize,
    /// Passages per forward pass.
    pub batch_size: usize,
    /// Rows per saved chunk.
    pub chunk_rows: u64,
    /// Threads that insert into the HNSW graph.
    pub threads: usize,
    /// Batches encoded at once (CPU backends: up to the core count; GPU backends: 1).
    pub encode_threads: usize,
    /// Encoder compute dtype.
    pub dtype: FloatType,
    /// Show progress bars (on stderr).
    pub progress: bool,
    /// Stop after saving this many chunks in this run (a build in parts; tests of resuming).
    pub max_chunks: Option<u64>,
}

impl BuildConfig {
    /// Defaults for a corpus, an encoder and an output folder: f32, M 32, ef_add 128,
    /// ef_search 128, batches of 64, chunks of 4096 rows, all CPU threads, progress shown.
    pub fn new(corpus: impl Into<PathBuf>, encoder: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        Self {
            corpus: corpus.into(),
            encoder: encoder.into(),
            out: out.into(),
            family: None,
            passage_max_len: None,
            query_max_len: None,
            quantization: Quantization::F32,
            hnsw: HnswParams::default(),
            partitions: 1,
            batch_size: 64,
            chunk_rows: 4096,
            threads: default_threads(),
            encode_threads: 1,
            dtype: FloatType::F32,
            progress: true,
            max_chunks: None,
        }
    }

    /// The encoder options this build uses.
    pub fn encoder_options(&self) -> EncoderOptions {
        let family = self.family.unwrap_or_else(|| EncoderFamily::guess(&self.encoder));
        let mut o = EncoderOptions::for_family(family);
        if let Some(n) = self.passage_max_len {
            o.passage_max_len = n;
        }
        if let Some(n) = self.query_max_len {
            o.query_max_len = n;
        }
        o.batch_size = self.batch_size;
        o
    }
}

/// The machine's threads (1 when unknown).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What a build run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    /// Rows in the corpus.
    pub rows: u64,
    /// Rows encoded by this run.
    pub encoded_now: u64,
    /// Rows whose vectors are saved.
    pub rows_done: u64,
    /// Seconds spent encoding in this run.
    pub encode_secs: f64,
    /// Seconds spent building the HNSW graph in this run (0 when not built now).
    pub hnsw_secs: f64,
    /// Whether the index is complete.
    pub complete: bool,
}

/// Builds (or resumes) the index of `config` with the encoder on backend `kind`.
pub fn build_index(kind: BackendKind, config: &BuildConfig) -> Result<BuildReport> {
    struct Job<'a>(&'a BuildConfig);
    impl WithBackend for Job<'_> {
        type Output = Result<BuildReport>;
        fn run<B: Backend>(self, device: B::Device) -> Result<BuildReport> {
            let encoder = Encoder::<B>::load(&self.0.encoder, self.0.encoder_options(), self.0.dtype, &device)?;
            build_with_encoder(self.0, &encoder)
        }
    }
    dispatch(kind, config.dtype, Job(config))?
}

/// Builds (or resumes) the index of `config` with a loaded encoder (whose options must be
/// `config.encoder_options()`; `config.encoder` is the folder it was loaded from).
pub fn build_with_encoder<B: Backend>(config: &BuildConfig, encoder: &Encoder<B>) -> Result<BuildReport> {
    if config.chunk_rows == 0 || config.batch_size == 0 || config.threads == 0 {
        return Err(RetrievalError::Input(
            "chunk rows, batch size and threads must be at least 1".into(),
        ));
    }
    let out = &config.out;
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let manifest_path = out.join(MANIFEST_FILE);
    let saved = if manifest_path.exists() {
        Some(Manifest::load(out)?)
    } else {
        None
    };
    let corpus = match &saved {
        Some(m) => Corpus::open_expecting(&config.corpus, out, &m.corpus, &manifest_path)?,
        None => Corpus::open(&config.corpus, out)?,
    };
    let dims = encoder.dim();
    let fresh = Manifest {
        format: FORMAT_VERSION,
        encoder: EncoderInfo::new(&config.encoder, encoder.options(), dims)?,
        corpus: CorpusInfo::new(&config.corpus, corpus.stats()),
        metric: "ip".into(),
        quantization: config.quantization,
        hnsw: config.hnsw,
        chunk_rows: config.chunk_rows,
        rows_done: 0,
        hnsw_built: false,
        partitions: match config.partitions {
            0 => crate::partition::default_partitions(corpus.len()),
            p => p,
        },
    };
    if fresh.partitions as u64 > corpus.len() {
        return Err(RetrievalError::Input(format!(
            "--partitions {}: the corpus has only {} rows",
            fresh.partitions,
            corpus.len()
        )));
    }
    let mut manifest = if let Some(saved) = saved {
        saved.check_same_build(&fresh, &manifest_path)?;
        let mut m = saved;
        // The search-time candidate list may change between runs.
        m.hnsw.expansion_search = config.hnsw.expansion_search;
        m
    } else {
        fresh
    };
    manifest.save(out)?;
    let rows = corpus.len();
    let row_bytes = (dims * 4) as u64;

    // Vectors: keep exactly rows_done rows (drop a chunk that was written but not recorded).
    let vectors_path = out.join(VECTORS_FILE);
    let mut vectors = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&vectors_path)
        .map_err(io_err(&vectors_path))?;
    let have = vectors.metadata().map_err(io_err(&vectors_path))?.len();
    let want = manifest.rows_done * row_bytes;
    if have < want {
        return Err(format_err(
            &vectors_path,
            format!(
                "holds {have} bytes but the manifest records {} rows of {dims} f32 ({want} bytes); the folder is damaged, build into a new one",
                manifest.rows_done
            ),
        ));
    }
    if have > want {
        tracing::info!(dropped_bytes = have - want, "dropping vectors of an unrecorded chunk");
        vectors.set_len(want).map_err(io_err(&vectors_path))?;
        manifest.hnsw_built = false;
    }
    vectors.seek(SeekFrom::Start(want)).map_err(io_err(&vectors_path))?;

    let start_rows = manifest.rows_done;
    let t0 = Instant::now();
    if manifest.rows_done < rows {
        manifest.hnsw_built = false;
        tracing::info!(rows, done = manifest.rows_done, "encoding passages");
        let bar = bar(config.progress, rows, "encoding", "passages");
        bar.set_position(manifest.rows_done);
        bar.reset_eta();
        let mut chunks = 0u64;
        while manifest.rows_done < rows {
            if config.max_chunks.is_some_and(|m| chunks >= m) {
                break;
            }
            let lo = manifest.rows_done;
            let hi = (lo + config.chunk_rows).min(rows);
            let passages = (lo..hi).map(|r| corpus.row(r)).collect::<Result<Vec<_>>>()?;
            let texts: Vec<&str> = passages.iter().map(|p| p.contents.as_str()).collect();
            let flat = encode_sorted(encoder, &texts, config.batch_size, config.encode_threads, &bar)?;
            let mut bytes = Vec::with_capacity(flat.len() * 4);
            for v in &flat {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            vectors.write_all(&bytes).map_err(io_err(&vectors_path))?;
            vectors.sync_data().map_err(io_err(&vectors_path))?;
            manifest.rows_done = hi;
            manifest.save(out)?;
            chunks += 1;
            tracing::debug!(rows_done = hi, "chunk saved");
        }
        bar.finish_and_clear();
    }
    let encode_secs = t0.elapsed().as_secs_f64();
    drop(vectors);

    let mut hnsw_secs = 0.0;
    if manifest.rows_done == rows && !(manifest.hnsw_built && graph_files_exist(out, &manifest)) {
        let t1 = Instant::now();
        build_hnsw(out, &manifest, config.threads, config.progress)?;
        hnsw_secs = t1.elapsed().as_secs_f64();
        manifest.hnsw_built = true;
        manifest.save(out)?;
    }
    Ok(BuildReport {
        rows,
        encoded_now: manifest.rows_done - start_rows,
        rows_done: manifest.rows_done,
        encode_secs,
        hnsw_secs,
        complete: manifest.hnsw_built,
    })
}

/// A progress bar with rate and ETA (hidden when `show` is false or stderr is not a terminal).
pub(crate) fn bar(show: bool, len: u64, what: &str, unit: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{wide_bar}} {{human_pos}}/{{human_len}} {unit} {{per_sec}} ETA {{eta}}"
        ))
        .expect("a valid template"),
    );
    bar
}

/// Embeddings of `texts` (row-major, `texts.len() × dims`), encoded in batches of texts of
/// similar token length, `threads` batches at a time. Each batch is the same whatever the thread
/// count, so the vectors are too.
fn encode_sorted<B: Backend>(
    encoder: &Encoder<B>,
    texts: &[&str],
    batch_size: usize,
    threads: usize,
    bar: &ProgressBar,
) -> Result<Vec<f32>> {
    let dims = encoder.dim();
    let ids = encoder.tokenize(texts, TextKind::Passage)?;
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| (ids[i].len(), i));
    let groups: Vec<&[usize]> = order.chunks(batch_size).collect();
    let next = AtomicU64::new(0);
    let embed = || -> Result<Vec<(usize, Vec<Vec<f32>>)>> {
        let mut done = Vec::new();
        loop {
            let g = next.fetch_add(1, Ordering::Relaxed) as usize;
            let Some(group) = groups.get(g) else {
                return Ok(done);
            };
            let rows: Vec<Vec<u32>> = group.iter().map(|&i| ids[i].clone()).collect();
            done.push((g, encoder.embed_ids(&rows)?));
            bar.inc(group.len() as u64);
        }
    };
    type Embedded = Result<Vec<(usize, Vec<Vec<f32>>)>>;
    let results: Vec<Embedded> = if threads <= 1 || groups.len() <= 1 {
        vec![embed()]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads.min(groups.len())).map(|_| s.spawn(embed)).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(RetrievalError::Input("an encoding thread panicked".into())))
                })
                .collect()
        })
    };
    let mut out = vec![0f32; texts.len() * dims];
    for part in results {
        for (g, embs) in part? {
            for (&i, e) in groups[g].iter().zip(embs) {
                out[i * dims..(i + 1) * dims].copy_from_slice(&e);
            }
        }
    }
    Ok(out)
}

/// A new, empty usearch index for a manifest.
pub(crate) fn new_usearch(m: &Manifest) -> Result<usearch::Index> {
    usearch_index(m.encoder.dims, m.quantization, &m.hnsw)
}

/// A new, empty usearch index over `dims`-wide unit vectors, scored by inner product, with the
/// storage and HNSW parameters given (what every index of this crate, and the search benchmark,
/// is made with).
pub fn usearch_index(dims: usize, quantization: Quantization, hnsw: &HnswParams) -> Result<usearch::Index> {
    let options = usearch::IndexOptions {
        dimensions: dims,
        // usearch's i8 inner product is in raw integer units (components scaled by 127), its i8
        // cosine is normalised: on unit vectors the cosine is the inner product we want.
        metric: match quantization {
            Quantization::I8 => usearch::MetricKind::Cos,
            Quantization::F32 | Quantization::F16 => usearch::MetricKind::IP,
        },
        quantization: match quantization {
            Quantization::F32 => usearch::ScalarKind::F32,
            Quantization::F16 => usearch::ScalarKind::F16,
            Quantization::I8 => usearch::ScalarKind::I8,
        },
        connectivity: hnsw.connectivity,
        expansion_add: hnsw.expansion_add,
        expansion_search: hnsw.expansion_search,
        multi: false,
    };
    usearch::Index::new(&options).map_err(usearch_err("creating the index"))
}

/// Memory-maps `vectors.f32` as f32 rows (empty when the file is).
pub(crate) struct Vectors {
    map: Option<memmap2::Mmap>,
    dims: usize,
}

impl Vectors {
    /// Maps the file and checks it holds exactly `rows × dims` f32.
    pub(crate) fn open(path: &Path, rows: u64, dims: usize) -> Result<Self> {
        let file = File::open(path).map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        let want = rows * dims as u64 * 4;
        if len != want {
            return Err(format_err(
                path,
                format!("holds {len} bytes; expected {rows} rows × {dims} f32 = {want} bytes"),
            ));
        }
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the vectors file belongs to the index folder and is only appended to by a
            // build, never while an index is open.
            Some(unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(path))?)
        };
        Ok(Self { map, dims })
    }

    /// All rows, row-major.
    pub(crate) fn all(&self) -> &[f32] {
        match &self.map {
            // A page-aligned map of whole f32s: the cast cannot fail.
            Some(m) => bytemuck::cast_slice(&m[..]),
            None => &[],
        }
    }

    /// Row `i`.
    pub(crate) fn row(&self, i: usize) -> &[f32] {
        &self.all()[i * self.dims..(i + 1) * self.dims]
    }
}

/// Whether the graph files of a manifest are in `out`.
pub(crate) fn graph_files_exist(out: &Path, m: &Manifest) -> bool {
    if m.partitions > 1 {
        out.join(crate::partition::CENTROIDS_FILE).is_file()
            && (0..m.partitions).all(|p| out.join(crate::partition::part_file(p)).is_file())
    } else {
        out.join(HNSW_FILE).is_file()
    }
}

/// Builds the HNSW graph from `vectors.f32` with `threads` inserting threads and saves it to
/// `index.usearch` (through a temporary file and a rename); with `partitions` > 1, the
/// partitioned index (k-means, assignment, one graph per partition) saved beside it.
fn build_hnsw(out: &Path, m: &Manifest, threads: usize, progress: bool) -> Result<()> {
    let rows = m.rows_done;
    if m.partitions > 1 {
        let vectors = Vectors::open(&out.join(VECTORS_FILE), rows, m.encoder.dims)?;
        tracing::info!(
            rows,
            threads,
            partitions = m.partitions,
            "building the partitioned HNSW index"
        );
        let spec = crate::partition::PartitionSpec {
            dims: m.encoder.dims,
            quantization: m.quantization,
            hnsw: m.hnsw,
        };
        let kmeans = crate::partition::KMeansConfig::new(m.partitions);
        let index = crate::partition::PartitionedIndex::build(vectors.all(), spec, &kmeans, threads, 1)?;
        let _ = progress;
        return index.save(out);
    }
    let vectors = Vectors::open(&out.join(VECTORS_FILE), rows, m.encoder.dims)?;
    let index = new_usearch(m)?;
    index
        .reserve_capacity_and_threads(rows as usize, threads)
        .map_err(usearch_err("reserving capacity"))?;
    tracing::info!(rows, threads, quantization = %m.quantization, "building the HNSW graph");
    let bar = bar(progress, rows, "HNSW", "vectors");
    let next = AtomicU64::new(0);
    let errors = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut buf = vec![0i8; m.encoder.dims];
                    loop {
                        let key = next.fetch_add(1, Ordering::Relaxed);
                        if key >= rows {
                            return Ok(());
                        }
                        let row = vectors.row(key as usize);
                        if m.quantization == Quantization::I8 {
                            crate::quant::quantize_max_abs(row, &mut buf);
                            index.add(key, buf.as_slice())
                        } else {
                            index.add(key, row)
                        }
                        .map_err(usearch_err("adding a vector"))?;
                        bar.inc(1);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(RetrievalError::Usearch("an insert thread panicked".into())))
            })
            .collect::<Vec<_>>()
    });
    errors.into_iter().collect::<Result<()>>()?;
    bar.finish_and_clear();
    let path = out.join(HNSW_FILE);
    let tmp = out.join(format!("{HNSW_FILE}.tmp"));
    let tmp_str = tmp
        .to_str()
        .ok_or_else(|| format_err(&tmp, "the index path must be valid UTF-8 for usearch"))?;
    index.save(tmp_str).map_err(usearch_err("saving the index"))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(())
}
