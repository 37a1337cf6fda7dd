//! The sections that say which sites are which: `categories` (the category folders, or
//! their compiled index file), `lists`, `no_inspect` and `internal_sites`; and the site
//! entries they hold, each checked (bad entries, paths where none fits, public
//! suffixes).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::classify::psl::{SuffixKind, public_suffix_kind};
use crate::classify::{DomainIndex, Host, TagId, TagInfo, TagKind};
use crate::config::categories::{self, Entry};
use crate::config::diag::{Pos, some_names, suggest};
use crate::config::index_file;
use crate::config::raw::{RawList, RawNoInspect};
use crate::policy::internal::InternalSites;

use super::{Cx, Tags, parse_net};

/// The categories of the policy, compiled.
pub(super) struct Categories {
    /// The category folders that exist, joined to the policy's folder.
    pub(super) folders: Vec<PathBuf>,
    /// Each category's tag, by name.
    pub(super) ids: BTreeMap<String, TagId>,
    /// The compiled categories file used instead of the text lists, if any.
    pub(super) index: Option<Box<DomainIndex>>,
}

/// The lists of the policy, compiled.
pub(super) struct Lists {
    /// Each list's tag, by name.
    pub(super) ids: BTreeMap<String, TagId>,
    /// The list files read (watched for changes).
    pub(super) files: Vec<PathBuf>,
}

/// The category titles of `global_usage` files: French and English, by name.
type Titles = HashMap<String, (Option<String>, Option<String>)>;

impl Cx<'_> {
    /// `categories`: finds the categories of the folders and gives each a tag, with its
    /// entries read from the compiled index file when it is fresh, else from the lists.
    pub(super) fn categories(&mut self, folders: &[String], tags: &mut Tags) -> Categories {
        let folders = self.category_folders(folders);
        let found = categories::discover(&folders, self.diags);
        let titles = categories::read_titles(&folders);
        let compiled = self.compiled_categories(&folders, &found);
        let meta = compiled.as_ref().map(|(_, meta)| meta);
        let ids = self.category_tags(&found, &titles, meta, tags);
        let index = compiled.map(|(ix, meta)| {
            for (host, path, tag) in &meta.urls {
                if let Ok(h) = Host::parse(host) {
                    tags.urls.add(&h, path, *tag);
                }
            }
            ix
        });
        Categories {
            folders,
            ids,
            index,
        }
    }

    /// The category folders that exist, beside the policy; the others are reported.
    fn category_folders(&mut self, folders: &[String]) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for (i, f) in folders.iter().enumerate() {
            let mut p = clean_path(&self.dir.join(f));
            if let Some((from, to)) = &self.redirect
                && super::same_place(&p, from)
            {
                p = to.clone();
            }
            if !p.is_dir() {
                // One error: the categories it would have held are not reported again,
                // one by one, where rules and `no_inspect` name them.
                self.categories_missing = true;
                let key = format!("categories[{i}]");
                let pos = self.pos.value(&key);
                self.err(
                    "missing-folder",
                    &key,
                    pos,
                    format!(
                        "category folder not found: {}; the categories named in the policy are not checked until it exists",
                        p.display()
                    ),
                    Some("paths are relative to the policy file; a folder holds one sub-folder per category (`charte-proxy categories import` copies a UT1 or squidGuard folder)".into()),
                );
            } else {
                paths.push(p);
            }
        }
        paths
    }

    /// The compiled categories file beside the policy, if allowed, present and fresh; a
    /// stale one is a warning.
    fn compiled_categories(
        &mut self,
        folders: &[PathBuf],
        found: &BTreeMap<String, Vec<PathBuf>>,
    ) -> Option<(Box<DomainIndex>, index_file::Meta)> {
        if !self.use_compiled {
            return None;
        }
        let path = index_file::path_for(&self.file);
        match index_file::open(&path, folders, found) {
            index_file::IndexFile::Absent => None,
            index_file::IndexFile::Fresh(ix, meta) => Some((ix, meta)),
            index_file::IndexFile::Stale(why) => {
                self.diags.warning(
                    "stale-index",
                    &path,
                    Pos::default(),
                    None,
                    format!("{why}; reading the text lists instead (slower to load)"),
                    Some(
                        "run `charte-proxy categories compile` after changing the category lists"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    /// One tag per category found, with its titles and counts; its entries are read
    /// from its `domains` and `urls` files unless `meta` (a fresh compiled file) has them.
    fn category_tags(
        &mut self,
        found: &BTreeMap<String, Vec<PathBuf>>,
        titles: &Titles,
        meta: Option<&index_file::Meta>,
        tags: &mut Tags,
    ) -> BTreeMap<String, TagId> {
        let mut ids: BTreeMap<String, TagId> = BTreeMap::new();
        for (name, dirs) in found {
            let mut info = TagInfo::new(name, TagKind::Category);
            if let Some((fr, en)) = titles.get(name) {
                info.title_fr = fr.as_deref().map(Into::into);
                info.title_en = en.as_deref().map(Into::into);
            }
            let id = tags.add(info);
            ids.insert(name.clone(), id);
            if let Some(meta) = meta {
                // Same names in the same order (checked by `open`): same tags.
                let c = &meta.categories[id as usize];
                tags.infos[id as usize].domains = c.domains;
                tags.infos[id as usize].urls = c.urls;
                continue;
            }
            for d in dirs {
                for file in ["domains", "urls"] {
                    let p = d.join(file);
                    if p.is_file() {
                        self.category_file(&p, name, id, tags);
                    }
                }
            }
        }
        ids
    }

    /// One `domains` or `urls` file of category `name`; a file that cannot be read
    /// leaves the category incomplete (a warning).
    fn category_file(&mut self, p: &Path, name: &str, id: TagId, tags: &mut Tags) {
        match categories::load_file(p, id, &mut tags.categories, &mut tags.urls, self.diags) {
            Ok(c) => {
                let info = &mut tags.infos[id as usize];
                info.domains += c.domains;
                info.urls += c.urls;
            }
            Err(e) => self.diags.warning(
                "category-file",
                p,
                Pos::default(),
                None,
                format!("cannot read: {e}; category `{name}` is incomplete"),
                None,
            ),
        }
    }

    /// `lists`: one tag per list, its entries inline or from its file (beside the
    /// policy); a missing file is an error.
    pub(super) fn lists(&mut self, raw: &[(String, RawList)], tags: &mut Tags) -> Lists {
        let mut ids: BTreeMap<String, TagId> = BTreeMap::new();
        let mut files: Vec<PathBuf> = Vec::new();
        for (name, l) in raw {
            let id = tags.add(TagInfo::new(name, TagKind::List));
            ids.insert(name.clone(), id);
            let key = format!("lists.{name}");
            match l {
                RawList::Inline(entries) => {
                    self.add_entries(tags, id, entries, &key, true);
                }
                RawList::File(f) => {
                    let p = clean_path(&self.dir.join(f));
                    files.push(p.clone());
                    self.list_file(&p, &key, id, tags);
                }
            }
        }
        Lists { ids, files }
    }

    /// The file of the list at `key`.
    fn list_file(&mut self, p: &Path, key: &str, id: TagId, tags: &mut Tags) {
        match categories::load_file(p, id, &mut tags.domains, &mut tags.urls, self.diags) {
            Ok(c) => {
                tags.infos[id as usize].domains += c.domains;
                tags.infos[id as usize].urls += c.urls;
            }
            Err(e) => {
                let pos = self.pos.value(key);
                self.err(
                    "missing-list-file",
                    key,
                    pos,
                    format!("cannot read list file {}: {e}", p.display()),
                    Some("create the file (one site a line), fix the path (relative to the policy), or write the sites inline as a YAML list".into()),
                );
            }
        }
    }

    /// `no_inspect`: the tags never decrypted — categories and lists by name, and its
    /// own `domains` under one tag of their own.
    pub(super) fn no_inspect(
        &mut self,
        raw: &RawNoInspect,
        categories: &BTreeMap<String, TagId>,
        lists: &BTreeMap<String, TagId>,
        tags: &mut Tags,
    ) -> Vec<TagId> {
        let mut out: Vec<TagId> = Vec::new();
        for (i, c) in raw.categories.iter().enumerate() {
            let key = format!("no_inspect.categories[{i}]");
            if let Some(t) = self.resolve_name(c, categories, &key, "category") {
                out.push(t);
            }
        }
        for (i, l) in raw.lists.iter().enumerate() {
            if let Some(t) = self.resolve_name(l, lists, &format!("no_inspect.lists[{i}]"), "list")
            {
                out.push(t);
            }
        }
        if !raw.domains.is_empty() {
            let id = tags.add(TagInfo::new("no_inspect", TagKind::NoInspectSites));
            self.add_entries(tags, id, &raw.domains, "no_inspect.domains", false);
            out.push(id);
        }
        out
    }

    /// `internal_sites`: networks (CIDR or address) and names, each checked.
    pub(super) fn internal_sites(&mut self, raw: &[String]) -> InternalSites {
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

    /// The tag of category or list `name` (`what`), used at `key`; unknown names are
    /// reported with the closest known ones.
    pub(super) fn resolve_name(
        &mut self,
        name: &str,
        known: &BTreeMap<String, TagId>,
        key: &str,
        what: &str,
    ) -> Option<TagId> {
        if let Some(id) = known.get(name) {
            return Some(*id);
        }
        if what == "category" && self.categories_missing {
            // Said once, by the `missing-folder` error.
            return None;
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
    pub(super) fn add_entries(
        &mut self,
        tags: &mut Tags,
        tag: TagId,
        entries: &[String],
        key: &str,
        urls_ok: bool,
    ) {
        for (j, e) in entries.iter().enumerate() {
            let k = format!("{key}[{j}]");
            match self.parse_entry(e, &k) {
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

    /// Inline `urls` entries (host/path) into the URL builder under `tag`.
    pub(super) fn add_urls(&mut self, tags: &mut Tags, tag: TagId, entries: &[String], key: &str) {
        for (j, e) in entries.iter().enumerate() {
            let k = format!("{key}[{j}]");
            match self.parse_entry(e, &k) {
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

    /// One site entry written at `key`, with a note when it is read otherwise than
    /// written (`*.example.com` or `.example.com` read as `example.com`).
    fn parse_entry(&mut self, e: &str, key: &str) -> Result<Entry, String> {
        let (entry, note) = categories::parse_entry_noted(e)?;
        if let Some(note) = note {
            let pos = self.pos.value(key);
            let key = Some(key);
            self.diags.note("read-as", &self.file, pos, key, note, None);
        }
        Ok(entry)
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
}

/// `a/b/../c` → `a/c`, without touching the file system (for readable messages).
pub(super) fn clean_path(p: &Path) -> PathBuf {
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
