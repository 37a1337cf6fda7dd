//! Pages people read: filled in by its owner.
