//! The scanner on real bodies: each test names what it guards.

use std::io::Write;

use super::ident::{card_valid, iban_valid, nir_valid};
use super::*;

fn dict(name: &str, words: &[&str], min: u32) -> DictionarySpec {
    DictionarySpec {
        name: name.into(),
        words: words.iter().map(|w| w.to_string()).collect(),
        min,
    }
}

fn ident(name: &str, kind: IdentifierKind, near: &[&str], distance: u32) -> IdentifierSpec {
    IdentifierSpec {
        name: name.into(),
        kind,
        min: 1,
        near: near.iter().map(|w| w.to_string()).collect(),
        distance,
    }
}

/// Detector ids: 0 secret, 1 sante, 2 nir, 3 iban, 4 card.
fn scanner() -> Scanner {
    Scanner::build(
        &[
            dict(
                "secret",
                &["Diffusion Restreinte", "Confidentiel", "Ne pas diffuser"],
                1,
            ),
            dict(
                "sante",
                &["Données de santé", "Secret médical", "Dossier médical"],
                2,
            ),
        ],
        &[
            ident("nir", IdentifierKind::Nir, &[], 0),
            ident("iban", IdentifierKind::Iban, &[], 0),
            ident("card", IdentifierKind::Card, &[], 0),
        ],
        Limits::default(),
    )
    .unwrap()
}

fn scan_chunks(
    s: &Scanner,
    format: BodyFormat,
    enc: ContentEncoding,
    chunks: &[&[u8]],
) -> Result<Findings, ScanError> {
    let mut st = s.start(format, enc);
    for c in chunks {
        st.feed(s, c)?;
    }
    st.finish(s)?;
    Ok(st.findings().clone())
}

fn scan(s: &Scanner, format: BodyFormat, body: &[u8]) -> Findings {
    scan_chunks(s, format, ContentEncoding::Identity, &[body]).unwrap()
}

fn counts(s: &Scanner, f: &Findings) -> Vec<u32> {
    (0..s.detectors().len() as DetectorId)
        .map(|d| f.count(d))
        .collect()
}

/// The same findings whole, split in two at every point, and byte by byte.
fn assert_split_invariant(
    s: &Scanner,
    format: BodyFormat,
    enc: ContentEncoding,
    body: &[u8],
) -> Findings {
    let whole = scan_chunks(s, format, enc, &[body]);
    for cut in 0..=body.len() {
        let two = scan_chunks(s, format, enc, &[&body[..cut], &body[cut..]]);
        assert_eq!(two, whole, "split at {cut}");
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(scan_chunks(s, format, enc, &bytes), whole, "byte by byte");
    whole.unwrap()
}

#[test]
fn nir_checks_key_month_sex_and_corsica() {
    for (nir, ok) in [
        ("185057800608491", true),
        ("185057800608490", false),
        ("269029934173285", true),
        ("185052a00608435", true),
        ("185052b00608462", true),
        ("185052a00608462", false),
        ("185052b00608435", false),
        ("585057800608491", false), // sex digit 5
        ("185137800608491", false), // month 13
        ("18505780060849", false),
    ] {
        assert_eq!(nir_valid(nir.as_bytes()), ok, "{nir}");
    }
}

#[test]
fn iban_checks_country_length_and_mod97() {
    for (iban, ok) in [
        ("fr7630006000011234567890189", true),
        ("fr7630006000011234567890188", false),
        ("fr763000600001123456789018", false),
        ("de89370400440532013000", true),
        ("be68539007547034", true),
        ("gb29nwbk60161331926819", true),
        ("zz7630006000011234567890189", false),
    ] {
        assert_eq!(iban_valid(iban.as_bytes()), ok, "{iban}");
    }
}

#[test]
fn card_checks_luhn_issuer_and_repetition() {
    for (card, ok) in [
        ("4111111111111111", true),
        ("5555555555554444", true),
        ("378282246310005", true),
        ("4111111111111112", false),
        ("1111111111111117", false), // no issuer starts with 1
        ("4444444444444448", true),
        ("0000000000000000", false),
        ("411111111111", false), // 12 digits
    ] {
        assert_eq!(card_valid(card.as_bytes()), ok, "{card}");
    }
}

#[test]
fn identifiers_in_text_are_delimited_and_grouped() {
    let s = scanner();
    for (text, want) in [
        ("NIR : 1 85 05 78 006 084 91.", [1, 0, 0]),
        ("NIR : 1 85 05 78 006 084 90.", [0, 0, 0]),
        ("nir 1850578006084 91 ok", [1, 0, 0]),
        ("nir 185057800608491", [1, 0, 0]),
        ("Ajaccio 1 85 05 2A 006 084 35", [1, 0, 0]),
        ("Bastia 1 85 05 2B 006 084 62", [1, 0, 0]),
        ("Bastia 1 85 05 2B 006 084 35", [0, 0, 0]),
        ("x185057800608491", [0, 0, 0]),
        ("1850578006084912", [0, 0, 0]),
        ("1 85 05 78 006 084 91 2 enfants", [1, 0, 0]),
        ("IBAN FR76 3000 6000 0112 3456 7890 189, merci", [0, 1, 0]),
        ("IBAN:FR7630006000011234567890189", [0, 1, 0]),
        ("iban fr76 3000 6000 0112 3456 7890 188", [0, 0, 0]),
        ("GB29 NWBK 6016 1331 9268 19", [0, 1, 0]),
        ("XFR7630006000011234567890189", [0, 0, 0]),
        ("carte 4111 1111 1111 1111 exp 12/27", [0, 0, 1]),
        ("carte 4111-1111-1111-1111", [0, 0, 1]),
        ("carte 4111111111111112", [0, 0, 0]),
        ("amex 3782 822463 10005", [0, 0, 1]),
        ("tel 06 12 34 56 78, 4111 11 11 1111 1111", [0, 0, 0]),
        ("deux 4111111111111111 et 5555 5555 5555 4444", [0, 0, 2]),
    ] {
        let f = scan(&s, BodyFormat::Raw, text.as_bytes());
        assert_eq!(&counts(&s, &f)[2..], want, "{text:?}");
    }
}

#[test]
fn keywords_fold_case_accents_spaces_and_escapes() {
    let s = scanner();
    for (format, body, want) in [
        (BodyFormat::Raw, &b"Diffusion  Restreinte"[..], [1, 0]),
        (BodyFormat::Raw, b"DIFFUSION\r\nRESTREINTE", [1, 0]),
        (BodyFormat::Raw, b"diffusion restreinte", [1, 0]),
        (
            BodyFormat::Raw,
            "diffusion\u{a0}restreinte".as_bytes(),
            [1, 0],
        ),
        (
            BodyFormat::Raw,
            "CONFIDENTIEL et confidentiel".as_bytes(),
            [2, 0],
        ),
        (BodyFormat::Raw, b"confidentielle", [0, 0]),
        (
            BodyFormat::Raw,
            "DONNÉES DE SANTÉ, données\tde\u{202f}santé".as_bytes(),
            [0, 2],
        ),
        (
            BodyFormat::Json,
            br#"{"t":"Donn\u00e9es de sant\u00e9","u":"Secret\nm\u00C9dical"}"#,
            [0, 2],
        ),
        (BodyFormat::Json, br#"{"t":"Ne pas \"diffuser\""}"#, [0, 0]),
        (
            BodyFormat::Json,
            br#"{"t":"Ne\tpas\/diffuser Ne pas diffuser"}"#,
            [1, 0],
        ),
        (
            BodyFormat::UrlEncoded,
            b"a=Donn%C3%A9es+de+sant%C3%A9&b=dossier%20m%c3%a9dical",
            [0, 2],
        ),
        (BodyFormat::UrlEncoded, b"a=Confidentiel%", [1, 0]),
        (BodyFormat::Raw, b"Donn%C3%A9es+de+sant%C3%A9", [0, 0]),
    ] {
        let f = scan(&s, format, body);
        assert_eq!(
            &counts(&s, &f)[..2],
            want,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn json_surrogate_pairs_decode() {
    let s = Scanner::build(&[dict("emoji", &["a😀b"], 1)], &[], Limits::default()).unwrap();
    let f = scan(&s, BodyFormat::Json, br#"["a\ud83d\ude00b", "a\ud83db"]"#);
    assert_eq!(f.count(0), 1);
}

fn multipart_body() -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD
        .encode("Rapport: Secret médical\r\nDossier médical de M. X".as_bytes());
    let b64 = b64
        .as_bytes()
        .chunks(20)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n");
    format!(
        "--XyZ\r\n\
         Content-Disposition: form-data; name=\"confidentiel\"; filename=\"Diffusion Restreinte.txt\"\r\n\
         \r\n\
         texte libre, confidentiel\r\n\
         --XyZ\r\n\
         Content-Type: application/json\r\n\
         \r\n\
         {{\"n\":\"Ne pas diffus\\u0065r\"}}\r\n\
         --XyZ\r\n\
         Content-Type: text/plain\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {b64}\r\n\
         --XyZ\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         \r\n\
         x=carte+4111+1111+1111+1111\r\n\
         --XyZ\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\
         \r\n\
         Donn=C3=A9es de sant=\r\n=C3=A9\r\n\
         --XyZ--\r\n\
         epilogue: confidentiel\r\n"
    )
    .into_bytes()
}

#[test]
fn multipart_parts_are_decoded_and_headers_not_scanned() {
    let s = scanner();
    assert_eq!(
        BodyFormat::of(Some(b"multipart/form-data; boundary=XyZ")),
        BodyFormat::Multipart
    );
    let f = scan(&s, BodyFormat::Multipart, &multipart_body());
    // secret: "confidentiel" (part 1 body) + "ne pas diffuser" (JSON part); not the
    // header's name or file name, not the epilogue. sante: 2 in base64, 1 in QP.
    assert_eq!(counts(&s, &f), [2, 3, 0, 0, 1]);
}

#[test]
fn multipart_without_boundary_line_is_read_raw() {
    let s = scanner();
    let f = scan(
        &s,
        BodyFormat::Multipart,
        b"pas de delimiteur, confidentiel\r\n--x\r\n",
    );
    assert_eq!(f.count(0), 1);
    assert_eq!(
        BodyFormat::of(Some(b"multipart/form-data")),
        BodyFormat::Raw
    );
}

#[test]
fn any_split_gives_the_same_findings() {
    let s = scanner();
    let text = "Diffusion Restreinte — Données de santé, NIR 1 85 05 2A 006 084 35, \
                IBAN FR76 3000 6000 0112 3456 7890 189 carte 4111 1111 1111 1111. Secret\u{a0}médical.";
    let f = assert_split_invariant(
        &s,
        BodyFormat::Raw,
        ContentEncoding::Identity,
        text.as_bytes(),
    );
    assert_eq!(counts(&s, &f), [1, 2, 1, 1, 1]);
    let json = br#"{"a":"Donn\u00e9es de sant\u00e9 \ud83d\ude00 confidentiel"}"#;
    let f = assert_split_invariant(&s, BodyFormat::Json, ContentEncoding::Identity, json);
    assert_eq!(counts(&s, &f), [1, 1, 0, 0, 0]);
    let url = b"a=Donn%C3%A9es+de+sant%C3%A9&b=4111%201111%201111%201111";
    let f = assert_split_invariant(&s, BodyFormat::UrlEncoded, ContentEncoding::Identity, url);
    assert_eq!(counts(&s, &f), [0, 1, 0, 0, 1]);
    let f = assert_split_invariant(
        &s,
        BodyFormat::Multipart,
        ContentEncoding::Identity,
        &multipart_body(),
    );
    assert_eq!(counts(&s, &f), [2, 3, 0, 0, 1]);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn compressed_bodies_are_decoded_then_scanned() {
    let s = scanner();
    let body = "Confidentiel. Secret médical, dossier médical. 4111 1111 1111 1111.\n".repeat(3);
    let want = [3, 6, 0, 0, 3];
    let gz = gzip(body.as_bytes());
    let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    zl.write_all(body.as_bytes()).unwrap();
    let zl = zl.finish().unwrap();
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    raw.write_all(body.as_bytes()).unwrap();
    let raw = raw.finish().unwrap();
    let zs = zstd::encode_all(body.as_bytes(), 3).unwrap();
    for (enc, data) in [
        (ContentEncoding::Gzip, &gz),
        (ContentEncoding::Deflate, &zl),
        (ContentEncoding::Deflate, &raw),
        (ContentEncoding::Zstd, &zs),
    ] {
        let f = assert_split_invariant(&s, BodyFormat::Raw, enc, data);
        assert_eq!(counts(&s, &f), want, "{enc:?}");
    }
    // Two gzip members, as `cat a.gz b.gz` makes.
    let mut two = gzip(b"Confidentiel ");
    two.extend(gzip(b"Confidentiel"));
    let f = scan_chunks(&s, BodyFormat::Raw, ContentEncoding::Gzip, &[&two]).unwrap();
    assert_eq!(f.count(0), 2);
}

#[test]
fn gzip_bomb_is_refused_within_a_few_mebibytes() {
    // 1 GiB of zeros, about 1 MiB compressed; only its first few MiB are ever decoded.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    let s = scanner();
    let mut st = s.start(BodyFormat::Raw, ContentEncoding::Gzip);
    let mut result = Ok(());
    let mut fed = 0;
    for c in bomb.chunks(16 * 1024) {
        fed += c.len();
        result = st.feed(&s, c);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(ScanError::TooLarge));
    assert!(
        fed <= 64 * 1024,
        "fed {fed} compressed bytes before refusing"
    );
    assert_eq!(st.feed(&s, b"more"), Err(ScanError::TooLarge));
    assert_eq!(ScanError::TooLarge.code(), "too-large");
    // Whole in one chunk: refused all the same (the ratio counts consumed bytes).
    let mut st = s.start(BodyFormat::Raw, ContentEncoding::Gzip);
    assert_eq!(st.feed(&s, &bomb), Err(ScanError::TooLarge));
    // And the size bound alone, with the ratio check off.
    let limits = Limits {
        max_decoded_bytes: 1 << 20,
        max_ratio: 0,
    };
    let s = Scanner::build(&[dict("d", &["x"], 1)], &[], limits).unwrap();
    let mut st = s.start(BodyFormat::Raw, ContentEncoding::Gzip);
    assert_eq!(st.feed(&s, &bomb[..64 * 1024]), Err(ScanError::TooLarge));
}

#[test]
fn corrupt_or_truncated_compressed_bodies_are_refused() {
    let s = scanner();
    let mut gz = gzip(b"Confidentiel, Confidentiel, Confidentiel");
    let truncated = &gz[..gz.len() - 4];
    assert_eq!(
        scan_chunks(&s, BodyFormat::Raw, ContentEncoding::Gzip, &[truncated]),
        Err(ScanError::Corrupt)
    );
    gz[12] ^= 0xff;
    gz[13] ^= 0x55;
    let r = scan_chunks(&s, BodyFormat::Raw, ContentEncoding::Gzip, &[&gz]);
    assert_eq!(r, Err(ScanError::Corrupt));
    assert_eq!(
        scan_chunks(
            &s,
            BodyFormat::Raw,
            ContentEncoding::Gzip,
            &[b"not gzip at all"]
        ),
        Err(ScanError::Corrupt)
    );
    assert_eq!(
        scan_chunks(
            &s,
            BodyFormat::Raw,
            ContentEncoding::Zstd,
            &[b"not zstd at all"]
        ),
        Err(ScanError::Corrupt)
    );
    assert_eq!(ScanError::Corrupt.code(), "corrupt");
}

#[test]
fn encodings_are_named_or_refused() {
    assert_eq!(ContentEncoding::of(None), Ok(ContentEncoding::Identity));
    assert_eq!(
        ContentEncoding::of(Some(b" GZIP ")),
        Ok(ContentEncoding::Gzip)
    );
    assert_eq!(
        ContentEncoding::of(Some(b"zstd")),
        Ok(ContentEncoding::Zstd)
    );
    assert_eq!(
        ContentEncoding::of(Some(b"deflate")),
        Ok(ContentEncoding::Deflate)
    );
    let e = ContentEncoding::of(Some(b"gzip, gzip")).unwrap_err();
    assert_eq!(e.code(), "unsupported-encoding");
    assert!(ContentEncoding::of(Some(b"compress")).is_err());
    assert!(ContentEncoding::of(Some(b"br")).is_err());
    assert_eq!(
        BodyFormat::of(Some(b"application/json; charset=utf-8")),
        BodyFormat::Json
    );
    assert_eq!(
        BodyFormat::of(Some(b"application/vnd.api+json")),
        BodyFormat::Json
    );
    assert_eq!(
        BodyFormat::of(Some(b"Application/X-WWW-Form-Urlencoded")),
        BodyFormat::UrlEncoded
    );
    assert_eq!(BodyFormat::of(Some(b"text/plain")), BodyFormat::Raw);
    assert_eq!(BodyFormat::of(None), BodyFormat::Raw);
}

#[test]
fn thresholds_decide_hits() {
    let s = scanner();
    let f = scan(
        &s,
        BodyFormat::Raw,
        "Secret médical. Confidentiel.".as_bytes(),
    );
    assert_eq!(f.hits(&s).collect::<Vec<_>>(), [(0, 1)]); // sante needs 2
    assert!(f.any_of(&s, &[0]));
    assert!(!f.any_of(&s, &[1, 2, 99]));
    let f = scan(
        &s,
        BodyFormat::Raw,
        "Secret médical. Dossier médical.".as_bytes(),
    );
    assert_eq!(f.hits(&s).collect::<Vec<_>>(), [(1, 2)]);
    assert_eq!(s.detectors()[1].name.as_ref(), "sante");
    assert_eq!(
        s.detectors()[4].kind,
        DetectorKind::Identifier(IdentifierKind::Card)
    );
}

#[test]
fn proximity_counts_only_near_identifiers() {
    let s = Scanner::build(
        &[],
        &[
            ident("nir", IdentifierKind::Nir, &["sécurité sociale", "NIR"], 20),
            ident("card", IdentifierKind::Card, &["carte bancaire"], 10),
        ],
        Limits::default(),
    )
    .unwrap();
    let nir = "1 85 05 78 006 084 91";
    let pad = |n: usize| "x".repeat(n);
    for (text, want) in [
        (format!("NIR {nir}"), [1, 0]),
        (format!("{nir} (sécurité sociale)"), [1, 0]),
        (format!("Sécurité  Sociale:{}, {nir}", pad(15)), [1, 0]), // 18 bytes apart
        (format!("nir {} {nir}", pad(20)), [0, 0]),                // 22 bytes apart
        (format!("{nir} {} nir", pad(20)), [0, 0]),
        (format!("{nir} {} nir", pad(17)), [1, 0]),
        (format!("fournir {nir}"), [0, 0]), // a word, not a piece of one
        (format!("{nir} {nir} {nir} NIR"), [1, 0]), // only the last is within 20
        (format!("{nir} NIR {nir}"), [2, 0]),
        ("carte bancaire 4111 1111 1111 1111".to_string(), [0, 1]),
        (
            "carte bancaire, voici: 4111 1111 1111 1111".to_string(),
            [0, 1],
        ), // 9 bytes apart
        (
            "carte bancaire, voici le numero: 4111 1111 1111 1111".to_string(),
            [0, 0],
        ),
    ] {
        let f = assert_split_invariant(
            &s,
            BodyFormat::Raw,
            ContentEncoding::Identity,
            text.as_bytes(),
        );
        assert_eq!(counts(&s, &f), want, "{text:?}");
    }
}

#[test]
fn build_errors_say_what_to_fix() {
    let e = Scanner::build(&[dict("vide", &[], 1)], &[], Limits::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "dictionary \"vide\" has no words: give it at least one"
    );
    let e = Scanner::build(&[dict("d", &["ok", " \t "], 1)], &[], Limits::default()).unwrap_err();
    assert!(e.to_string().contains("word 1 is empty"), "{e}");
    let e = Scanner::build(&[dict("d", &["ok"], 0)], &[], Limits::default()).unwrap_err();
    assert!(e.to_string().contains("`min` is 0"), "{e}");
    let long = "x".repeat(300);
    let e = Scanner::build(&[dict("d", &[long.as_str()], 1)], &[], Limits::default()).unwrap_err();
    assert!(e.to_string().contains("shorten"), "{e}");
    let empty = Scanner::build(&[], &[], Limits::default()).unwrap();
    assert!(empty.is_empty());
    let f = scan(&empty, BodyFormat::Raw, b"Confidentiel 4111 1111 1111 1111");
    assert_eq!(f, Findings::default());
}

#[test]
fn findings_debug_never_shows_text() {
    let s = scanner();
    let f = scan(&s, BodyFormat::Raw, b"Confidentiel 4111 1111 1111 1111");
    let st = s.start(BodyFormat::Raw, ContentEncoding::Identity);
    let shown = format!("{f:?} {:?}", st.findings());
    assert!(
        !shown.to_lowercase().contains("confidentiel") && !shown.contains("4111"),
        "{shown}"
    );
}

/// Words that overlap or contain each other all count, whole words only, wherever they
/// stand: the prefiltered search must not hide the second of two overlapping matches,
/// nor a whole word behind a match that fails its word boundary.
#[test]
fn overlapping_words_all_count() {
    let s = Scanner::build(
        &[
            dict("a", &["Strictement confidentiel", "Confidentiel"], 1),
            dict("b", &["Confidentiel personnel", "nel"], 1),
            dict("c", &["xne pas", "ne pas diffuser"], 1),
        ],
        &[],
        Limits::default(),
    )
    .unwrap();
    let text = "STRICTEMENT CONFIDENTIEL PERSONNEL. axne pas diffuser. ".repeat(3);
    let f = assert_split_invariant(
        &s,
        BodyFormat::Raw,
        ContentEncoding::Identity,
        text.as_bytes(),
    );
    // a: both words, 3 times; b: "confidentiel personnel" but never "nel" inside a
    // word; c: "ne pas diffuser" (after "axne", which is not a word of its own).
    assert_eq!(counts(&s, &f), [6, 3, 0]);
    let text = "axne pas diffuser";
    let f = scan(&s, BodyFormat::Raw, text.as_bytes());
    assert_eq!(counts(&s, &f), [0, 0, 0]);
    let f = scan(&s, BodyFormat::Raw, b"x ne pas diffuser");
    assert_eq!(counts(&s, &f), [0, 0, 1]);
}
