//! Unblock requests: the signed token carried from the block page to the portal, the
//! requests and decisions in their store, the approvals in force, and the user's pages.

pub mod approvals;
pub mod cli;
pub mod export;
pub mod pages;
pub mod sqlite;
pub mod store;
pub mod token;

use std::sync::Arc;

use approvals::{BlockCounter, LiveApprovals};
use store::{Store, StoreError};

/// The unblock service the proxy and the portal share.
pub struct Unblock {
    pub approvals: LiveApprovals,
    pub blocks: BlockCounter,
}

impl Unblock {
    pub fn new(store: Arc<dyn Store>) -> Result<Unblock, StoreError> {
        Ok(Unblock {
            approvals: LiveApprovals::new(store)?,
            blocks: BlockCounter::default(),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.approvals.store()
    }
}
