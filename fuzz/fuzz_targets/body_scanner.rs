//! `content::ScanState`, the upload content scanner (DLP), on arbitrary bodies.
//!
//! Input: byte 0 picks the body format (bits 0–1) and the content encoding (bits 2–4);
//! byte 1 the chunk sizes (1 + byte 1, then varied by the body length); the rest is the
//! body. Besides "never panics", the documented contract:
//!
//! - the findings, or the error, are the same whether the body is fed whole or in the
//!   chosen chunks (matches across chunk boundaries are found exactly once);
//! - an identity-encoded raw body (ASCII, plus the few accents of the words) never gives a dictionary more hits than a naive
//!   count of its folded words in the folded body (an upper bound: the naive count
//!   ignores word boundaries).
#![no_main]

use std::sync::OnceLock;

use charte_proxy::content::{
    BodyFormat, ContentEncoding, DictionarySpec, Findings, IdentifierKind, IdentifierSpec, Limits, ScanError,
    Scanner,
};
use libfuzzer_sys::fuzz_target;

const WORDS: &[&str] = &["Diffusion Restreinte", "confidentiel", "Données de santé", "œuvre", "a b", "x"];

fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Scanner::build(
            &[
                DictionarySpec { name: "secret".into(), words: words(&WORDS[..2]), min: 1 },
                DictionarySpec { name: "misc".into(), words: words(&WORDS[2..]), min: 1 },
            ],
            &[
                IdentifierSpec { name: "nir".into(), kind: IdentifierKind::Nir, min: 1, near: vec![], distance: 0 },
                IdentifierSpec {
                    name: "iban".into(),
                    kind: IdentifierKind::Iban,
                    min: 1,
                    near: words(&["iban", "rib"]),
                    distance: 30,
                },
                IdentifierSpec {
                    name: "card".into(),
                    kind: IdentifierKind::Card,
                    min: 1,
                    near: words(&["carte", "x"]),
                    distance: 8,
                },
            ],
            Limits { max_decoded_bytes: 4 << 20, max_ratio: 100 },
        )
        .expect("the fuzz policy builds")
    })
}

fn run(s: &Scanner, format: BodyFormat, enc: ContentEncoding, chunks: &mut dyn Iterator<Item = &[u8]>) -> Result<Findings, ScanError> {
    let mut st = s.start(format, enc);
    for c in chunks {
        st.feed(s, c)?;
    }
    st.finish(s)?;
    Ok(st.findings().clone())
}

/// Folds as the scanner does, for the naive count: lower case, Latin accents, spaces.
fn naive_fold(text: &str) -> String {
    let mut out = String::new();
    let mut space = false;
    for c in text.chars() {
        let s: String = match c {
            c if c.is_whitespace() => " ".into(),
            'é' | 'É' => "e".into(),
            'œ' | 'Œ' => "oe".into(),
            c => c.to_ascii_lowercase().to_string(),
        };
        if s == " " {
            if space {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        out.push_str(&s);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let format = [BodyFormat::Raw, BodyFormat::UrlEncoded, BodyFormat::Json, BodyFormat::Multipart][(data[0] & 3) as usize];
    let enc = [
        ContentEncoding::Identity,
        ContentEncoding::Gzip,
        ContentEncoding::Deflate,
        ContentEncoding::Zstd,
        ContentEncoding::Identity,
        ContentEncoding::Identity,
        ContentEncoding::Identity,
        ContentEncoding::Identity,
    ][((data[0] >> 2) & 7) as usize];
    let step = data[1] as usize + 1;
    let body = &data[2..];
    let s = scanner();

    let whole = run(s, format, enc, &mut std::iter::once(body));
    // Chunks of varying sizes: step, step+1, …, wrapping at step + 7.
    let mut cuts = Vec::new();
    let (mut at, mut k) = (0, 0);
    while at < body.len() {
        let n = (step + k % 8).min(body.len() - at);
        cuts.push(&body[at..at + n]);
        at += n;
        k += 1;
    }
    let split = run(s, format, enc, &mut cuts.into_iter());
    assert_eq!(split, whole, "chunks of {step}+ bytes");
    let bytes = run(s, format, enc, &mut body.chunks(1));
    assert_eq!(bytes, whole, "byte by byte");

    if let (BodyFormat::Raw, ContentEncoding::Identity, Ok(f)) = (format, enc, &whole) {
        let simple = |t: &str| t.chars().all(|c| c.is_ascii() || "éÉœŒ\u{a0}\u{202f}".contains(c));
        if let Some(text) = std::str::from_utf8(body).ok().filter(|t| simple(t)) {
            let folded = naive_fold(text);
            let naive = |words: &[&str]| -> u32 {
                words
                    .iter()
                    .map(|w| {
                        let w = naive_fold(w);
                        (0..folded.len()).filter(|&i| folded[i..].starts_with(&w)).count() as u32
                    })
                    .sum()
            };
            assert!(f.count(0) <= naive(&WORDS[..2]), "secret: {} hits", f.count(0));
            assert!(f.count(1) <= naive(&WORDS[2..]), "misc: {} hits", f.count(1));
        }
    }
});
