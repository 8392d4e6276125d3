//! One unit of work — a delivery, a job's provisioning attempt, a reconcile
//! action, a machine's callback — must never stop the loop that runs it.
//! [`isolated`] runs a unit and turns a panic in it into a value the caller
//! records on that unit, counted in `rigger_work_panics_total{loop}`.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use crate::metrics::Metrics;

/// The loops whose units are isolated: the `loop` label's fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loop {
    Inbox,
    Provisioner,
    Reconciler,
    Callback,
}

impl Loop {
    pub fn as_str(self) -> &'static str {
        match self {
            Loop::Inbox => "inbox",
            Loop::Provisioner => "provisioner",
            Loop::Reconciler => "reconciler",
            Loop::Callback => "callback",
        }
    }
}

/// A unit of work panicked; `message` is what it panicked with, cut to a
/// length fit for a log line or a job's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rigger hit an internal error (a bug; please report it): {message}")]
pub struct Panicked {
    pub message: String,
}

impl Panicked {
    pub fn from_payload(payload: &(dyn Any + Send)) -> Panicked {
        let raw = if let Some(s) = payload.downcast_ref::<&str>() {
            s
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.as_str()
        } else {
            "a panic without a message"
        };
        Panicked {
            message: crate::text::for_log(raw).into_owned(),
        }
    }
}

/// Run one unit of work of `lp`; a panic in it is logged with `what` (a
/// short, trusted description such as `delivery 1234`), counted, and
/// returned as [`Panicked`] for the caller to record on the unit.
///
/// Unwind safety: a unit shares with the rest of rigger only the store
/// (transactions roll back when dropped), the metrics (atomic) and caches
/// behind mutexes that are read with `unwrap_or_else(into_inner)`; a half-
/// done unit leaves nothing that the next one trusts blindly.
pub async fn isolated<F: Future>(
    metrics: &Metrics,
    lp: Loop,
    what: &str,
    unit: F,
) -> Result<F::Output, Panicked> {
    match AssertUnwindSafe(unit).catch_unwind().await {
        Ok(out) => Ok(out),
        Err(payload) => Err(record(metrics, lp, what, payload.as_ref())),
    }
}

/// As [`isolated`], for a synchronous step.
pub fn isolated_sync<T>(
    metrics: &Metrics,
    lp: Loop,
    what: &str,
    unit: impl FnOnce() -> T,
) -> Result<T, Panicked> {
    match std::panic::catch_unwind(AssertUnwindSafe(unit)) {
        Ok(out) => Ok(out),
        Err(payload) => Err(record(metrics, lp, what, payload.as_ref())),
    }
}

fn record(metrics: &Metrics, lp: Loop, what: &str, payload: &(dyn Any + Send)) -> Panicked {
    let p = Panicked::from_payload(payload);
    metrics.inc("rigger_work_panics_total", &[("loop", lp.as_str())]);
    tracing::error!(
        r#loop = lp.as_str(),
        unit = what,
        "a unit of work panicked; recorded on it, and the loop goes on: {}",
        p.message
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_returned_counted_and_clipped() {
        let m = Metrics::new();
        let long = "ü".repeat(5_000);
        let got = isolated(&m, Loop::Inbox, "delivery d-1", async {
            if long.len() > 1 {
                panic!("cannot read {long}");
            }
            1
        })
        .await
        .unwrap_err();
        assert!(got.message.starts_with("cannot read üü"), "{}", got.message);
        assert!(got.message.chars().count() <= crate::text::LOG_CHARS);
        assert_eq!(
            m.value("rigger_work_panics_total", &[("loop", "inbox")]),
            1.0
        );
        let ok = isolated(&m, Loop::Inbox, "delivery d-2", async { 7 }).await;
        assert_eq!(ok, Ok(7));
        assert_eq!(
            m.value("rigger_work_panics_total", &[("loop", "inbox")]),
            1.0
        );
    }

    #[test]
    fn a_synchronous_panic_too() {
        let m = Metrics::new();
        let got = isolated_sync(&m, Loop::Reconciler, "plan", || -> u8 {
            panic!("{}", String::from("owned message"))
        });
        assert_eq!(got.unwrap_err().message, "owned message");
        assert_eq!(
            m.value("rigger_work_panics_total", &[("loop", "reconciler")]),
            1.0
        );
    }
}
