//! The routes' request bodies and response texts (REFERENCE.md §1), independent of the HTTP stack.
//!
//! Requests are read field by field from a JSON value so that every error names the field and what
//! was expected. Unknown fields are ignored (as pydantic does). Booleans also accept pydantic's
//! lax forms (`"true"`, `"False"`, `0`, `1`, ...), integers also integral floats (`5.0`).

use serde_json::{Map, Value};

use crate::config::Limits;
use crate::pyjson::{push_score, push_str};
use crate::Hit;

/// An HTTP error answer: status and the `detail` of `{"detail": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }
    fn invalid(detail: impl Into<String>) -> Self {
        Self::new(422, detail)
    }
    /// `{"detail":"..."}`.
    pub fn body(&self) -> String {
        let mut s = String::from("{\"detail\":");
        push_str(&mut s, &self.detail);
        s.push('}');
        s
    }
}

/// The reference's answer to an empty or blank query.
pub(crate) const EMPTY_QUERY: &str = "Query content cannot be empty";

/// A validated search request: queries, k and whether scores are wanted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SearchRequest {
    pub queries: Vec<String>,
    pub k: usize,
    pub scores: bool,
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::new(400, format!("request body is not valid JSON: {e}")))?;
    match value {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::invalid(format!(
            "request body must be a JSON object, got {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn string_field(m: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    match m.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(ApiError::invalid(format!(
            "field `{name}` must be a string, got {}",
            kind(v)
        ))),
        None => Err(ApiError::invalid(format!("field `{name}` is required (a string)"))),
    }
}

fn string_list_field(m: &Map<String, Value>, name: &str, limits: &Limits) -> Result<Vec<String>, ApiError> {
    let items = match m.get(name) {
        Some(Value::Array(items)) => items,
        Some(v) => {
            return Err(ApiError::invalid(format!(
                "field `{name}` must be a list of strings, got {}",
                kind(v)
            )))
        }
        None => {
            return Err(ApiError::invalid(format!(
                "field `{name}` is required (a list of strings)"
            )))
        }
    };
    if items.len() > limits.max_queries {
        return Err(ApiError::invalid(format!(
            "field `{name}` has {} queries; the limit is {} per request",
            items.len(),
            limits.max_queries
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            v => Err(ApiError::invalid(format!(
                "`{name}[{i}]` must be a string, got {}",
                kind(v)
            ))),
        })
        .collect()
}

/// An optional integer field: `None` when absent or null.
fn int_field(m: &Map<String, Value>, name: &str) -> Result<Option<i128>, ApiError> {
    let bad = |v: &Value| ApiError::invalid(format!("field `{name}` must be an integer, got {}", kind(v)));
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i as i128))
            } else if let Some(u) = n.as_u64() {
                Ok(Some(u as i128))
            } else {
                let f = n.as_f64().ok_or_else(|| bad(v))?;
                if f.fract() == 0.0 && f.abs() < 1e30 {
                    Ok(Some(f as i128))
                } else {
                    Err(bad(v))
                }
            }
        }
        Some(v) => Err(bad(v)),
    }
}

/// An optional boolean field (`default` when absent or null), with pydantic's lax spellings.
fn bool_field(m: &Map<String, Value>, name: &str, default: bool) -> Result<bool, ApiError> {
    let bad = |v: &Value| ApiError::invalid(format!("field `{name}` must be a boolean, got {v}"));
    match m.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v @ Value::Number(n)) => match n.as_u64() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(bad(v)),
        },
        Some(v @ Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "on" | "1" => Ok(true),
            "false" | "f" | "no" | "n" | "off" | "0" => Ok(false),
            _ => Err(bad(v)),
        },
        Some(v) => Err(bad(v)),
    }
}

fn check_k(name: &str, k: i128, limits: &Limits) -> Result<usize, ApiError> {
    if k < 1 || k > limits.max_top_k as i128 {
        return Err(ApiError::invalid(format!(
            "field `{name}` must be between 1 and {}, got {k}",
            limits.max_top_k
        )));
    }
    Ok(k as usize)
}

fn check_queries(name: &str, queries: &[String], single: bool, limits: &Limits) -> Result<(), ApiError> {
    for (i, q) in queries.iter().enumerate() {
        if q.trim().is_empty() {
            return Err(ApiError::new(400, EMPTY_QUERY));
        }
        let chars = q.chars().count();
        if chars > limits.max_query_chars {
            let what = if single {
                format!("`{name}`")
            } else {
                format!("`{name}[{i}]`")
            };
            return Err(ApiError::invalid(format!(
                "{what} is {chars} characters long; the limit is {}",
                limits.max_query_chars
            )));
        }
    }
    Ok(())
}

/// ReSearch `POST /search`: `{"query": str, "top_n": int = 10, "return_score": bool = false}`.
pub(crate) fn parse_search(body: &[u8], limits: &Limits, default_top_n: usize) -> Result<SearchRequest, ApiError> {
    let m = object(body)?;
    let query = string_field(&m, "query")?;
    let top_n = int_field(&m, "top_n")?;
    let scores = bool_field(&m, "return_score", false)?;
    let queries = vec![query];
    check_queries("query", &queries, true, limits)?;
    let k = check_k("top_n", top_n.unwrap_or(default_top_n as i128), limits)?;
    Ok(SearchRequest { queries, k, scores })
}

/// ReSearch `POST /batch_search`: `{"query": [str], "top_n": int = 10, "return_score": bool = false}`.
pub(crate) fn parse_batch_search(
    body: &[u8],
    limits: &Limits,
    default_top_n: usize,
) -> Result<SearchRequest, ApiError> {
    let m = object(body)?;
    let queries = string_list_field(&m, "query", limits)?;
    let top_n = int_field(&m, "top_n")?;
    let scores = bool_field(&m, "return_score", false)?;
    check_queries("query", &queries, false, limits)?;
    let k = check_k("top_n", top_n.unwrap_or(default_top_n as i128), limits)?;
    Ok(SearchRequest { queries, k, scores })
}

/// Search-R1 `POST /retrieve`: `{"queries": [str], "topk": int|null, "return_scores": bool = false}`.
/// As in Search-R1 (`if not request.topk`), a missing, null or 0 `topk` means the default.
pub(crate) fn parse_retrieve(body: &[u8], limits: &Limits, default_topk: usize) -> Result<SearchRequest, ApiError> {
    let m = object(body)?;
    let queries = string_list_field(&m, "queries", limits)?;
    let topk = int_field(&m, "topk")?;
    let scores = bool_field(&m, "return_scores", false)?;
    check_queries("queries", &queries, false, limits)?;
    let k = match topk {
        None | Some(0) => default_topk as i128,
        Some(k) => k,
    };
    let k = check_k("topk", k, limits)?;
    Ok(SearchRequest { queries, k, scores })
}

fn push_doc(out: &mut String, hit: &Hit) {
    out.push_str("{\"id\":");
    push_str(out, &hit.id);
    out.push_str(",\"contents\":");
    push_str(out, &hit.contents);
    out.push('}');
}

fn push_list<T>(out: &mut String, items: &[T], mut each: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(out, item);
    }
    out.push(']');
}

fn push_docs(out: &mut String, hits: &[Hit]) {
    push_list(out, hits, push_doc);
}

fn push_scores(out: &mut String, hits: &[Hit]) {
    push_list(out, hits, |o, h| push_score(o, h.score));
}

/// `/search`: `[doc, ...]`, or with scores `[[doc, ...], [score, ...]]`.
pub(crate) fn search_response(hits: &[Hit], scores: bool) -> String {
    let mut out = String::new();
    if scores {
        out.push('[');
        push_docs(&mut out, hits);
        out.push(',');
        push_scores(&mut out, hits);
        out.push(']');
    } else {
        push_docs(&mut out, hits);
    }
    out
}

/// `/batch_search`: `[[doc, ...], ...]`, or with scores `[[[doc, ...], ...], [[score, ...], ...]]`.
pub(crate) fn batch_search_response(results: &[Vec<Hit>], scores: bool) -> String {
    let mut out = String::new();
    if scores {
        out.push('[');
        push_list(&mut out, results, |o, h| push_docs(o, h));
        out.push(',');
        push_list(&mut out, results, |o, h| push_scores(o, h));
        out.push(']');
    } else {
        push_list(&mut out, results, |o, h| push_docs(o, h));
    }
    out
}

/// `/retrieve`: `{"result": [[{"document": doc, "score": s}, ...], ...]}`, or without scores
/// `{"result": [[doc, ...], ...]}`.
pub(crate) fn retrieve_response(results: &[Vec<Hit>], scores: bool) -> String {
    let mut out = String::from("{\"result\":");
    if scores {
        push_list(&mut out, results, |o, hits| {
            push_list(o, hits, |o, h| {
                o.push_str("{\"document\":");
                push_doc(o, h);
                o.push_str(",\"score\":");
                push_score(o, h.score);
                o.push('}');
            })
        });
    } else {
        push_list(&mut out, results, |o, h| push_docs(o, h));
    }
    out.push('}');
    out
}

/// `/health`: `{"status":"healthy","retrievers":{"total":N,"available":k}}`.
pub(crate) fn health_response(total: usize, available: usize) -> String {
    format!("{{\"status\":\"healthy\",\"retrievers\":{{\"total\":{total},\"available\":{available}}}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str, contents: &str, score: f32) -> Hit {
        Hit {
            id: id.into(),
            contents: contents.into(),
            score,
        }
    }

    fn limits() -> Limits {
        Limits::default()
    }

    /// Expected texts written by hand from REFERENCE.md §1 and Python's compact json.dumps.
    #[test]
    fn response_shapes() {
        let a = hit("0", "\"Evan Morris\"\nEvan", 0.5);
        let b = hit("7", "T\ntext", -0.25);
        assert_eq!(
            search_response(&[a.clone(), b.clone()], false),
            r#"[{"id":"0","contents":"\"Evan Morris\"\nEvan"},{"id":"7","contents":"T\ntext"}]"#
        );
        assert_eq!(
            search_response(&[a.clone(), b.clone()], true),
            r#"[[{"id":"0","contents":"\"Evan Morris\"\nEvan"},{"id":"7","contents":"T\ntext"}],[0.5,-0.25]]"#
        );
        let results = vec![vec![a.clone()], vec![b.clone(), a.clone()]];
        assert_eq!(
            batch_search_response(&results, true),
            r#"[[[{"id":"0","contents":"\"Evan Morris\"\nEvan"}],[{"id":"7","contents":"T\ntext"},{"id":"0","contents":"\"Evan Morris\"\nEvan"}]],[[0.5],[-0.25,0.5]]]"#
        );
        assert_eq!(
            retrieve_response(&results[..1], true),
            r#"{"result":[[{"document":{"id":"0","contents":"\"Evan Morris\"\nEvan"},"score":0.5}]]}"#
        );
        assert_eq!(
            retrieve_response(&results[..1], false),
            r#"{"result":[[{"id":"0","contents":"\"Evan Morris\"\nEvan"}]]}"#
        );
        assert_eq!(search_response(&[], true), "[[],[]]");
        assert_eq!(batch_search_response(&[], false), "[]");
        assert_eq!(
            health_response(2, 1),
            r#"{"status":"healthy","retrievers":{"total":2,"available":1}}"#
        );
        assert_eq!(
            ApiError::new(400, EMPTY_QUERY).body(),
            r#"{"detail":"Query content cannot be empty"}"#
        );
    }

    #[test]
    fn search_defaults_and_lax_types() {
        let r = parse_search(br#"{"query":"x"}"#, &limits(), 10).unwrap();
        assert_eq!((r.queries, r.k, r.scores), (vec!["x".to_string()], 10, false));
        let r = parse_search(
            br#"{"query":"x","top_n":5.0,"return_score":"True","extra":1}"#,
            &limits(),
            10,
        )
        .unwrap();
        assert_eq!((r.k, r.scores), (5, true));
        let r = parse_search(br#"{"query":"x","top_n":null,"return_score":"False"}"#, &limits(), 10).unwrap();
        assert_eq!((r.k, r.scores), (10, false));
    }

    #[test]
    fn retrieve_topk_zero_or_null_is_default() {
        for body in [
            &br#"{"queries":["a"]}"#[..],
            br#"{"queries":["a"],"topk":null}"#,
            br#"{"queries":["a"],"topk":0}"#,
        ] {
            assert_eq!(parse_retrieve(body, &limits(), 3).unwrap().k, 3);
        }
    }

    #[test]
    fn bad_requests() {
        let l = limits();
        let err = |r: Result<SearchRequest, ApiError>| r.unwrap_err();
        assert_eq!(err(parse_search(b"{not json", &l, 10)).status, 400);
        assert_eq!(err(parse_search(b"[1]", &l, 10)).status, 422);
        assert_eq!(
            err(parse_search(b"{}", &l, 10)).detail,
            "field `query` is required (a string)"
        );
        assert_eq!(
            err(parse_search(br#"{"query":3}"#, &l, 10)).detail,
            "field `query` must be a string, got a number"
        );
        assert_eq!(
            err(parse_search(br#"{"query":" \n"}"#, &l, 10)),
            ApiError::new(400, EMPTY_QUERY)
        );
        assert_eq!(
            err(parse_search(br#"{"query":"x","top_n":0}"#, &l, 10)).detail,
            "field `top_n` must be between 1 and 1000, got 0"
        );
        assert_eq!(err(parse_search(br#"{"query":"x","top_n":-3}"#, &l, 10)).status, 422);
        assert_eq!(err(parse_search(br#"{"query":"x","top_n":1e300}"#, &l, 10)).status, 422);
        assert_eq!(err(parse_search(br#"{"query":"x","top_n":2.5}"#, &l, 10)).status, 422);
        assert_eq!(err(parse_search(br#"{"query":"x","top_n":"5"}"#, &l, 10)).status, 422);
        assert_eq!(
            err(parse_search(br#"{"query":"x","return_score":"maybe"}"#, &l, 10)).status,
            422
        );
        assert_eq!(
            err(parse_batch_search(br#"{"query":"x"}"#, &l, 10)).detail,
            "field `query` must be a list of strings, got a string"
        );
        assert_eq!(
            err(parse_batch_search(br#"{"query":["a",null]}"#, &l, 10)).detail,
            "`query[1]` must be a string, got null"
        );
        assert_eq!(err(parse_batch_search(br#"{"query":["a",""]}"#, &l, 10)).status, 400);
        assert_eq!(err(parse_retrieve(br#"{"queries":["a","  "]}"#, &l, 3)).status, 400);
        assert_eq!(
            err(parse_retrieve(br#"{"queries":["a"],"topk":1001}"#, &l, 3)).status,
            422
        );
        let small = Limits {
            max_queries: 2,
            max_query_chars: 3,
            ..Limits::default()
        };
        assert_eq!(
            err(parse_batch_search(br#"{"query":["a","b","c"]}"#, &small, 10)).detail,
            "field `query` has 3 queries; the limit is 2 per request"
        );
        assert_eq!(
            err(parse_batch_search(br#"{"query":["a","abcd"]}"#, &small, 10)).detail,
            "`query[1]` is 4 characters long; the limit is 3"
        );
        // Characters, not bytes.
        assert!(parse_search("{\"query\":\"ééé\"}".as_bytes(), &small, 10).is_ok());
    }
}
