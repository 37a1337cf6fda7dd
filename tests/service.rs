//! The proxy as a service (issue 23): the systemd unit, readiness over systemd's notify
//! socket, `reload` and `rotate` as `squid -k` does them, one instance per data folder,
//! clear start errors that leave nothing behind, file modes, and the data folder found
//! the same way by every command.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::proxy::{Proxy, fixture_dir};

const BIN: &str = env!("CARGO_BIN_EXE_charte-proxy");

/// The binary with `args`, run in `dir` (no environment of the test leaks in).
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> common::Run {
    let out = Command::new(BIN)
        .current_dir(dir)
        .env_remove("CHARTE_POLICY")
        .env_remove("CHARTE_CONFIG")
        .env_remove("CHARTE_DATA")
        .env_remove("CHARTE_USERS")
        .env_remove("CHARTE_ADMINS")
        .env("CHARTE_LOG", "warn")
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("the binary runs");
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `serve` in `dir` on loopback port 0, expected to refuse to start.
fn serve_refused(dir: &Path, extra: &[&str]) -> common::Run {
    let mut args = vec![
        "serve",
        "--policy",
        "policy.yaml",
        "--listen",
        "127.0.0.1:0",
        "--portal-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--no-reverse-dns",
    ];
    args.extend_from_slice(extra);
    let r = run_in(dir, &args, &[]);
    assert_ne!(r.code, 0, "serve should have refused: {}", r.stderr);
    r
}

/// GET http://allowed.test/PATH through the proxy, from the local upstream.
fn get_allowed(p: &Proxy, upstream: &common::proxy::Upstream, path: &str) {
    common::proxy::curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-x",
        &p.url(),
        &format!("http://allowed.test:{}/{path}", upstream.port()),
    ]);
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/charte-proxy.service"),
    )
    .unwrap();
    for want in [
        "Type=notify",
        "ExecReload=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "User=charte-proxy",
        "StateDirectory=charte-proxy",
    ] {
        assert!(unit.contains(want), "the unit lacks {want}");
    }
    // The binary as it is installed, here the one under test.
    let path = dir.path().join("charte-proxy.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/charte-proxy", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (package systemd, installed by tests/run.sh)");
    let err = String::from_utf8_lossy(&out.stderr);
    let about_unit: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("charte-proxy.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {err}"
    );
}

#[test]
fn the_category_update_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let service = std::fs::read_to_string(deploy.join("charte-categories-update.service")).unwrap();
    let timer = std::fs::read_to_string(deploy.join("charte-categories-update.timer")).unwrap();
    for want in [
        "Type=oneshot",
        "categories update",
        "User=charte-proxy",
        "ProtectSystem=strict",
    ] {
        assert!(service.contains(want), "the service lacks {want}");
    }
    for want in ["OnCalendar=", "Persistent=true", "RandomizedDelaySec="] {
        assert!(timer.contains(want), "the timer lacks {want}");
    }
    std::fs::write(
        dir.path().join("charte-categories-update.service"),
        service.replace("/usr/local/bin/charte-proxy", BIN),
    )
    .unwrap();
    let timer_path = dir.path().join("charte-categories-update.timer");
    std::fs::write(&timer_path, timer).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("charte-categories-update.service"))
        .arg(&timer_path)
        .output()
        .expect("systemd-analyze runs (package systemd, installed by tests/run.sh)");
    let err = String::from_utf8_lossy(&out.stderr);
    let about_units: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("charte-categories-update"))
        .collect();
    assert!(
        out.status.success() && about_units.is_empty(),
        "systemd-analyze verify: {err}"
    );
}

#[test]
fn readiness_and_stopping_go_to_the_notify_socket() {
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut p = Proxy::start_in_with(
        fixture_dir(),
        "reverse_dns: false\n",
        &[("NOTIFY_SOCKET", sock_path.clone().into_os_string())],
        &[],
    );
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a READY=1 datagram");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    // The status names the bound proxy listener, and it accepts connections.
    let status = msg
        .lines()
        .find_map(|l| l.strip_prefix("STATUS=serving on "))
        .unwrap_or_else(|| panic!("no STATUS: {msg}"));
    assert_eq!(status, p.proxy.to_string());
    std::net::TcpStream::connect(p.proxy).expect("ready means listening");
    p.signal("TERM");
    let n = sock.recv(&mut buf).expect("a STOPPING=1 datagram");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg}");
    assert_eq!(p.wait_exit(Duration::from_secs(20)), 0);
}

#[test]
fn reload_and_rotate_find_the_running_proxy_by_pidfile_or_data_folder() {
    let p = Proxy::start_pinned(&["--pidfile", "run/proxy.pid"]);
    let dir = p.dir.path();
    let pid = p.child.id().to_string();
    assert_eq!(
        std::fs::read_to_string(dir.join("run/proxy.pid"))
            .unwrap()
            .trim(),
        pid
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("data/charte-proxy.lock"))
            .unwrap()
            .trim(),
        pid
    );

    // reload by pidfile: a new generation.
    let r = run_in(dir, &["reload", "--pidfile", "run/proxy.pid"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&format!("pid {pid}")), "{}", r.stdout);
    p.wait_generation(2);
    // reload by the data folder (CHARTE_DATA, as every command reads it).
    let r = run_in(dir, &["reload"], &[("CHARTE_DATA", "data")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    p.wait_generation(3);

    // rotate: the trace file moved away is written anew after the signal.
    let upstream = common::proxy::Upstream::start();
    let get = |path: &str| get_allowed(&p, &upstream, path);
    get("before");
    p.trace_for("allowed.test", "GET");
    std::fs::rename(p.trace_path(), dir.join("data/trace.log.1")).unwrap();
    let r = run_in(dir, &["rotate", "--data-dir", "data"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        get("after");
        let text = std::fs::read_to_string(p.trace_path()).unwrap_or_default();
        if text.contains("/after") {
            break;
        }
        assert!(Instant::now() < deadline, "no new trace file after rotate");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(p);
}

#[test]
fn reload_says_clearly_when_no_proxy_runs() {
    let dir = tempfile::tempdir().unwrap();
    // No data folder at all.
    let r = run_in(dir.path(), &["reload", "--data-dir", "nowhere"], &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("no charte-proxy runs on the data folder nowhere"),
        "{}",
        r.stderr
    );
    // A lock file left by a proxy that stopped: not held.
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/charte-proxy.lock"), "4000000\n").unwrap();
    let r = run_in(dir.path(), &["rotate"], &[("CHARTE_DATA", "data")]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is not held"), "{}", r.stderr);
    // A pidfile naming a process that does not exist.
    std::fs::write(dir.path().join("old.pid"), "4000000\n").unwrap();
    let r = run_in(dir.path(), &["reload", "--pidfile", "old.pid"], &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("names pid 4000000, which is not running"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_second_instance_on_the_same_data_folder_refuses_naming_the_first() {
    let p = Proxy::start_pinned(&[]);
    let r = serve_refused(p.dir.path(), &["--data-dir", "data"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let pid = p.child.id();
    assert!(
        r.stderr.contains(&format!(
            "another charte-proxy (pid {pid}) runs on the data folder data"
        )),
        "{}",
        r.stderr
    );
    // The first one still serves.
    assert!(p.admin_get("/health").contains("generation"));
}

#[test]
fn a_port_in_use_or_a_data_folder_that_cannot_be_written_is_named_and_nothing_is_created() {
    let dir = fixture_dir();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let mut args = vec![
        "serve",
        "--policy",
        "policy.yaml",
        "--listen",
        port.as_str(),
        "--portal-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        "data",
        "--no-reverse-dns",
    ];
    let r = run_in(dir.path(), &args, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("cannot listen on {port} for the proxy (--listen")),
        "{}",
        r.stderr
    );
    assert!(
        !dir.path().join("data").exists(),
        "the data folder was created"
    );

    // A data folder below a file cannot exist.
    std::fs::write(dir.path().join("plain-file"), "").unwrap();
    args[4] = "127.0.0.1:0";
    args[10] = "plain-file/data";
    let r = run_in(dir.path(), &args, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the data folder plain-file/data cannot be written")
            && r.stderr.contains("--data-dir"),
        "{}",
        r.stderr
    );
    // A folder this user cannot write (root writes anywhere: then only the above).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        std::fs::create_dir(dir.path().join("ro")).unwrap();
        std::fs::set_permissions(
            dir.path().join("ro"),
            std::fs::Permissions::from_mode(0o555),
        )
        .unwrap();
        args[10] = "ro/data";
        let r = run_in(dir.path(), &args, &[]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains("ro/data cannot be written"),
            "{}",
            r.stderr
        );
    }
    drop(busy);
}

#[test]
fn files_holding_personal_data_or_keys_are_not_readable_by_others() {
    let p = Proxy::start_pinned(&[]);
    let upstream = common::proxy::Upstream::start();
    get_allowed(&p, &upstream, "x");
    p.trace_for("allowed.test", "GET");
    let mode = |rel: &str| {
        std::fs::metadata(p.path(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    for f in ["data/trace.log", "data/requests.db"] {
        assert_eq!(mode(f) & 0o027, 0, "{f} is {:o}", mode(f));
    }
    for f in ["data/secret.key", "data/ca/ca.key"] {
        assert_eq!(mode(f), 0o600, "{f} is {:o}", mode(f));
    }
    assert_eq!(mode("data") & 0o027, 0, "data is {:o}", mode("data"));
}

#[test]
fn every_command_finds_the_data_folder_the_same_way_and_a_flag_never_moves_a_set_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // CHARTE_DATA for users, admins and requests alike.
    let add = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(BIN)
            .current_dir(d)
            .env_remove("CHARTE_USERS")
            .env_remove("CHARTE_ADMINS")
            .env_remove("CHARTE_CONFIG")
            .env_remove("CHARTE_DATA")
            .envs(env.iter().copied())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(b"pw-123456\n")?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    add(
        &["users", "add", "alice", "--password-stdin"],
        &[("CHARTE_DATA", "envdata")],
    );
    assert!(d.join("envdata/users").is_file());
    add(
        &["admins", "add", "root", "--password-stdin"],
        &[("CHARTE_DATA", "envdata")],
    );
    assert!(d.join("envdata/admins").is_file());
    let r = run_in(d, &["requests", "list"], &[("CHARTE_DATA", "envdata")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(d.join("envdata/requests.db").is_file());

    // The server file sets the users file: --data-dir moves the rest, not that.
    std::fs::write(
        d.join("server.yaml"),
        "data_dir: filedata\nauth:\n  users_file: kept/users\n",
    )
    .unwrap();
    add(
        &[
            "users",
            "add",
            "bob",
            "--password-stdin",
            "--config",
            "server.yaml",
            "--data-dir",
            "flagdata",
        ],
        &[],
    );
    assert!(d.join("kept/users").is_file());
    assert!(!d.join("flagdata/users").exists());
    // Without the flag, the server file's data folder.
    add(
        &["admins", "add", "carol", "--password-stdin"],
        &[("CHARTE_CONFIG", "server.yaml")],
    );
    assert!(d.join("filedata/admins").is_file());
}
