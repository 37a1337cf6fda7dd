//! Tenant restrictions: what the proxy adds to an allowed, inspected request so that the
//! site itself refuses the accounts the charter does not approve (§5.9: the town's own
//! Microsoft 365, not any company's nor a personal account).
//!
//! - Microsoft Entra tenant restrictions: v2 (`sec-Restrict-Tenant-Access-Policy:
//!   <tenant>:<policy>` on the sign-in hosts, `login.live.com` included) or v1
//!   (`Restrict-Access-To-Tenants` and `Restrict-Access-Context` on the Entra sign-in
//!   hosts), and for v1 (or alone) `sec-Restrict-Tenant-Access-Policy: restrict-msa` on
//!   `login.live.com` (no personal Microsoft account).
//! - Google Workspace: `X-GoogApps-Allowed-Domains` on `google.com`,
//!   `googleusercontent.com` and their subdomains.
//! - Per group: `YouTube-Restrict` on the YouTube hosts, and forced SafeSearch (a query
//!   parameter of Google, Bing and DuckDuckGo searches).
//!
//! Plain data compiled by `config`, and pure lookups: the hosts are fixed tables, matched
//! exactly or as a suffix; nothing is allocated here. The header names are lower-case
//! text (HTTP names are case-insensitive); `action::forward::restrict` writes them.

use crate::classify::Host;
use crate::identity::GroupSet;

/// The Entra ID sign-in hosts (tenant restrictions v1 and v2).
pub const ENTRA_LOGIN: &[&str] = &[
    "login.microsoftonline.com",
    "login.microsoft.com",
    "login.windows.net",
];

/// The Microsoft account (personal) sign-in host.
pub const MSA_LOGIN: &[&str] = &["login.live.com"];

/// The hosts tenant restrictions v2 is added on.
pub const TRV2_LOGIN: &[&str] = &[
    "login.microsoftonline.com",
    "login.microsoft.com",
    "login.windows.net",
    "login.live.com",
];

/// Google's hosts, with their subdomains (Google Workspace's "Block access to consumer
/// accounts": every request to google.com, and the content it serves from
/// googleusercontent.com).
pub const GOOGLE_SUFFIXES: &[&str] = &["google.com", "googleusercontent.com"];

/// The hosts Google documents for `YouTube-Restrict`.
pub const YOUTUBE: &[&str] = &[
    "www.youtube.com",
    "m.youtube.com",
    "youtubei.googleapis.com",
    "youtube.googleapis.com",
    "www.youtube-nocookie.com",
];

/// `sec-Restrict-Tenant-Access-Policy` (v2, and `restrict-msa`).
pub const H_TRV2: &str = "sec-restrict-tenant-access-policy";
/// `Restrict-Access-To-Tenants` (v1).
pub const H_TENANTS: &str = "restrict-access-to-tenants";
/// `Restrict-Access-Context` (v1).
pub const H_CONTEXT: &str = "restrict-access-context";
/// `X-GoogApps-Allowed-Domains`.
pub const H_GOOGLE: &str = "x-googapps-allowed-domains";
/// `YouTube-Restrict`.
pub const H_YOUTUBE: &str = "youtube-restrict";

/// The hosts a header goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hosts {
    /// These hosts exactly.
    pub exact: &'static [&'static str],
    /// These domains and all their subdomains.
    pub suffixes: &'static [&'static str],
}

impl Hosts {
    pub const fn exact(h: &'static [&'static str]) -> Hosts {
        Hosts {
            exact: h,
            suffixes: &[],
        }
    }

    pub fn matches(&self, host: &Host) -> bool {
        let s = host.match_str();
        if self.exact.contains(&s) {
            return true;
        }
        !self.suffixes.is_empty()
            && host
                .suffix_starts()
                .any(|i| self.suffixes.contains(&&s[i..]))
    }

    /// Hosts that stand for this set (the exact ones and each suffix itself): what
    /// `check` classifies to see whether they are ever inspected.
    pub fn examples(&self) -> impl Iterator<Item = &'static str> {
        self.exact.iter().chain(self.suffixes).copied()
    }
}

/// One header the proxy sets (replacing the client's) on requests to some hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRule {
    pub hosts: Hosts,
    /// Lower-case header name, one of the `H_*` constants.
    pub name: &'static str,
    /// Checked at compile time to be a valid header value.
    pub value: Box<str>,
    /// Only for clients in one of these groups; `None`: everyone.
    pub groups: Option<GroupSet>,
}

/// A search engine whose SafeSearch is forced by a query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SafeParam {
    /// The parameter, replacing every one of the same name the client sent.
    pub name: &'static str,
    pub value: &'static str,
}

/// Forced SafeSearch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafeSearch {
    /// Only for clients in one of these groups; `None`: everyone.
    pub groups: Option<GroupSet>,
}

/// The compiled `tenant_restrictions` section; empty (the default) when there is none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantRestrictions {
    pub headers: Vec<HeaderRule>,
    pub safe_search: Option<SafeSearch>,
}

fn for_groups(only: &Option<GroupSet>, groups: &GroupSet) -> bool {
    only.as_ref().is_none_or(|g| g.intersects(groups))
}

impl TenantRestrictions {
    /// Nothing to add, ever: the hot path stops here.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.safe_search.is_none()
    }

    /// The headers (lower-case name, value) to set on a request to `host` from a client
    /// in `groups`.
    pub fn headers_for<'a>(
        &'a self,
        host: &'a Host,
        groups: &'a GroupSet,
    ) -> impl Iterator<Item = (&'static str, &'a str)> + 'a {
        self.headers
            .iter()
            .filter(move |h| for_groups(&h.groups, groups) && h.hosts.matches(host))
            .map(|h| (h.name, &*h.value))
    }

    /// The query parameter that forces SafeSearch on a request to `host` at `path`
    /// (without its query) from a client in `groups`, if it is a search.
    pub fn safe_search_for(&self, host: &Host, path: &str, groups: &GroupSet) -> Option<SafeParam> {
        let s = self.safe_search.as_ref()?;
        if !for_groups(&s.groups, groups) {
            return None;
        }
        search_engine(host.match_str(), path)
    }
}

/// The SafeSearch parameter of the search engine at `host`/`path`, if it is one.
pub fn search_engine(host: &str, path: &str) -> Option<SafeParam> {
    let bare = host.strip_prefix("www.").unwrap_or(host);
    if path == "/search" && is_google_search_host(bare) {
        return Some(SafeParam {
            name: "safe",
            value: "active",
        });
    }
    if path == "/search" && bare == "bing.com" {
        return Some(SafeParam {
            name: "adlt",
            value: "strict",
        });
    }
    let ddg_host = matches!(
        host,
        "duckduckgo.com" | "www.duckduckgo.com" | "html.duckduckgo.com" | "lite.duckduckgo.com"
    );
    if ddg_host && matches!(path, "/" | "/html" | "/html/" | "/lite" | "/lite/") {
        return Some(SafeParam {
            name: "kp",
            value: "1",
        });
    }
    None
}

/// `google.<country>`: `google.com`, `google.fr`, `google.co.uk`, `google.com.au`…
/// (one or two short labels after `google`).
fn is_google_search_host(bare: &str) -> bool {
    let Some(rest) = bare.strip_prefix("google.") else {
        return false;
    };
    let mut n = 0;
    for l in rest.split('.') {
        n += 1;
        if n > 2 || !(2..=3).contains(&l.len()) || !l.bytes().all(|b| b.is_ascii_lowercase()) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    fn set(ids: &[u16]) -> GroupSet {
        let mut g = GroupSet::EMPTY;
        for i in ids {
            g.insert(*i);
        }
        g
    }

    fn sample() -> TenantRestrictions {
        TenantRestrictions {
            headers: vec![
                HeaderRule {
                    hosts: Hosts::exact(TRV2_LOGIN),
                    name: H_TRV2,
                    value: "t:p".into(),
                    groups: None,
                },
                HeaderRule {
                    hosts: Hosts {
                        exact: &[],
                        suffixes: GOOGLE_SUFFIXES,
                    },
                    name: H_GOOGLE,
                    value: "arras.fr".into(),
                    groups: None,
                },
                HeaderRule {
                    hosts: Hosts::exact(YOUTUBE),
                    name: H_YOUTUBE,
                    value: "Strict".into(),
                    groups: Some(set(&[1])),
                },
            ],
            safe_search: Some(SafeSearch {
                groups: Some(set(&[0])),
            }),
        }
    }

    fn names(t: &TenantRestrictions, h: &str, g: &GroupSet) -> Vec<String> {
        let h = host(h);
        t.headers_for(&h, g)
            .map(|(n, v)| format!("{n}: {v}"))
            .collect()
    }

    #[test]
    fn headers_go_to_their_hosts_only() {
        let t = sample();
        let everyone = set(&[0, 1]);
        for (h, want) in [
            ("login.microsoftonline.com", vec![format!("{H_TRV2}: t:p")]),
            ("login.live.com", vec![format!("{H_TRV2}: t:p")]),
            ("evil-login.microsoftonline.com", vec![]),
            ("accounts.google.com", vec![format!("{H_GOOGLE}: arras.fr")]),
            ("google.com", vec![format!("{H_GOOGLE}: arras.fr")]),
            ("notgoogle.com", vec![]),
            (
                "lh3.googleusercontent.com",
                vec![format!("{H_GOOGLE}: arras.fr")],
            ),
            ("www.youtube.com", vec![format!("{H_YOUTUBE}: Strict")]),
            ("youtube.com", vec![]),
            ("example.org", vec![]),
        ] {
            assert_eq!(names(&t, h, &everyone), want, "{h}");
        }
    }

    #[test]
    fn group_headers_only_for_their_groups() {
        let t = sample();
        assert_eq!(
            names(&t, "www.youtube.com", &set(&[0])),
            Vec::<String>::new()
        );
        assert_eq!(names(&t, "www.youtube.com", &set(&[1])).len(), 1);
        assert_eq!(names(&t, "www.youtube.com", &GroupSet::EMPTY).len(), 0);
    }

    #[test]
    fn safe_search_engines_and_groups() {
        let t = sample();
        let g = set(&[0]);
        let p = |h: &str, path: &str| t.safe_search_for(&host(h), path, &g).map(|s| s.name);
        assert_eq!(p("www.google.com", "/search"), Some("safe"));
        assert_eq!(p("www.google.fr", "/search"), Some("safe"));
        assert_eq!(p("www.google.co.uk", "/search"), Some("safe"));
        assert_eq!(p("www.google.com", "/maps"), None);
        assert_eq!(p("mail.google.com", "/search"), None);
        assert_eq!(p("www.bing.com", "/search"), Some("adlt"));
        assert_eq!(p("duckduckgo.com", "/"), Some("kp"));
        assert_eq!(p("example.org", "/search"), None);
        assert_eq!(
            t.safe_search_for(&host("www.google.com"), "/search", &set(&[1])),
            None
        );
    }

    #[test]
    fn empty_restrictions_are_empty() {
        assert!(TenantRestrictions::default().is_empty());
        assert!(!sample().is_empty());
    }
}
