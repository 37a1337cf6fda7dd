//! Commands whose standard output is a pipe that closes early (`charte-proxy … | head`):
//! each ends quietly, with status 0 or killed by SIGPIPE as Unix tools are, never with a
//! panic or an error message; `serve` keeps serving.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt as _;
use std::process::Stdio;
use std::time::Duration;

use common::proxy::{Proxy, Upstream, http_get, one_response};

/// What is read of the output before the pipe is closed.
#[derive(Clone, Copy)]
enum Reader {
    /// Nothing: the pipe is closed before the command starts, so its first write fails
    /// whatever the output's length.
    GoneFirst,
    /// The first bytes, as `head -c`: only an output longer than the pipe's buffer
    /// (64 KiB) has writes left to fail.
    ReadsThenGoes(usize),
}

/// Runs the binary with `args` and `stdin`, its standard output a pipe closed as
/// `reader` says, and checks how it ended.
fn ends_quietly(args: &[&str], stdin: &[u8], reader: Reader) {
    let (out_r, out_w) = common::pipe();
    let out_r = match reader {
        Reader::GoneFirst => {
            drop(out_r);
            None
        }
        Reader::ReadsThenGoes(_) => Some(out_r),
    };
    let mut child = common::bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The input from a thread: the command may stop reading it once its output is gone.
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    if let (Some(mut out_r), Reader::ReadsThenGoes(n)) = (out_r, reader) {
        let mut head = vec![0u8; n];
        out_r
            .read_exact(&mut head)
            .unwrap_or_else(|e| panic!("{args:?}: fewer than {n} bytes of output: {e}"));
        // Dropped here: the reader is gone.
    }
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{args:?} complained of a closed pipe:\n{stderr}"
    );
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{args:?} on a closed pipe: {:?}, stderr:\n{stderr}",
        out.status
    );
}

#[test]
fn commands_end_quietly_when_their_output_is_closed() {
    let explain = ["explain", "https://casino-royal.example/jeux?x=1"];
    let explain_json = ["explain", "--json", "https://casino-royal.example/jeux?x=1"];
    for args in [
        &explain[..],
        &explain_json[..],
        &["check"][..],
        &["categories", "list"][..],
        &["--help"][..],
        &["requests", "--help"][..],
    ] {
        ends_quietly(args, b"", Reader::GoneFirst);
    }
}

#[test]
fn classify_ends_quietly_when_its_reader_leaves_after_the_first_bytes() {
    // About 470 KB of answers, well past the pipe's buffer.
    let lines: String = (0..20_000)
        .map(|i| format!("host{i}.casino-royal.example\n"))
        .collect();
    ends_quietly(&["classify"], lines.as_bytes(), Reader::ReadsThenGoes(16));
    ends_quietly(&["classify"], lines.as_bytes(), Reader::GoneFirst);
}

#[test]
fn data_commands_end_quietly_when_their_output_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    // One stored unblock request, for `requests list` to print.
    let store =
        charte_proxy::unblock::sqlite::SqliteStore::open(&dir.path().join("requests.db")).unwrap();
    use charte_proxy::unblock::store::Store as _;
    store
        .submit(
            &charte_proxy::unblock::store::NewRequest {
                requester: "ip:10.0.0.1".into(),
                user: None,
                ip: "10.0.0.1".into(),
                groups: vec!["agents".into()],
                host: "casino-royal.example".into(),
                url: "https://casino-royal.example/".into(),
                categories: vec!["gambling".into()],
                rule: Some("jeux-agents".into()),
                reason_code: "block-rule".into(),
                justification: "contrôle".into(),
                wanted: None,
            },
            1_700_000_000,
        )
        .unwrap();
    drop(store);
    let data = dir.path().to_str().unwrap();
    ends_quietly(
        &["requests", "list", "--data-dir", data],
        b"",
        Reader::GoneFirst,
    );
    // One user, for `users list`.
    let users = dir.path().join("users");
    let users = users.to_str().unwrap();
    let added = common::bin()
        .args(["users", "add", "alice", "--password-stdin", "--file", users])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            writeln!(c.stdin.take().unwrap(), "correct horse")?;
            c.wait()
        })
        .unwrap();
    assert!(added.success());
    ends_quietly(&["users", "list", "--file", users], b"", Reader::GoneFirst);
}

#[test]
fn serve_with_its_output_closed_serves_and_outlives_clients_that_leave() {
    let up = Upstream::start();
    let mut p = Proxy::start_pinned_stdout_closed(&[]);
    assert_eq!(http_get(p.admin, "/healthz"), (200, "ok\n".to_string()));

    // Clients that leave in the middle of a long answer: the proxy's writes to them
    // fail, which ends their connections and nothing else. (On Linux the first write
    // after a reset fails with ECONNRESET, which raises no signal and ends the exchange,
    // so this part passes even with SIGPIPE's default; the banner above is what would
    // kill a `serve` that had it.)
    for _ in 0..4 {
        let mut s = TcpStream::connect(p.proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET http://allowed.test:{port}/big?n=67108864 HTTP/1.1\r\nHost: allowed.test:{port}\r\n\r\n",
            port = up.port()
        )
        .unwrap();
        let mut some = [0u8; 64 * 1024];
        s.read_exact(&mut some).unwrap();
        // Closed with unread bytes: the proxy's side is reset.
        drop(s);
    }
    let answer = one_response(
        p.proxy,
        &format!(
            "GET http://allowed.test:{port}/small HTTP/1.1\r\nHost: allowed.test:{port}\r\nConnection: close\r\n\r\n",
            port = up.port()
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
    assert!(p.child.try_wait().unwrap().is_none(), "the proxy died");
    let log = p.stderr.lock().unwrap().clone();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("cannot write the start banner"), "{log}");
}
