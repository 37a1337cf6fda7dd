//! Tasks in flight, counted so that shutdown can wait for them: open connections on a
//! listener, tunnels and upgraded connections that outlive their HTTP exchange.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts tasks in flight so that shutdown can wait for them.
#[derive(Clone, Default)]
pub struct Tracker(Arc<(AtomicU64, tokio::sync::Notify)>);

impl Tracker {
    pub fn enter(&self) -> TrackerGuard {
        self.0.0.fetch_add(1, Ordering::SeqCst);
        TrackerGuard(self.clone())
    }

    pub fn active(&self) -> u64 {
        self.0.0.load(Ordering::SeqCst)
    }

    /// Waits until no task is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.0.1.notified();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }
}

pub struct TrackerGuard(Tracker);

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if self.0.0.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.1.notify_waiters();
        }
    }
}
