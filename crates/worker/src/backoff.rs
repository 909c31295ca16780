//! When to try a failed job again: exponential in the attempt, capped, with full jitter
//! over the upper half so that a burst of failures does not retry in lockstep.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The delay after failed attempt `attempt` (1-based): `base × 2^(attempt-1)`, capped,
    /// then a uniformly random point in its upper half.
    pub fn delay(&self, attempt: usize) -> Duration {
        let exp = attempt.saturating_sub(1).min(30) as u32;
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.cap);
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_stops_at_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
        };
        for attempt in 1..=20 {
            let ceiling = Duration::from_millis(100 * (1u64 << (attempt - 1).min(20)))
                .min(Duration::from_secs(10));
            for _ in 0..50 {
                let d = b.delay(attempt);
                assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
            }
        }
    }
}
