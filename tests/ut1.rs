//! Loads every list of the shared UT1 snapshot (`../shared/datasets/ut1`). It needs that
//! folder beside the repository, so it is `#[ignore]`d with the reason (cargo counts it as
//! ignored and says why); `tests/run.sh` runs it (`--include-ignored`) when the folder is
//! there.

mod common;

use std::fs;

use charte_proxy::classify::{Classification, Host, TagKind};
use charte_proxy::config::{Diags, compile_str};

#[test]
#[ignore = "needs ../shared/datasets/ut1 (tests/run.sh runs it when present)"]
fn loads_all_of_ut1_and_finds_every_sampled_entry() {
    let ut1 =
        common::shared_ut1().expect("../shared/datasets/ut1 is not present beside the repository");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    let src = format!("version: 1\ncategories: [{}]\n", ut1.display());
    let c = match compile_str(&src, &policy, Diags::default()) {
        Ok(c) => c,
        Err(d) => panic!("UT1 does not load: {:#?}", d.errors().collect::<Vec<_>>()),
    };
    let mut checked = 0usize;
    let mut class = Classification::default();
    let mut scratch = String::new();
    for entry in fs::read_dir(&ut1).unwrap() {
        let dir = entry.unwrap().path();
        let domains = dir.join("domains");
        if !domains.is_file() {
            continue;
        }
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let tag = c
            .classifier
            .find_tag(TagKind::Category, &name)
            .unwrap_or_else(|| panic!("category {name} not loaded"));
        let text = fs::read_to_string(&domains).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let info = c.classifier.tag(tag);
        assert!(
            info.domains as usize <= lines.len() && info.domains as usize + 50 >= lines.len(),
            "{name}: {} of {} lines",
            info.domains,
            lines.len()
        );
        // Every 97th entry, as a subdomain, is found in its category.
        for line in lines.iter().step_by(97) {
            let Ok(host) = Host::parse(line.trim_start_matches('.')) else {
                continue;
            };
            let probe = if host.is_domain() {
                Host::parse(&format!("www.{host}")).unwrap()
            } else {
                host
            };
            c.classifier
                .classify(&probe, None, &mut scratch, &mut class);
            assert!(
                class.host_tags().any(|t| t == tag),
                "{probe} not found in {name}"
            );
            checked += 1;
        }
    }
    assert!(checked > 1000, "only {checked} entries sampled");
    eprintln!(
        "UT1: {} distinct names indexed, {checked} sampled entries found",
        c.classifier.domains.len()
    );
}
