//! Search-R1's loop with a scripted model: a tiny random Qwen2 with the real Qwen2.5 tokenizer
//! whose turns are forced to given text, and a scripted retriever. Expected texts are written by
//! hand from Search-R1's rules (REFERENCE.md §3), and ids are the tokenizer's encoding of those
//! texts; log-probs are checked against the engine's independent teacher-forced scorer.

use std::sync::{Arc, Mutex};

use research_agent::*;
use research_engine::backend::CpuBackend as B;
use research_engine::{Engine, SamplingParams};
use research_qwen2::{render_chat, ChatMessage, FloatType, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer};

const IM_END_ID: u32 = 151645;

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
        eos_token_ids: vec![IM_END_ID, 151643],
    };
    let device = Default::default();
    let model = Qwen2ForCausalLM::random(&config, FloatType::F32, 7, &device);
    Engine::new(config, model, Some(Arc::new(tokenizer())), FloatType::F32, device)
}

/// Two passages per query (the second with trailing whitespace), and a record of the calls.
#[derive(Default)]
struct Scripted {
    calls: Mutex<Vec<(Vec<String>, usize)>>,
    dead: bool,
}

impl Retriever for Scripted {
    fn search(&self, queries: &[String], k: usize) -> Result<Vec<Vec<Passage>>, String> {
        if self.dead {
            return Err("connection refused".into());
        }
        self.calls.lock().unwrap().push((queries.to_vec(), k));
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
                        contents: format!("Doc B\nmore on {q} \n"),
                    },
                ]
            })
            .collect())
    }
}

impl Scripted {
    fn queries(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().iter().map(|(q, _)| q.clone()).collect()
    }
}

/// The observation for a query of `Scripted`, written out by hand: `Doc i(Title: t) text\n` per
/// passage, the whole stripped (the second passage's trailing " \n\n" goes), then wrapped.
fn obs(q: &str) -> String {
    format!("\n\n<information>Doc 1(Title: \"Doc A\") about {q}\nDoc 2(Title: Doc B) more on {q}</information>\n\n")
}

const INVALID: &str = "\nMy previous action is invalid. If I want to search, I should put the query between <search> and </search>. If I want to give the final answer, I should put the answer between <answer> and </answer>. Let me try again.\n";

fn config() -> SearchR1Config {
    SearchR1Config {
        max_context: 1024,
        sampling: SamplingParams::greedy(),
        backoff: std::time::Duration::from_millis(1),
        ..Default::default()
    }
}

fn enc(tok: &Qwen2Tokenizer, s: &str) -> Vec<u32> {
    tok.encode(s).unwrap()
}

fn prompt(tok: &Qwen2Tokenizer) -> Vec<u32> {
    enc(tok, &search_r1_chat_prompt("What is the capital of France"))
}

#[test]
fn chat_prompt_is_the_rendered_chat_template() {
    let q = "What is the capital of France";
    let user = search_r1_prompt(q);
    assert!(user.ends_with("Question: What is the capital of France?\n"));
    assert_eq!(
        search_r1_chat_prompt(q),
        render_chat(&[ChatMessage::new("user", &user)], true)
    );
}

#[test]
fn search_then_answer_cuts_retokenizes_and_inserts_information() {
    let engine = engine();
    let tok = tokenizer();
    let t1 = "<think> I need to search. </think>\n<search> capital of France </search>";
    let t2 = "<think> Paris. </think>\n<answer> Paris </answer>";
    let mut rb = SearchR1Batch::new(&engine, vec![prompt(&tok)], config()).unwrap();
    // What follows `</search>` in a turn is never kept; after `</answer>` the turn runs on to EOS
    // and the cut drops the rest.
    rb.script_turn(0, &enc(&tok, &format!("{t1} Not kept."))).unwrap();
    rb.script_turn(0, &enc(&tok, &format!("{t2} and then more text<|im_end|>")))
        .unwrap();
    let retriever = Scripted::default();
    let out = rb.run(&retriever).unwrap().remove(0);

    assert_eq!(
        *retriever.calls.lock().unwrap(),
        vec![(vec!["capital of France".to_string()], 3)]
    );
    let o = obs("capital of France");
    assert_eq!(out.text, format!("{t1}{o}{t2}"));
    let (a, b, c) = (enc(&tok, t1), enc(&tok, &o), enc(&tok, t2));
    assert_eq!(out.response_ids, [a.clone(), b.clone(), c.clone()].concat());
    let mask = [vec![1u8; a.len()], vec![0u8; b.len()], vec![1u8; c.len()]].concat();
    assert_eq!(out.loss_mask, mask);
    assert!(out
        .logprobs
        .iter()
        .zip(&mask)
        .all(|(lp, m)| if *m == 0 { *lp == 0.0 } else { *lp < 0.0 }));
    assert_eq!(out.finish, SearchR1Finish::Answer);
    assert_eq!((out.turns, out.invalid_turns, out.searches.len()), (2, 0, 1));
    assert_eq!(search_r1_reward(&out.text, &["Paris"]).score, 1.0);
}

#[test]
fn search_after_an_answer_in_one_turn_keeps_both_and_the_answer_wins() {
    let engine = engine();
    let tok = tokenizer();
    let t = "<answer> Lyon </answer> or maybe <search> q </search>";
    let mut rb = SearchR1Batch::new(&engine, vec![prompt(&tok)], config()).unwrap();
    rb.script_turn(0, &enc(&tok, &format!("{t} tail"))).unwrap();
    let retriever = Scripted::default();
    let out = rb.run(&retriever).unwrap().remove(0);
    assert_eq!(out.text, t);
    assert_eq!(out.finish, SearchR1Finish::Answer);
    assert!(retriever.queries().is_empty());
}

#[test]
fn no_tag_gets_the_invalid_action_observation_and_eos_is_dropped() {
    let engine = engine();
    let tok = tokenizer();
    let mut rb = SearchR1Batch::new(&engine, vec![prompt(&tok)], config()).unwrap();
    rb.script_turn(0, &enc(&tok, "I am not sure.<|im_end|>")).unwrap();
    rb.script_turn(0, &enc(&tok, "<answer> x </answer><|im_end|>")).unwrap();
    let out = rb.run(&Scripted::default()).unwrap().remove(0);
    assert_eq!(out.text, format!("I am not sure.{INVALID}<answer> x </answer>"));
    assert!(!out.response_ids.contains(&IM_END_ID));
    let (a, b) = (enc(&tok, "I am not sure."), enc(&tok, INVALID));
    assert_eq!(
        &out.loss_mask[..a.len() + b.len()],
        [vec![1u8; a.len()], vec![0u8; b.len()]].concat()
    );
    assert_eq!((out.turns, out.invalid_turns), (2, 1));
}

#[test]
fn after_max_turns_one_final_turn_runs_without_search() {
    let engine = engine();
    let tok = tokenizer();
    let cfg = SearchR1Config {
        max_turns: 1,
        ..config()
    };
    let mut rb = SearchR1Batch::new(&engine, vec![prompt(&tok)], cfg).unwrap();
    rb.script_turn(0, &enc(&tok, "<search> a </search>")).unwrap();
    rb.script_turn(0, &enc(&tok, "<search> b </search>")).unwrap();
    let retriever = Scripted::default();
    let out = rb.run(&retriever).unwrap().remove(0);
    assert_eq!(retriever.queries(), vec![vec!["a".to_string()]]);
    assert_eq!(
        out.text,
        format!("<search> a </search>{}<search> b </search>", obs("a"))
    );
    assert_eq!(out.finish, SearchR1Finish::MaxTurns);
    assert_eq!((out.turns, out.searches.len()), (2, 1));
}

#[test]
fn rows_search_in_one_batched_call_per_turn() {
    let engine = engine();
    let tok = tokenizer();
    let p = prompt(&tok);
    let mut rb = SearchR1Batch::new(&engine, vec![p.clone(), p.clone(), p], config()).unwrap();
    let scripts: [&[&str]; 3] = [
        &["<search> a </search>", "<answer> 1 </answer>"],
        &["<answer> 2 </answer>"],
        &["<search>c</search>", "<search> d </search>", "<answer> 3 </answer>"],
    ];
    for (row, turns) in scripts.iter().enumerate() {
        for t in *turns {
            rb.script_turn(row, &enc(&tok, t)).unwrap();
        }
    }
    let retriever = Scripted::default();
    let out = rb.run(&retriever).unwrap();
    assert_eq!(
        retriever.queries(),
        vec![vec!["a".to_string(), "c".to_string()], vec!["d".to_string()]]
    );
    assert_eq!(
        out[0].text,
        format!("<search> a </search>{}<answer> 1 </answer>", obs("a"))
    );
    assert_eq!(out[1].text, "<answer> 2 </answer>");
    assert_eq!(
        out[2].text,
        format!(
            "<search>c</search>{}<search> d </search>{}<answer> 3 </answer>",
            obs("c"),
            obs("d")
        )
    );
    assert_eq!(out.iter().map(|o| o.turns).collect::<Vec<_>>(), [2, 1, 3]);
}

#[test]
fn turn_budget_observation_cap_and_response_cap() {
    let engine = engine();
    let tok = tokenizer();
    let long = enc(
        &tok,
        "<think> one two three four five six seven eight nine ten </think>",
    );
    // 7 tokens per turn: the scripted search and answer turns (7 tokens each) fit, `long` does not.
    let (search, answer) = (enc(&tok, "<search> q </search>"), enc(&tok, "<answer> z </answer>"));
    assert_eq!((search.len(), answer.len()), (7, 7));
    assert!(long.len() > 7);
    let cfg = SearchR1Config {
        turn_tokens: 7,
        max_obs_tokens: 7,
        ..config()
    };
    let mut rb = SearchR1Batch::new(&engine, vec![prompt(&tok)], cfg.clone()).unwrap();
    rb.script_turn(0, &long).unwrap();
    rb.script_turn(0, &enc(&tok, "<search> q </search>")).unwrap();
    rb.script_turn(0, &enc(&tok, "<answer> z </answer>")).unwrap();
    let out = rb.run(&Scripted::default()).unwrap().remove(0);
    let expected = [
        long[..7].to_vec(),
        enc(&tok, INVALID)[..7].to_vec(),
        enc(&tok, "<search> q </search>"),
        enc(&tok, &obs("q"))[..7].to_vec(),
        enc(&tok, "<answer> z </answer>"),
    ]
    .concat();
    assert_eq!(out.response_ids, expected);
    assert_eq!(out.finish, SearchR1Finish::Answer);

    // The response keeps only its first `max_context` tokens.
    let cap = 20;
    let cfg = SearchR1Config {
        max_context: cap,
        ..cfg
    };
    let mut rb = SearchR1Batch::new(&engine, vec![prompt(&tok)], cfg).unwrap();
    rb.script_turn(0, &long).unwrap();
    rb.script_turn(0, &enc(&tok, "<search> q </search>")).unwrap();
    rb.script_turn(0, &enc(&tok, "<answer> z </answer>")).unwrap();
    let out = rb.run(&Scripted::default()).unwrap().remove(0);
    assert!(expected.len() > cap);
    assert_eq!(out.response_ids, expected[..cap]);
    assert_eq!(out.loss_mask.len(), cap);
}

#[test]
fn sampled_ids_are_replaced_by_the_retokenized_text() {
    let engine = engine();
    let tok = tokenizer();
    let text = "<search> q </search>";
    // One token per character: the same text as ids the tokenizer would never produce.
    let chars: Vec<u32> = text.chars().flat_map(|c| enc(&tok, &c.to_string())).collect();
    let canonical = enc(&tok, text);
    assert_ne!(chars, canonical);
    let mut rb = SearchR1Batch::new(&engine, vec![prompt(&tok)], config()).unwrap();
    rb.script_turn(0, &chars).unwrap();
    rb.script_turn(0, &enc(&tok, "<answer> a </answer>")).unwrap();
    let out = rb.run(&Scripted::default()).unwrap().remove(0);
    assert_eq!(&out.response_ids[..canonical.len()], canonical.as_slice());
    let same = canonical.iter().zip(&chars).take_while(|(a, b)| a == b).count();
    assert!(out.logprobs[..same].iter().all(|lp| lp.is_finite()));
    assert!(out.logprobs[same..canonical.len()].iter().all(|lp| lp.is_nan()));
    assert_eq!(out.searches[0].query, "q");
}

#[test]
fn each_turn_sees_only_the_last_max_context_tokens() {
    let engine = engine();
    let tok = tokenizer();
    let p = prompt(&tok);
    let window = 80;
    assert!(p.len() > window);
    let cfg = SearchR1Config {
        max_context: window,
        ..config()
    };
    let (t1, t2) = (
        "<search> capital </search>",
        "<think> so </think> <answer> Paris </answer>",
    );
    let mut rb = SearchR1Batch::new(&engine, vec![p.clone()], cfg).unwrap();
    rb.script_turn(0, &enc(&tok, t1)).unwrap();
    rb.script_turn(0, &enc(&tok, t2)).unwrap();
    let out = rb.run(&Scripted::default()).unwrap().remove(0);
    let (a, o, b) = (enc(&tok, t1), enc(&tok, &obs("capital")), enc(&tok, t2));
    assert_eq!(out.response_ids, [a.clone(), o.clone(), b.clone()].concat());

    // Teacher-forced log-probs of a turn's tokens after a given context.
    let lp = |context: &[u32], turn: &[u32]| -> Vec<f32> {
        let all = [context, turn].concat();
        engine.score(&all).unwrap()[context.len() - 1..].to_vec()
    };
    let last = |ids: &[u32]| ids[ids.len() - window..].to_vec();
    let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-4);
    let got1 = &out.logprobs[..a.len()];
    let got2 = &out.logprobs[a.len() + o.len()..];
    let ctx2 = [p.clone(), a.clone(), o.clone()].concat();
    assert!(close(got1, &lp(&last(&p), &a)), "{got1:?}");
    assert!(close(got2, &lp(&last(&ctx2), &b)), "{got2:?}");
    // The full context would give other numbers, so the window is what the model saw.
    assert!(!close(got2, &lp(&ctx2, &b)));
}

#[test]
fn a_dead_retriever_is_an_error() {
    let engine = engine();
    let tok = tokenizer();
    let cfg = SearchR1Config { retries: 1, ..config() };
    let mut rb = SearchR1Batch::new(&engine, vec![prompt(&tok)], cfg).unwrap();
    rb.script_turn(0, &enc(&tok, "<search> q </search>")).unwrap();
    let dead = Scripted {
        dead: true,
        ..Default::default()
    };
    let err = rb.run(&dead).unwrap_err().to_string();
    assert!(
        err.contains("retriever failed 2 times") && err.contains("connection refused"),
        "{err}"
    );
}
