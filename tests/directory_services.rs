//! The throw-away directory services of the identity tests are real: a MIT KDC that
//! issues, refuses and expires tickets, and an OpenLDAP slapd that speaks StartTLS and
//! LDAPS with our CA, refuses wrong passwords, holds the groups, and can go down and come
//! back. Each test would fail if the service behind it were broken or faked.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::kdc::{Kdc, curl_anyauth_args, curl_negotiate_args};
use common::slapd::{Slapd, USERS};

const SERVICE: &str = "HTTP/proxy.mairie.test";

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not run: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn kdc_issues_a_tgt_for_the_right_password_only() {
    let kdc = Kdc::start();
    for (user, password) in USERS {
        kdc.add_user(user, password);
    }
    let ccache = kdc.kinit("alice", "alice-pw");
    let out = run(Command::new("klist").envs(kdc.env(&ccache)));
    assert!(out.status.success(), "{}", text(&out));
    let listed = text(&out);
    assert!(
        listed.contains("Default principal: alice@MAIRIE.TEST")
            && listed.contains("krbtgt/MAIRIE.TEST@MAIRIE.TEST"),
        "{listed}"
    );

    let err = kdc.kinit_error("alice", "bob-pw");
    assert!(err.contains("Password incorrect"), "{err}");
    let err = kdc.kinit_error("mallory", "x");
    assert!(err.contains("not found in Kerberos database"), "{err}");
}

#[test]
fn kdc_issues_service_tickets_for_principals_in_one_keytab() {
    let kdc = Kdc::start();
    kdc.add_user("alice", "alice-pw");
    let keytab = kdc.dir.path().join("proxy.keytab");
    kdc.add_service(SERVICE, &keytab);
    kdc.add_service("HTTP/proxy2.mairie.test", &keytab);

    let out = run(Command::new("klist").arg("-k").arg(&keytab));
    assert!(out.status.success(), "{}", text(&out));
    let listed = text(&out);
    assert!(
        listed.contains("HTTP/proxy.mairie.test@MAIRIE.TEST")
            && listed.contains("HTTP/proxy2.mairie.test@MAIRIE.TEST"),
        "{listed}"
    );

    let ccache = kdc.kinit("alice", "alice-pw");
    for service in [SERVICE, "HTTP/proxy2.mairie.test"] {
        let out = run(Command::new("kvno")
            .arg(format!("{service}@MAIRIE.TEST"))
            .envs(kdc.env(&ccache)));
        assert!(out.status.success(), "kvno {service}: {}", text(&out));
    }
    // The keytab holds the keys the KDC encrypted the ticket with: `kvno -k` decrypts
    // the service ticket with it.
    let out = run(Command::new("kvno")
        .arg("-k")
        .arg(&keytab)
        .arg(format!("{SERVICE}@MAIRIE.TEST"))
        .envs(kdc.env(&ccache)));
    assert!(
        out.status.success() && text(&out).contains("keytab entry valid"),
        "{}",
        text(&out)
    );
    let out = run(Command::new("kvno")
        .arg("HTTP/unknown.mairie.test@MAIRIE.TEST")
        .envs(kdc.env(&ccache)));
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn kdc_tickets_expire() {
    let kdc = Kdc::start();
    kdc.add_user("alice", "alice-pw");
    let keytab = kdc.dir.path().join("proxy.keytab");
    kdc.add_service(SERVICE, &keytab);
    let ccache = kdc.kinit_for("alice", "alice-pw", Some("1s"));
    // Waits for the condition "the client calls the ticket expired", not a fixed time.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = run(Command::new("kvno")
            .arg(format!("{SERVICE}@MAIRIE.TEST"))
            .envs(kdc.env(&ccache)));
        if !out.status.success() {
            assert!(text(&out).contains("Ticket expired"), "{}", text(&out));
            break;
        }
        assert!(Instant::now() < deadline, "the 1 s ticket never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fake proxy on one connection: answers 407 `Proxy-Authenticate: Negotiate` to a
/// request without `Proxy-Authorization` and 200 to one with it, and sends every request
/// head it read.
fn fake_negotiate_proxy() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let answer: &[u8] = if head.contains("Proxy-Authorization:") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            } else {
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                  Proxy-Authenticate: Negotiate\r\nContent-Length: 0\r\n\r\n"
            };
            let _ = tx.send(head);
            if writer.write_all(answer).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

#[test]
fn curl_authenticates_to_a_proxy_named_by_its_principal() {
    let kdc = Kdc::start();
    kdc.add_user("alice", "alice-pw");
    kdc.add_service(SERVICE, &kdc.dir.path().join("proxy.keytab"));
    let ccache = kdc.kinit("alice", "alice-pw");
    let curl = |args: Vec<String>| {
        run(Command::new("curl")
            .args(["-sS", "--max-time", "10", "-o", "/dev/null"])
            .args(args)
            .arg("http://site.example/")
            .envs(kdc.env(&ccache)))
    };
    let negotiate = |head: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix("Proxy-Authorization: Negotiate "))
            .map(str::to_string)
    };

    // --proxy-negotiate: the token on the first request.
    let (port, heads) = fake_negotiate_proxy();
    let out = curl(curl_negotiate_args("proxy.mairie.test", port));
    assert!(out.status.success(), "{}", text(&out));
    let first = heads.recv().unwrap();
    // A DER SPNEGO token (0x60 0x82 …) in base64.
    let token = negotiate(&first).unwrap_or_else(|| panic!("no token: {first}"));
    assert!(token.starts_with("YII"), "{token}");

    // --proxy-anyauth: no credentials, the 407, then the token on the same connection.
    let (port, heads) = fake_negotiate_proxy();
    let out = curl(curl_anyauth_args("proxy.mairie.test", port));
    assert!(out.status.success(), "{}", text(&out));
    let first = heads.recv().unwrap();
    assert!(negotiate(&first).is_none(), "{first}");
    let second = heads.recv().unwrap();
    assert!(negotiate(&second).is_some(), "{second}");

    // The ticket curl asked for is the proxy's.
    let out = run(Command::new("klist").envs(kdc.env(&ccache)));
    assert!(
        text(&out).contains("HTTP/proxy.mairie.test@MAIRIE.TEST"),
        "{}",
        text(&out)
    );

    // Named by its address, the proxy has no principal: curl sends no token.
    let (port, heads) = fake_negotiate_proxy();
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "/dev/null"])
        .args(["--proxy-negotiate", "-U", ":", "-x"])
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("http://site.example/")
        .envs(kdc.env(&ccache)));
    let first = heads.recv().unwrap();
    assert!(negotiate(&first).is_none(), "{first}\n{}", text(&out));
}

#[test]
fn slapd_answers_over_starttls_and_ldaps_with_our_ca() {
    let ldap = Slapd::start();
    let alice = ldap.user_dn("alice");
    for url in [&ldap.url, &ldap.ldaps_url] {
        let mut search = ldap.ldapsearch();
        search.args(["-H", url.as_str()]);
        if url == &ldap.url {
            search.arg("-ZZ");
        }
        let out = run(search
            .args(["-x", "-D", &ldap.service_dn, "-w", &ldap.service_password])
            .args(["-b", &ldap.base_dn, "(uid=alice)", "cn"]));
        assert!(out.status.success(), "{url}: {}", text(&out));
        let found = text(&out);
        assert!(
            found.contains(&format!("dn: {alice}")) && found.contains("cn: alice"),
            "{url}: {found}"
        );
    }

    // The certificate really is checked: without our CA, StartTLS and LDAPS fail.
    for url in [&ldap.url, &ldap.ldaps_url] {
        let mut search = ldap.ldapsearch();
        search.env("LDAPTLS_CACERT", "/etc/ssl/certs/ca-certificates.crt");
        search.args(["-H", url.as_str()]);
        if url == &ldap.url {
            search.arg("-ZZ");
        }
        let out = run(search
            .args(["-x", "-D", &ldap.service_dn, "-w", &ldap.service_password])
            .args(["-b", &ldap.base_dn, "(uid=alice)", "dn"]));
        assert!(
            !out.status.success(),
            "{url} without our CA: {}",
            text(&out)
        );
    }
}

#[test]
fn slapd_holds_the_groups_and_checks_passwords() {
    let ldap = Slapd::start();
    let groups_of = |dn: &str| {
        let out = run(ldap
            .ldapsearch()
            .args(["-H", &ldap.url, "-ZZ", "-x", "-D", &ldap.service_dn, "-w"])
            .arg(&ldap.service_password)
            .args(["-b", &format!("ou=Groupes,{}", ldap.base_dn)])
            .arg(format!("(&(objectClass=groupOfNames)(member={dn}))"))
            .arg("cn"));
        assert!(out.status.success(), "{}", text(&out));
        let mut cns: Vec<String> = text(&out)
            .lines()
            .filter_map(|l| l.strip_prefix("cn: ").map(str::to_string))
            .collect();
        cns.sort();
        cns
    };
    assert_eq!(groups_of(&ldap.user_dn("bob")), ["GG-Com-Nested"]);
    assert_eq!(
        groups_of(&ldap.user_dn("alice")),
        ["GG-Internet-Communication"]
    );
    assert_eq!(
        groups_of(&ldap.group_dn("GG-Com-Nested")),
        ["GG-Internet-Communication"]
    );
    assert!(groups_of(&ldap.user_dn("carol")).is_empty());

    let whoami = |dn: &str, password: &str| {
        run(Command::new("ldapwhoami")
            .envs(ldap.client_env())
            .args(["-H", &ldap.url, "-ZZ", "-x", "-D", dn, "-w", password]))
    };
    for (user, password) in USERS {
        let out = whoami(&ldap.user_dn(user), password);
        assert!(out.status.success(), "{user}: {}", text(&out));
        assert!(text(&out).contains(&ldap.user_dn(user)), "{}", text(&out));
    }
    let out = whoami(&ldap.user_dn("alice"), "bob-pw");
    assert_eq!(out.status.code(), Some(49), "{}", text(&out)); // invalidCredentials
    assert!(text(&out).contains("Invalid credentials"), "{}", text(&out));

    let anonymous = run(ldap.ldapsearch().args([
        "-H",
        &ldap.url,
        "-ZZ",
        "-x",
        "-b",
        &ldap.base_dn,
        "(uid=alice)",
    ]));
    assert!(!anonymous.status.success(), "{}", text(&anonymous));
}

#[test]
fn slapd_goes_down_and_comes_back_on_the_same_ports() {
    let mut ldap = Slapd::start();
    let search = |ldap: &Slapd| {
        run(ldap
            .ldapsearch()
            .args(["-H", &ldap.url, "-ZZ", "-x", "-D", &ldap.service_dn, "-w"])
            .arg(&ldap.service_password)
            .args(["-b", &ldap.base_dn, "(uid=bob)", "dn"]))
    };
    let (port, ldaps_port) = (ldap.port, ldap.ldaps_port);
    assert!(search(&ldap).status.success());

    ldap.stop();
    let out = search(&ldap);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Can't contact LDAP server"),
        "{}",
        text(&out)
    );

    ldap.restart();
    assert_eq!((ldap.port, ldap.ldaps_port), (port, ldaps_port));
    let out = search(&ldap);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&ldap.user_dn("bob")), "{}", text(&out));
}
