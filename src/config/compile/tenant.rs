//! `tenant_restrictions` → [`TenantRestrictions`]: the header values built and checked
//! (GUIDs, domain names, valid HTTP header values), the combinations that make no sense
//! refused, groups resolved; then, once the classifier exists, a warning for every
//! restriction that can never apply (its hosts are in `no_inspect`, or a group it
//! concerns is never inspected).

use http::HeaderValue;

use super::Cx;
use crate::classify::{Classification, Classifier, Host};
use crate::config::raw::{RawMicrosoftTenant, RawTenantRestrictions, RawYoutubeMode};
use crate::identity::{GroupSet, GroupTable};
use crate::policy::Policy;
use crate::policy::tenant::{
    ENTRA_LOGIN, GOOGLE_SUFFIXES, H_CONTEXT, H_GOOGLE, H_TENANTS, H_TRV2, H_YOUTUBE, HeaderRule,
    Hosts, MSA_LOGIN, SafeSearch, TRV2_LOGIN, TenantRestrictions, YOUTUBE,
};

const SECTION: &str = "tenant_restrictions";

/// What a compiled restriction concerns, kept for the reach warnings: the key it was
/// written at, its hosts and its groups.
pub(super) struct Reach {
    key: String,
    hosts: Hosts,
    groups: Option<GroupSet>,
}

impl Cx<'_> {
    /// Compiles the section; also returns what [`Cx::check_tenant_reach`] needs.
    pub(super) fn tenant_restrictions(
        &mut self,
        raw: Option<&RawTenantRestrictions>,
        groups: &GroupTable,
    ) -> (TenantRestrictions, Vec<Reach>) {
        let mut out = TenantRestrictions::default();
        let mut reach = Vec::new();
        let Some(raw) = raw else {
            return (out, reach);
        };
        if let Some(ms) = &raw.microsoft {
            self.microsoft(ms, &mut out, &mut reach);
        }
        if let Some(g) = &raw.google {
            let key = format!("{SECTION}.google.allowed_domains");
            let mut ok = Vec::new();
            for (i, d) in g.allowed_domains.iter().enumerate() {
                if let Some(d) = self.domain_name(&format!("{key}[{i}]"), d, "a domain name") {
                    ok.push(d);
                }
            }
            if g.allowed_domains.is_empty() {
                let pos = self.pos.value(&key);
                self.err(
                    "empty-value",
                    &key,
                    pos,
                    "`allowed_domains` is empty: no Google account could sign in".into(),
                    Some("list the town's Google Workspace domains, or remove `google`".into()),
                );
            }
            if !ok.is_empty() {
                let hosts = Hosts {
                    exact: &[],
                    suffixes: GOOGLE_SUFFIXES,
                };
                self.header(&mut out, &key, hosts, H_GOOGLE, ok.join(","), None);
                reach.push(Reach {
                    key,
                    hosts,
                    groups: None,
                });
            }
        }
        if let Some(y) = &raw.youtube {
            let base = format!("{SECTION}.youtube");
            let only = y
                .groups
                .as_ref()
                .map(|g| self.group_condition(&base, g, groups));
            let value = match y.restrict {
                RawYoutubeMode::Strict => "Strict",
                RawYoutubeMode::Moderate => "Moderate",
            };
            let hosts = Hosts::exact(YOUTUBE);
            self.header(&mut out, &base, hosts, H_YOUTUBE, value.into(), only);
            reach.push(Reach {
                key: base,
                hosts,
                groups: only,
            });
        }
        if let Some(s) = &raw.safe_search {
            let base = format!("{SECTION}.safe_search");
            let only = s
                .groups
                .as_ref()
                .map(|g| self.group_condition(&base, g, groups));
            out.safe_search = Some(SafeSearch { groups: only });
            reach.push(Reach {
                key: base,
                hosts: Hosts::exact(&["www.google.com", "www.bing.com", "duckduckgo.com"]),
                groups: only,
            });
        }
        (out, reach)
    }

    /// `microsoft`: v2 or v1, and `restrict_msa`.
    fn microsoft(
        &mut self,
        ms: &RawMicrosoftTenant,
        out: &mut TenantRestrictions,
        reach: &mut Vec<Reach>,
    ) {
        let base = format!("{SECTION}.microsoft");
        let k = |f: &str| format!("{base}.{f}");
        let v2 = ms.tenant_id.is_some() || ms.policy_id.is_some();
        let v1 = ms.allowed_tenants.is_some() || ms.context.is_some();
        let msa = ms.restrict_msa == Some(true);
        // A refused combination is reported, its values still checked, and nothing of
        // it is kept.
        let (headers_before, reach_before) = (out.headers.len(), reach.len());
        let refused = v2 && (v1 || msa);
        if v2 && v1 {
            let key = k(if ms.allowed_tenants.is_some() {
                "allowed_tenants"
            } else {
                "context"
            });
            let pos = self.pos.key(&key);
            self.err(
                "tenant-versions",
                &key,
                pos,
                "tenant restrictions v1 (`allowed_tenants`, `context`) and v2 (`tenant_id`, `policy_id`) cannot be combined".into(),
                Some("keep v2 (`tenant_id` and `policy_id`), or v1 alone".into()),
            );
        } else if v2 && msa {
            let key = k("restrict_msa");
            let pos = self.pos.key(&key);
            self.err(
                "tenant-versions",
                &key,
                pos,
                "`restrict_msa` is for tenant restrictions v1: with v2, `login.live.com` receives the v2 policy, which decides on personal accounts itself".into(),
                Some("remove `restrict_msa` and block personal accounts in the v2 policy (Entra admin center)".into()),
            );
        }
        if v2 {
            let tenant = self.required_guid(&base, "tenant_id", ms.tenant_id.as_deref());
            let policy = self.required_guid(&base, "policy_id", ms.policy_id.as_deref());
            if let (Some(t), Some(p)) = (tenant, policy) {
                let hosts = Hosts::exact(TRV2_LOGIN);
                let key = k("tenant_id");
                self.header(out, &key, hosts, H_TRV2, format!("{t}:{p}"), None);
                reach.push(Reach {
                    key,
                    hosts,
                    groups: None,
                });
            }
        }
        if v1 {
            let context = self.required_guid(&base, "context", ms.context.as_deref());
            let key = k("allowed_tenants");
            let mut tenants = Vec::new();
            match &ms.allowed_tenants {
                None => {
                    let pos = self.pos.key(&base);
                    self.err(
                        "missing-key",
                        &base,
                        pos,
                        "tenant restrictions v1 needs `allowed_tenants` with `context`".into(),
                        Some("add `allowed_tenants: [<tenant domain or id>]`".into()),
                    );
                }
                Some(list) if list.is_empty() => {
                    let pos = self.pos.value(&key);
                    self.err(
                        "empty-value",
                        &key,
                        pos,
                        "`allowed_tenants` is empty: no tenant could sign in".into(),
                        None,
                    );
                }
                Some(list) => {
                    for (i, t) in list.iter().enumerate() {
                        let at = format!("{key}[{i}]");
                        if let Some(g) = guid(t) {
                            tenants.push(g);
                        } else if let Some(d) =
                            self.domain_name(&at, t, "a tenant id (GUID) or a tenant domain name")
                        {
                            tenants.push(d);
                        }
                    }
                }
            }
            if let (Some(c), false) = (context, tenants.is_empty()) {
                let hosts = Hosts::exact(ENTRA_LOGIN);
                self.header(out, &key, hosts, H_TENANTS, tenants.join(","), None);
                self.header(out, &key, hosts, H_CONTEXT, c, None);
                reach.push(Reach {
                    key,
                    hosts,
                    groups: None,
                });
            }
        }
        if msa {
            let hosts = Hosts::exact(MSA_LOGIN);
            let key = k("restrict_msa");
            self.header(out, &key, hosts, H_TRV2, "restrict-msa".into(), None);
            reach.push(Reach {
                key,
                hosts,
                groups: None,
            });
        }
        if refused {
            out.headers.truncate(headers_before);
            reach.truncate(reach_before);
        }
        if !v1 && !v2 && !msa {
            let pos = self.pos.key(&base);
            self.warn(
                "empty-restriction",
                &base,
                pos,
                "`microsoft` sets no restriction: nothing is added to Microsoft sign-ins".into(),
                Some("set `tenant_id` and `policy_id` (v2), or `allowed_tenants` and `context` (v1), or `restrict_msa: true`".into()),
            );
        }
    }

    /// A GUID under `base.field`, which must be there.
    fn required_guid(&mut self, base: &str, field: &str, v: Option<&str>) -> Option<String> {
        let key = format!("{base}.{field}");
        let Some(v) = v else {
            let pos = self.pos.key(base);
            self.err(
                "missing-key",
                base,
                pos,
                format!("missing key `{field}`"),
                Some(format!("add `{field}: <GUID>` here")),
            );
            return None;
        };
        let g = guid(v);
        if g.is_none() {
            let pos = self.pos.value(&key);
            self.err(
                "bad-value",
                &key,
                pos,
                format!("`{v}` is not a GUID"),
                Some("write it as Entra shows it: 8-4-4-4-12 hexadecimal digits, like 72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
            );
        }
        g
    }

    /// A domain name (lower-cased), or `None` after reporting what it is not.
    fn domain_name(&mut self, key: &str, v: &str, what: &str) -> Option<String> {
        match Host::parse(v.trim()) {
            Ok(h) if h.is_domain() && h.as_str().contains('.') => Some(h.as_str().to_string()),
            _ => {
                let pos = self.pos.value(key);
                self.err(
                    "bad-value",
                    key,
                    pos,
                    format!("`{v}` is not {what}"),
                    Some("like arras.fr or cu-arras.onmicrosoft.com".into()),
                );
                None
            }
        }
    }

    /// Adds a header rule whose value is a valid HTTP header value.
    fn header(
        &mut self,
        out: &mut TenantRestrictions,
        key: &str,
        hosts: Hosts,
        name: &'static str,
        value: String,
        groups: Option<GroupSet>,
    ) {
        if HeaderValue::from_str(&value).is_err() {
            let pos = self.pos.value(key);
            self.err(
                "bad-value",
                key,
                pos,
                format!("`{value}` cannot be sent as an HTTP header value"),
                None,
            );
            return;
        }
        out.headers.push(HeaderRule {
            hosts,
            name,
            value: value.into(),
            groups,
        });
    }

    /// Warns about every restriction that never applies: one of its hosts is never
    /// inspected (`no_inspect`), or one of the groups it concerns has `inspect: false`.
    pub(super) fn check_tenant_reach(
        &mut self,
        reach: &[Reach],
        policy: &Policy,
        classifier: &Classifier,
    ) {
        let mut class = Classification::default();
        let mut scratch = String::new();
        for r in reach {
            for h in r.hosts.examples() {
                let Ok(host) = Host::parse(h) else { continue };
                classifier.classify(&host, None, &mut scratch, &mut class);
                if policy.never_inspected(&class) {
                    let pos = self.pos.key(&r.key);
                    self.warn(
                        "restriction-not-inspected",
                        &r.key,
                        pos,
                        format!("`{h}` is never inspected (`no_inspect`): this restriction is never added to its requests"),
                        Some(format!("remove `{h}` from `no_inspect`, or this restriction")),
                    );
                }
            }
            for (i, g) in policy.groups.groups.iter().enumerate() {
                let concerned = r.groups.is_none_or(|s| s.contains(i as u16));
                if concerned && !g.inspect {
                    let pos = self.pos.key(&r.key);
                    self.warn(
                        "restriction-not-inspected",
                        &r.key,
                        pos,
                        format!("group `{}` is never inspected (`inspect: false`): this restriction does not apply to its clients", g.name),
                        None,
                    );
                }
            }
        }
    }
}

/// `v` as a lower-case GUID (8-4-4-4-12 hexadecimal digits), if it is one.
fn guid(v: &str) -> Option<String> {
    let v = v.trim();
    let parts: Vec<&str> = v.split('-').collect();
    let ok = parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| v.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::guid;

    #[test]
    fn guids() {
        assert_eq!(
            guid("72F988BF-86f1-41af-91ab-2d7cd011db47").as_deref(),
            Some("72f988bf-86f1-41af-91ab-2d7cd011db47")
        );
        assert_eq!(guid("72f988bf86f141af91ab2d7cd011db47"), None);
        assert_eq!(guid("contoso.com"), None);
        assert_eq!(guid("72f988bf-86f1-41af-91ab-2d7cd011db4g"), None);
    }
}
