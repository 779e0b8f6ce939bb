//! Exponential backoff, the one schedule used for relay reconnects (with
//! jitter added by the caller), acknowledgement retries in the outbox, and
//! worker restarts.

use std::time::Duration;

/// Delays that double from `initial` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay after `failures` consecutive failures: zero for 0, then
    /// `initial`, `2 * initial`, `4 * initial`, ... capped at `max`. Never
    /// overflows.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let doublings = failures.saturating_sub(1).min(30);
        self.initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_initial_to_max() {
        let b = Backoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(3600),
        };
        let secs: Vec<u64> = (0..12).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(
            secs,
            [0, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
        );
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn huge_initial_saturates_at_max() {
        let b = Backoff {
            initial: Duration::from_secs(u64::MAX / 2),
            max: Duration::from_secs(60),
        };
        assert_eq!(b.delay(40), Duration::from_secs(60));
    }
}
