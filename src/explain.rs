//! `explain`: what the proxy would decide for a client and a target, and why — every
//! rule considered, every condition, the decision, the reason and whether the traffic
//! would be inspected. Runs the real identity, classification and decision code (through
//! [`Policy::decide_observed`]), never a copy of it.

use std::fmt::Write as _;
use std::net::IpAddr;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::classify::psl::registrable_domain;
use crate::classify::{Classification, Classifier, Host, TagKind};
use crate::identity::DirectoryNames;
use crate::policy::{
    Inspection, Lang, LocalTime, Mode, Observer, Policy, RequestFacts, RuleIdx, RuleOutcome,
};
use crate::snapshot::Snapshot;

/// What to explain.
#[derive(Debug, Clone)]
pub struct Query {
    /// A URL (`https://host/path`) or a host (`host`, `host:port`, `host/path`).
    pub target: String,
    pub ip: IpAddr,
    pub user: Option<String>,
    /// The user's directory groups (normalised DNs, sorted), when the directory was asked.
    pub directory_groups: Option<Vec<Box<str>>>,
    /// The DNs of the policy's short directory group names, when the directory was asked.
    pub directory_names: DirectoryNames,
    /// Upper-case method; `CONNECT` explains the tunnel itself.
    pub method: String,
    pub lang: Lang,
    /// When the request is imagined: the town's wall-clock time (`schedule` conditions).
    pub at: At,
}

/// A time to explain a request at.
#[derive(Debug, Clone)]
pub struct At {
    /// The town's wall-clock date and time.
    pub local: DateTime,
    /// The town's time zone, as named.
    pub zone: String,
    /// Asked for (`--at`), rather than now: always shown then.
    pub given: bool,
}

impl At {
    /// Now (the proxy's clock) on the wall clock of `tz`, named `zone`.
    pub fn now(tz: &TimeZone, zone: &str) -> At {
        At {
            local: crate::clock::civil(crate::clock::now(), tz),
            zone: zone.to_string(),
            given: false,
        }
    }
}

/// `--at`: an RFC 3339 instant with its offset (`2026-12-07T12:30:00+01:00`, `…Z`),
/// turned into the town's wall-clock time, or a wall-clock time already in the town's
/// zone (`2026-12-07T12:30`, `2026-12-07 12:30`), taken as written.
pub fn parse_at(s: &str, tz: &TimeZone) -> Result<DateTime, String> {
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(tz.to_datetime(ts));
    }
    s.parse::<DateTime>().map_err(|_| {
        format!(
            "--at {s:?}: not a time; write the town's local time (2026-12-07T12:30) or an RFC 3339 time with its offset (2026-12-07T12:30:00+01:00)"
        )
    })
}

/// A target, normalised.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http`, `https`, or `None` for a bare host (treated as HTTPS, as browsers do).
    pub scheme: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    pub path: Option<String>,
}

/// Parses a URL or a host; the host is normalised like every host the proxy sees, and
/// the path is kept as written: the URL index puts it in its canonical form exactly as it
/// does a request's (`classify::path`), so `explain` and the proxy cannot disagree on a
/// spelling.
pub fn parse_target(s: &str) -> Result<Target, String> {
    if let Some((scheme, rest)) = s.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "only http and https URLs can be explained, not {scheme}"
            ));
        }
        // The authority ends where the path, the query or a fragment begins (a browser
        // reads a backslash as a slash there too).
        let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
        let (auth, tail) = rest.split_at(end);
        if auth.contains('@') {
            return Err("a URL with user@ before the host is refused by the proxy".into());
        }
        if auth.is_empty() {
            return Err("the URL has no host".into());
        }
        let (host, port) =
            Host::parse_authority(auth).map_err(|e| format!("invalid host {auth:?}: {e}"))?;
        // What a client sends: no fragment, and `/` for an empty path.
        let tail = tail.split('#').next().unwrap_or("");
        let path = if tail.is_empty() { "/" } else { tail };
        return Ok(Target {
            scheme: Some(scheme),
            host,
            port,
            path: Some(path.to_string()),
        });
    }
    let (auth, path) = match s.find('/') {
        Some(i) => (&s[..i], Some(s[i..].to_string())),
        None => (s, None),
    };
    let (host, port) =
        Host::parse_written(auth).map_err(|e| format!("invalid host {auth:?}: {e}"))?;
    Ok(Target {
        scheme: None,
        host,
        port,
        path,
    })
}

/// A category or list entry that matched.
#[derive(Debug, Serialize)]
pub struct Found {
    pub name: String,
    /// The category in words (categories only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The list entry that matched: `example.com`, `=host`, or `host/path`.
    pub entry: String,
}

/// One rule as evaluated.
#[derive(Debug, Serialize)]
pub struct RuleReport {
    pub id: String,
    pub action: &'static str,
    pub mode: &'static str,
    /// `matched`, `not-matched`, or `not-reached` (an earlier rule decided).
    pub status: &'static str,
    /// Each condition of the rule and whether it held.
    pub conditions: Vec<(String, bool)>,
}

/// A report-mode rule that would have blocked.
#[derive(Debug, Serialize)]
pub struct WouldBlock {
    pub rule: String,
    pub reason: String,
}

/// The whole explanation; serialised as is by `--json`.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub target: String,
    pub host: String,
    pub registrable_domain: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub ip: String,
    pub user: Option<String>,
    pub groups: Vec<String>,
    /// The directory groups the user is in, when the directory was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_groups: Option<Vec<String>>,
    pub categories: Vec<Found>,
    pub lists: Vec<Found>,
    /// Inline `domains`/`urls` of rules and `no_inspect.domains` that matched.
    pub sites: Vec<Found>,
    pub inspection: &'static str,
    /// How the proxy would see the request: `http`, `https-inspected`, `tunnel`.
    pub seen_as: &'static str,
    pub method: String,
    /// When the request is imagined (`Monday 2026-12-07 12:30 (Europe/Paris)`): shown
    /// when asked for (`--at`) or when a rule has a `schedule`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub rules: Vec<RuleReport>,
    /// The deciding rule's id, or `null` for the default.
    pub rule: Option<String>,
    pub action: &'static str,
    /// The outcome for `method`: `allow` or `block`.
    pub decision: &'static str,
    pub reason_code: &'static str,
    pub reason: String,
    /// Whether a user may ask for the site to be opened.
    pub overridable: bool,
    pub would_block: Option<WouldBlock>,
    /// Headers the proxy would set (`tenant_restrictions`), lower-case name and value:
    /// only on an allowed request it sees in clear.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub adds_headers: Vec<(String, String)>,
    /// The query parameter forced on a search (`safe=active`…), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forces_parameter: Option<String>,
}

struct Recorder(Vec<(RuleIdx, RuleOutcome)>);

impl Observer for Recorder {
    const DETAIL: bool = true;
    fn rule(&mut self, idx: RuleIdx, outcome: &RuleOutcome) {
        self.0.push((idx, outcome.clone()));
    }
}

/// Explains `q` against `snap`.
pub fn explain(snap: &Snapshot, q: &Query) -> Result<Explanation, String> {
    let target = parse_target(&q.target)?;
    let policy: &Policy = &snap.policy;
    let cls: &Classifier = &snap.classifier;
    let who = policy.groups.resolve_with(
        q.ip,
        q.user.as_deref(),
        q.directory_groups.as_deref().unwrap_or_default(),
        &q.directory_names,
    );

    // What the proxy would see: over HTTPS, a site that is not inspected is a tunnel
    // (CONNECT, no path); otherwise each request inside is decided with its path.
    let mut class = Classification::default();
    let mut scratch = String::new();
    cls.classify(&target.host, None, &mut scratch, &mut class);
    let inspection = policy.inspection(&who, &class);
    let plain_http = target.scheme.as_deref() == Some("http");
    let (seen_as, method, path_visible) = if q.method == "CONNECT" {
        ("tunnel", "CONNECT", false)
    } else if plain_http {
        ("http", q.method.as_str(), true)
    } else if inspection == Inspection::Tunnel {
        ("tunnel", "CONNECT", false)
    } else {
        ("https-inspected", q.method.as_str(), true)
    };
    let path = target.path.as_deref().filter(|_| path_visible);
    cls.classify(
        &target.host,
        path.or(path_visible.then_some("/")),
        &mut scratch,
        &mut class,
    );
    // The query string counts as sending data to a `block-upload` site beyond
    // `upload_query_max`, as in the proxy; the body and the answer are not known.
    let query_len = path
        .and_then(|p| p.split_once('?'))
        .map_or(0, |(_, q)| q.split('#').next().unwrap_or("").len() as u32);
    let facts = RequestFacts {
        query_len,
        ..RequestFacts::for_method(method, path_visible).at(LocalTime::of(q.at.local))
    };

    let mut rec = Recorder(Vec::new());
    let d = policy.decide_observed(&who, &class, &facts, &mut rec);

    let mut categories = Vec::new();
    let mut lists = Vec::new();
    let mut sites = Vec::new();
    let domain_found = class
        .domains
        .iter()
        .map(|m| (m.tag, Classifier::domain_entry(&target.host, m)));
    let url_found = class
        .urls
        .iter()
        .map(|m| (m.tag, cls.url_entry(m).to_string()));
    for (tag, entry) in domain_found.chain(url_found) {
        let info = cls.tag(tag);
        let f = Found {
            name: info.name.to_string(),
            title: (info.kind == TagKind::Category)
                .then(|| info.title(q.lang == Lang::En).to_string()),
            entry,
        };
        match info.kind {
            TagKind::Category => categories.push(f),
            TagKind::List => lists.push(f),
            TagKind::RuleSites | TagKind::NoInspectSites => sites.push(f),
        }
    }

    let mut rules: Vec<RuleReport> = policy
        .rules
        .iter()
        .map(|r| RuleReport {
            id: r.id.to_string(),
            action: r.action.as_str(),
            mode: match r.mode {
                Mode::Enforce => "enforce",
                Mode::Report => "report",
            },
            status: "not-reached",
            conditions: Vec::new(),
        })
        .collect();
    for (idx, out) in rec.0 {
        let r = &mut rules[idx as usize];
        r.status = if out.matched {
            "matched"
        } else if out.waiting {
            // Every condition known holds; the body or the answer decides.
            "waiting"
        } else {
            "not-matched"
        };
        r.conditions = out
            .conditions
            .iter()
            .map(|(c, ok)| (c.as_str().to_string(), *ok))
            .collect();
    }

    // Tenant restrictions: what the pipeline adds to an allowed request seen in clear.
    let restricted = d.verdict == crate::policy::Verdict::Allow
        && seen_as != "tunnel"
        && d.inspection == Inspection::Inspect
        && !policy.groups.inspection_off(&who.groups);
    let adds_headers = if restricted {
        policy
            .tenant
            .headers_for(&target.host, &who.groups)
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    } else {
        Vec::new()
    };
    let search_path = target.path.as_deref().unwrap_or("/");
    let search_path = search_path.split('?').next().unwrap_or("/");
    let forces_parameter = restricted
        .then(|| {
            policy
                .tenant
                .safe_search_for(&target.host, search_path, &who.groups)
        })
        .flatten()
        .map(|p| format!("{}={}", p.name, p.value));

    Ok(Explanation {
        adds_headers,
        forces_parameter,
        target: q.target.clone(),
        host: target.host.to_string(),
        registrable_domain: registrable_domain(&target.host).map(str::to_string),
        port: target.port,
        path: target.path.clone(),
        ip: who.addr.to_string(),
        user: q.user.clone(),
        groups: policy
            .groups
            .names(&who.groups)
            .map(str::to_string)
            .collect(),
        directory_groups: q
            .directory_groups
            .as_ref()
            .map(|g| g.iter().map(|d| d.to_string()).collect()),
        categories,
        lists,
        sites,
        inspection: d.inspection.as_str(),
        seen_as,
        method: method.to_string(),
        at: (q.at.given || policy.rules.iter().any(|r| r.conds.schedule.is_some())).then(|| {
            format!(
                "{:?} {} ({})",
                q.at.local.weekday(),
                q.at.local.strftime("%Y-%m-%d %H:%M"),
                q.at.zone
            )
        }),
        rules,
        rule: d.rule.map(|r| policy.rule(r).id.to_string()),
        action: d.action.as_str(),
        decision: d.verdict.as_str(),
        reason_code: d.reason.code.as_str(),
        reason: policy.reason_text(&d.reason, q.lang).into_owned(),
        overridable: policy.overridable(&d),
        would_block: d.would_block.map(|(r, reason)| WouldBlock {
            rule: policy.rule(r).id.to_string(),
            reason: policy.reason_text(&reason, q.lang).into_owned(),
        }),
    })
}

/// The `Rules` block: each rule with its conditions and how it fared.
fn rules_text(s: &mut String, e: &Explanation) {
    let _ = writeln!(s, "Rules");
    let width = e.rules.iter().map(|r| r.id.len()).max().unwrap_or(0);
    for r in &e.rules {
        let mark = match r.status {
            "matched" => "✓",
            "not-matched" => "✗",
            "waiting" => "?",
            _ => "·",
        };
        let conds = if r.status == "not-reached" {
            "(not reached: an earlier rule decided)".to_string()
        } else if r.conditions.is_empty() {
            "(no condition: matches everything)".to_string()
        } else {
            r.conditions
                .iter()
                .map(|(c, ok)| format!("{c} {}", if *ok { "✓" } else { "✗" }))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mode = if r.mode == "report" { " [report]" } else { "" };
        let conds = if r.status == "waiting" {
            // The late condition is not known: `?`, not `✗`.
            let conds = conds
                .replace("content ✗", "content ?")
                .replace("file_types ✗", "file_types ?");
            if conds.contains("content ?") {
                format!("{conds} (waits for the body)")
            } else {
                format!("{conds} (waits for the answer)")
            }
        } else {
            conds
        };
        let decides = if Some(&r.id) == e.rule.as_ref() {
            "  ← decides"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  {mark} {:<width$}  {:<12} {conds}{mode}{decides}",
            r.id, r.action
        );
    }
}

/// The explanation for people.
pub fn render_text(e: &Explanation) -> String {
    let mut s = String::new();
    let none = "-";
    let _ = writeln!(s, "Target       {}", e.target);
    let _ = writeln!(
        s,
        "Host         {}{}",
        e.host,
        e.registrable_domain
            .as_deref()
            .map(|r| format!(" (registrable domain {r})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "Client       {}{}, groups: {}",
        e.ip,
        e.user
            .as_deref()
            .map(|u| format!(" user {u}"))
            .unwrap_or_default(),
        if e.groups.is_empty() {
            none.to_string()
        } else {
            e.groups.join(", ")
        }
    );
    if let Some(d) = &e.directory_groups {
        let _ = writeln!(
            s,
            "Directory    {}",
            if d.is_empty() {
                none.to_string()
            } else {
                d.join("; ")
            }
        );
    }
    let found = |v: &[Found]| {
        if v.is_empty() {
            return none.to_string();
        }
        v.iter()
            .map(|f| match &f.title {
                Some(t) if t != &f.name => format!("{} ({t}) by entry {}", f.name, f.entry),
                _ => format!("{} by entry {}", f.name, f.entry),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let _ = writeln!(s, "Categories   {}", found(&e.categories));
    let _ = writeln!(s, "Lists        {}", found(&e.lists));
    if !e.sites.is_empty() {
        let _ = writeln!(s, "Rule sites   {}", found(&e.sites));
    }
    let _ = writeln!(
        s,
        "Inspection   {}",
        match e.inspection {
            "tunnel" =>
                "tunnel: never decrypted, bytes relayed untouched, only the host name is logged",
            _ => "inspect: TLS would be decrypted and each request decided with its path",
        }
    );
    let _ = writeln!(
        s,
        "Seen as      {}",
        match e.seen_as {
            "http" => format!("plain HTTP {} request", e.method),
            "https-inspected" => format!("{} request inside an inspected HTTPS tunnel", e.method),
            _ => "CONNECT tunnel (method and path cannot be seen)".to_string(),
        }
    );
    if let Some(at) = &e.at {
        let _ = writeln!(s, "At           {at}");
    }
    for (n, v) in &e.adds_headers {
        let _ = writeln!(s, "Adds header  {n}: {v} (tenant_restrictions)");
    }
    if let Some(p) = &e.forces_parameter {
        let _ = writeln!(
            s,
            "Forces       {p} in the query (tenant_restrictions.safe_search)"
        );
    }
    rules_text(&mut s, e);
    let _ = writeln!(
        s,
        "Decision     {} by {} → {} {}",
        e.action,
        e.rule
            .as_deref()
            .map_or("the default".to_string(), |r| format!("rule {r}")),
        e.method,
        e.decision.to_uppercase()
    );
    let _ = writeln!(s, "Reason       [{}] {}", e.reason_code, e.reason);
    if e.decision == "block" {
        let _ = writeln!(
            s,
            "Unblock      {}",
            if e.overridable {
                "the user may ask for this site to be opened"
            } else {
                "cannot be requested: this rule is not overridable"
            }
        );
    }
    if let Some(w) = &e.would_block {
        let _ = writeln!(
            s,
            "Report mode  rule {} would have blocked: {}",
            w.rule, w.reason
        );
    }
    s
}
