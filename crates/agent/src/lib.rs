//! The ReSearch agent for research-rs (REFERENCE.md §2, §3, §4, §7).
//!
//! - [`template`]: the prompts of ReSearch (base and instruct) and Search-R1, byte for byte, and
//!   how retrieved passages are written into the context (`" <result>\n" + docs + "\n</result>"`).
//! - [`metrics`]: SQuAD answer normalisation and FlashRAG's metrics (EM, Sub-EM / acc, token F1,
//!   precision, recall), maximised over golden answers and averaged by [`Metrics`].
//! - [`reward`]: ReSearch's rule reward (format check, EOS, `\boxed{}` answer, F1, 0.1 for a
//!   well-formed wrong answer) and Search-R1's exact-match reward, each with the reason.
//! - [`rollout`]: the loop itself: generation on the engine with `</search>` stops, one batched
//!   retriever call per turn (retried with backoff, never a silent empty result), results inserted
//!   with loss mask 0, until EOS or the response budget.
//! - [`search_r1`]: Search-R1's variant of the loop (turns of at most 500 tokens cut at the first
//!   `</search>` or `</answer>` and re-tokenized, `<information>` observations, a final answer turn,
//!   a rolling 4096-token context).

pub mod metrics;
pub mod remote;
pub mod reward;
pub mod rollout;
pub mod search_r1;
pub mod template;

pub use metrics::{
    exact_match, f1_score, normalize_answer, score_item, sub_exact_match, token_scores, token_scores_single,
    ItemMetrics, Metrics, TokenScores,
};
pub use remote::ReSearchApi;
pub use reward::{
    answer_span, check_format, extract_boxed, last_answer_span, re_search_reward, search_r1_reward, BoxedError,
    FormatError, Reward, BASE_EOS, ENDOFTEXT, IM_END, INSTRUCT_EOS, WRONG_ANSWER_SCORE,
};
pub use rollout::{
    extract_query, Passage, Retriever, Rollout, RolloutBatch, RolloutConfig, RolloutError, RolloutFinish, SearchCall,
};
pub use search_r1::{
    cut_turn, parse_action, search_r1_chat_prompt, Action, SearchR1Batch, SearchR1Config, SearchR1Finish,
    SearchR1Rollout, INVALID_ACTION,
};
pub use template::{
    re_search_docs, re_search_instruct_prompt, re_search_result_text, re_search_template, search_r1_docs,
    search_r1_observation, search_r1_prompt, search_r1_question, RE_SEARCH_SYSTEM,
};
