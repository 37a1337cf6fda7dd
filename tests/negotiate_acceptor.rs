//! `identity::negotiate::Acceptor` against a real MIT KDC (`common::kdc`): tickets from
//! `kinit`, SPNEGO tokens from GSSAPI's own initiator (libgssapi's `ClientCtx`), checked
//! with a keytab holding two service principals.
//!
//! The acceptor takes its whole setup from the process environment (`KRB5_CONFIG`,
//! `KRB5_KTNAME`, `KRB5RCACHEDIR`), and so does the initiator (`KRB5CCNAME`). Setting
//! them in this process would be `unsafe` (edition 2024: another thread may read the
//! environment meanwhile, and the test harness runs tests on threads), and the
//! expired-ticket case needs another `krb5.conf` than the others. So each test does its
//! setup here (KDC, principals, keytabs, tickets) and runs the GSSAPI part in a child
//! process: this test binary again, running only the ignored test [`child`], with the
//! environment it needs and a role saying which part to run. The child asserts; the
//! parent checks that it passed and shows its output otherwise.
#![cfg(feature = "kerberos")]

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use charte_proxy::identity::negotiate::{Acceptor, Refusal, parse_negotiate};
use common::kdc::Kdc;

/// The environment variable that tells [`child`] which part to run.
const ROLE: &str = "CHARTE_NEGOTIATE_ROLE";
/// The error code [`child`] expects from `Acceptor::new` in the role `setup-error`.
const EXPECT: &str = "CHARTE_NEGOTIATE_EXPECT";

const PROXY1: &str = "HTTP/proxy1.mairie.test";
const PROXY2: &str = "HTTP/proxy2.mairie.test";
/// A service of the realm whose key is not in the proxy's keytab.
const OTHER: &str = "HTTP/intranet.mairie.test";

/// Runs [`child`] in a new process with `role` and `env`; panics with its output if it
/// failed.
fn run_child(role: &str, env: &[(&str, OsString)]) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the test binary runs again");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Shown with --nocapture.
    println!("--- child {role}:\n{text}");
    assert!(out.status.success(), "child {role} failed:\n{text}");
    assert!(
        text.contains("test result: ok. 1 passed"),
        "child {role} did not run:\n{text}"
    );
}

/// A KDC with alice and the three services; the proxy's keytab holds PROXY1 and PROXY2.
fn realm(dir: &Path) -> (Kdc, std::path::PathBuf) {
    let kdc = Kdc::start();
    kdc.add_user("alice", "alice-pw");
    let keytab = dir.join("proxy.keytab");
    kdc.add_service(PROXY1, &keytab);
    kdc.add_service(PROXY2, &keytab);
    kdc.add_service(OTHER, &dir.join("intranet.keytab"));
    (kdc, keytab)
}

fn client_env(
    server: Vec<(&'static str, OsString)>,
    kdc: &Kdc,
    ccache: &Path,
) -> Vec<(&'static str, OsString)> {
    // The client's KRB5CCNAME replaces the server's (later entries win).
    let mut env = server;
    env.extend(
        kdc.env(ccache)
            .into_iter()
            .filter(|(k, _)| *k == "KRB5CCNAME"),
    );
    env
}

#[test]
fn tokens_are_accepted_refused_and_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (kdc, keytab) = realm(dir.path());
    let ccache = kdc.kinit("alice", "alice-pw");
    run_child(
        "accept",
        &client_env(kdc.server_env(&keytab), &kdc, &ccache),
    );
}

#[test]
fn an_expired_ticket_is_refused_as_expired() {
    let dir = tempfile::tempdir().unwrap();
    let (kdc, keytab) = realm(dir.path());
    // A TGT valid 3 s; the service ticket taken with it ends no later.
    let ccache = kdc.kinit_for("alice", "alice-pw", Some("3s"));
    // clockskew = 1: the acceptor allows no grace after the ticket's end.
    run_child(
        "expired",
        &client_env(kdc.server_env_clockskew(&keytab, 1), &kdc, &ccache),
    );
}

#[test]
fn a_missing_empty_or_broken_keytab_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("krb5.conf");
    std::fs::write(&conf, "[libdefaults]\n default_realm = MAIRIE.TEST\n").unwrap();
    let empty = dir.path().join("empty.keytab");
    std::fs::write(&empty, b"").unwrap();
    let header_only = dir.path().join("header.keytab");
    std::fs::write(&header_only, b"\x05\x02").unwrap();
    let garbage = dir.path().join("garbage.keytab");
    std::fs::write(&garbage, b"this is not a keytab\n").unwrap();
    let missing = dir.path().join("missing.keytab");
    for (ktname, code) in [
        (format!("FILE:{}", missing.display()), "keytab_missing"),
        (missing.display().to_string(), "keytab_missing"),
        (format!("FILE:{}", empty.display()), "keytab_empty"),
        (format!("FILE:{}", header_only.display()), "keytab_empty"),
        (
            format!("FILE:{}", dir.path().display()),
            "keytab_unreadable",
        ),
        (format!("FILE:{}", garbage.display()), "acceptor_credential"),
    ] {
        run_child(
            "setup-error",
            &[
                ("KRB5_CONFIG", conf.clone().into()),
                ("KRB5_KTNAME", ktname.into()),
                (EXPECT, code.into()),
            ],
        );
    }
}

/// The GSSAPI side of the tests above, in a process of its own (see the module's
/// documentation); does nothing when run by hand without a role.
#[test]
#[ignore = "run by the other tests of this file, in a child process"]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "accept" => child::accept(),
        "expired" => child::expired(),
        "setup-error" => child::setup_error(),
        r => panic!("unknown role {r}"),
    }
}

mod child {
    use super::*;

    use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext as _};
    use libgssapi::name::Name;
    use libgssapi::oid::{GSS_MECH_KRB5, GSS_MECH_SPNEGO, GSS_NT_KRB5_PRINCIPAL, Oid};

    /// A client context for `service` with alice's ticket (`KRB5CCNAME`), mutual
    /// authentication asked for, as browsers do.
    fn client(service: &str, mech: Oid<'static>) -> ClientCtx {
        let target = Name::new(
            format!("{service}@MAIRIE.TEST").as_bytes(),
            Some(GSS_NT_KRB5_PRINCIPAL),
        )
        .unwrap();
        ClientCtx::new(None, target, CtxFlags::GSS_C_MUTUAL_FLAG, Some(mech))
    }

    /// A first token for `service` (SPNEGO unless `mech` says otherwise), and its
    /// context to check the acceptor's reply with.
    fn token(service: &str, mech: Oid<'static>) -> (Vec<u8>, ClientCtx) {
        let mut ctx = client(service, mech);
        let tok = ctx
            .step(None, None)
            .unwrap_or_else(|e| panic!("initiator for {service}: {e}"))
            .expect("a first token");
        (tok.to_vec(), ctx)
    }

    fn spnego(service: &str) -> Vec<u8> {
        token(service, GSS_MECH_SPNEGO).0
    }

    fn code(r: Result<impl std::fmt::Debug, Refusal>) -> &'static str {
        match r {
            Ok(a) => panic!("accepted: {a:?}"),
            Err(e) => {
                println!("refused ({}): {e}", e.code());
                e.code()
            }
        }
    }

    pub fn accept() {
        let acceptor = Acceptor::new().expect("the acceptor starts");

        // Either principal of the keytab; mutual authentication completes the client.
        for service in [PROXY1, PROXY2] {
            let (tok, mut client) = token(service, GSS_MECH_SPNEGO);
            let a = acceptor
                .accept(&tok)
                .unwrap_or_else(|e| panic!("{service}: {e} ({})", e.code()));
            assert_eq!(a.principal, "alice@MAIRIE.TEST");
            let reply = a.reply.expect("a reply token for mutual authentication");
            assert!(client.step(Some(&reply), None).unwrap().is_none());
            assert!(
                client.is_complete(),
                "{service}: the reply completes the client"
            );
        }

        // Raw Kerberos (no SPNEGO around it) is accepted too.
        let (tok, _) = token(PROXY1, GSS_MECH_KRB5);
        assert_eq!(
            acceptor.accept(&tok).unwrap().principal,
            "alice@MAIRIE.TEST"
        );

        // Through the header's framing, as the proxy will see it.
        let tok = spnego(PROXY1);
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &tok);
        let header = format!("Negotiate {b64}");
        let decoded = parse_negotiate(header.as_bytes()).unwrap();
        assert!(acceptor.accept(&decoded).is_ok());
        // The same token again: a replay.
        assert_eq!(code(acceptor.accept(&decoded)), "replay");
        // Also from a second acceptor (another worker or process shares the cache).
        let second = Acceptor::new().unwrap();
        assert_eq!(code(second.accept(&decoded)), "replay");

        // A ticket for a service of the realm that is not in the keytab.
        assert_eq!(code(acceptor.accept(&spnego(OTHER))), "wrong-service");

        // Garbage, truncations, a flipped byte: refused, never a panic.
        assert_eq!(code(acceptor.accept(b"")), "malformed");
        assert_eq!(code(acceptor.accept(b"NTLMSSP\0\x01\0\0\0")), "ntlm");
        assert_eq!(code(acceptor.accept(b"garbage")), "malformed");
        assert_eq!(
            code(acceptor.accept(&[0x60, 0x03, 0x06, 0x01, 0x00])),
            "malformed"
        );
        let good = spnego(PROXY1);
        for n in [1, 2, 10, good.len() / 2, good.len() - 1] {
            let r = acceptor.accept(&good[..n]);
            assert!(
                matches!(r, Err(Refusal::Malformed(_))),
                "first {n} bytes: {r:?}"
            );
        }
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..200 {
            let mut t = good.clone();
            // xorshift: a few bytes changed at places that vary.
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed as usize) % t.len();
                t[i] ^= (seed >> 32) as u8 | 1;
            }
            assert!(acceptor.accept(&t).is_err(), "a damaged token was accepted");
        }
        let mut long = good.clone();
        long.extend_from_slice(&[0; 100]);
        assert!(acceptor.accept(&long).is_err());

        // One acceptor for every thread.
        let tokens: Vec<Vec<u8>> = (0..8).map(|_| spnego(PROXY2)).collect();
        std::thread::scope(|s| {
            for t in &tokens {
                let acceptor = &acceptor;
                s.spawn(move || {
                    assert_eq!(acceptor.accept(t).unwrap().principal, "alice@MAIRIE.TEST");
                });
            }
        });
    }

    pub fn expired() {
        let acceptor = Acceptor::new().expect("the acceptor starts");
        let made = Instant::now();
        let tok = spnego(PROXY1);
        // The ticket lives at most 3 s and the acceptor allows 1 s of skew: 5 s after
        // the token was made, its ticket is past (the clock is the condition here).
        let past = made + Duration::from_secs(5);
        while Instant::now() < past {
            std::thread::sleep(past - Instant::now());
        }
        assert_eq!(code(acceptor.accept(&tok)), "expired");
    }

    pub fn setup_error() {
        let want = std::env::var(EXPECT).unwrap();
        let ktname = std::env::var("KRB5_KTNAME").unwrap();
        let e = Acceptor::new().expect_err("the acceptor refuses to start");
        println!("{ktname}: {e} ({})", e.code());
        assert_eq!(e.code(), want, "{e}");
        let path = ktname.strip_prefix("FILE:").unwrap_or(&ktname);
        assert!(
            e.to_string().contains(path),
            "the message names {path}: {e}"
        );
    }
}
