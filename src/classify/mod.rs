//! Classification: what a site is. Synchronous and pure — no tokio, no logging, no I/O,
//! and no allocation per lookup once the caller's buffers have grown.
//!
//! Every source of sites — a category folder, a named list, a rule's inline `domains`
//! or `urls`, the `no_inspect` domains — becomes a *tag*. One pass over the host's
//! suffixes in the [`DomainIndex`] (and, where the path is visible, one anchored search
//! in the [`UrlIndex`]) yields all the tags of a request, each with the entry that
//! matched. The policy then only asks "does this request carry one of these tags?".

pub mod host;
pub mod index;
pub mod path;
pub mod psl;
pub mod urls;

pub use host::{Host, HostError, HostKind};
pub use index::{DomainIndex, DomainMatch, DomainMatches, IndexBuilder, TagId};
pub use urls::{UrlBuilder, UrlIndex, UrlMatch, UrlMatches};

use std::sync::Arc;

/// What a tag stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagKind {
    /// A category from a squidGuard/UT1 folder.
    Category,
    /// A named list of the policy.
    List,
    /// The inline `domains` or `urls` of one rule.
    RuleSites,
    /// The `no_inspect.domains` of the policy.
    NoInspectSites,
}

/// A tag's name and, for categories, its words for people.
#[derive(Clone, Debug)]
pub struct TagInfo {
    /// Shared, so that each request's record takes a reference, not a copy.
    pub name: Arc<str>,
    pub kind: TagKind,
    /// Category name in French and English (from `global_usage`), if known.
    pub title_fr: Option<Box<str>>,
    pub title_en: Option<Box<str>>,
    /// Number of domain entries and URL entries loaded under this tag.
    pub domains: u32,
    pub urls: u32,
}

impl TagInfo {
    pub fn new(name: &str, kind: TagKind) -> TagInfo {
        TagInfo {
            name: name.into(),
            kind,
            title_fr: None,
            title_en: None,
            domains: 0,
            urls: 0,
        }
    }

    /// The category in words, in the given language, falling back to its name.
    pub fn title(&self, english: bool) -> &str {
        let t = if english {
            self.title_en.as_ref().or(self.title_fr.as_ref())
        } else {
            self.title_fr.as_ref().or(self.title_en.as_ref())
        };
        t.map_or(&self.name, |s| s)
    }
}

/// The tags found for one request. Reused across requests by the caller.
#[derive(Default, Debug, Clone)]
pub struct Classification {
    pub domains: DomainMatches,
    pub urls: UrlMatches,
}

impl Classification {
    pub fn clear(&mut self) {
        self.domains.clear();
        self.urls.clear();
    }

    /// Every tag found, domain matches first.
    pub fn tags(&self) -> impl Iterator<Item = TagId> + '_ {
        self.domains
            .iter()
            .map(|m| m.tag)
            .chain(self.urls.iter().map(|m| m.tag))
    }

    /// Tags found from the host alone (what is known before any path is seen).
    pub fn host_tags(&self) -> impl Iterator<Item = TagId> + '_ {
        self.domains.iter().map(|m| m.tag)
    }
}

/// The built matchers and the table of tags: the classification half of a snapshot.
#[derive(Default)]
pub struct Classifier {
    /// The category folders' domains: built at load, or a compiled file mapped in place.
    pub categories: DomainIndex,
    /// The policy's own lists, rule sites and `no_inspect` domains.
    pub domains: DomainIndex,
    pub urls: UrlIndex,
    pub tags: Vec<TagInfo>,
}

impl Classifier {
    /// Finds every tag of `host`, and of `host` + `path` when a path is given (only
    /// where it is visible to the proxy). Results are appended to a cleared `out`.
    #[inline]
    pub fn classify(
        &self,
        host: &Host,
        path: Option<&str>,
        scratch: &mut String,
        out: &mut Classification,
    ) {
        out.clear();
        self.categories.lookup_into(host, &mut out.domains);
        self.domains.lookup_into(host, &mut out.domains);
        if let Some(path) = path {
            self.urls.lookup_into(host, path, scratch, &mut out.urls);
        }
    }

    /// Distinct names in both domain indexes.
    pub fn domain_names(&self) -> usize {
        self.categories.len() + self.domains.len()
    }

    /// Bytes of the indexes (a mapped file counts whole, though only the pages that
    /// lookups touch are resident).
    pub fn index_bytes(&self) -> usize {
        self.categories.heap_bytes() + self.domains.heap_bytes() + self.urls.heap_bytes()
    }

    pub fn tag(&self, id: TagId) -> &TagInfo {
        &self.tags[id as usize]
    }

    /// Looks a tag up by kind and name (cold path: `check`, `explain`, tests).
    pub fn find_tag(&self, kind: TagKind, name: &str) -> Option<TagId> {
        self.tags
            .iter()
            .position(|t| t.kind == kind && &*t.name == name)
            .map(|i| i as TagId)
    }

    /// The list entry behind a domain match: the matched suffix, `=host` for exact ones
    /// (an IPv6 address carrying an IPv4 address matched as the latter: see
    /// [`Host::match_str`]).
    pub fn domain_entry(host: &Host, m: &DomainMatch) -> String {
        let s = &host.match_str()[m.start as usize..];
        if m.exact {
            format!("={s}")
        } else {
            s.to_string()
        }
    }

    /// The pattern behind a URL match.
    pub fn url_entry(&self, m: &UrlMatch) -> &str {
        self.urls.pattern(m.pattern)
    }
}
