//! A throw-away PostgreSQL cluster for the integration tests: `initdb` into a temp
//! folder, the server started by `pg_ctl` on a free loopback port with its socket in the
//! same folder, stopped (and the folder removed) on drop. A cluster the Debian package
//! may have started (port 5432) is neither needed nor disturbed.
//!
//! PostgreSQL refuses to run as root: as root, the folder is given to the `postgres`
//! user the package creates, and the server's commands run as that user (`runuser`).
//! The superuser `postgres` connects through the socket without a password (`trust`);
//! over TCP every role needs its password (`scram-sha-256`), as the proxy's will. Each
//! test asks for a database of its own ([`Postgres::database`]), owned by the role
//! `charte` (password [`PASSWORD`]).
#![allow(dead_code)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The test role's password.
pub const PASSWORD: &str = "charte-pw";

/// A running (or, after [`Postgres::stop`], stopped) cluster.
pub struct Postgres {
    pub port: u16,
    /// The cluster's folder: `data/`, the socket, `server.log`.
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    /// Run the server's commands as `postgres` (we are root).
    as_postgres: bool,
    running: bool,
}

/// The highest installed version's `bin` folder (`/usr/lib/postgresql/N/bin`).
pub fn bin_dir() -> Option<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    for e in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let Some(v) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let bin = e.path().join("bin");
        if bin.join("initdb").exists() && best.as_ref().is_none_or(|(b, _)| v > *b) {
            best = Some((v, bin));
        }
    }
    best.map(|(_, b)| b)
}

/// How many numbered migrations the product ships (`migrations/pg`): the schema version
/// of a database it has set up.
pub fn migrations() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/pg"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".sql"))
        })
        .count()
}

/// Whether the PostgreSQL tests can run here. Under CI (`CI` set) a missing PostgreSQL
/// is a failure: `tests/run.sh` installs it.
pub fn available() -> bool {
    if bin_dir().is_some() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "PostgreSQL is not installed (Debian package postgresql; tests/run.sh installs it)"
    );
    eprintln!("skipped: PostgreSQL is not installed (apt-get install postgresql)");
    false
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of the `postgres` user.
fn postgres_ids() -> (u32, u32) {
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam reads a static entry; copied out at once, one thread at a time
    // does not matter for a test's two fields.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "no `postgres` user: install the Debian package postgresql, which creates it"
    );
    // SAFETY: checked non-null above.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

impl Postgres {
    /// Creates the cluster and starts it; returns once it accepts connections, with the
    /// role `charte` created.
    pub fn start() -> Postgres {
        let bin = bin_dir().expect("PostgreSQL installed (see `available`)");
        let dir = tempfile::Builder::new().prefix("pg-").tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut pg = Postgres {
            port: 0,
            dir,
            bin,
            as_postgres,
            running: false,
        };
        let data = pg.data();
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        // A free port may be taken again between our probe and the server's bind; then
        // the start fails and another port is tried.
        let mut last = String::new();
        for _ in 0..5 {
            pg.port = free_port();
            match pg.try_start() {
                Ok(()) => {
                    pg.psql(
                        "postgres",
                        &format!("CREATE ROLE charte LOGIN PASSWORD '{PASSWORD}'"),
                    );
                    return pg;
                }
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command of the cluster's `bin` folder, run as `postgres` when we are root.
    fn command(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        c.stdin(Stdio::null());
        c
    }

    fn try_start(&mut self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=60",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-o", &opts, "-t", "60"])
            .output()
            .expect("pg_ctl runs");
        if !out.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            return Err(format!("{}\n{log}", text(&out)));
        }
        self.running = true;
        self.wait_ready()
    }

    /// Polls `pg_isready` until the server accepts connections on its TCP port.
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = self
                .command("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "1"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("pg_isready: no answer in 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `sql` as the superuser in `db` (through the socket); returns what it printed
    /// (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .command("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql {sql:?} failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A new empty database owned by `charte`; returns its URL (TCP, with the password).
    pub fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name} OWNER charte"));
        self.url(name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://charte:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// Turns TLS on with this certificate and key (PEM), for connections opened from
    /// now on; returns once the server says `ssl` is on.
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str) {
        let cert = self.dir.path().join("server.crt");
        let key = self.dir.path().join("server.key");
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        if self.as_postgres {
            let (uid, gid) = postgres_ids();
            for f in [&cert, &key] {
                std::os::unix::fs::chown(f, Some(uid), Some(gid)).unwrap();
            }
        }
        self.psql(
            "postgres",
            &format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
        );
        self.psql(
            "postgres",
            &format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
        );
        self.psql("postgres", "ALTER SYSTEM SET ssl = on");
        self.psql("postgres", "SELECT pg_reload_conf()");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.psql("postgres", "SHOW ssl") != "on" {
            assert!(Instant::now() < deadline, "ssl not on after the reload");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (fast shutdown: open connections are closed).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let out = self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "60"])
            .output()
            .expect("pg_ctl runs");
        assert!(out.status.success(), "pg_ctl stop failed: {}", text(&out));
        self.running = false;
    }

    /// Starts the stopped server again, on the same port.
    pub fn restart(&mut self) {
        assert!(!self.running);
        self.try_start().expect("PostgreSQL starts again");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .command("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
