//! `DomainIndex`: which tags (categories, lists, rule domains) hold a host or one of
//! its parent domains — the hot path.
//!
//! Layout (built once per snapshot, read-only afterwards):
//! - every entry is keyed by the 64-bit XXH3 hash of its normalised text;
//! - keys are sorted and split into 2^k buckets by their top bits, with a directory of
//!   bucket starts (about four keys a bucket), so a probe is one directory read and a
//!   short scan of one cache line;
//! - each key points (16-bit when fewer than 65 535 exist, else 32-bit) at an interned
//!   pair of tag sets: tags that match the name and all its subdomains, and tags that
//!   match this exact host only (`=host` entries).
//!
//! All of it lives in one 8-aligned byte buffer (header, then each array), so the same
//! bytes are an in-memory index or a file written by [`DomainIndex::write`] and mapped in
//! place by [`DomainIndex::open`] (`categories compile`).
//!
//! A lookup walks the host's suffixes (`a.b.c`, `b.c`, `c`), hashes each and probes;
//! the entry that matched is the suffix itself, so no string is stored. Cost: one hash
//! and one or two cache misses per label, no allocation (results go into a caller's
//! inline buffer). Two distinct names sharing a 64-bit hash would share their tags; with
//! six million entries the chance of any such pair is about one in a million, and a
//! probe for a name that is not listed hits a wrong key with odds of about 2^-60.

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
/// Format version, after the magic.
const FORMAT: u32 = 1;
/// Header: magic, format, flags, shift, reserved, six (offset, count) sections.
const HEADER: usize = 8 + 4 * 4 + 6 * 16;
/// `flags` bit: `vals` are u16 (fewer than 65 535 distinct tag-set pairs), else u32.
const NARROW_VALS: u32 = 1;

/// Where the index's bytes live: built in memory (a `Vec<u64>`, so 8-byte aligned), or a
/// compiled file mapped read-only in place (page aligned).
enum Bytes {
    Owned(Vec<u64>),
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
    /// 64 − bucket bits; bucket of a key = key >> shift.
    shift: u32,
    narrow: bool,
    /// Start of each bucket in `keys` (u32), plus one final end.
    dir: Sect,
    /// Sorted entry hashes (u64).
    keys: Sect,
    /// For each key, an index into `pairs` (u16 when narrow, else u32).
    vals: Sect,
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
    fn dir(&self) -> &[u32] {
        bytemuck::cast_slice(self.raw(self.dir, 4))
    }

    #[inline]
    fn keys(&self) -> &[u64] {
        bytemuck::cast_slice(self.raw(self.keys, 8))
    }

    #[inline]
    fn val(&self, i: usize) -> usize {
        if self.narrow {
            bytemuck::cast_slice::<u8, u16>(self.raw(self.vals, 2))[i] as usize
        } else {
            bytemuck::cast_slice::<u8, u32>(self.raw(self.vals, 4))[i] as usize
        }
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
        self.keys.len
    }

    pub fn is_empty(&self) -> bool {
        self.keys.len == 0
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
        if self.keys.len == 0 {
            return;
        }
        let text = host.as_str();
        for start in host.suffix_starts() {
            let Some(val) = self.probe(xxh3_64(&text.as_bytes()[start..])) else {
                continue;
            };
            let (sub, exact) = self.pair(val);
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
    fn probe(&self, key: u64) -> Option<usize> {
        let b = (key >> self.shift) as usize;
        let dir = self.dir();
        let (lo, hi) = (dir[b] as usize, dir[b + 1] as usize);
        let bucket = &self.keys()[lo..hi];
        for (i, &k) in bucket.iter().enumerate() {
            if k >= key {
                return (k == key).then(|| self.val(lo + i));
            }
        }
        None
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

    /// The same index with `meta` stored beside it (for [`DomainIndex::write`]).
    pub fn with_meta(&self, meta: &[u8]) -> DomainIndex {
        let parts = Parts {
            shift: self.shift,
            narrow: self.narrow,
            dir: self.raw(self.dir, 4),
            keys: self.raw(self.keys, 8),
            vals: self.raw(self.vals, if self.narrow { 2 } else { 4 }),
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
    shift: u32,
    narrow: bool,
    dir: &'a [u8],
    keys: &'a [u8],
    vals: &'a [u8],
    pairs: &'a [u8],
    sets: &'a [u8],
    meta: &'a [u8],
}

/// Lays the header and the sections out in one 8-aligned buffer.
fn assemble(p: &Parts) -> DomainIndex {
    let sections: [(&[u8], usize); 6] = [
        (p.dir, 4),
        (p.keys, 8),
        (p.vals, if p.narrow { 2 } else { 4 }),
        (p.pairs, 8),
        (p.sets, 2),
        (p.meta, 1),
    ];
    let pad = |n: usize| n.div_ceil(8) * 8;
    let total = HEADER + sections.iter().map(|(b, _)| pad(b.len())).sum::<usize>();
    let mut words = vec![0u64; total / 8];
    {
        let buf: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        buf[..8].copy_from_slice(MAGIC);
        buf[8..12].copy_from_slice(&FORMAT.to_le_bytes());
        let flags = if p.narrow { NARROW_VALS } else { 0 };
        buf[12..16].copy_from_slice(&flags.to_le_bytes());
        buf[16..20].copy_from_slice(&p.shift.to_le_bytes());
        let mut at = HEADER;
        for (i, (b, size)) in sections.iter().enumerate() {
            let h = 24 + i * 16;
            buf[h..h + 8].copy_from_slice(&(at as u64).to_le_bytes());
            buf[h + 8..h + 16].copy_from_slice(&((b.len() / size) as u64).to_le_bytes());
            buf[at..at + b.len()].copy_from_slice(b);
            at += pad(b.len());
        }
    }
    parse(Bytes::Owned(words)).expect("a freshly assembled index is valid")
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
    let narrow = u32_at(12) & NARROW_VALS != 0;
    let shift = u32_at(16);
    if !(1..=63).contains(&shift) {
        return Err("bad bucket shift".into());
    }
    let sizes = [4usize, 8, if narrow { 2 } else { 4 }, 8, 2, 1];
    let mut s = [Sect::default(); 6];
    for (i, size) in sizes.iter().enumerate() {
        let off = usize::try_from(u64_at(24 + i * 16)).map_err(|_| "offset too large")?;
        let len = usize::try_from(u64_at(32 + i * 16)).map_err(|_| "length too large")?;
        let end = len
            .checked_mul(*size)
            .and_then(|n| n.checked_add(off))
            .ok_or("section overflows")?;
        if off % 8 != 0 || off < HEADER || end > b.len() {
            return Err(format!("section {i} out of the file"));
        }
        s[i] = Sect { off, len };
    }
    let ix = DomainIndex {
        bytes,
        shift,
        narrow,
        dir: s[0],
        keys: s[1],
        vals: s[2],
        pairs: s[3],
        sets: s[4],
        meta: s[5],
    };
    // Structure: the directory covers every bucket and stays within the keys; every value
    // names a pair; every pair names a whole set.
    let dir = ix.dir();
    if dir.len() != (1usize << (64 - shift)) + 1 {
        return Err("directory size does not match the bucket count".into());
    }
    if dir.windows(2).any(|w| w[0] > w[1]) || dir[dir.len() - 1] as usize != ix.keys.len {
        return Err("directory out of order".into());
    }
    if ix.vals.len != ix.keys.len {
        return Err("keys and values differ in number".into());
    }
    let npairs = ix.pairs.len;
    let vals_ok = if narrow {
        bytemuck::cast_slice::<u8, u16>(ix.raw(ix.vals, 2))
            .iter()
            .all(|&v| (v as usize) < npairs)
    } else {
        bytemuck::cast_slice::<u8, u32>(ix.raw(ix.vals, 4))
            .iter()
            .all(|&v| (v as usize) < npairs)
    };
    if !vals_ok {
        return Err("a value names no pair".into());
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

        let mut dir: Vec<u32> = Vec::with_capacity(buckets + 1);
        let mut k = 0usize;
        for b in 0..buckets {
            dir.push(k as u32);
            while k < keys.len() && (keys[k] >> shift) as usize == b {
                k += 1;
            }
        }
        dir.push(keys.len() as u32);

        let narrow = pairs.len() < u16::MAX as usize;
        let vals16: Vec<u16>;
        let vals_bytes: &[u8] = if narrow {
            vals16 = vals.iter().map(|&v| v as u16).collect();
            bytemuck::cast_slice(&vals16)
        } else {
            bytemuck::cast_slice(&vals)
        };
        let flat: Vec<u32> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
        assemble(&Parts {
            shift,
            narrow,
            dir: bytemuck::cast_slice(&dir),
            keys: bytemuck::cast_slice(&keys),
            vals: vals_bytes,
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
        // Truncated, wrong magic, a directory entry past the keys, a value past the pairs.
        assert!(
            check(&good[..good.len() / 2])
                .unwrap()
                .contains("categories compile")
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(check(&bad).is_some());
        let dir_off = u64::from_le_bytes(good[24..32].try_into().unwrap()) as usize;
        let mut bad = good.clone();
        bad[dir_off..dir_off + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(check(&bad).is_some());
        let vals_off = u64::from_le_bytes(good[56..64].try_into().unwrap()) as usize;
        let mut bad = good.clone();
        bad[vals_off..vals_off + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(check(&bad).is_some());
        assert!(check(b"").is_some());
    }

    #[test]
    fn empty_index_finds_nothing() {
        let ix = IndexBuilder::new().build();
        assert!(tags(&ix, "example.com").is_empty());
    }
}
