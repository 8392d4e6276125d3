//! What happens when an engine loop itself ends — a bug past the isolation
//! of its units (`isolate.rs`), since a loop returns only when asked to stop.
//!
//! The choice: a loop that ends unexpectedly is **restarted** after a backoff
//! (1 s, 2 s, 4 s … 60 s), and `/readyz` answers 503 naming it while it is
//! down. A loop that ends [`GIVE_UP_AFTER`] times in a row, without a healthy
//! stretch of [`HEALTHY_RUN`] between, is not restarted again: rigger gives
//! up — `/readyz` stays 503 and the process exits non-zero, so that systemd
//! (`Restart=on-failure`) or Kubernetes starts a fresh process, and the crash
//! loop shows where operators look. rigger never carries on looking healthy
//! with a loop missing.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::Metrics;

/// Consecutive unexpected ends after which rigger stops restarting a loop.
pub const GIVE_UP_AFTER: u32 = 5;
/// A loop that ran this long before ending starts its count afresh.
pub const HEALTHY_RUN: Duration = Duration::from_secs(300);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Whether a watched part still runs.
type Alive = Box<dyn Fn() -> bool + Send + Sync>;

/// What `/readyz` reports beyond the database: loops that are down, and
/// whether rigger gave up.
#[derive(Default)]
pub struct Health {
    down: Mutex<BTreeMap<&'static str, String>>,
    checks: Mutex<Vec<(&'static str, Alive)>>,
    gave_up: Mutex<Option<watch::Sender<Option<String>>>>,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// Everything that keeps rigger from being ready, in words; empty when
    /// all its loops run.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = lock(&self.down)
            .iter()
            .map(|(name, why)| format!("the {name} loop is down: {why}"))
            .collect();
        if let Some(why) = lock(&self.gave_up)
            .as_ref()
            .and_then(|tx| tx.borrow().clone())
        {
            out.push(why);
        }
        for (name, alive) in lock(&self.checks).iter() {
            if !alive() {
                out.push(format!("the {name} stopped"));
            }
        }
        out
    }

    /// A part without a loop of its own to supervise (the inbox's
    /// committer): ready only while `alive` says so.
    pub fn watch(&self, name: &'static str, alive: impl Fn() -> bool + Send + Sync + 'static) {
        lock(&self.checks).push((name, Box::new(alive)));
    }

    /// Resolves with why, once rigger has given up on a loop.
    pub fn given_up(&self) -> watch::Receiver<Option<String>> {
        let mut slot = lock(&self.gave_up);
        match slot.as_ref() {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(None);
                *slot = Some(tx);
                rx
            }
        }
    }

    fn set_down(&self, name: &'static str, why: String) {
        lock(&self.down).insert(name, why);
    }

    fn set_up(&self, name: &'static str) {
        lock(&self.down).remove(name);
    }

    /// Give up on rigger: `/readyz` fails and `App::run` returns with `why`,
    /// so the process exits non-zero. The supervisor calls it; so may tests.
    pub fn give_up(&self, why: String) {
        let _ = self.given_up();
        if let Some(tx) = lock(&self.gave_up).as_ref() {
            tx.send_replace(Some(why));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run the loop `start` makes, and make it again when it ends while `stop`
/// is false, as the module says. Returns when `stop` turns true (the loop
/// finished what it was doing) or when rigger gives up on the loop.
pub async fn supervise<F, Fut>(
    name: &'static str,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut crashes = 0u32;
    loop {
        health.set_up(name);
        let began = tokio::time::Instant::now();
        let why = match tokio::spawn(start()).await {
            Ok(()) if *stop.borrow() => return,
            Ok(()) => "it returned without being asked to stop".to_string(),
            Err(e) if e.is_panic() => format!(
                "it panicked: {}",
                super::isolate::Panicked::from_payload(e.into_panic().as_ref()).message
            ),
            Err(e) => format!("its task ended: {e}"),
        };
        if *stop.borrow() {
            return;
        }
        crashes = if began.elapsed() >= HEALTHY_RUN {
            1
        } else {
            crashes + 1
        };
        metrics.inc("rigger_loop_restarts_total", &[("loop", name)]);
        if crashes >= GIVE_UP_AFTER {
            let why = format!(
                "the {name} loop ended {crashes} times in a row, last because {why}; rigger gives up so that its service manager starts it afresh"
            );
            tracing::error!("{why}");
            health.set_up(name);
            health.give_up(why);
            return;
        }
        let wait = backoff(crashes);
        tracing::error!(
            r#loop = name,
            "the {name} loop ended ({why}); restarting it in {} s",
            wait.as_secs()
        );
        health.set_down(name, format!("{why}; restarting in {} s", wait.as_secs()));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// 1 s after the first end, doubling, at most a minute.
fn backoff(crashes: u32) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1 << crashes.saturating_sub(1).min(16));
    doubled.min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn started(n: &Arc<AtomicU32>) -> u32 {
        n.load(Ordering::SeqCst)
    }

    #[test]
    fn backoff_doubles_to_a_minute() {
        let secs: Vec<u64> = (1..=8).map(|c| backoff(c).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_loop_is_restarted_then_given_up_on() {
        let health = Health::new();
        let metrics = Arc::new(Metrics::new());
        let (_stop_tx, stop) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let mut gave_up = health.given_up();
        let counter = runs.clone();
        let sup = tokio::spawn(supervise(
            "provisioner",
            health.clone(),
            metrics.clone(),
            stop,
            move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    panic!("the loop itself is broken");
                }
            },
        ));
        // Paused time: the backoffs pass as soon as every task waits.
        gave_up.wait_for(|w| w.is_some()).await.unwrap();
        sup.await.unwrap();
        assert_eq!(started(&runs), GIVE_UP_AFTER);
        assert_eq!(
            metrics.value("rigger_loop_restarts_total", &[("loop", "provisioner")]),
            f64::from(GIVE_UP_AFTER)
        );
        let problems = health.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("provisioner loop")
                && problems[0].contains("the loop itself is broken"),
            "{problems:?}"
        );
        assert!(gave_up.borrow().as_ref().unwrap().contains("gives up"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_recovers_is_ready_again() {
        let health = Health::new();
        let metrics = Arc::new(Metrics::new());
        let (stop_tx, stop) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let (ran_tx, mut ran) = watch::channel(0u32);
        let counter = runs.clone();
        let sup = tokio::spawn(supervise(
            "inbox",
            health.clone(),
            metrics.clone(),
            stop,
            move || {
                let counter = counter.clone();
                let ran_tx = ran_tx.clone();
                async move {
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    ran_tx.send_replace(n);
                    if n == 1 {
                        panic!("once");
                    }
                    // The second run stays up until rigger stops.
                    std::future::pending::<()>().await
                }
            },
        ));
        ran.wait_for(|n| *n == 2).await.unwrap();
        assert!(health.problems().is_empty(), "{:?}", health.problems());
        assert_eq!(
            metrics.value("rigger_loop_restarts_total", &[("loop", "inbox")]),
            1.0
        );
        // Asked to stop while down or up, the supervisor returns and never
        // reports a stop as a crash.
        stop_tx.send_replace(true);
        sup.abort();
        assert!(health.given_up().borrow().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_returns_on_stop_is_not_restarted() {
        let health = Health::new();
        let metrics = Arc::new(Metrics::new());
        let (stop_tx, stop) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let counter = runs.clone();
        let loop_stop = stop.clone();
        let sup = tokio::spawn(supervise(
            "reconciler",
            health.clone(),
            metrics.clone(),
            stop,
            move || {
                let counter = counter.clone();
                let mut loop_stop = loop_stop.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = loop_stop.wait_for(|s| *s).await;
                }
            },
        ));
        stop_tx.send_replace(true);
        sup.await.unwrap();
        assert_eq!(started(&runs), 1);
        assert_eq!(
            metrics.value("rigger_loop_restarts_total", &[("loop", "reconciler")]),
            0.0
        );
        assert!(health.problems().is_empty());
    }

    #[test]
    fn a_watched_part_that_stopped_is_a_problem() {
        let health = Health::new();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let a = alive.clone();
        health.watch("inbox committer", move || a.load(Ordering::SeqCst));
        assert!(health.problems().is_empty());
        alive.store(false, Ordering::SeqCst);
        assert_eq!(health.problems(), ["the inbox committer stopped"]);
    }
}
