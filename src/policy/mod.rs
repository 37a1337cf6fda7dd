//! Policy: the decision. `decide(&Identity, &Classification, &RequestFacts)` →
//! [`Decision`] `{verdict, action, rule, reason, inspection}`. Pure: no I/O, no HTTP
//! types, no YAML (the rules arrive compiled from `config`).
//!
//! Rules are tried top to bottom and the first that matches decides. A rule matches when
//! every condition it has holds; each condition lists alternatives. A rule in `report`
//! mode decides nothing: evaluation goes on, and the decision records that it *would*
//! have blocked. `explain` runs this same code with an observer that sees every rule.

pub mod internal;
pub mod late;
mod reason;
pub mod schedule;
pub mod tenant;

pub use late::{ContentHits, FileTypes, Pending};
pub use reason::{Lang, Reason, ReasonCode, Text};
pub use schedule::{LocalTime, Schedule};

use std::sync::Arc;

use smallvec::SmallVec;

use crate::classify::{Classification, TagId};
use crate::identity::{GroupSet, GroupTable, Identity};

/// Index of a rule in [`Policy::rules`].
pub type RuleIdx = u16;

/// What a rule does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Block,
    /// Reading is allowed, sending data is refused (a body, or a WebSocket upgrade).
    BlockUpload,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
            Action::BlockUpload => "block-upload",
        }
    }
}

/// Whether a rule enforces or only reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    /// Shadow rule: "would block" is recorded, nothing is blocked.
    Report,
}

/// The outcome for this very request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Block,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Block => "block",
        }
    }
}

/// Whether TLS to this site may be decrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inspection {
    Inspect,
    /// Bytes are relayed untouched; only the host name is known and logged (§6.3).
    Tunnel,
}

impl Inspection {
    pub fn as_str(self) -> &'static str {
        match self {
            Inspection::Inspect => "inspect",
            Inspection::Tunnel => "tunnel",
        }
    }
}

/// A set of tags, as a bit set over all tags of the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagSet(Box<[u64]>);

impl TagSet {
    pub fn new(tag_count: usize) -> TagSet {
        TagSet(vec![0; tag_count.div_ceil(64)].into())
    }

    pub fn insert(&mut self, t: TagId) {
        self.0[t as usize / 64] |= 1 << (t % 64);
    }

    #[inline]
    pub fn contains(&self, t: TagId) -> bool {
        self.0
            .get(t as usize / 64)
            .is_some_and(|w| w & (1 << (t % 64)) != 0)
    }

    pub fn is_subset(&self, other: &TagSet) -> bool {
        self.0
            .iter()
            .enumerate()
            .all(|(i, w)| w & !other.0.get(i).copied().unwrap_or(0) == 0)
    }

    pub fn iter(&self) -> impl Iterator<Item = TagId> + '_ {
        self.0.iter().enumerate().flat_map(|(i, w)| {
            (0..64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| (i * 64 + b) as TagId)
        })
    }
}

/// The conditions of a rule; `None` means "not a condition of this rule".
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    pub groups: Option<GroupSet>,
    pub users: Option<Box<[Box<str>]>>,
    pub categories: Option<TagSet>,
    pub lists: Option<TagSet>,
    /// The rule's inline domains (one tag).
    pub domains: Option<TagSet>,
    /// The rule's inline URL prefixes (one tag); only matches where the path is visible.
    pub urls: Option<TagSet>,
    /// Upper-case method names.
    pub methods: Option<Box<[Box<str>]>>,
    pub approved_requests: Option<bool>,
    /// The minutes of the week (town's wall clock) the rule applies.
    pub schedule: Option<Schedule>,
    /// The body carries one of these (content detectors that reached their minimum);
    /// known once the body is read ([`late`]).
    pub content: Option<ContentHits>,
    /// The answer is one of these kinds of file; known once its head and first bytes
    /// are in ([`late`]).
    pub file_types: Option<FileTypes>,
}

/// Which condition, for `explain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    Groups,
    Users,
    Categories,
    Lists,
    Domains,
    Urls,
    Methods,
    ApprovedRequests,
    Schedule,
    Content,
    FileTypes,
}

impl Cond {
    pub fn as_str(self) -> &'static str {
        match self {
            Cond::Groups => "groups",
            Cond::Users => "users",
            Cond::Categories => "categories",
            Cond::Lists => "lists",
            Cond::Domains => "domains",
            Cond::Urls => "urls",
            Cond::Methods => "methods",
            Cond::ApprovedRequests => "approved_requests",
            Cond::Schedule => "schedule",
            Cond::Content => "content",
            Cond::FileTypes => "file_types",
        }
    }
}

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Shared, so that each request's record takes a reference, not a copy.
    pub id: Arc<str>,
    pub conds: Conditions,
    pub action: Action,
    pub mode: Mode,
    /// `false`: no unblock request can open what this rule blocks.
    pub overridable: bool,
    /// Required for `block` and `block-upload`.
    pub reason: Option<Text>,
}

/// What the policy falls back to when no rule matches.
#[derive(Clone, Debug)]
pub struct DefaultRule {
    pub action: Action,
    pub reason: Option<Text>,
}

/// A compiled policy: groups, rules, default, and what is never inspected.
#[derive(Clone, Debug)]
pub struct Policy {
    pub groups: GroupTable,
    pub rules: Vec<Rule>,
    pub default: DefaultRule,
    /// Tags whose sites are never decrypted (`no_inspect`).
    pub no_inspect: TagSet,
    /// Internal networks and names the proxy may connect to (`internal_sites`).
    pub internal: std::sync::Arc<internal::InternalSites>,
    /// A rule has a `schedule`: only then does the pipeline work out the local time of
    /// each request (a time zone lookup, about 150 ns).
    pub scheduled: bool,
    /// The content detectors (`content` section), built once for the snapshot; the
    /// `content` conditions name them by index.
    pub content: std::sync::Arc<crate::content::Scanner>,
    /// A query string longer than this, to a `block-upload` site, is sending data
    /// (`upload_query_max`): a prompt fits in a URL as well as in a body.
    pub upload_query_max: u32,
    /// Headers and search parameters added to allowed, inspected requests
    /// (`tenant_restrictions`); empty when the policy has none.
    pub tenant: tenant::TenantRestrictions,
}

/// The default of `upload_query_max`, in bytes.
pub const UPLOAD_QUERY_MAX: u32 = 512;

/// Whether a request sends data, for `block-upload`: a body (or a protocol upgrade), a
/// method that sends one (POST, PUT, PATCH, with or without a body: an empty POST to an
/// AI service can still carry a prompt in its URL or headers, and `explain`, which sees
/// no body, must answer as the proxy does), or a query string longer than `query_max`.
/// The one definition: the proxy and `explain` both go through [`Policy::decide`].
pub fn sends_data(method: &str, body: bool, query_len: u32, query_max: u32) -> bool {
    body || matches!(method, "POST" | "PUT" | "PATCH") || query_len > query_max
}

/// What is known of the request besides who asks and what the site is.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// Upper-case method; `CONNECT` for a tunnel whose requests cannot be seen.
    pub method: &'a str,
    /// The request has a body (Content-Length > 0, chunked, an HTTP/2 stream that does
    /// not end with its head) or asks for an upgrade. See [`sends_data`].
    pub body: bool,
    /// Length of the query string, in bytes (`?` excluded). See [`sends_data`].
    pub query_len: u32,
    /// Whether the path is visible (plain HTTP, or inside an inspected tunnel).
    pub path_visible: bool,
    /// An approved unblock request covers this site for this client.
    pub approved: bool,
    /// Whether the proxy can decrypt this traffic at all (TLS interception configured).
    /// When it cannot, every tunnel is a tunnel, whatever the policy would allow.
    pub inspectable: bool,
    /// The town's wall-clock time of the request, for `schedule` conditions.
    pub local: LocalTime,
    /// What the body carries; `None` until it is read ([`late`]).
    pub content: Option<ContentHits>,
    /// What the answer is; `None` until it is in ([`late`]).
    pub file_types: Option<FileTypes>,
}

impl<'a> RequestFacts<'a> {
    /// A request as `explain` imagines it for a method: no body (a POST, PUT or PATCH
    /// sends data all the same, see [`sends_data`]), no query string; on Monday at
    /// 00:00 unless [`RequestFacts::at`] says when; body and answer not known yet.
    pub fn for_method(method: &'a str, path_visible: bool) -> RequestFacts<'a> {
        RequestFacts {
            method,
            body: false,
            query_len: 0,
            path_visible,
            approved: false,
            inspectable: true,
            local: LocalTime::default(),
            content: None,
            file_types: None,
        }
    }

    /// The same request at the local time `local`.
    pub fn at(self, local: LocalTime) -> RequestFacts<'a> {
        RequestFacts { local, ..self }
    }

    pub fn is_tunnel(&self) -> bool {
        self.method == "CONNECT"
    }
}

/// The policy's answer, with its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The action of the rule (or default) that decided.
    pub action: Action,
    /// The deciding rule; `None` for the default.
    pub rule: Option<RuleIdx>,
    pub reason: Reason,
    pub inspection: Inspection,
    /// First report-mode rule that would have blocked this request, if any.
    pub would_block: Option<(RuleIdx, Reason)>,
    /// Rules before the deciding one that wait for the body or the answer: decide again
    /// once they are known ([`late`]).
    pub pending: Pending,
}

/// How one rule fared, for `explain`.
#[derive(Clone, Debug)]
pub struct RuleOutcome {
    pub conditions: SmallVec<[(Cond, bool); 11]>,
    pub matched: bool,
    /// Every condition known holds, and the rule waits for the body or the answer.
    pub waiting: bool,
}

/// Sees every rule as `decide` evaluates it. The default observer does nothing and
/// costs nothing; `explain` records each outcome.
pub trait Observer {
    /// Evaluate every condition (not only up to the first that fails).
    const DETAIL: bool;
    fn rule(&mut self, idx: RuleIdx, outcome: &RuleOutcome);
}

/// The observer of the hot path.
pub struct NoObserver;

impl Observer for NoObserver {
    const DETAIL: bool = false;
    #[inline]
    fn rule(&mut self, _: RuleIdx, _: &RuleOutcome) {}
}

impl Policy {
    /// A policy with no group and no rule that allows everything: what pages render
    /// their samples with.
    pub fn empty() -> Policy {
        Policy {
            groups: GroupTable::default(),
            rules: Vec::new(),
            default: DefaultRule {
                action: Action::Allow,
                reason: None,
            },
            no_inspect: TagSet::new(0),
            internal: Arc::default(),
            scheduled: false,
            content: Arc::default(),
            upload_query_max: UPLOAD_QUERY_MAX,
            tenant: tenant::TenantRestrictions::default(),
        }
    }

    /// Decides a request. This is the one decision function: the proxy, `check` and
    /// `explain` all go through it.
    #[inline]
    pub fn decide(&self, who: &Identity, class: &Classification, facts: &RequestFacts) -> Decision {
        self.decide_observed(who, class, facts, &mut NoObserver)
    }

    /// Whether TLS to this site, for this client, may be decrypted.
    pub fn inspection(&self, who: &Identity, class: &Classification) -> Inspection {
        if self.never_inspected(class) || self.groups.inspection_off(&who.groups) {
            Inspection::Tunnel
        } else {
            Inspection::Inspect
        }
    }

    /// Whether the site is listed as never inspected (`no_inspect`), whoever asks.
    pub fn never_inspected(&self, class: &Classification) -> bool {
        class.host_tags().any(|t| self.no_inspect.contains(t))
    }

    /// [`Policy::decide`] with an observer that sees each rule's outcome.
    pub fn decide_observed<O: Observer>(
        &self,
        who: &Identity,
        class: &Classification,
        facts: &RequestFacts,
        obs: &mut O,
    ) -> Decision {
        let inspection = if facts.inspectable {
            self.inspection(who, class)
        } else {
            Inspection::Tunnel
        };
        // The path of a site that is never inspected is not looked at, even over plain
        // HTTP (§6.3); in a tunnel that is not decrypted it cannot be seen anyway.
        let path_visible = facts.path_visible && inspection == Inspection::Inspect;
        let mut would_block = None;
        let mut pending = Pending::default();
        let mut outcome = RuleOutcome {
            conditions: SmallVec::new(),
            matched: false,
            waiting: false,
        };
        let sends = sends_data(
            facts.method,
            facts.body,
            facts.query_len,
            self.upload_query_max,
        );
        for (i, rule) in self.rules.iter().enumerate() {
            let i = i as RuleIdx;
            outcome.conditions.clear();
            outcome.waiting = false;
            outcome.matched =
                rule_matches::<O>(rule, who, class, facts, path_visible, &mut outcome);
            obs.rule(i, &outcome);
            if outcome.waiting {
                if let Some(c) = rule.conds.content {
                    pending.content.0 |= c.0;
                }
                if let Some(t) = rule.conds.file_types {
                    pending.file_types.0 |= t.0;
                }
            }
            if !outcome.matched {
                continue;
            }
            let (verdict, mut code) = verdict_for(rule.action, sends, facts, inspection, false);
            if verdict == Verdict::Block && code == ReasonCode::RuleBlock {
                if rule.conds.content.is_some() {
                    code = ReasonCode::ContentBlocked;
                } else if rule.conds.file_types.is_some() {
                    code = ReasonCode::FileTypeBlocked;
                }
            }
            let reason = Reason::new(code, Some(i));
            if rule.mode == Mode::Report {
                if verdict == Verdict::Block && would_block.is_none() {
                    would_block = Some((i, reason));
                }
                continue;
            }
            return Decision {
                verdict,
                action: rule.action,
                rule: Some(i),
                reason,
                inspection,
                would_block,
                pending,
            };
        }
        let (verdict, code) = verdict_for(self.default.action, sends, facts, inspection, true);
        Decision {
            verdict,
            action: self.default.action,
            rule: None,
            reason: Reason::new(code, None),
            inspection,
            would_block,
            pending,
        }
    }

    /// The rule a decision came from.
    pub fn rule(&self, idx: RuleIdx) -> &Rule {
        &self.rules[idx as usize]
    }

    /// Whether an unblock request may be offered for this decision.
    pub fn overridable(&self, d: &Decision) -> bool {
        match d.rule {
            Some(r) => self.rule(r).overridable,
            None => true,
        }
    }
}

/// The verdict of an action for these facts, with the reason code.
fn verdict_for(
    action: Action,
    sends: bool,
    facts: &RequestFacts,
    inspection: Inspection,
    default: bool,
) -> (Verdict, ReasonCode) {
    match action {
        Action::Allow if default => (Verdict::Allow, ReasonCode::DefaultAllow),
        Action::Allow => (Verdict::Allow, ReasonCode::RuleAllow),
        Action::Block if default => (Verdict::Block, ReasonCode::DefaultBlock),
        Action::Block => (Verdict::Block, ReasonCode::RuleBlock),
        Action::BlockUpload if facts.is_tunnel() => match inspection {
            // Inside a decrypted tunnel every request is decided on its own.
            Inspection::Inspect => (Verdict::Allow, ReasonCode::UploadReadAllowed),
            // Without inspection, reading cannot be told from sending: refuse it all.
            Inspection::Tunnel => (Verdict::Block, ReasonCode::UploadTunnelBlocked),
        },
        Action::BlockUpload if sends => (Verdict::Block, ReasonCode::UploadBlocked),
        Action::BlockUpload => (Verdict::Allow, ReasonCode::UploadReadAllowed),
    }
}

fn rule_matches<O: Observer>(
    rule: &Rule,
    who: &Identity,
    class: &Classification,
    facts: &RequestFacts,
    path_visible: bool,
    out: &mut RuleOutcome,
) -> bool {
    let c = &rule.conds;
    let mut all = true;
    // Each check runs only if the rule has the condition and, on the hot path, only
    // while every earlier one held.
    macro_rules! check {
        ($cond:expr, $kind:expr, $test:expr) => {
            if let Some(v) = &$cond {
                if O::DETAIL || all {
                    let ok: bool = $test(v);
                    if O::DETAIL {
                        out.conditions.push(($kind, ok));
                    }
                    all &= ok;
                }
            }
        };
    }
    check!(c.groups, Cond::Groups, |g: &GroupSet| g
        .intersects(&who.groups));
    check!(c.users, Cond::Users, |u: &[Box<str>]| who
        .user
        .as_deref()
        .is_some_and(|me| u.iter().any(|x| &**x == me)));
    check!(c.methods, Cond::Methods, |m: &[Box<str>]| m
        .iter()
        .any(|x| &**x == facts.method));
    check!(
        c.approved_requests,
        Cond::ApprovedRequests,
        |want: &bool| *want == facts.approved
    );
    check!(c.schedule, Cond::Schedule, |s: &Schedule| s
        .contains(facts.local));
    check!(c.categories, Cond::Categories, |t: &TagSet| class
        .host_tags()
        .any(|x| t.contains(x))
        || (path_visible
            && class.urls.iter().any(|u| t.contains(u.tag))));
    check!(c.lists, Cond::Lists, |t: &TagSet| class
        .host_tags()
        .any(|x| t.contains(x))
        || (path_visible
            && class.urls.iter().any(|u| t.contains(u.tag))));
    check!(c.domains, Cond::Domains, |t: &TagSet| class
        .host_tags()
        .any(|x| t.contains(x)));
    check!(c.urls, Cond::Urls, |t: &TagSet| path_visible
        && class.urls.iter().any(|u| t.contains(u.tag)));
    // The late conditions, last: a rule whose other conditions hold waits for what it
    // does not know yet. Content and answers are only seen where the path is (a
    // request in clear); elsewhere they never match.
    let mut known = all;
    let mut unknown = false;
    late::<O, _>(
        c.content,
        facts.content,
        Cond::Content,
        path_visible,
        &mut known,
        &mut unknown,
        out,
        |w, f| f.intersects(w),
    );
    late::<O, _>(
        c.file_types,
        facts.file_types,
        Cond::FileTypes,
        path_visible,
        &mut known,
        &mut unknown,
        out,
        |w, f| f.intersects(w),
    );
    out.waiting = known && unknown;
    known && !unknown
}

/// One late condition: `want` (the rule's), `fact` (the request's, `None` until known).
/// `known`: every known condition held so far; `unknown`: one waits for its fact.
#[allow(clippy::too_many_arguments)]
#[inline]
fn late<O: Observer, T: Copy>(
    want: Option<T>,
    fact: Option<T>,
    kind: Cond,
    path_visible: bool,
    known: &mut bool,
    unknown: &mut bool,
    out: &mut RuleOutcome,
    holds: impl Fn(T, T) -> bool,
) {
    let Some(want) = want else { return };
    if !(O::DETAIL || *known) {
        return;
    }
    let ok = match fact {
        Some(f) => path_visible && holds(want, f),
        None => false,
    };
    if O::DETAIL {
        out.conditions.push((kind, ok));
    }
    if fact.is_none() && path_visible {
        *unknown = true;
    } else {
        *known &= ok;
    }
}

#[cfg(test)]
mod tests;
