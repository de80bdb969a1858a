//! `balance random[(draws)]`: power of `draws` choices.
//!
//! Each draw picks a pickable server at random with probability proportional to its weight;
//! among the `draws` candidates (drawn independently, so possibly the same one twice) the one
//! with the lowest `conns / weight` wins, the earlier draw on ties. `draws = 1` is plain weighted
//! random; two draws already cut the worst-case load from ~log n / log log n to
//! ~log log n above the mean (the "power of two choices"), which is why 2 is the default.
//!
//! The draws use the thread-local RNG (no lock shared between workers, no allocation after the
//! thread's first use). Tests inject a seeded RNG with [`Random::with_seed`].

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{load_less, lock, Algorithm, PickRequest};

/// More draws than this only add cost: the choice is already the least loaded server of a
/// large sample.
const MAX_DRAWS: u32 = 64;

#[derive(Debug)]
pub struct Random {
    draws: u32,
    /// A fixed RNG for reproducible tests; `None` uses the thread-local RNG.
    seeded: Option<Mutex<StdRng>>,
}

impl Random {
    /// `draws` is clamped to 1..=64 (0 would never pick anything).
    pub fn new(draws: u32) -> Self {
        Random {
            draws: draws.clamp(1, MAX_DRAWS),
            seeded: None,
        }
    }

    /// Deterministic variant, for tests and simulations.
    pub fn with_seed(draws: u32, seed: u64) -> Self {
        Random {
            seeded: Some(Mutex::new(StdRng::seed_from_u64(seed))),
            ..Random::new(draws)
        }
    }

    pub fn draws(&self) -> u32 {
        self.draws
    }

    fn pick_with<R: Rng + ?Sized>(&self, rng: &mut R, request: &PickRequest<'_>) -> Option<usize> {
        let servers = request.servers;
        let total: u64 = servers
            .iter()
            .filter(|s| s.pickable())
            .map(|s| u64::from(s.weight))
            .sum();
        if total == 0 {
            return None;
        }
        let mut best: Option<(usize, u64, u32)> = None;
        for _ in 0..self.draws {
            let mut ticket = rng.gen_range(0..total);
            let mut drawn = None;
            for (i, s) in servers.iter().enumerate() {
                if !s.pickable() {
                    continue;
                }
                let w = u64::from(s.weight);
                if ticket < w {
                    drawn = Some((i, u64::from(s.conns), s.weight));
                    break;
                }
                ticket -= w;
            }
            let Some((i, conns, weight)) = drawn else {
                continue;
            };
            match best {
                Some((_, b_conns, b_weight)) if !load_less(conns, weight, b_conns, b_weight) => {}
                _ => best = Some((i, conns, weight)),
            }
        }
        best.map(|(i, _, _)| i)
    }
}

impl Algorithm for Random {
    fn pick(&self, request: &PickRequest<'_>) -> Option<usize> {
        match &self.seeded {
            Some(rng) => self.pick_with(&mut *lock(rng), request),
            None => self.pick_with(&mut rand::thread_rng(), request),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::ServerView;

    #[test]
    fn draws_are_clamped() {
        assert_eq!(Random::new(0).draws(), 1);
        assert_eq!(Random::new(2).draws(), 2);
        assert_eq!(Random::new(1000).draws(), MAX_DRAWS);
    }

    #[test]
    fn empty_ineligible_zero_weight() {
        for alg in [Random::new(2), Random::with_seed(3, 1)] {
            assert_eq!(alg.pick(&req(&[], 0)), None);
            let none = views_eligible(&[1, 1], &[false, false]);
            assert_eq!(alg.pick(&req(&none, 0)), None);
            assert_eq!(alg.pick(&req(&views(&[0, 0]), 0)), None);
            let mixed = views_eligible(&[0, 3, 5, 1], &[true, false, true, false]);
            for _ in 0..200 {
                assert_eq!(alg.pick(&req(&mixed, 0)), Some(2));
            }
        }
    }

    #[test]
    fn weighted_random_distribution() {
        let weights = [1, 2, 3];
        let alg = Random::with_seed(1, 11);
        let counts = count_picks(&alg, &views(&weights), 60_000);
        assert_fits(&counts, &as_f64(&weights));
        assert_does_not_fit(&counts, &[1.0, 1.0, 1.0]);
        // A subtle bias is still caught: 1:2:3 is not 1.1:2:2.9.
        assert_does_not_fit(&counts, &[1.1, 2.0, 2.9]);
    }

    /// With equal connection counts (all ties), more draws keep the weighted proportions:
    /// the first draw wins ties, and it is a weighted draw.
    #[test]
    fn two_draws_distribution_on_ties() {
        let weights = [1, 2, 3];
        let alg = Random::with_seed(2, 12);
        let counts = count_picks(&alg, &views(&weights), 60_000);
        assert_fits(&counts, &as_f64(&weights));
    }

    /// The runtime variant (thread-local RNG): valid picks, every server used, rough weights.
    #[test]
    fn thread_rng_variant_smoke() {
        let alg = Random::new(1);
        let counts = count_picks(&alg, &views(&[1, 3]), 20_000);
        // Expected 5000; 16 standard deviations of slack (sd = 61): cannot flake.
        assert!((4000..6000).contains(&counts[0]), "{counts:?}");
    }

    /// Balls into bins with departures: two draws keep the most loaded server much closer to
    /// the mean than one draw does.
    #[test]
    fn two_choices_beat_one() {
        fn max_load(draws: u32) -> u32 {
            let alg = Random::with_seed(draws, 99);
            let mut servers: Vec<ServerView> = views(&[1; 50]);
            let mut worst = 0;
            for _ in 0..5_000 {
                let i = alg.pick(&req(&servers, 0)).unwrap();
                servers[i].conns += 1;
                worst = worst.max(servers[i].conns);
            }
            worst
        }
        let one = max_load(1);
        let two = max_load(2);
        // Mean load is 100. Uniform random puts ~130 on the worst server; two choices ~102.
        assert!(two < one, "random(2) max {two} vs random(1) max {one}");
        assert!(two <= 105, "random(2) max {two}");
        assert!(one >= 115, "random(1) max {one}");
    }

    /// Weighted servers under two draws: loads track weights (conns / weight balanced).
    #[test]
    fn two_choices_follow_weights() {
        let alg = Random::with_seed(2, 5);
        let weights = [1u32, 2, 3];
        let mut servers = views(&weights);
        for _ in 0..6_000 {
            let i = alg.pick(&req(&servers, 0)).unwrap();
            servers[i].conns += 1;
        }
        let conns: Vec<u64> = servers.iter().map(|s| u64::from(s.conns)).collect();
        assert_fits(&conns, &as_f64(&weights));
    }
}
