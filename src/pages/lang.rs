//! The language of a page: French by default, English only when the browser prefers it.
//! Every visible word of every page exists in both.

use crate::policy::Lang;

/// The language of a request's `Accept-Language` header (French by default).
pub fn lang_of(headers: &http::HeaderMap) -> Lang {
    negotiate_lang(
        headers
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// French unless the browser prefers English.
///
/// Each language gets the highest q-value among the ranges of the header that name it
/// (`en`, `en-GB`… count for English; `fr`, `fr-CA`… for French); a language the header
/// does not name gets the q-value of `*`, or 0. English is chosen only when its q-value is
/// strictly higher than French's, so `*`, a missing or unreadable header, or a tie give
/// French. Entries with an unreadable q-value are skipped.
pub fn negotiate_lang(accept_language: Option<&str>) -> Lang {
    let Some(header) = accept_language else {
        return Lang::Fr;
    };
    // q-values in thousandths, as the RFC allows at most three decimals.
    let (mut fr, mut en, mut star) = (None::<u16>, None::<u16>, None::<u16>);
    // A real header has a handful of entries; bound the work on a hostile one.
    for entry in header.split(',').take(64) {
        let mut parts = entry.split(';');
        let range = parts.next().unwrap_or("").trim();
        let mut q = Some(1000);
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("q") {
                q = parse_q(value.trim());
            }
        }
        let Some(q) = q else { continue };
        let primary = range.split('-').next().unwrap_or("");
        let slot = if primary.eq_ignore_ascii_case("fr") {
            &mut fr
        } else if primary.eq_ignore_ascii_case("en") {
            &mut en
        } else if primary == "*" {
            &mut star
        } else {
            continue;
        };
        *slot = Some(slot.map_or(q, |old| old.max(q)));
    }
    let fr = fr.or(star).unwrap_or(0);
    let en = en.or(star).unwrap_or(0);
    if en > fr { Lang::En } else { Lang::Fr }
}

/// A q-value ("0", "0.8", "1.000") in thousandths; `None` when it is not one.
fn parse_q(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    let q = int + thousandths;
    (q <= 1000).then_some(q)
}

/// Whether the client reads HTML (a browser): its `Accept` names `text/html` or
/// `application/xhtml+xml`. Other clients (curl, an update agent) get a short text
/// instead of a page.
pub fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .any(|t| {
            t.eq_ignore_ascii_case("text/html") || t.eq_ignore_ascii_case("application/xhtml+xml")
        })
}
