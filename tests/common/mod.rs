//! Shared helpers for the integration tests: run the real binary as a process.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_charte-proxy"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("CHARTE_POLICY");
    c.env_remove("CHARTE_PUBLIC_PROXY");
    c.env_remove("CHARTE_PORTAL_URL");
    c.env("CHARTE_LOG", "warn");
    c
}

/// Adds a proxy user (name, password) to the users file `file` (`users add`), before
/// the proxy that reads it starts.
pub fn add_user(file: &Path, name: &str, password: &str) {
    use std::io::Write as _;
    let mut add = bin()
        .args(["users", "--file"])
        .arg(file)
        .args(["add", name, "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    assert!(add.wait().unwrap().success(), "users add {name}");
}

/// Result of one run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(args: &[&str]) -> Run {
    let out: Output = bin().args(args).output().expect("the binary runs");
    Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// `explain --json` for a target, parsed.
pub fn explain_json(extra: &[&str], target: &str) -> serde_json::Value {
    let mut args = vec!["explain", "--json"];
    args.extend_from_slice(extra);
    args.push(target);
    let r = run(&args);
    assert_eq!(r.code, 0, "explain {target} failed: {}", r.stderr);
    serde_json::from_str(&r.stdout).expect("explain --json prints JSON")
}

/// A new pipe, (read end, write end), both closed on exec (a child gets only the end
/// handed to it as one of its standard streams).
pub fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd as _;
    let mut fds = [0; 2];
    // SAFETY: `pipe2` writes two new descriptors into `fds`, which nothing else owns.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: each descriptor is owned by exactly one `File` from here on.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

/// The write end of a pipe whose read end is already closed: the first write to it
/// fails with EPIPE (or raises SIGPIPE), as a write to `… | head` after head has gone.
pub fn closed_pipe() -> std::fs::File {
    let (r, w) = pipe();
    drop(r);
    w
}

/// The Chromium command on this machine (Debian's `chromium`, installed by tests/run.sh).
pub fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser"] {
        if Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return c;
        }
    }
    panic!("Chromium is needed: run the suite with tests/run.sh, which installs it");
}

/// The shared UT1 snapshot beside the repository, when present.
pub fn shared_ut1() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/ut1");
    p.is_dir().then_some(p)
}
pub mod admin;
pub mod kdc;
pub mod postgres;
pub mod proxy;
pub mod slapd;
pub mod tls;
pub mod unblock;
pub mod webdriver;
pub mod wire;
