//! "One per worker, pick the caller's": resources that each worker thread keeps for
//! itself (a pool of site connections, an upstream TLS client), and the index of the
//! worker running the calling code. The worker threads themselves are the server's
//! (`server::workers`), which marks each thread with its index through [`enter`]; the
//! actions that keep per-worker resources only read it, so they need nothing above them.

use std::cell::Cell;

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running the calling code; 0 outside the workers (the main
/// runtime shares worker 0's per-worker resources, which are all thread-safe).
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// Marks the calling thread as worker `index` (called once, first thing, by each worker
/// thread).
pub fn enter(index: usize) {
    CURRENT.with(|c| c.set(index));
}

/// One `T` per worker thread (a pool of site connections, say), each used from its own
/// worker; code outside the workers uses worker 0's.
pub struct PerWorker<T>(Box<[T]>);

impl<T> PerWorker<T> {
    /// `make` is called once per worker (at least once).
    pub fn new(workers: usize, mut make: impl FnMut() -> T) -> Self {
        PerWorker((0..workers.max(1)).map(|_| make()).collect())
    }

    /// The calling worker's.
    pub fn get(&self) -> &T {
        &self.0[current() % self.0.len()]
    }
}
