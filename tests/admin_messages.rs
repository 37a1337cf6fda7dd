//! Messages an administrator meets, through the real binary: the start banner and the
//! admin login page name the real administrators' file and, while it has no account,
//! the command that creates one; `classify` answers `?` for what is not a host; `users
//! add --help` says the password is not echoed; `classify --squid-helper` answers Squid
//! line by line.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::admin::add_admin;
use common::proxy::{Proxy, fixture_dir};

/// The administrators' file of a proxy started by the harness, as the proxy names it.
fn admins_file(p: &Proxy) -> String {
    p.path("data/admins").display().to_string()
}

/// The login page in `lang` (`fr` or `en`), as a browser asking for that language.
fn login_page(p: &Proxy, lang: &str) -> String {
    let r = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/connexion", p.admin))
        .header("accept-language", lang)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().unwrap()
}

#[test]
fn banner_and_login_page_name_the_admins_file_and_the_command_while_there_is_no_account() {
    let p = Proxy::start(&[]);
    let file = admins_file(&p);
    assert!(file.starts_with('/'), "{file}");
    let banner = p.stdout.lock().unwrap().clone();
    assert!(!banner.contains("DATA/"), "{banner}");
    assert!(
        banner.contains(&format!("request review for the accounts of {file},")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!(
            "no administrator account yet: create one with `charte-proxy admins add NAME --file {file}`"
        )),
        "{banner}"
    );
    let policy = p.path("policy.yaml").display().to_string();
    assert!(banner.contains(&format!("policy {policy} ")), "{banner}");

    let fr = login_page(&p, "fr");
    assert!(
        fr.contains(&format!(
            "Aucun compte d'administration n'existe encore. Sur le serveur, créez-en un avec <code>charte-proxy admins add NOM --file {file}</code>"
        )),
        "{fr}"
    );
    let default = login_page(&p, "de");
    assert!(
        default.contains("Aucun compte d'administration"),
        "{default}"
    );
    let en = login_page(&p, "en-GB,en;q=0.8");
    assert!(
        en.contains(&format!(
            "No administrator account exists yet. On the server, create one with <code>charte-proxy admins add NAME --file {file}</code>"
        )),
        "{en}"
    );
    for page in [&fr, &en] {
        assert!(
            !page.contains("DATA/") && !page.contains("DONNÉES/"),
            "{page}"
        );
    }

    // Once an account exists, the page (read at each request) says no more.
    add_admin(&p, "a.durand", "correct horse");
    let fr = login_page(&p, "fr");
    assert!(!fr.contains("Aucun compte"), "{fr}");
    assert!(!fr.contains("admins add"), "{fr}");
}

#[test]
fn banner_says_nothing_of_creating_an_account_when_one_exists() {
    let dir = fixture_dir();
    let file = dir.path().join("data/admins");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut child = common::bin()
        .args(["admins", "add", "a.durand", "--password-stdin", "--file"])
        .arg(&file)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "correct horse").unwrap();
    assert!(child.wait().unwrap().success());
    let p = Proxy::start_in(dir, &[]);
    let banner = p.stdout.lock().unwrap().clone();
    assert!(
        banner.contains(&format!("the accounts of {},", file.display())),
        "{banner}"
    );
    assert!(!banner.contains("no administrator account"), "{banner}");
}

/// Runs `charte-proxy` with `input` on standard input; returns (code, stdout, stderr).
fn run_with_stdin(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = common::bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn classify_answers_a_question_mark_for_what_is_not_a_host() {
    let input = "casino-royal.example\n\
                 http://casino-royal.example/jeu\n\
                 allowed.test\n\
                 0 http://casino-royal.example/ 10.0.0.1/- - GET\n\
                 not a host\n\
                 http://\n\
                 ::::\n\
                 exa%mple.com\n\
                 -\n\
                 http://-/\n\
                 -casino-royal.example\n\
                 casino-royal-.example\n";
    let (code, out, err) = run_with_stdin(
        &["classify", "-p", "tests/fixtures/proxy-policy.yaml"],
        input,
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "casino-royal.example\tgambling",
            "casino-royal.example\tgambling",
            "allowed.test\t-",
            "casino-royal.example\tgambling",
            "not\t-",
            "http://\t?",
            "::::\t?",
            "exa%mple.com\t?",
            "-\t?",
            "http://-/\t?",
            "-casino-royal.example\t?",
            "casino-royal-.example\t?",
        ],
        "{out}"
    );
}

#[test]
fn users_add_help_says_the_password_is_not_echoed() {
    for cmd in ["users", "admins"] {
        let r = common::run(&[cmd, "add", "--help"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        // As one text: the help is wrapped to the terminal's width.
        let help = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            help.contains("At a terminal it is asked for twice and not echoed"),
            "{cmd}: {help}"
        );
    }
}

/// The helper as Squid drives it: a line written, its answer read, before the next line
/// is written, stdin left open (an answer held in a buffer would never come).
#[test]
fn squid_helper_answers_each_line_at_once_with_its_channel() {
    let mut child = common::bin()
        .args([
            "classify",
            "--squid-helper",
            "-p",
            "tests/fixtures/proxy-policy.yaml",
            "--ip",
            "127.0.0.9",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let cases = [
        // Blocked for everyone: the reason and the category.
        (
            "0 http://hate.example/page 10.1.2.3/poste-12 - GET",
            r#"0 OK message="Site interdit par la loi (charte §6.3)" tag="agressif""#,
        ),
        // Blocked for the agents' network, without a channel ID.
        (
            "http://casino-royal.example/ 127.0.0.2",
            r#"OK message="Jeux d'argent : usage privé (charte §6.1)" tag="gambling""#,
        ),
        // The same site for the default address (--ip, not an agent): let through.
        (
            "1 http://casino-royal.example/ -",
            r#"1 ERR tag="gambling""#,
        ),
        ("2 http://allowed.test/", "2 ERR"),
        // A CONNECT as Squid gives it: host:port.
        (
            "3 casino-royal.example:443 127.0.0.2 - CONNECT",
            r#"3 OK message="Jeux d'argent : usage privé (charte §6.1)" tag="gambling""#,
        ),
        // Uploads to an AI are blocked, reading is not.
        (
            "4 https://chat.example/api 127.0.0.9 - GET",
            r#"4 ERR tag="ai""#,
        ),
        (
            "5 https://chat.example/api 127.0.0.9 - POST",
            r#"5 OK message="Envoi de données vers une IA interdit (charte §6.5)" tag="ai""#,
        ),
        // Lines that cannot be decided.
        ("6", r#"6 BH message="no URL on the line""#),
        (
            "7 http://casino-royal.example/ not-an-address",
            r#"7 BH message="not a client address: \"not-an-address\"""#,
        ),
        (
            "ftp://files.example/",
            r#"BH message="only http and https URLs can be explained, not ftp""#,
        ),
        ("", r#"BH message="no URL on the line""#),
    ];
    for (line, want) in cases {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let got = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no answer to {line:?}"));
        assert_eq!(got, want, "answer to {line:?}");
    }
    // Garbage bytes, then a good line: one answer each, in order.
    stdin
        .write_all(b"8 \xff\xfe\x00garbage\n9 hate.example\n")
        .unwrap();
    stdin.flush().unwrap();
    let a = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(a.starts_with("8 BH message="), "{a}");
    let b = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(b.starts_with("9 OK message="), "{b}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert!(rx.recv().is_err(), "no answer without a line");
}
