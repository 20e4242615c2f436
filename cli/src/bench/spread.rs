//! How a fill spreads its tasks over the topics: evenly, or skewed the way real queues
//! are (a few busy topics, many with a handful of tasks each).

use std::fmt;
use std::str::FromStr;
use taskmill::{Error, Result};

/// Topics that take most of the tasks in a [`TopicSpread::Skewed`] fill.
pub const HOT_TOPICS: usize = 5;

/// In a [`TopicSpread::Skewed`] fill, one task in this many goes to a topic that is not
/// hot (round robin over them); the rest go to the hot topics.
pub const COLD_EVERY: u64 = 10;

/// How the tasks of a fill are spread over its topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TopicSpread {
    /// Round robin over every topic: each holds the same number of tasks.
    #[default]
    Even,
    /// Nine tasks in ten round robin over the first [`HOT_TOPICS`] topics, the tenth round
    /// robin over all the others: with 100,000 tasks over 2,000 topics, the five hot ones
    /// hold 18,000 each and the other 1,995 five each. With [`HOT_TOPICS`] topics or fewer
    /// there are no others, and the spread is the even one.
    Skewed,
}

impl TopicSpread {
    /// Every spread, in the order the topics scenario runs them.
    pub const ALL: [TopicSpread; 2] = [TopicSpread::Even, TopicSpread::Skewed];

    /// The spread's name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TopicSpread::Even => "even",
            TopicSpread::Skewed => "skewed",
        }
    }

    /// Whether this spread differs from the even one over `topics` topics.
    pub fn differs_from_even(self, topics: usize) -> bool {
        match self {
            TopicSpread::Even => false,
            TopicSpread::Skewed => topics > HOT_TOPICS,
        }
    }

    /// The index of the topic (below `topics`, at least 1) the `i`-th task of a fill goes
    /// to.
    pub fn topic_of(self, i: u64, topics: usize) -> usize {
        let topics = topics.max(1) as u64;
        let index = if self.differs_from_even(topics as usize) {
            let hot = HOT_TOPICS as u64;
            if i % COLD_EVERY == COLD_EVERY - 1 {
                hot + (i / COLD_EVERY) % (topics - hot)
            } else {
                // Round robin over the hot tasks alone: `i / COLD_EVERY` cold ones came
                // before this one.
                (i - i / COLD_EVERY) % hot
            }
        } else {
            i % topics
        };
        index as usize
    }
}

impl fmt::Display for TopicSpread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TopicSpread {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        TopicSpread::ALL
            .into_iter()
            .find(|spread| spread.as_str() == s)
            .ok_or_else(|| Error::misuse(format!("unknown topic spread {s:?} (even or skewed)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(spread: TopicSpread, tasks: u64, topics: usize) -> Vec<u64> {
        let mut counts = vec![0; topics];
        for i in 0..tasks {
            counts[spread.topic_of(i, topics)] += 1;
        }
        counts
    }

    #[test]
    fn even_is_round_robin() {
        assert_eq!(counts(TopicSpread::Even, 10, 5), [2; 5]);
        assert_eq!(counts(TopicSpread::Even, 3, 1), [3]);
    }

    #[test]
    fn skewed_fills_a_few_topics_and_gives_the_rest_a_handful() {
        let c = counts(TopicSpread::Skewed, 100_000, 2_000);
        assert_eq!(&c[..HOT_TOPICS], [18_000; HOT_TOPICS]);
        assert!(c[HOT_TOPICS..].iter().all(|&n| n == 5 || n == 6), "{c:?}");
        assert_eq!(c.iter().sum::<u64>(), 100_000);
        // Every topic gets something when there are enough tasks.
        let c = counts(TopicSpread::Skewed, 100_000, 10_000);
        assert!(c.iter().all(|&n| n > 0));
        // Without topics beyond the hot ones, skewed is even.
        assert!(!TopicSpread::Skewed.differs_from_even(HOT_TOPICS));
        assert_eq!(counts(TopicSpread::Skewed, 10, 5), [2; 5]);
    }

    #[test]
    fn names_round_trip() {
        for spread in TopicSpread::ALL {
            assert_eq!(spread.as_str().parse::<TopicSpread>().unwrap(), spread);
        }
        assert!("uneven".parse::<TopicSpread>().is_err());
    }
}
