//! The rollout loop with a scripted model: a tiny random Qwen2 with the real Qwen2.5 vocabulary and
//! tokenizer whose outputs are forced to given text (forced decoding), and a scripted retriever.
//! Expected ids, masks and texts are built by hand from the script, not by the loop.

use std::sync::{Arc, Mutex};

use research_agent::*;
use research_engine::backend::CpuBackend as B;
use research_engine::{Engine, SamplingParams};
use research_qwen2::{FloatType, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer};

const IM_END_ID: u32 = 151645;
const EOT_ID: u32 = 151643;

fn tokenizer() -> Qwen2Tokenizer {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/qwen2.5_tokenizer");
    Qwen2Tokenizer::from_path(dir).expect("shipped tokenizer")
}

fn engine() -> Engine<B> {
    let config = Qwen2Config {
        vocab_size: 151936,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 8,
        max_position_embeddings: 4096,
        rms_norm_eps: 1e-6,
        rope_theta: 1e6,
        tie_word_embeddings: true,
        torch_dtype: None,
        bos_token_id: None,
        eos_token_ids: vec![IM_END_ID, EOT_ID],
    };
    let device = Default::default();
    let model = Qwen2ForCausalLM::random(&config, FloatType::F32, 1, &device);
    Engine::new(config, model, Some(Arc::new(tokenizer())), FloatType::F32, device)
}

/// Answers each query with two passages naming it, and records the calls.
#[derive(Default)]
struct Scripted {
    calls: Mutex<Vec<Vec<String>>>,
    fail_first: Mutex<usize>,
}

impl Retriever for Scripted {
    fn search(&self, queries: &[String], k: usize) -> Result<Vec<Vec<Passage>>, String> {
        let mut fails = self.fail_first.lock().unwrap();
        if *fails > 0 {
            *fails -= 1;
            return Err("connection refused".into());
        }
        assert_eq!(k, 5);
        self.calls.lock().unwrap().push(queries.to_vec());
        Ok(queries
            .iter()
            .map(|q| {
                vec![
                    Passage {
                        id: "1".into(),
                        contents: format!("\"Doc A\"\nabout {q}"),
                    },
                    Passage {
                        id: "2".into(),
                        contents: format!("\"Doc B\"\nmore on {q}"),
                    },
                ]
            })
            .collect())
    }
}

fn result_text(q: &str) -> String {
    format!(" <result>\n\"Doc A\"\nabout {q}\n\n\"Doc B\"\nmore on {q}\n</result>")
}

fn greedy(budget: usize) -> RolloutConfig {
    RolloutConfig {
        response_budget: budget,
        sampling: SamplingParams::greedy(),
        backoff: std::time::Duration::from_millis(1),
        ..Default::default()
    }
}

fn prompt(tok: &Qwen2Tokenizer) -> Vec<u32> {
    tok.encode(&research_agent::re_search_instruct_prompt(
        "What is the capital of France?",
    ))
    .unwrap()
}

#[test]
fn one_search_then_answer_gives_exact_ids_mask_text_and_reward() {
    let engine = engine();
    let tok = tokenizer();
    let turn1 = "<think> I should look it up. </think> <search> capital of France </search>";
    let turn2 =
        " <think> It is Paris. </think> <answer> The final answer is \\[ \\boxed{Paris} \\] </answer><|im_end|>";
    let (ids1, ids2) = (tok.encode(turn1).unwrap(), tok.encode(turn2).unwrap());
    let mut rb = RolloutBatch::new(&engine, vec![prompt(&tok)], greedy(1024)).unwrap();
    rb.force(0, &ids1).unwrap();
    rb.force(0, &ids2).unwrap();
    let retriever = Scripted::default();
    let out = rb.run(&retriever).unwrap().remove(0);

    assert_eq!(
        *retriever.calls.lock().unwrap(),
        vec![vec!["capital of France".to_string()]]
    );
    let inserted = tok.encode(&result_text("capital of France")).unwrap();
    let mut want = ids1.clone();
    want.extend(&inserted);
    want.extend(&ids2);
    assert_eq!(out.response_ids, want);
    let mut mask = vec![1u8; ids1.len()];
    mask.extend(vec![0u8; inserted.len()]);
    mask.extend(vec![1u8; ids2.len()]);
    assert_eq!(out.loss_mask, mask);
    assert_eq!(out.text, format!("{turn1}{}{turn2}", result_text("capital of France")));
    assert_eq!(out.finish, RolloutFinish::Eos);
    assert_eq!(*out.response_ids.last().unwrap(), IM_END_ID);
    assert_eq!(out.searches.len(), 1);
    assert!(out
        .logprobs
        .iter()
        .zip(&out.loss_mask)
        .all(|(lp, m)| if *m == 0 { *lp == 0.0 } else { *lp < 0.0 }));
    let r = re_search_reward(&out.text, &["Paris"], INSTRUCT_EOS);
    assert_eq!(r.score, 1.0, "{}", r.reason);
}

#[test]
fn queries_of_a_turn_go_in_one_batched_call_and_rows_search_different_times() {
    let engine = engine();
    let tok = tokenizer();
    let p = prompt(&tok);
    let scripts = [
        vec![
            "<search> a </search>",
            " <search>b</search>",
            " <answer>\\boxed{x}</answer><|im_end|>",
        ],
        vec!["<search>   c\n</search>", " <answer>\\boxed{y}</answer><|im_end|>"],
        vec!["<answer>\\boxed{z}</answer><|endoftext|>"],
    ];
    let mut rb = RolloutBatch::new(&engine, vec![p.clone(), p.clone(), p], greedy(1024)).unwrap();
    for (row, parts) in scripts.iter().enumerate() {
        for part in parts {
            rb.force(row, &tok.encode(part).unwrap()).unwrap();
        }
    }
    let retriever = Scripted::default();
    let out = rb.run(&retriever).unwrap();
    assert_eq!(
        *retriever.calls.lock().unwrap(),
        vec![vec!["a".to_string(), "c".to_string()], vec!["b".to_string()]]
    );
    assert_eq!(
        out[0].searches.iter().map(|s| s.query.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(out[1].searches.len(), 1);
    assert!(out[2].searches.is_empty());
    assert!(out.iter().all(|o| o.finish == RolloutFinish::Eos));
    assert_eq!(
        *out[2].response_ids.last().unwrap(),
        EOT_ID,
        "<|endoftext|> also ends instruct rollouts"
    );
}

#[test]
fn empty_query_is_still_searched() {
    let engine = engine();
    let tok = tokenizer();
    let mut rb = RolloutBatch::new(&engine, vec![prompt(&tok)], greedy(1024)).unwrap();
    rb.force(
        0,
        &tok.encode("<search></search> <answer>\\boxed{x}</answer><|im_end|>")
            .unwrap(),
    )
    .unwrap();
    let retriever = Scripted::default();
    let out = rb.run(&retriever).unwrap();
    assert_eq!(*retriever.calls.lock().unwrap(), vec![vec![String::new()]]);
    assert_eq!(out[0].searches[0].query, "");
}

#[test]
fn search_end_split_across_tokens_still_stops() {
    let engine = engine();
    let tok = tokenizer();
    let mut ids = tok.encode("<search> split query </").unwrap();
    let tail = [tok.encode("search").unwrap(), tok.encode(">").unwrap()].concat();
    ids.extend(&tail);
    assert!(tail.len() >= 2);
    let mut rb = RolloutBatch::new(&engine, vec![prompt(&tok)], greedy(1024)).unwrap();
    rb.force(0, &ids).unwrap();
    rb.force(0, &tok.encode(" <answer>\\boxed{q}</answer><|im_end|>").unwrap())
        .unwrap();
    let retriever = Scripted::default();
    let out = rb.run(&retriever).unwrap().remove(0);
    assert_eq!(out.searches[0].query, "split query");
    // The result follows the split stop string directly.
    let inserted = tok.encode(&result_text("split query")).unwrap();
    assert_eq!(
        &out.response_ids[ids.len()..ids.len() + inserted.len()],
        inserted.as_slice()
    );
}

#[test]
fn budget_ends_inside_an_inserted_result() {
    let engine = engine();
    let tok = tokenizer();
    let turn1 = tok.encode("<search> long </search>").unwrap();
    let budget = turn1.len() + 5;
    let mut rb = RolloutBatch::new(&engine, vec![prompt(&tok)], greedy(budget)).unwrap();
    rb.force(0, &turn1).unwrap();
    let out = rb.run(&Scripted::default()).unwrap().remove(0);
    assert_eq!(out.finish, RolloutFinish::Length);
    assert_eq!(out.response_ids.len(), budget);
    let inserted = tok.encode(&result_text("long")).unwrap();
    assert_eq!(&out.response_ids[turn1.len()..], &inserted[..5]);
    assert_eq!(&out.loss_mask[turn1.len()..], &[0u8; 5]);
}

#[test]
fn base_models_stop_only_on_endoftext() {
    let engine = engine();
    let tok = tokenizer();
    let p = tok.encode(&research_agent::re_search_template("Who?")).unwrap();
    let config = RolloutConfig {
        eos_ids: vec![EOT_ID],
        ..greedy(1024)
    };
    let mut rb = RolloutBatch::new(&engine, vec![p], config).unwrap();
    let script = tok
        .encode("<answer>\\boxed{x}</answer><|im_end|> more<|endoftext|>")
        .unwrap();
    rb.force(0, &script).unwrap();
    let out = rb.run(&Scripted::default()).unwrap().remove(0);
    assert_eq!(out.response_ids, script, "<|im_end|> must not end a base rollout");
    assert_eq!(out.finish, RolloutFinish::Eos);
}

#[test]
fn max_turns_caps_searches() {
    let engine = engine();
    let tok = tokenizer();
    let config = RolloutConfig {
        max_turns: Some(1),
        ..greedy(1024)
    };
    let mut rb = RolloutBatch::new(&engine, vec![prompt(&tok)], config).unwrap();
    rb.force(0, &tok.encode("<search> a </search>").unwrap()).unwrap();
    rb.force(0, &tok.encode(" <search> b </search>").unwrap()).unwrap();
    let retriever = Scripted::default();
    let out = rb.run(&retriever).unwrap().remove(0);
    assert_eq!(out.finish, RolloutFinish::MaxTurns);
    assert_eq!(out.searches.len(), 1);
    assert_eq!(retriever.calls.lock().unwrap().len(), 1);
}

#[test]
fn flaky_retriever_is_retried_and_a_dead_one_is_an_error() {
    let engine = engine();
    let tok = tokenizer();
    let script = tok
        .encode("<search> q </search> <answer>\\boxed{x}</answer><|im_end|>")
        .unwrap();

    let flaky = Scripted {
        fail_first: Mutex::new(2),
        ..Default::default()
    };
    let mut rb = RolloutBatch::new(&engine, vec![prompt(&tok)], greedy(1024)).unwrap();
    rb.force(0, &script).unwrap();
    let out = rb.run(&flaky).unwrap().remove(0);
    assert_eq!(out.searches.len(), 1);

    let dead = Scripted {
        fail_first: Mutex::new(usize::MAX),
        ..Default::default()
    };
    let mut rb = RolloutBatch::new(
        &engine,
        vec![prompt(&tok)],
        RolloutConfig {
            retries: 2,
            ..greedy(1024)
        },
    )
    .unwrap();
    rb.force(0, &script).unwrap();
    let err = rb.run(&dead).unwrap_err().to_string();
    assert!(
        err.contains("retriever failed 3 times") && err.contains("connection refused"),
        "{err}"
    );
}
