//! Topics nobody works on, flagged on evidence.
//!
//! The store keeps no registry of which manager claims which topic, so a topic whose
//! tasks no manager claims looks, in the store, like any busy topic: its tasks just wait.
//! What the dashboard can see is the store's `started` counter of each topic (claims,
//! INPUT → WORK), in the stats it reads anyway for every page and for the live stream.
//! A topic is flagged at time `now` when all of these hold:
//!
//! - its oldest due task has waited longer than the threshold (`TopicStats::latency(now)`,
//!   [`DashboardOptions::unworked_after`](crate::DashboardOptions::unworked_after),
//!   60 s by default);
//! - its `started` counter reads the same now as in a snapshot the dashboard took at least
//!   the threshold ago: since counters only grow, equal at both ends means no task of the
//!   topic was claimed at any moment in between, so no worker took one for that long;
//! - it is not paused (a paused topic waits on purpose, and says so), and none of its
//!   tasks is running (a running task has a manager, one that is busy).
//!
//! Two snapshots are enough evidence, however far apart, so a dashboard that was not looked
//! at for an hour flags a stuck topic on its first page; a dashboard that has only just
//! started has no old snapshot, and flags nothing until the threshold has passed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use taskmill_core::{Stats, Timestamp};

/// Snapshots are kept at most this many per threshold: closer ones add no evidence (the
/// witness is at most a thirtieth of the threshold older than it need be), and however
/// many pages and streams read stats, the history stays this short.
const SAMPLES_PER_THRESHOLD: u32 = 30;

/// What the dashboard has seen of each topic's `started` counter, over the last threshold
/// and the newest snapshot before it.
#[derive(Debug)]
pub(crate) struct Sightings {
    after: Duration,
    /// Oldest first, `at` strictly increasing. The first is the newest snapshot at least
    /// `after` older than the latest one (once there is one): the witness every later
    /// judgement needs; older ones are dropped.
    samples: VecDeque<Sample>,
}

#[derive(Debug)]
struct Sample {
    at: Timestamp,
    /// Each topic's `started` counter. A topic missing had no record then, and so no
    /// claim: 0.
    started: BTreeMap<String, u64>,
}

impl Sightings {
    /// Flags topics after `after` without a claim (see the module's rule).
    pub(crate) fn new(after: Duration) -> Self {
        Sightings {
            after,
            samples: VecDeque::new(),
        }
    }

    /// The threshold.
    pub(crate) fn after(&self) -> Duration {
        self.after
    }

    /// Judges `stats`, read at `at`, against the snapshots before it, then keeps it as a
    /// snapshot; returns the topics that no worker has taken a task of for the threshold.
    pub(crate) fn observe(&mut self, at: Timestamp, stats: &Stats) -> BTreeSet<String> {
        let flagged = self.judge(at, stats);
        self.record(at, stats);
        flagged
    }

    /// The topics `stats` at `at` shows nobody working on, by the snapshots kept so far.
    fn judge(&self, at: Timestamp, stats: &Stats) -> BTreeSet<String> {
        // The newest snapshot at least the threshold old: when a counter equals it, the
        // counter has not moved since (counters only grow), which is the longest stretch
        // the snapshots can vouch for that is still at least the threshold.
        let Some(witness) = self
            .samples
            .iter()
            .rev()
            .find(|s| at.saturating_since(s.at) >= self.after)
        else {
            return BTreeSet::new();
        };
        stats
            .topics
            .iter()
            .filter(|(name, topic)| {
                !topic.paused
                    && topic.sizes.work == 0
                    && topic.latency(at) > self.after
                    && witness.started.get(name.as_str()).copied().unwrap_or(0)
                        == topic.counters.started
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn record(&mut self, at: Timestamp, stats: &Stats) {
        let spacing = self.after / SAMPLES_PER_THRESHOLD;
        // Snapshots read concurrently may arrive out of order; one no newer than the
        // latest (or too close to it) adds nothing.
        if let Some(last) = self.samples.back() {
            if at <= last.at || at.saturating_since(last.at) < spacing {
                return;
            }
        }
        self.samples.push_back(Sample {
            at,
            started: stats
                .topics
                .iter()
                .map(|(name, topic)| (name.clone(), topic.counters.started))
                .collect(),
        });
        // Keep the newest snapshot at least the threshold old, and every one after it.
        while self
            .samples
            .get(1)
            .is_some_and(|next| at.saturating_since(next.at) >= self.after)
        {
            self.samples.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskmill_core::TopicStats;

    const MINUTE: Duration = Duration::from_secs(60);

    /// A time `secs` seconds after an arbitrary start.
    fn t(secs: i64) -> Timestamp {
        Timestamp::from_millis(1_800_000_000_000 + secs * 1_000)
    }

    /// One topic's figures: `started` claims so far, the oldest due task due at `due`.
    fn topic(started: u64, due: Option<Timestamp>) -> TopicStats {
        let mut stats = TopicStats::default();
        stats.counters.started = started;
        stats.sizes.input = u64::from(due.is_some());
        stats.earliest_run_at = due;
        stats
    }

    fn stats(topics: &[(&str, TopicStats)]) -> Stats {
        Stats::from_topics(
            topics
                .iter()
                .map(|(name, stats)| (name.to_string(), *stats))
                .collect(),
        )
    }

    fn names(set: &BTreeSet<String>) -> Vec<&str> {
        set.iter().map(String::as_str).collect()
    }

    #[test]
    fn a_topic_waiting_with_no_claim_over_the_threshold_is_flagged() {
        let mut seen = Sightings::new(MINUTE);
        // "orphan" has a task due since t(0) and nobody claims it; "busy" has one due as
        // long, but its counter moves.
        let at = |busy_started| {
            stats(&[
                ("orphan", topic(0, Some(t(0)))),
                ("busy", topic(busy_started, Some(t(0)))),
            ])
        };
        assert!(seen.observe(t(0), &at(5)).is_empty(), "no evidence yet");
        assert!(seen.observe(t(30), &at(6)).is_empty());
        // 60 s after the first snapshot, but the task has waited exactly 60 s, not longer.
        assert!(seen.observe(t(60), &at(7)).is_empty());
        assert_eq!(names(&seen.observe(t(61), &at(8))), ["orphan"]);
        assert_eq!(names(&seen.observe(t(90), &at(9))), ["orphan"]);
    }

    #[test]
    fn waiting_long_is_not_enough_without_an_old_enough_snapshot() {
        let mut seen = Sightings::new(MINUTE);
        // The task has waited ten minutes, but the dashboard started at t(600).
        let waiting = stats(&[("t", topic(3, Some(t(0))))]);
        assert!(seen.observe(t(600), &waiting).is_empty());
        assert!(seen.observe(t(659), &waiting).is_empty());
        assert_eq!(names(&seen.observe(t(660), &waiting)), ["t"]);
    }

    #[test]
    fn a_claim_within_the_threshold_clears_the_flag_until_a_threshold_passes_again() {
        let mut seen = Sightings::new(MINUTE);
        let due = Some(t(0));
        assert!(seen
            .observe(t(0), &stats(&[("t", topic(1, due))]))
            .is_empty());
        assert_eq!(
            names(&seen.observe(t(70), &stats(&[("t", topic(1, due))]))),
            ["t"]
        );
        // A worker claimed one at t(75) (started 1 → 2); another waits since t(0) still.
        for secs in [80, 100, 134] {
            assert!(
                seen.observe(t(secs), &stats(&[("t", topic(2, due))]))
                    .is_empty(),
                "at {secs}: the last 60 s saw a claim"
            );
        }
        // The snapshot at t(80) already read 2: 60 s later the counter has not moved since.
        assert_eq!(
            names(&seen.observe(t(140), &stats(&[("t", topic(2, due))]))),
            ["t"]
        );
    }

    #[test]
    fn paused_running_and_not_yet_due_topics_are_not_flagged() {
        let mut seen = Sightings::new(MINUTE);
        let mut paused = topic(0, Some(t(0)));
        paused.paused = true;
        let mut running = topic(4, Some(t(0)));
        running.sizes.work = 1;
        let later = topic(0, None); // scheduled for later: nothing due
        let all = stats(&[("paused", paused), ("running", running), ("later", later)]);
        seen.observe(t(0), &all);
        assert!(seen.observe(t(120), &all).is_empty());
    }

    #[test]
    fn a_topic_that_appeared_after_the_witness_counts_from_zero() {
        let mut seen = Sightings::new(MINUTE);
        seen.observe(t(0), &stats(&[]));
        let new = stats(&[("new", topic(0, Some(t(5))))]);
        assert!(seen.observe(t(60), &new).is_empty(), "waited 55 s");
        assert_eq!(names(&seen.observe(t(66), &new)), ["new"]);
        // One that was claimed from since it appeared is not.
        let claimed = stats(&[("claimed", topic(1, Some(t(5))))]);
        assert!(seen.observe(t(70), &claimed).is_empty());
    }

    #[test]
    fn the_history_stays_short_however_often_stats_are_read() {
        let mut seen = Sightings::new(MINUTE);
        let waiting = stats(&[("t", topic(0, Some(t(0))))]);
        // A read every 100 ms for ten minutes, as many open pages would make.
        for tenth in 0..6_000 {
            let at = Timestamp::from_millis(t(0).as_millis() + tenth * 100);
            seen.observe(at, &waiting);
            assert!(
                seen.samples.len() <= SAMPLES_PER_THRESHOLD as usize + 2,
                "{} samples",
                seen.samples.len()
            );
        }
        // The witness is kept: the last read, at 599.9 s, is flagged.
        assert_eq!(names(&seen.judge(t(600), &waiting)), ["t"]);
        let oldest = seen.samples.front().unwrap().at;
        let age = t(600).saturating_since(oldest);
        assert!(age >= MINUTE && age <= MINUTE + MINUTE / 15, "{age:?}");
    }

    #[test]
    fn snapshots_out_of_order_change_nothing() {
        let mut seen = Sightings::new(MINUTE);
        let waiting = stats(&[("t", topic(0, Some(t(0))))]);
        seen.observe(t(10), &waiting);
        // A read that started earlier but finished later.
        seen.observe(t(5), &waiting);
        assert_eq!(seen.samples.len(), 1);
        assert!(seen.observe(t(69), &waiting).is_empty());
        assert_eq!(names(&seen.observe(t(70), &waiting)), ["t"]);
    }
}
