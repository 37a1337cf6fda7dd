//! Proxy authentication: filled in by its owner.
