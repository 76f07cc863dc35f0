//! Stop strings, matched in the bytes of generated tokens (never by re-tokenizing).

use std::sync::Arc;

use research_qwen2::Qwen2Tokenizer;

/// Watches the bytes generated since the last reset for any of a set of strings.
#[derive(Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    tokenizer: Option<Arc<Qwen2Tokenizer>>,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for StopMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopMatcher")
            .field("stops", &self.stops)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl StopMatcher {
    /// A matcher for `stops`, decoding ids with `tokenizer`.
    pub fn new(stops: Vec<String>, tokenizer: Option<Arc<Qwen2Tokenizer>>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            tokenizer,
            bytes: vec![],
        }
    }

    /// Forgets the text seen so far (after injected tokens, which must not trigger a stop).
    pub fn reset(&mut self) {
        self.bytes.clear();
    }

    /// Adds one generated token; returns the stop string it completed, if any. Only matches that end
    /// inside this token's bytes count, so a stop string is reported once, at the token completing it.
    pub fn push(&mut self, id: u32) -> Option<String> {
        if self.stops.is_empty() {
            return None;
        }
        let tok = self.tokenizer.as_ref()?;
        let before = self.bytes.len();
        self.bytes.extend_from_slice(tok.token_bytes(id));
        self.matched_since(before)
    }

    /// Adds raw bytes (for tests and tokenizers other than the model's).
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Option<String> {
        let before = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        self.matched_since(before)
    }

    fn matched_since(&self, before: usize) -> Option<String> {
        for s in &self.stops {
            let sb = s.as_bytes();
            // A match must end after `before`: start at most `before` - len + 1 back.
            let from = before.saturating_sub(sb.len() - 1);
            if self.bytes.len() >= sb.len() && self.bytes[from..].windows(sb.len()).any(|w| w == sb) {
                return Some(s.clone());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_across_token_boundaries() {
        let mut m = StopMatcher::new(vec!["</search>".into()], None);
        assert_eq!(m.push_bytes(b"ok </se"), None);
        assert_eq!(m.push_bytes(b"arch"), None);
        assert_eq!(m.push_bytes(b"> more"), Some("</search>".into()));
    }

    #[test]
    fn reset_forgets_injected_text() {
        let mut m = StopMatcher::new(vec!["END".into()], None);
        assert_eq!(m.push_bytes(b"EN"), None);
        m.reset();
        assert_eq!(m.push_bytes(b"D"), None);
    }

    #[test]
    fn multibyte_stop_strings() {
        let mut m = StopMatcher::new(vec!["停止".into()], None);
        let b = "请停止".as_bytes();
        assert_eq!(m.push_bytes(&b[..4]), None);
        assert_eq!(m.push_bytes(&b[4..]), Some("停止".into()));
    }
}
