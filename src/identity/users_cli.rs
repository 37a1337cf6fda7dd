//! `charte-proxy users`: filled in by its owner.
