//! Upload content checks (DLP): a request body read, as it streams, for keyword
//! dictionaries and validated identifiers (French NIR, IBAN, payment cards).
//!
//! Pure and synchronous: no I/O, no tokio, no logging, no HTTP types. The pipeline hands
//! the body's chunks to a [`ScanState`] and reads its [`Findings`]: counts per detector,
//! never the matched text (the trace must not become the leak).
//!
//! A body goes through four stages, each a small state machine over bytes given in any
//! pieces, so that feeding a body whole or split anywhere gives the same findings:
//!
//! 1. [`encoding`]: the `Content-Encoding` (gzip, deflate, zstd) undone, with a bound
//!    on the decoded size and on the expansion ratio;
//! 2. [`format`]: the body format decoded (url-encoded, JSON escapes, multipart parts
//!    with their own transfer encoding and type);
//! 3. [`fold`]: case, Latin accents and white-space runs folded, as the dictionary
//!    words were at build time;
//! 4. the matchers, on the folded text: one Aho-Corasick automaton for every dictionary
//!    word and every `near` word, run over each folded piece plus the last bytes of the
//!    previous one (the window, as long as the longest word plus one); and [`ident`],
//!    the identifier runs checked by their checksums.
//!
//! Memory per request is bounded whatever the body: the window, one run (64 bytes), one
//! multipart header line (8 KiB), the decompressor's state, the pending proximity
//! candidates (at most [`MAX_PENDING`]) and the piece being folded (64 KiB at most).

mod encoding;
pub mod filetype;
mod fold;
mod format;
mod ident;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use self::encoding::{Bound, Decoder, OUT};
use self::fold::Folder;
use self::format::{Multipart, Simple};
use self::ident::{Found, Runs};

/// A detector: an index into [`Scanner::detectors`].
pub type DetectorId = u16;

/// The identifiers the scanner validates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentifierKind {
    /// French social security number (NIR), 13 digits and a 2-digit key.
    Nir,
    /// International bank account number (ISO 13616), SEPA countries.
    Iban,
    /// Payment card number (Luhn, known issuer prefix).
    Card,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Nir => "nir",
            IdentifierKind::Iban => "iban",
            IdentifierKind::Card => "card",
        }
    }
}

/// A keyword dictionary as configured: it hits when its words occur `min` times in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DictionarySpec {
    pub name: String,
    pub words: Vec<String>,
    pub min: u32,
}

/// An identifier detector as configured: it hits when `min` valid identifiers of `kind`
/// are found, each (when `near` is not empty) within `distance` bytes of a `near` word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifierSpec {
    pub name: String,
    pub kind: IdentifierKind,
    pub min: u32,
    /// Words one of which must be close to each identifier; empty: no such requirement.
    pub near: Vec<String>,
    /// The most bytes (of folded text) between an identifier and a `near` word.
    pub distance: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectorKind {
    Dictionary,
    Identifier(IdentifierKind),
}

/// A compiled detector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detector {
    pub name: Box<str>,
    pub kind: DetectorKind,
    pub min: u32,
}

/// Why a scanner cannot be built; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("dictionary {0:?} has no words: give it at least one")]
    EmptyDictionary(String),
    #[error("{owner:?}: word {index} is empty once case, accents and spaces are folded: remove it")]
    EmptyWord { owner: String, index: usize },
    #[error("{owner:?}: word {index} is {len} bytes long once folded, more than {max}: shorten it")]
    WordTooLong {
        owner: String,
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("{0:?}: `min` is 0, so it would always hit: give at least 1")]
    ZeroMin(String),
    #[error("{count} detectors, more than {max}: merge some dictionaries")]
    TooMany { count: usize, max: usize },
    #[error("the keyword automaton could not be built: {0}")]
    Automaton(String),
}

/// The bounds on a compressed body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most decoded bytes of a compressed body (default 64 MiB).
    pub max_decoded_bytes: u64,
    /// The most decoded bytes per compressed byte, checked past 1 MiB decoded
    /// (default 100; 0 turns the check off).
    pub max_ratio: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decoded_bytes: 64 << 20,
            max_ratio: 100,
        }
    }
}

/// How the body's bytes are read as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Raw,
    UrlEncoded,
    Json,
    /// `multipart/*` with a boundary; the delimiter is read from the body's first line.
    Multipart,
}

impl BodyFormat {
    /// The format of a request whose `Content-Type` header is `content_type`.
    pub fn of(content_type: Option<&[u8]>) -> BodyFormat {
        let Some(ct) = content_type else {
            return BodyFormat::Raw;
        };
        let mut params = ct.split(|&b| b == b';');
        let essence = params
            .next()
            .unwrap_or(b"")
            .trim_ascii()
            .to_ascii_lowercase();
        if essence.starts_with(b"multipart/") {
            let has_boundary = params.any(|p| {
                let p = p.trim_ascii();
                p.len() > 9 && p[..9].eq_ignore_ascii_case(b"boundary=")
            });
            return if has_boundary {
                BodyFormat::Multipart
            } else {
                BodyFormat::Raw
            };
        }
        match format::simple_of(ct) {
            Simple::Raw => BodyFormat::Raw,
            Simple::Url { .. } => BodyFormat::UrlEncoded,
            Simple::Json(_) => BodyFormat::Json,
        }
    }
}

/// The body's `Content-Encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
    Deflate,
    Zstd,
    /// Named so that it is recognised; not decoded in this build (no brotli crate), so
    /// [`ContentEncoding::of`] refuses it as unsupported.
    Br,
}

impl ContentEncoding {
    /// The encoding named by a `Content-Encoding` value; an unknown one, `br`, or
    /// several stacked (`gzip, gzip`) are refused.
    pub fn of(content_encoding: Option<&[u8]>) -> Result<ContentEncoding, ScanError> {
        let Some(v) = content_encoding else {
            return Ok(ContentEncoding::Identity);
        };
        let v = v.trim_ascii();
        let name = String::from_utf8_lossy(v).to_ascii_lowercase();
        match name.as_str() {
            "" | "identity" => Ok(ContentEncoding::Identity),
            "gzip" | "x-gzip" => Ok(ContentEncoding::Gzip),
            "deflate" => Ok(ContentEncoding::Deflate),
            "zstd" => Ok(ContentEncoding::Zstd),
            _ => Err(ScanError::Unsupported(name.chars().take(40).collect())),
        }
    }
}

/// Why a body could not be scanned.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScanError {
    /// The decoded size or the expansion ratio went past its limit: a bomb is refused,
    /// never expanded.
    #[error("the decoded body is larger than allowed")]
    TooLarge,
    #[error("the compressed body is corrupt")]
    Corrupt,
    #[error("unsupported content encoding {0:?}")]
    Unsupported(String),
}

impl ScanError {
    /// A stable short code for traces and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ScanError::TooLarge => "too-large",
            ScanError::Corrupt => "corrupt",
            ScanError::Unsupported(_) => "unsupported-encoding",
        }
    }
}

/// The longest word, folded: it bounds the window kept between pieces.
pub const MAX_WORD_LEN: usize = 256;
/// The most identifiers waiting for a `near` word at once; past it the oldest is
/// dropped (not counted).
pub const MAX_PENDING: usize = 64;
/// The most folded bytes made at once (identity bodies are cut into pieces this long).
const PIECE: usize = 64 * 1024;

/// What a pattern of the automaton stands for.
#[derive(Clone, Debug, Default)]
struct Role {
    /// The dictionaries it belongs to.
    dicts: Vec<DetectorId>,
    /// The identifier detectors (indexes into `Scanner::idents`) it is a `near` word of.
    near: Vec<u16>,
}

/// An identifier detector, compiled.
#[derive(Clone, Debug)]
struct Ident {
    id: DetectorId,
    kind: IdentifierKind,
    has_near: bool,
    distance: u64,
}

/// Every detector of a policy, compiled once: one automaton for all the words.
#[derive(Clone, Debug)]
pub struct Scanner {
    detectors: Vec<Detector>,
    ac: Option<AhoCorasick>,
    /// By pattern id.
    roles: Vec<Role>,
    idents: Vec<Ident>,
    /// The identifier kinds asked for (see `ident::bit`).
    kinds: u8,
    /// The longest pattern.
    max_len: usize,
    /// Folded bytes kept between pieces: the longest pattern plus one (the byte before a
    /// match, for its word boundary), and at least 4 (an IBAN's start looks back 3).
    window: usize,
    limits: Limits,
}

impl Default for Scanner {
    /// No detector: a policy without a `content` section.
    fn default() -> Scanner {
        Scanner::build(&[], &[], Limits::default()).expect("no detector builds")
    }
}

impl Scanner {
    pub fn build(
        dicts: &[DictionarySpec],
        ids: &[IdentifierSpec],
        limits: Limits,
    ) -> Result<Scanner, BuildError> {
        let count = dicts.len() + ids.len();
        if count > DetectorId::MAX as usize {
            return Err(BuildError::TooMany {
                count,
                max: DetectorId::MAX as usize,
            });
        }
        let mut detectors = Vec::with_capacity(count);
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut roles: Vec<Role> = Vec::new();
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut pattern = |owner: &str, i: usize, word: &str| -> Result<usize, BuildError> {
            let folded = fold::fold_word(word);
            if folded.is_empty() {
                return Err(BuildError::EmptyWord {
                    owner: owner.to_string(),
                    index: i,
                });
            }
            if folded.len() > MAX_WORD_LEN {
                let len = folded.len();
                return Err(BuildError::WordTooLong {
                    owner: owner.to_string(),
                    index: i,
                    len,
                    max: MAX_WORD_LEN,
                });
            }
            Ok(*index.entry(folded).or_insert_with_key(|k| {
                patterns.push(k.clone());
                roles.push(Role::default());
                patterns.len() - 1
            }))
        };
        let mut links: Vec<(usize, bool, u16)> = Vec::new();
        for (d, spec) in dicts.iter().enumerate() {
            if spec.words.is_empty() {
                return Err(BuildError::EmptyDictionary(spec.name.clone()));
            }
            if spec.min == 0 {
                return Err(BuildError::ZeroMin(spec.name.clone()));
            }
            for (i, w) in spec.words.iter().enumerate() {
                links.push((pattern(&spec.name, i, w)?, true, d as u16));
            }
            detectors.push(Detector {
                name: spec.name.as_str().into(),
                kind: DetectorKind::Dictionary,
                min: spec.min,
            });
        }
        let mut idents = Vec::with_capacity(ids.len());
        let mut kinds = 0;
        for (k, spec) in ids.iter().enumerate() {
            if spec.min == 0 {
                return Err(BuildError::ZeroMin(spec.name.clone()));
            }
            for (i, w) in spec.near.iter().enumerate() {
                links.push((pattern(&spec.name, i, w)?, false, k as u16));
            }
            kinds |= ident::bit(spec.kind);
            idents.push(Ident {
                id: detectors.len() as DetectorId,
                kind: spec.kind,
                has_near: !spec.near.is_empty(),
                distance: spec.distance as u64,
            });
            detectors.push(Detector {
                name: spec.name.as_str().into(),
                kind: DetectorKind::Identifier(spec.kind),
                min: spec.min,
            });
        }
        for (p, dict, who) in links {
            let list = if dict {
                &mut roles[p].dicts
            } else {
                &mut roles[p].near
            };
            if !list.contains(&who) {
                list.push(who);
            }
        }
        let max_len = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let ac = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&patterns)
                    .map_err(|e| BuildError::Automaton(e.to_string()))?,
            )
        };
        Ok(Scanner {
            detectors,
            ac,
            roles,
            idents,
            kinds,
            max_len,
            window: (max_len + 1).max(4),
            limits,
        })
    }

    /// Dictionaries first, in their order, then identifier detectors.
    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }

    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
    }

    /// A new scan, for one request body.
    pub fn start(&self, format: BodyFormat, encoding: ContentEncoding) -> ScanState {
        let format = match format {
            BodyFormat::Raw => Format::Simple(Simple::Raw),
            BodyFormat::UrlEncoded => {
                Format::Simple(format::simple_of(b"application/x-www-form-urlencoded"))
            }
            BodyFormat::Json => Format::Simple(format::simple_of(b"application/json")),
            BodyFormat::Multipart => Format::Multipart(Box::new(Multipart::new())),
        };
        let decoder = Decoder::new(encoding);
        let out = if matches!(decoder, Decoder::Identity) {
            Vec::new()
        } else {
            vec![0; OUT]
        };
        ScanState {
            decoder,
            bound: Decoder::bound(self.limits),
            out,
            format,
            folder: Folder::default(),
            buf: Vec::new(),
            base: 0,
            kept: 0,
            runs: Runs::default(),
            found: Vec::new(),
            events: Vec::new(),
            recent: vec![Recent::default(); self.idents.len()],
            pending: VecDeque::new(),
            findings: Findings {
                counts: vec![0; self.detectors.len()],
            },
            failed: None,
            finished: false,
        }
    }
}

enum Format {
    Simple(Simple),
    Multipart(Box<Multipart>),
}

/// The last `near` words seen for one identifier detector: (start, end) in the stream.
#[derive(Clone, Copy, Debug, Default)]
struct Recent {
    spans: [(u64, u64); 4],
    len: u8,
    next: u8,
}

/// An identifier waiting for a `near` word.
#[derive(Clone, Copy, Debug)]
struct Pending {
    ident: u16,
    start: u64,
    end: u64,
}

/// Something that happened at a position of the folded stream, handled in order of
/// position so that the result does not depend on where the chunks were cut.
#[derive(Clone, Copy, Debug)]
enum Event {
    Near {
        at: u64,
        ident: u16,
        start: u64,
        end: u64,
    },
    Found(Found),
}

impl Event {
    fn key(&self) -> (u64, u8) {
        match self {
            Event::Near { at, .. } => (*at, 0),
            Event::Found(f) => (f.at, 1),
        }
    }
}

/// One request body being scanned.
pub struct ScanState {
    decoder: Decoder,
    bound: Bound,
    /// The decoder's output piece (empty for identity bodies).
    out: Vec<u8>,
    format: Format,
    folder: Folder,
    /// Folded text: the window kept from the previous piece (`kept` bytes), then new.
    buf: Vec<u8>,
    /// The stream position of `buf[0]`.
    base: u64,
    kept: usize,
    runs: Runs,
    /// Reused per piece: identifiers found, events to handle.
    found: Vec<Found>,
    events: Vec<Event>,
    /// By identifier detector.
    recent: Vec<Recent>,
    pending: VecDeque<Pending>,
    findings: Findings,
    failed: Option<ScanError>,
    finished: bool,
}

/// Shows counts and state only: the window and the run hold body text, never shown.
impl std::fmt::Debug for ScanState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanState")
            .field("decoder", &self.decoder)
            .field("folded_bytes", &(self.base + self.buf.len() as u64))
            .field("findings", &self.findings)
            .field("failed", &self.failed)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl ScanState {
    /// Scans the next chunk of the body, as it came from the client.
    pub fn feed(&mut self, scanner: &Scanner, chunk: &[u8]) -> Result<(), ScanError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.finished {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.out);
        let mut decoder = std::mem::replace(&mut self.decoder, Decoder::Identity);
        let mut bound = self.bound;
        let identity = matches!(decoder, Decoder::Identity);
        let r = if identity {
            for piece in chunk.chunks(PIECE) {
                self.text(scanner, piece);
            }
            Ok(())
        } else {
            decoder.feed(chunk, &mut out, &mut bound, &mut |piece| {
                self.text(scanner, piece)
            })
        };
        self.bound = bound;
        self.decoder = decoder;
        self.out = out;
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    /// The end of the body: flushes the decoder, the format and the last candidates.
    pub fn finish(&mut self, scanner: &Scanner) -> Result<(), ScanError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.finished {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.out);
        let mut decoder = std::mem::replace(&mut self.decoder, Decoder::Identity);
        let mut bound = self.bound;
        let r = decoder.finish(&mut out, &mut bound, &mut |piece| self.text(scanner, piece));
        self.decoder = decoder;
        self.out = out;
        if let Err(e) = r {
            self.failed = Some(e.clone());
            return Err(e);
        }
        match &mut self.format {
            Format::Simple(s) => s.finish(&mut self.folder, &mut self.buf),
            Format::Multipart(m) => m.finish(&mut self.folder, &mut self.buf),
        }
        self.folder.finish(&mut self.buf);
        self.scan(scanner, true);
        self.finished = true;
        Ok(())
    }

    /// The counts so far: a lower bound until [`ScanState::finish`] returned.
    pub fn findings(&self) -> &Findings {
        &self.findings
    }

    /// Decoded body bytes: decoded by format, folded, scanned.
    fn text(&mut self, scanner: &Scanner, piece: &[u8]) {
        match &mut self.format {
            Format::Simple(s) => s.push(piece, &mut self.folder, &mut self.buf),
            Format::Multipart(m) => m.push(piece, &mut self.folder, &mut self.buf),
        }
        if self.buf.len() > self.kept {
            self.scan(scanner, false);
        }
    }

    /// Runs the matchers over the new folded bytes, then keeps the window.
    fn scan(&mut self, scanner: &Scanner, end: bool) {
        let buf = &self.buf;
        let len = buf.len();
        let from = self.kept;
        self.found.clear();
        self.events.clear();
        if scanner.kinds != 0 {
            self.runs
                .scan(buf, from, self.base, scanner.kinds, &mut self.found);
            if end {
                self.runs
                    .finish(self.base + len as u64, scanner.kinds, &mut self.found);
            }
        }
        if let Some(ac) = &scanner.ac {
            for m in ac.find_overlapping_iter(&buf[..]) {
                let (s, e) = (m.start(), m.end());
                // Each match is counted once: when the byte after it is new (or, at the
                // end, when it ends the stream); the window keeps the byte before it.
                let owned = if end { e >= from } else { e >= from && e < len };
                if !owned {
                    continue;
                }
                let before = s == 0 || !is_word(buf[s - 1]);
                let after = e == len || !is_word(buf[e]);
                if !(before && after) {
                    continue;
                }
                let role = &scanner.roles[m.pattern().as_usize()];
                for &d in &role.dicts {
                    let c = &mut self.findings.counts[d as usize];
                    *c = c.saturating_add(1);
                }
                for &ident in &role.near {
                    let at = self.base + e as u64;
                    let (start, end) = (self.base + s as u64, self.base + e as u64);
                    self.events.push(Event::Near {
                        at,
                        ident,
                        start,
                        end,
                    });
                }
            }
        }
        if !self.found.is_empty() || !self.events.is_empty() {
            self.events
                .extend(self.found.iter().map(|f| Event::Found(*f)));
            self.events.sort_by_key(Event::key);
            let events = std::mem::take(&mut self.events);
            for ev in &events {
                self.handle(scanner, *ev);
            }
            self.events = events;
        }
        if end {
            self.pending.clear();
        }
        let keep = scanner.window.min(len);
        self.buf.drain(..len - keep);
        self.base += (len - keep) as u64;
        self.kept = keep;
    }

    fn handle(&mut self, scanner: &Scanner, ev: Event) {
        let at = ev.key().0;
        // No `near` word discovered from now on can start before `at - max_len`.
        let horizon = at.saturating_sub(scanner.max_len as u64);
        self.pending
            .retain(|p| p.end + scanner.idents[p.ident as usize].distance >= horizon);
        match ev {
            Event::Near {
                ident, start, end, ..
            } => {
                let d = scanner.idents[ident as usize].distance;
                let id = scanner.idents[ident as usize].id;
                let before = self.pending.len();
                self.pending
                    .retain(|p| !(p.ident == ident && close(p.start, p.end, start, end, d)));
                let resolved = (before - self.pending.len()) as u32;
                let c = &mut self.findings.counts[id as usize];
                *c = c.saturating_add(resolved);
                let r = &mut self.recent[ident as usize];
                r.spans[r.next as usize] = (start, end);
                r.next = (r.next + 1) % 4;
                r.len = (r.len + 1).min(4);
            }
            Event::Found(f) => {
                for (k, det) in scanner.idents.iter().enumerate() {
                    if det.kind != f.kind {
                        continue;
                    }
                    let r = &self.recent[k];
                    let near = !det.has_near
                        || r.spans[..r.len as usize]
                            .iter()
                            .any(|&(s, e)| close(f.start, f.end, s, e, det.distance));
                    if near {
                        let c = &mut self.findings.counts[det.id as usize];
                        *c = c.saturating_add(1);
                    } else {
                        if self.pending.len() == MAX_PENDING {
                            self.pending.pop_front();
                        }
                        self.pending.push_back(Pending {
                            ident: k as u16,
                            start: f.start,
                            end: f.end,
                        });
                    }
                }
            }
        }
    }
}

/// A letter or digit of the folded text (word boundaries are anything else).
fn is_word(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Whether an identifier at `s..e` and a word at `ws..we` are at most `d` bytes apart.
fn close(s: u64, e: u64, ws: u64, we: u64, d: u64) -> bool {
    we + d >= s && ws <= e + d
}

/// Counts per detector; never the text that matched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// By [`DetectorId`].
    counts: Vec<u32>,
}

impl Findings {
    pub fn count(&self, d: DetectorId) -> u32 {
        self.counts.get(d as usize).copied().unwrap_or(0)
    }

    /// The detectors whose count reached their `min`, with their count.
    pub fn hits<'a>(&'a self, s: &'a Scanner) -> impl Iterator<Item = (DetectorId, u32)> + 'a {
        s.detectors
            .iter()
            .enumerate()
            .map(|(d, det)| (d as DetectorId, self.count(d as DetectorId), det.min))
            .filter(|&(_, c, min)| c >= min)
            .map(|(d, c, _)| (d, c))
    }

    /// Whether one of `wanted` reached its `min`.
    pub fn any_of(&self, s: &Scanner, wanted: &[DetectorId]) -> bool {
        wanted.iter().any(|&d| {
            s.detectors
                .get(d as usize)
                .is_some_and(|det| self.count(d) >= det.min)
        })
    }
}
