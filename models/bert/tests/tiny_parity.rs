//! Parity with transformers on a tiny random `BertModel` (always on; the fixture is in the repo).
//!
//! `tests/fixtures/bert/tiny/` was written by `tests/fixtures/gen_bert_fixtures.py` (transformers
//! 5.17, torch 2.11, CPU, f32, eager attention): a 2-layer, 32-wide BERT with a 121-token WordPiece
//! vocabulary, weights spread wider than BERT's init so masking and layout errors show. Checked
//! here within 1e-4: last hidden states of a right-padded batch of three texts, mean and [CLS]
//! pooled L2-normalised embeddings, and the whole `Encoder` per family (prefixes, truncation,
//! pooling); plus loading a `bert.`-prefixed copy and errors naming the tensor.

mod common;

use burn::backend::NdArray;
use burn::tensor::Tensor;
use common::{fixture, floats, ids, json, max_abs_diff};
use research_bert::{
    BertConfig, BertModel, BertTokenizer, Checkpoint, Encoder, EncoderFamily, EncoderOptions, FloatType, PaddedBatch,
    Pooling, TextKind,
};

type B = NdArray<f32>;

const TOL: f32 = 1e-4;

fn load() -> (BertConfig, BertModel<B>) {
    let dir = fixture("tiny");
    let config = BertConfig::from_file(dir.join("config.json")).unwrap();
    let ckpt = Checkpoint::open(&dir).unwrap();
    let model = BertModel::load(&config, &ckpt, FloatType::F32, &Default::default()).unwrap();
    (config, model)
}

fn rows_of(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let [_, h] = t.dims();
    let v: Vec<f32> = t.into_data().to_vec().unwrap();
    v.chunks(h).map(<[f32]>::to_vec).collect()
}

#[test]
fn hidden_states_and_pooled_embeddings_match_transformers() {
    let r = json(&fixture("tiny/reference.json"));
    let (config, model) = load();
    assert_eq!(
        (config.hidden_size, config.num_hidden_layers, config.vocab_size),
        (32, 2, 121)
    );
    let rows: Vec<Vec<u32>> = r["ids"].as_array().unwrap().iter().map(ids).collect();
    let batch = PaddedBatch::new(&rows, 0).unwrap();
    // Our padding equals the tokenizer's `padding=True` batch.
    let flat = |k: &str| -> Vec<u32> { r["batch"][k].as_array().unwrap().iter().flat_map(ids).collect() };
    assert_eq!(batch.input_ids, flat("input_ids"));
    assert_eq!(batch.attention_mask, flat("attention_mask"));

    let hidden = model.forward_batch(&batch, &Default::default()).unwrap();
    let [b, s, h] = hidden.dims();
    assert_eq!((b, s, h), (3, 29, 32));
    let values: Vec<f32> = hidden.clone().into_data().to_vec().unwrap();
    let mut worst = 0.0f32;
    for (i, row) in r["last_hidden_state"].as_array().unwrap().iter().enumerate() {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), batch.len_of(i));
        for (t, want) in row.iter().enumerate() {
            let got = &values[(i * s + t) * h..(i * s + t + 1) * h];
            worst = worst.max(max_abs_diff(got, &floats(want)));
        }
    }
    println!("tiny BERT: max |hidden - transformers| = {worst:.3e}");
    assert!(worst < TOL, "hidden states differ by {worst}");

    for (pooling, key) in [(Pooling::Mean, "mean_normalized"), (Pooling::Cls, "cls_normalized")] {
        let got = rows_of(research_bert::l2_normalize(
            pooling.pool(hidden.clone(), &batch.attention_mask),
        ));
        let mut worst = 0.0f32;
        for (g, w) in got.iter().zip(r[key].as_array().unwrap()) {
            worst = worst.max(max_abs_diff(g, &floats(w)));
        }
        println!("tiny BERT: max |{key} - transformers| = {worst:.3e}");
        assert!(worst < TOL, "{key} differs by {worst}");
    }
}

#[test]
fn encoder_matches_transformers_for_every_family() {
    let r = json(&fixture("tiny/reference.json"));
    let dir = fixture("tiny");
    let mut worst = 0.0f32;
    for case in r["families"].as_array().unwrap() {
        let family = EncoderFamily::parse(case["family"].as_str().unwrap()).unwrap();
        let kind = match case["kind"].as_str().unwrap() {
            "query" => TextKind::Query,
            _ => TextKind::Passage,
        };
        let mut options = EncoderOptions::for_family(family);
        // The fixture used small max lengths so that some rows are cut.
        options.query_max_len = 12;
        options.passage_max_len = 16;
        assert_eq!(options.prefix(kind), case["prefix"].as_str().unwrap(), "{case}");
        assert_eq!(options.max_len(kind) as u64, case["max_length"].as_u64().unwrap());
        let want_pooling = if case["pooling"] == "cls" {
            Pooling::Cls
        } else {
            Pooling::Mean
        };
        assert_eq!(options.pooling, want_pooling);
        let mut enc = Encoder::<B>::load(&dir, options.clone(), FloatType::F32, &Default::default()).unwrap();
        let texts: Vec<&str> = case["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let want_ids: Vec<Vec<u32>> = case["ids"].as_array().unwrap().iter().map(ids).collect();
        assert_eq!(enc.tokenize(&texts, kind).unwrap(), want_ids, "{case}");
        for batch_size in [1, 32] {
            enc.set_options(EncoderOptions {
                batch_size,
                ..options.clone()
            })
            .unwrap();
            let got = enc.encode(&texts, kind).unwrap();
            assert_eq!(got.len(), texts.len());
            for (g, w) in got.iter().zip(case["embeddings"].as_array().unwrap()) {
                assert_eq!(g.len(), 32);
                worst = worst.max(max_abs_diff(g, &floats(w)));
            }
        }
    }
    println!("tiny BERT: max |Encoder::encode - transformers| over families = {worst:.3e}");
    assert!(worst < TOL, "embeddings differ by {worst}");
}

/// A copy of the tiny checkpoint with every tensor renamed `bert.<name>` (as `BertForMaskedLM`
/// saves them) gives the same embeddings.
#[test]
fn bert_prefixed_checkpoint_loads() {
    use safetensors::SafeTensors;
    let src = fixture("tiny");
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let renamed: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (format!("bert.{name}"), view))
        .collect();
    safetensors::serialize_to_file(renamed, None, &dir.path().join("model.safetensors")).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let options = EncoderOptions {
        query_max_len: 64,
        passage_max_len: 64,
        ..EncoderOptions::for_family(EncoderFamily::SentenceTransformers)
    };
    let dev = Default::default();
    let plain = Encoder::<B>::load(&src, options.clone(), FloatType::F32, &dev).unwrap();
    let prefixed = Encoder::<B>::load(dir.path(), options, FloatType::F32, &dev).unwrap();
    let texts = ["who wrote on the origin of species?", "darwin"];
    let a = plain.encode(&texts, TextKind::Passage).unwrap();
    let b = prefixed.encode(&texts, TextKind::Passage).unwrap();
    assert_eq!(a, b);
    // And the reference agrees (no truncation at these lengths).
    let r = json(&fixture("tiny/reference.json"));
    let case = r["families"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["family"] == "minilm" && c["kind"] == "query")
        .unwrap();
    let got = prefixed.encode(&[texts[0]], TextKind::Query).unwrap();
    assert!(max_abs_diff(&got[0], &floats(&case["embeddings"][0])) < TOL);
}

#[test]
fn bad_checkpoints_and_inputs_are_errors_naming_the_culprit() {
    let dir = fixture("tiny");
    let ckpt = Checkpoint::open(&dir).unwrap();
    let dev = Default::default();
    // A config that disagrees with the weights: the error names the tensor and both shapes.
    let mut config = BertConfig::from_file(dir.join("config.json")).unwrap();
    config.intermediate_size = 64;
    let e = BertModel::<B>::load(&config, &ckpt, FloatType::F32, &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("encoder.layer.0.intermediate.dense.weight") && e.contains("[48, 32]") && e.contains("[64, 32]"),
        "{e}"
    );
    // More layers than the checkpoint has: the missing tensor is named.
    let mut config = BertConfig::from_file(dir.join("config.json")).unwrap();
    config.num_hidden_layers = 3;
    let e = BertModel::<B>::load(&config, &ckpt, FloatType::F32, &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`encoder.layer.2.attention.self.query.weight`"), "{e}");

    let (_, model) = load();
    let long = PaddedBatch::new(&[vec![2; 65]], 0).unwrap();
    let e = model.forward_batch(&long, &dev).unwrap_err().to_string();
    assert!(e.contains("65") && e.contains("max_position_embeddings = 64"), "{e}");
    let oov = PaddedBatch::new(&[vec![2, 121, 3]], 0).unwrap();
    let e = model.forward_batch(&oov, &dev).unwrap_err().to_string();
    assert!(e.contains("121"), "{e}");
    assert!(PaddedBatch::new(&[vec![2], vec![]], 0).is_err());

    let tok = BertTokenizer::from_path(&dir).unwrap();
    let mut options = EncoderOptions::for_family(EncoderFamily::E5);
    options.query_max_len = 12;
    options.passage_max_len = 65;
    let e = Encoder::new(model, tok, options, &dev).err().unwrap().to_string();
    assert!(e.contains("passage_max_len = 65"), "{e}");
    let enc = Encoder::<B>::load(
        &dir,
        EncoderOptions::for_family(EncoderFamily::E5),
        FloatType::F32,
        &dev,
    );
    let e = enc.err().unwrap().to_string();
    assert!(e.contains("query_max_len = 128"), "{e}");
}
