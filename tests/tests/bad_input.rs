//! Bad input gives one clear error naming the file and field or tensor; never a panic.

use std::path::Path;

use research::engine::backend::CpuBackend as B;
use research::prelude::*;
use research_tests::{copy_dir, fixture};
use safetensors::tensor::{Dtype, TensorView};

fn case() -> std::path::PathBuf {
    fixture("qwen2/untied_gqa")
}

fn load_err(dir: &Path) -> String {
    let dir = match ModelDir::resolve(dir.to_str().unwrap()) {
        Ok(d) => d,
        Err(e) => return e.to_string(),
    };
    match Engine::<B>::load(&dir, FloatType::F32, Default::default()) {
        Ok(_) => panic!("loading {} should fail", dir.path().display()),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "error should be one line: {msg}");
            msg
        }
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Rewrites model.safetensors, letting `f` replace (Some) or drop (None) each tensor.
fn rewrite_weights(dir: &Path, f: impl Fn(&str, Dtype, &[usize], &[u8]) -> Option<(Dtype, Vec<usize>, Vec<u8>)>) {
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut kept: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = vec![];
    for (name, view) in st.tensors() {
        if let Some((dt, shape, data)) = f(&name, view.dtype(), view.shape(), view.data()) {
            kept.push((name, dt, shape, data));
        }
    }
    let views: Vec<(String, TensorView<'_>)> = kept
        .iter()
        .map(|(n, dt, s, d)| (n.clone(), TensorView::new(*dt, s.clone(), d).unwrap()))
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(&p, out).unwrap();
}

#[test]
fn missing_config_field_names_file_and_field() {
    let dir = copy_dir(&case());
    edit_config(dir.path(), |m| {
        m.remove("hidden_size");
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("config.json") && e.contains("`hidden_size`") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn malformed_config_field_says_what_was_expected() {
    let dir = copy_dir(&case());
    edit_config(dir.path(), |m| {
        m.insert("num_attention_heads".into(), serde_json::json!("four"));
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("`num_attention_heads`") && e.contains("positive integer"),
        "{e}"
    );

    let dir = copy_dir(&case());
    edit_config(dir.path(), |m| {
        m.insert("num_key_value_heads".into(), serde_json::json!(3));
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("`num_key_value_heads`") && e.contains("does not divide"),
        "{e}"
    );
}

#[test]
fn config_that_is_not_json_names_line_and_column() {
    let dir = copy_dir(&case());
    std::fs::write(dir.path().join("config.json"), "{\n  \"vocab_size\": 1024,\n  oops\n}").unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("config.json") && e.contains("not valid JSON") && e.contains("line 3"),
        "{e}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_dir(&case());
    rewrite_weights(dir.path(), |n, dt, s, d| {
        (n != "model.layers.1.mlp.up_proj.weight").then(|| (dt, s.to_vec(), d.to_vec()))
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("`model.layers.1.mlp.up_proj.weight`") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn tensor_of_the_wrong_shape_is_named_with_both_shapes() {
    let dir = copy_dir(&case());
    rewrite_weights(dir.path(), |n, dt, s, d| {
        if n == "model.norm.weight" {
            Some((dt, vec![s[0] / 2], d[..d.len() / 2].to_vec()))
        } else {
            Some((dt, s.to_vec(), d.to_vec()))
        }
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("`model.norm.weight`") && e.contains("[32]") && e.contains("[64]"),
        "{e}"
    );
}

#[test]
fn truncated_safetensors_is_reported() {
    let dir = copy_dir(&case());
    let p = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("not a valid safetensors file") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn unsupported_tensor_dtype_is_reported() {
    let dir = copy_dir(&case());
    rewrite_weights(dir.path(), |n, dt, s, d| {
        if n == "model.norm.weight" {
            let f64s: Vec<u8> = d
                .chunks(4)
                .flat_map(|c| (f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).to_le_bytes())
                .collect();
            Some((Dtype::F64, s.to_vec(), f64s))
        } else {
            Some((dt, s.to_vec(), d.to_vec()))
        }
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("`model.norm.weight`") && e.contains("unsupported dtype F64"),
        "{e}"
    );
}

#[test]
fn unsupported_requested_dtype_and_backend_are_reported() {
    let e = FloatType::parse("fp8").unwrap_err().to_string();
    assert!(e.contains("fp8") && e.contains("f32, bf16, f16"), "{e}");
    let e = "rocm".parse::<BackendKind>().unwrap_err().to_string();
    assert!(e.contains("unknown backend `rocm`") && e.contains("cpu"), "{e}");
    struct Nothing;
    impl WithBackend for Nothing {
        type Output = ();
        fn run<Bk: research::burn::tensor::backend::Backend>(self, _: Bk::Device) {}
    }
    if !BackendKind::Cuda.is_compiled() {
        let e = dispatch(BackendKind::Cuda, FloatType::Bf16, Nothing)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not compiled") && e.contains("--features cuda"), "{e}");
    }
    let e = dispatch(BackendKind::Cpu, FloatType::Bf16, Nothing)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cpu") && e.contains("bf16"), "{e}");
}

#[test]
fn missing_weights_and_missing_directory_are_reported() {
    let dir = copy_dir(&case());
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("no model.safetensors"), "{e}");
    let e = load_err(Path::new("/nonexistent/model"));
    assert!(e.contains("no such directory"), "{e}");
    let e = load_err(Path::new("Qwen/Definitely-Not-Cached-0B"));
    assert!(
        e.contains("Hugging Face cache") && e.contains("does not download"),
        "{e}"
    );
}

#[test]
fn prompt_longer_than_the_context_is_rejected() {
    let dir = ModelDir::resolve(case().to_str().unwrap()).unwrap();
    let engine = Engine::<B>::load(&dir, FloatType::F32, Default::default()).unwrap();
    let ctx = engine.config.max_position_embeddings;
    let long = vec![1u32; ctx];
    let opts = GenerateOptions {
        max_new_tokens: 8,
        ..Default::default()
    };
    let e = engine.generate(vec![long.clone()], opts).unwrap_err().to_string();
    assert!(
        e.contains("exceeds the model's context") && e.contains(&ctx.to_string()),
        "{e}"
    );
    let e = engine.score(&vec![1u32; ctx + 1]).unwrap_err().to_string();
    assert!(e.contains("context"), "{e}");
    let e = engine.score(&[1, 5000]).unwrap_err().to_string();
    assert!(e.contains("5000") && e.contains("vocabulary"), "{e}");
    let e = engine
        .generate(vec![vec![]], GenerateOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty"), "{e}");
}
