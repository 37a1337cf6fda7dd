//! Raw YAML → compiled [`Policy`] + [`Classifier`]. Every cross-check lives here:
//! unknown categories, groups and lists (with the closest names), duplicate rule ids,
//! block rules without a reason, missing list files, unreachable rules, rules that would
//! cover a whole public suffix. All problems of a run are collected, not only the first.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::classify::psl::{SuffixKind, public_suffix_kind};
use crate::classify::{Classifier, Host, IndexBuilder, TagId, TagInfo, TagKind, UrlBuilder};
use crate::identity::{Group, GroupSet, GroupTable, MAX_GROUPS};
use crate::policy::internal::InternalSites;
use crate::policy::{Action, Conditions, DefaultRule, Mode, Policy, Rule, TagSet, Text};

use super::categories::{self, BadLines, Entry};
use super::compiled;
use super::diag::{Diags, Pos, some_names, suggest};
use super::positions::Positions;
use super::raw::{self, RawAction, RawGroup, RawList, RawMode, RawNoInspect, RawRule, RawText};

/// The only policy language version this build reads.
pub const POLICY_VERSION: u64 = 1;

/// A compiled policy with what it took to build.
pub struct Compiled {
    pub policy: Policy,
    pub classifier: Classifier,
    /// Warnings (a compiled policy has no errors).
    pub diags: Diags,
    pub stats: CompileStats,
}

/// What a build loaded and how long it took.
#[derive(Debug, Clone, Default)]
pub struct CompileStats {
    pub source: PathBuf,
    pub category_folders: Vec<PathBuf>,
    pub domain_entries: u64,
    pub url_entries: u64,
    /// List files the policy reads (watched for changes).
    pub list_files: Vec<PathBuf>,
    /// The compiled categories file used, if any (`categories compile`).
    pub compiled_index: Option<PathBuf>,
    pub build_time: Duration,
}

/// Reads, checks and compiles the policy at `path`. `Err` holds every diagnostic
/// (errors and warnings) when at least one is an error.
pub fn load(path: &Path) -> Result<Compiled, Diags> {
    load_with(path, true)
}

/// [`load`], choosing whether a compiled categories file beside the policy may be used
/// (`false`: always read the text lists, as `categories compile` does).
pub fn load_with(path: &Path, use_compiled: bool) -> Result<Compiled, Diags> {
    let mut diags = Diags::default();
    let src = match fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            diags.error(
                "io",
                path,
                Pos::default(),
                None,
                format!("cannot read the policy: {e}"),
                Some("give the path of a policy file with --policy".into()),
            );
            return Err(diags);
        }
    };
    compile_inner(&src, path, diags, use_compiled)
}

/// Compiles policy text as if read from `path` (relative paths resolve beside it).
pub fn compile_str(src: &str, path: &Path, diags: Diags) -> Result<Compiled, Diags> {
    compile_inner(src, path, diags, true)
}

fn compile_inner(
    src: &str,
    path: &Path,
    mut diags: Diags,
    use_compiled: bool,
) -> Result<Compiled, Diags> {
    let started = Instant::now();
    let mut cx = Cx {
        use_compiled,
        file: path.to_path_buf(),
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        pos: Positions::default(),
        diags: &mut diags,
    };
    let result = cx.compile(src);
    let failed = cx.diags.has_errors();
    match result {
        Some((policy, classifier, mut stats)) if !failed => {
            stats.build_time = started.elapsed();
            Ok(Compiled {
                policy,
                classifier,
                diags,
                stats,
            })
        }
        _ => Err(diags),
    }
}

/// The compile context: the file, its positions, the diagnostics.
struct Cx<'d> {
    /// May a compiled categories file beside the policy be used?
    use_compiled: bool,
    file: PathBuf,
    dir: PathBuf,
    pos: Positions,
    diags: &'d mut Diags,
}

/// Tags assigned so far, with their builders.
struct Tags {
    infos: Vec<TagInfo>,
    /// Domain entries of the category folders (unless a compiled file is used).
    categories: IndexBuilder,
    /// Domain entries of the policy's own lists and rules.
    domains: IndexBuilder,
    urls: UrlBuilder,
}

impl Tags {
    fn add(&mut self, info: TagInfo) -> TagId {
        self.infos.push(info);
        (self.infos.len() - 1) as TagId
    }
}

impl Cx<'_> {
    fn err(&mut self, code: &'static str, key: &str, pos: Pos, msg: String, help: Option<String>) {
        let file = self.file.clone();
        self.diags.error(
            code,
            &file,
            pos,
            Some(key).filter(|k| !k.is_empty()),
            msg,
            help,
        );
    }

    fn warn(&mut self, code: &'static str, key: &str, pos: Pos, msg: String, help: Option<String>) {
        let file = self.file.clone();
        self.diags.warning(
            code,
            &file,
            pos,
            Some(key).filter(|k| !k.is_empty()),
            msg,
            help,
        );
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
                let at = if full.ends_with(field) {
                    full.clone()
                } else {
                    format!("{full}.{field}")
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

    fn compile(&mut self, src: &str) -> Option<(Policy, Classifier, CompileStats)> {
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

        let mut sections: HashMap<&'static str, Value> = HashMap::new();
        for (k, v) in top {
            let name = match &k {
                Value::String(s) => s.clone(),
                other => format!("{other:?}"),
            };
            match raw::TOP_KEYS.iter().find(|t| **t == name) {
                Some(t) => {
                    sections.insert(t, v);
                }
                None => {
                    let pos = self.pos.key(&name);
                    let help = suggest(&name, raw::TOP_KEYS.iter().copied()).or_else(|| {
                        Some(format!(
                            "known keys: {}",
                            some_names(raw::TOP_KEYS.iter().copied(), 20)
                        ))
                    });
                    self.err(
                        "unknown-key",
                        &name,
                        pos,
                        format!("unknown key `{name}`"),
                        help,
                    );
                }
            }
        }

        // version
        match sections.get("version") {
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

        let folders: Vec<String> = sections
            .get("categories")
            .and_then(|v| self.de(v, "categories", &[]))
            .unwrap_or_default();
        let raw_groups = self.section_map::<RawGroup>(
            &sections,
            "groups",
            &["description", "networks", "users", "inspect"],
        );
        let raw_lists = self.section_map::<RawList>(&sections, "lists", &[]);
        let no_inspect: RawNoInspect = sections
            .get("no_inspect")
            .and_then(|v| self.de(v, "no_inspect", &["categories", "lists", "domains"]))
            .unwrap_or_default();
        let raw_internal: Vec<String> = sections
            .get("internal_sites")
            .and_then(|v| self.de(v, "internal_sites", &[]))
            .unwrap_or_default();
        let raw_rules = self.section_rules(&sections);
        let default_reason: Option<RawText> = sections
            .get("default_reason")
            .and_then(|v| self.de(v, "default_reason", &["fr", "en"]));
        let default_action = match sections.get("default") {
            None => Action::Allow,
            Some(v) => match v.as_str() {
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
            },
        };

        // Categories: discover folders, assign tags.
        let mut folder_paths = Vec::new();
        for (i, f) in folders.iter().enumerate() {
            let p = clean_path(&self.dir.join(f));
            if !p.is_dir() {
                let key = format!("categories[{i}]");
                let pos = self.pos.value(&key);
                self.err(
                    "missing-folder",
                    &key,
                    pos,
                    format!("category folder not found: {}", p.display()),
                    Some("paths are relative to the policy file; a folder holds one sub-folder per category".into()),
                );
            } else {
                folder_paths.push(p);
            }
        }
        let found = categories::discover(&folder_paths, self.diags);
        let titles = categories::read_titles(&folder_paths);
        let mut tags = Tags {
            infos: Vec::new(),
            categories: IndexBuilder::new(),
            domains: IndexBuilder::new(),
            urls: UrlBuilder::new(),
        };
        let compiled_path = compiled::path_for(&self.file);
        let mut compiled_index = None;
        if self.use_compiled {
            match compiled::open(&compiled_path, &folder_paths, &found) {
                compiled::Found::Absent => {}
                compiled::Found::Fresh(ix, meta) => compiled_index = Some((ix, meta)),
                compiled::Found::Stale(why) => self.diags.warning(
                    "stale-index",
                    &compiled_path,
                    Pos::default(),
                    None,
                    format!("{why}; reading the text lists instead (slower to load)"),
                    Some(
                        "run `charte-proxy categories compile` after changing the category lists"
                            .into(),
                    ),
                ),
            }
        }
        let mut cat_ids: BTreeMap<String, TagId> = BTreeMap::new();
        for (name, dirs) in &found {
            let mut info = TagInfo::new(name, TagKind::Category);
            if let Some((fr, en)) = titles.get(name) {
                info.title_fr = fr.as_deref().map(Into::into);
                info.title_en = en.as_deref().map(Into::into);
            }
            let id = tags.add(info);
            cat_ids.insert(name.clone(), id);
            if let Some((_, meta)) = &compiled_index {
                // Same names in the same order (checked by `open`): same tags.
                let c = &meta.categories[id as usize];
                tags.infos[id as usize].domains = c.domains;
                tags.infos[id as usize].urls = c.urls;
                continue;
            }
            for d in dirs {
                for file in ["domains", "urls"] {
                    let p = d.join(file);
                    if !p.is_file() {
                        continue;
                    }
                    match categories::load_file(
                        &p,
                        id,
                        &mut tags.categories,
                        &mut tags.urls,
                        BadLines::Warn,
                        self.diags,
                    ) {
                        Ok(c) => {
                            let info = &mut tags.infos[id as usize];
                            info.domains += c.domains;
                            info.urls += c.urls;
                        }
                        Err(e) => self.diags.warning(
                            "category-file",
                            &p,
                            Pos::default(),
                            None,
                            format!("cannot read: {e}; category `{name}` is incomplete"),
                            None,
                        ),
                    }
                }
            }
        }
        let category_index = match compiled_index {
            Some((ix, meta)) => {
                for (host, path, tag) in &meta.urls {
                    if let Ok(h) = Host::parse(host) {
                        tags.urls.add(&h, path, *tag);
                    }
                }
                Some(ix)
            }
            None => None,
        };

        // Groups.
        if raw_groups.len() > MAX_GROUPS {
            self.err(
                "too-many-groups",
                "groups",
                self.pos.key("groups"),
                format!(
                    "{} groups; at most {MAX_GROUPS} are supported",
                    raw_groups.len()
                ),
                None,
            );
        }
        let mut groups = GroupTable::default();
        for (name, g) in &raw_groups {
            let mut networks = Vec::new();
            for (i, n) in g.networks.iter().enumerate() {
                let key = format!("groups.{name}.networks[{i}]");
                match parse_net(n) {
                    Some(net) => networks.push(net),
                    None => {
                        let pos = self.pos.value(&key);
                        self.err(
                            "bad-network",
                            &key,
                            pos,
                            format!("not a network: {n:?}"),
                            Some("write an address or a CIDR block, like 10.0.0.0/8 or 2001:db8::/32".into()),
                        );
                    }
                }
            }
            if g.networks.is_empty() && g.users.is_empty() {
                let key = format!("groups.{name}");
                let pos = self.pos.key(&key);
                self.warn(
                    "empty-group",
                    &key,
                    pos,
                    format!("group `{name}` has neither `networks` nor `users`: nobody is in it"),
                    None,
                );
            }
            groups.groups.push(Group {
                name: name.as_str().into(),
                description: g.description.as_deref().map(Into::into),
                networks,
                users: g.users.iter().map(|u| u.as_str().into()).collect(),
                inspect: g.inspect,
            });
        }

        // Lists.
        let mut list_ids: BTreeMap<String, TagId> = BTreeMap::new();
        let mut list_files: Vec<PathBuf> = Vec::new();
        for (name, l) in &raw_lists {
            let id = tags.add(TagInfo::new(name, TagKind::List));
            list_ids.insert(name.clone(), id);
            let key = format!("lists.{name}");
            match l {
                RawList::Inline(entries) => {
                    self.add_entries(&mut tags, id, entries, &key, true);
                }
                RawList::File(f) => {
                    let p = clean_path(&self.dir.join(f));
                    list_files.push(p.clone());
                    match categories::load_file(
                        &p,
                        id,
                        &mut tags.domains,
                        &mut tags.urls,
                        BadLines::Error,
                        self.diags,
                    ) {
                        Ok(c) => {
                            tags.infos[id as usize].domains += c.domains;
                            tags.infos[id as usize].urls += c.urls;
                        }
                        Err(e) => {
                            let pos = self.pos.value(&key);
                            self.err(
                                "missing-list-file",
                                &key,
                                pos,
                                format!("cannot read list file {}: {e}", p.display()),
                                Some("create the file (one site a line), fix the path (relative to the policy), or write the sites inline as a YAML list".into()),
                            );
                        }
                    }
                }
            }
        }

        // no_inspect.
        let mut no_inspect_tags: Vec<TagId> = Vec::new();
        for (i, c) in no_inspect.categories.iter().enumerate() {
            if let Some(t) = self.resolve_name(
                c,
                &cat_ids,
                &format!("no_inspect.categories[{i}]"),
                "category",
            ) {
                no_inspect_tags.push(t);
            }
        }
        for (i, l) in no_inspect.lists.iter().enumerate() {
            if let Some(t) =
                self.resolve_name(l, &list_ids, &format!("no_inspect.lists[{i}]"), "list")
            {
                no_inspect_tags.push(t);
            }
        }
        if !no_inspect.domains.is_empty() {
            let id = tags.add(TagInfo::new("no_inspect", TagKind::NoInspectSites));
            self.add_entries(
                &mut tags,
                id,
                &no_inspect.domains,
                "no_inspect.domains",
                false,
            );
            no_inspect_tags.push(id);
        }

        // Rules: first pass resolves names; tag sets are sized once every tag exists.
        struct Pending {
            rule: Rule,
            categories: Option<Vec<TagId>>,
            lists: Option<Vec<TagId>>,
            domains: Option<TagId>,
            urls: Option<TagId>,
        }
        let mut pending: Vec<Pending> = Vec::new();
        let mut seen_ids: HashMap<String, usize> = HashMap::new();
        for (i, r) in raw_rules.iter().enumerate() {
            let Some(r) = r else { continue };
            let base = format!("rules[{i}]");
            if r.id.trim().is_empty() {
                let pos = self.pos.value(&format!("{base}.id"));
                self.err(
                    "empty-id",
                    &format!("{base}.id"),
                    pos,
                    "a rule needs a non-empty `id`".into(),
                    None,
                );
            }
            if let Some(first) = seen_ids.get(&r.id) {
                let key = format!("{base}.id");
                let pos = self.pos.value(&key);
                let first_line = self.pos.value(&format!("rules[{first}].id")).line;
                self.err(
                    "duplicate-rule-id",
                    &key,
                    pos,
                    format!("duplicate rule id `{}`", r.id),
                    Some(format!("rule ids must be unique (the first `{}` is on line {first_line}); rename one", r.id)),
                );
            } else {
                seen_ids.insert(r.id.clone(), i);
            }
            let action = match r.action {
                RawAction::Allow => Action::Allow,
                RawAction::Block => Action::Block,
                RawAction::BlockUpload => Action::BlockUpload,
            };
            let mode = match r.mode {
                Some(RawMode::Report) => Mode::Report,
                _ => Mode::Enforce,
            };
            if action != Action::Allow && r.reason.is_none() {
                let pos = self.pos.key(&base);
                self.err(
                    "missing-reason",
                    &base,
                    pos,
                    format!("rule `{}` has action `{}` but no `reason`", r.id, action.as_str()),
                    Some("add `reason: \"…\"` saying why, with the charter clause: it is shown on the block page and recorded in the trace (§4.8)".into()),
                );
            }
            if mode == Mode::Report && action == Action::Allow {
                let pos = self.pos.key(&format!("{base}.mode"));
                self.warn(
                    "report-allow",
                    &format!("{base}.mode"),
                    pos,
                    format!(
                        "rule `{}` is in report mode but only allows: it can never report a block",
                        r.id
                    ),
                    Some(
                        "report mode is meant for `block` and `block-upload` rules being tried out"
                            .into(),
                    ),
                );
            }
            let mut conds = Conditions::default();
            for (cond, list) in [
                ("groups", &r.groups),
                ("users", &r.users),
                ("categories", &r.categories),
                ("lists", &r.lists),
                ("domains", &r.domains),
                ("urls", &r.urls),
                ("methods", &r.methods),
            ] {
                if list.as_ref().is_some_and(Vec::is_empty) {
                    let key = format!("{base}.{cond}");
                    let pos = self.pos.key(&key);
                    self.err(
                        "empty-condition",
                        &key,
                        pos,
                        format!("`{cond}` is empty, so rule `{}` can never match", r.id),
                        Some(format!("list at least one entry, or remove `{cond}`")),
                    );
                }
            }
            if let Some(gs) = &r.groups {
                let mut set = GroupSet::EMPTY;
                for (j, g) in gs.iter().enumerate() {
                    let key = format!("{base}.groups[{j}]");
                    match groups.id(g) {
                        Some(id) => set.insert(id),
                        None => {
                            let pos = self.pos.value(&key);
                            let help = suggest(g, groups.groups.iter().map(|g| &*g.name))
                                .unwrap_or_else(|| {
                                    format!(
                                        "groups of this policy: {}",
                                        some_names(groups.groups.iter().map(|g| &*g.name), 20)
                                    )
                                });
                            self.err(
                                "unknown-group",
                                &key,
                                pos,
                                format!("unknown group `{g}`"),
                                Some(help),
                            );
                        }
                    }
                }
                conds.groups = Some(set);
            }
            conds.users = r
                .users
                .as_ref()
                .map(|u| u.iter().map(|s| s.as_str().into()).collect());
            if let Some(ms) = &r.methods {
                let mut out = Vec::new();
                for (j, m) in ms.iter().enumerate() {
                    let up = m.to_ascii_uppercase();
                    if up.is_empty()
                        || !up
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
                    {
                        let key = format!("{base}.methods[{j}]");
                        let pos = self.pos.value(&key);
                        self.err(
                            "bad-method",
                            &key,
                            pos,
                            format!("not an HTTP method: {m:?}"),
                            Some("write methods like GET, POST, PUT, CONNECT".into()),
                        );
                    }
                    out.push(up.into_boxed_str());
                }
                conds.methods = Some(out.into());
            }
            conds.approved_requests = r.approved_requests;
            let categories = r.categories.as_ref().map(|cs| {
                cs.iter()
                    .enumerate()
                    .filter_map(|(j, c)| {
                        self.resolve_name(
                            c,
                            &cat_ids,
                            &format!("{base}.categories[{j}]"),
                            "category",
                        )
                    })
                    .collect()
            });
            let lists = r.lists.as_ref().map(|ls| {
                ls.iter()
                    .enumerate()
                    .filter_map(|(j, l)| {
                        self.resolve_name(l, &list_ids, &format!("{base}.lists[{j}]"), "list")
                    })
                    .collect()
            });
            let domains = r.domains.as_ref().map(|ds| {
                let id = tags.add(TagInfo::new(
                    &format!("{}.domains", r.id),
                    TagKind::RuleSites,
                ));
                self.add_entries(&mut tags, id, ds, &format!("{base}.domains"), false);
                id
            });
            let urls = r.urls.as_ref().map(|us| {
                let id = tags.add(TagInfo::new(&format!("{}.urls", r.id), TagKind::RuleSites));
                self.add_urls(&mut tags, id, us, &format!("{base}.urls"));
                id
            });
            pending.push(Pending {
                rule: Rule {
                    id: r.id.as_str().into(),
                    conds,
                    action,
                    mode,
                    overridable: r.overridable.unwrap_or(true),
                    reason: r.reason.as_ref().map(text),
                },
                categories,
                lists,
                domains,
                urls,
            });
        }

        if tags.infos.len() > TagId::MAX as usize {
            self.err(
                "too-many-tags",
                "",
                Pos { line: 1, col: 1 },
                format!(
                    "{} categories, lists and rule site sets; at most {} are supported",
                    tags.infos.len(),
                    TagId::MAX
                ),
                None,
            );
            return None;
        }
        let n = tags.infos.len();
        let set_of = |ids: &[TagId]| {
            let mut s = TagSet::new(n);
            for t in ids {
                s.insert(*t);
            }
            s
        };
        let rules: Vec<Rule> = pending
            .into_iter()
            .map(|p| {
                let mut rule = p.rule;
                rule.conds.categories = p.categories.as_deref().map(set_of);
                rule.conds.lists = p.lists.as_deref().map(set_of);
                rule.conds.domains = p.domains.map(|t| set_of(&[t]));
                rule.conds.urls = p.urls.map(|t| set_of(&[t]));
                rule
            })
            .collect();
        self.check_shadowed(&rules);

        let stats = CompileStats {
            source: self.file.clone(),
            category_folders: folder_paths,
            domain_entries: (tags.domains.len()
                + category_index
                    .as_ref()
                    .map_or(tags.categories.len(), |ix| ix.len()))
                as u64,
            url_entries: tags.urls.len() as u64,
            list_files,
            compiled_index: category_index.as_ref().map(|_| compiled_path.clone()),
            build_time: Duration::ZERO,
        };
        let classifier = Classifier {
            categories: match category_index {
                Some(ix) => *ix,
                None => tags.categories.build(),
            },
            domains: tags.domains.build(),
            urls: tags.urls.build(),
            tags: tags.infos,
        };
        let internal = self.internal_sites(&raw_internal);
        let policy = Policy {
            internal: std::sync::Arc::new(internal),
            groups,
            rules,
            default: DefaultRule {
                action: default_action,
                reason: default_reason.as_ref().map(text),
            },
            no_inspect: set_of(&no_inspect_tags),
        };
        Some((policy, classifier, stats))
    }

    /// `internal_sites`: networks (CIDR or address) and names, each checked.
    fn internal_sites(&mut self, raw: &[String]) -> InternalSites {
        let mut sites = InternalSites::default();
        for (i, entry) in raw.iter().enumerate() {
            let key = format!("internal_sites[{i}]");
            if let Some(net) = parse_net(entry) {
                sites.networks.push(net.trunc());
                continue;
            }
            let name = entry.strip_prefix("*.").unwrap_or(entry);
            match Host::parse(name) {
                Ok(h) if h.is_domain() => sites.names.push(h.as_str().into()),
                _ => {
                    let pos = self.pos.value(&key);
                    self.err(
                        "bad-internal-site",
                        &key,
                        pos,
                        format!("not a network or a site name: {entry:?}"),
                        Some(
                            "write a network (10.12.0.0/16, 192.168.1.20) or a name (intranet.mairie.example, which covers its subdomains)"
                                .into(),
                        ),
                    );
                }
            }
        }
        sites
    }

    /// A `name: value` section, each entry deserialized on its own so that one bad
    /// entry does not hide the others.
    fn section_map<T: DeserializeOwned>(
        &mut self,
        sections: &HashMap<&'static str, Value>,
        section: &str,
        keys: &[&str],
    ) -> Vec<(String, T)> {
        let mut out = Vec::new();
        let Some(v) = sections.get(section) else {
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
    fn section_rules(&mut self, sections: &HashMap<&'static str, Value>) -> Vec<Option<RawRule>> {
        match sections.get("rules") {
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

    fn resolve_name(
        &mut self,
        name: &str,
        known: &BTreeMap<String, TagId>,
        key: &str,
        what: &str,
    ) -> Option<TagId> {
        if let Some(id) = known.get(name) {
            return Some(*id);
        }
        let pos = self.pos.value(key);
        let help = suggest(name, known.keys().map(String::as_str)).unwrap_or_else(|| {
            let origin = if what == "category" {
                "categories are the sub-folders of the `categories` folders"
            } else {
                "lists are declared under `lists`"
            };
            format!(
                "{origin}; known: {}",
                some_names(known.keys().map(String::as_str), 12)
            )
        });
        self.err(
            if what == "category" {
                "unknown-category"
            } else {
                "unknown-list"
            },
            key,
            pos,
            format!("unknown {what} `{name}`"),
            Some(help),
        );
        None
    }

    /// Inline site entries (`domains`, inline lists) into the builders under `tag`.
    fn add_entries(
        &mut self,
        tags: &mut Tags,
        tag: TagId,
        entries: &[String],
        key: &str,
        urls_ok: bool,
    ) {
        for (j, e) in entries.iter().enumerate() {
            let k = format!("{key}[{j}]");
            match categories::parse_entry(e) {
                Ok(Entry::Domain { host, exact }) => {
                    self.warn_public_suffix(&host, exact, &k);
                    tags.domains.add(&host, tag, exact);
                    tags.infos[tag as usize].domains += 1;
                }
                Ok(Entry::Url { host, path }) if urls_ok => {
                    tags.urls.add(&host, &path, tag);
                    tags.infos[tag as usize].urls += 1;
                }
                Ok(Entry::Url { .. }) => {
                    let pos = self.pos.value(&k);
                    self.err(
                        "url-in-domains",
                        &k,
                        pos,
                        format!("{e:?} has a path, which `domains` cannot match"),
                        Some("put host/path entries under `urls`, or remove the path".into()),
                    );
                }
                Err(why) => {
                    let pos = self.pos.value(&k);
                    self.err("bad-entry", &k, pos, format!("bad site {e:?}: {why}"), None);
                }
            }
        }
    }

    fn add_urls(&mut self, tags: &mut Tags, tag: TagId, entries: &[String], key: &str) {
        for (j, e) in entries.iter().enumerate() {
            let k = format!("{key}[{j}]");
            match categories::parse_entry(e) {
                Ok(Entry::Url { host, path }) => {
                    tags.urls.add(&host, &path, tag);
                    tags.infos[tag as usize].urls += 1;
                }
                Ok(Entry::Domain { .. }) => {
                    let pos = self.pos.value(&k);
                    self.err(
                        "domain-in-urls",
                        &k,
                        pos,
                        format!("{e:?} has no path"),
                        Some("a `urls` entry is host/path (matched where the path is visible); put whole sites under `domains`".into()),
                    );
                }
                Err(why) => {
                    let pos = self.pos.value(&k);
                    self.err("bad-entry", &k, pos, format!("bad URL {e:?}: {why}"), None);
                }
            }
        }
    }

    fn warn_public_suffix(&mut self, host: &Host, exact: bool, key: &str) {
        if exact {
            return;
        }
        if let Some(kind) = public_suffix_kind(host) {
            let pos = self.pos.value(key);
            let what = match kind {
                SuffixKind::Icann => "a public suffix",
                SuffixKind::Private => "a shared hosting suffix",
            };
            self.warn(
                "public-suffix",
                key,
                pos,
                format!("`{host}` is {what}: this entry covers every site registered under it"),
                Some(format!("name the sites themselves (like `example.{host}`), or write `={host}` for that host only")),
            );
        }
    }

    /// Warns about rules that can never decide because an earlier enforcing rule
    /// matches whenever they would.
    fn check_shadowed(&mut self, rules: &[Rule]) {
        for (j, later) in rules.iter().enumerate() {
            for (i, earlier) in rules[..j].iter().enumerate() {
                if earlier.mode == Mode::Enforce && covers(&earlier.conds, &later.conds) {
                    let key = format!("rules[{j}]");
                    let pos = self.pos.key(&key);
                    let line = self.pos.key(&format!("rules[{i}]")).line;
                    self.warn(
                        "unreachable-rule",
                        &key,
                        pos,
                        format!("rule `{}` can never match: rule `{}` (line {line}) always matches first", later.id, earlier.id),
                        Some(format!("move `{}` above `{}`, or narrow `{}`", later.id, earlier.id, earlier.id)),
                    );
                    break;
                }
            }
        }
    }
}

/// Whether `a` matches every request that `b` matches: each condition of `a` is also a
/// condition of `b` with no more alternatives.
fn covers(a: &Conditions, b: &Conditions) -> bool {
    fn sub<T>(a: &Option<T>, b: &Option<T>, f: impl Fn(&T, &T) -> bool) -> bool {
        match (a, b) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(x), Some(y)) => f(y, x),
        }
    }
    sub(&a.groups, &b.groups, |x, y| x.is_subset(y))
        && sub(&a.users, &b.users, |x, y| all_in(x, y))
        && sub(&a.methods, &b.methods, |x, y| all_in(x, y))
        && sub(&a.categories, &b.categories, |x, y| x.is_subset(y))
        && sub(&a.lists, &b.lists, |x, y| x.is_subset(y))
        // a rule's own inline sites are never a subset of another rule's
        && a.domains.is_none()
        && a.urls.is_none()
        && sub(&a.approved_requests, &b.approved_requests, |x, y| x == y)
}

/// `a/b/../c` → `a/c`, without touching the file system (for readable messages).
fn clean_path(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether every name of `x` is in `y`.
fn all_in(x: &[Box<str>], y: &[Box<str>]) -> bool {
    x.iter().all(|n| y.contains(n))
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn text(t: &RawText) -> Text {
    match t {
        RawText::Plain(s) => Text {
            fr: s.as_str().into(),
            en: None,
        },
        RawText::Localized(l) => Text {
            fr: l.fr.as_str().into(),
            en: l.en.as_deref().map(Into::into),
        },
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
