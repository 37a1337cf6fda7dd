//! The YAML policy loader and compiler, `config::compile_str`, on arbitrary text.
//!
//! The policy is compiled as if read from `<root>/policies/policy.yaml` (the file itself
//! does not exist), where `<root>` is a small fixture tree this target writes once under
//! the temporary directory: category folders (`../categories`, `../categories/charte`,
//! `../categories/ut1`, `categories`) and list files (`lists/*.txt`, `../lists/*.txt`),
//! so that the paths of the repository's policies and test fixtures resolve and the
//! folder and list loading code is reached too.
//!
//! Inputs naming a path that could leave `<root>` (absolute, or `..` past it) are
//! skipped: a fuzzer must not read `/dev/zero` or walk `/`. For that the YAML is parsed
//! once here with `serde_yaml` (as the compiler does) and every string is checked.
//!
//! Checked besides "never panics": `Err` holds at least one error, `Ok` none; every
//! diagnostic can be displayed; a compiled policy classifies and decides a few requests.
#![no_main]

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use charte_proxy::classify::{Classification, Host};
use charte_proxy::config::{Compiled, Diags, compile_str};
use charte_proxy::policy::RequestFacts;
use libfuzzer_sys::fuzz_target;
use serde_yaml::Value;

/// Files of the fixture tree, relative to its root.
const FIXTURE: &[(&str, &str)] = &[
    (
        "categories/agressif/domains",
        "hate.example\nnot a domain\n",
    ),
    ("categories/ai/domains", "chat.example\n"),
    ("categories/bank/domains", "mabanque.example\n"),
    (
        "categories/gambling/domains",
        "# test category\ncasino-royal.example\npoker.example\n",
    ),
    (
        "categories/charte/ai/domains",
        "chat.example\nxn--bcher-kva.de\n",
    ),
    (
        "categories/charte/bank/domains",
        "mabanque.example\n10.1.2.3\n",
    ),
    ("categories/charte/health/domains", "sante.example\n"),
    (
        "categories/ut1/adult/domains",
        "adult.example\n=exact.example\n.dot.example\n",
    ),
    (
        "categories/ut1/adult/urls",
        "example.com/adult\nbad url here\n",
    ),
    (
        "categories/ut1/gambling/domains",
        "poker.example\n*.wild.example\n",
    ),
    (
        "categories/ut1/global_usage",
        "NAME: adult\nNAME FR: Adulte\nNAME EN: Adult\nNAME: gambling\nNAME FR: Jeux\n",
    ),
    ("lists/blanche.txt", "good.example\nok.example\n"),
    ("lists/broken.txt", "bad entry here\n*.wild.example\n"),
    (
        "policies/lists/liste-blanche.txt",
        "# blanche\nservice-public.fr\n=www.example.org\n",
    ),
    (
        "policies/lists/liste-noire.txt",
        "bad.example\nexample.net/path\n",
    ),
    ("policies/categories/bank/domains", "mabanque.example\n"),
    ("policies/categories/ai/domains", "chat.example\n"),
];

/// The fixture root, written once per process (atomically per file, so that parallel
/// fuzzing jobs sharing it never see a half-written file).
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join("charte-proxy-fuzz-policy-v1");
        for (rel, text) in FIXTURE {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).expect("fixture folder");
            if fs::read(&p).is_ok_and(|b| b == text.as_bytes()) {
                continue;
            }
            let tmp = p.with_extension(format!("tmp{}", std::process::id()));
            fs::write(&tmp, text).expect("fixture file");
            fs::rename(&tmp, &p).expect("fixture file");
        }
        root
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return; // the loader reads the file with read_to_string
    };
    if let Ok(v) = serde_yaml::from_str::<Value>(src)
        && !stays_inside(&v)
    {
        return;
    }
    let path = root().join("policies/policy.yaml");
    match compile_str(src, &path, Diags::default()) {
        Ok(c) => {
            assert!(!c.diags.has_errors(), "Ok with errors: {:?}", c.diags.items);
            for d in &c.diags.items {
                let _ = d.to_string();
            }
            exercise(&c);
        }
        Err(d) => {
            assert!(d.has_errors(), "Err without an error: {:?}", d.items);
            for d in d.sorted() {
                let _ = d.to_string();
            }
        }
    }
});

/// Whether no string of the document (key or value) is a path leaving the fixture root
/// when resolved from `<root>/policies`.
fn stays_inside(v: &Value) -> bool {
    match v {
        Value::String(s) => path_stays_inside(s),
        Value::Sequence(items) => items.iter().all(stays_inside),
        Value::Mapping(m) => m.iter().all(|(k, v)| stays_inside(k) && stays_inside(v)),
        Value::Tagged(t) => stays_inside(&t.value),
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

fn path_stays_inside(s: &str) -> bool {
    let mut depth: i32 = 1; // `policies` under the root
    for c in Path::new(s).components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// A compiled policy classifies and decides.
fn exercise(c: &Compiled) {
    let mut class = Classification::default();
    let mut scratch = String::new();
    for (host, path) in [
        ("chat.example", Some("/upload")),
        ("www.bad.example", None),
        ("example.com", Some("/adult/x")),
        ("10.1.2.3", Some("/")),
    ] {
        let host = Host::parse(host).expect("fixed host");
        c.classifier.classify(&host, path, &mut scratch, &mut class);
        for ip in [
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 168, 100, 7)),
        ] {
            for user in [None, Some("c.martin")] {
                let who = c.policy.groups.resolve(ip, user);
                for method in ["GET", "POST"] {
                    let facts = RequestFacts {
                        body: method == "POST",
                        ..RequestFacts::for_method(method, path.is_some())
                    };
                    let _ = c.policy.decide(&who, &class, &facts);
                }
            }
        }
        for t in class.tags() {
            let _ = c.classifier.tag(t);
        }
    }
}
