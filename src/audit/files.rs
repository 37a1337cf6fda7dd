//! The trace's files on disk: the live file, and the closed ones beside it, named by the
//! local day they cover (`trace.log-2026-12-04`, then `trace.log-2026-12-04.1` for a
//! second file of the same day), compressed once closed (`….gz`, `….zst`), and deleted
//! once older than the retention. Blocking I/O: called from the blocking pool or from
//! commands, never on the request path.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use jiff::civil::Date;

use crate::settings::Compress;

/// A closed trace file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub path: PathBuf,
    /// The local day its lines were written.
    pub date: Date,
    /// 0 for the day's first file, then 1, 2…
    pub seq: u32,
    /// How it is compressed (from its name).
    pub compress: Compress,
}

/// `live`'s name with the day (and a sequence number after the first) appended.
pub fn closed_name(live: &Path, date: Date, seq: u32) -> PathBuf {
    let name = live
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace.log".into());
    let mut closed = format!("{name}-{date}");
    if seq > 0 {
        closed.push_str(&format!(".{seq}"));
    }
    live.with_file_name(closed)
}

/// Reads a closed file's name: `None` if it is not one of `live`'s.
fn parse_closed(live_name: &str, file_name: &str) -> Option<(Date, u32, Compress)> {
    let rest = file_name.strip_prefix(live_name)?.strip_prefix('-')?;
    let (rest, compress) = if let Some(r) = rest.strip_suffix(".gz") {
        (r, Compress::Gzip)
    } else if let Some(r) = rest.strip_suffix(".zst") {
        (r, Compress::Zstd)
    } else {
        (rest, Compress::None)
    };
    let date: Date = rest.get(..10)?.parse().ok()?;
    let seq = match &rest[10..] {
        "" => 0,
        s => s.strip_prefix('.')?.parse().ok()?,
    };
    Some((date, seq, compress))
}

/// `live`'s closed files, oldest first (by day, then sequence).
pub fn list(live: &Path) -> io::Result<Vec<Closed>> {
    let Some(live_name) = live.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(Vec::new());
    };
    let dir = match live.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((date, seq, compress)) = parse_closed(&live_name, &name) {
            found.push(Closed {
                path: e.path(),
                date,
                seq,
                compress,
            });
        }
    }
    found.sort_by_key(|c| (c.date, c.seq));
    Ok(found)
}

/// The name `live` takes when closed for `date`: the first of that day not taken.
pub fn next_closed_name(live: &Path, date: Date) -> io::Result<PathBuf> {
    let taken: Vec<u32> = list(live)?
        .into_iter()
        .filter(|c| c.date == date)
        .map(|c| c.seq)
        .collect();
    let seq = taken.iter().max().map_or(0, |m| m + 1);
    Ok(closed_name(live, date, seq))
}

/// Compresses a closed file into `path` + suffix (written aside, synced, renamed), then
/// removes the original. Returns the new path.
pub fn compress(path: &Path, how: Compress) -> io::Result<PathBuf> {
    if how == Compress::None {
        return Ok(path.to_path_buf());
    }
    let mut target = path.as_os_str().to_owned();
    target.push(how.suffix());
    let target = PathBuf::from(target);
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut input = fs::File::open(path)?;
    let out = create_private(&tmp)?;
    let out = match how {
        Compress::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            io::copy(&mut input, &mut enc)?;
            enc.finish()?
        }
        Compress::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
            io::copy(&mut input, &mut enc)?;
            enc.finish()?
        }
        Compress::None => unreachable!("returned above"),
    };
    out.sync_all()?;
    drop(out);
    fs::rename(&tmp, &target)?;
    fs::remove_file(path)?;
    sync_dir(&target);
    Ok(target)
}

/// A new file, 0640 (the trace names people), truncated if it was there.
fn create_private(path: &Path) -> io::Result<fs::File> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o640);
    }
    o.open(path)
}

/// Makes a rename in `path`'s folder durable (best effort).
pub fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// What one maintenance pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Maintained {
    pub compressed: Vec<PathBuf>,
    pub deleted: Vec<PathBuf>,
    /// Files whose compression failed, with why (they stay as they are).
    pub failed: Vec<String>,
}

/// Compresses `live`'s closed files not compressed yet, removes what an interrupted
/// compression left, and deletes the files of days before `keep_from`.
pub fn maintain(live: &Path, how: Compress, keep_from: Date) -> io::Result<Maintained> {
    let mut done = Maintained::default();
    // Half-written compressions from a crash: the original is still there.
    if let Some(dir) = live.parent().filter(|p| !p.as_os_str().is_empty())
        && let Some(name) = live.file_name().map(|n| n.to_string_lossy().into_owned())
        && let Ok(entries) = fs::read_dir(dir)
    {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("{name}-")) && n.ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    for c in list(live)? {
        if c.date < keep_from {
            fs::remove_file(&c.path)?;
            done.deleted.push(c.path);
            continue;
        }
        if c.compress == Compress::None && how != Compress::None {
            match compress(&c.path, how) {
                Ok(p) => done.compressed.push(p),
                Err(e) => done.failed.push(format!("{}: {e}", c.path.display())),
            }
        }
    }
    Ok(done)
}

/// A reader of a trace file's lines, decompressing by its name.
pub fn open_lines(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    let f = fs::File::open(path)?;
    let name = path.to_string_lossy();
    let r: Box<dyn Read + Send> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f)))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(f)?)
    } else {
        Box::new(f)
    };
    Ok(Box::new(BufReader::with_capacity(256 * 1024, r)))
}

/// Writes `lines` to a new file at `path` (tests and tools).
pub fn write_plain(path: &Path, lines: &[u8]) -> io::Result<()> {
    let mut f = create_private(path)?;
    f.write_all(lines)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn closed_names_read_back() {
        let live = Path::new("/var/lib/charte/trace.log");
        let n = closed_name(live, d("2026-12-04"), 0);
        assert_eq!(n, Path::new("/var/lib/charte/trace.log-2026-12-04"));
        assert_eq!(
            closed_name(live, d("2026-12-04"), 2),
            Path::new("/var/lib/charte/trace.log-2026-12-04.2")
        );
        for (name, want) in [
            (
                "trace.log-2026-12-04",
                Some((d("2026-12-04"), 0, Compress::None)),
            ),
            (
                "trace.log-2026-12-04.gz",
                Some((d("2026-12-04"), 0, Compress::Gzip)),
            ),
            (
                "trace.log-2026-12-04.3.zst",
                Some((d("2026-12-04"), 3, Compress::Zstd)),
            ),
            ("trace.log", None),
            ("trace.log-2026-13-04", None),
            ("trace.log-2026-12-04.gz.tmp", None),
            ("access.log-2026-12-04", None),
            ("trace.log-2026-12-04x", None),
        ] {
            assert_eq!(parse_closed("trace.log", name), want, "{name}");
        }
    }

    #[test]
    fn maintain_compresses_reads_back_and_deletes_past_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("trace.log");
        std::fs::write(&live, b"live\n").unwrap();
        for (day, text) in [
            ("2025-12-01", "old\n"),
            ("2026-12-03", "a\nb\n"),
            ("2026-12-04", "c\n"),
        ] {
            write_plain(&closed_name(&live, d(day), 0), text.as_bytes()).unwrap();
        }
        write_plain(&closed_name(&live, d("2026-12-04"), 1), b"d\n").unwrap();
        std::fs::write(dir.path().join("trace.log-2026-12-03.gz.tmp"), b"half").unwrap();
        let done = maintain(&live, Compress::Gzip, d("2025-12-05")).unwrap();
        assert_eq!(done.deleted, vec![closed_name(&live, d("2025-12-01"), 0)]);
        assert_eq!(done.compressed.len(), 3);
        assert!(done.failed.is_empty());
        let names: Vec<String> = list(&live)
            .unwrap()
            .iter()
            .map(|c| c.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "trace.log-2026-12-03.gz",
                "trace.log-2026-12-04.gz",
                "trace.log-2026-12-04.1.gz"
            ]
        );
        assert!(!dir.path().join("trace.log-2026-12-03.gz.tmp").exists());
        let mut text = String::new();
        open_lines(&dir.path().join("trace.log-2026-12-03.gz"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "a\nb\n");
        // The live file is never touched.
        assert_eq!(std::fs::read(&live).unwrap(), b"live\n");
        assert_eq!(
            next_closed_name(&live, d("2026-12-04")).unwrap(),
            closed_name(&live, d("2026-12-04"), 2)
        );
    }

    #[test]
    fn zstd_files_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("access.log");
        let closed = closed_name(&live, d("2026-12-04"), 0);
        write_plain(&closed, b"x y z\n").unwrap();
        let p = compress(&closed, Compress::Zstd).unwrap();
        assert!(p.to_string_lossy().ends_with(".zst"));
        assert!(!closed.exists());
        let mut text = String::new();
        open_lines(&p).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "x y z\n");
    }
}
