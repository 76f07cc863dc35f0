//! Prompt texts and retrieved-document formatting of ReSearch and Search-R1 (REFERENCE.md §1–§3).
//!
//! The texts are the reference's byte for byte: a prompt that differs by one space is a different
//! prompt to the model, so the tests compare against literal strings copied from the reference.

/// The part of ReSearch's base-model prompt (`re_search_template`) before the question.
const RE_SEARCH_BASE_PREFIX: &str = r"A conversation between User and Assistant. The user asks a question, and the assistant solves it. The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. During thinking, the assistant can invoke the wikipedia search tool to search for fact information about specific topics if needed. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags respectively, and the search query and result are enclosed within <search> </search> and <result> </result> tags respectively. For example, <think> This is the reasoning process. </think> <search> search query here </search> <result> search result here </result> <think> This is the reasoning process. </think> <answer> The final answer is \[ \boxed{answer here} \] </answer>. In the last part of the answer, the final exact answer is enclosed within \boxed{} with latex format. User: ";

/// The system message of ReSearch for instruct models (`re_search_template_sys`).
///
/// The backslashes are single, literal characters: the model sees `\[ \boxed{answer here} \]` and
/// `\boxed{}`. The question goes, unchanged, in the user message; see [`re_search_instruct_prompt`].
pub const RE_SEARCH_SYSTEM: &str = r"You are a helpful assistant that can solve the given question step by step with the help of the wikipedia search tool. Given a question, you need to first think about the reasoning process in the mind and then provide the answer. During thinking, you can invoke the wikipedia search tool to search for fact information about specific topics if needed. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags respectively, and the search query and result are enclosed within <search> </search> and <result> </result> tags respectively. For example, <think> This is the reasoning process. </think> <search> search query here </search> <result> search result here </result> <think> This is the reasoning process. </think> <answer> The final answer is \[ \boxed{answer here} \] </answer>. In the last part of the answer, the final exact answer is enclosed within \boxed{} with latex format.";

/// The part of Search-R1's prompt before the question.
const SEARCH_R1_PREFIX: &str = "Answer the given question. You must conduct reasoning inside <think> and </think> first every time you get new information. After reasoning, if you find you lack some knowledge, you can call a search engine by <search> query </search> and it will return the top searched results between <information> and </information>. You can search as many times as your want. If you find no further external knowledge needed, you can directly provide the answer inside <answer> and </answer>, without detailed illustrations. For example, <answer> Beijing </answer>. Question: ";

/// ReSearch's prompt for base models: no chat template, the question followed by a literal `.`
/// and then ` Assistant:` (no trailing space or newline).
///
/// The question is inserted exactly as given, so a question ending in `?` gives `?.`, as in the
/// reference.
pub fn re_search_template(question: &str) -> String {
    format!("{RE_SEARCH_BASE_PREFIX}{question}. Assistant:")
}

/// ReSearch's prompt for instruct models, rendered through the Qwen2.5 chat template with the
/// generation prompt: [`RE_SEARCH_SYSTEM`] as the system message and the raw question as the user
/// message.
///
/// This is the string `research_qwen2::tokenizer::render_chat` produces for those two messages with
/// `add_generation_prompt = true`; it is spelled out here so this crate depends on no model crate.
pub fn re_search_instruct_prompt(question: &str) -> String {
    format!(
        "<|im_start|>system\n{RE_SEARCH_SYSTEM}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    )
}

/// The question as Search-R1's data preparation leaves it: surrounding whitespace stripped (Python
/// `str.strip()`), then `?` appended unless it already ends with one.
///
/// An empty question becomes `"?"` (the reference raises `IndexError` there).
pub fn search_r1_question(question: &str) -> String {
    let mut q = question.trim_matches(crate::metrics::is_python_whitespace).to_string();
    if !q.ends_with('?') {
        q.push('?');
    }
    q
}

/// Search-R1's prompt, the content of its one user message, for a question (normalised by
/// [`search_r1_question`]).
///
/// Ends with a newline after the question: Search-R1's `make_prefix` is
/// `"""...Question: {question}\n"""`. REFERENCE.md §2 shows the text in a code block, which cannot
/// show that final newline.
pub fn search_r1_prompt(question: &str) -> String {
    format!("{SEARCH_R1_PREFIX}{}\n", search_r1_question(question))
}

/// Retrieved passages the ReSearch way: their `contents` joined with `"\n\n"` (no trailing
/// separator; no passages give the empty string).
pub fn re_search_docs<S: AsRef<str>>(contents: &[S]) -> String {
    contents.iter().map(AsRef::as_ref).collect::<Vec<_>>().join("\n\n")
}

/// The text ReSearch appends after a `</search>` (loss mask 0): `" <result>\n" + docs +
/// "\n</result>"`, with the leading space. `docs` is usually [`re_search_docs`]'s output.
pub fn re_search_result_text(docs: &str) -> String {
    format!(" <result>\n{docs}\n</result>")
}

/// Retrieved passages the Search-R1 way: `"Doc {i}(Title: {title}) {text}\n"` per passage, `i`
/// from 1, concatenated.
///
/// The title is the first line of `contents` (its quotes kept) and the text everything after the
/// first `"\n"` (further newlines kept); a passage without a newline is all title and an empty
/// text, which leaves `"Doc {i}(Title: {title}) \n"`.
pub fn search_r1_docs<S: AsRef<str>>(contents: &[S]) -> String {
    let mut out = String::new();
    for (i, content) in contents.iter().enumerate() {
        let content = content.as_ref();
        let (title, text) = content.split_once('\n').unwrap_or((content, ""));
        out.push_str(&format!("Doc {}(Title: {title}) {text}\n", i + 1));
    }
    out
}

/// Search-R1's observation around formatted passages: `"\n\n<information>{docs}</information>\n\n"`.
pub fn search_r1_observation(docs: &str) -> String {
    format!("\n\n<information>{docs}</information>\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected strings are REFERENCE.md §2 copied verbatim, with the question written in by hand.

    #[test]
    fn base_template_is_the_reference_text() {
        let expected = r"A conversation between User and Assistant. The user asks a question, and the assistant solves it. The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. During thinking, the assistant can invoke the wikipedia search tool to search for fact information about specific topics if needed. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags respectively, and the search query and result are enclosed within <search> </search> and <result> </result> tags respectively. For example, <think> This is the reasoning process. </think> <search> search query here </search> <result> search result here </result> <think> This is the reasoning process. </think> <answer> The final answer is \[ \boxed{answer here} \] </answer>. In the last part of the answer, the final exact answer is enclosed within \boxed{} with latex format. User: Who wrote the novel Dracula. Assistant:";
        assert_eq!(re_search_template("Who wrote the novel Dracula"), expected);
    }

    #[test]
    fn base_template_keeps_a_question_mark_before_the_dot() {
        let p = re_search_template("Who wrote Hamlet?");
        assert!(p.ends_with(r"\boxed{} with latex format. User: Who wrote Hamlet?. Assistant:"));
        assert!(!p.ends_with(' ') && !p.ends_with('\n'));
    }

    #[test]
    fn system_prompt_is_the_reference_text() {
        let expected = r"You are a helpful assistant that can solve the given question step by step with the help of the wikipedia search tool. Given a question, you need to first think about the reasoning process in the mind and then provide the answer. During thinking, you can invoke the wikipedia search tool to search for fact information about specific topics if needed. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags respectively, and the search query and result are enclosed within <search> </search> and <result> </result> tags respectively. For example, <think> This is the reasoning process. </think> <search> search query here </search> <result> search result here </result> <think> This is the reasoning process. </think> <answer> The final answer is \[ \boxed{answer here} \] </answer>. In the last part of the answer, the final exact answer is enclosed within \boxed{} with latex format.";
        assert_eq!(RE_SEARCH_SYSTEM, expected);
    }

    #[test]
    fn system_prompt_has_single_literal_backslashes() {
        // `\[`, `\boxed{answer here}`, `\]` and `\boxed{}`: four backslashes, none doubled.
        assert_eq!(RE_SEARCH_SYSTEM.matches('\\').count(), 4);
        assert!(!RE_SEARCH_SYSTEM.contains("\\\\"));
        assert!(RE_SEARCH_SYSTEM.contains("The final answer is \\[ \\boxed{answer here} \\] </answer>."));
        assert!(RE_SEARCH_SYSTEM.ends_with("enclosed within \\boxed{} with latex format."));
    }

    #[test]
    fn instruct_prompt_is_the_rendered_chat() {
        let expected = String::from("<|im_start|>system\n")
            + r"You are a helpful assistant that can solve the given question step by step with the help of the wikipedia search tool. Given a question, you need to first think about the reasoning process in the mind and then provide the answer. During thinking, you can invoke the wikipedia search tool to search for fact information about specific topics if needed. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags respectively, and the search query and result are enclosed within <search> </search> and <result> </result> tags respectively. For example, <think> This is the reasoning process. </think> <search> search query here </search> <result> search result here </result> <think> This is the reasoning process. </think> <answer> The final answer is \[ \boxed{answer here} \] </answer>. In the last part of the answer, the final exact answer is enclosed within \boxed{} with latex format."
            + "<|im_end|>\n<|im_start|>user\nWho wrote Hamlet?<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(re_search_instruct_prompt("Who wrote Hamlet?"), expected);
    }

    #[test]
    fn search_r1_prompt_is_the_reference_text() {
        // REFERENCE.md's text plus Search-R1's final "\n" (see `search_r1_prompt`).
        let expected = "Answer the given question. You must conduct reasoning inside <think> and </think> first every time you get new information. After reasoning, if you find you lack some knowledge, you can call a search engine by <search> query </search> and it will return the top searched results between <information> and </information>. You can search as many times as your want. If you find no further external knowledge needed, you can directly provide the answer inside <answer> and </answer>, without detailed illustrations. For example, <answer> Beijing </answer>. Question: Who wrote Hamlet?\n";
        assert_eq!(search_r1_prompt("Who wrote Hamlet?"), expected);
        // `?` appended when missing, surrounding whitespace stripped first.
        assert_eq!(search_r1_prompt("  Who wrote Hamlet \n"), expected);
        assert_eq!(search_r1_prompt("Who wrote Hamlet"), expected);
    }

    #[test]
    fn search_r1_question_appends_question_mark_once() {
        assert_eq!(search_r1_question("Who is it?"), "Who is it?");
        assert_eq!(search_r1_question("Who is it"), "Who is it?");
        assert_eq!(search_r1_question("Who is it ?"), "Who is it ?");
        assert_eq!(search_r1_question("Who is it? "), "Who is it?");
        // Full-width question mark is not `?`.
        assert_eq!(search_r1_question("誰？"), "誰？?");
        // Python's str.strip() also strips \x1c..\x1f.
        assert_eq!(search_r1_question("\u{1f}Who\u{1c}"), "Who?");
        assert_eq!(search_r1_question(""), "?");
    }

    #[test]
    fn re_search_docs_join_with_blank_line() {
        let docs = [
            "\"Evan Morris\"\nEvan Morris Evan L. Morris (January 26, 1977",
            "Paris\nParis is the capital.",
        ];
        let joined = re_search_docs(&docs);
        assert_eq!(
            joined,
            "\"Evan Morris\"\nEvan Morris Evan L. Morris (January 26, 1977\n\nParis\nParis is the capital."
        );
        assert_eq!(
            re_search_result_text(&joined),
            " <result>\n\"Evan Morris\"\nEvan Morris Evan L. Morris (January 26, 1977\n\nParis\nParis is the capital.\n</result>"
        );
        assert_eq!(re_search_docs(&["only"]), "only");
        assert_eq!(re_search_docs::<&str>(&[]), "");
        assert_eq!(re_search_result_text(""), " <result>\n\n</result>");
    }

    #[test]
    fn search_r1_docs_split_title_and_text() {
        let docs = [
            "\"Evan Morris\"\nEvan Morris Evan L. Morris (January 26, 1977",
            "Paris\nline one\nline two",
            "No newline here",
        ];
        assert_eq!(
            search_r1_docs(&docs),
            "Doc 1(Title: \"Evan Morris\") Evan Morris Evan L. Morris (January 26, 1977\n\
             Doc 2(Title: Paris) line one\nline two\n\
             Doc 3(Title: No newline here) \n"
        );
        assert_eq!(search_r1_docs::<String>(&[]), "");
        assert_eq!(
            search_r1_observation("Doc 1(Title: T) x\n"),
            "\n\n<information>Doc 1(Title: T) x\n</information>\n\n"
        );
    }
}
