//! Minting a leaf for a bumped tunnel (`CertAuthority::mint`): the work a tunnel to a
//! host not yet in the leaf cache does before its handshake can finish.
//!
//! ```sh
//! cargo bench --bench mint
//! ```

use std::hint::black_box;

use charte_proxy::action::ca::{CaFiles, CertAuthority, init};
use charte_proxy::classify::Host;
use criterion::{Criterion, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = CaFiles::in_dir(&dir.path().join("ca"));
    init(&files, "Bench CA", Some("Mairie"), false).expect("CA created");
    let ca = CertAuthority::load(&files).expect("CA loads");
    let hosts: Vec<Host> = (0..1000)
        .map(|i| Host::parse(&format!("h{i}.bench.test")).expect("host"))
        .collect();
    let mut i = 0;
    c.bench_function("mint/leaf", |b| {
        b.iter(|| {
            i = (i + 1) % hosts.len();
            black_box(ca.mint(&hosts[i]).expect("minted"))
        })
    });
}

criterion_group!(mint, benches);
criterion_main!(mint);
