//! One proxy per data folder, and what the system around it needs to know: the data
//! folder checked before anything is created, its lock file (held while `serve` runs,
//! holding its process id), the optional pidfile, and systemd's readiness protocol.
//!
//! The order at start is: [`preflight`] (the folder can be written, no other instance
//! holds it), the listeners bound, then [`claim`] (the folder created and locked): a
//! port in use or a folder that cannot be written is reported before a file exists.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::settings::Settings;

/// The running instance's hold on its data folder; released (and the pidfile removed)
/// when dropped.
#[derive(Debug)]
pub struct Claim {
    /// Locked for as long as it is open.
    _lock: File,
    pidfile: Option<PathBuf>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(p) = &self.pidfile {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Why the data folder cannot be used; each names the folder or the other instance.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "the data folder {} cannot be written ({reason}); give a folder this user can write \
         with --data-dir, CHARTE_DATA or data_dir in the server file",
        dir.display()
    )]
    NotWritable { dir: PathBuf, reason: String },
    #[error(
        "another charte-proxy{} runs on the data folder {} (its lock file {} is held); stop \
         it, or give this one another folder with --data-dir",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        dir.display(),
        lock.display()
    )]
    Running {
        dir: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
    #[error("cannot use {}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
}

/// Checks, creating nothing, that the data folder (or the folder that will hold it) can
/// be written and that no running instance holds it.
pub fn preflight(cfg: &Settings) -> Result<(), InstanceError> {
    let dir = &cfg.data_dir;
    let not_writable = |reason: String| InstanceError::NotWritable {
        dir: dir.clone(),
        reason,
    };
    // The folder, or its nearest existing parent when it is still to be created.
    let mut probe = dir.as_path();
    let existing = loop {
        match std::fs::metadata(probe) {
            Ok(m) if m.is_dir() => break probe,
            Ok(_) => {
                return Err(not_writable(format!("{} is not a folder", probe.display())));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                probe = match probe.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
            }
            Err(e) => return Err(not_writable(format!("{}: {e}", probe.display()))),
        }
    };
    if !writable(existing) {
        let what = if existing == dir.as_path() {
            "permission denied".to_string()
        } else {
            format!(
                "{} does not exist and {} is not writable",
                dir.display(),
                existing.display()
            )
        };
        return Err(not_writable(what));
    }
    let lock = cfg.lock_file();
    match File::options().read(true).write(true).open(&lock) {
        Ok(f) => match try_lock(&f) {
            Ok(true) => Ok(()),
            Ok(false) => Err(InstanceError::Running {
                dir: dir.clone(),
                pid: read_pid(&lock),
                lock,
            }),
            Err(e) => Err(InstanceError::Io {
                path: lock,
                reason: e.to_string(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(InstanceError::Io {
            path: lock,
            reason: e.to_string(),
        }),
    }
}

/// Takes an exclusive `flock` on `f` without waiting: `Ok(false)` when another open
/// file description holds it (`File::try_lock` needs Rust 1.89, past the MSRV).
fn try_lock(f: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: flock(2) on a descriptor `f` owns; the lock goes with the descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Whether this process may create files in `dir`.
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path; access(2) only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Creates the data folder (0750) and takes its lock; writes the process id in the lock
/// file and in the pidfile if one is set.
pub fn claim(cfg: &Settings) -> Result<Claim, InstanceError> {
    let dir = &cfg.data_dir;
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|e| InstanceError::NotWritable {
                dir: dir.clone(),
                reason: e.to_string(),
            })?;
    }
    let lock_path = cfg.lock_file();
    let io = |path: &Path, e: std::io::Error| InstanceError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut lock = {
        use std::os::unix::fs::OpenOptionsExt as _;
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, e))?
    };
    match try_lock(&lock) {
        Ok(true) => {}
        // Another instance started between the preflight and now.
        Ok(false) => {
            return Err(InstanceError::Running {
                dir: dir.clone(),
                pid: read_pid(&lock_path),
                lock: lock_path,
            });
        }
        Err(e) => return Err(io(&lock_path, e)),
    }
    let pid = std::process::id();
    lock.set_len(0).map_err(|e| io(&lock_path, e))?;
    lock.rewind().map_err(|e| io(&lock_path, e))?;
    writeln!(lock, "{pid}").map_err(|e| io(&lock_path, e))?;
    if let Some(p) = &cfg.pidfile {
        crate::atomic_file::write(p, format!("{pid}\n").as_bytes(), 0o644).map_err(|e| io(p, e))?;
    }
    Ok(Claim {
        _lock: lock,
        pidfile: cfg.pidfile.clone(),
    })
}

/// The process id written in a lock file or pidfile, if it holds one.
pub fn read_pid(path: &Path) -> Option<u32> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    s.trim().parse().ok().filter(|p| *p > 0)
}

/// The process id of the `serve` running with these settings, for `reload` and
/// `rotate`: from the pidfile when one is set (the process must exist), else from the
/// data folder's lock file (which must be held). `Err` says why none is found.
pub fn running_pid(cfg: &Settings) -> anyhow::Result<u32> {
    if let Some(p) = &cfg.pidfile {
        let pid = read_pid(p).with_context(|| {
            format!(
                "no charte-proxy runs: the pidfile {} is missing or holds no process id",
                p.display()
            )
        })?;
        if !alive(pid) {
            anyhow::bail!(
                "no charte-proxy runs: the pidfile {} names pid {pid}, which is not running",
                p.display()
            );
        }
        return Ok(pid);
    }
    let lock = cfg.lock_file();
    let f = File::open(&lock).map_err(|_| {
        anyhow::anyhow!(
            "no charte-proxy runs on the data folder {} (no lock file {}); give the one \
             of the running proxy with --data-dir, CHARTE_DATA or --config",
            cfg.data_dir.display(),
            lock.display()
        )
    })?;
    match try_lock(&f) {
        Ok(false) => {}
        _ => anyhow::bail!(
            "no charte-proxy runs on the data folder {} (its lock file {} is not held)",
            cfg.data_dir.display(),
            lock.display()
        ),
    }
    read_pid(&lock).with_context(|| format!("the lock file {} holds no process id", lock.display()))
}

fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 checks that the process exists; nothing is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Sends `signal` to the process `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::other("bad pid"))?;
    // SAFETY: plain kill(2) on a process id.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Tells systemd (when it started us with `Type=notify`) how we are: `READY=1` once
/// every listener is up and the policy loaded, `RELOADING=1`/`READY=1` around a reload,
/// `STOPPING=1` at shutdown. Does nothing without `NOTIFY_SOCKET`.
pub fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
