//! rigger's pace on GitHub: it keeps within GitHub's standing secondary
//! limits rather than meeting them. GitHub's "Rate limits for the REST API"
//! allows, generally, 80 content-generating requests a minute and 500 an
//! hour, and 900 points a minute on one REST endpoint (GET, HEAD, OPTIONS 1
//! point; POST, PATCH, PUT, DELETE 5), and says that continuing to meet a
//! secondary limit may get an integration banned. The content limits are
//! counted per budget (an installation's token, the App's JWT), as GitHub
//! counts its limits per installation; every write counts as content (GitHub
//! does not list which requests generate content).
//!
//! A request that would go over a share of those limits (90 % by default:
//! 72 writes a minute, 450 an hour, 810 points a minute per endpoint) is
//! not sent: it fails at once with `RateLimited` and the time until a slot
//! frees, like a budget waiting out a limit, and the engine's loops come
//! back then. Not waiting here keeps workers and connections free, and
//! waits of up to an hour could not be bounded anyway.
//!
//! Priorities: a job's JIT registration, its runner's deletion and its
//! final check-run update are essential and may use the whole pace. An
//! intermediate check-run write (no conclusion yet: "Booting" and the
//! like) is deferrable: it goes out only while the window is at most half
//! used, so the other half is always left for the essential writes. A
//! deferrable write held back loses nothing: the store keeps the newest
//! wanted content, and the reconciler sends only that when its turn comes
//! (coalesced: one write instead of several, often the final one).

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use super::http::Budget;

/// GitHub's limits ("Rate limits for the REST API", secondary rate limits).
pub const CONTENT_PER_MINUTE: u32 = 80;
pub const CONTENT_PER_HOUR: u32 = 500;
pub const ENDPOINT_POINTS_PER_MINUTE: u32 = 900;

/// The share of GitHub's limits rigger uses by default, in percent.
pub const DEFAULT_SHARE_PERCENT: u32 = 90;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

/// How much a write matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Registrations, deletions, final check-run updates, anything else.
    Essential,
    /// An in-progress check-run write: the store keeps it, a later one replaces it.
    Deferrable,
}

impl Priority {
    pub fn label(self) -> &'static str {
        match self {
            Priority::Essential => "essential",
            Priority::Deferrable => "deferrable",
        }
    }
}

/// A request's priority, from what it is: one place decides.
pub fn priority(method: &str, path: &str, body: Option<&Value>) -> Priority {
    let check_run = path.contains("/check-runs");
    let final_update =
        body.and_then(|b| b.get("status")).and_then(Value::as_str) == Some("completed");
    if is_write(method) && check_run && !final_update {
        Priority::Deferrable
    } else {
        Priority::Essential
    }
}

pub fn is_write(method: &str) -> bool {
    matches!(method, "POST" | "PATCH" | "PUT" | "DELETE")
}

/// An endpoint as GitHub's reference names one: the method and the path
/// template (numbers, owner, repository and organization as placeholders).
pub fn endpoint(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let mut segs: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| if s.parse::<i64>().is_ok() { "{id}" } else { s })
        .collect();
    match segs.first().copied() {
        Some("repos") if segs.len() >= 3 => {
            segs[1] = "{owner}";
            segs[2] = "{repo}";
        }
        Some("orgs" | "users") if segs.len() >= 2 => segs[1] = "{org}",
        _ => {}
    }
    format!("{method} /{}", segs.join("/"))
}

/// The pace's caps: a share of GitHub's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub per_minute: usize,
    pub per_hour: usize,
    pub points_per_minute: u32,
}

impl Caps {
    /// `percent` of GitHub's limits (1 to 100; at least one write each).
    pub fn share(percent: u32) -> Caps {
        Caps::share_of(percent, CONTENT_PER_MINUTE, CONTENT_PER_HOUR)
    }

    /// `percent` of content limits of `per_minute` and `per_hour` (a GitHub
    /// Enterprise Server whose administrator set others, or a rehearsal
    /// against a simulated GitHub that runs faster).
    pub fn share_of(percent: u32, per_minute: u32, per_hour: u32) -> Caps {
        let p = u64::from(percent.clamp(1, 100));
        let of = |n: u32| ((u64::from(n) * p) / 100).max(1);
        Caps {
            per_minute: of(per_minute) as usize,
            per_hour: of(per_hour) as usize,
            points_per_minute: of(ENDPOINT_POINTS_PER_MINUTE) as u32,
        }
    }

    /// What a write of this priority may fill the windows to.
    fn for_priority(&self, p: Priority) -> (usize, usize) {
        match p {
            Priority::Essential => (self.per_minute, self.per_hour),
            Priority::Deferrable => ((self.per_minute / 2).max(1), (self.per_hour / 2).max(1)),
        }
    }
}

/// What was sent on each budget, to pace what comes next.
#[derive(Debug)]
pub struct Pace {
    caps: Caps,
    /// Writes sent per budget in the last hour, oldest first.
    writes: HashMap<Budget, VecDeque<i64>>,
    /// Points spent per budget and endpoint in the last minute.
    points: HashMap<(Budget, String), VecDeque<(i64, u32)>>,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace::new(Caps::share(DEFAULT_SHARE_PERCENT))
    }
}

impl Pace {
    pub fn new(caps: Caps) -> Pace {
        Pace {
            caps,
            writes: HashMap::new(),
            points: HashMap::new(),
        }
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// May this request go out now? Yes: it is counted. No: how long until
    /// it may (ms, at least one).
    pub fn admit(
        &mut self,
        budget: Budget,
        method: &str,
        path: &str,
        priority: Priority,
        now: i64,
    ) -> Result<(), i64> {
        if budget == Budget::Anonymous {
            return Ok(());
        }
        let write = is_write(method);
        let mut wait = 0_i64;
        if write {
            let sent = self.writes.entry(budget).or_default();
            while sent.front().is_some_and(|t| now - t >= HOUR_MS) {
                sent.pop_front();
            }
            let (minute_cap, hour_cap) = self.caps.for_priority(priority);
            let in_minute: Vec<i64> = sent
                .iter()
                .copied()
                .filter(|t| now - t < MINUTE_MS)
                .collect();
            if in_minute.len() >= minute_cap {
                // The write that must leave the window for one more to fit.
                let leaving = in_minute[in_minute.len() - minute_cap];
                wait = wait.max(leaving + MINUTE_MS - now);
            }
            if sent.len() >= hour_cap {
                let leaving = sent[sent.len() - hour_cap];
                wait = wait.max(leaving + HOUR_MS - now);
            }
        }
        let cost = if write { 5 } else { 1 };
        let spent = self
            .points
            .entry((budget, endpoint(method, path)))
            .or_default();
        while spent.front().is_some_and(|(t, _)| now - t >= MINUTE_MS) {
            spent.pop_front();
        }
        let mut total: u32 = spent.iter().map(|(_, p)| p).sum();
        if total + cost > self.caps.points_per_minute {
            for (t, p) in spent.iter() {
                total -= p;
                if total + cost <= self.caps.points_per_minute {
                    wait = wait.max(t + MINUTE_MS - now);
                    break;
                }
            }
        }
        if wait > 0 {
            return Err(wait.max(1_000));
        }
        spent.push_back((now, cost));
        if write {
            self.writes.entry(budget).or_default().push_back(now);
        }
        Ok(())
    }

    /// Writes on a budget in the minute and the hour before `now`.
    pub fn writes_in(&self, budget: Budget, now: i64) -> (usize, usize) {
        let Some(sent) = self.writes.get(&budget) else {
            return (0, 0);
        };
        let hour = sent.iter().filter(|t| now - **t < HOUR_MS).count();
        let minute = sent.iter().filter(|t| now - **t < MINUTE_MS).count();
        (minute, hour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const INST: Budget = Budget::Installation(7);

    #[test]
    fn the_default_share_is_ninety_percent_of_githubs_limits() {
        assert_eq!(
            Caps::share(90),
            Caps {
                per_minute: 72,
                per_hour: 450,
                points_per_minute: 810
            }
        );
        assert_eq!(Caps::share(0).per_minute, 1);
        assert_eq!(Caps::share(500).per_hour, 500);
    }

    #[test]
    fn writes_are_told_by_priority() {
        let path = "/repos/acme/ml/check-runs/12";
        let booting = json!({"status": "in_progress", "output": {}});
        let done = json!({"status": "completed", "conclusion": "success"});
        assert_eq!(
            priority("PATCH", path, Some(&booting)),
            Priority::Deferrable
        );
        assert_eq!(
            priority("POST", "/repos/acme/ml/check-runs", Some(&booting)),
            Priority::Deferrable
        );
        assert_eq!(priority("PATCH", path, Some(&done)), Priority::Essential);
        assert_eq!(
            priority(
                "POST",
                "/orgs/acme/actions/runners/generate-jitconfig",
                None
            ),
            Priority::Essential
        );
        assert_eq!(priority("GET", path, None), Priority::Essential);
    }

    #[test]
    fn endpoints_are_templates() {
        assert_eq!(
            endpoint("PATCH", "/repos/acme/ml/check-runs/12"),
            "PATCH /repos/{owner}/{repo}/check-runs/{id}"
        );
        assert_eq!(
            endpoint("DELETE", "/orgs/acme/actions/runners/5"),
            "DELETE /orgs/{org}/actions/runners/{id}"
        );
    }

    #[test]
    fn essential_writes_fill_the_minute_and_then_wait_for_its_oldest() {
        let mut p = Pace::default();
        let jit = "/orgs/acme/actions/runners/generate-jitconfig";
        for i in 0..72 {
            p.admit(INST, "POST", jit, Priority::Essential, 1_000 + i)
                .unwrap();
        }
        assert_eq!(
            p.admit(INST, "POST", jit, Priority::Essential, 2_000),
            Err(59_000),
            "the 73rd waits until the first leaves the minute"
        );
        // Another installation has its own pace; reads are not writes.
        p.admit(
            Budget::Installation(8),
            "POST",
            jit,
            Priority::Essential,
            2_000,
        )
        .unwrap();
        p.admit(
            INST,
            "GET",
            "/repos/acme/ml/actions/jobs/1",
            Priority::Essential,
            2_000,
        )
        .unwrap();
        p.admit(INST, "POST", jit, Priority::Essential, 61_000)
            .unwrap();
        assert_eq!(p.writes_in(INST, 61_000), (72, 73));
    }

    #[test]
    fn deferrable_writes_leave_half_the_pace_to_essential_ones() {
        let mut p = Pace::default();
        let run = "/repos/acme/ml/check-runs";
        for i in 0..36 {
            p.admit(INST, "POST", run, Priority::Deferrable, i).unwrap();
        }
        assert!(
            p.admit(INST, "POST", run, Priority::Deferrable, 100)
                .is_err()
        );
        let jit = "/orgs/acme/actions/runners/generate-jitconfig";
        for _ in 0..36 {
            p.admit(INST, "POST", jit, Priority::Essential, 100)
                .unwrap();
        }
        assert!(
            p.admit(INST, "POST", jit, Priority::Essential, 100)
                .is_err()
        );
    }

    #[test]
    fn the_hour_is_paced_too() {
        let mut p = Pace::default();
        let jit = "/orgs/acme/actions/runners/generate-jitconfig";
        // 450 writes, 60 a minute, from t = 0.
        for i in 0..450_i64 {
            let at = (i / 60) * MINUTE_MS + (i % 60);
            p.admit(INST, "POST", jit, Priority::Essential, at).unwrap();
        }
        let now = 8 * MINUTE_MS;
        assert_eq!(
            p.admit(INST, "POST", jit, Priority::Essential, now),
            Err(HOUR_MS - now),
            "the 451st waits until the hour's first write is an hour old"
        );
    }

    #[test]
    fn one_endpoints_points_are_paced() {
        let mut p = Pace::default();
        let job = "/repos/acme/ml/actions/jobs/";
        for i in 0..810 {
            p.admit(INST, "GET", &format!("{job}{i}"), Priority::Essential, i)
                .unwrap();
        }
        assert_eq!(
            p.admit(INST, "GET", &format!("{job}1"), Priority::Essential, 1_000),
            Err(59_000)
        );
        p.admit(
            INST,
            "GET",
            "/repos/acme/ml/actions/runs/1",
            Priority::Essential,
            1_000,
        )
        .unwrap();
    }
}
