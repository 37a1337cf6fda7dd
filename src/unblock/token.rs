//! Signed unblock tokens: filled in by its owner.
