//! The upload content scanner (DLP, `content::Scanner`): build time, and scan throughput
//! on a 10 MiB multipart body of ordinary French text with a few keywords and
//! identifiers, fed whole and in 16 KiB chunks. The body is generated with a fixed seed,
//! and its expected counts are checked before anything is timed.
//!
//! The same body is also scanned with the shipped policy's detectors
//! (`multipart_10MiB_shipped_policy`).
//!
//! ```sh
//! cargo bench --bench dlp
//! cargo bench --bench dlp -- --test     # each benchmark once
//! ```

use std::hint::black_box;

use charte_proxy::content::{
    BodyFormat, ContentEncoding, DictionarySpec, Findings, IdentifierKind, IdentifierSpec, Limits,
    Scanner,
};
use charte_proxy::snapshot::Snapshot;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// splitmix64: small, fixed-seed, no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| w.to_string()).collect()
}

/// A realistic policy: 4 dictionaries (31 words) and the three identifiers with `near`.
fn specs() -> (Vec<DictionarySpec>, Vec<IdentifierSpec>) {
    let dicts = vec![
        DictionarySpec {
            name: "classification".into(),
            words: words(&[
                "Diffusion Restreinte",
                "Confidentiel",
                "Confidentiel Défense",
                "Secret Défense",
                "Ne pas diffuser",
                "Usage interne",
                "Usage restreint",
                "Document interne",
                "Strictement confidentiel",
                "Non communicable",
            ]),
            min: 1,
        },
        DictionarySpec {
            name: "sante".into(),
            words: words(&[
                "Données de santé",
                "Secret médical",
                "Dossier médical",
                "Certificat médical",
                "Arrêt de travail",
                "Affection longue durée",
                "Compte rendu opératoire",
                "Ordonnance médicale",
            ]),
            min: 2,
        },
        DictionarySpec {
            name: "personnel".into(),
            words: words(&[
                "Données personnelles",
                "Données à caractère personnel",
                "Bulletin de paie",
                "Fiche de paie",
                "Avis d'imposition",
                "Casier judiciaire",
                "Pièce d'identité",
            ]),
            min: 3,
        },
        DictionarySpec {
            name: "rh".into(),
            words: words(&[
                "Entretien annuel",
                "Procédure disciplinaire",
                "Rupture conventionnelle",
                "Mutuelle",
                "Licenciement",
                "Sanction",
            ]),
            min: 2,
        },
    ];
    let ids = vec![
        IdentifierSpec {
            name: "nir".into(),
            kind: IdentifierKind::Nir,
            min: 1,
            near: words(&["sécurité sociale", "NIR", "numéro de sécu", "INSEE"]),
            distance: 60,
        },
        IdentifierSpec {
            name: "iban".into(),
            kind: IdentifierKind::Iban,
            min: 1,
            near: words(&["IBAN", "RIB", "coordonnées bancaires"]),
            distance: 60,
        },
        IdentifierSpec {
            name: "card".into(),
            kind: IdentifierKind::Card,
            min: 1,
            near: words(&[
                "carte bancaire",
                "CB",
                "carte de crédit",
                "Visa",
                "Mastercard",
            ]),
            distance: 60,
        },
    ];
    (dicts, ids)
}

const FILLER: &[&str] = &[
    "le",
    "la",
    "les",
    "de",
    "des",
    "du",
    "et",
    "à",
    "un",
    "une",
    "pour",
    "dans",
    "sur",
    "avec",
    "par",
    "conseil",
    "municipal",
    "délibération",
    "séance",
    "commune",
    "budget",
    "école",
    "travaux",
    "réunion",
    "été",
    "année",
    "élèves",
    "mairie",
    "voirie",
    "associations",
    "subvention",
    "projet",
    "présenté",
    "adopté",
    "unanimité",
    "maire",
    "adjoint",
    "rapport",
    "rue",
    "place",
    "marché",
    "chantier",
    "quartier",
    "bibliothèque",
    "piscine",
    "crèche",
    "éclairage",
    "public",
    "cantine",
    "périscolaire",
    "électricité",
    "dépenses",
    "recettes",
    "investissement",
    "fonctionnement",
    "Mme",
    "M.",
    "Dupont",
    "Lefèvre",
    "Garçon",
    "Œuvre",
    "Noël",
    "2024",
    "2025",
    "15",
    "3 500 €",
    "06 12 34 56 78",
    "n° 42",
    "12/03/2025",
    "14h30",
    "salle",
    "des",
    "fêtes",
];

/// What the generated body must give, by detector.
struct Expected {
    counts: [u32; 7],
}

/// A 10 MiB multipart/form-data body: text parts of French prose, one JSON part; a
/// keyword or identifier (with its `near` word) every 32 KiB or so.
fn body(size: usize) -> (Vec<u8>, Expected) {
    let mut rng = Rng(0x5eed_c0de);
    let mut out = Vec::with_capacity(size + 4096);
    let mut counts = [0u32; 7];
    let mut part = 0;
    while out.len() < size {
        part += 1;
        out.extend_from_slice(b"--bench-boundary-7f3a\r\n");
        out.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name=\"f{part}\"; filename=\"cr-{part}.txt\"\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n\r\n");
        let end = (out.len() + 1024 * 1024).min(size);
        let mut next_item = out.len() + 32 * 1024;
        let mut line = 0;
        while out.len() < end {
            for _ in 0..12 {
                out.extend_from_slice(rng.pick(FILLER).as_bytes());
                out.push(b' ');
            }
            line += 1;
            out.extend_from_slice(if line % 7 == 0 { b".\r\n\r\n" } else { b", " });
            if out.len() >= next_item {
                next_item += 32 * 1024;
                let (text, det) = match rng.next() % 5 {
                    0 => (" DIFFUSION  RESTREINTE ", 0),
                    1 => (" Données de santé ; ", 1),
                    2 => (" numéro de sécurité sociale : 1 85 05 78 006 084 91 ; ", 4),
                    3 => (" RIB : FR76 3000 6000 0112 3456 7890 189 ; ", 5),
                    _ => (" carte bancaire 4111 1111 1111 1111 ; ", 6),
                };
                out.extend_from_slice(text.as_bytes());
                counts[det] += 1;
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        b"--bench-boundary-7f3a\r\nContent-Disposition: form-data; name=\"meta\"\r\n",
    );
    out.extend_from_slice(b"Content-Type: application/json\r\n\r\n");
    out.extend_from_slice(
        br#"{"objet":"Compte rendu","note":"Ne pas diffuser","ref":"n\u00b0 12"}"#,
    );
    counts[0] += 1;
    out.extend_from_slice(b"\r\n--bench-boundary-7f3a--\r\n");
    (out, Expected { counts })
}

fn scan(s: &Scanner, body: &[u8], chunk: usize) -> Findings {
    let mut st = s.start(BodyFormat::Multipart, ContentEncoding::Identity);
    for c in body.chunks(chunk) {
        st.feed(s, c).expect("identity body");
    }
    st.finish(s).expect("identity body");
    st.findings().clone()
}

fn benches(c: &mut Criterion) {
    let (dicts, ids) = specs();
    let mut g = c.benchmark_group("dlp");
    g.bench_function("build", |b| {
        b.iter(|| Scanner::build(black_box(&dicts), black_box(&ids), Limits::default()).unwrap())
    });
    let scanner = Scanner::build(&dicts, &ids, Limits::default()).unwrap();
    let size = 10 << 20;
    let (body, want) = body(size);
    // The benchmark checks its answer before it times anything.
    for chunk in [body.len(), 16 * 1024, 1000] {
        let f = scan(&scanner, &body, chunk);
        let got: Vec<u32> = (0..7).map(|d| f.count(d)).collect();
        assert_eq!(got, want.counts, "findings with {chunk}-byte chunks");
    }
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.sample_size(20);
    for (name, chunk) in [("whole", body.len()), ("16KiB", 16 * 1024)] {
        g.bench_with_input(
            BenchmarkId::new("multipart_10MiB", name),
            &chunk,
            |b, &chunk| b.iter(|| scan(&scanner, black_box(&body), chunk)),
        );
    }
    // The shipped policy's own detectors (policies/charte.yaml, `content`): its two
    // dictionaries hit as the bench's first two; its identifiers (nir without `near`
    // words) find at least what was inserted.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/charte.yaml");
    let snap = Snapshot::load(&path, 1)
        .unwrap_or_else(|d| panic!("the shipped policy does not compile: {d:?}"));
    let shipped = snap.policy.content.clone();
    let f = scan(&shipped, &body, 16 * 1024);
    assert_eq!(f.count(0), want.counts[0], "shipped diffusion-restreinte");
    assert_eq!(f.count(1), want.counts[1], "shipped donnees-de-sante");
    for (d, inserted) in [
        (2, want.counts[4]),
        (3, want.counts[5]),
        (4, want.counts[6]),
    ] {
        assert!(f.count(d) >= inserted, "shipped detector {d}");
    }
    g.bench_function("multipart_10MiB_shipped_policy", |b| {
        b.iter(|| scan(&shipped, black_box(&body), body.len()))
    });
    let text: Vec<u8> = body.iter().copied().filter(|&b| b != b'\r').collect();
    g.bench_function("raw_10MiB_16KiB", |b| {
        b.iter(|| {
            let mut st = scanner.start(BodyFormat::Raw, ContentEncoding::Identity);
            for c in text.chunks(16 * 1024) {
                st.feed(&scanner, c).unwrap();
            }
            st.finish(&scanner).unwrap();
            st.findings().count(0)
        })
    });
    g.finish();
}

criterion_group!(dlp, benches);
criterion_main!(dlp);
