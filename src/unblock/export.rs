//! What leaves the store as files: the history of decisions as CSV (for a spreadsheet or
//! an archive) and the approvals in force as a policy fragment. Shared by the `requests`
//! command and the admin pages.

use std::fmt::Write as _;

use super::store::{ApprovalRow, DecisionRow, RequestRow};

/// The header line of [`decisions_csv`].
pub const CSV_HEADER: &str = "decision,request,at,admin,status,scope,until,host,requester,message";

/// Every decision, one CSV line each (RFC 4180 quoting, times in UTC ISO 8601).
pub fn decisions_csv(rows: &[DecisionRow]) -> String {
    let mut out = String::with_capacity(64 + rows.len() * 120);
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    for d in rows {
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{},{}\r\n",
            d.id,
            d.request,
            iso(d.at),
            csv(&d.admin),
            d.status.as_str(),
            csv(d.scope.as_deref().unwrap_or("")),
            d.until.map_or(String::new(), iso),
            csv(&d.host),
            csv(&d.requester),
            csv(d.message.as_deref().unwrap_or(""))
        );
    }
    out
}

/// The approvals in force as rules to paste into the versioned policy.
pub fn approvals_yaml(rows: &[ApprovalRow]) -> String {
    let mut out = String::new();
    out.push_str("# Approved unblock requests in force, exported by charte-proxy.\n");
    out.push_str("# Move these rules into the policy, above the blocking rules.\n");
    out.push_str("rules:\n");
    for r in rows {
        let _ = writeln!(out, "  - id: demande-{}", r.request);
        let _ = writeln!(
            out,
            "    description: {:?}",
            format!(
                "request {} by {}, until {}",
                r.request,
                r.requester,
                r.until.map_or("no end".to_string(), iso)
            )
        );
        match r.scope.as_str() {
            "everyone" => {}
            s if s.starts_with("group:") => {
                let _ = writeln!(out, "    groups: [{:?}]", &s[6..]);
            }
            _ => match r.requester.strip_prefix("user:") {
                Some(u) => {
                    let _ = writeln!(out, "    users: [{u:?}]");
                }
                None => {
                    let _ = writeln!(
                        out,
                        "    # requester {} (an address: make a group for it)",
                        r.requester
                    );
                }
            },
        }
        let _ = writeln!(out, "    domains: [{:?}]\n    action: allow", r.host);
    }
    out
}

/// `2026-11-23T14:05:00Z`.
pub fn iso(t: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!(
            "{}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            d.year(),
            d.month() as u8,
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => t.to_string(),
    }
}

/// The file handed to a person who asks for their data (GDPR art. 15, Arras charter
/// §4.9): their trace lines (`trace`, as written), their unblock requests and the
/// decisions on them. The same for `trace export` and the admin pages' export.
pub fn subject_document(
    user: &str,
    trace: Vec<serde_json::Value>,
    requests: &[RequestRow],
) -> serde_json::Value {
    let at = |t: i64| jiff::Timestamp::from_second(t).map(|t| t.to_string()).ok();
    let requests: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "created": at(r.created),
                "host": r.host,
                "url": r.url,
                "categories": r.categories,
                "justification": r.justification,
                "status": r.status.as_str(),
                "scope": r.scope,
                "until": r.until.and_then(at),
                "decided_by": r.decided_by,
                "decided_at": r.decided_at.and_then(at),
                "message": r.message,
            })
        })
        .collect();
    serde_json::json!({
        "subject": user,
        "generated": jiff::Timestamp::try_from(crate::clock::now())
            .map(|t| format!("{t:.3}"))
            .unwrap_or_default(),
        "what": "Données de journalisation vous concernant (charte §4.8, RGPD art. 15) : \
                 vos accès tracés par le proxy, vos demandes de déblocage et les décisions prises.",
        "trace": trace,
        "unblock_requests": requests,
    })
}

/// A CSV field, quoted when it must be. A field a spreadsheet would take for a formula
/// (`=`, `+`, `-`, `@` first) is prefixed with `'` so that opening the export cannot run
/// what a user typed.
fn csv(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unblock::store::Status;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let row = DecisionRow {
            id: 1,
            request: 7,
            at: 0,
            admin: "a,b".into(),
            status: Status::Refused,
            scope: None,
            until: Some(86_400),
            message: Some("=HYPERLINK(\"x\")".into()),
            host: "h.example".into(),
            requester: "ip:10.0.0.1".into(),
        };
        let out = decisions_csv(&[row]);
        let line = out.lines().nth(1).unwrap();
        assert_eq!(
            line,
            "1,7,1970-01-01T00:00:00Z,\"a,b\",refused,,1970-01-02T00:00:00Z,h.example,ip:10.0.0.1,\"'=HYPERLINK(\"\"x\"\")\""
        );
    }
}
