//! `UrlIndex`: host + path prefixes (squidGuard `urls` files, rule `urls`), matched only
//! where the path is visible (plain HTTP, or inside an inspected tunnel).
//!
//! All patterns go into one Aho-Corasick automaton, searched once, *overlapping*, over
//! `host + path`; a match counts when it starts at a label boundary of the host. Since
//! every pattern holds the `/` that ends its host, such a match is exactly "this host or
//! a parent domain, and a path that starts with the pattern's path". (Anchored searches
//! cannot be overlapping in aho-corasick, hence one unanchored pass and a filter.) Patterns and text are
//! lower-cased so that `/Casino` and `/casino` are the same path; the leading `www.` of a
//! pattern's host is dropped as squidGuard does.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use smallvec::SmallVec;

use super::host::Host;
use super::index::TagId;

/// One URL pattern that matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrlMatch {
    pub tag: TagId,
    /// Pattern number, for [`UrlIndex::pattern`].
    pub pattern: u32,
}

pub type UrlMatches = SmallVec<[UrlMatch; 4]>;

/// Immutable URL-prefix matcher.
#[derive(Default)]
pub struct UrlIndex {
    ac: Option<AhoCorasick>,
    /// Pattern text and tag, by pattern id.
    patterns: Vec<(Box<str>, TagId)>,
}

impl UrlIndex {
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The text of pattern `id` (`host/path`).
    pub fn pattern(&self, id: u32) -> &str {
        &self.patterns[id as usize].0
    }

    pub fn heap_bytes(&self) -> usize {
        self.ac.as_ref().map_or(0, |a| a.memory_usage())
            + self.patterns.iter().map(|p| p.0.len() + 16).sum::<usize>()
    }

    /// Appends to `out` the tags of every pattern matching `host` + `path`. `scratch`
    /// is a reusable buffer (no allocation once it has grown to the longest URL).
    pub fn lookup_into(&self, host: &Host, path: &str, scratch: &mut String, out: &mut UrlMatches) {
        let Some(ac) = &self.ac else { return };
        scratch.clear();
        scratch.push_str(host.as_str());
        if !path.starts_with('/') {
            scratch.push('/');
        }
        for c in path.chars() {
            scratch.push(c.to_ascii_lowercase());
        }
        let host_len = host.as_str().len();
        let text = scratch.as_bytes();
        for m in ac.find_overlapping_iter(scratch.as_str()) {
            let s = m.start();
            if s >= host_len || (s > 0 && text[s - 1] != b'.') {
                continue;
            }
            let id = m.pattern().as_u32();
            let tag = self.patterns[id as usize].1;
            if !out.iter().any(|u| u.tag == tag) {
                out.push(UrlMatch { tag, pattern: id });
            }
        }
    }
}

/// Collects `host/path` patterns, then builds a [`UrlIndex`].
#[derive(Default)]
pub struct UrlBuilder {
    patterns: Vec<(Box<str>, TagId)>,
}

impl UrlBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pattern for `host` (its `www.` dropped) and a path prefix.
    pub fn add(&mut self, host: &Host, path: &str, tag: TagId) {
        let h = host.as_str();
        let h = match h.strip_prefix("www.") {
            Some(rest) if rest.contains('.') => rest,
            _ => h,
        };
        let mut p = String::with_capacity(h.len() + path.len() + 1);
        p.push_str(h);
        if !path.starts_with('/') {
            p.push('/');
        }
        p.push_str(&path.to_ascii_lowercase());
        self.patterns.push((p.into(), tag));
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn build(mut self) -> UrlIndex {
        self.patterns.sort_unstable();
        self.patterns.dedup();
        if self.patterns.is_empty() {
            return UrlIndex::default();
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(self.patterns.iter().map(|p| p.0.as_bytes()))
            .expect("URL patterns are bounded in size");
        UrlIndex {
            ac: Some(ac),
            patterns: self.patterns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(pats: &[(&str, &str, TagId)]) -> UrlIndex {
        let mut b = UrlBuilder::new();
        for (h, p, t) in pats {
            b.add(&Host::parse(h).unwrap(), p, *t);
        }
        b.build()
    }

    fn find(ix: &UrlIndex, host: &str, path: &str) -> Vec<(TagId, String)> {
        let mut s = String::new();
        let mut out = UrlMatches::new();
        ix.lookup_into(&Host::parse(host).unwrap(), path, &mut s, &mut out);
        out.iter()
            .map(|m| (m.tag, ix.pattern(m.pattern).to_string()))
            .collect()
    }

    #[test]
    fn prefixes_match_on_host_and_parents_at_label_boundaries() {
        let ix = idx(&[
            ("www.example.com", "/casino", 1),
            ("files.example.org", "/", 2),
        ]);
        assert_eq!(
            find(&ix, "example.com", "/casino/x"),
            [(1, "example.com/casino".into())]
        );
        assert_eq!(
            find(&ix, "a.example.com", "/CASINO"),
            [(1, "example.com/casino".into())]
        );
        assert!(find(&ix, "example.com", "/games").is_empty());
        assert!(
            find(&ix, "badexample.com", "/casino").is_empty(),
            "label boundary"
        );
        assert_eq!(
            find(&ix, "files.example.org", "/any"),
            [(2, "files.example.org/".into())]
        );
        assert!(find(&ix, "example.org", "/any").is_empty());
    }

    #[test]
    fn several_tags_on_one_url() {
        let ix = idx(&[("example.com", "/a", 1), ("example.com", "/a/b", 2)]);
        let got = find(&ix, "example.com", "/a/b/c");
        assert_eq!(got.len(), 2);
    }
}
