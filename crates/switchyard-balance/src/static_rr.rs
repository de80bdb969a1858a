//! `balance static-rr`: weighted round robin over a precomputed cyclic map.
//!
//! As in HAProxy, the servers pickable when the map is built are laid out in a map of
//! `sum(weight)` slots (weights first divided by their gcd), interleaved with the smooth
//! weighted round-robin order, and a position walks the map. The position is never reset, so
//! a rebuild continues the cycle instead of restarting it. A server that is momentarily not
//! pickable (full) is skipped at pick time without rebuilding, like HAProxy skips full servers.
//!
//! The engine's eligibility does not say *why* a server is ineligible, so a server full at
//! build time is left out of the map; to avoid starving it for a whole generation, the map is
//! rebuilt when a pickable server is missing from it. Within a generation the membership only
//! grows (servers already in the map stay, and are skipped while full), so this happens at
//! most once per server and generation. A change of `generation`, of the number of servers or
//! of any weight rebuilds the map from the servers pickable at that time.
//!
//! Building costs O(sum(weight) x servers); picking costs O(servers) to validate the map plus
//! the slots skipped, with no allocation.

use std::sync::{Arc, Mutex};

use crate::{lock, Algorithm, PickRequest, ServerView};

#[derive(Debug, Default)]
pub struct StaticRoundRobin {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    map: Option<Arc<Map>>,
    /// Next slot to serve; survives rebuilds.
    position: usize,
}

#[derive(Debug)]
struct Map {
    generation: u64,
    /// Weight of each server when the map was built.
    weights: Vec<u32>,
    /// Whether each server has slots in the map.
    present: Vec<bool>,
    /// Server index of each slot.
    slots: Vec<usize>,
}

impl Map {
    /// `previous`: the map being replaced, whose members are kept if it describes the same
    /// generation and weights.
    fn build(request: &PickRequest<'_>, previous: Option<&Map>) -> Map {
        let servers = request.servers;
        let keep = previous.filter(|m| m.same_farm(request));
        let present: Vec<bool> = servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.weight > 0
                    && (s.eligible || keep.is_some_and(|m| m.present.get(i) == Some(&true)))
            })
            .collect();
        let divisor = servers
            .iter()
            .zip(&present)
            .filter(|(_, &p)| p)
            .fold(0u32, |g, (s, _)| gcd(g, s.weight))
            .max(1);
        let weights: Vec<i64> = servers
            .iter()
            .zip(&present)
            .map(|(s, &p)| if p { i64::from(s.weight / divisor) } else { 0 })
            .collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; servers.len()];
        let mut slots = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        // The smooth weighted round-robin sequence over one cycle: each server appears exactly
        // `weight` times, spread out.
        for _ in 0..total {
            let mut best: Option<(usize, i64)> = None;
            for (i, (&w, cur)) in weights.iter().zip(current.iter_mut()).enumerate() {
                if w == 0 {
                    continue;
                }
                *cur += w;
                match best {
                    Some((_, b)) if *cur <= b => {}
                    _ => best = Some((i, *cur)),
                }
            }
            let Some((i, _)) = best else { break };
            if let Some(cur) = current.get_mut(i) {
                *cur -= total;
            }
            slots.push(i);
        }
        Map {
            generation: request.generation,
            weights: servers.iter().map(|s| s.weight).collect(),
            present,
            slots,
        }
    }

    /// Built for the same generation, servers and weights as `request`.
    fn same_farm(&self, request: &PickRequest<'_>) -> bool {
        self.generation == request.generation
            && self.weights.len() == request.servers.len()
            && self.present.len() == request.servers.len()
            && request
                .servers
                .iter()
                .zip(&self.weights)
                .all(|(s, &w)| s.weight == w)
    }

    /// Still usable for `request`: same farm and no pickable server missing (no allocation,
    /// O(servers)).
    fn valid_for(&self, request: &PickRequest<'_>) -> bool {
        self.same_farm(request)
            && request
                .servers
                .iter()
                .zip(&self.present)
                .all(|(s, &present)| present || !s.pickable())
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl StaticRoundRobin {
    pub fn new() -> Self {
        Self::default()
    }

    /// Walk the map from the position to the first pickable server.
    fn serve(state: &mut State, servers: &[ServerView]) -> Option<usize> {
        let State { map, position } = state;
        let slots = &map.as_ref()?.slots;
        let len = slots.len();
        if len == 0 {
            return None;
        }
        let start = *position % len;
        for step in 0..len {
            let slot = (start + step) % len;
            let Some(&index) = slots.get(slot) else {
                continue;
            };
            if servers.get(index).is_some_and(ServerView::pickable) {
                *position = slot + 1;
                return Some(index);
            }
        }
        None
    }
}

impl Algorithm for StaticRoundRobin {
    fn pick(&self, request: &PickRequest<'_>) -> Option<usize> {
        let previous = {
            let mut state = lock(&self.state);
            match &state.map {
                Some(m) if m.valid_for(request) => return Self::serve(&mut state, request.servers),
                m => m.clone(),
            }
        };
        // Build outside the lock; concurrent pickers may build too, the last one wins, and
        // every built map is valid.
        let map = Arc::new(Map::build(request, previous.as_deref()));
        let old;
        let picked = {
            let mut state = lock(&self.state);
            old = state.map.replace(map);
            Self::serve(&mut state, request.servers)
        };
        drop((old, previous)); // freed outside the lock
        picked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn seq(alg: &StaticRoundRobin, servers: &[ServerView], generation: u64, n: usize) -> String {
        (0..n)
            .map(|_| match alg.pick(&req(servers, generation)) {
                Some(i) => char::from(b'a' + i as u8),
                None => '-',
            })
            .collect()
    }

    #[test]
    fn cyclic_interleaved_sequence() {
        let alg = StaticRoundRobin::new();
        assert_eq!(seq(&alg, &views(&[5, 1, 1]), 0, 14), "aabacaaaabacaa");
        let alg = StaticRoundRobin::new();
        assert_eq!(seq(&alg, &views(&[1, 1, 1]), 0, 6), "abcabc");
        let alg = StaticRoundRobin::new();
        // gcd reduction: 10:20 is the same cycle as 1:2.
        assert_eq!(seq(&alg, &views(&[10, 20]), 0, 6), "babbab");
    }

    #[test]
    fn empty_ineligible_and_zero_weight() {
        let alg = StaticRoundRobin::new();
        assert_eq!(alg.pick(&req(&[], 0)), None);
        let none = views_eligible(&[1, 1], &[false, false]);
        assert_eq!(alg.pick(&req(&none, 0)), None);
        assert_eq!(alg.pick(&req(&views(&[0, 0]), 0)), None);
        let counts = count_picks(&alg, &views(&[0, 3, 0, 1]), 400);
        assert_eq!(counts, [0, 300, 0, 100]);
    }

    #[test]
    fn full_server_is_skipped_then_resumes() {
        let alg = StaticRoundRobin::new();
        let all = views(&[1, 1, 1]);
        assert_eq!(seq(&alg, &all, 0, 2), "ab");
        let c_full = views_eligible(&[1, 1, 1], &[true, true, false]);
        assert_eq!(seq(&alg, &c_full, 0, 3), "aba");
        // c is pickable again and present in the map: the cycle simply continues.
        assert_eq!(seq(&alg, &all, 0, 4), "bcab");
    }

    #[test]
    fn server_full_at_build_time_is_not_starved() {
        let alg = StaticRoundRobin::new();
        let b_full = views_eligible(&[1, 1, 1], &[true, false, true]);
        assert_eq!(seq(&alg, &b_full, 7, 4), "acac");
        // Same generation, b frees up: the map is rebuilt to include it.
        let counts = count_picks(&alg, &views(&[1, 1, 1]), 300);
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn membership_grows_within_a_generation() {
        let alg = StaticRoundRobin::new();
        let a_full = views_eligible(&[1, 1, 1], &[false, true, true]);
        assert_eq!(seq(&alg, &a_full, 0, 2), "bc");
        // a frees up while b fills: the rebuilt map keeps b, so b freeing up later needs no
        // further rebuild and the cycle continues through all three.
        let b_full = views_eligible(&[1, 1, 1], &[true, false, true]);
        assert_eq!(seq(&alg, &b_full, 0, 2), "ca");
        let counts = count_picks(&alg, &views(&[1, 1, 1]), 300);
        assert_eq!(counts, [100, 100, 100]);
        let state = lock(&alg.state);
        assert_eq!(
            state.map.as_ref().map(|m| m.present.clone()),
            Some(vec![true; 3])
        );
    }

    #[test]
    fn generation_change_rebuilds_without_resetting_position() {
        let alg = StaticRoundRobin::new();
        assert_eq!(seq(&alg, &views(&[1, 1, 1, 1]), 1, 2), "ab");
        // d removed by the engine (weight 0 / down, generation bumped): map a b c, position 2.
        let d_down = views_eligible(&[1, 1, 1, 1], &[true, true, true, false]);
        assert_eq!(seq(&alg, &d_down, 2, 4), "cabc");
        // Weight change under the same generation is detected too.
        let counts = count_picks(&alg, &views(&[2, 1, 1, 0]), 400);
        assert_eq!(counts, [200, 100, 100, 0]);
    }

    #[test]
    fn server_count_changes_do_not_panic() {
        let alg = StaticRoundRobin::new();
        for n in [3usize, 5, 1, 0, 4, 2] {
            let servers = views(&vec![3; n]);
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
    fn distribution_1_2_3() {
        let alg = StaticRoundRobin::new();
        let weights = [1, 2, 3];
        let counts = count_picks(&alg, &views(&weights), 60_000);
        assert_eq!(counts, [10_000, 20_000, 30_000]);
        assert_fits(&counts, &as_f64(&weights));
        assert_does_not_fit(&counts, &[1.0, 2.0, 2.0]);
    }

    #[test]
    fn poisoned_state_is_recovered() {
        let alg = std::sync::Arc::new(StaticRoundRobin::new());
        let a2 = alg.clone();
        let _ = std::thread::spawn(move || {
            let _g = a2.state.lock().unwrap();
            panic!("poison");
        })
        .join();
        assert_eq!(alg.pick(&req(&views(&[1, 1]), 0)), Some(0));
    }
}
