//! `UrlIndex`: host + path prefixes (squidGuard `urls` files, rule `urls`), matched only
//! where the path is visible (plain HTTP, or inside an inspected tunnel).
//!
//! Patterns are grouped by their host: a table keyed by the 64-bit XXH3 hash of the host
//! gives the run of patterns written for it. A lookup walks the request host's suffixes
//! at label boundaries, as the domain index does (one hash and one probe a label), and
//! compares the path with the prefixes of the hosts that have some. So a pattern matches
//! exactly "this host or a parent domain, and a path that starts with the pattern's
//! path". Building is a sort; no automaton to compile at load. Patterns and request
//! paths are both put in the one canonical form of [`super::path`] (case, escapes, dot
//! segments, separators) before they are compared, so that no other spelling of a listed
//! path slips by; the leading `www.` of a pattern's host is dropped as squidGuard does.
//! Hosts are keyed by [`Host::match_str`], as in the domain index.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use smallvec::SmallVec;
use xxhash_rust::xxh3::xxh3_64;

use super::host::Host;
use super::index::TagId;
use super::path::{Reading, append_reading, normalize, readings_may_differ};

/// One URL pattern that matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrlMatch {
    pub tag: TagId,
    /// Pattern number, for [`UrlIndex::pattern`].
    pub pattern: u32,
}

pub type UrlMatches = SmallVec<[UrlMatch; 4]>;

/// The keys are XXH3 hashes already: used as they are.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Immutable URL-prefix matcher.
#[derive(Default)]
pub struct UrlIndex {
    /// Hash of a pattern host → (first pattern, count): its patterns are contiguous.
    hosts: HashMap<u64, (u32, u32), BuildHasherDefault<PassThrough>>,
    /// Pattern text (`host/path`), its host's length, and its tag, sorted by text.
    patterns: Vec<(Box<str>, u16, TagId)>,
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
        self.hosts.capacity() * 24
            + self.patterns.capacity() * 24
            + self.patterns.iter().map(|p| p.0.len()).sum::<usize>()
    }

    /// Appends to `out` the tags of every pattern matching `host` + `path` (the request
    /// target's path and query as received: it is normalised here, and matched in each
    /// of its readings). `scratch` is a
    /// reusable buffer (no allocation once it has grown to the longest path).
    pub fn lookup_into(&self, host: &Host, path: &str, scratch: &mut String, out: &mut UrlMatches) {
        if self.hosts.is_empty() {
            return;
        }
        let text = host.match_str();
        let mut normalised = false;
        for start in host.suffix_starts() {
            let suffix = &text[start..];
            let Some(&(first, n)) = self.hosts.get(&xxh3_64(suffix.as_bytes())) else {
                continue;
            };
            if !normalised {
                // The canonical form, and when they can differ the two readings that
                // read less (see `path::Reading`), one a line: a form never holds a
                // raw newline, it would be escaped.
                scratch.clear();
                append_reading(path, Reading::Canonical, scratch);
                if readings_may_differ(path) {
                    for r in [Reading::Rfc, Reading::Literal] {
                        scratch.push('\n');
                        append_reading(path, r, scratch);
                    }
                }
                normalised = true;
            }
            for id in first..first + n {
                let (pat, host_len, tag) = &self.patterns[id as usize];
                let (h, p) = pat.split_at(*host_len as usize);
                // `h == suffix` guards against a hash collision.
                if h == suffix
                    && scratch.split('\n').any(|form| form.starts_with(p))
                    && !out.iter().any(|u| u.tag == *tag)
                {
                    out.push(UrlMatch {
                        tag: *tag,
                        pattern: id,
                    });
                }
            }
        }
    }
}

/// Collects `host/path` patterns, then builds a [`UrlIndex`].
#[derive(Default)]
pub struct UrlBuilder {
    patterns: Vec<(Box<str>, u16, TagId)>,
}

impl UrlBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pattern for `host` (its `www.` dropped) and a path prefix (normalised as
    /// request paths are).
    pub fn add(&mut self, host: &Host, path: &str, tag: TagId) {
        let h = host.match_str();
        let h = match h.strip_prefix("www.") {
            Some(rest) if rest.contains('.') => rest,
            _ => h,
        };
        let path = normalize(path);
        let mut p = String::with_capacity(h.len() + path.len());
        p.push_str(h);
        p.push_str(&path);
        // Host names are at most 253 bytes.
        self.patterns.push((p.into(), h.len() as u16, tag));
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn build(mut self) -> UrlIndex {
        // Sorted by text, the patterns of one host are contiguous: they all start with
        // `host/`, and nothing else sorts between two of them.
        self.patterns.sort_unstable();
        self.patterns.dedup();
        let mut hosts: HashMap<u64, (u32, u32), BuildHasherDefault<PassThrough>> =
            HashMap::default();
        let mut i = 0;
        while i < self.patterns.len() {
            let host = &self.patterns[i].0[..self.patterns[i].1 as usize];
            let mut j = i + 1;
            while j < self.patterns.len()
                && self.patterns[j].1 as usize == host.len()
                && self.patterns[j].0.starts_with(host)
            {
                j += 1;
            }
            hosts.insert(xxh3_64(host.as_bytes()), (i as u32, (j - i) as u32));
            i = j;
        }
        UrlIndex {
            hosts,
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
    fn hosts_sharing_a_prefix_keep_their_own_patterns() {
        let ix = idx(&[
            ("example.com", "/a", 1),
            ("example.com.evil", "/a", 2),
            ("example.co", "/", 3),
            ("a.example.com", "/z", 4),
        ]);
        assert_eq!(
            find(&ix, "example.com", "/a"),
            [(1, "example.com/a".into())]
        );
        assert_eq!(
            find(&ix, "x.example.com.evil", "/abc"),
            [(2, "example.com.evil/a".into())]
        );
        assert!(find(&ix, "example.com", "/b").is_empty());
        assert_eq!(find(&ix, "example.co", "/x"), [(3, "example.co/".into())]);
        assert_eq!(
            find(&ix, "b.a.example.com", "/zz"),
            [(4, "a.example.com/z".into())]
        );
        assert_eq!(find(&ix, "example.com", "no-slash"), []);
        assert_eq!(
            find(&ix, "example.co", "no-slash"),
            [(3, "example.co/".into())]
        );
    }

    #[test]
    fn several_tags_on_one_url() {
        let ix = idx(&[("example.com", "/a", 1), ("example.com", "/a/b", 2)]);
        let got = find(&ix, "example.com", "/a/b/c");
        assert_eq!(got.len(), 2);
    }
}
