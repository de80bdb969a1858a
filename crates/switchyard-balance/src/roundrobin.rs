//! `balance roundrobin`: smooth weighted round robin (the "current weight" algorithm of nginx).
//!
//! Each pick adds every pickable server's weight to its current weight, takes the server with
//! the highest current weight (lowest index on ties) and subtracts the total weight from it.
//! Over any window of `sum(weights)` picks each server is chosen exactly `weight` times, and
//! heavy servers are interleaved with light ones instead of being served in bursts.
//!
//! Weights are read at every pick, so weight changes apply at once. Servers that are not
//! pickable (e.g. momentarily full) keep their current weight frozen and resume where they were;
//! when `generation` or the number of servers changes all current weights restart from zero, as
//! the previous state described a different set of servers.

use std::sync::Mutex;

use crate::{lock, Algorithm, PickRequest};

#[derive(Debug, Default)]
pub struct RoundRobin {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    generation: Option<u64>,
    /// Current weight per server index.
    current: Vec<i64>,
}

impl RoundRobin {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Algorithm for RoundRobin {
    fn pick(&self, request: &PickRequest<'_>) -> Option<usize> {
        let servers = request.servers;
        let mut state = lock(&self.state);
        let state = &mut *state;
        if state.generation != Some(request.generation) || state.current.len() != servers.len() {
            state.generation = Some(request.generation);
            state.current.clear();
            // Only allocates when the tier grew beyond every size seen before.
            state.current.resize(servers.len(), 0);
        }
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for (i, (server, current)) in servers.iter().zip(state.current.iter_mut()).enumerate() {
            if !server.pickable() {
                continue;
            }
            let weight = i64::from(server.weight);
            *current += weight;
            total += weight;
            match best {
                Some((_, b)) if *current <= b => {}
                _ => best = Some((i, *current)),
            }
        }
        let (index, _) = best?;
        if let Some(current) = state.current.get_mut(index) {
            *current -= total;
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn seq(alg: &RoundRobin, servers: &[crate::ServerView], n: usize) -> String {
        (0..n)
            .map(|_| match alg.pick(&req(servers, 0)) {
                Some(i) => char::from(b'a' + i as u8),
                None => '-',
            })
            .collect()
    }

    #[test]
    fn nginx_sequence_5_1_1() {
        let alg = RoundRobin::new();
        let servers = views(&[5, 1, 1]);
        assert_eq!(seq(&alg, &servers, 14), "aabacaaaabacaa");
    }

    #[test]
    fn equal_weights_rotate() {
        let alg = RoundRobin::new();
        assert_eq!(seq(&alg, &views(&[1, 1, 1]), 7), "abcabca");
        let alg = RoundRobin::new();
        assert_eq!(seq(&alg, &views(&[3, 3]), 4), "abab");
    }

    #[test]
    fn weights_1_2_3_interleave() {
        let alg = RoundRobin::new();
        assert_eq!(seq(&alg, &views(&[1, 2, 3]), 12), "cbacbccbacbc");
    }

    #[test]
    fn empty_and_ineligible_give_none() {
        let alg = RoundRobin::new();
        assert_eq!(alg.pick(&req(&[], 0)), None);
        let none = views_eligible(&[1, 2], &[false, false]);
        assert_eq!(alg.pick(&req(&none, 0)), None);
        assert_eq!(alg.pick(&req(&views(&[0, 0, 0]), 0)), None);
    }

    #[test]
    fn weight_zero_never_picked() {
        let alg = RoundRobin::new();
        let servers = views(&[0, 2, 0, 1]);
        let counts = count_picks(&alg, &servers, 300);
        assert_eq!(counts, [0, 200, 0, 100]);
    }

    #[test]
    fn eligibility_change_mid_sequence() {
        let alg = RoundRobin::new();
        let all = views(&[1, 1, 1]);
        assert_eq!(seq(&alg, &all, 2), "ab");
        // c becomes full without a generation change: skipped, a and b continue alternating.
        let c_full = views_eligible(&[1, 1, 1], &[true, true, false]);
        assert_eq!(seq(&alg, &c_full, 4), "abab");
        // c is back: its frozen current weight makes it served promptly.
        let s = seq(&alg, &all, 3);
        assert!(s.contains('c'), "{s}");
        // Over a long run the three are balanced again.
        let counts = count_picks(&alg, &all, 3000);
        for c in counts {
            assert!((999..=1001).contains(&c), "{c}");
        }
    }

    #[test]
    fn generation_change_resets_state() {
        let alg = RoundRobin::new();
        let servers = views(&[5, 1, 1]);
        assert_eq!(alg.pick(&req(&servers, 1)), Some(0));
        assert_eq!(alg.pick(&req(&servers, 1)), Some(0));
        // New generation: the sequence starts over.
        let mut out = String::new();
        for _ in 0..7 {
            out.push(char::from(
                b'a' + alg.pick(&req(&servers, 2)).unwrap() as u8,
            ));
        }
        assert_eq!(out, "aabacaa");
    }

    #[test]
    fn weight_change_applies_immediately() {
        let alg = RoundRobin::new();
        count_picks(&alg, &views(&[1, 1]), 5);
        let counts = count_picks(&alg, &views(&[1, 3]), 400);
        assert!((99..=101).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn server_count_changes_do_not_panic() {
        let alg = RoundRobin::new();
        for n in [3usize, 5, 1, 0, 4, 2] {
            let servers = views(&vec![2; n]);
            for _ in 0..10 {
                let picked = alg.pick(&req(&servers, 0));
                assert_eq!(picked.is_some(), n > 0);
                if let Some(i) = picked {
                    assert!(i < n);
                }
            }
        }
    }

    #[test]
    fn poisoned_state_is_recovered() {
        let alg = std::sync::Arc::new(RoundRobin::new());
        let a2 = alg.clone();
        let _ = std::thread::spawn(move || {
            let _g = a2.state.lock().unwrap();
            panic!("poison");
        })
        .join();
        assert!(alg.state.is_poisoned());
        assert_eq!(alg.pick(&req(&views(&[1]), 0)), Some(0));
    }

    #[test]
    fn distribution_1_2_3() {
        let alg = RoundRobin::new();
        let weights = [1, 2, 3];
        let counts = count_picks(&alg, &views(&weights), 60_000);
        assert_eq!(counts, [10_000, 20_000, 30_000]);
        assert_fits(&counts, &as_f64(&weights));
        // The test has power: a 1:1:1 expectation is rejected.
        assert_does_not_fit(&counts, &[1.0, 1.0, 1.0]);
    }

    #[test]
    fn distribution_with_churn() {
        // Eligibility flips pseudo-randomly (servers filling up); over time the picks still
        // follow the weights among the servers that were pickable.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let alg = RoundRobin::new();
        let weights = [1u32, 2, 3, 4];
        let mut counts = [0u64; 4];
        for _ in 0..60_000 {
            let mut servers = views(&weights);
            // Server 3 is full 10% of the time; the others are always available.
            servers[3].eligible = rng.gen_ratio(9, 10);
            let i = alg.pick(&req(&servers, 0)).unwrap();
            counts[i] += 1;
        }
        // The first three keep their 1:2:3 ratio relative to each other.
        assert_fits(&counts[..3], &[1.0, 2.0, 3.0]);
    }
}
