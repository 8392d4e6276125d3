//! Request bodies read under bounds: a size cap, a deadline for the whole
//! body, and a budget of body bytes in flight shared by a route's requests.
//!
//! Without the budget, memory grows with the number of large bodies being
//! read at once (eight 25 MB deliveries took rigger to 223 MB): the budget
//! makes it a constant. A body takes its share before it is read — all of
//! its `Content-Length` at once, or chunk by chunk when it has none — and
//! holds it until its handler is done with it, copies included.
//!
//! Large bodies (over [`LARGE_BODY_BYTES`], or of unknown length) may use
//! all of the budget but its reserve, so that a few large bodies — which
//! anyone can send before the signature is checked — never make GitHub's
//! ordinary deliveries (tens of kilobytes) wait behind them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout_at};

/// A body larger than this is large: it cannot use the budget's reserve.
pub const LARGE_BODY_BYTES: usize = 1024 * 1024;

/// How long a refused client is told to wait before it tries again.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// The bytes of bodies in flight, shared by the requests of one route.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    inner: Arc<Budget>,
}

#[derive(Debug)]
struct Budget {
    /// Every body's bytes.
    all: Arc<Semaphore>,
    /// Large bodies' bytes, taken before `all`: at most `total - reserve`.
    large: Arc<Semaphore>,
    total: usize,
    reserve: usize,
    peak: AtomicUsize,
    refused: AtomicU64,
}

impl BodyBudget {
    /// `total` bytes in flight at most, `reserve` of them for small bodies only.
    pub fn new(total: usize, reserve: usize) -> BodyBudget {
        let reserve = reserve.min(total);
        BodyBudget {
            inner: Arc::new(Budget {
                all: Arc::new(Semaphore::new(total)),
                large: Arc::new(Semaphore::new(total - reserve)),
                total,
                reserve,
                peak: AtomicUsize::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Bytes held now by bodies being read or handled.
    pub fn in_flight(&self) -> usize {
        self.inner.total - self.inner.all.available_permits()
    }

    /// The most bytes ever held at once.
    pub fn peak(&self) -> usize {
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// Requests answered 503 because the budget stayed full too long.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> usize {
        self.inner.total
    }

    /// Take `n` bytes, from the large bodies' share too when `large`,
    /// waiting until `until` at most.
    async fn take(&self, n: usize, large: bool, until: Instant) -> Result<Held, BodyError> {
        let b = &self.inner;
        let ceiling = if large { b.total - b.reserve } else { b.total };
        // Tokio's semaphore counts permits in u32 per call; a share that could
        // never be granted would wait forever.
        let Ok(count) = u32::try_from(n) else {
            return Err(BodyError::TooLarge { max: ceiling });
        };
        if n > ceiling {
            return Err(BodyError::TooLarge { max: ceiling });
        }
        let mut held = Held::default();
        if large {
            held.permits
                .push(self.acquire(&b.large, count, until).await?);
        }
        held.permits.push(self.acquire(&b.all, count, until).await?);
        b.peak.fetch_max(self.in_flight(), Ordering::Relaxed);
        Ok(held)
    }

    async fn acquire(
        &self,
        pool: &Arc<Semaphore>,
        n: u32,
        until: Instant,
    ) -> Result<OwnedSemaphorePermit, BodyError> {
        match timeout_at(until, pool.clone().acquire_many_owned(n)).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treated as full all the same.
            Ok(Err(_)) | Err(_) => {
                self.inner.refused.fetch_add(1, Ordering::Relaxed);
                Err(BodyError::Busy)
            }
        }
    }
}

/// The share of a [`BodyBudget`] a body holds; given back when dropped.
#[derive(Debug, Default)]
pub struct Held {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Held {
    fn absorb(&mut self, other: Held) {
        self.permits.extend(other.permits);
    }
}

/// How one route reads its bodies.
#[derive(Clone, Debug)]
pub struct BodyLimits {
    /// Larger bodies are answered 413.
    pub max_bytes: usize,
    /// The whole body must have arrived this long after its handler began
    /// reading it (a client trickling a body holds a connection and budget).
    pub read_timeout: Duration,
    /// How long a body may wait for its share of the budget before 503.
    pub budget_wait: Duration,
    pub budget: BodyBudget,
}

/// A body read whole, and the budget it holds until dropped.
#[derive(Debug)]
pub struct HeldBody {
    pub bytes: Vec<u8>,
    pub held: Held,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("Content-Length is not a number of bytes")]
    BadLength,
    #[error("the body did not arrive within {} ms; send it at once", .0.as_millis())]
    Timeout(Duration),
    #[error("too many large bodies are being read; retry in {RETRY_AFTER_SECONDS} s")]
    Busy,
    #[error("the body could not be read: the connection failed while it was sent")]
    Broken,
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::BadLength | BodyError::Broken => StatusCode::BAD_REQUEST,
            BodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A fixed word for a metric's `result` label.
    pub fn result(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } => "too_large",
            BodyError::BadLength | BodyError::Broken => "bad_request",
            BodyError::Timeout(_) => "timeout",
            BodyError::Busy => "busy",
        }
    }
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), format!("{self}\n")).into_response();
        if self == BodyError::Busy {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

fn content_length(headers: &HeaderMap) -> Result<Option<usize>, BodyError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            // Past usize it is past any limit too.
            .map(|n| Some(usize::try_from(n).unwrap_or(usize::MAX)))
            .ok_or(BodyError::BadLength),
    }
}

/// Read a whole body within `limits`.
pub async fn read(
    body: Body,
    headers: &HeaderMap,
    limits: &BodyLimits,
) -> Result<HeldBody, BodyError> {
    let declared = content_length(headers)?;
    let max = limits.max_bytes;
    if declared.is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge { max });
    }
    let started = Instant::now();
    let large = declared.is_none_or(|n| n > LARGE_BODY_BYTES);
    let mut held = match declared {
        Some(n) => {
            limits
                .budget
                .take(n, large, started + limits.budget_wait)
                .await?
        }
        None => Held::default(),
    };
    // The deadline starts once the budget is granted: waiting for it is
    // rigger's doing, not the client's.
    let deadline = Instant::now() + limits.read_timeout;
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    let mut stream = body.into_data_stream();
    loop {
        let chunk = match timeout_at(deadline, stream.next()).await {
            Err(_) => return Err(BodyError::Timeout(limits.read_timeout)),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(chunk))) => chunk,
        };
        if bytes.len() + chunk.len() > max {
            return Err(BodyError::TooLarge { max });
        }
        if declared.is_none() {
            held.absorb(limits.budget.take(chunk.len(), true, deadline).await?);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(HeldBody { bytes, held })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, total: usize, reserve: usize) -> BodyLimits {
        BodyLimits {
            max_bytes: max,
            read_timeout: Duration::from_secs(5),
            budget_wait: Duration::from_millis(50),
            budget: BodyBudget::new(total, reserve),
        }
    }

    fn sized(n: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        h
    }

    #[tokio::test]
    async fn a_body_holds_its_share_until_dropped() {
        let l = limits(4 << 20, 4 << 20, 1 << 20);
        let body = read(Body::from(vec![7u8; 2 << 20]), &sized(2 << 20), &l)
            .await
            .unwrap();
        assert_eq!(body.bytes.len(), 2 << 20);
        assert_eq!(l.budget.in_flight(), 2 << 20);
        // A second large body does not fit beside it (3 MiB for large
        // bodies): refused with 503 once the wait is over.
        let e = read(Body::from(vec![7u8; 2 << 20]), &sized(2 << 20), &l)
            .await
            .unwrap_err();
        assert_eq!(
            (e.clone(), e.status()),
            (BodyError::Busy, StatusCode::SERVICE_UNAVAILABLE)
        );
        let response = e.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        // A small one does: the reserve is for it.
        let small = read(Body::from(vec![1u8; 1000]), &sized(1000), &l)
            .await
            .unwrap();
        assert_eq!(l.budget.in_flight(), (2 << 20) + 1000);
        drop((body, small));
        assert_eq!(l.budget.in_flight(), 0);
        assert_eq!(l.budget.peak(), (2 << 20) + 1000);
        assert_eq!(l.budget.refused(), 1);
    }

    #[tokio::test]
    async fn sizes_past_the_limit_are_refused_before_reading() {
        let l = limits(1000, 4000, 0);
        let e = read(Body::from(vec![0u8; 10]), &sized(1001), &l)
            .await
            .unwrap_err();
        assert_eq!(e, BodyError::TooLarge { max: 1000 });
        assert_eq!(l.budget.peak(), 0, "nothing was taken for it");
        // Without a length: counted as it comes, refused once past.
        let e = read(Body::from(vec![0u8; 1001]), &HeaderMap::new(), &l)
            .await
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let ok = read(Body::from(vec![0u8; 1000]), &HeaderMap::new(), &l)
            .await
            .unwrap();
        assert_eq!(l.budget.in_flight(), 1000);
        drop(ok);
        let mut bad = HeaderMap::new();
        bad.insert(header::CONTENT_LENGTH, HeaderValue::from_static("lots"));
        assert_eq!(
            read(Body::empty(), &bad, &l).await.unwrap_err(),
            BodyError::BadLength
        );
        // A share larger than the budget could ever grant is refused, not awaited.
        let l = limits(10_000, 4000, 1000);
        let e = read(Body::from(vec![0u8; 5000]), &sized(5000), &l)
            .await
            .unwrap_err();
        assert_eq!(e, BodyError::TooLarge { max: 4000 });
    }
}
