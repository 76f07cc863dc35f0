//! Answer metrics of FlashRAG (REFERENCE.md §7) on SQuAD-normalised strings.
//!
//! [`normalize_answer`] is SQuAD's `normalize_answer` as FlashRAG and ReSearch copy it. Every
//! metric is maximised over the golden answers: exact match ([`exact_match`]), FlashRAG's `acc` /
//! Sub-EM ([`sub_exact_match`]) and token F1, precision and recall ([`token_scores`]), which
//! ReSearch's reward also uses. [`Metrics`] averages them over a data set.

use std::collections::HashMap;

use serde::Serialize;

/// Answers that only match themselves: if either side normalises to one of these and the two
/// sides differ, the token scores are 0 however many tokens they share.
const SPECIAL_ANSWERS: [&str; 3] = ["yes", "no", "noanswer"];

/// Whitespace as Python's `str.split()` / `str.strip()` see it (`str.isspace`): Unicode
/// `White_Space` plus the separators U+001C..U+001F, which Rust's `char::is_whitespace` leaves out.
pub(crate) fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// A character of Python's `\w` class, which bounds `\b` in the article pattern.
///
/// Python's `\w` is `str.isalnum()` or `_`; this uses `char::is_alphanumeric`, which agrees except
/// on characters that are `Alphabetic` without being letters (combining vowel signs such as
/// U+093E, circled letters such as U+24D0). Those only matter when glued to an article with no
/// space in between.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `re.sub(r"\b(a|an|the)\b", " ", text)`: every maximal run of word characters that is exactly
/// `a`, `an` or `the` becomes one space.
fn remove_articles(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if is_word_char(c) {
            let end = rest.find(|c: char| !is_word_char(c)).unwrap_or(rest.len());
            match &rest[..end] {
                "a" | "an" | "the" => out.push(' '),
                word => out.push_str(word),
            }
            rest = &rest[end..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// SQuAD answer normalisation, in SQuAD's order: lowercase (Unicode, like Python's `str.lower`),
/// delete the 32 ASCII punctuation characters of Python's `string.punctuation`, replace the words
/// `a`, `an` and `the` with a space, and collapse whitespace runs to single spaces with none at the
/// ends.
///
/// Punctuation goes before articles, so `"the-end"` becomes `"theend"` and keeps its `the`.
pub fn normalize_answer(s: &str) -> String {
    let lowered = s.to_lowercase();
    let without_punctuation: String = lowered.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    let without_articles = remove_articles(&without_punctuation);
    without_articles
        .split(is_python_whitespace)
        .filter(|token| !token.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// FlashRAG's exact match: 1.0 if the normalised prediction equals some normalised golden answer,
/// else 0.0 (also for no golden answers).
pub fn exact_match<S: AsRef<str>>(prediction: &str, goldens: &[S]) -> f64 {
    let prediction = normalize_answer(prediction);
    let hit = goldens.iter().any(|g| normalize_answer(g.as_ref()) == prediction);
    if hit {
        1.0
    } else {
        0.0
    }
}

/// FlashRAG's `acc` (Sub-EM): 1.0 if some normalised golden answer is a substring of the
/// normalised prediction, else 0.0.
///
/// A substring, not a token match: golden `"par"` is inside `"paris"`. A golden answer that
/// normalises to the empty string is inside every prediction, as in the reference.
pub fn sub_exact_match<S: AsRef<str>>(prediction: &str, goldens: &[S]) -> f64 {
    let prediction = normalize_answer(prediction);
    let hit = goldens
        .iter()
        .any(|g| prediction.contains(normalize_answer(g.as_ref()).as_str()));
    if hit {
        1.0
    } else {
        0.0
    }
}

/// Token-level F1, precision and recall of a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct TokenScores {
    /// Harmonic mean of precision and recall: `2 p r / (p + r)`.
    pub f1: f64,
    /// Shared tokens over prediction tokens.
    pub precision: f64,
    /// Shared tokens over golden tokens.
    pub recall: f64,
}

/// Token scores of two already-normalised strings.
fn token_scores_normalized(prediction: &str, golden: &str) -> TokenScores {
    let special = |s: &str| SPECIAL_ANSWERS.contains(&s);
    if (special(prediction) || special(golden)) && prediction != golden {
        return TokenScores::default();
    }
    let prediction_tokens: Vec<&str> = prediction.split(' ').filter(|t| !t.is_empty()).collect();
    let golden_tokens: Vec<&str> = golden.split(' ').filter(|t| !t.is_empty()).collect();
    // Bag-of-tokens intersection (Counter & Counter): each token counts min(times in prediction,
    // times in golden).
    let mut available: HashMap<&str, usize> = HashMap::new();
    for token in &golden_tokens {
        *available.entry(token).or_default() += 1;
    }
    let mut num_same = 0usize;
    for token in &prediction_tokens {
        if let Some(n) = available.get_mut(token) {
            if *n > 0 {
                *n -= 1;
                num_same += 1;
            }
        }
    }
    if num_same == 0 {
        return TokenScores::default();
    }
    // Same operations, in the same order, as the Python reference, so the floats agree bit for bit.
    let precision = num_same as f64 / prediction_tokens.len() as f64;
    let recall = num_same as f64 / golden_tokens.len() as f64;
    let f1 = (2.0 * precision * recall) / (precision + recall);
    TokenScores { f1, precision, recall }
}

/// Token scores of a prediction against one golden answer, both SQuAD-normalised and split on
/// spaces.
///
/// The shared tokens are the bag intersection (a token counts as often as it appears on both
/// sides). No shared tokens gives all zeros; so does a side that normalises to `yes`, `no` or
/// `noanswer` when the two sides differ.
pub fn token_scores_single(prediction: &str, golden: &str) -> TokenScores {
    token_scores_normalized(&normalize_answer(prediction), &normalize_answer(golden))
}

/// Token scores maximised over golden answers, each field on its own as FlashRAG does: the best
/// precision and the best recall may come from different golden answers than the best F1.
/// No golden answers give all zeros.
pub fn token_scores<S: AsRef<str>>(prediction: &str, goldens: &[S]) -> TokenScores {
    let prediction = normalize_answer(prediction);
    let mut best = TokenScores::default();
    for golden in goldens {
        let s = token_scores_normalized(&prediction, &normalize_answer(golden.as_ref()));
        best.f1 = best.f1.max(s.f1);
        best.precision = best.precision.max(s.precision);
        best.recall = best.recall.max(s.recall);
    }
    best
}

/// Token F1 maximised over golden answers (the `f1` of [`token_scores`]).
pub fn f1_score<S: AsRef<str>>(prediction: &str, goldens: &[S]) -> f64 {
    token_scores(prediction, goldens).f1
}

/// Every metric of one prediction, each maximised over its golden answers.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, serde::Deserialize)]
pub struct ItemMetrics {
    /// Exact match, 0 or 1.
    pub em: f64,
    /// Sub-EM, 0 or 1.
    pub acc: f64,
    /// Token F1.
    pub f1: f64,
    /// Token precision.
    pub precision: f64,
    /// Token recall.
    pub recall: f64,
}

/// Scores one prediction against its golden answers.
pub fn score_item<S: AsRef<str>>(prediction: &str, goldens: &[S]) -> ItemMetrics {
    let tokens = token_scores(prediction, goldens);
    ItemMetrics {
        em: exact_match(prediction, goldens),
        acc: sub_exact_match(prediction, goldens),
        f1: tokens.f1,
        precision: tokens.precision,
        recall: tokens.recall,
    }
}

/// Metrics averaged over a data set (FlashRAG's per-metric means), with the number of items.
///
/// An empty set has `count` 0 and every mean 0.0 (not NaN, which JSON cannot hold).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Metrics {
    /// Number of items averaged.
    pub count: usize,
    /// Mean exact match.
    pub em: f64,
    /// Mean Sub-EM.
    pub acc: f64,
    /// Mean token F1.
    pub f1: f64,
    /// Mean token precision.
    pub precision: f64,
    /// Mean token recall.
    pub recall: f64,
}

impl Metrics {
    /// Averages per-item metrics.
    pub fn from_items<I: IntoIterator<Item = ItemMetrics>>(items: I) -> Self {
        let mut sum = Metrics::default();
        for item in items {
            sum.count += 1;
            sum.em += item.em;
            sum.acc += item.acc;
            sum.f1 += item.f1;
            sum.precision += item.precision;
            sum.recall += item.recall;
        }
        if sum.count == 0 {
            return sum;
        }
        let n = sum.count as f64;
        Metrics {
            count: sum.count,
            em: sum.em / n,
            acc: sum.acc / n,
            f1: sum.f1 / n,
            precision: sum.precision / n,
            recall: sum.recall / n,
        }
    }

    /// Scores and averages `(prediction, golden answers)` pairs.
    pub fn evaluate<'a, S, I>(pairs: I) -> Self
    where
        S: AsRef<str> + 'a,
        I: IntoIterator<Item = (&'a str, &'a [S])>,
    {
        Self::from_items(
            pairs
                .into_iter()
                .map(|(prediction, goldens)| score_item(prediction, goldens)),
        )
    }
}

impl FromIterator<ItemMetrics> for Metrics {
    fn from_iter<I: IntoIterator<Item = ItemMetrics>>(iter: I) -> Self {
        Self::from_items(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn assert_scores(s: TokenScores, f1: f64, precision: f64, recall: f64) {
        assert!(close(s.f1, f1), "f1 {} != {}", s.f1, f1);
        assert!(
            close(s.precision, precision),
            "precision {} != {}",
            s.precision,
            precision
        );
        assert!(close(s.recall, recall), "recall {} != {}", s.recall, recall);
    }

    #[test]
    fn normalize_lowercases_and_collapses_whitespace() {
        assert_eq!(normalize_answer("  Paris   FRANCE \n"), "paris france");
        assert_eq!(normalize_answer("\tNew\u{a0}York\u{3000}City"), "new york city");
        // Python's str.split() splits on U+001F (unit separator); Rust's is_whitespace does not.
        assert_eq!(normalize_answer("Hello\u{1f}World"), "hello world");
        assert_eq!(normalize_answer(""), "");
        assert_eq!(normalize_answer("   "), "");
    }

    #[test]
    fn normalize_removes_ascii_punctuation_only() {
        // "U.S.A." -> "usa"; "don't" -> "dont"; "rock-n-roll" -> "rocknroll".
        assert_eq!(normalize_answer("U.S.A."), "usa");
        assert_eq!(normalize_answer("Don't stop"), "dont stop");
        assert_eq!(normalize_answer("rock-n-roll"), "rocknroll");
        assert_eq!(normalize_answer("$1,000,000!"), "1000000");
        assert_eq!(normalize_answer(r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##), "");
        // Non-ASCII punctuation stays: « » and the en dash are not in string.punctuation.
        assert_eq!(normalize_answer("«Paris» – France"), "«paris» – france");
    }

    #[test]
    fn normalize_removes_articles_as_whole_words() {
        assert_eq!(normalize_answer("The Eiffel Tower"), "eiffel tower");
        assert_eq!(normalize_answer("An apple a day"), "apple day");
        assert_eq!(normalize_answer("a an the"), "");
        // Not inside words.
        assert_eq!(normalize_answer("Theater and Anthem"), "theater and anthem");
        // Punctuation goes first: "the-end" is one word "theend"; "the." becomes the word "the".
        assert_eq!(normalize_answer("the-end"), "theend");
        assert_eq!(normalize_answer("in the."), "in");
        // Unicode letters are word characters: "thé" is not "the", "café" keeps its "a"-less self.
        assert_eq!(normalize_answer("Thé the café"), "thé café");
        // Digits and underscores (underscore is punctuation, removed first) bound words too.
        assert_eq!(normalize_answer("the2 a_b"), "the2 ab");
    }

    #[test]
    fn normalize_unicode_lowercasing() {
        assert_eq!(normalize_answer("ZÜRICH"), "zürich");
        assert_eq!(normalize_answer("São Paulo"), "são paulo");
        // Final sigma, as Python's str.lower(): "ΟΔΟΣ" -> "οδος" ending in ς (U+03C2).
        assert_eq!(normalize_answer("ΟΔΟΣ"), "οδο\u{3c2}");
        assert_eq!(normalize_answer("巴黎"), "巴黎");
    }

    #[test]
    fn exact_match_after_normalisation() {
        assert_eq!(exact_match("The Eiffel Tower.", &["eiffel tower"]), 1.0);
        assert_eq!(exact_match("Eiffel Tower Paris", &["Eiffel Tower"]), 0.0);
        // Max over goldens: the second one matches.
        assert_eq!(exact_match("Obama", &["Barack Obama", "obama"]), 1.0);
        assert_eq!(exact_match::<&str>("Obama", &[]), 0.0);
        assert_eq!(exact_match("", &["the"]), 1.0); // both normalise to ""
    }

    #[test]
    fn sub_exact_match_is_substring_of_prediction() {
        // "the capital is paris" -> "capital is paris" contains "paris".
        assert_eq!(sub_exact_match("The capital is Paris.", &["Paris"]), 1.0);
        // Substring, not token: "par" is inside "paris".
        assert_eq!(sub_exact_match("Paris", &["Par"]), 1.0);
        // Direction matters: golden inside prediction, not the reverse.
        assert_eq!(sub_exact_match("Paris", &["Paris France"]), 0.0);
        assert_eq!(sub_exact_match("London", &["Berlin", "london"]), 1.0);
        // A golden normalising to "" is a substring of anything.
        assert_eq!(sub_exact_match("whatever", &["The"]), 1.0);
        assert_eq!(sub_exact_match::<&str>("whatever", &[]), 0.0);
    }

    #[test]
    fn f1_full_overlap() {
        // "the eiffel tower" vs "Eiffel Tower": both "eiffel tower"; 2 shared of 2 and 2 -> p=r=f1=1.
        assert_scores(token_scores_single("the eiffel tower", "Eiffel Tower"), 1.0, 1.0, 1.0);
    }

    #[test]
    fn f1_extra_prediction_token() {
        // pred "eiffel tower paris" (3), golden "eiffel tower" (2), shared 2.
        // p = 2/3, r = 2/2 = 1, f1 = 2*(2/3)*1 / (2/3 + 1) = (4/3)/(5/3) = 0.8.
        assert_scores(
            token_scores_single("the eiffel tower paris", "Eiffel Tower"),
            0.8,
            2.0 / 3.0,
            1.0,
        );
    }

    #[test]
    fn f1_missing_prediction_token() {
        // pred "obama" (1), golden "barack obama" (2), shared 1.
        // p = 1, r = 1/2, f1 = 2*1*0.5 / 1.5 = 2/3.
        assert_scores(token_scores_single("Obama", "Barack Obama"), 2.0 / 3.0, 1.0, 0.5);
    }

    #[test]
    fn f1_counts_token_multiplicity() {
        // pred [new, new, york], golden [new, york]: shared min(2,1) + min(1,1) = 2.
        // p = 2/3, r = 1, f1 = 0.8.
        assert_scores(token_scores_single("new new york", "New York"), 0.8, 2.0 / 3.0, 1.0);
        // pred [new, york], golden [new, new, york]: shared 2; p = 1, r = 2/3, f1 = 0.8.
        assert_scores(token_scores_single("new york", "new new york"), 0.8, 1.0, 2.0 / 3.0);
    }

    #[test]
    fn f1_partial_both_sides() {
        // "São Paulo" vs "Sao Paulo": [são, paulo] vs [sao, paulo], shared 1 ("paulo").
        // p = 1/2, r = 1/2, f1 = 2*0.25/1 = 0.5.
        assert_scores(token_scores_single("São Paulo", "Sao Paulo"), 0.5, 0.5, 0.5);
        // "red green blue" vs "green blue yellow purple": shared 2; p = 2/3, r = 2/4 = 1/2,
        // f1 = 2*(2/3)*(1/2) / (2/3 + 1/2) = (2/3)/(7/6) = 4/7.
        assert_scores(
            token_scores_single("red green blue", "green blue yellow purple"),
            4.0 / 7.0,
            2.0 / 3.0,
            0.5,
        );
    }

    #[test]
    fn f1_no_overlap_or_empty() {
        assert_scores(token_scores_single("London", "Paris"), 0.0, 0.0, 0.0);
        assert_scores(token_scores_single("", "Paris"), 0.0, 0.0, 0.0);
        assert_scores(token_scores_single("The", "a"), 0.0, 0.0, 0.0); // both "" -> no tokens
    }

    #[test]
    fn f1_yes_no_rule() {
        // Equal special answers score normally.
        assert_scores(token_scores_single("Yes.", "yes"), 1.0, 1.0, 1.0);
        assert_scores(token_scores_single("noanswer", "No answer"), 0.0, 0.0, 0.0); // "noanswer" vs "no answer"
                                                                                    // Golden "yes", prediction "yes it is": they share "yes" but golden is special -> 0.
        assert_scores(token_scores_single("yes it is", "yes"), 0.0, 0.0, 0.0);
        // Prediction "no" vs golden "no way": prediction is special -> 0.
        assert_scores(token_scores_single("no", "no way"), 0.0, 0.0, 0.0);
        // Neither side special: "no way" vs "no way out" shares 2; p = 1, r = 2/3, f1 = 0.8.
        assert_scores(token_scores_single("no way", "no way out"), 0.8, 1.0, 2.0 / 3.0);
    }

    #[test]
    fn token_scores_maximise_each_field_separately() {
        // pred "red green blue" (3 tokens).
        // golden "red": shared 1, p = 1/3, r = 1, f1 = 2*(1/3)/(4/3) = 0.5.
        // golden "red green blue yellow": shared 3, p = 1, r = 3/4, f1 = 1.5/1.75 = 6/7.
        // Maxima: f1 6/7 and precision 1 from the second, recall 1 from the first.
        let s = token_scores("red green blue", &["red", "red green blue yellow"]);
        assert_scores(s, 6.0 / 7.0, 1.0, 1.0);
        assert_eq!(f1_score("red green blue", &["red", "red green blue yellow"]), s.f1);
        assert_scores(token_scores::<&str>("red", &[]), 0.0, 0.0, 0.0);
    }

    #[test]
    fn metrics_average_over_items() {
        // 1: "Paris" vs [Paris]: em 1, acc 1, f1 1, p 1, r 1.
        // 2: "Paris France" vs [Paris]: em 0, acc 1, p = 1/2, r = 1, f1 = 2/3.
        // 3: "London" vs [Paris]: all 0.
        // Means: em 1/3, acc 2/3, f1 (1 + 2/3)/3 = 5/9, precision 1.5/3 = 1/2, recall 2/3.
        let goldens = ["Paris".to_string()];
        let pairs: Vec<(&str, &[String])> = vec![
            ("Paris", &goldens[..]),
            ("Paris France", &goldens[..]),
            ("London", &goldens[..]),
        ];
        let m = Metrics::evaluate(pairs);
        assert_eq!(m.count, 3);
        assert!(close(m.em, 1.0 / 3.0));
        assert!(close(m.acc, 2.0 / 3.0));
        assert!(close(m.f1, 5.0 / 9.0));
        assert!(close(m.precision, 0.5));
        assert!(close(m.recall, 2.0 / 3.0));

        let item = score_item("Paris France", &["Paris"]);
        assert_eq!(item.em, 0.0);
        assert_eq!(item.acc, 1.0);
        assert!(close(item.f1, 2.0 / 3.0));
        let collected: Metrics = vec![item, ItemMetrics::default()].into_iter().collect();
        assert_eq!(collected.count, 2);
        assert!(close(collected.acc, 0.5));
    }

    #[test]
    fn metrics_empty_and_serialised() {
        let empty = Metrics::from_items(Vec::new());
        assert_eq!(empty, Metrics::default());
        let m = Metrics {
            count: 2,
            em: 0.5,
            acc: 1.0,
            f1: 0.75,
            precision: 0.5,
            recall: 1.0,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"count":2,"em":0.5,"acc":1.0,"f1":0.75,"precision":0.5,"recall":1.0}"#
        );
    }
}
