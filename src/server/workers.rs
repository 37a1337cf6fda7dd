//! Thread-per-core serving: the proxy listener hands each accepted connection to one of
//! N worker threads, each running its own single-threaded tokio runtime. A connection,
//! the tasks it spawns (tunnels, relays) and the pooled upstream connections it uses all
//! live on that one thread: no work stealing, no cross-thread wake-up per request.
//! It costs less CPU a request than tokio's work-stealing runtime (the figures are in
//! DESIGN.md, "Worker threads and the spin").
//! Work that is not per connection (accepting, the trace writer, the portal and admin
//! listeners, reloads) stays on the main runtime.
//!
//! A connection goes to the worker with the fewest open connections, so long tunnels
//! do not pile up on one thread.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Busy-waits for `d` (nothing when zero): the kernel sees the thread as running, so
/// events that arrive meanwhile are found by the next `epoll_wait` without a sleep.
fn spin_for(d: Duration) {
    if d.is_zero() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// The number of workers `configured` asks for. 0 means one per CPU but one, and at
/// least one: the CPU left over runs the kernel's share of the network work, the main
/// runtime (accepting, the trace writer, the portal and admin pages) and reloads, which
/// compile a policy on a thread of their own (DESIGN.md gives the measurement behind
/// this default).
pub fn count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        cpus.saturating_sub(1).max(1)
    }
}

struct Worker {
    handle: Handle,
    open: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The worker threads. Dropping it stops them; tasks still running are cancelled.
pub struct Workers {
    workers: Vec<Worker>,
}

impl Workers {
    /// Starts `n` (at least 1) worker threads, each with a single-threaded runtime.
    ///
    /// A worker that runs out of work spins for `spin` before it sleeps in the kernel
    /// (`epoll_wait`): what arrives meanwhile is picked up without a sleep and a wake-up,
    /// as Go's scheduler spins before it parks (why, and why 5 µs by default: DESIGN.md,
    /// "Worker threads and the spin"). An idle proxy spins once per wake-up, so this
    /// costs nothing when there is no traffic.
    pub fn start(n: usize, spin: Duration) -> std::io::Result<Workers> {
        let mut workers = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(move || spin_for(spin))
                .build()?;
            let handle = rt.handle().clone();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("charte-worker-{i}"))
                .spawn(move || {
                    crate::per_worker::enter(i);
                    rt.block_on(async {
                        let _ = stop_rx.await;
                    });
                    // Dropping the runtime cancels what is left on this worker.
                })?;
            workers.push(Worker {
                handle,
                open: Arc::new(AtomicUsize::new(0)),
                stop: Some(stop_tx),
                thread: Some(thread),
            });
        }
        Ok(Workers { workers })
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Open connections on each worker.
    pub fn load(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.open.load(Ordering::Relaxed))
            .collect()
    }

    /// Serves `stream` on the least busy worker: `serve` gets the stream, registered
    /// with that worker's runtime, and runs there to its end.
    pub fn dispatch<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let w = self
            .workers
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
            .expect("at least one worker");
        // Leave the accepting runtime's reactor; join the worker's inside the worker.
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot hand a connection to a worker: {e}");
                return;
            }
        };
        let open = w.open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        w.handle.spawn(async move {
            let _open = Decrement(open);
            match TcpStream::from_std(std_stream) {
                Ok(s) => serve(s).await,
                Err(e) => tracing::warn!("a worker cannot take a connection: {e}"),
            }
        });
    }
}

struct Decrement(Arc<AtomicUsize>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if let Some(s) = w.stop.take() {
                let _ = s.send(());
            }
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_spin_lasts_at_least_its_duration() {
        // A lower bound only: an upper one would fail whenever the machine is busy.
        for us in [0, 1, 300] {
            let d = Duration::from_micros(us);
            let t = Instant::now();
            spin_for(d);
            assert!(t.elapsed() >= d, "{us} µs: {:?}", t.elapsed());
        }
    }

    #[tokio::test]
    async fn connections_run_on_the_least_busy_worker_and_stop_with_it() {
        let workers = Workers::start(2, Duration::from_micros(20)).unwrap();
        assert_eq!(workers.len(), 2);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut clients = Vec::new();
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..4 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            let (s, _) = l.accept().await.unwrap();
            let seen = seen_tx.clone();
            workers.dispatch(s, move |mut s| async move {
                let name = std::thread::current().name().map(str::to_string);
                let _ = seen.send((crate::per_worker::current(), name));
                // Echo one byte, then hold the connection until the client closes.
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).await.is_ok() {
                    let _ = s.write_all(&b).await;
                    let _ = s.read(&mut b).await;
                }
            });
        }
        let mut on = [0usize; 2];
        for _ in 0..4 {
            let (i, name) = seen_rx.recv().await.unwrap();
            assert_eq!(name.as_deref(), Some(format!("charte-worker-{i}").as_str()));
            on[i] += 1;
        }
        // Four held connections, two workers: two each.
        assert_eq!(on, [2, 2]);
        assert_eq!(workers.load(), vec![2, 2]);
        // The sockets really work from the worker's reactor.
        for c in &mut clients {
            c.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"x");
        }
        drop(clients);
        let done = async {
            while workers.load() != vec![0, 0] {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), done)
            .await
            .expect("the counts come back to zero when connections end");
        drop(workers);
    }

    #[test]
    fn zero_means_one_per_cpu_but_one() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(count(0), cpus.saturating_sub(1).max(1));
        assert_eq!(count(3), 3);
    }
}
