//! `charte-proxy classify --squid-helper`: the policy as a Squid external ACL helper.
//!
//! Each line read is `[channel-ID] URL [client [user [method]]] [anything…]`, as Squid
//! sends it for `external_acl_type … %>ru %>a %un %>rm` (or the squidGuard order, `URL
//! ip/fqdn user method`): `-` or a missing field is "not known", the client address
//! defaults to `--ip`, the method to GET. The answer is decided by the real compile and
//! decide code, through [`crate::explain::explain`] (the groups come from the policy's
//! networks and users; the directory is not asked):
//!
//! - `OK message="<reason>" tag=<categories>`: the policy blocks the request, so that
//!   `http_access deny <acl>` with `deny_info` blocks it in Squid;
//! - `ERR` (with `tag=` when the site has categories): the policy lets it through;
//! - `BH message="…"`: the line cannot be decided (no URL, a bad address or URL).
//!
//! An answer begins with the line's channel ID when it had one. Every answer is written
//! and flushed before the next line is read: Squid waits for each.

use std::io::{BufRead as _, Write as _};
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use crate::explain::{self, Query};
use crate::policy::Lang;
use crate::snapshot::Snapshot;

/// Runs the helper on standard input until it closes.
pub(super) fn run(policy: &Path, ip: IpAddr, lang: Lang) -> anyhow::Result<ExitCode> {
    let snap = match super::load_or_report(policy) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let mut input = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(ExitCode::SUCCESS);
        }
        let text = String::from_utf8_lossy(&line);
        let answer = answer(&snap, &text, ip, lang);
        out.write_all(answer.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
}

/// The answer to one helper line (without its newline).
pub fn answer(snap: &Snapshot, line: &str, default_ip: IpAddr, lang: Lang) -> String {
    let mut fields = line.split_ascii_whitespace().peekable();
    let channel = fields
        .next_if(|f| f.bytes().all(|b| b.is_ascii_digit()))
        .map(|c| format!("{c} "))
        .unwrap_or_default();
    let verdict = match decide(snap, fields, default_ip, lang) {
        Ok(v) => v,
        Err(why) => format!("BH message={}", quoted(&why)),
    };
    format!("{channel}{verdict}")
}

/// `OK …` or `ERR …` for the fields after the channel ID; `Err`: why it cannot be said.
fn decide<'a>(
    snap: &Snapshot,
    mut fields: impl Iterator<Item = &'a str>,
    default_ip: IpAddr,
    lang: Lang,
) -> Result<String, String> {
    let known = |f: Option<&'a str>| f.filter(|f| *f != "-");
    let Some(target) = fields.next() else {
        return Err("no URL on the line".into());
    };
    let ip = match known(fields.next()) {
        // `ip/fqdn` in the squidGuard order.
        Some(client) => {
            let addr = client.split('/').next().unwrap_or(client);
            addr.parse()
                .map_err(|_| format!("not a client address: {client:?}"))?
        }
        None => default_ip,
    };
    let user = known(fields.next()).map(percent_decoded);
    let method = known(fields.next()).unwrap_or("GET").to_ascii_uppercase();
    let q = Query {
        target: target.to_string(),
        ip,
        user,
        directory_groups: None,
        directory_names: Default::default(),
        method,
        lang,
        // The helper has no server file: `schedule` rules read Paris's wall clock now.
        at: explain::At::now(&paris(), crate::clock::DEFAULT_TIME_ZONE),
    };
    let e = explain::explain(snap, &q)?;
    let categories: Vec<&str> = e.categories.iter().map(|c| c.name.as_str()).collect();
    let tag = if categories.is_empty() {
        String::new()
    } else {
        format!(" tag={}", quoted(&categories.join(",")))
    };
    Ok(if e.decision == "block" {
        format!("OK message={}{tag}", quoted(&e.reason))
    } else {
        format!("ERR{tag}")
    })
}

/// The default time zone, looked up once.
fn paris() -> jiff::tz::TimeZone {
    static TZ: std::sync::OnceLock<jiff::tz::TimeZone> = std::sync::OnceLock::new();
    TZ.get_or_init(|| {
        crate::clock::zone(crate::clock::DEFAULT_TIME_ZONE).unwrap_or(jiff::tz::TimeZone::UTC)
    })
    .clone()
}

/// A value as Squid reads it in a helper's `key=value`: in double quotes, with `"` and
/// `\` escaped by a backslash; line breaks become spaces (an answer is one line).
fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            '\r' | '\n' => s.push(' '),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A field as Squid encodes it (`%XX` escapes), decoded; left as is when not valid.
fn percent_decoded(f: &str) -> String {
    let b = f.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| f.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_as_squid_reads_them() {
        assert_eq!(quoted(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(quoted("x\ny"), "\"x y\"");
    }

    #[test]
    fn user_names_are_percent_decoded() {
        assert_eq!(percent_decoded("c.martin%40mairie"), "c.martin@mairie");
        assert_eq!(percent_decoded("100%"), "100%");
        assert_eq!(percent_decoded("%zz"), "%zz");
    }
}
