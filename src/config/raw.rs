//! Serde mirrors of the policy YAML. No behaviour: every check lives in `compile`.
//! Unknown keys are refused (`deny_unknown_fields`) so that a typo is an error, not a
//! silently ignored rule.

use serde::Deserialize;

/// Top-level keys, in the order the README documents them.
pub const TOP_KEYS: &[&str] = &[
    "version",
    "categories",
    "groups",
    "lists",
    "no_inspect",
    "internal_sites",
    "content",
    "upload_query_max",
    "rules",
    "default",
    "default_reason",
    "tenant_restrictions",
];

/// A group of clients.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub description: Option<String>,
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    /// Directory (LDAP, Active Directory) groups whose members, nested ones included,
    /// are in this group: distinguished names.
    #[serde(default)]
    pub directory: Vec<String>,
    /// `false`: never decrypt this group's traffic.
    #[serde(default = "yes")]
    pub inspect: bool,
}

fn yes() -> bool {
    true
}

/// A named list: a file (one entry a line) or inline entries.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a file path (text) or a list of sites")]
pub enum RawList {
    File(String),
    Inline(Vec<String>),
}

/// `no_inspect`: sites that are never decrypted (§6.3: banking and health).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNoInspect {
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub lists: Vec<String>,
    #[serde(default)]
    pub domains: Vec<String>,
}

/// A text for people: plain (French), or `{fr: …, en: …}`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a text, or a map with `fr` (required) and `en` (optional)"
)]
pub enum RawText {
    Plain(String),
    Localized(RawLocalized),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocalized {
    pub fr: String,
    pub en: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawAction {
    Allow,
    Block,
    BlockUpload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawMode {
    Enforce,
    Report,
}

/// Rule keys, for suggestions.
pub const RULE_KEYS: &[&str] = &[
    "id",
    "description",
    "groups",
    "users",
    "categories",
    "lists",
    "domains",
    "urls",
    "methods",
    "approved_requests",
    "schedule",
    "content",
    "file_types",
    "action",
    "mode",
    "overridable",
    "reason",
];

/// A rule, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub id: String,
    pub description: Option<String>,
    pub groups: Option<Vec<String>>,
    pub users: Option<Vec<String>>,
    pub categories: Option<Vec<String>>,
    pub lists: Option<Vec<String>>,
    pub domains: Option<Vec<String>>,
    pub urls: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub approved_requests: Option<bool>,
    pub schedule: Option<RawSchedule>,
    /// Names of `content` detectors (dictionaries, identifiers): the body carries one.
    pub content: Option<Vec<String>>,
    /// Kinds of file (`executable`, `installer`, `script`): the answer is one.
    pub file_types: Option<Vec<String>>,
    pub action: RawAction,
    pub mode: Option<RawMode>,
    pub overridable: Option<bool>,
    pub reason: Option<RawText>,
}

/// `schedule` keys, for suggestions.
pub const SCHEDULE_KEYS: &[&str] = &["days", "hours"];

/// `schedule`: when a rule applies, on the town's wall clock.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Days (`mon`, `lun`…) and ranges of days (`mon-fri`); every day when absent.
    pub days: Option<Vec<String>>,
    /// `HH:MM-HH:MM` ranges, the end excluded; the whole day when absent.
    pub hours: Option<Vec<String>>,
}

/// `content` keys, for suggestions.
pub const CONTENT_KEYS: &[&str] = &["dictionaries", "identifiers", "max_decoded_bytes"];

/// `content`: what upload bodies are read for (DLP), named for the rules' `content`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContent {
    /// Keyword dictionaries, by name.
    #[serde(default)]
    pub dictionaries: serde_yaml::Mapping,
    /// Validated identifiers (`type: nir | iban | card`), by name.
    #[serde(default)]
    pub identifiers: serde_yaml::Mapping,
    /// The most a compressed body may expand to while it is read (bytes).
    pub max_decoded_bytes: Option<u64>,
}

/// A keyword dictionary.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDictionary {
    pub description: Option<String>,
    /// Words and phrases, matched whatever their case and accents.
    pub words: Vec<String>,
    /// How many occurrences make a hit (default 1).
    pub min: Option<u32>,
}

/// A validated identifier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentifier {
    pub description: Option<String>,
    /// `nir`, `iban` or `card`.
    #[serde(rename = "type")]
    pub kind: String,
    /// How many valid numbers make a hit (default 1).
    pub min: Option<u32>,
    /// Words one of which must stand within `distance` characters of a number for it
    /// to count.
    #[serde(default)]
    pub near: Vec<String>,
    /// Default 200.
    pub distance: Option<u32>,
}

/// `tenant_restrictions` keys (the section's and its parts'), for suggestions.
pub const TENANT_ALL_KEYS: &[&str] = &[
    "microsoft",
    "google",
    "youtube",
    "safe_search",
    "tenant_id",
    "policy_id",
    "allowed_tenants",
    "context",
    "restrict_msa",
    "allowed_domains",
    "restrict",
    "groups",
];

/// `tenant_restrictions`: headers added to allowed, inspected requests so that Microsoft
/// and Google refuse accounts other than the town's (see `policy::tenant`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenantRestrictions {
    pub microsoft: Option<RawMicrosoftTenant>,
    pub google: Option<RawGoogleTenant>,
    pub youtube: Option<RawYoutube>,
    pub safe_search: Option<RawSafeSearch>,
}

/// Microsoft Entra tenant restrictions: v2 (`tenant_id` + `policy_id`) or v1
/// (`allowed_tenants` + `context`), and `restrict_msa`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMicrosoftTenant {
    pub tenant_id: Option<String>,
    pub policy_id: Option<String>,
    pub allowed_tenants: Option<Vec<String>>,
    pub context: Option<String>,
    pub restrict_msa: Option<bool>,
}

/// Google Workspace: the domains whose accounts may sign in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGoogleTenant {
    pub allowed_domains: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawYoutubeMode {
    Strict,
    Moderate,
}

/// YouTube restricted mode, for some groups (everyone when `groups` is absent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawYoutube {
    pub restrict: RawYoutubeMode,
    pub groups: Option<Vec<String>>,
}

/// Forced SafeSearch, for some groups (everyone when `groups` is absent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSafeSearch {
    pub groups: Option<Vec<String>>,
}
