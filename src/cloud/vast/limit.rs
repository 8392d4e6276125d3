//! Keeping to Vast.ai's rate limits: one limiter per process, one budget per
//! endpoint, set from Vast.ai's documented figures (its `x-rate-limit`
//! values: search 10 a minute; create one per 4.5 s, with 12 s of penalty
//! after a refusal; show one instance 2 s; list 1 s; destroy 3 s) and
//! changeable in `[vast] rate_limits`.
//!
//! A request takes its endpoint's slot before it is sent. When the slot is
//! not free, nothing is sent: the call ends with `RateLimited` naming the
//! wait until the slot, and the job (or pass) comes back then, in the
//! engine's queue, instead of asking Vast.ai to refuse it. When Vast.ai
//! refuses anyway (a 429: another process on the same key, or figures that
//! changed), the endpoint is closed for at least its interval — a minute
//! for search, the penalty for create — doubling with each 429 in a row, up
//! to 10 minutes; a daily search quota answer closes search until the reset
//! Vast.ai names (`X-RateLimit-Reset`), or the next UTC midnight.
//!
//! Time is the engine's clock, so stories step it exactly.
//!
//! Replicas: Vast.ai counts per API key, and each replica has a limiter of
//! its own (nothing about the slots is kept in the database). With
//! `replicas = N` in `[vast] rate_limits` each keeps to its share of the
//! key's budget: a tenth… of the searches a minute divided by N, every
//! interval N times as long. The shares add up to the budget, but their
//! phases are not agreed: two replicas may still send within one interval
//! of each other, and the one Vast.ai refuses waits its interval (the
//! create penalty) as after any 429. What is shared in the database is the
//! work — which replica provisions which job, in turns — not the slots.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use crate::engine::ports::{Clock, SystemClock};

/// An endpoint with a limit of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Search,
    Create,
    Show,
    List,
    Destroy,
    /// Everything else (labels, logs, SSH keys): no documented figure we use.
    Other,
}

impl Endpoint {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Endpoint::Search => "search",
            Endpoint::Create => "create",
            Endpoint::Show => "show instance",
            Endpoint::List => "list instances",
            Endpoint::Destroy => "destroy",
            Endpoint::Other => "other",
        }
    }
}

const ENDPOINTS: usize = 6;
const MAX_BLOCK_MS: i64 = 600_000;
const DAY_MS: i64 = 86_400_000;

/// The figures rigger keeps to. Intervals in milliseconds; `0` lifts one.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    pub search_per_minute: u32,
    pub create_interval_ms: i64,
    /// How long a refused create closes creates.
    pub create_penalty_ms: i64,
    pub show_interval_ms: i64,
    pub list_interval_ms: i64,
    pub destroy_interval_ms: i64,
    /// How many rigger replicas share the API key: each keeps to its share
    /// of the key's budget (a `1/replicas` of the searches a minute, every
    /// interval `replicas` times as long).
    pub replicas: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::documented()
    }
}

impl RateLimits {
    /// Vast.ai's documented figures.
    pub fn documented() -> RateLimits {
        RateLimits {
            search_per_minute: 10,
            create_interval_ms: 4_500,
            create_penalty_ms: 12_000,
            show_interval_ms: 2_000,
            list_interval_ms: 1_000,
            destroy_interval_ms: 3_000,
            replicas: 1,
        }
    }

    /// No limits (a private test server).
    pub fn none() -> RateLimits {
        RateLimits {
            search_per_minute: 0,
            create_interval_ms: 0,
            create_penalty_ms: 0,
            show_interval_ms: 0,
            list_interval_ms: 0,
            destroy_interval_ms: 0,
            replicas: 1,
        }
    }

    fn interval_ms(&self, e: Endpoint) -> i64 {
        match e {
            // Ten a minute: a refused search waits a whole window.
            Endpoint::Search if self.search_per_minute > 0 => 60_000,
            Endpoint::Search | Endpoint::Other => 0,
            Endpoint::Create => self.create_interval_ms.max(self.create_penalty_ms),
            Endpoint::Show => self.show_interval_ms,
            Endpoint::List => self.list_interval_ms,
            Endpoint::Destroy => self.destroy_interval_ms,
        }
    }

    /// This replica's spacing between two calls of `e`: its share.
    fn spacing_ms(&self, e: Endpoint) -> i64 {
        let key_wide = match e {
            Endpoint::Search | Endpoint::Other => 0,
            Endpoint::Create => self.create_interval_ms,
            Endpoint::Show => self.show_interval_ms,
            Endpoint::List => self.list_interval_ms,
            Endpoint::Destroy => self.destroy_interval_ms,
        };
        key_wide.saturating_mul(i64::from(self.replicas.max(1)))
    }

    /// This replica's searches a minute: its share, at least one.
    fn searches_per_minute(&self) -> usize {
        (self.search_per_minute / self.replicas.max(1)).max(1) as usize
    }
}

impl FromStr for RateLimits {
    type Err = String;

    /// `documented`, `none`, or changes to the documented figures such as
    /// `search_per_minute=5,create_interval_s=6` (seconds for intervals).
    fn from_str(s: &str) -> Result<RateLimits, String> {
        let mut l = RateLimits::documented();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "documented" => l = RateLimits::documented(),
                "none" => l = RateLimits::none(),
                _ => {
                    let (k, v) = item.split_once('=').ok_or_else(|| {
                        format!("`{item}`: write `documented`, `none` or name=value")
                    })?;
                    let secs = || {
                        v.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|x| x.is_finite() && (0.0..=3600.0).contains(x))
                            .map(|x| (x * 1000.0).round() as i64)
                            .ok_or_else(|| {
                                format!("`{k}`: `{v}` is not a number of seconds from 0 to 3600")
                            })
                    };
                    match k.trim() {
                        "search_per_minute" => {
                            l.search_per_minute = v
                                .trim()
                                .parse::<u32>()
                                .ok()
                                .filter(|n| *n <= 10_000)
                                .ok_or_else(|| {
                                    format!("`{k}`: `{v}` is not a whole number up to 10000")
                                })?
                        }
                        "create_interval_s" => l.create_interval_ms = secs()?,
                        "create_penalty_s" => l.create_penalty_ms = secs()?,
                        "show_interval_s" => l.show_interval_ms = secs()?,
                        "list_interval_s" => l.list_interval_ms = secs()?,
                        "destroy_interval_s" => l.destroy_interval_ms = secs()?,
                        "replicas" => {
                            l.replicas = v
                                .trim()
                                .parse::<u32>()
                                .ok()
                                .filter(|n| (1..=100).contains(n))
                                .ok_or_else(|| {
                                    format!("`{k}`: `{v}` is not a whole number from 1 to 100")
                                })?
                        }
                        other => {
                            return Err(format!(
                                "unknown rate limit `{other}`; known: documented, none, \
                                 search_per_minute, create_interval_s, create_penalty_s, \
                                 show_interval_s, list_interval_s, destroy_interval_s, replicas"
                            ));
                        }
                    }
                }
            }
        }
        Ok(l)
    }
}

#[derive(Debug, Default)]
struct State {
    /// When the last searches of the past minute were sent.
    searches: VecDeque<i64>,
    /// The earliest time each endpoint may be called again.
    next_ok: [i64; ENDPOINTS],
    /// 429s in a row, per endpoint (for the backoff).
    strikes: [u32; ENDPOINTS],
    /// When a create booked ahead (see [`Limiter::gap_since_last_ms`]) was last sent.
    last_sent: [Option<i64>; ENDPOINTS],
    /// The times of the create slots booked ahead of their create, earliest
    /// first (slots are alike: a create takes the earliest).
    booked: VecDeque<i64>,
}

/// The process-wide limiter (cheap to clone: clones share the budget).
#[derive(Clone)]
pub struct Limiter {
    limits: RateLimits,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(RateLimits::documented(), Arc::new(SystemClock))
    }
}

impl Limiter {
    /// A new limiter counts creates, destroys, listings and shows as sent just now: the
    /// rigger this one replaces (a restart) may have sent one a moment ago
    /// with the same key, and Vast.ai's interval knows no restarts, while a
    /// refused create costs a 12 s penalty and a refused destroy leaves a
    /// machine billing until it is retried, and a refused listing fails a
    /// `rigger instances` command run right after another. So a process's
    /// first create, destroy, listing or show waits out one interval.
    /// Searches start free: a refused one only costs a retry.
    pub fn new(limits: RateLimits, clock: Arc<dyn Clock>) -> Limiter {
        let now = clock.now_ms();
        let mut state = State::default();
        for e in [
            Endpoint::Create,
            Endpoint::Destroy,
            Endpoint::List,
            Endpoint::Show,
        ] {
            state.next_ok[e.index()] = now + limits.spacing_ms(e);
        }
        Limiter {
            limits,
            clock,
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take `e`'s slot now, or wait for it if that is at most `max_wait_ms`
    /// away (the slot is booked; the caller sleeps the returned wait).
    /// `Err(ms)`: the slot is further away than that; nothing is booked.
    pub fn acquire(&self, e: Endpoint, max_wait_ms: i64) -> Result<i64, i64> {
        let now = self.clock.now_ms();
        let mut s = self.state();
        let mut at = s.next_ok[e.index()].max(now);
        if e == Endpoint::Search && self.limits.search_per_minute > 0 {
            while s.searches.front().is_some_and(|&t| t <= now - 60_000) {
                s.searches.pop_front();
            }
            if s.searches.len() >= self.limits.searches_per_minute() {
                // The oldest in the window leaves it a minute after it was sent.
                let oldest = s.searches.front().copied().unwrap_or(now);
                at = at.max(oldest + 60_001);
            }
        }
        let wait = at - now;
        if wait > max_wait_ms {
            return Err(wait);
        }
        if e == Endpoint::Search && self.limits.search_per_minute > 0 {
            s.searches.push_back(at);
        }
        s.next_ok[e.index()] = at + self.limits.spacing_ms(e);
        Ok(wait)
    }

    /// Vast.ai answered 429: close `e` for at least its interval, doubling
    /// with each 429 in a row. Returns how long.
    pub fn refused(&self, e: Endpoint) -> i64 {
        let now = self.clock.now_ms();
        let mut s = self.state();
        let strikes = s.strikes[e.index()].min(10);
        s.strikes[e.index()] = strikes + 1;
        let base = self.limits.interval_ms(e).max(1_000);
        let block = base.saturating_mul(1 << strikes).min(MAX_BLOCK_MS);
        s.next_ok[e.index()] = s.next_ok[e.index()].max(now + block);
        tracing::warn!(
            endpoint = e.name(),
            wait_s = block / 1000,
            "Vast.ai refused a request as too frequent; rigger waits before asking again"
        );
        block
    }

    /// The day's searches are used up: close search until `reset_ms` (epoch
    /// ms) or, when Vast.ai named none, the next UTC midnight.
    pub fn quota_exhausted(&self, reset_ms: Option<i64>) -> i64 {
        let now = self.clock.now_ms();
        let midnight = (now.div_euclid(DAY_MS) + 1) * DAY_MS;
        let until = reset_ms
            .filter(|&r| r > now && r <= now + 2 * DAY_MS)
            .unwrap_or(midnight);
        let mut s = self.state();
        let i = Endpoint::Search.index();
        s.next_ok[i] = s.next_ok[i].max(until);
        tracing::warn!(
            reset_in_s = (until - now) / 1000,
            "Vast.ai's daily search quota is used up; searches wait for its reset"
        );
        until - now
    }

    /// Book a create slot ahead of the create (before rigger registers the
    /// GitHub runner the machine will need) when it is free now; `Err(ms)`
    /// when it is not, and the job comes back at it. (Booking a later slot
    /// and sleeping for it was tried: with creates in flight side by side,
    /// one sent earlier could reach Vast.ai after one sent at its slot.)
    pub fn book_create(&self) -> Result<(), i64> {
        let wait = self.acquire(Endpoint::Create, 0)?;
        let at = self.clock.now_ms() + wait;
        self.state().booked.push_back(at);
        Ok(())
    }

    /// A create slot booked ahead that no create will use (its attempt
    /// ended first): the latest booking goes, and when no slot was handed
    /// out after it, its time too, so the next create need not wait for a
    /// slot nobody used.
    pub fn unbook_create(&self) {
        let mut s = self.state();
        let Some(at) = s.booked.pop_back() else {
            return;
        };
        let i = Endpoint::Create.index();
        if s.next_ok[i] == at + self.limits.spacing_ms(Endpoint::Create) {
            s.next_ok[i] = at;
        }
    }

    /// The time of the earliest create slot booked ahead, taken for a
    /// create about to be sent; `None` when none is booked.
    pub fn take_booked_create(&self) -> Option<i64> {
        self.state().booked.pop_front()
    }

    /// How long a create with a slot booked for `at` waits before it is
    /// sent: until its slot, and its interval after the last create sent.
    pub fn booked_wait_ms(&self, at: i64) -> i64 {
        (at - self.clock.now_ms()).max(self.gap_since_last_ms(Endpoint::Create))
    }

    /// How long until `e`'s interval has passed since it was last sent (a
    /// booked slot is sent a little after its time; keep the spacing).
    pub fn gap_since_last_ms(&self, e: Endpoint) -> i64 {
        let now = self.clock.now_ms();
        let s = self.state();
        s.last_sent[e.index()].map_or(0, |t| (t + self.limits.spacing_ms(e) - now).max(0))
    }

    /// `e` was sent now.
    pub fn sent(&self, e: Endpoint) {
        let now = self.clock.now_ms();
        self.state().last_sent[e.index()] = Some(now);
    }

    /// Whether `e` has a limit here (a 429 to one without is retried within
    /// the client's retry policy, as by a client without a limiter).
    pub fn limits(&self, e: Endpoint) -> bool {
        self.limits.interval_ms(e) > 0
    }

    /// Wait for a slot taken ahead, on the limiter's clock (a manual clock
    /// moves to the slot; see [`Clock::sleep_ms`]).
    pub async fn sleep_ms(&self, ms: i64) {
        self.clock.sleep_ms(ms).await;
    }

    /// A request went through: the backoff starts again from its interval.
    pub fn answered(&self, e: Endpoint) {
        self.state().strikes[e.index()] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ports::ManualClock;

    /// A limiter past its first intervals, at 1_000_000 ms.
    fn limiter() -> (Limiter, ManualClock) {
        let clock = ManualClock::new(1_000_000 - 5_000);
        let l = Limiter::new(RateLimits::documented(), Arc::new(clock.clone()));
        clock.advance_ms(5_000);
        (l, clock)
    }

    #[test]
    fn a_new_limiter_leaves_its_predecessors_last_calls_their_interval() {
        let clock = ManualClock::new(1_000_000);
        let l = Limiter::new(RateLimits::documented(), Arc::new(clock.clone()));
        // A restarted rigger may follow a destroy sent a moment ago.
        assert_eq!(l.acquire(Endpoint::Destroy, 0), Err(3_000));
        assert_eq!(l.acquire(Endpoint::Create, 0), Err(4_500));
        assert_eq!(
            l.acquire(Endpoint::Search, 0),
            Ok(0),
            "searches count a minute's ten"
        );
        assert_eq!(
            l.acquire(Endpoint::Destroy, 5_000),
            Ok(3_000),
            "a destroy waits for it"
        );
    }

    #[test]
    fn ten_searches_a_minute_then_a_wait_until_the_oldest_leaves_the_window() {
        let (l, clock) = limiter();
        for _ in 0..10 {
            assert_eq!(l.acquire(Endpoint::Search, 0), Ok(0));
            clock.advance_ms(1_000);
        }
        // The first left at 1_000_000; it leaves the window 60 s later.
        assert_eq!(l.acquire(Endpoint::Search, 0), Err(50_001));
        clock.advance_ms(50_001);
        assert_eq!(l.acquire(Endpoint::Search, 0), Ok(0));
    }

    #[test]
    fn creates_are_spaced_by_their_interval_and_may_queue_for_it() {
        let (l, clock) = limiter();
        assert_eq!(l.acquire(Endpoint::Create, 0), Ok(0));
        assert_eq!(l.acquire(Endpoint::Create, 0), Err(4_500));
        assert_eq!(l.acquire(Endpoint::Create, 5_000), Ok(4_500));
        assert_eq!(l.acquire(Endpoint::Create, 0), Err(9_000));
        clock.advance_ms(9_000);
        assert_eq!(l.acquire(Endpoint::Create, 0), Ok(0));
        // Endpoints are independent.
        assert_eq!(l.acquire(Endpoint::Destroy, 0), Ok(0));
    }

    #[test]
    fn a_429_closes_the_endpoint_for_at_least_its_interval_and_backs_off() {
        let (l, _clock) = limiter();
        assert_eq!(l.refused(Endpoint::Search), 60_000);
        assert_eq!(l.refused(Endpoint::Search), 120_000);
        assert_eq!(l.acquire(Endpoint::Search, 0), Err(120_000));
        l.answered(Endpoint::Search);
        assert_eq!(l.refused(Endpoint::Create), 12_000, "the create penalty");
        assert_eq!(l.refused(Endpoint::List), 1_000);
        for _ in 0..20 {
            l.refused(Endpoint::Show);
        }
        assert_eq!(l.refused(Endpoint::Show), MAX_BLOCK_MS);
    }

    #[test]
    fn a_quota_answer_parks_searches_until_its_reset() {
        let (l, _clock) = limiter();
        assert_eq!(l.quota_exhausted(Some(1_000_000 + 3_600_000)), 3_600_000);
        assert_eq!(l.acquire(Endpoint::Search, 0), Err(3_600_000));
        // No reset named (or nonsense): the next UTC midnight.
        let (l, _clock) = limiter();
        assert_eq!(l.quota_exhausted(None), DAY_MS - 1_000_000);
        let (l, _clock) = limiter();
        assert_eq!(l.quota_exhausted(Some(5)), DAY_MS - 1_000_000);
    }

    #[test]
    fn a_create_slot_is_booked_when_free_and_spaces_the_next() {
        let (l, clock) = limiter();
        assert_eq!(l.book_create(), Ok(()));
        assert_eq!(l.book_create(), Err(4_500), "one slot per interval");
        assert_eq!(l.take_booked_create(), Some(1_000_000));
        l.sent(Endpoint::Create);
        assert_eq!(l.take_booked_create(), None);
        clock.advance_ms(1_000);
        assert_eq!(
            l.booked_wait_ms(1_000_000),
            3_500,
            "the spacing to the last"
        );
    }

    #[test]
    fn a_booked_slot_nobody_used_is_given_back() {
        let (l, _clock) = limiter();
        assert_eq!(l.book_create(), Ok(()));
        l.unbook_create();
        assert_eq!(l.take_booked_create(), None, "the booking is gone");
        assert_eq!(l.book_create(), Ok(()));
        assert_eq!(
            l.take_booked_create(),
            Some(1_000_000),
            "and its slot is free again"
        );
        // A slot its create used stays used.
        l.unbook_create();
        assert_eq!(l.book_create(), Err(4_500));
    }

    #[test]
    fn figures_parse_from_settings_text() {
        let l: RateLimits = "search_per_minute=5, create_interval_s=6".parse().unwrap();
        assert_eq!(l.search_per_minute, 5);
        assert_eq!(l.create_interval_ms, 6_000);
        assert_eq!(l.show_interval_ms, 2_000, "the rest stays documented");
        assert_eq!("none".parse::<RateLimits>().unwrap(), RateLimits::none());
        assert!("search_per_minute=-1".parse::<RateLimits>().is_err());
        assert!("create_interval_s=nan".parse::<RateLimits>().is_err());
        assert!("speed=11".parse::<RateLimits>().is_err());
        assert!("replicas=0".parse::<RateLimits>().is_err());
    }

    #[test]
    fn replicas_each_keep_to_their_share_of_the_keys_budget() {
        let clock = ManualClock::new(1_000_000 - 10_000);
        let limits: RateLimits = "replicas=2".parse().unwrap();
        let l = Limiter::new(limits, Arc::new(clock.clone()));
        clock.advance_ms(10_000);
        for _ in 0..5 {
            assert!(l.acquire(Endpoint::Search, 0).is_ok());
        }
        assert!(l.acquire(Endpoint::Search, 0).is_err(), "five of the ten");
        assert_eq!(l.acquire(Endpoint::Create, 0), Ok(0));
        assert_eq!(l.acquire(Endpoint::Create, 0), Err(9_000), "every 9 s");
    }
}
