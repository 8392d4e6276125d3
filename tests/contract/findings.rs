//! Violations found by a contract test, less the exceptions it accepts:
//! `(a part of the violation line, reason)`. Each exception must still be
//! needed when the test ends, so a fixed violation takes its exception away.

use std::collections::BTreeSet;

pub struct Findings {
    exceptions: &'static [(&'static str, &'static str)],
    pub violations: Vec<String>,
    /// Violations an exception covered.
    pub excepted: usize,
    /// Which exceptions were needed.
    used: BTreeSet<usize>,
}

impl Findings {
    pub fn new(exceptions: &'static [(&'static str, &'static str)]) -> Findings {
        Findings {
            exceptions,
            violations: Vec::new(),
            excepted: 0,
            used: BTreeSet::new(),
        }
    }

    /// Keep what `story` found: one an exception covers (its line
    /// `[story] violation` contains the exception's part) is counted,
    /// another kept once (the first story that found it named).
    pub fn keep(&mut self, story: &str, found: Vec<String>) {
        for v in found {
            let line = format!("[{story}] {v}");
            if let Some(i) = self
                .exceptions
                .iter()
                .position(|(part, _)| line.contains(part))
            {
                self.excepted += 1;
                self.used.insert(i);
            } else if !self.violations.iter().any(|seen| seen.ends_with(&v)) {
                self.violations.push(line);
            }
        }
    }

    /// Fail on any violation (`whose`: whose contract), then on any
    /// exception that was not needed.
    pub fn assert_clean(&self, whose: &str) {
        assert!(
            self.violations.is_empty(),
            "{} departures from {whose} published contract (fix the simulator's shape, or \
             rigger's request; list a true exception in EXCEPTIONS with its reason):\n{}",
            self.violations.len(),
            self.violations.join("\n")
        );
        for (i, (part, why)) in self.exceptions.iter().enumerate() {
            assert!(
                self.used.contains(&i),
                "the exception `{part}` ({why}) is no longer needed: remove it from EXCEPTIONS"
            );
        }
    }
}

/// Where the operations rigger called and the ones its client can call
/// ([`RIGGER_OPERATIONS`] of a test) differ, and which required answers
/// were not given: one line each.
pub fn coverage_gaps(
    listed: &[&str],
    called: &BTreeSet<String>,
    required_answers: &[&str],
    answers: &BTreeSet<String>,
) -> Vec<String> {
    let mut gaps = Vec::new();
    for op in listed {
        if !called.contains(*op) {
            gaps.push(format!(
                "rigger can call `{op}` but no story made it call it: add it to a story"
            ));
        }
    }
    for op in called {
        if !listed.contains(&op.as_str()) {
            gaps.push(format!(
                "rigger called `{op}`, which RIGGER_OPERATIONS does not list: list it"
            ));
        }
    }
    for a in required_answers {
        if !answers.contains(*a) {
            gaps.push(format!("no story was answered `{a}`"));
        }
    }
    gaps
}
