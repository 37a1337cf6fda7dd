//! Finding lines in the JSON trace: one person's (`--user`), one workstation's
//! (`--client`), one site's (`--host`, its subdomains too), between two instants, across
//! the closed files (compressed or not) and the live one, oldest first. Streaming: a
//! file is read line by line and only its matching lines are kept, sorted by time
//! before they are given (a record is written when its request ends, so the lines of a
//! file are nearly, not exactly, in start-time order). Blocking I/O, for commands.

use std::borrow::Cow;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::civil::Date;
use serde::Deserialize;

use super::files;

/// What a search asks for; every given criterion must hold.
#[derive(Debug, Clone, Default)]
pub struct Criteria {
    pub user: Option<String>,
    pub client: Option<String>,
    /// The host or any of its subdomains.
    pub host: Option<String>,
    pub from: Option<Timestamp>,
    /// Exclusive.
    pub to: Option<Timestamp>,
}

impl Criteria {
    /// The criteria as the access audit records them.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "user": self.user,
            "client": self.client,
            "host": self.host,
            "from": self.from.map(|t| t.to_string()),
            "to": self.to.map(|t| t.to_string()),
        })
    }
}

/// The fields a criterion reads.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    client: Cow<'a, str>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow)]
    host: Cow<'a, str>,
}

/// A trace line that matched, and when its request started.
#[derive(Debug, Clone)]
pub struct Found {
    pub time: Timestamp,
    /// The line as written, without its line end.
    pub line: String,
}

/// The files of the trace whose live file is `live`, oldest first, that can hold lines
/// between `from` and `to` (a day's file holds the requests that ended that day; a day's
/// margin each side covers requests that began before midnight).
pub fn files_between(
    live: &Path,
    from: Option<Date>,
    to: Option<Date>,
) -> io::Result<Vec<PathBuf>> {
    use jiff::ToSpan as _;
    let from = from.and_then(|d| d.checked_sub(1.day()).ok());
    let to = to.and_then(|d| d.checked_add(1.day()).ok());
    let mut out: Vec<PathBuf> = files::list(live)?
        .into_iter()
        .filter(|c| from.is_none_or(|f| c.date >= f) && to.is_none_or(|t| c.date <= t))
        .map(|c| c.path)
        .collect();
    if live.exists() {
        out.push(live.to_path_buf());
    }
    Ok(out)
}

/// Searches `paths` in order, giving each file's matches, sorted by time, to `each`.
/// Lines that are not trace records are counted and skipped. Returns (lines read,
/// lines matched, lines skipped).
pub fn search(
    paths: &[PathBuf],
    c: &Criteria,
    mut each: impl FnMut(&Found) -> io::Result<()>,
) -> io::Result<(u64, u64, u64)> {
    // Quick substring tests before a line is parsed: exact for the fields the writer
    // escapes as serde_json does.
    let user_key = c
        .user
        .as_ref()
        .map(|u| format!("\"user\":{}", serde_json::Value::from(u.as_str())));
    let client_key = c.client.as_ref().map(|ip| format!("\"client\":\"{ip}\""));
    let host = c
        .host
        .as_ref()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase());
    let (mut read, mut matched, mut skipped) = (0u64, 0u64, 0u64);
    let mut found = Vec::new();
    let mut line = String::new();
    for p in paths {
        let mut r = match files::open_lines(p) {
            Ok(r) => r,
            // Deleted by the retention since it was listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
        };
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                break;
            }
            read += 1;
            let text = line.trim_end_matches(['\n', '\r']);
            if user_key
                .as_ref()
                .is_some_and(|k| !text.contains(k.as_str()))
                || client_key
                    .as_ref()
                    .is_some_and(|k| !text.contains(k.as_str()))
                || host.as_ref().is_some_and(|h| !text.contains(h.as_str()))
            {
                continue;
            }
            let Ok(probe) = serde_json::from_str::<Probe>(text) else {
                skipped += 1;
                continue;
            };
            let Ok(time) = probe.time.parse::<Timestamp>() else {
                skipped += 1;
                continue;
            };
            if c.user
                .as_deref()
                .is_some_and(|u| probe.user.as_deref() != Some(u))
                || c.client.as_deref().is_some_and(|ip| probe.client != ip)
                || host
                    .as_deref()
                    .is_some_and(|h| !host_within(&probe.host, h))
                || c.from.is_some_and(|f| time < f)
                || c.to.is_some_and(|t| time >= t)
            {
                continue;
            }
            found.push(Found {
                time,
                line: text.to_string(),
            });
        }
        found.sort_by_key(|f| f.time);
        for f in found.drain(..) {
            matched += 1;
            each(&f)?;
        }
    }
    Ok((read, matched, skipped))
}

/// The access audit's file in the data folder: one JSON line per search or export of
/// the trace. Not a trace file: the trace's retention never deletes it.
pub const ACCESS_AUDIT: &str = "trace-access.log";

/// Appends one line to the access audit: who searched or exported (`what`), when, with
/// which criteria, and how many lines they got. Synced: a search that was answered is
/// recorded.
pub fn note_access(
    data_dir: &Path,
    who: &str,
    what: &str,
    c: &Criteria,
    lines: u64,
) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let line = serde_json::json!({
        "time": Timestamp::try_from(crate::clock::now()).map(|t| format!("{t:.3}")).unwrap_or_default(),
        "who": who,
        "what": what,
        "criteria": c.describe(),
        "lines": lines,
    });
    std::fs::create_dir_all(data_dir)?;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(data_dir.join(ACCESS_AUDIT))?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_all()
}

/// Whether `host` is `site` or one of its subdomains (ASCII case aside).
fn host_within(host: &str, site: &str) -> bool {
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case(site)
        || (host.len() > site.len()
            && host[host.len() - site.len()..].eq_ignore_ascii_case(site)
            && host.as_bytes()[host.len() - site.len() - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(time: &str, user: Option<&str>, client: &str, host: &str) -> String {
        serde_json::json!({"time": time, "client": client, "user": user, "host": host, "path": "/"})
            .to_string()
    }

    #[test]
    fn finds_across_plain_and_compressed_files_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("trace.log");
        let d1 = files::closed_name(&live, "2026-12-03".parse().unwrap(), 0);
        let d2 = files::closed_name(&live, "2026-12-04".parse().unwrap(), 0);
        let lines = |v: &[String]| v.join("\n") + "\n";
        files::write_plain(
            &d1,
            lines(&[
                line(
                    "2026-12-03T10:00:02.000Z",
                    Some("alice"),
                    "10.0.0.1",
                    "www.example.com",
                ),
                line(
                    "2026-12-03T10:00:01.000Z",
                    Some("alice"),
                    "10.0.0.1",
                    "example.com",
                ),
                line(
                    "2026-12-03T10:00:03.000Z",
                    Some("bob"),
                    "10.0.0.2",
                    "example.com",
                ),
                "not a record".into(),
            ])
            .as_bytes(),
        )
        .unwrap();
        files::write_plain(
            &d2,
            lines(&[line(
                "2026-12-04T09:00:00.000Z",
                Some("alice"),
                "10.0.0.1",
                "notexample.com",
            )])
            .as_bytes(),
        )
        .unwrap();
        files::compress(&d2, crate::settings::Compress::Zstd).unwrap();
        std::fs::write(
            &live,
            lines(&[line(
                "2026-12-05T08:00:00.000Z",
                Some("alice"),
                "10.0.0.1",
                "a.example.com",
            )]),
        )
        .unwrap();
        let paths = files_between(&live, None, None).unwrap();
        assert_eq!(paths.len(), 3);
        let run = |c: Criteria| {
            let mut got = Vec::new();
            let counts = search(&paths, &c, |f| {
                got.push(f.time.to_string());
                Ok(())
            })
            .unwrap();
            (got, counts)
        };
        let (got, (read, matched, skipped)) = run(Criteria {
            user: Some("alice".into()),
            host: Some("Example.com".into()),
            ..Default::default()
        });
        assert_eq!(
            got,
            [
                "2026-12-03T10:00:01Z",
                "2026-12-03T10:00:02Z",
                "2026-12-05T08:00:00Z"
            ]
        );
        assert_eq!((read, matched, skipped), (6, 3, 0));
        let (got, (_, _, skipped)) = run(Criteria {
            from: Some("2026-12-03T10:00:02Z".parse().unwrap()),
            to: Some("2026-12-05T00:00:00Z".parse().unwrap()),
            ..Default::default()
        });
        assert_eq!(
            got,
            [
                "2026-12-03T10:00:02Z",
                "2026-12-03T10:00:03Z",
                "2026-12-04T09:00:00Z"
            ]
        );
        assert_eq!(skipped, 1);
        let (got, _) = run(Criteria {
            client: Some("10.0.0.2".into()),
            ..Default::default()
        });
        assert_eq!(got, ["2026-12-03T10:00:03Z"]);
        // Files outside the dates (with a day's margin) are not read.
        let only = files_between(
            &live,
            Some("2026-12-05".parse().unwrap()),
            Some("2026-12-05".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(only.len(), 2, "{only:?}");
    }
}
