//! BERT in burn for dense retrieval (E5, BGE, sentence-transformers' MiniLM), numerically equal to
//! HF transformers' `BertModel` followed by the families' pooling.
//!
//! - [`BertConfig`]: `config.json`; errors name the file and field.
//! - [`BertModel`]: embeddings and encoder stack, generic over the burn backend, HF tensor names
//!   (an optional `bert.` prefix is accepted), loaded from a [`Checkpoint`] (`research-model-io`).
//! - [`BertTokenizer`]: `tokenizer.json` (WordPiece) with its own padding and truncation switched
//!   off; truncation as transformers does it, padding by [`PaddedBatch`].
//! - [`Pooling`] (mean over the attention mask, or `[CLS]`) and [`l2_normalize`].
//! - [`Encoder`]: `encode(&[&str], TextKind::Query | TextKind::Passage) -> Vec<Vec<f32>>` in
//!   batches, with each [`EncoderFamily`]'s prefixes, pooling and max lengths ([`EncoderOptions`]).
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use research_bert::{Encoder, EncoderFamily, EncoderOptions, FloatType, TextKind};
//!
//! let dir = std::path::Path::new("/models/e5-base-v2");
//! let options = EncoderOptions::for_family(EncoderFamily::guess(dir));
//! let enc = Encoder::<NdArray<f32>>::load(dir, options, FloatType::F32, &Default::default())?;
//! let q = enc.encode(&["who wrote the origin of species"], TextKind::Query)?;
//! assert_eq!(q[0].len(), enc.dim());
//! # Ok::<(), research_bert::ModelError>(())
//! ```

pub mod config;
pub mod encoder;
pub mod model;
pub mod pooling;
pub mod tokenizer;

pub use config::BertConfig;
pub use encoder::{Encoder, EncoderFamily, EncoderOptions, TextKind, BGE_QUERY_INSTRUCTION};
pub use model::{padding_bias, BertModel, PaddedBatch};
pub use pooling::{l2_normalize, Pooling};
pub use research_model_io::{Checkpoint, FloatType, ModelError, Result};
pub use tokenizer::BertTokenizer;
