//! How long a failed task waits before its next attempt.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The wait between a failed attempt and the next one.
///
/// The default is exponential: 1 s after the first failure, doubling each time, capped at
/// one hour, with ±20 % jitter so that tasks that failed together do not retry together.
///
/// ```
/// use std::time::Duration;
/// use taskmill_core::Backoff;
///
/// let fixed = Backoff::constant(Duration::from_secs(5));
/// assert_eq!(fixed.delay(3), Duration::from_secs(5));
///
/// // Like taskqueue's BackoffFunc: any function of the attempt number.
/// let linear = Backoff::custom(|attempt| Duration::from_secs(10 * u64::from(attempt)));
/// assert_eq!(linear.delay(2), Duration::from_secs(20));
/// ```
#[derive(Clone)]
pub struct Backoff(Kind);

#[derive(Clone)]
enum Kind {
    Exponential {
        base: Duration,
        factor: f64,
        max: Duration,
        jitter: f64,
    },
    Custom(Arc<dyn Fn(u32) -> Duration + Send + Sync>),
}

impl Backoff {
    /// `base × factor^(attempt-1)`, capped at `max`, then spread by ±`jitter` (a fraction
    /// from 0 to 1).
    pub fn exponential(base: Duration, factor: f64, max: Duration, jitter: f64) -> Self {
        Backoff(Kind::Exponential {
            base,
            factor: factor.max(1.0),
            max,
            jitter: jitter.clamp(0.0, 1.0),
        })
    }

    /// The same wait every time.
    pub fn constant(delay: Duration) -> Self {
        Self::exponential(delay, 1.0, delay, 0.0)
    }

    /// A function of the attempt number that just failed (1 for the first run).
    pub fn custom(f: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        Backoff(Kind::Custom(Arc::new(f)))
    }

    /// The wait after attempt number `attempt` (from 1) failed.
    pub fn delay(&self, attempt: u32) -> Duration {
        match &self.0 {
            Kind::Custom(f) => f(attempt),
            Kind::Exponential {
                base,
                factor,
                max,
                jitter,
            } => {
                let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
                let raw = base.as_secs_f64() * factor.powi(exp);
                let capped = raw.min(max.as_secs_f64());
                let spread = if *jitter > 0.0 {
                    1.0 + jitter * (2.0 * fastrand::f64() - 1.0)
                } else {
                    1.0
                };
                Duration::try_from_secs_f64(capped * spread).unwrap_or(*max)
            }
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::exponential(Duration::from_secs(1), 2.0, Duration::from_secs(3600), 0.2)
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Exponential {
                base,
                factor,
                max,
                jitter,
            } => f
                .debug_struct("Backoff::Exponential")
                .field("base", base)
                .field("factor", factor)
                .field("max", max)
                .field("jitter", jitter)
                .finish(),
            Kind::Custom(_) => f.write_str("Backoff::Custom"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_doubles_within_jitter_and_caps() {
        let b = Backoff::default();
        for attempt in 1..=12u32 {
            let expected = (2f64.powi(attempt as i32 - 1)).min(3600.0);
            let got = b.delay(attempt).as_secs_f64();
            assert!(
                got >= expected * 0.8 - 1e-9 && got <= expected * 1.2 + 1e-9,
                "attempt {attempt}: {got}s not within 20% of {expected}s"
            );
        }
        assert!(b.delay(u32::MAX) <= Duration::from_secs(4320));
    }

    #[test]
    fn without_jitter_it_is_exact() {
        let b = Backoff::exponential(Duration::from_millis(100), 3.0, Duration::from_secs(1), 0.0);
        let got: Vec<_> = (1..=4).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(got, vec![100, 300, 900, 1000]);
    }
}
