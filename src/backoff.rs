//! The one exponential backoff: reconnect attempts and the default
//! session's replacement both wait by it.

use std::time::Duration;

/// Delays that start at `initial` and double up to `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            next: initial,
            max,
        }
    }

    /// The delay to wait now; the one after it is twice as long, at most `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next.min(self.max);
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// Starts again from the initial delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<_> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn a_huge_maximum_does_not_overflow() {
        let mut backoff = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        for _ in 0..4 {
            backoff.next_delay();
        }
        assert_eq!(backoff.next_delay(), Duration::MAX);
    }
}
