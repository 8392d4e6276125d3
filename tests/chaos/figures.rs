//! What the soak measures, from the simulators' own state (and rigger's
//! logs and database for secrets and panics): never from what rigger says
//! about itself.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

/// One machine as the simulated Vast.ai kept it.
#[derive(Debug, Clone)]
struct Machine {
    job: i64,
    iid: String,
    created_ms: i64,
    ended_ms: Option<i64>,
    destroyed_ms: Option<i64>,
    live: bool,
}

#[derive(Debug, Default)]
pub struct Figures {
    pub jobs: usize,
    pub machines: usize,
    pub leaked: usize,
    pub stranded_queued: Vec<i64>,
    pub stranded_in_progress: Vec<i64>,
    /// Jobs that more than one machine was rented for at once (the extra
    /// machines in the second number).
    pub duplicated: Vec<i64>,
    pub duplicate_machines: usize,
    /// (job, machine) destroyed while its runner ran the job.
    pub busy_killed: Vec<(i64, String)>,
    /// Jobs GitHub failed because their runner went silent.
    pub lost_runner_failures: usize,
    pub secrets_in_logs: usize,
    pub secrets_in_database: usize,
    pub secrets_issued: usize,
    pub panics: usize,
    /// Job end → its machine destroyed, seconds.
    pub teardown_s: Vec<f64>,
    /// Seconds billed on every machine, and seconds of jobs run on them.
    pub billed_s: f64,
    pub job_s: f64,
    pub failed_deliveries: usize,
    pub deliveries: usize,
}

fn ms(v: &Value) -> Option<i64> {
    v.as_i64()
}

/// `(job, instance id)` from a label or runner name rigger made.
fn parse_ids(s: &str, sep: char, prefix: &str) -> Option<(i64, String)> {
    let rest = s.strip_prefix(prefix)?;
    let (job, iid) = rest.split_once(sep)?;
    Some((job.parse().ok()?, iid.to_string()))
}

/// Every secret the simulated GitHub handed out, and the ones inside them
/// (a JIT config is base64 of JSON holding its token), and rigger's own.
pub fn secrets(github: &Value, own: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = own.iter().map(|s| s.to_string()).collect();
    for s in github["secrets_issued"].as_array().into_iter().flatten() {
        let Some(s) = s.as_str() else { continue };
        all.push(s.to_string());
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s)
            && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            && let Some(t) = v["token"].as_str()
        {
            all.push(t.to_string());
        }
    }
    all
}

/// How many of `secrets` occur in `text`.
pub fn found_in(secrets: &[String], text: &[u8]) -> usize {
    let text = String::from_utf8_lossy(text);
    secrets.iter().filter(|s| text.contains(s.as_str())).count()
}

impl Figures {
    pub fn measure(github: &Value, vast: &Value, now_ms: i64, controller: &str) -> Figures {
        let label_prefix = format!("rigger:{controller}:");
        let runner_prefix = format!("rigger-{controller}-");
        let machines: Vec<Machine> = vast["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| {
                let (job, iid) = parse_ids(i["label"].as_str()?, ':', &label_prefix)?;
                Some(Machine {
                    job,
                    iid,
                    created_ms: ms(&i["created_ms"])?,
                    ended_ms: ms(&i["ended_ms"]),
                    destroyed_ms: ms(&i["destroyed_ms"]),
                    live: i["phase"] != "destroyed",
                })
            })
            .collect();
        let by_key: BTreeMap<(i64, String), &Machine> = machines
            .iter()
            .map(|m| ((m.job, m.iid.clone()), m))
            .collect();
        let jobs: Vec<&Value> = github["jobs"].as_array().into_iter().flatten().collect();
        let mut f = Figures {
            jobs: jobs.len(),
            machines: machines.len(),
            leaked: machines.iter().filter(|m| m.live).count(),
            ..Figures::default()
        };
        // When each machine's runner took a job other than the one it was
        // rented for: from then on it no longer stands for its own job.
        let mut took_other: BTreeMap<(i64, String), i64> = BTreeMap::new();
        for j in &jobs {
            let id = j["id"].as_i64().unwrap_or(0);
            match j["status"].as_str() {
                Some("queued") => f.stranded_queued.push(id),
                Some("in_progress") => f.stranded_in_progress.push(id),
                _ => {}
            }
            if !j["failure_message"].is_null() {
                f.lost_runner_failures += 1;
            }
            let ran_on = j["runner_name"]
                .as_str()
                .and_then(|n| parse_ids(n, '-', &runner_prefix));
            let (Some(key), Some(started)) = (ran_on, ms(&j["started_ms"])) else {
                continue;
            };
            if key.0 != id {
                took_other.insert(key.clone(), started);
            }
            let Some(m) = by_key.get(&key) else { continue };
            let completed = ms(&j["completed_ms"]);
            if let Some(c) = completed {
                f.job_s += (c - started).max(0) as f64 / 1000.0;
            }
            if let Some(d) = m.destroyed_ms {
                // Destroyed while its process still ran (not after its host
                // died or its script ended), during the job.
                let ended_by_destroy = m.ended_ms == Some(d);
                if ended_by_destroy && started <= d && completed.is_none_or(|c| c > d) {
                    f.busy_killed.push((id, m.iid.clone()));
                }
                // Teardown: from the job's end to its machine's, for
                // machines that outlived their job.
                if let Some(c) = completed
                    && j["failure_message"].is_null()
                    && d >= c
                {
                    f.teardown_s.push((d - c) as f64 / 1000.0);
                }
            }
        }
        // Rented for one job at once: overlapping spans of machines
        // labelled for it, each from its rental to its end (or to when its
        // runner took another job).
        let mut spans: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
        for m in &machines {
            let end = m.ended_ms.or(m.destroyed_ms).unwrap_or(now_ms);
            let end = took_other
                .get(&(m.job, m.iid.clone()))
                .map_or(end, |t| end.min(*t));
            spans.entry(m.job).or_default().push((m.created_ms, end));
            f.billed_s += (m.destroyed_ms.unwrap_or(now_ms) - m.created_ms).max(0) as f64 / 1000.0;
        }
        for (job, mut s) in spans {
            s.sort();
            let mut extra = 0;
            let mut reach = i64::MIN;
            for (start, end) in s {
                if start < reach {
                    extra += 1;
                }
                reach = reach.max(end);
            }
            if extra > 0 {
                f.duplicated.push(job);
                f.duplicate_machines += extra;
            }
        }
        let attempts = github["delivery_attempts"].as_array();
        f.deliveries = attempts.map_or(0, Vec::len);
        f.failed_deliveries = attempts
            .into_iter()
            .flatten()
            .filter(|a| a["status"] != "OK")
            .count();
        f.secrets_issued = github["secrets_issued"].as_array().map_or(0, Vec::len);
        f
    }

    /// Secrets and panics, from rigger's logs and its database's contents.
    pub fn scan(&mut self, secrets: &[String], logs: &[u8], database: &[u8]) {
        self.secrets_in_logs = found_in(secrets, logs);
        self.secrets_in_database = found_in(secrets, database);
        self.panics = String::from_utf8_lossy(logs).matches("panicked at").count();
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.teardown_s.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return 0.0;
        }
        v[((v.len() - 1) as f64 * p).round() as usize]
    }

    pub fn table(&self, title: &str) -> String {
        let rows = [
            ("jobs", self.jobs.to_string()),
            ("machines rented", self.machines.to_string()),
            ("leaked machines", self.leaked.to_string()),
            (
                "stranded jobs (queued)",
                format!(
                    "{} {:?}",
                    self.stranded_queued.len(),
                    first(&self.stranded_queued)
                ),
            ),
            (
                "stranded jobs (in progress)",
                format!(
                    "{} {:?}",
                    self.stranded_in_progress.len(),
                    first(&self.stranded_in_progress)
                ),
            ),
            (
                "duplicated rentals (jobs / extra machines)",
                format!(
                    "{} / {} {:?}",
                    self.duplicated.len(),
                    self.duplicate_machines,
                    first(&self.duplicated)
                ),
            ),
            (
                "busy machines killed",
                format!("{} {:?}", self.busy_killed.len(), first(&self.busy_killed)),
            ),
            (
                "jobs failed: runner lost",
                self.lost_runner_failures.to_string(),
            ),
            (
                "secrets in logs / database (of issued)",
                format!(
                    "{} / {} (of {})",
                    self.secrets_in_logs, self.secrets_in_database, self.secrets_issued
                ),
            ),
            ("panics", self.panics.to_string()),
            (
                "teardown s p50 / p95 / max",
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    self.percentile(0.5),
                    self.percentile(0.95),
                    self.percentile(1.0)
                ),
            ),
            (
                "billed s beyond job time",
                format!(
                    "{:.0} (billed {:.0}, jobs {:.0})",
                    self.billed_s - self.job_s,
                    self.billed_s,
                    self.job_s
                ),
            ),
            (
                "webhook deliveries failed / sent",
                format!("{} / {}", self.failed_deliveries, self.deliveries),
            ),
        ];
        let mut out = format!("== chaos soak: {title}\n");
        for (k, v) in rows {
            out.push_str(&format!("  {k:<44} {v}\n"));
        }
        out
    }

    /// What must be zero, each with its figure.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut check = |name: &str, n: usize| {
            if n > 0 {
                v.push(format!("{name}: {n}"));
            }
        };
        check("leaked machines", self.leaked);
        check("stranded jobs (queued)", self.stranded_queued.len());
        check(
            "stranded jobs (in progress)",
            self.stranded_in_progress.len(),
        );
        check("duplicated rentals", self.duplicated.len());
        check("busy machines killed", self.busy_killed.len());
        check("secrets in logs", self.secrets_in_logs);
        check("secrets in the database", self.secrets_in_database);
        check("panics", self.panics);
        check(
            "machines that outlived their job by more than 30 s",
            self.teardown_s.iter().filter(|t| **t > 30.0).count(),
        );
        v
    }
}

fn first<T: Clone>(v: &[T]) -> Vec<T> {
    v.iter().take(5).cloned().collect()
}

/// The measures themselves, on states made by hand: each can fire.
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(id: i64, runner: &str, started: i64, completed: Option<i64>) -> Value {
        json!({"id": id, "status": if completed.is_some() { "completed" } else { "in_progress" },
               "runner_name": runner, "started_ms": started, "completed_ms": completed,
               "failure_message": null})
    }

    fn machine(
        job: i64,
        iid: &str,
        created: i64,
        ended: Option<i64>,
        destroyed: Option<i64>,
    ) -> Value {
        json!({"label": format!("rigger:c:{job}:{iid}"), "created_ms": created, "ended_ms": ended,
               "destroyed_ms": destroyed, "phase": if destroyed.is_some() { "destroyed" } else { "running" }})
    }

    #[test]
    fn a_machine_destroyed_during_its_job_is_a_busy_machine_killed() {
        let gh = json!({"jobs": [job(1, "rigger-c-1-aa", 100, Some(900)), job(2, "rigger-c-2-bb", 100, Some(500))]});
        let vast = json!({"instances": [
            // Destroyed at 600, before its job ended at 900, its process still running.
            machine(1, "aa", 0, Some(600), Some(600)),
            // Destroyed after its job ended: a teardown of 100 ms.
            machine(2, "bb", 0, Some(600), Some(600)),
        ]});
        let f = Figures::measure(&gh, &vast, 1_000, "c");
        assert_eq!(f.busy_killed, vec![(1, "aa".to_string())]);
        assert_eq!(f.teardown_s, vec![0.1]);
        assert_eq!(f.leaked, 0);
    }

    #[test]
    fn two_machines_at_once_for_one_job_are_a_duplicate_but_one_a_sibling_took_is_not() {
        let gh = json!({"jobs": [
            // Job 3's first machine was taken by sibling 4 at 200; its second is legitimate.
            job(4, "rigger-c-3-aa", 200, Some(800)),
            job(3, "rigger-c-3-bb", 400, Some(900)),
            {"id": 5, "status": "queued", "runner_name": null, "started_ms": null,
             "completed_ms": null, "failure_message": null},
        ]});
        let vast = json!({"instances": [
            machine(3, "aa", 0, Some(810), Some(810)),
            machine(3, "bb", 300, Some(910), Some(910)),
            machine(5, "cc", 0, None, None),
            machine(5, "dd", 100, None, None),
        ]});
        let f = Figures::measure(&gh, &vast, 1_000, "c");
        assert_eq!(f.duplicated, vec![5]);
        assert_eq!(f.duplicate_machines, 1);
        assert_eq!(f.stranded_queued, vec![5]);
        assert_eq!(f.leaked, 2);
        assert!(f.violations().len() >= 3, "{:?}", f.violations());
    }

    #[test]
    fn a_secret_inside_a_jit_config_is_looked_for_too() {
        let jit = base64::engine::general_purpose::STANDARD
            .encode(json!({"url": "http://x", "token": "jit_abc123"}).to_string());
        let all = secrets(&json!({"secrets_issued": [jit]}), &["own"]);
        assert_eq!(all.len(), 3);
        assert_eq!(found_in(&all, b"... jit_abc123 ..."), 1);
        assert_eq!(found_in(&all, b"nothing here"), 0);
    }
}
