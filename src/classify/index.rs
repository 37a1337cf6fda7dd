//! `DomainIndex`: which tags (categories, lists, rule domains) hold a host or one of
//! its parent domains — the hot path.
//!
//! Layout (built once per snapshot, read-only afterwards):
//! - every entry is keyed by the 64-bit XXH3 hash of its normalised text;
//! - an open-addressing table of 64-byte buckets (one cache line each) of eight 64-bit
//!   slots; a key's home bucket comes from its top bits (multiply-shift over any bucket
//!   count, so the table is sized to a load of at most 3/4 rather than to a power of
//!   two); a slot holds the key's low 40 bits as a fingerprint and, inline, a 24-bit
//!   index into the interned pairs of tag sets: tags that match the name and all its
//!   subdomains, and tags that match this exact host only (`=host` entries);
//! - slots fill from the left and a full bucket spills into the next one, so a probe
//!   reads one cache line and stops at the first empty slot (more than one line for
//!   about one probe in twenty at full load).
//!
//! All of it lives in one byte buffer (a 128-byte header, then each section, the table
//! first and 64-aligned), so the same bytes are an in-memory index or a file written by
//! [`DomainIndex::write`] and mapped in place by [`DomainIndex::open`]
//! (`categories compile`).
//!
//! A lookup walks the host's suffixes (`a.b.c`, `b.c`, `c`), hashes each and probes;
//! the entry that matched is the suffix itself, so no string is stored. Cost: one hash
//! and one cache miss per label (the tag sets are small and stay cached), no allocation
//! (results go into a caller's inline buffer). Two distinct names whose hashes agree on
//! their home bucket and fingerprint would share their tags; with six million entries
//! the chance of any such pair is about one in fifty thousand, and a probe for a name
//! that is not listed matches a listed one with odds of about 2^-37.

use std::fs::File;
use std::io;
use std::path::Path;

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

/// First bytes of a compiled index file.
pub const MAGIC: &[u8; 8] = b"CHARTIX\x01";
/// Format version, after the magic. 3: an IPv6 entry that carries an IPv4 address is
/// keyed by that IPv4 address ([`Host::match_str`]), so a file of format 2 may hold such
/// an entry under another key and is compiled again.
const FORMAT: u32 = 3;
/// Header: magic, format, flags, entry count, bucket count, four (offset, count)
/// sections; padded so that the table that follows starts on a cache line.
const HEADER: usize = 128;
/// Number of sections (table, pairs, sets, meta).
const SECTIONS: usize = 4;
/// Slots in a bucket: one cache line of u64.
const SLOTS: usize = 8;
/// Low bits of a slot: the value (an index into the pairs).
const VAL_BITS: u32 = 24;
const VAL_MASK: u64 = (1 << VAL_BITS) - 1;
/// Most distinct tag-set pairs a table can name.
pub const MAX_PAIRS: usize = VAL_MASK as usize;
/// Suffixes of a host whose buckets are fetched together (hosts rarely have more labels).
const PREFETCHED: usize = 6;
/// Buckets are sized so that at most this share of the slots is used (3/4).
const LOAD_NUM: usize = 3;
const LOAD_DEN: usize = 4;

/// One bucket: a cache line of slots. A slot is `fingerprint << 24 | value`, 0 if empty.
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([u64; SLOTS]);

/// Where the index's bytes live: built in memory (cache-line aligned), or a compiled
/// file mapped read-only in place (page aligned).
enum Bytes {
    Owned(Vec<Line>),
    Mapped(memmap2::Mmap),
}

impl Bytes {
    #[inline]
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => bytemuck::cast_slice(v),
            Bytes::Mapped(m) => m,
        }
    }
}

/// The fingerprint kept in a slot: the low 40 bits of the key, never 0 (0 marks an
/// empty slot).
#[inline]
fn fingerprint(key: u64) -> u64 {
    (key & ((1 << (64 - VAL_BITS)) - 1)).max(1)
}

/// The home bucket of a key among `buckets` (multiply-shift on its top bits).
#[inline]
fn home(key: u64, buckets: usize) -> usize {
    ((u128::from(key) * buckets as u128) >> 64) as usize
}

/// A section of the bytes: byte offset (8-aligned) and number of elements.
#[derive(Clone, Copy, Default, Debug)]
struct Sect {
    off: usize,
    len: usize,
}

/// Why a compiled index file cannot be used. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum IndexFileError {
    #[error("cannot read {0}: {1}")]
    Io(String, #[source] io::Error),
    #[error(
        "{0} is not a charte-proxy index, or was written by another version ({1}); \
         run `charte-proxy categories compile` again"
    )]
    Format(String, String),
}

/// The immutable index. See the module documentation for the layout.
pub struct DomainIndex {
    bytes: Bytes,
    /// Distinct entries (names).
    count: usize,
    /// Buckets of the table (at least one, and never all slots used).
    buckets: usize,
    /// The table: `buckets` lines of `SLOTS` u64 slots.
    table: Sect,
    /// (subdomain-matching set, exact-only set) as u32 pairs: offsets into `sets` or NONE.
    pairs: Sect,
    /// Interned tag sets: `[len, tag, tag, …]` runs (u16).
    sets: Sect,
    /// Opaque bytes stored beside the index (a compiled file's description).
    meta: Sect,
}

impl Default for DomainIndex {
    fn default() -> Self {
        IndexBuilder::new().build()
    }
}

impl DomainIndex {
    #[inline]
    fn raw(&self, s: Sect, size: usize) -> &[u8] {
        &self.bytes.get()[s.off..s.off + s.len * size]
    }

    #[inline]
    fn table(&self) -> &[u64] {
        bytemuck::cast_slice(self.raw(self.table, 8))
    }

    #[inline]
    fn pair(&self, i: usize) -> (u32, u32) {
        let p: &[u32] = bytemuck::cast_slice(self.raw(self.pairs, 8));
        (p[2 * i], p[2 * i + 1])
    }

    #[inline]
    fn sets(&self) -> &[TagId] {
        bytemuck::cast_slice(self.raw(self.sets, 2))
    }

    /// The bytes stored with [`DomainIndex::write`].
    pub fn meta(&self) -> &[u8] {
        self.raw(self.meta, 1)
    }

    /// Number of distinct entries (names) in the index.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the index spans (in memory, or mapped from its file).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.get().len()
    }

    /// Whether the index is a compiled file mapped in place.
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped(_))
    }

    /// Appends to `out` every tag holding `host` or one of its parent domains, the most
    /// specific entry first; a tag already in `out` is not repeated.
    #[inline]
    pub fn lookup_into(&self, host: &Host, out: &mut DomainMatches) {
        if self.count == 0 {
            return;
        }
        let text = host.match_str().as_bytes();
        // Hash every suffix and ask for its bucket first, so that the cache misses of
        // all the labels overlap instead of coming one after the other.
        let mut probes = [(0u64, 0usize); PREFETCHED];
        let mut n = 0;
        let mut rest = None;
        for start in host.suffix_starts() {
            if n == PREFETCHED {
                rest = Some(start);
                break;
            }
            let key = xxh3_64(&text[start..]);
            self.prefetch(key);
            probes[n] = (key, start);
            n += 1;
        }
        for &(key, start) in &probes[..n] {
            self.found(key, start, out);
        }
        // Hosts with more labels than that: the rest one by one.
        if let Some(first) = rest {
            for start in host.suffix_starts().skip_while(|&s| s < first) {
                self.found(xxh3_64(&text[start..]), start, out);
            }
        }
    }

    /// Adds the tags of the entry `key` (the suffix of the host from `start`), if listed.
    #[inline]
    fn found(&self, key: u64, start: usize, out: &mut DomainMatches) {
        let Some(val) = self.probe(key) else {
            return;
        };
        let (sub, exact) = self.pair(val);
        if start == 0 && exact != NONE {
            self.push_set(exact, 0, true, out);
        }
        if sub != NONE {
            self.push_set(sub, start as u16, false, out);
        }
    }

    /// Asks the CPU to load `key`'s home bucket into the cache (a hint, no effect on
    /// the result).
    #[inline]
    fn prefetch(&self, key: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let line = &self.table()[home(key, self.buckets) * SLOTS];
            // SAFETY: SSE is part of every x86_64 CPU, and a prefetch only hints the
            // cache: it reads nothing into the program and cannot fault (here the
            // address is in the table anyway).
            unsafe { _mm_prefetch::<_MM_HINT_T0>((line as *const u64).cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// Convenience wrapper returning a fresh result buffer.
    pub fn lookup(&self, host: &Host) -> DomainMatches {
        let mut out = DomainMatches::new();
        self.lookup_into(host, &mut out);
        out
    }

    #[inline]
    fn probe(&self, key: u64) -> Option<usize> {
        let table = self.table();
        let fp = fingerprint(key);
        let mut b = home(key, self.buckets);
        // Ends: `parse` and `build` guarantee at least one empty slot.
        loop {
            for &slot in &table[b * SLOTS..(b + 1) * SLOTS] {
                if slot == 0 {
                    return None;
                }
                if slot >> VAL_BITS == fp {
                    return Some((slot & VAL_MASK) as usize);
                }
            }
            b += 1;
            if b == self.buckets {
                b = 0;
            }
        }
    }

    #[inline]
    fn push_set(&self, at: u32, start: u16, exact: bool, out: &mut DomainMatches) {
        let sets = self.sets();
        let at = at as usize;
        let len = sets[at] as usize;
        for &tag in &sets[at + 1..at + 1 + len] {
            if !out.iter().any(|m| m.tag == tag) {
                out.push(DomainMatch { tag, start, exact });
            }
        }
    }

    /// Writes the index and `meta` to `path` atomically (a temporary file in the same
    /// folder, flushed, then renamed), readable by [`DomainIndex::open`].
    pub fn write(&self, path: &Path) -> io::Result<()> {
        crate::atomic_file::write(path, self.bytes.get(), 0o644)
    }

    /// Writes the index to a hidden temporary file beside `path` (synced) and returns
    /// its name, for the caller to rename into place when the time comes.
    pub fn write_aside(&self, path: &Path) -> io::Result<std::path::PathBuf> {
        crate::atomic_file::write_aside(path, self.bytes.get(), 0o644)
    }

    /// The same index with `meta` stored beside it (for [`DomainIndex::write`]).
    pub fn with_meta(&self, meta: &[u8]) -> DomainIndex {
        let parts = Parts {
            count: self.count,
            buckets: self.buckets,
            table: self.raw(self.table, 8),
            pairs: self.raw(self.pairs, 8),
            sets: self.raw(self.sets, 2),
            meta,
        };
        assemble(&parts)
    }

    /// Opens a file written by [`DomainIndex::write`] and uses it in place (memory-mapped,
    /// read-only). The structure is checked once here — every offset within bounds — so
    /// lookups cannot fail on a damaged file; contents are paged in as lookups touch them.
    pub fn open(path: &Path) -> Result<DomainIndex, IndexFileError> {
        let shown = path.display().to_string();
        let f = File::open(path).map_err(|e| IndexFileError::Io(shown.clone(), e))?;
        // SAFETY: the map is read-only and private to this process; the file is replaced
        // only by rename (`write`), never modified in place, so the mapped bytes do not
        // change under us. A file truncated by something else would fault on access,
        // which the structure checks below make unlikely to go unnoticed at open.
        let map =
            unsafe { memmap2::Mmap::map(&f) }.map_err(|e| IndexFileError::Io(shown.clone(), e))?;
        let bad = |why: &str| IndexFileError::Format(shown.clone(), why.to_string());
        parse(Bytes::Mapped(map)).map_err(|why| bad(&why))
    }
}

/// The sections of an index, as bytes, for [`assemble`].
struct Parts<'a> {
    count: usize,
    buckets: usize,
    table: &'a [u8],
    pairs: &'a [u8],
    sets: &'a [u8],
    meta: &'a [u8],
}

/// Element sizes of the sections, in order.
const SIZES: [usize; SECTIONS] = [8, 8, 2, 1];

/// Lays the header and the sections out in one cache-line aligned buffer.
fn assemble(p: &Parts) -> DomainIndex {
    let sections: [&[u8]; SECTIONS] = [p.table, p.pairs, p.sets, p.meta];
    let pad = |n: usize| n.div_ceil(64) * 64;
    let total = HEADER + sections.iter().map(|b| pad(b.len())).sum::<usize>();
    let mut lines = vec![Line::default(); total / 64];
    {
        let buf: &mut [u8] = bytemuck::cast_slice_mut(&mut lines);
        buf[..8].copy_from_slice(MAGIC);
        buf[8..12].copy_from_slice(&FORMAT.to_le_bytes());
        buf[12..16].copy_from_slice(&0u32.to_le_bytes());
        buf[16..24].copy_from_slice(&(p.count as u64).to_le_bytes());
        buf[24..32].copy_from_slice(&(p.buckets as u64).to_le_bytes());
        let mut at = HEADER;
        for (i, b) in sections.iter().enumerate() {
            let h = 32 + i * 16;
            buf[h..h + 8].copy_from_slice(&(at as u64).to_le_bytes());
            buf[h + 8..h + 16].copy_from_slice(&((b.len() / SIZES[i]) as u64).to_le_bytes());
            buf[at..at + b.len()].copy_from_slice(b);
            at += pad(b.len());
        }
    }
    parse(Bytes::Owned(lines)).expect("a freshly assembled index is valid")
}

/// Reads and checks the header and the structure.
fn parse(bytes: Bytes) -> Result<DomainIndex, String> {
    if cfg!(target_endian = "big") {
        return Err("compiled indexes are little-endian only".into());
    }
    let b = bytes.get();
    if b.len() < HEADER || &b[..8] != MAGIC {
        return Err("bad magic".into());
    }
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
    if u32_at(8) != FORMAT {
        return Err(format!("format {}, this build reads {FORMAT}", u32_at(8)));
    }
    let count = usize::try_from(u64_at(16)).map_err(|_| "entry count too large")?;
    let buckets = usize::try_from(u64_at(24)).map_err(|_| "bucket count too large")?;
    let mut s = [Sect::default(); SECTIONS];
    for (i, size) in SIZES.iter().enumerate() {
        let off = usize::try_from(u64_at(32 + i * 16)).map_err(|_| "offset too large")?;
        let len = usize::try_from(u64_at(40 + i * 16)).map_err(|_| "length too large")?;
        let end = len
            .checked_mul(*size)
            .and_then(|n| n.checked_add(off))
            .ok_or("section overflows")?;
        if off % 64 != 0 || off < HEADER || end > b.len() {
            return Err(format!("section {i} out of the file"));
        }
        s[i] = Sect { off, len };
    }
    let ix = DomainIndex {
        bytes,
        count,
        buckets,
        table: s[0],
        pairs: s[1],
        sets: s[2],
        meta: s[3],
    };
    // Structure: the table has its buckets and an empty slot (a probe always ends), it
    // holds `count` entries, every value names a pair, every pair names a whole set.
    if buckets == 0 || buckets.checked_mul(SLOTS) != Some(ix.table.len) {
        return Err("table size does not match the bucket count".into());
    }
    let npairs = ix.pairs.len;
    let mut used = 0usize;
    for &slot in ix.table() {
        if slot != 0 {
            used += 1;
            if (slot & VAL_MASK) as usize >= npairs {
                return Err("a value names no pair".into());
            }
        }
    }
    if used != count || used == ix.table.len {
        return Err("the table does not hold the entries it announces".into());
    }
    let sets = ix.sets();
    for i in 0..npairs {
        let (a, e) = ix.pair(i);
        for at in [a, e] {
            if at == NONE {
                continue;
            }
            let at = at as usize;
            let ok = sets
                .get(at)
                .is_some_and(|&n| at + 1 + n as usize <= sets.len());
            if !ok {
                return Err("a pair names no tag set".into());
            }
        }
    }
    Ok(ix)
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
            .push((xxh3_64(host.match_str().as_bytes()), exact, tag));
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
        // A load of at most 3/4, and always one empty slot at least.
        let buckets = (distinct * LOAD_DEN)
            .div_ceil(LOAD_NUM * SLOTS)
            .max(1)
            .max((distinct + 1).div_ceil(SLOTS));

        let mut keys: Vec<u64> = Vec::with_capacity(distinct);
        let mut vals: Vec<u32> = Vec::with_capacity(distinct);
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

        assert!(
            pairs.len() <= MAX_PAIRS,
            "more than {MAX_PAIRS} distinct combinations of categories"
        );
        // Insert in key order: each key goes to the first empty slot from its home
        // bucket on. Keys are sorted, so homes come in increasing order.
        let mut table = vec![0u64; buckets * SLOTS];
        for (&key, &val) in keys.iter().zip(&vals) {
            let mut b = home(key, buckets);
            'placed: loop {
                for slot in &mut table[b * SLOTS..(b + 1) * SLOTS] {
                    if *slot == 0 {
                        *slot = fingerprint(key) << VAL_BITS | u64::from(val);
                        break 'placed;
                    }
                }
                b = (b + 1) % buckets;
            }
        }
        let flat: Vec<u32> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
        assemble(&Parts {
            count: keys.len(),
            buckets,
            table: bytemuck::cast_slice(&table),
            pairs: bytemuck::cast_slice(&flat),
            sets: bytemuck::cast_slice(&sets),
            meta: &[],
        })
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
                    host.match_str()[m.start as usize..].to_string(),
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
    fn hosts_with_many_labels_find_every_level() {
        let mut b = IndexBuilder::new();
        b.add(&h("example.com"), 1, false);
        b.add(&h("i.j.k.example.com"), 2, false);
        b.add(&h("a.b.c.d.e.f.g.h.i.j.k.example.com"), 3, true);
        let ix = b.build();
        let host = "a.b.c.d.e.f.g.h.i.j.k.example.com";
        assert_eq!(
            tags(&ix, host),
            [
                (3, host.to_string(), true),
                (2, "i.j.k.example.com".into(), false),
                (1, "example.com".into(), false)
            ]
        );
        assert_eq!(
            tags(&ix, &format!("z.{host}")),
            [
                (2, "i.j.k.example.com".into(), false),
                (1, "example.com".into(), false)
            ]
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
    fn a_written_index_opens_in_place_and_answers_the_same() {
        let mut b = IndexBuilder::new();
        for i in 0..5_000u32 {
            b.add(
                &h(&format!("site{i}.example")),
                (i % 7) as TagId,
                i % 11 == 0,
            );
        }
        let built = b.build();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.idx");
        built.with_meta(b"{\"hello\":1}").write(&path).unwrap();
        let opened = DomainIndex::open(&path).unwrap();
        assert!(opened.is_mapped() && !built.is_mapped());
        assert_eq!(opened.meta(), b"{\"hello\":1}");
        assert_eq!(opened.len(), built.len());
        for i in (0..5_000u32).step_by(13) {
            for host in [format!("site{i}.example"), format!("www.site{i}.example")] {
                assert_eq!(tags(&opened, &host), tags(&built, &host), "{host}");
            }
        }
        assert!(tags(&opened, "nope.example").is_empty());
    }

    #[test]
    fn damaged_index_files_are_refused_at_open() {
        let mut b = IndexBuilder::new();
        for i in 0..1_000u32 {
            b.add(&h(&format!("s{i}.example")), 1, false);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.idx");
        b.build().write(&path).unwrap();
        let good = std::fs::read(&path).unwrap();
        let check = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            DomainIndex::open(&path).err().map(|e| e.to_string())
        };
        assert!(check(&good).is_none());
        // Truncated, wrong magic, a bucket count that does not match, a value past the
        // pairs, a full table (a probe could never end), a count that lies.
        assert!(
            check(&good[..good.len() / 2])
                .unwrap()
                .contains("categories compile")
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(check(&bad).is_some());
        let mut bad = good.clone();
        bad[24..32].copy_from_slice(&3u64.to_le_bytes());
        assert!(check(&bad).is_some());
        let table_off = u64::from_le_bytes(good[32..40].try_into().unwrap()) as usize;
        let table_len = u64::from_le_bytes(good[40..48].try_into().unwrap()) as usize;
        let slot_at = |i: usize| table_off + 8 * i;
        let first_used = (0..table_len)
            .find(|&i| good[slot_at(i)..slot_at(i) + 8] != [0; 8])
            .unwrap();
        let mut bad = good.clone();
        bad[slot_at(first_used)..slot_at(first_used) + 3].copy_from_slice(&[0xff; 3]);
        assert!(check(&bad).unwrap().contains("names no pair"));
        let mut bad = good.clone();
        for i in 0..table_len {
            if bad[slot_at(i)..slot_at(i) + 8] == [0; 8] {
                bad[slot_at(i)..slot_at(i) + 8].copy_from_slice(&(1u64 << 24).to_le_bytes());
            }
        }
        bad[16..24].copy_from_slice(&(table_len as u64).to_le_bytes());
        assert!(check(&bad).is_some());
        let mut bad = good.clone();
        bad[16..24].copy_from_slice(&999u64.to_le_bytes());
        assert!(check(&bad).is_some());
        assert!(check(b"").is_some());
    }

    #[test]
    fn empty_index_finds_nothing() {
        let ix = IndexBuilder::new().build();
        assert!(tags(&ix, "example.com").is_empty());
    }
}
