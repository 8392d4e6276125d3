//! What rigger writes on the check run of a job's head commit: where the
//! user looks when a GPU job waits, fails or finishes.

use super::ports::CheckRun;

pub const CHECK_NAME: &str = "rigger";

pub fn waiting_for_capacity(def: &str, diagnosis: &str, retry_in_s: i64) -> CheckRun {
    CheckRun {
        title: format!("Waiting for a GPU for `{def}`"),
        summary: format!(
            "No Vast.ai offer fits `{def}` right now.\n\n{diagnosis}\n\nrigger looks again in {retry_in_s} s, until GitHub's 24-hour queue limit."
        ),
        conclusion: None,
    }
}

/// GitHub holds the job for a deployment's approval: nothing is rented (or
/// paid for) until a reviewer approves it.
pub fn waiting_for_approval(environment: Option<&str>) -> CheckRun {
    let what = match environment {
        Some(env) => format!("environment `{env}`"),
        None => "its deployment".to_string(),
    };
    CheckRun {
        title: format!("Waiting for approval of {what}"),
        summary: format!(
            "GitHub holds this job until a reviewer approves {what} (Review deployments, on the workflow run's page). rigger rents no GPU until then, so the wait costs nothing; once it is approved, rigger looks for a GPU. A rejected job ends without one."
        ),
        conclusion: None,
    }
}

pub fn refused(def: &str, why: &str) -> CheckRun {
    CheckRun {
        title: format!("Not renting a GPU for `{def}` yet"),
        summary: format!("{why}.\n\nThe job waits; rigger tries again when this changes."),
        conclusion: None,
    }
}

pub fn failed(title: &str, why: &str) -> CheckRun {
    CheckRun {
        title: title.to_string(),
        summary: why.to_string(),
        conclusion: Some("failure"),
    }
}

pub fn booting(gpu: &str, location: &str, dph: f64, estimated_cost: f64, hours: f64) -> CheckRun {
    CheckRun {
        title: format!("Booting {gpu} at ${dph:.3}/h"),
        summary: format!(
            "Rented {gpu} in {location} at ${dph:.3}/h. Estimated {hours:.2} h, about ${estimated_cost:.2} in total."
        ),
        conclusion: None,
    }
}

/// The job is over and its machines are gone: what it ran on and what it
/// cost. `machines` counts every machine rented for the job (a failed boot
/// and its replacement both cost money, and both are in the total).
pub fn finished(
    gpu: &str,
    location: &str,
    seconds: i64,
    cost: f64,
    machines: usize,
    job_conclusion: &str,
) -> CheckRun {
    let minutes = seconds as f64 / 60.0;
    let extra = if machines > 1 {
        format!(" across {machines} machines (a boot failed and was replaced)")
    } else {
        String::new()
    };
    CheckRun {
        title: format!("{gpu}: {minutes:.1} min, ${cost:.4}"),
        summary: format!(
            "| GPU | where | machine time | cost |\n|---|---|---|---|\n| {gpu} | {location} | {minutes:.1} min | ${cost:.4} |\n\nMachine time and cost{extra}, from the rent to the confirmed destroy. The machine was destroyed when the job ended ({job_conclusion})."
        ),
        // rigger's own check: it did its part whatever the job's outcome.
        conclusion: Some(if job_conclusion == "cancelled" {
            "cancelled"
        } else {
            "success"
        }),
    }
}

/// The job ended before any machine was rented for it.
pub fn ended_without_machine(job_conclusion: &str) -> CheckRun {
    CheckRun {
        title: format!("Job ended ({job_conclusion}) before a GPU was rented"),
        summary: "No machine was rented for this job, so it cost nothing.".to_string(),
        conclusion: Some(if job_conclusion == "cancelled" {
            "cancelled"
        } else {
            "neutral"
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_carry_the_numbers() {
        let r = finished("RTX 4090", "Texas, US", 600, 0.0667, 1, "success");
        assert_eq!(r.title, "RTX 4090: 10.0 min, $0.0667");
        assert!(
            r.summary
                .contains("| RTX 4090 | Texas, US | 10.0 min | $0.0667 |")
        );
        assert_eq!(r.conclusion, Some("success"));
        let twice = finished("RTX 4090", "Texas, US", 900, 0.1, 2, "cancelled");
        assert!(twice.summary.contains("across 2 machines"));
        assert_eq!(twice.conclusion, Some("cancelled"));
        assert_eq!(
            ended_without_machine("cancelled").conclusion,
            Some("cancelled")
        );
        let w = waiting_for_capacity("gpu", "0 offers: none in US", 60);
        assert!(w.summary.contains("0 offers: none in US"));
        assert_eq!(w.conclusion, None);
    }
}
