//! The admin pages' login limit through the running proxy: ten failed logins from an
//! address within ten minutes suspend logins from it, however the attempts are timed.

mod common;

use std::sync::Barrier;

use common::admin::{AdminClient, add_admin};
use common::proxy::Proxy;

/// Attempts after which an address is suspended (`session::MAX_FAILURES`).
const MAX_FAILURES: usize = 10;
const WRONG: &str = "Identifiant ou mot de passe incorrect";
const TOO_MANY: &str = "Trop d&#39;essais manqués";

/// Posts `n` logins of `user` with `password` at once, each from a client that opened its
/// own login form first (its own CSRF cookie and token), as `n` browser tabs would.
/// Returns each answer's status and page.
fn logins_at_once(p: &Proxy, n: usize, user: &str, password: &str) -> Vec<(u16, String)> {
    let mut tabs: Vec<(AdminClient, String)> = (0..n)
        .map(|_| {
            let mut c = AdminClient::new(p);
            let csrf = c.open_login();
            (c, csrf)
        })
        .collect();
    let go = Barrier::new(n);
    std::thread::scope(|s| {
        let posts: Vec<_> = tabs
            .iter_mut()
            .map(|(c, csrf)| {
                let go = &go;
                s.spawn(move || {
                    go.wait();
                    let r = c.post_login(csrf, user, password);
                    (r.status, r.body)
                })
            })
            .collect();
        posts.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_wrong_logins_are_counted_before_their_password_is_checked() {
    let p = Proxy::start(&[]);
    add_admin(&p, "alice", "correct horse");

    let answers = logins_at_once(&p, 30, "alice", "wrong");
    let checked = answers
        .iter()
        .filter(|(s, page)| *s == 401 && page.contains(WRONG))
        .count();
    let refused = answers
        .iter()
        .filter(|(s, page)| *s == 429 && page.contains(TOO_MANY))
        .count();
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(
        (checked, refused),
        (MAX_FAILURES, 30 - MAX_FAILURES),
        "only {MAX_FAILURES} passwords may be checked; statuses: {statuses:?}"
    );

    // Within the window, even the right password is not checked.
    let mut admin = AdminClient::new(&p);
    let r = admin.login("alice", "correct horse");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains(TOO_MANY), "{}", r.body);
    assert!(!admin.cookie_header().contains("charte_admin="));
}

#[test]
fn logins_that_could_not_be_checked_are_not_counted() {
    let p = Proxy::start(&[]);
    // An admins "file" that cannot be read: no password can be checked.
    std::fs::create_dir_all(p.path("data/admins")).unwrap();
    // One after the other: attempts being checked count against the limit too, so
    // more than ten at once would be refused whatever became of them.
    let mut admin = AdminClient::new(&p);
    for _ in 0..2 * MAX_FAILURES {
        let r = admin.login("alice", "correct horse");
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.body.contains("illisible"), "{}", r.body);
    }
    // Once the file is readable, the same address logs in at once.
    std::fs::remove_dir(p.path("data/admins")).unwrap();
    add_admin(&p, "alice", "correct horse");
    let r = admin.login("alice", "correct horse");
    assert_eq!(
        (r.status, r.location.as_str()),
        (303, "/demandes"),
        "{}",
        r.body
    );
}
