//! Unblock requests: the signed token carried from the block page to the portal, and
//! (later) the request flow, its store and its pages.

pub mod token;
