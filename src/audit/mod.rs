//! Audit trail (§4.8): see the helper brief; filled in by its owner.
