//! An LLM judge through an OpenAI-compatible `/v1/chat/completions` endpoint (REFERENCE.md §7:
//! the paper uses gpt-4o-mini at temperature 0 answering JSON `{"rationale", "judgement"}`; the
//! score is the share judged correct).
//!
//! The judge prompt ([`judge_messages`]) is **our wording**: REFERENCE.md does not give the paper's
//! exact text, only its model, temperature and answer format. Scores from it are comparable with
//! each other, not exactly with the paper's LLM-judge column.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::EvalError;

/// A judge's verdict on one prediction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Judgement {
    /// `"correct"` or `"incorrect"`.
    pub judgement: String,
    /// The judge's explanation.
    pub rationale: String,
    /// The judge model.
    pub model: String,
}

impl Judgement {
    /// Whether the judge said correct.
    pub fn is_correct(&self) -> bool {
        self.judgement == "correct"
    }
}

/// Where and how to call the judge.
#[derive(Debug, Clone)]
pub struct JudgeConfig {
    /// Base URL (`https://api.openai.com`, `http://host:8000/v1`) or the full
    /// `.../chat/completions` URL.
    pub url: String,
    /// Model name, e.g. `gpt-4o-mini`.
    pub model: String,
    /// Sent as `Authorization: Bearer <key>` when given.
    pub api_key: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries of a failed call (transport error, HTTP 429 or 5xx, or an answer that is not the
    /// expected JSON), with exponential backoff from `backoff`.
    pub retries: usize,
    /// First backoff.
    pub backoff: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
}

impl JudgeConfig {
    /// Defaults for a URL and model: no key, 60 s timeout, 4 retries from 1 s, 8 in flight.
    pub fn new(url: &str, model: &str) -> Self {
        Self {
            url: url.to_string(),
            model: model.to_string(),
            api_key: None,
            timeout: Duration::from_secs(60),
            retries: 4,
            backoff: Duration::from_secs(1),
            concurrency: 8,
        }
    }
}

/// The chat-completions URL for a base URL: kept when it already ends in `/chat/completions`,
/// `/chat/completions` appended after a trailing `/v1`, else `/v1/chat/completions` appended.
pub fn chat_completions_url(url: &str) -> String {
    let base = url.trim_end_matches('/');
    if base.ends_with("/chat/completions") {
        base.to_string()
    } else if base.ends_with("/v1") {
        format!("{base}/chat/completions")
    } else {
        format!("{base}/v1/chat/completions")
    }
}

const SYSTEM: &str = "You are a careful, impartial grader of short answers to questions.";

/// The judge's messages for one prediction (our wording; see the module docs).
pub fn judge_messages(question: &str, golden: &[String], prediction: &str) -> serde_json::Value {
    let golden = serde_json::to_string(golden).expect("strings serialise");
    let prediction = if prediction.trim().is_empty() {
        "(no answer)"
    } else {
        prediction
    };
    let user = format!(
        "Decide whether the predicted answer to the question is correct.\n\n\
         Question: {question}\n\
         Golden answers (any one of them is right): {golden}\n\
         Predicted answer: {prediction}\n\n\
         The prediction is correct if it refers to the same entity, value or fact as one of the golden \
         answers; differences in wording, spelling, formatting, articles, or a slightly more or less \
         detailed but still unambiguous form do not matter. It is incorrect if it names something \
         else, is missing, contradicts itself, or hedges between several candidates.\n\n\
         Reply with a JSON object only, in this form:\n\
         {{\"rationale\": \"<one or two sentences>\", \"judgement\": \"correct\" or \"incorrect\"}}"
    );
    serde_json::json!([
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user},
    ])
}

/// Reads the judge's reply: a JSON object (possibly inside a ```json fence or surrounded by
/// text) with `judgement` `"correct"` or `"incorrect"` (any case) and an optional `rationale`.
pub fn parse_judgement(content: &str, model: &str) -> Result<Judgement, String> {
    let (Some(start), Some(end)) = (content.find('{'), content.rfind('}')) else {
        return Err(format!("no JSON object in the judge's reply: {content:?}"));
    };
    if end < start {
        return Err(format!("no JSON object in the judge's reply: {content:?}"));
    }
    let v: serde_json::Value = serde_json::from_str(&content[start..=end])
        .map_err(|e| format!("the judge's reply is not valid JSON ({e}): {content:?}"))?;
    let judgement = v
        .get("judgement")
        .and_then(|j| j.as_str())
        .map(|j| j.trim().to_lowercase())
        .ok_or_else(|| format!("the judge's reply has no string field \"judgement\": {content:?}"))?;
    if judgement != "correct" && judgement != "incorrect" {
        return Err(format!(
            "the judge's \"judgement\" is {judgement:?} (expected \"correct\" or \"incorrect\")"
        ));
    }
    Ok(Judgement {
        judgement,
        rationale: v
            .get("rationale")
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_string(),
        model: model.to_string(),
    })
}

/// A client of the judge endpoint.
pub struct Judge {
    config: JudgeConfig,
    endpoint: String,
    agent: ureq::Agent,
}

enum Failure {
    /// Worth another try.
    Retry(String),
    /// Will not get better (bad key, unknown model, ...).
    Fatal(String),
}

impl Judge {
    /// A client; nothing is sent until [`Judge::judge`].
    pub fn new(config: JudgeConfig) -> Self {
        Self {
            endpoint: chat_completions_url(&config.url),
            agent: ureq::AgentBuilder::new().timeout(config.timeout).build(),
            config,
        }
    }

    /// The judge model's name.
    pub fn model(&self) -> &str {
        &self.config.model
    }

    fn call(&self, question: &str, golden: &[String], prediction: &str) -> Result<Judgement, Failure> {
        let body = serde_json::json!({
            "model": self.config.model,
            "temperature": 0,
            "messages": judge_messages(question, golden, prediction),
            "response_format": {"type": "json_object"},
        });
        let mut req = self.agent.post(&self.endpoint);
        if let Some(key) = &self.config.api_key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        let url = &self.endpoint;
        let resp = match req.send_json(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let text: String = text.chars().take(500).collect();
                let msg = format!("{url}: HTTP {code}: {text}");
                return Err(if code == 429 || code >= 500 {
                    Failure::Retry(msg)
                } else {
                    Failure::Fatal(msg)
                });
            }
            Err(ureq::Error::Transport(t)) if t.kind() == ureq::ErrorKind::UnknownScheme => {
                return Err(Failure::Fatal(format!(
                    "{url}: {t} (this build has no TLS: use an http:// endpoint, e.g. a local \
                     OpenAI-compatible server or proxy, or build research-cli with `--features tls`)"
                )))
            }
            Err(e) => return Err(Failure::Retry(format!("{url}: {e}"))),
        };
        let v: serde_json::Value = resp
            .into_json()
            .map_err(|e| Failure::Retry(format!("{url}: response is not JSON: {e}")))?;
        let content = v["choices"][0]["message"]["content"].as_str().ok_or_else(|| {
            Failure::Retry(format!(
                "{url}: expected choices[0].message.content in the response, got {}",
                v.to_string().chars().take(300).collect::<String>()
            ))
        })?;
        parse_judgement(content, &self.config.model).map_err(|e| Failure::Retry(format!("{url}: {e}")))
    }

    /// Judges one prediction, retrying as configured.
    pub fn judge(&self, question: &str, golden: &[String], prediction: &str) -> Result<Judgement, EvalError> {
        let attempts = self.config.retries + 1;
        let mut last = String::new();
        for attempt in 0..attempts {
            match self.call(question, golden, prediction) {
                Ok(j) => return Ok(j),
                Err(Failure::Fatal(m)) => return Err(EvalError::Judge(m)),
                Err(Failure::Retry(m)) => last = m,
            }
            tracing::warn!(attempt = attempt + 1, attempts, message = %last, "judge call failed");
            if attempt + 1 < attempts {
                std::thread::sleep(self.config.backoff * 2u32.pow(attempt as u32));
            }
        }
        Err(EvalError::Judge(format!("failed {attempts} times; last error: {last}")))
    }

    /// Judges `(question, golden answers, prediction)` triples, `concurrency` at a time; the
    /// verdicts come back in order, or the first error.
    pub fn judge_all(&self, items: &[(&str, &[String], &str)]) -> Result<Vec<Judgement>, EvalError> {
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<Judgement, EvalError>>>> =
            Mutex::new((0..items.len()).map(|_| None).collect());
        let workers = self.config.concurrency.clamp(1, items.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((q, g, p)) = items.get(i) else { break };
                    let r = self.judge(q, g, p);
                    let failed = r.is_err();
                    results.lock().expect("no panics while holding the lock")[i] = Some(r);
                    if failed {
                        // Stop handing out work; the others finish their current item.
                        next.store(items.len(), Ordering::Relaxed);
                        break;
                    }
                });
            }
        });
        let mut out = Vec::with_capacity(items.len());
        for r in results.into_inner().expect("no panics while holding the lock") {
            match r {
                Some(Ok(j)) => out.push(j),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        if out.len() != items.len() {
            return Err(EvalError::Judge("judging stopped early".into()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            chat_completions_url("https://api.openai.com"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            chat_completions_url("http://h:8000/v1/"),
            "http://h:8000/v1/chat/completions"
        );
        assert_eq!(
            chat_completions_url("http://h/v1/chat/completions"),
            "http://h/v1/chat/completions"
        );
    }

    #[test]
    fn replies_are_parsed_strictly() {
        let j = parse_judgement(r#"{"rationale": "Same city.", "judgement": "correct"}"#, "m").unwrap();
        assert_eq!(
            j,
            Judgement {
                judgement: "correct".into(),
                rationale: "Same city.".into(),
                model: "m".into()
            }
        );
        let fenced = "```json\n{\"judgement\": \" Incorrect \", \"rationale\": \"No.\"}\n```";
        assert_eq!(parse_judgement(fenced, "m").unwrap().judgement, "incorrect");
        assert!(!parse_judgement(fenced, "m").unwrap().is_correct());
        assert!(parse_judgement("correct", "m").unwrap_err().contains("no JSON object"));
        assert!(parse_judgement(r#"{"judgement": "maybe"}"#, "m")
            .unwrap_err()
            .contains("expected \"correct\" or \"incorrect\""));
        assert!(parse_judgement(r#"{"verdict": "correct"}"#, "m")
            .unwrap_err()
            .contains("no string field \"judgement\""));
    }

    #[test]
    fn prompt_carries_question_goldens_and_prediction() {
        let m = judge_messages("Who?", &["A B".to_string(), "C".to_string()], "");
        let user = m[1]["content"].as_str().unwrap();
        assert!(user.contains("Question: Who?\n"));
        assert!(user.contains(r#"Golden answers (any one of them is right): ["A B","C"]"#));
        assert!(user.contains("Predicted answer: (no answer)\n"));
        assert_eq!(m[0]["role"], "system");
    }
}
