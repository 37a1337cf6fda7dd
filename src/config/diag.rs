//! Diagnostics: every problem of a policy, with file, line, column, key path, what is
//! wrong and what to do. All of them are collected, not only the first.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    /// How something was read, when it differs from what was written; not a problem
    /// (not counted by `check`, not refused by `--deny-warnings`).
    Note,
}

/// One problem found in a policy or a file it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    pub severity: Severity,
    /// Stable code (`unknown-category`, `yaml-syntax`…), for tests and tooling.
    pub code: &'static str,
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no place in the file (a missing file).
    pub line: usize,
    pub col: usize,
    /// Key path in the YAML (`rules[2].categories[0]`), when there is one.
    pub key: Option<String>,
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        write!(f, ": {sev}[{}]: {}", self.code, self.message)?;
        if let Some(k) = &self.key {
            write!(f, " (at `{k}`)")?;
        }
        if let Some(h) = &self.help {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

/// A place in a file: where a diagnostic points.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// The diagnostics of one run.
#[derive(Clone, Debug, Default)]
pub struct Diags {
    pub items: Vec<Diag>,
}

impl Diags {
    pub fn error(
        &mut self,
        code: &'static str,
        file: &Path,
        pos: Pos,
        key: Option<&str>,
        message: String,
        help: Option<String>,
    ) {
        self.push(Severity::Error, code, file, pos, key, message, help);
    }

    pub fn warning(
        &mut self,
        code: &'static str,
        file: &Path,
        pos: Pos,
        key: Option<&str>,
        message: String,
        help: Option<String>,
    ) {
        self.push(Severity::Warning, code, file, pos, key, message, help);
    }

    pub fn note(
        &mut self,
        code: &'static str,
        file: &Path,
        pos: Pos,
        key: Option<&str>,
        message: String,
        help: Option<String>,
    ) {
        self.push(Severity::Note, code, file, pos, key, message, help);
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        file: &Path,
        pos: Pos,
        key: Option<&str>,
        message: String,
        help: Option<String>,
    ) {
        self.items.push(Diag {
            severity,
            code,
            file: file.to_path_buf(),
            line: pos.line,
            col: pos.col,
            key: key.map(str::to_string),
            message,
            help,
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diag> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diag> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// Sorted by file and place, errors before warnings at the same place.
    pub fn sorted(&self) -> Vec<&Diag> {
        let mut v: Vec<&Diag> = self.items.iter().collect();
        v.sort_by(|a, b| {
            (&a.file, a.line, a.col, a.severity).cmp(&(&b.file, b.line, b.col, b.severity))
        });
        v
    }
}

/// The closest known names to `name`, for "did you mean".
pub fn suggest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut best: Vec<(f64, &str)> = known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(s, _)| *s > 0.8)
        .collect();
    best.sort_by(|a, b| b.0.total_cmp(&a.0));
    best.truncate(3);
    if best.is_empty() {
        return None;
    }
    let names: Vec<String> = best.iter().map(|(_, k)| format!("`{k}`")).collect();
    Some(format!("did you mean {}?", names.join(" or ")))
}

/// Up to `n` names of a set, for "known names are …".
pub fn some_names<'a>(known: impl IntoIterator<Item = &'a str>, n: usize) -> String {
    let mut v: Vec<&str> = known.into_iter().collect();
    v.sort_unstable();
    let more = v.len().saturating_sub(n);
    v.truncate(n);
    let mut s = v
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    if s.is_empty() {
        s.push_str("(none)");
    }
    s
}
