//! The retrieval encoder: texts in, unit vectors out, the way each model family was trained.
//!
//! | family | query text | passage text | pooling |
//! |---|---|---|---|
//! | [`EncoderFamily::E5`] | `"query: " + q` | `"passage: " + p` | mean |
//! | [`EncoderFamily::Bge`] | `"Represent this sentence for searching relevant passages: " + q` | `p` | `[CLS]` |
//! | [`EncoderFamily::SentenceTransformers`] (MiniLM) | `q` | `p` | mean |
//!
//! Then: truncation to the kind's max length (queries 128, passages 180 by default, as ReSearch),
//! padding to the longest text of each batch, the encoder, pooling over the attention mask, and L2
//! normalisation (so the inner product is the cosine). Every part is overridable through
//! [`EncoderOptions`].

use std::path::Path;

use burn::tensor::backend::Backend;

use research_model_io::{Checkpoint, FloatType, ModelError, Result};

use crate::config::BertConfig;
use crate::model::{BertModel, PaddedBatch};
use crate::pooling::{l2_normalize, Pooling};
use crate::tokenizer::BertTokenizer;

/// BGE's query instruction (English BGE v1.5 models), prepended to queries only.
pub const BGE_QUERY_INSTRUCTION: &str = "Represent this sentence for searching relevant passages: ";

/// Whether a text is a search query or a passage of the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextKind {
    /// A search query.
    Query,
    /// A corpus passage.
    Passage,
}

/// A family of retrieval encoders sharing prefixes and pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncoderFamily {
    /// intfloat/e5-*: `query: ` / `passage: `, mean pooling.
    E5,
    /// BAAI/bge-*-en(-v1.5): the query instruction on queries only, `[CLS]` pooling.
    Bge,
    /// sentence-transformers models such as all-MiniLM-L6-v2: no prefix, mean pooling.
    SentenceTransformers,
}

impl EncoderFamily {
    /// Parses `e5`, `bge`, or `minilm` / `sentence-transformers` / `st`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "e5" => Ok(Self::E5),
            "bge" => Ok(Self::Bge),
            "minilm" | "sentence-transformers" | "sentence_transformers" | "st" => Ok(Self::SentenceTransformers),
            other => Err(ModelError::Input(format!(
                "unknown encoder family `{other}` (expected e5, bge or minilm)"
            ))),
        }
    }

    /// Guesses the family from a checkpoint path (`…/e5-base-v2`, `models--BAAI--bge-base-en-v1.5/…`):
    /// a path component naming `e5` or `bge`; anything else is taken for a sentence-transformers
    /// model. Hub snapshot hashes are skipped.
    pub fn guess(dir: &Path) -> Self {
        for comp in dir.components().rev() {
            let name = comp.as_os_str().to_string_lossy().to_ascii_lowercase();
            if name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let words: Vec<&str> = name.split(['-', '_', '.', '/']).collect();
            if words.contains(&"e5") {
                return Self::E5;
            }
            if words.contains(&"bge") {
                return Self::Bge;
            }
        }
        Self::SentenceTransformers
    }
}

/// How texts are turned into embeddings. [`EncoderOptions::for_family`] gives each family's
/// defaults; every field may be changed.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderOptions {
    /// Prepended to queries.
    pub query_prefix: String,
    /// Prepended to passages.
    pub passage_prefix: String,
    /// Pooling of the last hidden states.
    pub pooling: Pooling,
    /// L2-normalise the pooled vectors.
    pub normalize: bool,
    /// Max tokens of a query, special tokens included (ReSearch: 128; Search-R1: 256).
    pub query_max_len: usize,
    /// Max tokens of a passage, special tokens included (ReSearch indexing: 180).
    pub passage_max_len: usize,
    /// Texts per forward pass.
    pub batch_size: usize,
}

impl EncoderOptions {
    /// The family's prefixes and pooling, normalisation on, max lengths 128 / 180, batches of 32.
    pub fn for_family(family: EncoderFamily) -> Self {
        let (query_prefix, passage_prefix, pooling) = match family {
            EncoderFamily::E5 => ("query: ", "passage: ", Pooling::Mean),
            EncoderFamily::Bge => (BGE_QUERY_INSTRUCTION, "", Pooling::Cls),
            EncoderFamily::SentenceTransformers => ("", "", Pooling::Mean),
        };
        Self {
            query_prefix: query_prefix.into(),
            passage_prefix: passage_prefix.into(),
            pooling,
            normalize: true,
            query_max_len: 128,
            passage_max_len: 180,
            batch_size: 32,
        }
    }

    /// The prefix of a kind of text.
    pub fn prefix(&self, kind: TextKind) -> &str {
        match kind {
            TextKind::Query => &self.query_prefix,
            TextKind::Passage => &self.passage_prefix,
        }
    }

    /// The max length of a kind of text.
    pub fn max_len(&self, kind: TextKind) -> usize {
        match kind {
            TextKind::Query => self.query_max_len,
            TextKind::Passage => self.passage_max_len,
        }
    }
}

/// A BERT encoder with its tokenizer and options, on one device.
pub struct Encoder<B: Backend> {
    model: BertModel<B>,
    tokenizer: BertTokenizer,
    options: EncoderOptions,
    device: B::Device,
}

impl<B: Backend> Encoder<B> {
    /// Loads `config.json`, the safetensors weights and `tokenizer.json` of a checkpoint directory.
    pub fn load(dir: impl AsRef<Path>, options: EncoderOptions, dtype: FloatType, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = BertConfig::from_file(dir.join("config.json"))?;
        let ckpt = Checkpoint::open(dir)?;
        let model = BertModel::load(&config, &ckpt, dtype, device)?;
        let tokenizer = BertTokenizer::from_path(dir)?;
        Self::new(model, tokenizer, options, device)
    }

    /// Puts the parts together, checking the options against the model.
    pub fn new(
        model: BertModel<B>,
        tokenizer: BertTokenizer,
        options: EncoderOptions,
        device: &B::Device,
    ) -> Result<Self> {
        let mut enc = Self {
            model,
            tokenizer,
            options: EncoderOptions::for_family(EncoderFamily::SentenceTransformers),
            device: device.clone(),
        };
        enc.set_options(options)?;
        Ok(enc)
    }

    /// The options in use.
    pub fn options(&self) -> &EncoderOptions {
        &self.options
    }

    /// Replaces the options: max lengths must leave room for text and fit the position table.
    pub fn set_options(&mut self, options: EncoderOptions) -> Result<()> {
        let special = self.tokenizer.num_special_tokens();
        let positions = self.model.max_position_embeddings;
        for (name, n) in [
            ("query_max_len", options.query_max_len),
            ("passage_max_len", options.passage_max_len),
        ] {
            if n <= special || n > positions {
                return Err(ModelError::Input(format!(
                    "{name} = {n}: expected more than the {special} special tokens and at most max_position_embeddings = {positions}"
                )));
            }
        }
        if options.batch_size == 0 {
            return Err(ModelError::Input("batch_size = 0: expected at least 1".into()));
        }
        self.options = options;
        Ok(())
    }

    /// The model.
    pub fn model(&self) -> &BertModel<B> {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    /// The device the model lives on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.model.hidden_size
    }

    /// Token ids of each text: prefix, tokenize, truncate to the kind's max length.
    pub fn tokenize(&self, texts: &[&str], kind: TextKind) -> Result<Vec<Vec<u32>>> {
        let prefix = self.options.prefix(kind);
        let max_len = self.options.max_len(kind);
        texts
            .iter()
            .map(|t| self.tokenizer.encode(&format!("{prefix}{t}"), Some(max_len)))
            .collect()
    }

    /// One embedding per text, in order, computed in batches of `batch_size`.
    pub fn encode(&self, texts: &[&str], kind: TextKind) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.options.batch_size) {
            let ids = self.tokenize(chunk, kind)?;
            out.extend(self.embed_ids(&ids)?);
        }
        Ok(out)
    }

    /// Embeddings of already tokenized rows, in one forward pass (padded to the longest row).
    pub fn embed_ids(&self, rows: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let batch = PaddedBatch::new(rows, self.tokenizer.pad_id())?;
        let hidden = self.model.forward_batch(&batch, &self.device)?;
        let mut pooled = self.options.pooling.pool(hidden, &batch.attention_mask);
        if self.options.normalize {
            pooled = l2_normalize(pooled);
        }
        let values: Vec<f32> = pooled
            .into_data()
            .to_vec()
            .map_err(|e| ModelError::Input(format!("reading embeddings back: {e:?}")))?;
        Ok(values.chunks(self.dim()).map(<[f32]>::to_vec).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_the_reference_prefixes_and_pooling() {
        let e5 = EncoderOptions::for_family(EncoderFamily::E5);
        assert_eq!(
            (e5.prefix(TextKind::Query), e5.prefix(TextKind::Passage)),
            ("query: ", "passage: ")
        );
        assert_eq!(e5.pooling, Pooling::Mean);
        let bge = EncoderOptions::for_family(EncoderFamily::Bge);
        assert_eq!(
            bge.prefix(TextKind::Query),
            "Represent this sentence for searching relevant passages: "
        );
        assert_eq!((bge.prefix(TextKind::Passage), bge.pooling), ("", Pooling::Cls));
        let st = EncoderOptions::for_family(EncoderFamily::SentenceTransformers);
        assert_eq!((st.prefix(TextKind::Query), st.prefix(TextKind::Passage)), ("", ""));
        assert_eq!((st.max_len(TextKind::Query), st.max_len(TextKind::Passage)), (128, 180));
    }

    #[test]
    fn family_guess_and_parse() {
        let g = |p: &str| EncoderFamily::guess(Path::new(p));
        assert_eq!(g("/data/e5-base-v2"), EncoderFamily::E5);
        assert_eq!(
            g("/hub/models--intfloat--e5-base-v2/snapshots/1c644c92ad3ba1efdad3f1451a637716616a20e8"),
            EncoderFamily::E5
        );
        assert_eq!(g("/hub/models--BAAI--bge-base-en-v1.5"), EncoderFamily::Bge);
        assert_eq!(g("/work/shared/data/minilm"), EncoderFamily::SentenceTransformers);
        assert_eq!(g("/tmp/ae5f"), EncoderFamily::SentenceTransformers);
        assert_eq!(EncoderFamily::parse("BGE").unwrap(), EncoderFamily::Bge);
        assert!(EncoderFamily::parse("gte").unwrap_err().to_string().contains("gte"));
    }
}
