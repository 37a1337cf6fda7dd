//! `identity::directory` against a real OpenLDAP slapd (`common::slapd`): nested groups
//! found by walking `member` links, password checks by binding as the user, StartTLS
//! and LDAPS verified against the test CA, and the cache carrying requests through an
//! outage until the directory comes back.

mod common;

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use charte_proxy::identity::directory::{
    DEFAULT_WALK_DEPTH, Directory, DirectorySettings, Groups, Nesting,
};
use common::slapd::Slapd;

const COMMUNICATION: &str = "cn=gg-internet-communication,ou=groupes,dc=mairie,dc=test";
const NESTED: &str = "cn=gg-com-nested,ou=groupes,dc=mairie,dc=test";

/// StartTLS against the test CA, groups walked (slapd has no in-chain matching rule).
fn settings(slapd: &Slapd) -> DirectorySettings {
    DirectorySettings {
        starttls: true,
        ca_file: Some(slapd.ca_pem.clone()),
        kind: Nesting::Walk {
            max_depth: DEFAULT_WALK_DEPTH,
        },
        ..DirectorySettings::new(
            &slapd.url,
            &slapd.base_dn,
            &slapd.service_dn,
            &slapd.service_password,
        )
    }
}

fn known(g: Groups) -> Vec<String> {
    match g {
        Groups::Known(list) => list.iter().map(|s| s.to_string()).collect(),
        Groups::Unavailable(e) => panic!("groups unavailable: {e} ({})", e.code()),
    }
}

/// Polls `check` every 20 ms until it holds, for at most `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn groups_include_nested_ones() {
    let slapd = Slapd::start();
    let d = Directory::new(settings(&slapd)).unwrap();
    d.probe().await.unwrap();
    assert!(d.health().up);

    assert_eq!(
        known(d.groups("bob").await),
        [NESTED, COMMUNICATION],
        "bob is in GG-Com-Nested, itself in GG-Internet-Communication"
    );
    assert_eq!(known(d.groups("alice").await), [COMMUNICATION]);
    assert!(
        known(d.groups("carol").await).is_empty(),
        "carol is in none"
    );
    assert!(
        known(d.groups("mallory").await).is_empty(),
        "a user the directory does not know is in no group"
    );
    // A Kerberos principal and a filter-injection attempt.
    assert_eq!(
        known(d.groups("bob@MAIRIE.TEST").await),
        [NESTED, COMMUNICATION]
    );
    assert!(known(d.groups("*").await).is_empty());

    let before = d.stats();
    assert_eq!(before.lookups, 5, "{before:?}");
    assert_eq!(known(d.groups("Alice").await), [COMMUNICATION]);
    let after = d.stats();
    assert_eq!(after.lookups, before.lookups, "names compare without case");
    assert_eq!(after.cache_hits, before.cache_hits + 1);
    assert_eq!(after.failures, 0);
    assert_eq!(after.latency_count, 5);
    assert!(after.latency_sum_seconds > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passwords_are_checked_by_binding_as_the_user() {
    let slapd = Slapd::start();
    let d = Arc::new(Directory::new(settings(&slapd)).unwrap());
    let alice_dn = slapd.user_dn("alice");

    assert_eq!(
        d.check_password("alice", "alice-pw")
            .await
            .unwrap()
            .as_deref(),
        Some(alice_dn.as_str())
    );
    assert_eq!(d.check_password("alice", "bob-pw").await, Ok(None));
    assert_eq!(d.check_password("alice", "").await, Ok(None));
    assert_eq!(d.check_password("mallory", "x").await, Ok(None));
    // The service account's password is not a user's password for another name.
    assert_eq!(d.check_password("carol", "svc-pw").await, Ok(None));
    assert_eq!(d.stats().lookups, 4, "the empty password made no lookup");

    // A success is remembered; a failure is not.
    assert!(
        d.check_password("alice", "alice-pw")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(d.check_password("alice", "bob-pw").await, Ok(None));
    assert_eq!(d.stats().lookups, 5);

    // Identical checks arriving together share one bind.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move { d.check_password("bob", "bob-pw").await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_some());
    }
    assert_eq!(d.stats().lookups, 6);
}

#[tokio::test]
async fn tls_is_verified_with_the_configured_ca() {
    let slapd = Slapd::start();
    let with = |url: &str, starttls: bool, ca: bool| DirectorySettings {
        url: url.to_string(),
        starttls,
        ca_file: ca.then(|| slapd.ca_pem.clone()),
        ..settings(&slapd)
    };

    for (name, s) in [
        ("ldaps", with(&slapd.ldaps_url, false, true)),
        ("StartTLS", with(&slapd.url, true, true)),
    ] {
        let d = Directory::new(s).unwrap();
        assert_eq!(known(d.groups("alice").await), [COMMUNICATION], "{name}");
        assert!(
            d.check_password("bob", "bob-pw").await.unwrap().is_some(),
            "{name}"
        );
    }

    // Without the test CA (the system's roots), the certificate is refused.
    for (name, s) in [
        ("ldaps", with(&slapd.ldaps_url, false, false)),
        ("StartTLS", with(&slapd.url, true, false)),
    ] {
        let d = Directory::new(s).unwrap();
        let e = d.probe().await.unwrap_err();
        assert_eq!(e.code(), "ldap_connect", "{name}: {e}");
        assert!(e.to_string().contains("UnknownIssuer"), "{name}: {e}");
        assert!(matches!(d.groups("alice").await, Groups::Unavailable(_)));
        assert!(!d.health().up);
    }

    // Cleartext: refused unless allowed.
    let e = Directory::new(with(&slapd.url, false, true)).unwrap_err();
    assert_eq!(e.code(), "ldap_cleartext", "{e}");
    let d = Directory::new(DirectorySettings {
        allow_cleartext: true,
        ..with(&slapd.url, false, false)
    })
    .unwrap();
    assert_eq!(known(d.groups("bob").await), [NESTED, COMMUNICATION]);

    // A wrong service password is named as such.
    let d = Directory::new(DirectorySettings {
        bind_password: "wrong".into(),
        ..settings(&slapd)
    })
    .unwrap();
    let e = d.probe().await.unwrap_err();
    assert_eq!(e.code(), "ldap_service_bind", "{e}");
    assert!(e.to_string().contains("invalidCredentials"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_groups_outlive_an_outage_and_lookups_resume_after_it() {
    let mut slapd = Slapd::start();
    let first_wait = Duration::from_secs(2);
    let d = Directory::new(DirectorySettings {
        // Every answer is stale at once: each request refreshes in the background.
        group_ttl: Duration::ZERO,
        first_wait,
        timeout: Duration::from_secs(2),
        ..settings(&slapd)
    })
    .unwrap();
    assert_eq!(known(d.groups("alice").await), [COMMUNICATION]);
    assert!(d.health().up);

    tokio::task::block_in_place(|| slapd.stop());
    let down_since = std::time::SystemTime::now();

    // A known user: the (stale) answer at once, never a wait on the directory.
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(known(d.groups("alice").await), [COMMUNICATION]);
        assert!(started.elapsed() < Duration::from_millis(200));
    }
    // A new user: unavailable within the first wait, and with the connection error.
    let started = Instant::now();
    match d.groups("bob").await {
        Groups::Unavailable(e) => {
            assert!(
                matches!(e.code(), "ldap_connect" | "ldap_connection_lost"),
                "{e} ({})",
                e.code()
            );
        }
        g => panic!("groups of a new user while slapd is down: {g:?}"),
    }
    assert!(started.elapsed() < first_wait + Duration::from_millis(500));
    eventually("the health says down", Duration::from_secs(5), || async {
        !d.health().up
    })
    .await;
    let h = d.health();
    assert!(h.last_change >= down_since - Duration::from_secs(1));
    let last_error = h.last_error.unwrap();
    assert!(last_error.contains(&slapd.url), "{last_error}");
    assert!(d.stats().failures >= 1);
    // Passwords cannot be checked either, and say why.
    assert!(d.check_password("carol", "carol-pw").await.is_err());

    tokio::task::block_in_place(|| slapd.restart());
    // The same Directory reconnects by itself.
    eventually(
        "bob's groups after the restart",
        Duration::from_secs(10),
        || async { matches!(d.groups("bob").await, Groups::Known(_)) },
    )
    .await;
    assert_eq!(known(d.groups("bob").await), [NESTED, COMMUNICATION]);
    assert!(d.health().up);
    assert!(
        d.check_password("carol", "carol-pw")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_silent_directory_answers_within_the_timeout() {
    // Accepts connections and never answers: the StartTLS request gets no reply.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let url = format!("ldap://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let timeout = Duration::from_millis(300);
    let d = Directory::new(DirectorySettings {
        allow_cleartext: true,
        timeout,
        first_wait: Duration::from_secs(10),
        ..DirectorySettings::new(&url, "dc=mairie,dc=test", "cn=svc,dc=mairie,dc=test", "pw")
    })
    .unwrap();
    let started = Instant::now();
    match d.groups("alice").await {
        Groups::Unavailable(e) => assert_eq!(e.code(), "ldap_timeout", "{e}"),
        g => panic!("{g:?}"),
    }
    let took = started.elapsed();
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(1),
        "{took:?}"
    );
    let started = Instant::now();
    assert_eq!(
        d.check_password("alice", "pw").await.unwrap_err().code(),
        "ldap_timeout"
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "within RETRY_AFTER the last error comes back at once"
    );
    drop(listener);
}

/// Applies an LDIF change as slapd's rootdn.
fn ldapmodify(slapd: &Slapd, ldif: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("ldapmodify")
        .envs(slapd.client_env())
        .args(["-H", &slapd.url, "-x", "-D", &slapd.admin_dn, "-w"])
        .arg(&slapd.admin_password)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ldapmodify runs (Debian package ldap-utils)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ldif.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ldapmodify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_membership_cycle_ends_the_depth_is_bounded_and_in_chain_needs_ad() {
    let slapd = Slapd::start();
    // GG-Com-Nested now also holds GG-Internet-Communication, which holds it: a cycle.
    ldapmodify(
        &slapd,
        &format!(
            "dn: {}\nchangetype: modify\nadd: member\nmember: {}\n",
            slapd.group_dn("GG-Com-Nested"),
            slapd.group_dn("GG-Internet-Communication"),
        ),
    );
    let d = Directory::new(settings(&slapd)).unwrap();
    assert_eq!(known(d.groups("bob").await), [NESTED, COMMUNICATION]);
    assert_eq!(known(d.groups("alice").await), [NESTED, COMMUNICATION]);

    let shallow = Directory::new(DirectorySettings {
        kind: Nesting::Walk { max_depth: 1 },
        ..settings(&slapd)
    })
    .unwrap();
    assert_eq!(
        known(shallow.groups("bob").await),
        [NESTED],
        "direct groups only"
    );

    let in_chain = Directory::new(DirectorySettings {
        kind: Nesting::InChain,
        ..settings(&slapd)
    })
    .unwrap();
    // OpenLDAP has no in-chain matching rule: refused, not an empty answer.
    match in_chain.groups("bob").await {
        Groups::Unavailable(e) => {
            assert_eq!(e.code(), "ldap_setting", "{e}");
            assert!(e.to_string().contains("use walk"), "{e}");
        }
        g => panic!("in-chain on OpenLDAP: {g:?}"),
    }
}
