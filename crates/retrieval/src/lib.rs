//! Dense retrieval for research-rs, in process: a FlashRAG corpus store, resumable index builds
//! with the BERT encoder of `research-bert`, usearch HNSW search and an exact check.
//!
//! - [`Corpus`]: a FlashRAG jsonl (plain or `.zst`) with a one-pass offset table, so any row is
//!   read in O(1) from a memory map; the index key of a passage is its row number.
//! - [`build_index`] / [`build_with_encoder`]: encode every passage in saved chunks (an
//!   interrupted build resumes), then build the HNSW graph (inner product on unit vectors,
//!   f32 | f16 | i8 storage); [`Manifest`] records what the index was built from.
//! - [`bench`]: encoder throughput on random weights and HNSW search figures (QPS, recall@k,
//!   memory) on raw vector files, for `research bench encoder | search`.
//! - [`partition`]: a partition-routed HNSW index (spherical k-means centroids route each query
//!   to a few partitions, each an ordinary usearch graph) for corpora of many millions of rows.
//! - [`Retriever`]: open an index folder, batched [`Retriever::search`] (HNSW) and
//!   [`Retriever::search_exact`] (brute force over the saved vectors). It implements
//!   [`research_agent::Retriever`], so the rollout loop searches in process.
//!
//! ```no_run
//! use research_retrieval::{build_index, BuildConfig, Retriever, RetrieverOptions};
//! use research_engine::BackendKind;
//!
//! let config = BuildConfig::new("corpus.jsonl.zst", "/models/e5-base-v2", "index/");
//! build_index(BackendKind::Cpu, &config)?;
//! let retriever = Retriever::open("index/", &RetrieverOptions::default())?;
//! let hits = retriever.search(&["who wrote the origin of species".to_string()], 5)?;
//! println!("{} {}", hits[0][0].id, hits[0][0].score);
//! # Ok::<(), research_retrieval::RetrievalError>(())
//! ```

pub mod bench;
pub mod builder;
pub mod corpus;
pub mod error;
pub mod manifest;
pub mod partition;
pub mod quant;
pub mod retriever;
mod workers;

pub use builder::{build_index, build_with_encoder, default_threads, usearch_index, BuildConfig, BuildReport};
pub use corpus::{parse_row, Corpus, CorpusStats};
pub use error::{Result, RetrievalError};
pub use manifest::{CorpusInfo, EncoderInfo, HnswParams, Manifest, Quantization};
pub use partition::{KMeansConfig, PartitionSpec, PartitionedIndex};
pub use research_bert::{Encoder, EncoderFamily, EncoderOptions, FloatType, TextKind};
pub use retriever::{boxed, exact_top_k, Hit, QueryEncoder, Retriever, RetrieverOptions};
