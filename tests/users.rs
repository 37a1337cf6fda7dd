//! `charte-proxy users add|remove|list` as a process: the users file it writes (mode
//! 0600, Argon2id hashes, never the password) and its exit codes.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// Result of one run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `charte-proxy users --file <file> <args>`, writing `stdin` to its input.
fn users(file: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_charte-proxy"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CHARTE_USERS")
        .env("CHARTE_LOG", "warn")
        .arg("users")
        .arg("--file")
        .arg(file)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // The child may exit before reading (usage errors): a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[test]
fn add_list_remove_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data/users");

    let r = users(&file, &["list"], "");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, ""),
        "a missing file lists nobody"
    );

    let r = users(
        &file,
        &["add", "c.martin", "--password-stdin"],
        "Tr0ub4dor&3\n",
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("added user c.martin"), "{}", r.stderr);
    let r = users(&file, &["add", "j.dupont"], "mot de passe\r\n");
    assert_eq!(
        r.code, 0,
        "without --password-stdin a pipe is read too: {}",
        r.stderr
    );

    let r = users(&file, &["list"], "");
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert_eq!(r.stdout, "c.martin\nj.dupont\n");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("c.martin:$argon2id$"), "{text}");
    assert!(text.contains("\nj.dupont:$argon2id$"), "{text}");
    assert!(!text.contains("Tr0ub4dor") && !text.contains("mot de passe"));

    // Changing a password keeps the user once, in place.
    let r = users(&file, &["add", "c.martin", "--password-stdin"], "n0uveau\n");
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("changed the password"), "{}", r.stderr);
    let changed = std::fs::read_to_string(&file).unwrap();
    assert_ne!(changed, text);
    assert_eq!(users(&file, &["list"], "").stdout, "c.martin\nj.dupont\n");

    let r = users(&file, &["remove", "c.martin"], "");
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert_eq!(users(&file, &["list"], "").stdout, "j.dupont\n");
}

#[test]
fn usage_problems_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");

    let r = users(&file, &["remove", "nobody"], "");
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("no user \"nobody\""), "{}", r.stderr);

    let r = users(&file, &["add", "a:b", "--password-stdin"], "pw\n");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("invalid user name"), "{}", r.stderr);

    let r = users(&file, &["add", "alice", "--password-stdin"], "\n");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("the password is empty"), "{}", r.stderr);
    assert!(!file.exists(), "nothing written on a usage error");

    // A damaged users file is reported with its line and left alone.
    std::fs::write(&file, "# users\nalice:not-a-hash\n").unwrap();
    let r = users(&file, &["list"], "");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("users:2: "), "{}", r.stderr);
}
