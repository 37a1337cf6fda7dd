//! The shape of the code, checked: every `use crate::…` in `src/` goes from a higher layer
//! to a lower one (so there is no import circle), and only the cold path reads `config`.
//! The layers, from the top (see `../shared/STYLE.md`, "The shell around the stages"):
//!
//! ```text
//! main → cli → update → server → pipeline · portal · admin → pages → action · unblock · audit
//!      → snapshot · explain → config → metrics → policy → classify · identity → helpers
//! ```
//!
//! An import that goes up is refused unless it is one of [`EXCEPTIONS`], each named with
//! its reason in `DESIGN.md` ("Layers"). Run with `--nocapture` to print the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module of `src/` and its layer: a module may import only modules of a
/// lower layer (modules of one layer do not import each other either).
const LAYERS: &[(&str, u8)] = &[
    ("main", 100),
    ("cli", 90),
    ("update", 85),
    ("server", 80),
    ("pipeline", 70),
    ("portal", 70),
    ("admin", 70),
    ("pages", 60),
    ("report", 55),
    ("action", 50),
    ("unblock", 50),
    ("audit", 50),
    ("snapshot", 44),
    ("explain", 45),
    ("config", 40),
    ("metrics", 35),
    ("policy", 30),
    ("classify", 20),
    ("content", 20),
    ("identity", 20),
    ("atomic_file", 10),
    ("clock", 10),
    ("head", 10),
    ("settings", 10),
    ("per_worker", 10),
    ("tracker", 10),
];

/// Upward imports allowed where a callback would be worse; each is explained in
/// `DESIGN.md` under "Layers". (from, to)
const EXCEPTIONS: &[(&str, &str)] = &[];

/// The only modules that may read `config` (the cold path: start, reload, commands).
const CONFIG_READERS: &[&str] = &[
    "main", "cli", "update", "server", "snapshot", "explain", "config",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`lib.rs` is the crate root, left out).
fn top_module(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(m) => Some(m.to_string()),
        None => Some(first),
    }
}

/// The code of a file without its unit tests (`#[cfg(test)]` items reach across layers
/// freely, as tests do) and without comments.
fn code_of(path: &Path) -> Option<String> {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return None;
    }
    let text = fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    Some(
        text.lines()
            .map(|l| match l.find("//") {
                Some(i) => &l[..i],
                None => l,
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Every module named after `crate::` in `code`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `charte_proxy::crate::…` cannot happen; `$crate::` in macros is not ours.
        let before = rest[..i].chars().last();
        if !name.is_empty() && before != Some('$') && before != Some('_') {
            out.insert(name);
        }
        rest = after;
    }
    out
}

/// module → (imported module → files that import it).
fn graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut g: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in all {
        let (Some(from), Some(code)) = (top_module(&f), code_of(&f)) else {
            continue;
        };
        let rel = f.strip_prefix(src()).unwrap().display().to_string();
        let entry = g.entry(from.clone()).or_default();
        for to in imports(&code) {
            if to != from {
                entry.entry(to).or_default().insert(rel.clone());
            }
        }
    }
    g
}

fn layer(m: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(n, _)| *n == m)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| panic!("module `{m}` has no layer in tests/layering.rs: give it one"))
}

#[test]
fn imports_only_go_down_and_only_the_cold_path_reads_config() {
    let g = graph();
    let mut wrong = Vec::new();
    for (from, tos) in &g {
        for (to, files) in tos {
            let ok = layer(from) > layer(to) || EXCEPTIONS.contains(&(from.as_str(), to.as_str()));
            if !ok {
                wrong.push(format!(
                    "{from} (layer {}) imports {to} (layer {}) in {}",
                    layer(from),
                    layer(to),
                    files.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            if to == "config" && !CONFIG_READERS.contains(&from.as_str()) {
                wrong.push(format!(
                    "{from} reads config (cold path only) in {}",
                    files.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    // The graph, for whoever asks (`cargo test --test layering -- --nocapture`).
    for (from, tos) in &g {
        let list: Vec<String> = tos.keys().cloned().collect();
        println!("{from:>12} → {}", list.join(" "));
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n  {}",
        wrong.join("\n  ")
    );
}

/// Every exception is still needed, and named in DESIGN.md.
#[test]
fn every_exception_is_used_and_explained() {
    let g = graph();
    let design = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("DESIGN.md"))
        .unwrap_or_default();
    for (from, to) in EXCEPTIONS {
        assert!(
            g.get(*from).is_some_and(|t| t.contains_key(*to)),
            "exception {from} → {to} is not used any more: remove it"
        );
        assert!(
            design.contains(&format!("`{from}` → `{to}`")),
            "exception {from} → {to} is not explained in DESIGN.md (write `{from}` → `{to}`)"
        );
    }
}

/// The checker reads what it should: a known import is found, test code is not read.
#[test]
fn the_checker_sees_imports_and_skips_tests() {
    let code = "use crate::classify::Host;\nfn f() { crate::policy::x(); $crate::y(); }\n";
    let found = imports(code);
    assert_eq!(
        found,
        ["classify", "policy"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    let g = graph();
    assert!(
        g.get("pipeline")
            .is_some_and(|t| t.contains_key("classify")),
        "the pipeline imports classify"
    );
}
