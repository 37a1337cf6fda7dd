//! The late decisions (see [`crate::policy::late`]): an upload's body read for what it
//! carries before any of it reaches the site (`content` rules, §5.9 and §6.5), and a
//! download's first bytes read for what it is before any of it reaches the client
//! (`file_types` rules, §6.2). The policy decides again with what was found; this
//! module only reads, and the pipeline answers.
//!
//! An upload is held in memory up to [`HOLD_MAX`] while it is read: a body that ends
//! within it is decided whole, and nothing of a refused one is sent. A longer body
//! goes on past the hold while its rest is read on the way; if it is refused then, it
//! is cut there: the site gets an incomplete request (no final chunk, a short
//! `Content-Length`), never a complete one, and the client the block page. DESIGN.md
//! ("Upload checks") says why.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header;
use http_body::Frame;
use http_body_util::BodyExt;

use crate::action::body::{BoxError, CountedIncoming, Watch};
use crate::classify::{Classification, Host};
use crate::content::filetype::{self, FileKind, MAGIC_LEN};
use crate::content::{BodyFormat, ContentEncoding, DetectorId, DetectorKind, IdentifierKind};
use crate::content::{ScanError, ScanState, Scanner};
use crate::identity::Identity;
use crate::policy::{ContentHits, Decision, FileTypes, Lang, LocalTime, RequestFacts, Verdict};
use crate::snapshot::Snapshot;

/// The most of an upload held in memory while it is read (4 MiB): bodies up to this
/// size are decided whole, before any byte of them is sent.
pub const HOLD_MAX: usize = 4 << 20;

/// What a decision needs to be made again, once the body or the answer is known.
pub(super) struct Again {
    snap: Arc<Snapshot>,
    pub(super) who: Identity,
    host: Host,
    path: Arc<str>,
    method: http::Method,
    pub(super) asked: Asked,
}

/// The facts of the request head, as the first decision had them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Asked {
    pub(super) approved: bool,
    pub(super) local: LocalTime,
    pub(super) body: bool,
    pub(super) query_len: u32,
}

impl Again {
    pub(super) fn new(
        snap: &Arc<Snapshot>,
        who: Identity,
        host: &Host,
        path: Arc<str>,
        method: &http::Method,
        asked: Asked,
    ) -> Again {
        Again {
            snap: snap.clone(),
            who,
            host: host.clone(),
            path,
            method: method.clone(),
            asked,
        }
    }

    /// The decision with the late facts known so far.
    pub(super) fn decide(
        &self,
        content: Option<ContentHits>,
        file_types: Option<FileTypes>,
    ) -> Decision {
        let mut class = Classification::default();
        self.snap
            .classifier
            .classify(&self.host, Some(&self.path), &mut String::new(), &mut class);
        let a = self.asked;
        let facts = RequestFacts {
            body: a.body,
            query_len: a.query_len,
            approved: a.approved,
            local: a.local,
            content,
            file_types,
            ..RequestFacts::for_method(self.method.as_str(), true)
        };
        self.snap.policy.decide(&self.who, &class, &facts)
    }

    fn scanner(&self) -> &Scanner {
        &self.snap.policy.content
    }
}

/// What the content checks found: each detector that reached its minimum, with its
/// count. Never the text itself.
#[derive(Clone, Debug, Default)]
pub(super) struct Found(Vec<(DetectorId, u32)>);

impl Found {
    fn of(state: &ScanState, s: &Scanner) -> Found {
        Found(state.findings().hits(s).collect())
    }

    /// The decision with what was found. Nothing found: the rules that waited do not
    /// match, as the first decision took them; it stands.
    fn decision(&self, again: &Again, first: &Decision) -> Decision {
        if self.0.is_empty() {
            *first
        } else {
            again.decide(Some(self.hits()), None)
        }
    }

    pub(super) fn hits(&self) -> ContentHits {
        self.0
            .iter()
            .fold(ContentHits::NONE, |h, (d, _)| h.with(*d))
    }

    /// For the trace: `nir:2 confidentiel:1`.
    pub(super) fn trace(&self, s: &Scanner) -> String {
        let mut out = String::new();
        for (d, n) in &self.0 {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("{}:{n}", s.detectors()[*d as usize].name));
        }
        out
    }

    /// For the block page, in the person's language.
    pub(super) fn page(&self, s: &Scanner, lang: Lang) -> String {
        let en = lang == Lang::En;
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(d, n)| {
                let det = &s.detectors()[*d as usize];
                match (&det.kind, en) {
                    (DetectorKind::Dictionary, false) => {
                        format!("mots du dictionnaire « {} » : {n} occurrence(s)", det.name)
                    }
                    (DetectorKind::Dictionary, true) => {
                        format!(
                            "words of the dictionary \"{}\": {n} occurrence(s)",
                            det.name
                        )
                    }
                    (DetectorKind::Identifier(k), _) => {
                        format!("{} (« {} ») : {n}", identifier_label(*k, en), det.name)
                    }
                }
            })
            .collect();
        parts.join(" ; ")
    }
}

fn identifier_label(k: IdentifierKind, en: bool) -> &'static str {
    match (k, en) {
        (IdentifierKind::Nir, false) => "numéros de sécurité sociale (NIR) valides",
        (IdentifierKind::Nir, true) => "valid French social security numbers (NIR)",
        (IdentifierKind::Iban, false) => "IBAN valides",
        (IdentifierKind::Iban, true) => "valid IBANs",
        (IdentifierKind::Card, false) => "numéros de carte bancaire valides",
        (IdentifierKind::Card, true) => "valid payment card numbers",
    }
}

/// Why an upload is refused.
pub(super) enum Refusal {
    /// A `content` rule decided to block.
    Content(Decision, Found),
    /// The body could not be read for checking (a bomb, corrupt, unknown encoding).
    Unchecked(ScanError),
    /// The client's body failed (malformed, stalled).
    Client(BoxError),
}

/// A refusal found while the rest of a long upload was on its way.
pub(super) type Slot = Arc<Mutex<Option<Refusal>>>;

/// An upload, checked.
pub(super) enum Upload {
    /// Read whole and decided again: the body is given out again from the start.
    Whole(Decision, Found),
    /// Longer than the hold: decided again on what was read; the rest is read on its
    /// way and a refusal lands in the slot (the body then fails).
    Streaming(Decision, Slot),
    Refused(Refusal),
}

/// The body is refused on its way (its watch failed).
#[derive(Debug, thiserror::Error)]
#[error("upload refused by the content checks")]
pub(super) struct ContentRefused;

/// Reads the upload (up to [`HOLD_MAX`]) for what it carries and decides again.
pub(super) async fn upload(
    incoming: &mut CountedIncoming,
    head: &HeaderMap,
    again: Arc<Again>,
    first: &Decision,
) -> Upload {
    let s = again.scanner();
    let encoding =
        match ContentEncoding::of(head.get(header::CONTENT_ENCODING).map(|v| v.as_bytes())) {
            Ok(e) => e,
            Err(e) => return Upload::Refused(Refusal::Unchecked(e)),
        };
    let format = BodyFormat::of(head.get(header::CONTENT_TYPE).map(|v| v.as_bytes()));
    let mut state = s.start(format, encoding);
    let mut held = Vec::new();
    let mut size = 0usize;
    let ended = loop {
        if size >= HOLD_MAX {
            break false;
        }
        match incoming.frame().await {
            None => break true,
            Some(Err(e)) => return Upload::Refused(Refusal::Client(e)),
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    if let Err(e) = state.feed(s, d) {
                        return Upload::Refused(Refusal::Unchecked(e));
                    }
                    size += d.len();
                }
                held.push(f);
            }
        }
    };
    if ended {
        if let Err(e) = state.finish(s) {
            return Upload::Refused(Refusal::Unchecked(e));
        }
        let found = Found::of(&state, s);
        let d = found.decision(&again, first);
        if d.verdict == Verdict::Block {
            return Upload::Refused(Refusal::Content(d, found));
        }
        incoming.replay(held, None);
        return Upload::Whole(d, found);
    }
    // What was read so far already decides?
    let found = Found::of(&state, s);
    let d = found.decision(&again, first);
    if d.verdict == Verdict::Block {
        return Upload::Refused(Refusal::Content(d, found));
    }
    let slot: Slot = Arc::default();
    let watch = watch_rest(state, found.hits(), again.clone(), slot.clone());
    incoming.replay(held, Some(watch));
    Upload::Streaming(d, slot)
}

/// Reads the rest of a long upload on its way; decides again each time a detector
/// reaches its minimum, and at the end.
fn watch_rest(mut state: ScanState, mut seen: ContentHits, again: Arc<Again>, slot: Slot) -> Watch {
    Box::new(move |piece: Option<&[u8]>| {
        let s = again.scanner();
        let read = match piece {
            Some(d) => state.feed(s, d),
            None => state.finish(s),
        };
        let refuse = |r: Refusal| -> Result<(), BoxError> {
            if let Ok(mut g) = slot.lock() {
                *g = Some(r);
            }
            Err(Box::new(ContentRefused))
        };
        if let Err(e) = read {
            return refuse(Refusal::Unchecked(e));
        }
        let found = Found::of(&state, s);
        let hits = found.hits();
        if hits != seen || (piece.is_none() && !hits.is_empty()) {
            seen = hits;
            let d = again.decide(Some(hits), None);
            if d.verdict == Verdict::Block {
                return refuse(Refusal::Content(d, found));
            }
        }
        Ok(())
    })
}

/// A download's first bytes, read ahead to see what it is: frames until
/// [`MAGIC_LEN`] bytes or the end, each waited for at most `idle`.
pub(super) async fn first_bytes<B>(
    body: &mut B,
    idle: Duration,
) -> Result<Vec<Frame<Bytes>>, BoxError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut held = Vec::new();
    let mut size = 0;
    while size < MAGIC_LEN {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(Box::new(crate::action::body::BodyIdle {
                    side: "response",
                    after: idle,
                }));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    size += d.len();
                }
                let trailers = f.is_trailers();
                held.push(f);
                if trailers {
                    break;
                }
            }
        }
    }
    Ok(held)
}

/// What a download is, from its path, declared type and first bytes: the kinds for the
/// policy, and the trace's words (`executable(magic)`).
pub(super) fn download_kinds(
    path: &str,
    answer: &HeaderMap,
    held: &[Frame<Bytes>],
) -> (FileTypes, String) {
    let mut first = [0u8; MAGIC_LEN];
    let mut n = 0;
    for d in held.iter().filter_map(Frame::data_ref) {
        let take = (MAGIC_LEN - n).min(d.len());
        first[n..n + take].copy_from_slice(&d[..take]);
        n += take;
    }
    let found = filetype::detect(
        path,
        answer.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        &first[..n],
    );
    let mut kinds = FileTypes::NONE;
    let mut words = String::new();
    for (k, clue) in found.iter() {
        kinds = kinds.with(k);
        if !words.is_empty() {
            words.push(' ');
        }
        words.push_str(&format!("{}({})", k.as_str(), clue.as_str()));
    }
    (kinds, words)
}

/// The kinds, for the block page.
pub(super) fn kinds_page(kinds: FileTypes, lang: Lang) -> String {
    let en = lang == Lang::En;
    let words: Vec<&str> = kinds.iter().map(|k: FileKind| k.label(en)).collect();
    if en {
        format!("file type: {}", words.join(", "))
    } else {
        format!("type de fichier : {}", words.join(", "))
    }
}
