//! The names rigger gives what it creates, and how it recognises them again.
//!
//! Every Vast.ai instance is labelled `rigger:<controller>:<job id>:<instance
//! id>` and every runner named `rigger-<controller>-<job id>-<instance id>`
//! (I1: rigger only ever touches what carries its controller id). After a
//! crash, the label is how the reconciler finds an instance the store knows
//! only as a `requested` row.

/// A fresh instance id: short, unique, and safe in a label and a runner name.
pub fn new_instance_id() -> String {
    // 40 random bits are plenty to never collide among one job's attempts,
    // and keep runner names within GitHub's 64 characters.
    random_hex(5)
}

/// A secret for a machine to prove who it is (the VM-mode callback): 256 bits.
pub fn new_token() -> String {
    random_hex(32)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS's generator; it only fails on a system without one, where
    // nothing else here could work either.
    getrandom::fill(&mut buf).expect("the operating system's random number generator");
    hex::encode(buf)
}

/// The Vast.ai label of an instance.
pub fn instance_label(controller: &str, job_id: i64, instance_id: &str) -> String {
    format!("rigger:{controller}:{job_id}:{instance_id}")
}

/// The prefix of every label this controller makes.
pub fn label_prefix(controller: &str) -> String {
    format!("rigger:{controller}:")
}

/// `(job id, instance id)` from a label this controller made; `None` for any
/// other label (another controller's, or not rigger's at all).
pub fn parse_label(controller: &str, label: &str) -> Option<(i64, String)> {
    let rest = label.strip_prefix(&label_prefix(controller))?;
    let (job, instance) = rest.split_once(':')?;
    Some((job.parse().ok()?, instance.to_string()))
}

/// The GitHub runner name of an instance.
pub fn runner_name(controller: &str, job_id: i64, instance_id: &str) -> String {
    format!("{}{job_id}-{instance_id}", runner_prefix(controller))
}

/// The prefix of every runner this controller registers.
pub fn runner_prefix(controller: &str) -> String {
    format!("rigger-{controller}-")
}

/// Whether this controller registered a runner of this name. The prefix
/// alone is not enough: controller ids may hold `-`, so `rigger-ci-` is
/// also the start of controller `ci-2`'s names. What follows our prefix
/// must be exactly `<job id>-<instance id>`, digits then hex, which another
/// controller's names never are.
pub fn is_our_runner(controller: &str, name: &str) -> bool {
    let Some((job, instance)) = name
        .strip_prefix(&runner_prefix(controller))
        .and_then(|rest| rest.split_once('-'))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    digits(job) && hex(instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_belong_to_one_controller() {
        let label = instance_label("prod", 42, "a1b2c3");
        assert_eq!(label, "rigger:prod:42:a1b2c3");
        assert_eq!(parse_label("prod", &label), Some((42, "a1b2c3".into())));
        assert_eq!(parse_label("staging", &label), None);
        assert_eq!(parse_label("prod", "ci-runner-42"), None);
        assert_eq!(parse_label("prod", "rigger:prod:x:y"), None);
    }

    #[test]
    fn runner_names_fit_githubs_limit() {
        let id = new_instance_id();
        assert_eq!(id.len(), 10);
        // The longest controller id settings accept, the largest job id.
        let controller = "a-20-char-controller";
        assert_eq!(controller.len(), crate::settings::MAX_CONTROLLER_ID);
        let name = runner_name(controller, i64::MAX, &id);
        assert!(name.len() <= 64, "{} characters", name.len());
        assert!(name.starts_with(&runner_prefix(controller)));
    }

    #[test]
    fn a_controller_knows_its_runners_and_not_those_of_a_controller_named_like_it() {
        let ours = runner_name("ci", 77, "abcdef0123");
        let theirs = runner_name("ci-2", 77, "abcdef0123");
        assert!(is_our_runner("ci", &ours));
        assert!(is_our_runner("ci-2", &theirs));
        assert!(
            theirs.starts_with(&runner_prefix("ci")),
            "the case this guards"
        );
        assert!(!is_our_runner("ci", &theirs));
        assert!(!is_our_runner("ci-2", &ours));
        // Job 2 of `ci` against `ci-2`'s prefix, and ids of digits only.
        let job_two = runner_name("ci", 2, "1234567890");
        assert!(job_two.starts_with(&runner_prefix("ci-2")));
        assert!(!is_our_runner("ci-2", &job_two));
        assert!(is_our_runner("ci", &job_two));
        for other in [
            "rigger-ci-",
            "rigger-ci-12",
            "rigger-ci-x-abc",
            "rigger-ci-12-ABC",
            "rigger-ci-12-ab-cd",
            "gpu-runner",
        ] {
            assert!(!is_our_runner("ci", other), "{other}");
        }
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn instance_ids_differ() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_instance_id()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
