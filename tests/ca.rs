//! `charte-proxy ca init|show` as a process: the files `init` writes and their modes,
//! the refusal to replace a CA, the fingerprint and install instructions `show` prints,
//! and the exit code 2 with a fix for a key open to others.

use std::path::Path;
use std::process::Command;

use sha2::{Digest as _, Sha256};

/// Result of one run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `charte-proxy ca --data-dir <data> <args>`.
fn ca(data: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_charte-proxy"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CHARTE_DATA")
        .env("CHARTE_LOG", "warn")
        .arg("ca")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("the binary runs");
    Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn init_creates_the_ca_and_show_prints_its_fingerprint_and_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let r = ca(
        &data,
        &["init", "--name", "CA filtrage", "--organisation", "Mairie"],
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let (pem, der, key) = (
        data.join("ca/ca.pem"),
        data.join("ca/ca.der"),
        data.join("ca/ca.key"),
    );
    for f in [&pem, &der, &key] {
        assert!(f.is_file(), "{} written", f.display());
    }
    #[cfg(unix)]
    assert_eq!(
        (mode(&key), mode(&pem), mode(&der)),
        (0o600, 0o644, 0o644),
        "key private, certificates public"
    );
    let fp = fingerprint(&std::fs::read(&der).unwrap());
    assert!(r.stdout.contains(&fp), "init shows the CA:\n{}", r.stdout);

    let r = ca(&data, &["show"]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let out = &r.stdout;
    assert!(out.contains(&fp), "{out}");
    assert!(out.contains("CN=CA filtrage, O=Mairie"), "{out}");
    for word in [
        "Firefox",
        "certutil -addstore -f Root ca.der",
        "update-ca-certificates",
        "ImportEnterpriseRoots",
        "sql:$HOME/.pki/nssdb",
        &der.display().to_string(),
    ] {
        assert!(out.contains(word), "{word:?} missing from:\n{out}");
    }
    assert!(
        !out.contains("PRIVATE KEY"),
        "show never prints the key:\n{out}"
    );
}

#[test]
fn a_second_init_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    assert_eq!(ca(data, &["init"]).code, 0);
    let der = std::fs::read(data.join("ca/ca.der")).unwrap();

    let r = ca(data, &["init"]);
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(
        std::fs::read(data.join("ca/ca.der")).unwrap(),
        der,
        "the CA is untouched"
    );

    let r = ca(data, &["init", "--force"]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert_ne!(std::fs::read(data.join("ca/ca.der")).unwrap(), der);
}

#[test]
fn show_without_a_ca_says_to_run_init() {
    let dir = tempfile::tempdir().unwrap();
    let r = ca(dir.path(), &["show"]);
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("charte-proxy ca init"), "{}", r.stderr);
}

#[cfg(unix)]
#[test]
fn a_key_open_to_others_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    assert_eq!(ca(data, &["init"]).code, 0);
    let key = data.join("ca/ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = ca(data, &["show"]);
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains(&format!("chmod 600 {}", key.display())),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

#[test]
fn an_existing_ca_is_named_with_cert_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let made = dir.path().join("made");
    assert_eq!(ca(&made, &["init", "--name", "Sous-AC"]).code, 0);
    // Another data folder, the CA given by path.
    let other = dir.path().join("other");
    let cert = made.join("ca/ca.pem");
    let key = made.join("ca/ca.key");
    let r = ca(
        &other,
        &[
            "show",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(r.stdout.contains("CN=Sous-AC"), "{}", r.stdout);
    assert!(!other.exists(), "show writes nothing");
}
