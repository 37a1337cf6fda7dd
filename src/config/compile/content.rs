//! The `content` section: keyword dictionaries and validated identifiers, compiled into
//! the snapshot's one [`Scanner`] (a single automaton for every word), and the names
//! the rules' `content` conditions use.

use std::collections::HashMap;
use std::sync::Arc;

use serde_yaml::Value;

use super::Cx;
use crate::config::diag::{some_names, suggest};
use crate::config::raw::{RawContent, RawDictionary, RawIdentifier};
use crate::content::{DictionarySpec, IdentifierKind, IdentifierSpec, Limits, Scanner};
use crate::policy::ContentHits;

/// The detectors' names, to their index in the scanner.
pub(super) type ContentNames = HashMap<String, u16>;

/// Identifier types a policy can name.
const TYPES: [(&str, IdentifierKind); 3] = [
    ("nir", IdentifierKind::Nir),
    ("iban", IdentifierKind::Iban),
    ("card", IdentifierKind::Card),
];

/// Default `distance` of `near`, in characters.
const NEAR_DISTANCE: u32 = 200;

impl Cx<'_> {
    /// Compiles `content`; what cannot be read is reported and left out.
    pub(super) fn content(&mut self, raw: &RawContent) -> (Arc<Scanner>, ContentNames) {
        let dicts_v = Value::Mapping(raw.dictionaries.clone());
        let ids_v = Value::Mapping(raw.identifiers.clone());
        let dicts: Vec<(String, RawDictionary)> = self.map_entries(
            Some(&dicts_v),
            "content.dictionaries",
            &["description", "words", "min"],
        );
        let ids: Vec<(String, RawIdentifier)> = self.map_entries(
            Some(&ids_v),
            "content.identifiers",
            &["description", "type", "min", "near", "distance"],
        );
        let mut dict_specs = Vec::new();
        for (name, d) in dicts {
            let key = format!("content.dictionaries.{name}");
            if d.words.is_empty() {
                let pos = self.pos.key(&key);
                self.err(
                    "empty-condition",
                    &key,
                    pos,
                    format!("dictionary `{name}` has no words"),
                    Some("list words or phrases under `words:`".into()),
                );
                continue;
            }
            self.words(&format!("{key}.words"), &d.words);
            let min = self.minimum(&key, d.min);
            // An empty word is reported above; the rest is still built and checked.
            let words = d.words.into_iter().filter(|w| !w.trim().is_empty());
            dict_specs.push(DictionarySpec {
                name,
                words: words.collect(),
                min,
            });
        }
        let mut id_specs = Vec::new();
        for (name, i) in ids {
            let key = format!("content.identifiers.{name}");
            let Some(kind) = TYPES.iter().find(|(t, _)| *t == i.kind).map(|(_, k)| *k) else {
                let tkey = format!("{key}.type");
                let pos = self.pos.value(&tkey);
                let help = suggest(&i.kind, TYPES.iter().map(|(t, _)| *t))
                    .unwrap_or_else(|| "the types are nir, iban and card".into());
                self.err(
                    "bad-identifier-type",
                    &tkey,
                    pos,
                    format!("unknown identifier type `{}`", i.kind),
                    Some(help),
                );
                continue;
            };
            self.words(&format!("{key}.near"), &i.near);
            let min = self.minimum(&key, i.min);
            id_specs.push(IdentifierSpec {
                name,
                kind,
                min,
                near: i
                    .near
                    .into_iter()
                    .filter(|w| !w.trim().is_empty())
                    .collect(),
                distance: i.distance.unwrap_or(NEAR_DISTANCE),
            });
        }
        let mut names = ContentNames::new();
        for name in dict_specs
            .iter()
            .map(|d| &d.name)
            .chain(id_specs.iter().map(|i| &i.name))
        {
            if names.contains_key(name) {
                let key = format!("content.identifiers.{name}");
                let pos = self.pos.key(&key);
                self.err(
                    "duplicate-name",
                    &key,
                    pos,
                    format!("`{name}` names both a dictionary and an identifier"),
                    Some("give each detector its own name".into()),
                );
            }
            let next = names.len() as u16;
            names.entry(name.clone()).or_insert(next);
        }
        if names.len() > ContentHits::MAX {
            let pos = self.pos.key("content");
            self.err(
                "too-many-detectors",
                "content",
                pos,
                format!(
                    "{} dictionaries and identifiers: a policy may have at most {}",
                    names.len(),
                    ContentHits::MAX
                ),
                Some("merge dictionaries: one dictionary holds any number of words".into()),
            );
        }
        let limits = Limits {
            max_decoded_bytes: raw
                .max_decoded_bytes
                .unwrap_or(Limits::default().max_decoded_bytes),
            ..Limits::default()
        };
        let scanner = match Scanner::build(&dict_specs, &id_specs, limits) {
            Ok(s) => s,
            Err(e) => {
                let pos = self.pos.key("content");
                self.err(
                    "bad-content",
                    "content",
                    pos,
                    format!("the content detectors cannot be built: {e}"),
                    None,
                );
                Scanner::build(&[], &[], limits).unwrap_or_default()
            }
        };
        (Arc::new(scanner), names)
    }

    /// Words: none empty (it would match everywhere).
    fn words(&mut self, key: &str, words: &[String]) {
        for (j, w) in words.iter().enumerate() {
            if w.trim().is_empty() {
                let key = format!("{key}[{j}]");
                let pos = self.pos.value(&key);
                self.err(
                    "empty-word",
                    &key,
                    pos,
                    "an empty word would be found in every body".into(),
                    Some("remove it".into()),
                );
            }
        }
    }

    /// `min`: at least 1 (default 1).
    fn minimum(&mut self, key: &str, min: Option<u32>) -> u32 {
        match min {
            Some(0) => {
                let key = format!("{key}.min");
                let pos = self.pos.value(&key);
                self.err(
                    "bad-min",
                    &key,
                    pos,
                    "`min: 0` would be a hit in every body".into(),
                    Some("write 1 or more (how many occurrences make a hit)".into()),
                );
                1
            }
            m => m.unwrap_or(1),
        }
    }

    /// A rule's `content`: the detectors it names.
    pub(super) fn content_condition(
        &mut self,
        base: &str,
        names: &[String],
        known: &ContentNames,
    ) -> ContentHits {
        let key = format!("{base}.content");
        let mut hits = ContentHits::NONE;
        for (j, n) in names.iter().enumerate() {
            match known.get(n) {
                Some(&d) => hits = hits.with(d),
                None => {
                    let key = format!("{key}[{j}]");
                    let pos = self.pos.value(&key);
                    let help = suggest(n, known.keys().map(String::as_str)).or_else(|| {
                        Some(if known.is_empty() {
                            "define dictionaries or identifiers in the `content` section".into()
                        } else {
                            format!(
                                "known: {}",
                                some_names(known.keys().map(String::as_str), 20)
                            )
                        })
                    });
                    self.err(
                        "unknown-detector",
                        &key,
                        pos,
                        format!("unknown content detector `{n}`"),
                        help,
                    );
                }
            }
        }
        hits
    }
}
