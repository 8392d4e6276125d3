//! Serving rigger's HTTP to clients that may be hostile.
//!
//! `axum::serve` reads a request's headers with no deadline, keeps an idle
//! connection for ever and accepts without bound: 1,100 clients sending their
//! headers a byte at a time used up the default 1,024 file descriptors, and
//! real deliveries timed out. Here, with hyper's HTTP/1.1 directly:
//!
//! - a request's head must arrive within `header_read_timeout` of the
//!   connection being ready for it (hyper's timer, which starts again for
//!   each request of a keep-alive connection): trickling bytes does not
//!   reset it;
//! - a connection with no request in flight is closed after `idle_timeout`;
//! - at most `max_connections` are open, below the process's file limit,
//!   whose soft value is first raised to its hard one. At the cap, a new
//!   connection closes the one that has waited longest for a request's
//!   head: a slow client has had the most time to send one, while GitHub
//!   sends its delivery at once, so a real delivery always finds room. A
//!   connection with a request in flight is never closed to make room
//!   (its body has its own deadline, see [`super::body`]). There is no cap
//!   per client address: GitHub delivers from a handful of addresses, and
//!   behind a proxy every client has the proxy's, so such a cap would turn
//!   real deliveries away first;
//! - a request head larger than `max_header_bytes` is refused, so that an
//!   open connection costs at most that much buffer;
//! - shutdown stops accepting, closes connections that never sent a request,
//!   lets requests in flight finish (hyper closes each connection after its
//!   response), and closes what is left after `shutdown_grace`.
//!
//! Only HTTP/1.1 is served: GitHub delivers webhooks over it, and an
//! HTTP/2-or-1 sniffer would read a connection's first bytes with no deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_service::Service as _;

/// How rigger serves HTTP; [`ServeLimits::default`] is what `rigger serve` uses.
#[derive(Clone, Debug)]
pub struct ServeLimits {
    /// A request's head must have arrived this long after the connection
    /// became ready for it. GitHub sends its at once.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Open connections at most; `None` takes [`connection_cap`] of the
    /// process's file limit, after raising it.
    pub max_connections: Option<usize>,
    /// The largest request head read (hyper's read buffer; at least 8 KiB).
    pub max_header_bytes: usize,
    /// After shutdown begins, how long requests in flight have to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> ServeLimits {
        ServeLimits {
            // GitHub's deadline for a whole delivery is 10 s; its headers
            // come in the first packet.
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            max_connections: None,
            // GitHub's headers are about 1 KiB.
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Most connections rigger keeps open whatever its file limit: each may
/// hold a [`ServeLimits::max_header_bytes`] buffer.
pub const MAX_CONNECTIONS: usize = 4096;

/// The open connections to allow under a file limit of `fds`: a quarter of
/// them (between 64 and 1,024) stay for everything else rigger opens — its
/// database connections, its calls to GitHub and Vast.ai, its files.
pub fn connection_cap(fds: u64) -> usize {
    let fds = usize::try_from(fds).unwrap_or(usize::MAX);
    let reserve = (fds / 4).clamp(64, 1024);
    fds.saturating_sub(reserve)
        .max(fds / 2)
        .clamp(1, MAX_CONNECTIONS)
}

/// Raise this process's soft limit on open files to its hard limit, as
/// servers commonly do at start-up (the default soft limit, 1,024, is
/// there for programs that use `select`, which rigger does not). Returns
/// the soft limit now in force; done once per process.
pub fn raise_fd_limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let limit = fd_limit::raise();
        tracing::debug!("open file limit: {limit}");
        limit
    })
}

#[cfg(unix)]
mod fd_limit {
    /// What a process is assumed to have when its limit cannot be read.
    const FALLBACK: u64 = 1024;

    pub fn raise() -> u64 {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given, which lives
        // for the whole call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return FALLBACK;
        }
        if limit.rlim_cur >= limit.rlim_max {
            return to_u64(limit.rlim_cur);
        }
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given. It may refuse
        // (some systems cap the soft limit below an infinite hard one):
        // the limit then stays as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            to_u64(raised.rlim_cur)
        } else {
            to_u64(limit.rlim_cur)
        }
    }

    /// `rlim_t` is 64 bits on the systems rigger runs on, 32 on some others.
    #[allow(clippy::unnecessary_cast)]
    pub fn to_u64(v: libc::rlim_t) -> u64 {
        v as u64
    }
}

#[cfg(not(unix))]
mod fd_limit {
    pub fn raise() -> u64 {
        // Windows has no such per-process limit worth the name.
        u64::MAX
    }
}

/// What one connection is doing, as the admission and its own timer see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's head since `since` (`seq` orders the waiting
    /// connections, oldest first); `fresh` until its first request.
    Waiting {
        seq: u64,
        since: Instant,
        fresh: bool,
    },
    /// Handling this many requests.
    Busy(usize),
    /// Chosen to make room: its task closes it.
    Evicted,
}

struct Conn {
    phase: watch::Sender<Phase>,
}

#[derive(Default)]
struct Table {
    open: usize,
    /// Evicted connections not yet closed: each will free a place.
    evicting: usize,
    next_seq: u64,
    /// The connections waiting for a request's head, oldest first.
    waiting: BTreeMap<u64, Arc<Conn>>,
}

impl Table {
    /// Mark `conn` waiting from now.
    fn wait(&mut self, conn: &Arc<Conn>, fresh: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.waiting.insert(seq, conn.clone());
        conn.phase.send_replace(Phase::Waiting {
            seq,
            since: Instant::now(),
            fresh,
        });
    }
}

/// Which connections may be open, shared by the accept loop and every
/// connection's task.
struct Admission {
    cap: usize,
    table: Mutex<Table>,
    /// Notified when a connection closes, or becomes one that may be closed
    /// to make room.
    freed: Notify,
    accepted: AtomicU64,
    evicted: AtomicU64,
    idle_closed: AtomicU64,
    peak: AtomicUsize,
}

impl Admission {
    fn table(&self) -> MutexGuard<'_, Table> {
        // No code holding the lock can panic; a poisoned table is still whole.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection, waiting for one when all are taken.
    async fn admit(self: &Arc<Self>) -> Slot {
        loop {
            if let Some(slot) = self.try_admit() {
                return slot;
            }
            // A close between `try_admit` and here leaves a permit: no wake-up is lost.
            self.freed.notified().await;
        }
    }

    fn try_admit(self: &Arc<Self>) -> Option<Slot> {
        let mut t = self.table();
        if t.open < self.cap {
            t.open += 1;
            self.peak.fetch_max(t.open, Ordering::Relaxed);
            self.accepted.fetch_add(1, Ordering::Relaxed);
            let conn = Arc::new(Conn {
                phase: watch::channel(Phase::Busy(0)).0,
            });
            t.wait(&conn, true);
            return Some(Slot {
                admission: self.clone(),
                conn,
            });
        }
        // Full: make room by closing the connection that has waited longest
        // for a request, unless one is already closing.
        if t.evicting == 0
            && let Some((_, oldest)) = t.waiting.pop_first()
        {
            oldest.phase.send_replace(Phase::Evicted);
            t.evicting += 1;
            let n = self.evicted.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(1000) {
                tracing::warn!(
                    "{} connections open, the most allowed: closed the one waiting longest for a request ({n} so far)",
                    self.cap
                );
            }
        }
        None
    }
}

/// A connection's place; given back when its task ends.
struct Slot {
    admission: Arc<Admission>,
    conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.admission.table();
        t.open -= 1;
        match *self.conn.phase.borrow() {
            Phase::Waiting { seq, .. } => {
                t.waiting.remove(&seq);
            }
            Phase::Evicted => t.evicting -= 1,
            Phase::Busy(_) => {}
        }
        drop(t);
        self.admission.freed.notify_one();
    }
}

/// A request being handled on a connection: while one is, the connection
/// is busy, neither idle nor a candidate to make room.
struct InFlight {
    admission: Arc<Admission>,
    conn: Arc<Conn>,
}

impl InFlight {
    fn begin(admission: &Arc<Admission>, conn: &Arc<Conn>) -> InFlight {
        let mut t = admission.table();
        let phase = *conn.phase.borrow();
        match phase {
            Phase::Waiting { seq, .. } => {
                t.waiting.remove(&seq);
                conn.phase.send_replace(Phase::Busy(1));
            }
            Phase::Busy(n) => {
                conn.phase.send_replace(Phase::Busy(n + 1));
            }
            // Its task is closing it; the request goes with it.
            Phase::Evicted => {}
        }
        InFlight {
            admission: admission.clone(),
            conn: conn.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut t = self.admission.table();
        let phase = *self.conn.phase.borrow();
        match phase {
            Phase::Busy(1) => {
                t.wait(&self.conn, false);
                drop(t);
                // At the cap, the accept loop may be waiting for a
                // connection it can close to make room: this one now is.
                self.admission.freed.notify_one();
            }
            Phase::Busy(n) => {
                self.conn
                    .phase
                    .send_replace(Phase::Busy(n.saturating_sub(1)));
            }
            Phase::Waiting { .. } | Phase::Evicted => {}
        }
    }
}

/// The server's own account of its connections.
#[derive(Clone)]
pub struct ConnStats {
    admission: Arc<Admission>,
}

impl ConnStats {
    /// The most connections open at once allowed.
    pub fn cap(&self) -> usize {
        self.admission.cap
    }
    pub fn open(&self) -> usize {
        self.admission.table().open
    }
    /// The most connections ever open at once.
    pub fn peak(&self) -> usize {
        self.admission.peak.load(Ordering::Relaxed)
    }
    pub fn accepted(&self) -> u64 {
        self.admission.accepted.load(Ordering::Relaxed)
    }
    /// Connections closed to make room for a new one.
    pub fn evicted(&self) -> u64 {
        self.admission.evicted.load(Ordering::Relaxed)
    }
    /// Connections closed for having no request for `idle_timeout`.
    pub fn idle_closed(&self) -> u64 {
        self.admission.idle_closed.load(Ordering::Relaxed)
    }
}

/// rigger's HTTP server: a listener, the router, and the limits above.
pub struct Server {
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    admission: Arc<Admission>,
}

impl Server {
    pub fn new(listener: TcpListener, router: Router, limits: ServeLimits) -> Server {
        let cap = limits
            .max_connections
            .unwrap_or_else(|| connection_cap(raise_fd_limit()))
            .max(1);
        Server {
            listener,
            router,
            limits,
            admission: Arc::new(Admission {
                cap,
                table: Mutex::new(Table::default()),
                freed: Notify::new(),
                accepted: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
                idle_closed: AtomicU64::new(0),
                peak: AtomicUsize::new(0),
            }),
        }
    }

    pub fn stats(&self) -> ConnStats {
        ConnStats {
            admission: self.admission.clone(),
        }
    }

    /// Serve until `shutdown` resolves; then stop accepting, let requests in
    /// flight finish (for `shutdown_grace` at most), and return.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            router,
            limits,
            admission,
        } = self;
        let (stop, stopping) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut shutdown = pin!(shutdown);
        loop {
            // Finished connections leave the set here, so it stays as large
            // as the connections open.
            while connections.try_join_next().is_some() {}
            let stream = tokio::select! {
                () = &mut shutdown => break,
                stream = accept(&listener) => stream,
            };
            let slot = tokio::select! {
                () = &mut shutdown => break,
                slot = admission.admit() => slot,
            };
            connections.spawn(serve_connection(
                stream,
                slot,
                router.clone(),
                limits.clone(),
                stopping.clone(),
            ));
        }
        // New connections are refused from here on.
        drop(listener);
        stop.send_replace(true);
        let drained = tokio::time::timeout(limits.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "{} connections still open {} s after shutdown began: closed",
                connections.len(),
                limits.shutdown_grace.as_secs()
            );
            connections.shutdown().await;
        }
    }
}

/// The next connection. Errors that concern one connection are skipped;
/// others (out of file descriptors, say) are waited out briefly, so that
/// the loop neither ends nor spins.
async fn accept(listener: &TcpListener) -> TcpStream {
    use std::io::ErrorKind;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Small responses go out at once, not after Nagle's delay.
                let _ = stream.set_nodelay(true);
                return stream;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionAborted
                        | ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => {
                tracing::warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Why a connection was closed by rigger rather than by HTTP.
enum Close {
    Evicted,
    Idle,
    /// Shutting down, and it never sent a request.
    Unused,
}

async fn serve_connection(
    stream: TcpStream,
    slot: Slot,
    router: Router,
    limits: ServeLimits,
    mut stopping: watch::Receiver<bool>,
) {
    let service = {
        let (admission, conn) = (slot.admission.clone(), slot.conn.clone());
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = InFlight::begin(&admission, &conn);
            let mut router = router.clone();
            async move {
                let _in_flight = in_flight;
                // A Router is always ready: no `poll_ready` to wait for.
                router.call(request).await
            }
        })
    };
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let http = http.serve_connection(TokioIo::new(stream), service);
    let mut http = pin!(http);
    let mut phase = slot.conn.phase.subscribe();
    let mut draining = false;
    loop {
        tokio::select! {
            ended = http.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!("a connection ended: {e}");
                }
                return;
            }
            why = must_close(&mut phase, limits.idle_timeout, draining) => {
                if matches!(why, Close::Idle) {
                    slot.admission.idle_closed.fetch_add(1, Ordering::Relaxed);
                }
                // Dropping the connection closes it.
                return;
            }
            _ = stopping.changed(), if !draining => {
                draining = true;
                // Closes it now if idle, else after the response in flight.
                http.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves when rigger, not HTTP, must close the connection.
async fn must_close(phase: &mut watch::Receiver<Phase>, idle: Duration, draining: bool) -> Close {
    loop {
        let now = *phase.borrow_and_update();
        match now {
            Phase::Evicted => return Close::Evicted,
            Phase::Waiting { fresh: true, .. } if draining => return Close::Unused,
            Phase::Waiting { since, .. } => {
                if tokio::time::timeout_at(since + idle, changed(phase))
                    .await
                    .is_err()
                {
                    return Close::Idle;
                }
            }
            Phase::Busy(_) => changed(phase).await,
        }
    }
}

/// The phase's next change. Its sender lives as long as the connection's
/// task, so it always comes, or the task ends first.
async fn changed(phase: &mut watch::Receiver<Phase>) {
    if phase.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_files_for_the_rest_of_rigger() {
        assert_eq!(connection_cap(1024), 768);
        assert_eq!(connection_cap(256), 192);
        assert_eq!(connection_cap(100), 50);
        assert_eq!(connection_cap(1), 1);
        assert_eq!(connection_cap(20_000), MAX_CONNECTIONS);
        assert_eq!(connection_cap(u64::MAX), MAX_CONNECTIONS);
    }

    #[test]
    fn the_soft_file_limit_is_raised_to_the_hard_one() {
        let read = || {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: as in `fd_limit::raise`.
            assert_eq!(
                unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
                0
            );
            limit
        };
        let before = read();
        // Lower the soft limit to the common default (for an instant: the
        // other tests of this process open far fewer files), then raise it.
        let lowered = libc::rlimit {
            rlim_cur: before.rlim_max.min(1024),
            rlim_max: before.rlim_max,
        };
        // SAFETY: as in `fd_limit::raise`.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let raised = fd_limit::raise();
        let after = read();
        assert_eq!(after.rlim_cur, before.rlim_max, "raised to the hard limit");
        assert_eq!(raised, fd_limit::to_u64(after.rlim_cur));
    }
}
