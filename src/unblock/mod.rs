//! Unblock requests: the signed token carried from the block page to the portal, the
//! requests and decisions in their store, and the approvals in force. Their pages are in
//! [`crate::pages`].

pub mod approvals;
pub mod export;
pub mod postgres;
pub mod sqlite;
pub mod store;
pub mod token;

use std::sync::Arc;
use std::time::SystemTime;

use approvals::{BlockCounter, LiveApprovals};
use store::{Store, StoreError};

use crate::policy::{Lang, Policy, Reason, ReasonCode};

/// Durations a user may suggest, with their labels.
pub const WANTED: [(&str, &str, &str); 4] = [
    ("7d", "7 jours", "7 days"),
    ("30d", "30 jours", "30 days"),
    ("1y", "1 an", "1 year"),
    ("none", "Sans limite", "No end"),
];

/// Seconds of a duration: `7d`, `30d`, `1y`, `none` (no end), `Ns`.
pub fn parse_duration(s: &str) -> Result<Option<i64>, String> {
    let day = 86_400;
    match s {
        "none" => Ok(None),
        "7d" => Ok(Some(7 * day)),
        "30d" => Ok(Some(30 * day)),
        "1y" => Ok(Some(365 * day)),
        _ => s
            .strip_suffix('s')
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| format!("unknown duration {s:?}: use 7d, 30d, 1y, none or Ns")),
    }
}

/// The words of the current policy for a block by `rule` (its id) with `reason_code`,
/// and whether that rule may be waived on request.
pub fn reason_for(
    policy: &Policy,
    rule: Option<&str>,
    reason_code: &str,
    lang: Lang,
) -> (String, bool) {
    let idx = rule.and_then(|id| policy.rules.iter().position(|r| &*r.id == id));
    let code = ReasonCode::ALL
        .into_iter()
        .find(|r| r.as_str() == reason_code)
        .unwrap_or(ReasonCode::RuleBlock);
    let overridable = idx.is_none_or(|i| policy.rules[i].overridable);
    let reason = Reason::new(code, idx.map(|i| i as _));
    (policy.reason_text(&reason, lang).into_owned(), overridable)
}

/// Seconds since the epoch of a `SystemTime`.
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The unblock service the proxy and the portal share.
pub struct UnblockService {
    pub approvals: LiveApprovals,
    pub blocks: BlockCounter,
}

impl UnblockService {
    pub fn new(store: Arc<dyn Store>) -> Result<UnblockService, StoreError> {
        Ok(UnblockService {
            approvals: LiveApprovals::new(store)?,
            blocks: BlockCounter::default(),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.approvals.store()
    }
}
