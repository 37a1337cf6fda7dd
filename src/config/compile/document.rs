//! The policy document: YAML syntax, the top-level keys, `version`, and each section
//! deserialized into its serde mirror on its own, so that one broken section (or entry,
//! or field) does not hide the problems of the others.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::policy::Action;

use super::{Cx, POLICY_VERSION};
use crate::config::diag::{Pos, some_names, suggest};
use crate::config::positions::Positions;
use crate::config::raw::{
    self, RawContent, RawGroup, RawList, RawNoInspect, RawRule, RawTenantRestrictions, RawText,
};

/// The top-level sections of the document, by key, not yet deserialized.
pub(super) type Document = HashMap<&'static str, Value>;

/// Every section, deserialized; a section (or an entry of it) that failed is reported
/// and left out, so that the rest still compiles and is checked.
pub(super) struct Sections {
    pub(super) categories: Vec<String>,
    pub(super) groups: Vec<(String, RawGroup)>,
    pub(super) lists: Vec<(String, RawList)>,
    pub(super) no_inspect: RawNoInspect,
    pub(super) internal_sites: Vec<String>,
    pub(super) content: RawContent,
    pub(super) upload_query_max: Option<u32>,
    /// A broken rule is `None` (and reported), so rule numbers stay those of the file.
    pub(super) rules: Vec<Option<RawRule>>,
    pub(super) default_reason: Option<RawText>,
    /// `default`, already checked (`allow` when absent or wrong).
    pub(super) default: Action,
    pub(super) tenant_restrictions: Option<RawTenantRestrictions>,
}

impl Cx<'_> {
    /// Parses the YAML (recording where each key stands) and sorts its top-level keys
    /// into sections; unknown keys are reported. `None` when it is no YAML mapping.
    pub(super) fn document(&mut self, src: &str) -> Option<Document> {
        match Positions::parse(src) {
            Ok(p) => self.pos = p,
            Err(e) => {
                self.err(
                    "yaml-syntax",
                    "",
                    e.pos,
                    format!("YAML syntax error: {}", e.message),
                    Some("check indentation, colons and brackets around this place".into()),
                );
                return None;
            }
        }
        let doc: Value = match serde_yaml::from_str(src) {
            Ok(v) => v,
            Err(e) => {
                let pos = e.location().map_or(Pos { line: 1, col: 1 }, |l| Pos {
                    line: l.line(),
                    col: l.column(),
                });
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                self.err("yaml-syntax", "", pos, format!("YAML error: {msg}"), None);
                return None;
            }
        };
        let Value::Mapping(top) = doc else {
            self.err(
                "not-a-policy",
                "",
                Pos { line: 1, col: 1 },
                "a policy is a YAML mapping (`version: 1`, `rules: …`)".into(),
                None,
            );
            return None;
        };
        let mut sections = Document::new();
        for (k, v) in top {
            let name = match &k {
                Value::String(s) => s.clone(),
                other => format!("{other:?}"),
            };
            match raw::TOP_KEYS.iter().find(|t| **t == name) {
                Some(t) => {
                    sections.insert(t, v);
                }
                None => self.unknown_top_key(&name),
            }
        }
        Some(sections)
    }

    fn unknown_top_key(&mut self, name: &str) {
        let pos = self.pos.key(name);
        let help = suggest(name, raw::TOP_KEYS.iter().copied()).or_else(|| {
            Some(format!(
                "known keys: {}",
                some_names(raw::TOP_KEYS.iter().copied(), 20)
            ))
        });
        self.err(
            "unknown-key",
            name,
            pos,
            format!("unknown key `{name}`"),
            help,
        );
    }

    /// `version`: present, and the one this build reads.
    pub(super) fn version(&mut self, doc: &Document) {
        match doc.get("version") {
            None => self.err(
                "missing-version",
                "",
                Pos { line: 1, col: 1 },
                "the policy has no `version`".into(),
                Some(format!("add `version: {POLICY_VERSION}` as the first line")),
            ),
            Some(Value::Number(n)) if n.as_u64() == Some(POLICY_VERSION) => {}
            Some(v) => {
                let pos = self.pos.value("version");
                self.err(
                    "bad-version",
                    "version",
                    pos,
                    format!("unsupported policy version {}", yaml_text(v)),
                    Some(format!("this proxy reads `version: {POLICY_VERSION}`")),
                );
            }
        }
    }

    /// Deserializes every section, in the order of [`Sections`].
    pub(super) fn sections(&mut self, doc: &Document) -> Sections {
        let categories = doc
            .get("categories")
            .and_then(|v| self.de(v, "categories", &[]))
            .unwrap_or_default();
        let groups = self.section_map::<RawGroup>(
            doc,
            "groups",
            &["description", "networks", "users", "inspect"],
        );
        let lists = self.section_map::<RawList>(doc, "lists", &[]);
        let no_inspect = doc
            .get("no_inspect")
            .and_then(|v| self.de(v, "no_inspect", &["categories", "lists", "domains"]))
            .unwrap_or_default();
        let internal_sites = doc
            .get("internal_sites")
            .and_then(|v| self.de(v, "internal_sites", &[]))
            .unwrap_or_default();
        let content = doc
            .get("content")
            .and_then(|v| self.de(v, "content", raw::CONTENT_KEYS))
            .unwrap_or_default();
        let upload_query_max = doc
            .get("upload_query_max")
            .and_then(|v| self.de(v, "upload_query_max", &[]));
        let rules = self.section_rules(doc);
        let default_reason = doc
            .get("default_reason")
            .and_then(|v| self.de(v, "default_reason", &["fr", "en"]));
        let default = self.default_action(doc);
        let tenant_restrictions = doc
            .get("tenant_restrictions")
            .and_then(|v| self.de(v, "tenant_restrictions", raw::TENANT_ALL_KEYS));
        Sections {
            categories,
            groups,
            lists,
            no_inspect,
            internal_sites,
            content,
            upload_query_max,
            rules,
            default_reason,
            default,
            tenant_restrictions,
        }
    }

    /// `default`: `allow` (also when absent) or `block`.
    fn default_action(&mut self, doc: &Document) -> Action {
        let Some(v) = doc.get("default") else {
            return Action::Allow;
        };
        match v.as_str() {
            Some("allow") => Action::Allow,
            Some("block") => Action::Block,
            _ => {
                let pos = self.pos.value("default");
                self.err(
                    "bad-default",
                    "default",
                    pos,
                    format!("`default` must be `allow` or `block`, not {}", yaml_text(v)),
                    None,
                );
                Action::Allow
            }
        }
    }

    /// A `name: value` section, each entry deserialized on its own so that one bad
    /// entry does not hide the others.
    fn section_map<T: DeserializeOwned>(
        &mut self,
        doc: &Document,
        section: &str,
        keys: &[&str],
    ) -> Vec<(String, T)> {
        self.map_entries(doc.get(section), section, keys)
    }

    /// The entries of a mapping of names to entries at `section` (a key path), each
    /// deserialized on its own.
    pub(super) fn map_entries<T: DeserializeOwned>(
        &mut self,
        v: Option<&Value>,
        section: &str,
        keys: &[&str],
    ) -> Vec<(String, T)> {
        let mut out = Vec::new();
        let Some(v) = v else {
            return out;
        };
        let Value::Mapping(m) = v else {
            if !v.is_null() {
                let pos = self.pos.value(section);
                self.err(
                    "invalid-value",
                    section,
                    pos,
                    format!("`{section}` must be a mapping of names to entries"),
                    None,
                );
            }
            return out;
        };
        for (k, v) in m {
            let Some(name) = k.as_str() else {
                let pos = self.pos.key(section);
                self.err(
                    "invalid-value",
                    section,
                    pos,
                    "names must be text".into(),
                    None,
                );
                continue;
            };
            if let Some(t) = self.de::<T>(v, &format!("{section}.{name}"), keys) {
                out.push((name.to_string(), t));
            }
        }
        out
    }

    /// Rules, each deserialized on its own; a broken rule is `None` (and reported).
    fn section_rules(&mut self, doc: &Document) -> Vec<Option<RawRule>> {
        match doc.get("rules") {
            None => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| self.de::<RawRule>(v, &format!("rules[{i}]"), raw::RULE_KEYS))
                .collect(),
            Some(_) => {
                let pos = self.pos.value("rules");
                self.err(
                    "invalid-value",
                    "rules",
                    pos,
                    "`rules` must be a list (`- id: …`)".into(),
                    None,
                );
                Vec::new()
            }
        }
    }

    /// Deserializes one section, reporting every failure at the right place: a field
    /// that fails is reported, removed, and the rest is tried again, so that one bad
    /// field does not hide the others.
    fn de<T: DeserializeOwned>(&mut self, v: &Value, path: &str, keys: &[&str]) -> Option<T> {
        let mut v = v.clone();
        let mut removed: Vec<String> = Vec::new();
        for _ in 0..32 {
            let e = match serde_path_to_error::deserialize::<_, T>(v.clone()) {
                Ok(t) => return Some(t),
                Err(e) => e,
            };
            let inner = e.path().to_string();
            let full = match (path.is_empty(), inner.as_str()) {
                (_, ".") => path.to_string(),
                (true, i) => i.to_string(),
                (false, i) if i.starts_with('[') => format!("{path}{i}"),
                (false, i) => format!("{path}.{i}"),
            };
            let msg = e.into_inner().to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            // The field of this item that failed, to remove before trying again.
            let mut culprit = inner
                .split(['.', '['])
                .next()
                .filter(|f| !f.is_empty() && *f != ".")
                .map(str::to_string);
            if let Some(field) = between(&msg, "unknown field `", "`") {
                self.unknown_field(&full, field, keys);
                culprit = Some(field.to_string());
            } else if let Some(field) = between(&msg, "missing field `", "`") {
                if !removed.iter().any(|r| r == field) {
                    let pos = self.pos.key(&full);
                    self.err(
                        "missing-key",
                        &full,
                        pos,
                        format!("missing key `{field}`"),
                        Some(format!("add `{field}:` here")),
                    );
                }
                return None;
            } else {
                let pos = self.pos.value(&full);
                self.err("invalid-value", &full, pos, msg, None);
            }
            // Remove the failing field and try the rest.
            match (&mut v, culprit) {
                (Value::Mapping(m), Some(f)) if m.contains_key(f.as_str()) => {
                    m.remove(f.as_str());
                    removed.push(f);
                }
                _ => return None,
            }
        }
        None
    }

    /// An unknown `field` in the item at `full`, with the closest of `keys`.
    fn unknown_field(&mut self, full: &str, field: &str, keys: &[&str]) {
        let at = if full.ends_with(field) {
            full.to_string()
        } else {
            format!("{full}.{field}")
        };
        // A rule's `schedule` is a mapping of its own, with its own keys.
        let in_schedule = at
            .rsplit_once('.')
            .is_some_and(|(parent, _)| parent.ends_with(".schedule"));
        let keys = if in_schedule {
            raw::SCHEDULE_KEYS
        } else {
            keys
        };
        let help = suggest(field, keys.iter().copied()).or_else(|| {
            Some(format!(
                "known keys here: {}",
                some_names(keys.iter().copied(), 20)
            ))
        });
        let pos = self.pos.key(&at);
        self.err(
            "unknown-key",
            &at,
            pos,
            format!("unknown key `{field}`"),
            help,
        );
    }
}

fn yaml_text(v: &Value) -> String {
    serde_yaml::to_string(v)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("{v:?}"))
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}
