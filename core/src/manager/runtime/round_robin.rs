//! The order in which claims visit the topics.

/// Smooth weighted round-robin (as in nginx): picks index `i` in proportion to
/// `weights[i]`, spreading each topic's turns evenly instead of in runs.
pub(super) struct WeightedRoundRobin {
    weights: Vec<i64>,
    current: Vec<i64>,
}

impl WeightedRoundRobin {
    /// Turns among `weights.len()` topics; a weight of 0 counts as 1.
    pub fn new(weights: Vec<u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(|w| i64::from(w.max(1))).collect();
        WeightedRoundRobin {
            current: vec![0; weights.len()],
            weights,
        }
    }

    /// The index whose turn it is.
    pub fn next(&mut self) -> usize {
        let total: i64 = self.weights.iter().sum();
        for (current, weight) in self.current.iter_mut().zip(&self.weights) {
            *current += weight;
        }
        let (best, _) = self
            .current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .expect("a manager has at least one topic");
        self.current[best] -= total;
        best
    }
}

#[cfg(test)]
mod tests {
    use super::WeightedRoundRobin;

    #[test]
    fn weighted_round_robin_spreads_turns_by_weight() {
        let mut wrr = WeightedRoundRobin::new(vec![3, 1, 2]);
        let turns: Vec<usize> = (0..12).map(|_| wrr.next()).collect();
        assert_eq!(turns, vec![0, 2, 0, 1, 2, 0, 0, 2, 0, 1, 2, 0]);
        for (i, expected) in [6, 2, 4].iter().enumerate() {
            assert_eq!(turns.iter().filter(|t| **t == i).count(), *expected);
        }
    }
}
