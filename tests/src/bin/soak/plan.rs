//! What each task of the soak does, decided by its number alone (and the run's seed), so
//! that the worker running it and the audit checking it agree without talking.

use std::time::Duration;

/// The topics the load spreads over (`s0`, `s1`, …).
pub const TOPICS: u64 = 4;

/// The topics' run timeout: a [`Plan::Slow`] task's first attempt outlives it.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// The retry limit of every task but the doomed ones: far more than kills and planned
/// failures can use up, so that anything but COMPLETED is a defect.
pub const RETRIES: u32 = 10;

/// The retry limit of a [`Plan::Doomed`] task: it dies after `DOOMED_RETRIES + 1` attempts.
pub const DOOMED_RETRIES: u32 = 2;

/// The error a planned failure returns.
pub const PLANNED_FAILURE: &str = "planned failure";

/// One task's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Succeeds after `ms` milliseconds of work.
    Quick {
        /// Work, 0–5 ms.
        ms: u64,
    },
    /// Fails its first `fails` attempts, then succeeds.
    Flaky {
        /// 1 or 2.
        fails: u32,
    },
    /// Fails every attempt: ends DEAD.
    Doomed,
    /// The first attempt outlives [`TIMEOUT`]; later ones succeed at once.
    Slow,
    /// Cancelled by its enqueuer `delay_ms` after the enqueue returned; its runs work for
    /// `work_ms` unless the cancel stops them first.
    Cancel {
        /// From enqueue to cancel, 0–100 ms.
        delay_ms: u64,
        /// A run's work, 0–150 ms.
        work_ms: u64,
    },
}

/// What one attempt of a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Work this long, then succeed.
    Succeed(Duration),
    /// Return a planned failure.
    Fail,
    /// Sleep past the timeout (the manager drops the run).
    Hang,
    /// Work this long and succeed, unless cancelled meanwhile.
    Cancellable(Duration),
}

/// SplitMix64: a well-mixed 64-bit hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Plan {
    /// The plan of task `n` in a run seeded with `seed`: 70 % quick, 10 % flaky, 4 % doomed,
    /// 4 % slow, 12 % cancelled.
    pub fn of(seed: u64, n: u64) -> Plan {
        let h = mix(seed ^ mix(n));
        let (pick, a, b) = (h % 100, (h >> 8) % 1000, (h >> 24) % 1000);
        match pick {
            0..70 => Plan::Quick { ms: a % 6 },
            70..80 => Plan::Flaky {
                fails: 1 + (a % 2) as u32,
            },
            80..84 => Plan::Doomed,
            84..88 => Plan::Slow,
            _ => Plan::Cancel {
                delay_ms: a % 101,
                work_ms: b % 151,
            },
        }
    }

    /// The task's topic.
    pub fn topic(n: u64) -> String {
        format!("s{}", n % TOPICS)
    }

    /// The retry limit the task is enqueued with.
    pub fn retries(self) -> u32 {
        match self {
            Plan::Doomed => DOOMED_RETRIES,
            _ => RETRIES,
        }
    }

    /// What attempt number `attempt` (from 1) does.
    pub fn action(self, attempt: u32) -> Action {
        match self {
            Plan::Quick { ms } => Action::Succeed(Duration::from_millis(ms)),
            Plan::Flaky { fails } if attempt <= fails => Action::Fail,
            Plan::Flaky { .. } => Action::Succeed(Duration::from_millis(1)),
            Plan::Doomed => Action::Fail,
            Plan::Slow if attempt == 1 => Action::Hang,
            Plan::Slow => Action::Succeed(Duration::ZERO),
            Plan::Cancel { work_ms, .. } => Action::Cancellable(Duration::from_millis(work_ms)),
        }
    }

    /// Whether the task ends DEAD rather than COMPLETED (or CANCELLED).
    pub fn dies(self) -> bool {
        self == Plan::Doomed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plan_occurs_in_roughly_its_share() {
        let mut counts = [0u32; 5];
        for n in 0..10_000 {
            let i = match Plan::of(7, n) {
                Plan::Quick { .. } => 0,
                Plan::Flaky { .. } => 1,
                Plan::Doomed => 2,
                Plan::Slow => 3,
                Plan::Cancel { .. } => 4,
            };
            counts[i] += 1;
        }
        let expected = [7000, 1000, 400, 400, 1200];
        for (got, want) in counts.iter().zip(expected) {
            assert!(got.abs_diff(want) < want / 5, "{counts:?}");
        }
    }
}
