//! The order in which claims visit the topics.

/// Smooth weighted round-robin (as in nginx): picks index `i` in proportion to
/// `weights[i]`, spreading each topic's turns evenly instead of in runs.
///
/// With equal weights (the default) this is plain round-robin, and a turn costs O(1)
/// however many topics there are; otherwise O(topics).
pub(super) struct WeightedRoundRobin {
    weights: Vec<i64>,
    current: Vec<i64>,
    /// With equal weights: the next index, and `weights`/`current` stay empty.
    uniform: Option<(usize, usize)>,
}

impl WeightedRoundRobin {
    /// Turns among `weights.len()` topics; a weight of 0 counts as 1.
    pub fn new(weights: Vec<u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(|w| i64::from(w.max(1))).collect();
        if weights.windows(2).all(|w| w[0] == w[1]) {
            return WeightedRoundRobin {
                uniform: Some((0, weights.len().max(1))),
                weights: Vec::new(),
                current: Vec::new(),
            };
        }
        WeightedRoundRobin {
            current: vec![0; weights.len()],
            weights,
            uniform: None,
        }
    }

    /// The index whose turn it is.
    pub fn next(&mut self) -> usize {
        if let Some((next, len)) = self.uniform.as_mut() {
            let turn = *next;
            *next = (turn + 1) % *len;
            return turn;
        }
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

    /// Equal weights (whatever their value) take turns in index order, the way the
    /// weighted walk does with them.
    #[test]
    fn equal_weights_take_turns_in_order() {
        for weight in [1, 5] {
            let mut wrr = WeightedRoundRobin::new(vec![weight; 3]);
            let turns: Vec<usize> = (0..7).map(|_| wrr.next()).collect();
            assert_eq!(turns, vec![0, 1, 2, 0, 1, 2, 0]);
        }
        let mut one = WeightedRoundRobin::new(vec![1]);
        assert_eq!((one.next(), one.next()), (0, 0));
    }
}
