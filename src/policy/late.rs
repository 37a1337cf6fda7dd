//! Facts known only after the request head: what the request's body carries (the
//! `content` condition, §6.5 and §5.9) and what the site's answer is (the `file_types`
//! condition, §6.2).
//!
//! The head is decided first, as every request is. A rule whose other conditions hold
//! but which needs a late fact that is not known yet does not match; the decision says
//! so in [`Pending`], and the pipeline decides again once it knows the fact (the body
//! read, the answer's first bytes seen). Rules are still tried top to bottom: a rule
//! waiting on the body can only change the decision if it comes before the one that
//! decided, so only those are pending.

use crate::content::filetype::FileKind;

/// The content detectors (dictionaries and identifiers of the policy's `content`
/// section, by their index) that reached their minimum count in a body. A policy has at
/// most [`ContentHits::MAX`] detectors (`check` refuses more).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContentHits(pub u64);

impl ContentHits {
    /// The most detectors a policy may define.
    pub const MAX: usize = 64;
    /// Nothing found (or no body).
    pub const NONE: ContentHits = ContentHits(0);

    pub fn with(self, detector: u16) -> ContentHits {
        ContentHits(self.0 | 1u64.checked_shl(detector.into()).unwrap_or(0))
    }

    pub fn contains(self, detector: u16) -> bool {
        self.0 & 1u64.checked_shl(detector.into()).unwrap_or(0) != 0
    }

    pub fn intersects(self, other: ContentHits) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = u16> {
        (0..64u16).filter(move |d| self.contains(*d))
    }
}

/// A set of [`FileKind`]s: a rule's `file_types`, or what an answer was found to be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileTypes(pub u16);

impl FileTypes {
    pub const NONE: FileTypes = FileTypes(0);

    pub fn with(self, k: FileKind) -> FileTypes {
        FileTypes(self.0 | 1 << k as u16)
    }

    pub fn contains(self, k: FileKind) -> bool {
        self.0 & (1 << k as u16) != 0
    }

    pub fn intersects(self, other: FileTypes) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = FileKind> {
        FileKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

/// What a decision still waits for: a rule before the deciding one could match once
/// the body, or the answer, is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// The detectors the waiting `content` rules name; empty: the body is not needed.
    pub content: ContentHits,
    /// The kinds the waiting `file_types` rules name; empty: the answer is not needed.
    pub file_types: FileTypes,
}

impl Pending {
    pub fn body(&self) -> bool {
        !self.content.is_empty()
    }

    pub fn answer(&self) -> bool {
        !self.file_types.is_empty()
    }
}
