//! Rule rewards: ReSearch's F1 reward with its format check (REFERENCE.md §4) and Search-R1's
//! exact-match reward.
//!
//! Both take the decoded *response* (special tokens kept, inserted `<result>` blocks included), not
//! prompt + response. The Python reference decodes prompt + response and cuts the response out by
//! splitting on `"<|im_start|>assistant\n"` (instruct) or `"Assistant:"` (base), keeping piece 1;
//! so a response that itself contains the split string is truncated there (and then usually fails
//! the EOS check). That quirk is not reproduced: the rollout has the response on its own.
//!
//! Positions are byte offsets; every tag is ASCII, so byte order is character order and the scans
//! agree with Python's `str.find` on code points.

use serde::Serialize;
use thiserror::Error;

use crate::metrics::{normalize_answer, token_scores_single};

/// Qwen2.5's end-of-turn token, the instruct models' EOS (id 151645).
pub const IM_END: &str = "<|im_end|>";

/// Qwen2.5's end-of-text token, the base models' EOS and the instruct models' second EOS (id 151643).
pub const ENDOFTEXT: &str = "<|endoftext|>";

/// EOS strings accepted for instruct models: both of Qwen2.5-Instruct's EOS tokens.
///
/// The reference checks only the tokenizer's `eos_token` (`<|im_end|>`) and so scores 0 an
/// instruct rollout that stopped on `<|endoftext|>`, which REFERENCE.md §8 lists as a defect not
/// to copy. Pass `&[IM_END]` instead for exact parity.
pub const INSTRUCT_EOS: &[&str] = &[IM_END, ENDOFTEXT];

/// EOS strings accepted for base models.
pub const BASE_EOS: &[&str] = &[ENDOFTEXT];

/// ReSearch's reward for a well-formed response whose answer shares no token with any golden answer.
pub const WRONG_ANSWER_SCORE: f64 = 0.1;

/// A reward and the reason for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reward {
    /// The scalar reward (it sits on the response's last token).
    pub score: f64,
    /// Why: the failed check, or the F1 / match and the golden answer it came from.
    pub reason: String,
}

impl Reward {
    fn new(score: f64, reason: impl Into<String>) -> Self {
        Reward {
            score,
            reason: reason.into(),
        }
    }
}

/// Why a response fails ReSearch's format check ([`check_format`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    /// `<think>` and `</think>` counts differ.
    #[error("{open} <think> vs {close} </think>")]
    UnpairedThink {
        /// Number of `<think>`.
        open: usize,
        /// Number of `</think>`.
        close: usize,
    },
    /// Neither `<think>` nor `</think>` occurs.
    #[error("no <think> </think>")]
    NoThink,
    /// Not exactly one `<answer>` and one `</answer>`.
    #[error("{open} <answer> and {close} </answer>, need exactly one of each")]
    AnswerCount {
        /// Number of `<answer>`.
        open: usize,
        /// Number of `</answer>`.
        close: usize,
    },
    /// A `<search>` with no `</search>` after it.
    #[error("<search> at byte {at} has no </search> after it")]
    NoSearchEnd {
        /// Byte offset of the `<search>`.
        at: usize,
    },
    /// A `<search>` with no `<result>` after it.
    #[error("<search> at byte {at} has no <result> after it")]
    NoResult {
        /// Byte offset of the `<search>`.
        at: usize,
    },
    /// The `<result>` following a `<search>` has no `</result>` after it.
    #[error("<result> at byte {at} has no </result> after it")]
    NoResultEnd {
        /// Byte offset of the `<result>`.
        at: usize,
    },
    /// The first `<result>` after a `<search>` comes before the first `</search>` after it.
    #[error("<search> at byte {at}: <result> before </search>")]
    ResultBeforeSearchEnd {
        /// Byte offset of the `<search>`.
        at: usize,
    },
    /// `</answer>` comes before `<answer>`.
    #[error("</answer> before <answer>")]
    AnswerOrder,
    /// The answer span lacks `\boxed{` or lacks `}`.
    #[error("no \\boxed{{}} in answer")]
    NoBoxed,
}

/// Why no answer could be taken out of an answer span ([`extract_boxed`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BoxedError {
    /// The span has no `\boxed` at all.
    #[error("no \\boxed in answer")]
    NoBoxed,
    /// Brace counting from the last `\boxed` never comes back to zero.
    #[error("unbalanced braces after the last \\boxed")]
    Unbalanced,
    /// The last `\boxed` is not directly followed by `{` (e.g. `\boxed\n{x}`, `\boxedx{y}`).
    #[error("last \\boxed not followed by {{")]
    NotBrace,
}

/// ReSearch's format check (`validate_format`), run on the response with its EOS still on.
/// Tags inside inserted `<result>` text count like the model's own.
///
/// In order:
/// 1. `<think>` and `</think>` occur equally often, at least once.
/// 2. `<answer>` and `</answer>` occur exactly once each.
/// 3. Search blocks: from position 0, find the next `<search>`; after it the first `</search>` and
///    the first `<result>`, and after that `<result>` the first `</result>`. All must exist and
///    `</search>` must come before `<result>`. The next `<search>` is looked for from that
///    `</result>` on, so `<search>` text inside a result block is skipped.
/// 4. `<answer>` comes before `</answer>`, and the answer span contains `\boxed{` and `}` (each
///    anywhere in it, in any order).
///
/// Reading chosen in step 3: the `</result>` is searched for after the `<result>`, as the Python
/// does (`text.find('</result>', result_pos)`). REFERENCE.md's "the first `</search>`, `<result>`
/// and `</result>` found after that `<search>`" could also be read as the first `</result>` after
/// the `<search>`; the two differ only for a stray `</result>` between `</search>` and `<result>`
/// (`<search>q</search></result><result>d</result>`), which passes here as in the reference.
pub fn check_format(text: &str) -> Result<(), FormatError> {
    let (think_open, think_close) = (text.matches("<think>").count(), text.matches("</think>").count());
    if think_open != think_close {
        return Err(FormatError::UnpairedThink {
            open: think_open,
            close: think_close,
        });
    }
    if think_open == 0 {
        return Err(FormatError::NoThink);
    }
    let (answer_open, answer_close) = (text.matches("<answer>").count(), text.matches("</answer>").count());
    if answer_open != 1 || answer_close != 1 {
        return Err(FormatError::AnswerCount {
            open: answer_open,
            close: answer_close,
        });
    }

    let find_from = |needle: &str, from: usize| text[from..].find(needle).map(|i| i + from);
    let mut current = 0;
    while let Some(search) = find_from("<search>", current) {
        let search_end = find_from("</search>", search).ok_or(FormatError::NoSearchEnd { at: search })?;
        let result = find_from("<result>", search).ok_or(FormatError::NoResult { at: search })?;
        let result_end = find_from("</result>", result).ok_or(FormatError::NoResultEnd { at: result })?;
        // search < search_end and result < result_end hold by construction (the tags differ).
        if search_end > result {
            return Err(FormatError::ResultBeforeSearchEnd { at: search });
        }
        current = result_end;
    }

    let answer_start = text.find("<answer>").unwrap_or(0);
    let answer_end = text.find("</answer>").unwrap_or(0);
    if answer_start > answer_end {
        return Err(FormatError::AnswerOrder);
    }
    // The reference slices text[answer_start:answer_end], i.e. "<answer>" plus the span; neither
    // `\boxed{` nor `}` can overlap "<answer>", so checking the whole slice is the same.
    let answer = &text[answer_start..answer_end];
    if !answer.contains("\\boxed{") || !answer.contains('}') {
        return Err(FormatError::NoBoxed);
    }
    Ok(())
}

/// The first `<answer>(.*?)</answer>` match (dot matches newlines): the text between the first
/// `<answer>` and the first `</answer>` after it. `None` without such a pair.
pub fn answer_span(text: &str) -> Option<&str> {
    let start = text.find("<answer>")? + "<answer>".len();
    let end = text[start..].find("</answer>")? + start;
    Some(&text[start..end])
}

/// The content of the last `<answer>...</answer>` (non-greedy matches scanned left to right, like
/// Python's `re.finditer(r"<answer>(.*?)</answer>", text, re.DOTALL)`), trimmed of surrounding
/// whitespace. `None` without a complete pair.
pub fn last_answer_span(text: &str) -> Option<&str> {
    let mut last = None;
    let mut pos = 0;
    while let Some(open) = text[pos..].find("<answer>") {
        let start = pos + open + "<answer>".len();
        let Some(close) = text[start..].find("</answer>") else {
            break;
        };
        last = Some(&text[start..start + close]);
        pos = start + close + "</answer>".len();
    }
    last.map(|s| s.trim_matches(crate::metrics::is_python_whitespace))
}

/// The final answer inside an answer span, as ReSearch's `remove_boxed(last_boxed_only_string(s))`.
///
/// - If the span contains `\boxed ` (with a space): the text after the **last** `\boxed ` up to the
///   next `$` (or the end of the span). This wins even when a `\boxed{...}` comes later.
/// - Otherwise the content of the **last** `\boxed{...}`: braces are counted from the last
///   `\boxed` on (depth may go negative on a stray `}`) until the depth returns to 0 at a `}`;
///   nesting is kept verbatim, so `\boxed{\text{x}}` gives `\text{x}`.
///
/// The reference falls back to the last `\fbox` when there is no `\boxed` at all; that branch is
/// unreachable after [`check_format`] (which requires `\boxed{` in the span) and is left out.
pub fn extract_boxed(span: &str) -> Result<&str, BoxedError> {
    const BOXED_SPACE: &str = "\\boxed ";
    if let Some(at) = span.rfind(BOXED_SPACE) {
        let rest = &span[at + BOXED_SPACE.len()..];
        return Ok(rest.split('$').next().unwrap_or(""));
    }
    let at = span.rfind("\\boxed").ok_or(BoxedError::NoBoxed)?;
    let mut depth: i64 = 0;
    let mut close = None;
    for (i, b) in span.bytes().enumerate().skip(at) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close.ok_or(BoxedError::Unbalanced)?;
    let boxed = &span[at..=close];
    boxed
        .strip_prefix("\\boxed{")
        .map(|inner| &inner[..inner.len() - 1])
        .ok_or(BoxedError::NotBrace)
}

/// ReSearch's reward (REFERENCE.md §4) of a decoded response against its golden answers.
///
/// 1. [`check_format`] on the response as it is (EOS on), else 0.
/// 2. The response must end with one of the `eos` strings, else 0; that EOS is stripped.
///    `eos` is [`INSTRUCT_EOS`] or [`BASE_EOS`] (or `&[IM_END]` for the reference's exact
///    behaviour on instruct models); an empty list fails every response.
/// 3. The answer span is the first `<answer>...</answer>` ([`answer_span`]), else 0.
/// 4. The answer is taken out of the span by [`extract_boxed`], else 0.
/// 5. F1 is the token F1 ([`token_scores_single`]) maximised over the golden answers.
/// 6. Reward = F1 if F1 > 0, else [`WRONG_ANSWER_SCORE`] (0.1; also with no golden answers).
pub fn re_search_reward<S: AsRef<str>>(response: &str, goldens: &[S], eos: &[&str]) -> Reward {
    if let Err(e) = check_format(response) {
        return Reward::new(0.0, format!("format: {e}"));
    }
    let Some(stripped) = eos.iter().find_map(|e| response.strip_suffix(e)) else {
        return Reward::new(0.0, format!("no EOS at end (expected one of {eos:?})"));
    };
    let Some(span) = answer_span(stripped) else {
        return Reward::new(0.0, "no <answer>...</answer> span");
    };
    let answer = match extract_boxed(span) {
        Ok(answer) => answer,
        Err(e) => return Reward::new(0.0, e.to_string()),
    };
    let mut best: Option<(f64, &str)> = None;
    for golden in goldens {
        let f1 = token_scores_single(answer, golden.as_ref()).f1;
        if best.is_none_or(|(b, _)| f1 > b) {
            best = Some((f1, golden.as_ref()));
        }
    }
    match best {
        Some((f1, golden)) if f1 > 0.0 => Reward::new(f1, format!("f1 {f1:.3} against '{golden}'")),
        _ => Reward::new(
            WRONG_ANSWER_SCORE,
            format!("wrong answer: 0.1 for good format (answer '{answer}')"),
        ),
    }
}

/// Search-R1's exact-match reward: 1 if the content of the last `<answer>...</answer>`
/// ([`last_answer_span`]) equals a golden answer after SQuAD normalisation, else 0. No format or
/// EOS check.
///
/// The reference runs on prompt + response and requires at least two matches, because its prompt
/// already holds `<answer> and </answer>` and `<answer> Beijing </answer>`; with prompt-only matches
/// it would score the response against "Beijing". On the response alone that becomes "at least one
/// match", and a response without one scores 0.
pub fn search_r1_reward<S: AsRef<str>>(response: &str, goldens: &[S]) -> Reward {
    let Some(answer) = last_answer_span(response) else {
        return Reward::new(0.0, "no <answer>...</answer>");
    };
    let normalized = normalize_answer(answer);
    match goldens
        .iter()
        .map(AsRef::as_ref)
        .find(|g| normalize_answer(g) == normalized)
    {
        Some(golden) => Reward::new(1.0, format!("exact match with '{golden}'")),
        None => Reward::new(0.0, format!("wrong answer '{answer}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks one case: score within 1e-12 of the hand-worked value, reason containing `reason`.
    #[track_caller]
    fn check(response: &str, goldens: &[&str], eos: &[&str], score: f64, reason: &str) {
        let r = re_search_reward(response, goldens, eos);
        assert!(
            (r.score - score).abs() < 1e-12,
            "score {} != {score} ({r:?}) for {response:?}",
            r.score
        );
        assert!(
            r.reason.contains(reason),
            "reason {:?} lacks {reason:?} for {response:?}",
            r.reason
        );
    }

    /// A well-formed instruct response whose answer span is `answer` (one think block, no search).
    fn wrap(answer: &str) -> String {
        format!("<think> Let me think. </think> <answer>{answer}</answer><|im_end|>")
    }

    const PARIS: &[&str] = &["Paris"];
    const IM: &[&str] = &[IM_END];

    // ---- correct and partially correct answers -------------------------------------------------

    #[test]
    fn exact_answer_scores_one() {
        // "paris" vs "paris": p = r = 1, f1 = 1.
        check(
            r"<think> The capital of France is Paris. </think> <answer> The final answer is \[ \boxed{Paris} \] </answer><|im_end|>",
            PARIS,
            IM,
            1.0,
            "f1 1.000 against 'Paris'",
        );
    }

    #[test]
    fn answer_after_search_and_result_scores_one() {
        let response = "<think> I should look it up. </think> <search> capital of France </search> <result>\n\
                        \"Paris\"\nParis is the capital and most populous city of France.\n</result> \
                        <think> It is Paris. </think> <answer> \\boxed{Paris} </answer><|im_end|>";
        check(response, PARIS, IM, 1.0, "f1 1.000");
    }

    #[test]
    fn two_complete_search_blocks_score_one() {
        let response = "<think>a</think> <search> q1 </search> <result>\nd1\n</result> <think>b</think> \
                        <search> q2 </search> <result>\nd2\n</result> <think>c</think> \
                        <answer> \\boxed{Paris} </answer><|im_end|>";
        check(response, PARIS, IM, 1.0, "f1 1.000");
    }

    #[test]
    fn partial_overlap_extra_prediction_tokens() {
        // "the Eiffel Tower, Paris" -> "eiffel tower paris" (3 tokens) vs "eiffel tower" (2): shared 2.
        // p = 2/3, r = 1, f1 = 2*(2/3)*1 / (2/3 + 1) = (4/3)/(5/3) = 0.8.
        check(
            &wrap(r"\boxed{the Eiffel Tower, Paris}"),
            &["Eiffel Tower"],
            IM,
            0.8,
            "f1 0.800 against 'Eiffel Tower'",
        );
    }

    #[test]
    fn partial_overlap_missing_prediction_tokens() {
        // "obama" (1) vs "barack obama" (2): shared 1; p = 1, r = 1/2, f1 = 1/1.5 = 2/3.
        check(
            &wrap(r"\boxed{Obama}"),
            &["Barack Obama"],
            IM,
            2.0 / 3.0,
            "f1 0.667 against 'Barack Obama'",
        );
    }

    #[test]
    fn token_multiplicity_counts() {
        // [new, new, york] vs [new, york]: shared min(2,1) + 1 = 2; p = 2/3, r = 1, f1 = 0.8.
        check(&wrap(r"\boxed{New New York}"), &["New York"], IM, 0.8, "f1 0.800");
    }

    #[test]
    fn multiple_goldens_take_the_max() {
        // vs "barack obama": 2/3; vs "obama": 1 -> max 1, from the second golden.
        check(
            &wrap(r"\boxed{Obama}"),
            &["Barack Obama", "Obama"],
            IM,
            1.0,
            "f1 1.000 against 'Obama'",
        );
        // "eiffel tower paris" vs "tower of paris": shared {tower, paris} = 2, p = r = 2/3, f1 = 2/3;
        // vs "eiffel tower": 0.8 (above) -> max 0.8.
        check(
            &wrap(r"\boxed{the Eiffel Tower, Paris}"),
            &["Tower of Paris", "Eiffel Tower"],
            IM,
            0.8,
            "against 'Eiffel Tower'",
        );
        // First golden with the max is named when two tie: both "paris" -> 1.
        check(&wrap(r"\boxed{Paris}"), &["paris", "PARIS"], IM, 1.0, "against 'paris'");
    }

    // ---- good format, wrong answer ---------------------------------------------------------------

    #[test]
    fn wrong_answer_scores_point_one() {
        // "london" vs "paris": no shared token -> f1 0 -> 0.1.
        check(
            &wrap(r"\boxed{London}"),
            PARIS,
            IM,
            0.1,
            "wrong answer: 0.1 for good format (answer 'London')",
        );
    }

    #[test]
    fn empty_boxed_scores_point_one() {
        // Answer "" -> no tokens -> f1 0 -> 0.1.
        check(&wrap(r"\boxed{}"), PARIS, IM, 0.1, "wrong answer");
    }

    #[test]
    fn no_goldens_scores_point_one() {
        check(&wrap(r"\boxed{Paris}"), &[], IM, 0.1, "wrong answer");
    }

    // ---- \boxed extraction -------------------------------------------------------------------------

    #[test]
    fn nested_braces_are_kept_verbatim() {
        // Answer "\text{Paris}" -> lower, punctuation \ { } removed -> "textparis" vs "paris": 0 -> 0.1.
        check(&wrap(r"\boxed{\text{Paris}}"), PARIS, IM, 0.1, "answer '\\text{Paris}'");
        // Answer "{New} {York}" -> "new york" vs "new york": 1.
        check(&wrap(r"\boxed{{New} {York}}"), &["New York"], IM, 1.0, "f1 1.000");
        // Answer "a{b{c}}d" -> braces removed -> "abcd" (one word, not an article) vs "abcd": 1.
        check(
            &wrap(r"\boxed{a{b{c}}d} and more } text"),
            &["abcd"],
            IM,
            1.0,
            "f1 1.000",
        );
    }

    #[test]
    fn last_boxed_wins() {
        // Last \boxed is {Paris} -> 1.
        check(
            &wrap(r"\boxed{London}, no wait, \boxed{Paris}"),
            PARIS,
            IM,
            1.0,
            "f1 1.000",
        );
        // Last \boxed is {London} -> f1 0 -> 0.1.
        check(
            &wrap(r"\boxed{Paris}, no wait, \boxed{London}"),
            PARIS,
            IM,
            0.1,
            "answer 'London'",
        );
    }

    #[test]
    fn unclosed_last_boxed_scores_zero() {
        // Brace count from the last \boxed: "{" -> 1, never back to 0 -> failure -> 0, even though
        // an earlier \boxed{Paris} is fine.
        check(
            &wrap(r"\boxed{Paris} and \boxed{London"),
            PARIS,
            IM,
            0.0,
            "unbalanced braces",
        );
        // A bare trailing \boxed: no brace after it at all -> 0.
        check(&wrap(r"\boxed{Paris} \boxed"), PARIS, IM, 0.0, "unbalanced braces");
    }

    #[test]
    fn last_boxed_must_be_followed_by_brace() {
        // rfind("\boxed") lands on "\boxedx{Paris}": braces balance, but it does not start "\boxed{" -> 0.
        check(
            &wrap(r"\boxed{London} \boxedx{Paris}"),
            PARIS,
            IM,
            0.0,
            "not followed by {",
        );
        // "\boxed\n{Paris}" likewise.
        check(
            &wrap("\\boxed{London} \\boxed\n{Paris}"),
            PARIS,
            IM,
            0.0,
            "not followed by {",
        );
    }

    #[test]
    fn boxed_space_variant_runs_to_dollar() {
        // Span contains "\boxed ": answer = after the last "\boxed " up to "$" = "Paris" -> 1.
        check(
            &wrap(r" $\boxed Paris$ and also \boxed{London} "),
            PARIS,
            IM,
            1.0,
            "f1 1.000",
        );
        // The later \boxed{London} is ignored: "paris" vs "london" -> 0.1.
        check(
            &wrap(r" $\boxed Paris$ and also \boxed{London} "),
            &["London"],
            IM,
            0.1,
            "answer 'Paris'",
        );
    }

    #[test]
    fn boxed_space_variant_without_dollar_runs_to_span_end() {
        // After the last "\boxed ": "Eiffel Tower " -> "eiffel tower" vs "eiffel tower": 1.
        check(
            &wrap(r" \boxed{x} so \boxed Eiffel Tower "),
            &["Eiffel Tower"],
            IM,
            1.0,
            "f1 1.000",
        );
        // Two "\boxed " forms: the last one ("Paris") wins -> 1.
        check(
            &wrap(r"\boxed{y} \boxed London$ \boxed Paris$"),
            PARIS,
            IM,
            1.0,
            "f1 1.000",
        );
    }

    // ---- normalisation inside the reward ------------------------------------------------------------

    #[test]
    fn yes_no_rule() {
        // "yes" vs "yes": equal -> scored normally -> 1.
        check(&wrap(r"\boxed{Yes.}"), &["yes"], IM, 1.0, "f1 1.000");
        // "no" vs "yes": no shared token anyway -> 0.1.
        check(&wrap(r"\boxed{No}"), &["yes"], IM, 0.1, "wrong answer");
        // "yes it is" vs "yes": shares "yes" but the golden is special and differs -> f1 0 -> 0.1.
        check(&wrap(r"\boxed{yes it is}"), &["yes"], IM, 0.1, "wrong answer");
        // "no" vs "no man's land" -> "no mans land": prediction special and different -> 0.1.
        check(&wrap(r"\boxed{no}"), &["no man's land"], IM, 0.1, "wrong answer");
        // "noanswer" vs "noanswer": equal -> 1.
        check(&wrap(r"\boxed{noanswer}"), &["noanswer"], IM, 1.0, "f1 1.000");
    }

    #[test]
    fn articles_and_punctuation_are_ignored() {
        // "The U.S.A." -> "usa" vs "usa" -> 1.
        check(&wrap(r"\boxed{The U.S.A.}"), &["USA"], IM, 1.0, "f1 1.000");
        // "An Apple, a Day!" -> "apple day" vs "apple day" -> 1.
        check(&wrap(r"\boxed{An Apple, a Day!}"), &["apple day"], IM, 1.0, "f1 1.000");
    }

    #[test]
    fn unicode_answers() {
        // "ZÜRICH" lowercases to "zürich" -> equal -> 1.
        check(&wrap(r"\boxed{ZÜRICH}"), &["Zürich"], IM, 1.0, "f1 1.000");
        // [são, paulo] vs [sao, paulo]: shared 1; p = r = 1/2, f1 = 0.5.
        check(&wrap(r"\boxed{São Paulo}"), &["Sao Paulo"], IM, 0.5, "f1 0.500");
        // Multi-byte text before the tags; "巴黎" is one token -> 1.
        check(
            "<think>答案是巴黎。</think> <answer>\\boxed{巴黎}</answer><|im_end|>",
            &["巴黎"],
            IM,
            1.0,
            "f1 1.000",
        );
    }

    #[test]
    fn multiline_answer_span() {
        // The span regex's dot matches newlines.
        let response =
            "<think>\nok\n</think>\n<answer>\nThe final answer is\n\\[\n\\boxed{Paris}\n\\]\n</answer><|im_end|>";
        check(response, PARIS, IM, 1.0, "f1 1.000");
    }

    // ---- EOS ------------------------------------------------------------------------------------------

    #[test]
    fn missing_eos_scores_zero() {
        check(
            r"<think>a</think> <answer>\boxed{Paris}</answer>",
            PARIS,
            IM,
            0.0,
            "no EOS at end",
        );
        // EOS present but not last (a trailing newline) -> 0.
        check(
            "<think>a</think> <answer>\\boxed{Paris}</answer><|im_end|>\n",
            PARIS,
            IM,
            0.0,
            "no EOS at end",
        );
        // An empty EOS list accepts nothing.
        check(&wrap(r"\boxed{Paris}"), PARIS, &[], 0.0, "no EOS at end");
    }

    #[test]
    fn eos_of_the_other_family() {
        let ends_endoftext = r"<think>a</think> <answer>\boxed{Paris}</answer><|endoftext|>";
        let ends_im_end = r"<think>a</think> <answer>\boxed{Paris}</answer><|im_end|>";
        // Reference parity for instruct (only <|im_end|>): <|endoftext|> -> 0.
        check(ends_endoftext, PARIS, &[IM_END], 0.0, "no EOS at end");
        // INSTRUCT_EOS accepts both (REFERENCE.md §8) -> 1 each.
        check(ends_endoftext, PARIS, INSTRUCT_EOS, 1.0, "f1 1.000");
        check(ends_im_end, PARIS, INSTRUCT_EOS, 1.0, "f1 1.000");
        // Base models: <|endoftext|> -> 1, <|im_end|> -> 0.
        check(ends_endoftext, PARIS, BASE_EOS, 1.0, "f1 1.000");
        check(ends_im_end, PARIS, BASE_EOS, 0.0, "no EOS at end");
    }

    #[test]
    fn only_the_final_eos_is_stripped() {
        // An earlier <|im_end|> in the text does not matter; the final one is stripped -> 1.
        check(
            r"<think>a<|im_end|></think> <answer>\boxed{Paris}</answer><|im_end|>",
            PARIS,
            IM,
            1.0,
            "f1 1.000",
        );
    }

    #[test]
    fn format_is_checked_before_eos() {
        // Bad format and no EOS: the format failure is reported (step 1 before step 2).
        check(
            r"<answer>\boxed{Paris}</answer>",
            PARIS,
            IM,
            0.0,
            "format: no <think> </think>",
        );
    }

    // ---- format: answer tags ---------------------------------------------------------------------------

    #[test]
    fn two_answer_tags_score_zero() {
        check(
            r"<think>a</think> <answer>\boxed{London}</answer> <think>b</think> <answer>\boxed{Paris}</answer><|im_end|>",
            PARIS,
            IM,
            0.0,
            "format: 2 <answer> and 2 </answer>",
        );
        // No answer tags at all.
        check(
            "<think>a</think> Paris<|im_end|>",
            PARIS,
            IM,
            0.0,
            "format: 0 <answer> and 0 </answer>",
        );
    }

    #[test]
    fn answer_tags_inside_a_result_block_count() {
        // The retrieved document holds "<answer>...</answer>": 2 of each in total -> 0.
        let response = "<think>a</think> <search> q </search> <result>\nquiz: <answer>Paris</answer>\n</result> \
                        <think>b</think> <answer>\\boxed{Paris}</answer><|im_end|>";
        check(response, PARIS, IM, 0.0, "format: 2 <answer> and 2 </answer>");
    }

    #[test]
    fn closing_answer_before_opening_scores_zero() {
        check(
            r"<think>a</think> </answer> \boxed{Paris} <answer><|im_end|>",
            PARIS,
            IM,
            0.0,
            "format: </answer> before <answer>",
        );
    }

    #[test]
    fn answer_without_boxed_brace_scores_zero() {
        check(&wrap(" Paris "), PARIS, IM, 0.0, "format: no \\boxed{} in answer");
        // Only the "\boxed " (space) form: no "\boxed{" -> 0 before extraction is tried.
        check(
            &wrap(r" $\boxed Paris$ "),
            PARIS,
            IM,
            0.0,
            "format: no \\boxed{} in answer",
        );
        // "\boxed{" outside the answer span does not count.
        check(
            r"<think> \boxed{Paris} </think> <answer> Paris </answer><|im_end|>",
            PARIS,
            IM,
            0.0,
            "no \\boxed{}",
        );
    }

    #[test]
    fn brace_anywhere_passes_format_but_extraction_fails() {
        // Span has "}" (before) and "\boxed{" -> format passes; the last \boxed never closes -> 0.
        check(&wrap(r"} \boxed{Paris"), PARIS, IM, 0.0, "unbalanced braces");
    }

    // ---- format: think tags ----------------------------------------------------------------------------

    #[test]
    fn unequal_think_tags_score_zero() {
        check(
            r"<think> a <think> b </think> <answer>\boxed{Paris}</answer><|im_end|>",
            PARIS,
            IM,
            0.0,
            "format: 2 <think> vs 1 </think>",
        );
        // A "<think>" inside a result block unbalances the count too.
        let response = "<think>a</think> <search> q </search> <result>\nuse <think> tags\n</result> \
                        <answer>\\boxed{Paris}</answer><|im_end|>";
        check(response, PARIS, IM, 0.0, "format: 2 <think> vs 1 </think>");
    }

    #[test]
    fn no_think_tags_score_zero() {
        check(
            r"<answer>\boxed{Paris}</answer><|im_end|>",
            PARIS,
            IM,
            0.0,
            "format: no <think> </think>",
        );
    }

    // ---- format: search / result scan -------------------------------------------------------------------

    #[test]
    fn search_without_result_scores_zero() {
        check(
            r"<think>a</think> <search> q </search> <answer>\boxed{Paris}</answer><|im_end|>",
            PARIS,
            IM,
            0.0,
            // "<think>a</think> " is 7 + 1 + 8 + 1 = 17 bytes: <search> at 17.
            "format: <search> at byte 17 has no <result> after it",
        );
    }

    #[test]
    fn search_without_closing_search_scores_zero() {
        check(
            "<think>a</think> <search> q <result>\nd\n</result> <answer>\\boxed{Paris}</answer><|im_end|>",
            PARIS,
            IM,
            0.0,
            "has no </search> after it",
        );
    }

    #[test]
    fn result_before_closing_search_scores_zero() {
        // First </search> after <search> is after the first <result> -> wrong order -> 0.
        check(
            "<think>a</think> <search> q <result>\nd\n</result> </search> <answer>\\boxed{Paris}</answer><|im_end|>",
            PARIS,
            IM,
            0.0,
            "<result> before </search>",
        );
    }

    #[test]
    fn result_without_closing_result_scores_zero() {
        check(
            "<think>a</think> <search> q </search> <result>\nd <answer>\\boxed{Paris}</answer><|im_end|>",
            PARIS,
            IM,
            0.0,
            // "<think>a</think> " is 17 bytes, "<search> q </search> " 21 more: <result> at 38.
            "<result> at byte 38 has no </result> after it",
        );
    }

    #[test]
    fn second_incomplete_search_scores_zero() {
        // First block complete; the scan continues from its </result> and finds a second <search>
        // with no <result> after it -> 0.
        let response = "<think>a</think> <search> q1 </search> <result>\nd1\n</result> <think>b</think> \
                        <search> q2 </search> <answer>\\boxed{Paris}</answer><|im_end|>";
        check(response, PARIS, IM, 0.0, "has no <result> after it");
    }

    #[test]
    fn search_after_answer_without_result_scores_zero() {
        check(
            r"<think>a</think> <answer>\boxed{Paris}</answer> <search> more </search><|im_end|>",
            PARIS,
            IM,
            0.0,
            "has no <result> after it",
        );
    }

    #[test]
    fn search_tag_inside_result_is_skipped() {
        // The next <search> is looked for from the block's </result>, so the "<search>" inside the
        // result text is never checked -> good format -> 1.
        let response = "<think>a</think> <search> q </search> <result>\nthe page mentions <search> tags\n</result> \
                        <think>b</think> <answer>\\boxed{Paris}</answer><|im_end|>";
        check(response, PARIS, IM, 1.0, "f1 1.000");
    }

    #[test]
    fn stray_closing_result_before_result_passes_like_the_reference() {
        // The reading chosen in `check_format`: </result> is looked for after the <result>, so a
        // stray </result> between </search> and <result> is not an error (the Python agrees) -> 1.
        let response = "<think>a</think> <search> q </search></result> <result>\nd\n</result> \
                        <answer>\\boxed{Paris}</answer><|im_end|>";
        check(response, PARIS, IM, 1.0, "f1 1.000");
    }

    #[test]
    fn result_block_without_search_is_not_checked() {
        // Only <search> starts a scan; a lone <result> block is fine -> 1.
        check(
            r"<think>a</think> <result> r </result> <answer>\boxed{Paris}</answer><|im_end|>",
            PARIS,
            IM,
            1.0,
            "f1 1.000",
        );
    }

    // ---- pieces ---------------------------------------------------------------------------------------

    #[test]
    fn check_format_errors_render() {
        assert_eq!(
            check_format("<think>x"),
            Err(FormatError::UnpairedThink { open: 1, close: 0 })
        );
        assert_eq!(
            FormatError::UnpairedThink { open: 2, close: 1 }.to_string(),
            "2 <think> vs 1 </think>"
        );
        assert_eq!(FormatError::NoBoxed.to_string(), "no \\boxed{} in answer");
        assert_eq!(check_format(r"<think></think><answer>\boxed{x}</answer>"), Ok(()));
    }

    #[test]
    fn extract_boxed_cases() {
        assert_eq!(extract_boxed(r"The final answer is \[ \boxed{Paris} \]"), Ok("Paris"));
        assert_eq!(extract_boxed(r"\boxed{a{b}c}"), Ok("a{b}c"));
        assert_eq!(extract_boxed(r"\boxed{}"), Ok(""));
        assert_eq!(extract_boxed(r"\boxed x$ y"), Ok("x"));
        assert_eq!(extract_boxed(r"\boxed }{x}"), Ok("}{x}"));
        // Depth goes -1 at the stray "}", back to 0 at "{" (not a close), so it never closes.
        assert_eq!(extract_boxed(r"\boxed}{x}"), Err(BoxedError::Unbalanced));
        assert_eq!(extract_boxed("Paris"), Err(BoxedError::NoBoxed));
        assert_eq!(answer_span("x <answer> a </answer> <answer>b</answer>"), Some(" a "));
        assert_eq!(answer_span("<answer> a"), None);
    }

    #[test]
    fn reward_serialises() {
        let r = re_search_reward(&wrap(r"\boxed{Paris}"), PARIS, IM);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"score":1.0,"reason":"f1 1.000 against 'Paris'"}"#
        );
    }

    // ---- Search-R1 exact match -------------------------------------------------------------------------

    #[track_caller]
    fn check_em(response: &str, goldens: &[&str], score: f64, reason: &str) {
        let r = search_r1_reward(response, goldens);
        assert_eq!(r.score, score, "{r:?} for {response:?}");
        assert!(r.reason.contains(reason), "reason {:?} lacks {reason:?}", r.reason);
    }

    #[test]
    fn search_r1_exact_match() {
        // " Paris " -> "paris" == "paris" -> 1.
        check_em(
            "<think>x</think>\n<answer> Paris </answer>",
            PARIS,
            1.0,
            "exact match with 'Paris'",
        );
        // Normalisation: "The Paris." -> "paris" -> 1.
        check_em("<answer>The Paris.</answer>", PARIS, 1.0, "exact match");
        // Newlines inside the tags -> 1.
        check_em("<answer>\nParis\n</answer>", PARIS, 1.0, "exact match");
        // Second golden matches -> 1.
        check_em(
            "<answer>Paris</answer>",
            &["Lutetia", "paris"],
            1.0,
            "exact match with 'paris'",
        );
        // An EOS after the answer changes nothing; none is required either.
        check_em("<answer>Paris</answer><|im_end|>", PARIS, 1.0, "exact match");
    }

    #[test]
    fn search_r1_last_answer_wins() {
        let response = "<answer>London</answer> <information>x</information> <answer>Paris</answer>";
        check_em(response, PARIS, 1.0, "exact match");
        check_em(response, &["London"], 0.0, "wrong answer 'Paris'");
        // An unclosed last <answer> is no match; the last complete one ("Paris") counts -> 1.
        check_em("<answer>Paris</answer> <answer>London", PARIS, 1.0, "exact match");
    }

    #[test]
    fn search_r1_no_partial_credit() {
        // "paris france" != "paris": EM is 0/1, no F1 -> 0.
        check_em("<answer>Paris France</answer>", PARIS, 0.0, "wrong answer");
        // \boxed is not extracted: "\boxed{paris}" -> "boxedparis" != "paris" -> 0.
        check_em(r"<answer>\boxed{Paris}</answer>", PARIS, 0.0, "wrong answer");
        // Non-greedy from the first <answer>: content "a<answer>Paris" -> "aanswerparis" -> 0.
        check_em("<answer>a<answer>Paris</answer>", PARIS, 0.0, "wrong answer");
        // No golden answers -> 0.
        check_em("<answer>Paris</answer>", &[], 0.0, "wrong answer");
    }

    #[test]
    fn search_r1_without_answer_scores_zero() {
        check_em("<think>x</think> Paris", PARIS, 0.0, "no <answer>...</answer>");
        check_em("<answer> Paris", PARIS, 0.0, "no <answer>...</answer>");
        assert_eq!(
            last_answer_span("<answer> a </answer>x<answer>\tb\n</answer>"),
            Some("b")
        );
    }
}
