//! Raw YAML → compiled [`Policy`] + [`Classifier`]. Every cross-check lives here:
//! unknown categories, groups and lists (with the closest names), duplicate rule ids,
//! block rules without a reason, missing list files, unreachable rules, rules that would
//! cover a whole public suffix. All problems of a run are collected, not only the first.
//!
//! [`Cx::compile`] reads the document, then compiles it section by section, one method
//! each, in a fixed order (the diagnostics come out in that order):
//!
//! - `document`: the YAML, its top-level keys, `version`, and every section
//!   deserialized on its own (`default` and `default_reason` among them);
//! - `sites`: `categories` (the folders, the compiled index file), `lists`,
//!   `no_inspect`, `internal_sites`, and the site entries they hold;
//! - `groups`: `groups`;
//! - `rules`: `rules` (each one's head, conditions and inline sites), then the rules
//!   that can never match;
//! - `tenant`: `tenant_restrictions`, then the restrictions that can never apply.

mod content;
mod document;
mod groups;
mod rules;
mod sites;
mod tenant;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::classify::{Classifier, DomainIndex, IndexBuilder, TagId, TagInfo, UrlBuilder};
use crate::policy::{DefaultRule, Policy, TagSet, Text};

use super::diag::{Diags, Pos};
use super::index_file;
use super::positions::Positions;
use super::raw::RawText;

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
    compile_inner(&src, path, diags, use_compiled, None)
}

/// [`load_with`] without the compiled file, reading the category folder `from` (as the
/// policy names it) at `to` instead: `categories update` checks and compiles a new set
/// of lists aside this way, with the very compile the proxy runs, before swapping it in.
pub fn load_redirected(path: &Path, from: &Path, to: &Path) -> Result<Compiled, Diags> {
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
                None,
            );
            return Err(diags);
        }
    };
    let redirect = Some((from.to_path_buf(), to.to_path_buf()));
    compile_inner(&src, path, diags, false, redirect)
}

/// The category folders the policy at `path` names, resolved as the compile resolves
/// them (beside the policy, `..` removed), whether they exist or not.
pub fn category_folders(path: &Path) -> Result<Vec<PathBuf>, String> {
    let src = fs::read_to_string(path).map_err(|e| format!("cannot read the policy: {e}"))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&src).map_err(|e| format!("the policy is not YAML: {e}"))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(doc
        .get("categories")
        .and_then(serde_yaml::Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(serde_yaml::Value::as_str)
        .map(|f| sites::clean_path(&dir.join(f)))
        .collect())
}

/// Whether `a` and `b` name the same place, written differently (relative to the
/// current folder or not, with `.` or `..`); symbolic links are not followed.
pub fn same_place(a: &Path, b: &Path) -> bool {
    let abs = |p: &Path| std::path::absolute(p).map(|p| sites::clean_path(&p));
    match (abs(a), abs(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Compiles policy text as if read from `path` (relative paths resolve beside it).
pub fn compile_str(src: &str, path: &Path, diags: Diags) -> Result<Compiled, Diags> {
    compile_inner(src, path, diags, true, None)
}

fn compile_inner(
    src: &str,
    path: &Path,
    mut diags: Diags,
    use_compiled: bool,
    redirect: Option<(PathBuf, PathBuf)>,
) -> Result<Compiled, Diags> {
    let started = Instant::now();
    let mut cx = Cx {
        use_compiled,
        redirect,
        file: path.to_path_buf(),
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        pos: Positions::default(),
        categories_missing: false,
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
    /// A category folder read from another place (see [`load_redirected`]).
    redirect: Option<(PathBuf, PathBuf)>,
    file: PathBuf,
    dir: PathBuf,
    pos: Positions,
    /// A category folder named by the policy does not exist: the categories named
    /// elsewhere cannot be checked, nor the rules naming them compared.
    categories_missing: bool,
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
    fn new() -> Tags {
        Tags {
            infos: Vec::new(),
            categories: IndexBuilder::new(),
            domains: IndexBuilder::new(),
            urls: UrlBuilder::new(),
        }
    }

    fn add(&mut self, info: TagInfo) -> TagId {
        self.infos.push(info);
        (self.infos.len() - 1) as TagId
    }

    /// The classifier over these tags; `index`: the compiled categories used instead of
    /// the category entries read from the text lists.
    fn build(self, index: Option<Box<DomainIndex>>) -> Classifier {
        Classifier {
            categories: match index {
                Some(ix) => *ix,
                None => self.categories.build(),
            },
            domains: self.domains.build(),
            urls: self.urls.build(),
            tags: self.infos,
        }
    }
}

impl Cx<'_> {
    fn err(&mut self, code: &'static str, key: &str, pos: Pos, msg: String, help: Option<String>) {
        let key = Some(key).filter(|k| !k.is_empty());
        self.diags.error(code, &self.file, pos, key, msg, help);
    }

    fn warn(&mut self, code: &'static str, key: &str, pos: Pos, msg: String, help: Option<String>) {
        let key = Some(key).filter(|k| !k.is_empty());
        self.diags.warning(code, &self.file, pos, key, msg, help);
    }

    /// The whole compile: the document, then each section, then the rules' tag sets
    /// (sized once every tag exists) and the classifier.
    fn compile(&mut self, src: &str) -> Option<(Policy, Classifier, CompileStats)> {
        let doc = self.document(src)?;
        self.version(&doc);
        let raw = self.sections(&doc);
        let mut tags = Tags::new();
        let categories = self.categories(&raw.categories, &mut tags);
        let groups = self.groups(&raw.groups);
        let (tenant, reach) = self.tenant_restrictions(raw.tenant_restrictions.as_ref(), &groups);
        let lists = self.lists(&raw.lists, &mut tags);
        let no_inspect = self.no_inspect(&raw.no_inspect, &categories.ids, &lists.ids, &mut tags);
        let (scanner, content_names) = self.content(&raw.content);
        let known = rules::Known {
            groups: &groups,
            categories: &categories.ids,
            lists: &lists.ids,
            content: &content_names,
        };
        let pending = self.rules(&raw.rules, &known, &mut tags);
        self.check_tag_count(&tags)?;
        let n = tags.infos.len();
        let rules: Vec<_> = pending.into_iter().map(|p| p.finish(n)).collect();
        if !self.categories_missing {
            self.check_shadowed(&rules);
        }
        let stats = self.stats(
            categories.folders,
            categories.index.as_deref(),
            &tags,
            lists.files,
        );
        let classifier = tags.build(categories.index);
        let internal = self.internal_sites(&raw.internal_sites);
        let policy = Policy {
            internal: Arc::new(internal),
            scheduled: rules.iter().any(|r| r.conds.schedule.is_some()),
            groups,
            rules,
            default: DefaultRule {
                action: raw.default,
                reason: raw.default_reason.as_ref().map(text),
            },
            no_inspect: tag_set(n, &no_inspect),
            content: scanner,
            upload_query_max: raw
                .upload_query_max
                .unwrap_or(crate::policy::UPLOAD_QUERY_MAX),
            tenant,
        };
        if !self.categories_missing {
            self.check_tenant_reach(&reach, &policy, &classifier);
        }
        Some((policy, classifier, stats))
    }

    /// Refuses more tags than a [`TagId`] can number.
    fn check_tag_count(&mut self, tags: &Tags) -> Option<()> {
        if tags.infos.len() <= TagId::MAX as usize {
            return Some(());
        }
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
        None
    }

    /// What this build loaded (its time is set by the caller);
    /// `index`: the compiled categories used, if any.
    fn stats(
        &self,
        category_folders: Vec<PathBuf>,
        index: Option<&DomainIndex>,
        tags: &Tags,
        list_files: Vec<PathBuf>,
    ) -> CompileStats {
        let category_entries = index.map_or(tags.categories.len(), DomainIndex::len);
        CompileStats {
            source: self.file.clone(),
            category_folders,
            domain_entries: (tags.domains.len() + category_entries) as u64,
            url_entries: tags.urls.len() as u64,
            list_files,
            compiled_index: index.map(|_| index_file::path_for(&self.file)),
            build_time: Duration::ZERO,
        }
    }
}

/// The set of `ids` among `n` tags.
fn tag_set(n: usize, ids: &[TagId]) -> TagSet {
    let mut s = TagSet::new(n);
    for t in ids {
        s.insert(*t);
    }
    s
}

/// A network (`10.0.0.0/8`) or a single address.
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
