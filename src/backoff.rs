//! The one exponential backoff: reconnect attempts and the default
//! session's replacement both wait by it.

use std::{sync::Arc, time::Duration};

/// A source of random numbers, one `u64` per delay.
pub(crate) type Random = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Delays that start at `initial` and double up to `max`, each shortened by a
/// random amount of up to half ("equal jitter"), so that clients that failed
/// together do not all retry at the same instant.
#[derive(Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    next: Duration,
    max: Duration,
    random: Random,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff")
            .field("initial", &self.initial)
            .field("next", &self.next)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Backoff {
    /// A backoff jittered by the process's random source.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self::with_random(initial, max, entropy())
    }

    /// A backoff jittered by `random` (tests inject a deterministic one).
    pub(crate) fn with_random(initial: Duration, max: Duration, random: Random) -> Self {
        Self {
            initial,
            next: initial,
            max,
            random,
        }
    }

    /// The delay to wait now: the current step, at most `max`, less a random
    /// part of up to half of it. The next step is twice as long, at most `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next.min(self.max);
        self.next = self.next.saturating_mul(2).min(self.max);
        jittered(step, (self.random)())
    }

    /// Starts again from the initial delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// `step` less `random` modulo half of it (plus one nanosecond): a delay in
/// `[step / 2, step]`; `random = 0` gives `step` itself.
fn jittered(step: Duration, random: u64) -> Duration {
    let span = step.as_nanos() / 2 + 1;
    let cut = u128::from(random) % span;
    // `cut <= random`, so it fits in a u64.
    step.saturating_sub(Duration::from_nanos(u64::try_from(cut).unwrap_or(u64::MAX)))
}

/// The process's random source: std's randomly keyed SipHash of a counter
/// (no dependency for a number that only spreads retries apart).
pub(crate) fn entropy() -> Random {
    use std::{
        hash::{BuildHasher, RandomState},
        sync::atomic::{AtomicU64, Ordering},
    };
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    Arc::new(|| RandomState::new().hash_one(DRAWS.fetch_add(1, Ordering::Relaxed)))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A random source that always draws 0: no jitter.
    pub(crate) fn no_jitter() -> Random {
        Arc::new(|| 0)
    }

    /// A deterministic random source: splitmix64 from `seed`.
    pub(crate) fn seeded(seed: u64) -> Random {
        let state = AtomicU64::new(seed);
        Arc::new(move || {
            let mut z = state
                .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
                .wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    }

    #[test]
    fn doubles_up_to_the_maximum_and_resets() {
        let mut backoff = Backoff::with_random(
            Duration::from_millis(100),
            Duration::from_millis(350),
            no_jitter(),
        );
        let delays: Vec<_> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn a_huge_maximum_does_not_overflow() {
        let mut backoff = Backoff::with_random(
            Duration::from_secs(u64::MAX / 2),
            Duration::MAX,
            no_jitter(),
        );
        for _ in 0..4 {
            backoff.next_delay();
        }
        assert_eq!(backoff.next_delay(), Duration::MAX);
        let mut jittered =
            Backoff::with_random(Duration::MAX, Duration::MAX, Arc::new(|| u64::MAX));
        assert!(jittered.next_delay() >= Duration::MAX / 2);
    }

    /// Defect 5 (jitter): every caller retried on the same schedule. Each
    /// delay now lies between half its step and the step, and two sources
    /// spread the same schedule apart.
    #[test]
    fn delays_are_jittered_between_half_and_all_of_each_step() {
        let schedule = |random: Random| {
            let mut backoff =
                Backoff::with_random(Duration::from_millis(500), Duration::from_secs(50), random);
            (0..8).map(|_| backoff.next_delay()).collect::<Vec<_>>()
        };
        let (a, b) = (schedule(seeded(1)), schedule(seeded(2)));
        let mut step = Duration::from_millis(500);
        for (da, db) in a.iter().zip(&b) {
            for delay in [da, db] {
                assert!(
                    *delay >= step / 2 && *delay <= step,
                    "{delay:?} for {step:?}"
                );
            }
            step = (step * 2).min(Duration::from_secs(50));
        }
        assert_ne!(a, b, "two sources, two schedules");
        assert_eq!(a, schedule(seeded(1)), "a seeded source is deterministic");
        assert_ne!(schedule(entropy()), schedule(entropy()));
    }
}
