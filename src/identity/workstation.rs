//! Reverse-DNS workstation names: filled in by its owner.
