//! `BertModel::random`: the shapes of a named configuration and transformers' initialisation.

use burn::backend::NdArray;
use burn::module::Module;
use research_bert::{l2_normalize, BertConfig, BertModel, FloatType, PaddedBatch, Pooling};

type B = NdArray<f32>;

#[test]
fn bert_base_has_the_published_parameter_count() {
    // bert-base-uncased has 109,482,240 parameters with its pooler (768 × 768 + 768 = 590,592),
    // so 108,891,648 without it, which is what BertModel holds.
    let model = BertModel::<B>::random(&BertConfig::bert_base(), FloatType::F32, 0, &Default::default());
    assert_eq!(model.num_params(), 109_482_240 - 590_592);
    assert_eq!(model.layers.len(), 12);
    let w = model.layers[3].intermediate.weight.val();
    assert_eq!(w.dims(), [768, 3072]);
    // N(0, 0.02²): over 2.4M draws the sample mean and std are within a few 1e-5 of the law's.
    let v: Vec<f32> = w.into_data().to_vec().unwrap();
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let std = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    assert!(mean.abs() < 1e-4 && (std - 0.02).abs() < 1e-4, "mean {mean} std {std}");
    let ln: Vec<f32> = model.layers[0]
        .output
        .layer_norm
        .weight
        .val()
        .into_data()
        .to_vec()
        .unwrap();
    assert!(ln.iter().all(|&x| x == 1.0));
}

#[test]
fn a_random_minilm_encodes_unit_vectors_of_its_width() {
    let dev = Default::default();
    let config = BertConfig {
        num_hidden_layers: 1,
        ..BertConfig::minilm_l6()
    };
    let model = BertModel::<B>::random(&config, FloatType::F32, 1, &dev);
    let batch = PaddedBatch::new(&[vec![101, 2000, 2001, 102], vec![101, 3000, 102]], 0).unwrap();
    let hidden = model.forward_batch(&batch, &dev).unwrap();
    assert_eq!(hidden.dims(), [2, 4, 384]);
    let v: Vec<f32> = l2_normalize(Pooling::Mean.pool(hidden, &batch.attention_mask))
        .into_data()
        .to_vec()
        .unwrap();
    assert_eq!(v.len(), 2 * 384);
    for row in v.chunks(384) {
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    // Different seeds, different weights.
    let other = BertModel::<B>::random(&config, FloatType::F32, 2, &dev);
    let a: Vec<f32> = model.embeddings.word_embeddings.val().into_data().to_vec().unwrap();
    let b: Vec<f32> = other.embeddings.word_embeddings.val().into_data().to_vec().unwrap();
    assert_ne!(a[..16], b[..16]);
}
