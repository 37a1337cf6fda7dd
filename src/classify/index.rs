//! `DomainIndex`: which tags (categories, lists, rule domains) hold a host or one of
//! its parent domains — the hot path.
//!
//! Layout (built once per snapshot, read-only afterwards):
//! - every entry is keyed by the 64-bit XXH3 hash of its normalised text;
//! - keys are sorted and split into 2^k buckets by their top bits, with a directory of
//!   bucket starts (about four keys a bucket), so a probe is one directory read and a
//!   short scan of one cache line;
//! - each key points at an interned pair of tag sets: tags that match the name and all
//!   its subdomains, and tags that match this exact host only (`=host` entries).
//!
//! A lookup walks the host's suffixes (`a.b.c`, `b.c`, `c`), hashes each and probes;
//! the entry that matched is the suffix itself, so no string is stored. Cost: one hash
//! and one or two cache misses per label, no allocation (results go into a caller's
//! inline buffer). Two distinct names sharing a 64-bit hash would share their tags; with
//! six million entries the chance of any such pair is about one in a million, and a
//! probe for a name that is not listed hits a wrong key with odds of about 2^-60.

use smallvec::SmallVec;
use std::collections::HashMap;
use xxhash_rust::xxh3::xxh3_64;

use super::host::Host;

/// Identifies a tag: a category, a named list, or a rule's inline sites.
pub type TagId = u16;

const NONE: u32 = u32::MAX;

/// One tag found for a host, with where it matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainMatch {
    pub tag: TagId,
    /// Byte offset in the host where the matched entry starts (0 = the host itself).
    pub start: u16,
    /// The entry was `=host` (this host only).
    pub exact: bool,
}

/// Results of one lookup; inline up to 16 tags, so no allocation in practice.
pub type DomainMatches = SmallVec<[DomainMatch; 16]>;

/// The immutable index. See the module documentation for the layout.
#[derive(Default)]
pub struct DomainIndex {
    /// 64 − bucket bits; bucket of a key = key >> shift.
    shift: u32,
    /// Start of each bucket in `keys`, plus one final end.
    dir: Vec<u32>,
    /// Sorted entry hashes.
    keys: Vec<u64>,
    /// For each key, an index into `pairs`.
    vals: Vec<u32>,
    /// (subdomain-matching set, exact-only set), as offsets into `sets` or NONE.
    pairs: Vec<(u32, u32)>,
    /// Interned tag sets: `[len, tag, tag, …]` runs.
    sets: Vec<TagId>,
}

impl DomainIndex {
    /// Number of distinct entries (names) in the index.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Approximate heap bytes used by the index.
    pub fn heap_bytes(&self) -> usize {
        self.dir.len() * 4
            + self.keys.len() * 8
            + self.vals.len() * 4
            + self.pairs.len() * 8
            + self.sets.len() * 2
    }

    /// Appends to `out` every tag holding `host` or one of its parent domains, the most
    /// specific entry first; a tag already in `out` is not repeated.
    #[inline]
    pub fn lookup_into(&self, host: &Host, out: &mut DomainMatches) {
        if self.keys.is_empty() {
            return;
        }
        let text = host.as_str();
        for start in host.suffix_starts() {
            let Some(pair) = self.probe(xxh3_64(&text.as_bytes()[start..])) else {
                continue;
            };
            let (sub, exact) = self.pairs[pair as usize];
            if start == 0 && exact != NONE {
                self.push_set(exact, 0, true, out);
            }
            if sub != NONE {
                self.push_set(sub, start as u16, false, out);
            }
        }
    }

    /// Convenience wrapper returning a fresh result buffer.
    pub fn lookup(&self, host: &Host) -> DomainMatches {
        let mut out = DomainMatches::new();
        self.lookup_into(host, &mut out);
        out
    }

    #[inline]
    fn probe(&self, key: u64) -> Option<u32> {
        let b = (key >> self.shift) as usize;
        let (lo, hi) = (self.dir[b] as usize, self.dir[b + 1] as usize);
        let bucket = &self.keys[lo..hi];
        for (i, &k) in bucket.iter().enumerate() {
            if k >= key {
                return (k == key).then(|| self.vals[lo + i]);
            }
        }
        None
    }

    #[inline]
    fn push_set(&self, at: u32, start: u16, exact: bool, out: &mut DomainMatches) {
        let at = at as usize;
        let len = self.sets[at] as usize;
        for &tag in &self.sets[at + 1..at + 1 + len] {
            if !out.iter().any(|m| m.tag == tag) {
                out.push(DomainMatch { tag, start, exact });
            }
        }
    }
}

/// Collects entries, then builds a [`DomainIndex`].
#[derive(Default)]
pub struct IndexBuilder {
    /// (hash, exact flag, tag)
    entries: Vec<(u64, bool, TagId)>,
}

impl IndexBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        IndexBuilder {
            entries: Vec::with_capacity(n),
        }
    }

    /// Adds a normalised host under `tag`. `exact` entries match this host only;
    /// others match it and all its subdomains.
    pub fn add(&mut self, host: &Host, tag: TagId, exact: bool) {
        self.entries
            .push((xxh3_64(host.as_str().as_bytes()), exact, tag));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn build(mut self) -> DomainIndex {
        self.entries.sort_unstable();
        self.entries.dedup();
        let distinct = {
            let mut n = 0usize;
            let mut last = None;
            for e in &self.entries {
                if last != Some(e.0) {
                    n += 1;
                    last = Some(e.0);
                }
            }
            n
        };
        // About four keys a bucket: the scan stays within one or two cache lines.
        let bits = (distinct / 4)
            .max(1)
            .next_power_of_two()
            .trailing_zeros()
            .max(1);
        let shift = 64 - bits;
        let buckets = 1usize << bits;

        let mut keys = Vec::with_capacity(distinct);
        let mut vals = Vec::with_capacity(distinct);
        let mut sets: Vec<TagId> = Vec::new();
        let mut set_ids: HashMap<Vec<TagId>, u32> = HashMap::new();
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        let mut pair_ids: HashMap<(u32, u32), u32> = HashMap::new();

        let mut intern_set = |tags: &[TagId], sets: &mut Vec<TagId>| -> u32 {
            if tags.is_empty() {
                return NONE;
            }
            *set_ids.entry(tags.to_vec()).or_insert_with(|| {
                let at = sets.len() as u32;
                sets.push(tags.len() as TagId);
                sets.extend_from_slice(tags);
                at
            })
        };

        let mut i = 0;
        let mut sub: Vec<TagId> = Vec::new();
        let mut exact: Vec<TagId> = Vec::new();
        while i < self.entries.len() {
            let key = self.entries[i].0;
            sub.clear();
            exact.clear();
            while i < self.entries.len() && self.entries[i].0 == key {
                let (_, is_exact, tag) = self.entries[i];
                if is_exact { &mut exact } else { &mut sub }.push(tag);
                i += 1;
            }
            // A tag that matches the subdomains covers the exact host too.
            exact.retain(|t| !sub.contains(t));
            let pair = (intern_set(&sub, &mut sets), intern_set(&exact, &mut sets));
            let id = *pair_ids.entry(pair).or_insert_with(|| {
                pairs.push(pair);
                (pairs.len() - 1) as u32
            });
            keys.push(key);
            vals.push(id);
        }

        let mut dir = Vec::with_capacity(buckets + 1);
        let mut k = 0usize;
        for b in 0..buckets {
            dir.push(k as u32);
            while k < keys.len() && (keys[k] >> shift) as usize == b {
                k += 1;
            }
        }
        dir.push(keys.len() as u32);

        DomainIndex {
            shift,
            dir,
            keys,
            vals,
            pairs,
            sets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    fn tags(ix: &DomainIndex, host: &str) -> Vec<(TagId, String, bool)> {
        let host = h(host);
        ix.lookup(&host)
            .iter()
            .map(|m| {
                (
                    m.tag,
                    host.as_str()[m.start as usize..].to_string(),
                    m.exact,
                )
            })
            .collect()
    }

    #[test]
    fn entries_match_themselves_and_subdomains_only() {
        let mut b = IndexBuilder::new();
        b.add(&h("example.com"), 1, false);
        b.add(&h("ads.example.com"), 2, false);
        b.add(&h("login.example.org"), 3, true);
        let ix = b.build();
        assert_eq!(tags(&ix, "example.com"), [(1, "example.com".into(), false)]);
        assert_eq!(
            tags(&ix, "x.ads.example.com"),
            [
                (2, "ads.example.com".into(), false),
                (1, "example.com".into(), false)
            ]
        );
        assert!(tags(&ix, "notexample.com").is_empty());
        assert!(tags(&ix, "com").is_empty());
        assert_eq!(
            tags(&ix, "login.example.org"),
            [(3, "login.example.org".into(), true)]
        );
        assert!(
            tags(&ix, "a.login.example.org").is_empty(),
            "=host is exact"
        );
    }

    #[test]
    fn most_specific_entry_is_reported_once_per_tag() {
        let mut b = IndexBuilder::new();
        b.add(&h("example.com"), 7, false);
        b.add(&h("www.example.com"), 7, false);
        b.add(&h("www.example.com"), 7, true);
        let ix = b.build();
        assert_eq!(
            tags(&ix, "www.example.com"),
            [(7, "www.example.com".into(), false)]
        );
    }

    #[test]
    fn addresses_match_whole_only() {
        let mut b = IndexBuilder::new();
        b.add(&h("10.1.2.3"), 4, false);
        b.add(&h("2.3"), 5, false);
        let ix = b.build();
        assert_eq!(tags(&ix, "0x0a.1.2.3"), [(4, "10.1.2.3".into(), false)]);
        assert!(tags(&ix, "9.1.2.3").is_empty());
    }

    #[test]
    fn many_entries_all_found() {
        let mut b = IndexBuilder::new();
        for i in 0..50_000u32 {
            b.add(&h(&format!("site{i}.example")), (i % 60) as TagId, false);
        }
        let ix = b.build();
        assert_eq!(ix.len(), 50_000);
        for i in (0..50_000u32).step_by(97) {
            let got = tags(&ix, &format!("www.site{i}.example"));
            assert_eq!(
                got,
                [((i % 60) as TagId, format!("site{i}.example"), false)]
            );
        }
        assert!(tags(&ix, "site50001.example").is_empty());
    }

    #[test]
    fn empty_index_finds_nothing() {
        let ix = IndexBuilder::new().build();
        assert!(tags(&ix, "example.com").is_empty());
    }
}
