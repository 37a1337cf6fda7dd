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
use super::record::FIELDS;

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
    /// Criteria from what a person typed (command line or the admin search page):
    /// `from`/`to` are days (`YYYY-MM-DD`, in the town's zone `tz`; `to` included) or
    /// RFC 3339 instants (`to` excluded); empty strings count as absent.
    pub fn parse(
        user: Option<&str>,
        client: Option<&str>,
        host: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        tz: &jiff::tz::TimeZone,
    ) -> Result<Criteria, String> {
        fn given(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|v| !v.is_empty())
        }
        let instant = |s: &str, end: bool| -> Result<Timestamp, String> {
            if let Ok(t) = s.parse::<Timestamp>() {
                return Ok(t);
            }
            let d: Date = s
                .parse()
                .map_err(|_| format!("{s:?} is neither a day (YYYY-MM-DD) nor an RFC 3339 time"))?;
            let d = if end {
                d.tomorrow().map_err(|e| e.to_string())?
            } else {
                d
            };
            Timestamp::try_from(crate::clock::start_of(d, tz)).map_err(|e| e.to_string())
        };
        let client = given(client)
            .map(|c| {
                c.parse::<std::net::IpAddr>()
                    .map(|ip| ip.to_canonical().to_string())
                    .map_err(|_| format!("{c:?} is not an IP address"))
            })
            .transpose()?;
        let host = given(host).map(|h| h.trim_end_matches('.').to_ascii_lowercase());
        if let Some(h) = &host
            && !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        {
            return Err(format!("{h:?} is not a host name"));
        }
        let c = Criteria {
            user: given(user).map(str::to_owned),
            client,
            host,
            from: given(from).map(|s| instant(s, false)).transpose()?,
            to: given(to).map(|s| instant(s, true)).transpose()?,
        };
        if let (Some(a), Some(b)) = (c.from, c.to)
            && a >= b
        {
            return Err("the start is not before the end".into());
        }
        Ok(c)
    }

    /// Whether anything narrows the search (a search of everything is refused).
    pub fn is_narrowed(&self) -> bool {
        self.user.is_some() || self.client.is_some() || self.host.is_some() || self.from.is_some()
    }

    /// The files of the trace whose live file is `live` that can hold the lines asked
    /// for (days in the zone `tz`).
    pub fn files(&self, live: &Path, tz: &jiff::tz::TimeZone) -> io::Result<Vec<PathBuf>> {
        let day = |t: Option<Timestamp>| t.map(|t| t.to_zoned(tz.clone()).date());
        files_between(live, day(self.from), day(self.to))
    }

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
    let line = serde_json::json!({
        "time": Timestamp::try_from(crate::clock::now()).map(|t| format!("{t:.3}")).unwrap_or_default(),
        "who": who,
        "what": what,
        "criteria": c.describe(),
        "lines": lines,
    });
    std::fs::create_dir_all(data_dir)?;
    let mut f = open_access_audit(&data_dir.join(ACCESS_AUDIT))?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_all()
}

/// The access audit opened for appending and locked (an exclusive `flock`, released
/// when the file is closed): the purge rewrites the file under the same lock, so that a
/// line appended meanwhile is never written to the file it replaced.
fn open_access_audit(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    loop {
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)?;
        lock_exclusive(&f)?;
        let opened = f.metadata()?;
        // Replaced by the purge while this waited for the lock: open the new one.
        match std::fs::metadata(path) {
            Ok(now) if now.ino() == opened.ino() && now.dev() == opened.dev() => return Ok(f),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `flock(LOCK_EX)`, waiting (`File::lock` needs Rust 1.89, over the crate's MSRV).
fn lock_exclusive(f: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    loop {
        // SAFETY: flock on a descriptor this function borrows; no memory is touched.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Deletes the access audit's lines written before `keep_from` (its own retention,
/// `trace.access_retention_days`, independent of the trace's): the kept lines are
/// written aside, synced and renamed over the file, under the lock appenders take.
/// Returns how many lines were deleted. A line whose time cannot be read is kept.
pub fn purge_access_audit(data_dir: &Path, keep_from: Timestamp) -> io::Result<usize> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = data_dir.join(ACCESS_AUDIT);
    if !path.exists() {
        return Ok(0);
    }
    let f = open_access_audit(&path)?;
    let mut kept = Vec::new();
    let mut deleted = 0;
    for line in io::BufReader::new(std::fs::File::open(&path)?).lines() {
        let line = line?;
        let time = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["time"].as_str().and_then(|t| t.parse::<Timestamp>().ok()));
        if time.is_some_and(|t| t < keep_from) {
            deleted += 1;
        } else {
            kept.extend_from_slice(line.as_bytes());
            kept.push(b'\n');
        }
    }
    if deleted == 0 {
        return Ok(0);
    }
    let aside = data_dir.join(format!("{ACCESS_AUDIT}.purging"));
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&aside)?;
    w.write_all(&kept)?;
    w.sync_all()?;
    std::fs::rename(&aside, &path)?;
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    drop(f);
    Ok(deleted)
}

/// A trace line as CSV cells in [`FIELDS`] order (RFC 4180 quoting; lists joined with
/// `;`; a cell that a spreadsheet would run as a formula is defused with a `'`).
pub fn csv_line(line: &str, cells: &mut Vec<String>) {
    cells.clear();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    for k in &FIELDS {
        let mut text = match &v[*k] {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(";"),
            other => other.to_string(),
        };
        if text.starts_with(['=', '+', '-', '@', '\t', '\r']) && !v[*k].is_number() {
            text.insert(0, '\'');
        }
        cells.push(if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text
        });
    }
}

/// The CSV header line's cells.
pub fn csv_header() -> String {
    FIELDS.join(",")
}

/// Whether the access audit can be appended to (before a download starts: its line is
/// written when the download ends).
pub fn check_access_audit(data_dir: &Path) -> io::Result<()> {
    open_access_audit(&data_dir.join(ACCESS_AUDIT)).map(drop)
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

    #[test]
    fn the_access_audit_purge_loses_no_line_appended_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"{"time":"2020-01-01T00:00:00.000Z","who":"cli:old","what":"search"}"#;
        std::fs::write(
            dir.path().join(ACCESS_AUDIT),
            format!("{old}\n").repeat(2000),
        )
        .unwrap();
        let keep_from: Timestamp = "2021-01-01T00:00:00Z".parse().unwrap();
        let c = Criteria::default();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (dir, c) = (dir.path(), &c);
                s.spawn(move || {
                    for i in 0..50 {
                        note_access(dir, &format!("t{t}"), &format!("n{i}"), c, 0).unwrap();
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..20 {
                    purge_access_audit(dir.path(), keep_from).unwrap();
                }
            });
        });
        purge_access_audit(dir.path(), keep_from).unwrap();
        let text = std::fs::read_to_string(dir.path().join(ACCESS_AUDIT)).unwrap();
        assert!(!text.contains("cli:old"));
        assert_eq!(text.lines().count(), 200, "{text}");
    }
}
