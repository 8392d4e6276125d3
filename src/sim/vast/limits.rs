//! Vast.ai's rate limits, as its documentation gives them
//! (`shared/reference/vastai-docs/endpoints/*.yaml`, `x-rate-limit`;
//! `rate-limits-and-errors.mdx`): per endpoint and per identity (here: the
//! API key a request carries), a minimum interval between requests, or for
//! the offer search a number of requests a minute. A refused request is
//! answered 429 with the plain-text body `API requests too frequent
//! endpoint threshold=…` and no `Retry-After` (the API sets no rate-limit
//! headers). A daily search quota, when set, is answered
//! `429 {"error":"search_quota_exceeded"}` with `X-RateLimit-Reset` (epoch
//! seconds), as the CLI reads it.
//!
//! The documented figures: search (`POST /api/v0/bundles/`) 10 a minute;
//! create (`PUT /api/v0/asks/{id}/`) threshold 4.5 (penalty 12); show one
//! instance (`GET /api/v0/instances/{id}/`) 2.0; list (`GET
//! /api/v1/instances/`, and the deprecated v0 list, which documents none) 1.0;
//! destroy (`DELETE /api/v0/instances/{id}/`) 3.0; change bid (`PUT
//! /api/v0/instances/bid_price/{id}/`, change_bid.yaml) 5.5. A threshold is read as
//! the minimum seconds between two requests (the rate-limit page: "a
//! minimum interval between requests"); a request refused under a penalty
//! blocks the identity on that endpoint for the penalty's seconds. The
//! daily quota's figure is not documented: it is off unless set.

use std::collections::{BTreeMap, VecDeque};
use std::str::FromStr;

use serde::Serialize;

/// An endpoint Vast.ai limits on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Search,
    Create,
    Show,
    List,
    Destroy,
    ChangeBid,
}

impl Endpoint {
    /// The endpoint `METHOD /path` (ids as `:id`) belongs to, if limited.
    pub fn of_route(route: &str) -> Option<Endpoint> {
        match route {
            "POST /api/v0/bundles" | "PUT /api/v0/search/asks" => Some(Endpoint::Search),
            "PUT /api/v0/asks/:id" => Some(Endpoint::Create),
            "GET /api/v0/instances/:id" => Some(Endpoint::Show),
            "GET /api/v1/instances" | "GET /api/v0/instances" => Some(Endpoint::List),
            "DELETE /api/v0/instances/:id" => Some(Endpoint::Destroy),
            "PUT /api/v0/instances/bid_price/:id" => Some(Endpoint::ChangeBid),
            _ => None,
        }
    }
}

/// The limits in force. All figures in milliseconds or counts; `0` lifts one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// Searches allowed per identity in any 60 s.
    pub search_per_minute: u32,
    /// Minimum interval between creates, and the block after a refused one.
    pub create_interval_ms: i64,
    pub create_penalty_ms: i64,
    pub show_interval_ms: i64,
    pub list_interval_ms: i64,
    pub destroy_interval_ms: i64,
    pub change_bid_interval_ms: i64,
    /// Searches allowed per identity per UTC day (undocumented figure: 0 = off).
    pub search_quota_per_day: u32,
}

impl Limits {
    /// Vast.ai's documented figures.
    pub fn documented() -> Limits {
        Limits {
            search_per_minute: 10,
            create_interval_ms: 4_500,
            create_penalty_ms: 12_000,
            show_interval_ms: 2_000,
            list_interval_ms: 1_000,
            destroy_interval_ms: 3_000,
            change_bid_interval_ms: 5_500,
            search_quota_per_day: 0,
        }
    }

    /// No limits at all.
    pub fn none() -> Limits {
        Limits {
            search_per_minute: 0,
            create_interval_ms: 0,
            create_penalty_ms: 0,
            show_interval_ms: 0,
            list_interval_ms: 0,
            destroy_interval_ms: 0,
            change_bid_interval_ms: 0,
            search_quota_per_day: 0,
        }
    }

    fn interval_ms(&self, e: Endpoint) -> i64 {
        match e {
            Endpoint::Search => 0,
            Endpoint::Create => self.create_interval_ms,
            Endpoint::Show => self.show_interval_ms,
            Endpoint::List => self.list_interval_ms,
            Endpoint::Destroy => self.destroy_interval_ms,
            Endpoint::ChangeBid => self.change_bid_interval_ms,
        }
    }
}

impl FromStr for Limits {
    type Err = String;

    /// `documented`, `none`, or `documented,search_per_minute=20,...`
    /// (seconds for intervals and penalties: `create_interval_s=4.5`).
    fn from_str(s: &str) -> Result<Limits, String> {
        let mut l = Limits::documented();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "documented" => {
                    l = Limits::documented();
                    continue;
                }
                "none" => {
                    l = Limits::none();
                    continue;
                }
                _ => {}
            }
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: write limits as name=value"))?;
            let count = || {
                v.parse::<u32>()
                    .map_err(|_| format!("`{k}`: `{v}` is not a whole number"))
            };
            let secs = || {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0 && *x <= 86_400.0)
                    .map(|x| (x * 1000.0).round() as i64)
                    .ok_or_else(|| format!("`{k}`: `{v}` is not a number of seconds"))
            };
            match k {
                "search_per_minute" => l.search_per_minute = count()?,
                "search_quota_per_day" => l.search_quota_per_day = count()?,
                "create_interval_s" => l.create_interval_ms = secs()?,
                "create_penalty_s" => l.create_penalty_ms = secs()?,
                "show_interval_s" => l.show_interval_ms = secs()?,
                "list_interval_s" => l.list_interval_ms = secs()?,
                "destroy_interval_s" => l.destroy_interval_ms = secs()?,
                "change_bid_interval_s" => l.change_bid_interval_ms = secs()?,
                other => {
                    return Err(format!(
                        "unknown limit `{other}`; known: documented, none, search_per_minute, \
                         search_quota_per_day, create_interval_s, create_penalty_s, \
                         show_interval_s, list_interval_s, destroy_interval_s, \
                         change_bid_interval_s"
                    ));
                }
            }
        }
        Ok(l)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Too frequent: the body names the threshold, as Vast.ai's does.
    TooFrequent { threshold: String },
    /// The day's searches are used up; they come back at `reset_ms`.
    Quota { reset_ms: i64 },
}

const DAY_MS: i64 = 86_400_000;

/// What each identity has done lately.
#[derive(Debug, Default)]
pub struct Limiter {
    /// Search times in the last minute, per identity.
    searches: BTreeMap<String, VecDeque<i64>>,
    /// Searches per identity in the current UTC day: (day, count).
    daily: BTreeMap<String, (i64, u32)>,
    /// The earliest time each (identity, endpoint) may be called again.
    next_ok: BTreeMap<(String, Endpoint), i64>,
    /// 429s answered, per endpoint.
    pub refused: BTreeMap<Endpoint, u64>,
}

impl Limiter {
    /// Admit or refuse one request of `who` to `e` at `now_ms`.
    pub fn check(
        &mut self,
        limits: &Limits,
        who: &str,
        e: Endpoint,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let verdict = self.decide(limits, who, e, now_ms);
        if verdict.is_err() {
            *self.refused.entry(e).or_default() += 1;
        }
        verdict
    }

    fn decide(
        &mut self,
        limits: &Limits,
        who: &str,
        e: Endpoint,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        if e == Endpoint::Search {
            if limits.search_quota_per_day > 0 {
                let day = now_ms.div_euclid(DAY_MS);
                let (d, n) = self.daily.entry(who.to_string()).or_insert((day, 0));
                if *d != day {
                    *d = day;
                    *n = 0;
                }
                if *n >= limits.search_quota_per_day {
                    return Err(Refusal::Quota {
                        reset_ms: (day + 1) * DAY_MS,
                    });
                }
            }
            if limits.search_per_minute > 0 {
                let times = self.searches.entry(who.to_string()).or_default();
                while times.front().is_some_and(|&t| t <= now_ms - 60_000) {
                    times.pop_front();
                }
                if times.len() >= limits.search_per_minute as usize {
                    return Err(Refusal::TooFrequent {
                        threshold: format!("{}/min", limits.search_per_minute),
                    });
                }
                times.push_back(now_ms);
            }
            if limits.search_quota_per_day > 0
                && let Some((_, n)) = self.daily.get_mut(who)
            {
                *n += 1;
            }
            return Ok(());
        }
        let interval = limits.interval_ms(e);
        if interval <= 0 {
            return Ok(());
        }
        let key = (who.to_string(), e);
        let next = self.next_ok.get(&key).copied().unwrap_or(i64::MIN);
        if now_ms < next {
            if e == Endpoint::Create && limits.create_penalty_ms > 0 {
                self.next_ok.insert(key, now_ms + limits.create_penalty_ms);
            }
            return Err(Refusal::TooFrequent {
                threshold: format!("{:.1}", interval as f64 / 1000.0),
            });
        }
        self.next_ok.insert(key, now_ms + interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_allows_ten_a_minute_per_identity() {
        let l = Limits::documented();
        let mut lim = Limiter::default();
        for i in 0..10 {
            assert!(lim.check(&l, "a", Endpoint::Search, i * 100).is_ok(), "{i}");
        }
        assert!(lim.check(&l, "a", Endpoint::Search, 5_000).is_err());
        assert!(lim.check(&l, "b", Endpoint::Search, 5_000).is_ok());
        assert!(lim.check(&l, "a", Endpoint::Search, 60_001).is_ok());
    }

    #[test]
    fn create_keeps_its_interval_and_a_refusal_costs_the_penalty() {
        let l = Limits::documented();
        let mut lim = Limiter::default();
        assert!(lim.check(&l, "a", Endpoint::Create, 0).is_ok());
        assert!(lim.check(&l, "a", Endpoint::Create, 4_000).is_err());
        // Refused at 4 s: blocked until 16 s.
        assert!(lim.check(&l, "a", Endpoint::Create, 10_000).is_err());
        assert!(lim.check(&l, "a", Endpoint::Create, 22_000).is_ok());
    }

    #[test]
    fn change_bid_keeps_its_documented_interval() {
        assert_eq!(
            Endpoint::of_route("PUT /api/v0/instances/bid_price/:id"),
            Some(Endpoint::ChangeBid)
        );
        let l = Limits::documented();
        let mut lim = Limiter::default();
        assert!(lim.check(&l, "a", Endpoint::ChangeBid, 0).is_ok());
        assert_eq!(
            lim.check(&l, "a", Endpoint::ChangeBid, 5_000),
            Err(Refusal::TooFrequent {
                threshold: "5.5".into()
            })
        );
        assert!(lim.check(&l, "b", Endpoint::ChangeBid, 5_000).is_ok());
        assert!(lim.check(&l, "a", Endpoint::ChangeBid, 5_500).is_ok());
        let lifted: Limits = "change_bid_interval_s=0".parse().unwrap();
        assert!(lim.check(&lifted, "a", Endpoint::ChangeBid, 5_501).is_ok());
    }

    #[test]
    fn the_daily_quota_resets_at_midnight_utc() {
        let l: Limits = "search_per_minute=0,search_quota_per_day=2"
            .parse()
            .unwrap();
        let mut lim = Limiter::default();
        assert!(lim.check(&l, "a", Endpoint::Search, 1).is_ok());
        assert!(lim.check(&l, "a", Endpoint::Search, 2).is_ok());
        assert_eq!(
            lim.check(&l, "a", Endpoint::Search, 3),
            Err(Refusal::Quota { reset_ms: DAY_MS })
        );
        assert!(lim.check(&l, "a", Endpoint::Search, DAY_MS).is_ok());
    }

    #[test]
    fn limits_parse_and_refuse_nonsense() {
        let l: Limits = "documented,create_interval_s=1.5".parse().unwrap();
        assert_eq!(l.create_interval_ms, 1_500);
        assert_eq!("none".parse::<Limits>().unwrap(), Limits::none());
        assert!("bogus=1".parse::<Limits>().is_err());
        assert!("create_interval_s=-1".parse::<Limits>().is_err());
    }
}
