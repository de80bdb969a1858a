//! `balance leastconn`: the pickable server with the lowest load relative to its weight.
//!
//! The load compared is `(conns + 1) / weight`, the load the server would carry after taking
//! this connection (HAProxy keys its leastconn tree the same way). With a plain
//! `conns / weight`, every idle server would tie whatever its weight; the `+ 1` makes an idle
//! weight-3 server win over an idle weight-1 one, and the greedy choice then keeps
//! `conns` proportional to the weights. Comparisons cross-multiply in u64: no floats, no
//! division, no overflow.
//!
//! Ties are broken round robin, as HAProxy requeues a server behind its equals once used: the
//! scan starts just after the server picked last, and only a strictly lower load replaces the
//! first candidate found. Equal servers with long-lived or equal connection counts therefore
//! share the connections instead of the first one taking them all.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{load_less, Algorithm, PickRequest};

#[derive(Debug, Default)]
pub struct LeastConn {
    /// Where the next scan starts: one past the last pick. A stale value under concurrency
    /// only changes which of several equal servers wins.
    cursor: AtomicUsize,
}

impl LeastConn {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Algorithm for LeastConn {
    fn pick(&self, request: &PickRequest<'_>) -> Option<usize> {
        let servers = request.servers;
        let n = servers.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.load(Ordering::Relaxed) % n;
        // (index, conns + 1, weight) of the best candidate so far.
        let mut best: Option<(usize, u64, u32)> = None;
        for step in 0..n {
            let i = (start + step) % n;
            let Some(server) = servers.get(i) else {
                continue;
            };
            if !server.pickable() {
                continue;
            }
            let load = u64::from(server.conns) + 1;
            match best {
                Some((_, b_load, b_weight))
                    if !load_less(load, server.weight, b_load, b_weight) => {}
                _ => best = Some((i, load, server.weight)),
            }
        }
        let (index, _, _) = best?;
        self.cursor.store(index + 1, Ordering::Relaxed);
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::ServerView;
    use rand::{Rng, SeedableRng};

    fn with_conns(weights: &[u32], conns: &[u32]) -> Vec<ServerView> {
        weights
            .iter()
            .zip(conns)
            .map(|(&weight, &conns)| ServerView {
                weight,
                conns,
                eligible: true,
            })
            .collect()
    }

    #[test]
    fn picks_least_loaded() {
        let alg = LeastConn::new();
        assert_eq!(
            alg.pick(&req(&with_conns(&[1, 1, 1], &[5, 2, 7]), 0)),
            Some(1)
        );
        // (4+1)/1 vs (9+1)/4: the weight-4 server, although it has more connections.
        assert_eq!(alg.pick(&req(&with_conns(&[1, 4], &[4, 9]), 0)), Some(1));
        // Idle servers: the heavier one first.
        let alg = LeastConn::new();
        assert_eq!(alg.pick(&req(&with_conns(&[1, 3], &[0, 0]), 0)), Some(1));
    }

    #[test]
    fn ties_rotate() {
        let alg = LeastConn::new();
        let servers = with_conns(&[1, 1, 1], &[3, 3, 3]);
        let picks: Vec<_> = (0..7)
            .map(|_| alg.pick(&req(&servers, 0)).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
        // Only the tied minimum servers rotate.
        let servers = with_conns(&[1, 1, 1, 1], &[2, 5, 2, 2]);
        let picks: Vec<_> = (0..6)
            .map(|_| alg.pick(&req(&servers, 0)).unwrap())
            .collect();
        assert_eq!(picks, [2, 3, 0, 2, 3, 0]);
    }

    #[test]
    fn empty_ineligible_zero_weight() {
        let alg = LeastConn::new();
        assert_eq!(alg.pick(&req(&[], 0)), None);
        let none = views_eligible(&[1, 1], &[false, false]);
        assert_eq!(alg.pick(&req(&none, 0)), None);
        assert_eq!(alg.pick(&req(&views(&[0]), 0)), None);
        // The idle weight-0 and ineligible servers are never chosen over loaded ones.
        let mut servers = with_conns(&[0, 1, 1], &[0, 0, 9]);
        servers[1].eligible = false;
        assert_eq!(alg.pick(&req(&servers, 0)), Some(2));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let alg = LeastConn::new();
        let servers = with_conns(&[256, 1], &[u32::MAX, u32::MAX - 1]);
        assert_eq!(alg.pick(&req(&servers, 0)), Some(0));
    }

    #[test]
    fn server_count_changes_do_not_panic() {
        let alg = LeastConn::new();
        for n in [5usize, 1, 0, 3] {
            let servers = views(&vec![1; n]);
            for _ in 0..5 {
                assert_eq!(alg.pick(&req(&servers, 0)).is_some(), n > 0);
            }
        }
    }

    /// Long-lived connections only arrive: conns end up proportional to the weights.
    #[test]
    fn accumulating_connections_follow_weights() {
        let alg = LeastConn::new();
        let weights = [1, 2, 3];
        let mut servers = views(&weights);
        for _ in 0..600 {
            let i = alg.pick(&req(&servers, 0)).unwrap();
            servers[i].conns += 1;
        }
        let conns: Vec<u32> = servers.iter().map(|s| s.conns).collect();
        for (c, expected) in conns.iter().zip([100, 200, 300]) {
            assert!(c.abs_diff(expected) <= 1, "{conns:?}");
        }
    }

    /// Connections arrive and leave at random: the number of picks per server follows the
    /// weights.
    #[test]
    fn simulated_churn_distribution() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let alg = LeastConn::new();
        let weights = [1u32, 2, 3];
        let mut servers = views(&weights);
        let mut picks = [0u64; 3];
        for _ in 0..60_000 {
            // Close a random open connection half the time (keeps ~a few dozen open).
            let open: u32 = servers.iter().map(|s| s.conns).sum();
            if open > 0 && rng.gen_bool(0.5) {
                let mut k = rng.gen_range(0..open);
                for s in servers.iter_mut() {
                    if k < s.conns {
                        s.conns -= 1;
                        break;
                    }
                    k -= s.conns;
                }
            }
            let i = alg.pick(&req(&servers, 0)).unwrap();
            servers[i].conns += 1;
            picks[i] += 1;
        }
        assert_fits(&picks, &as_f64(&weights));
        assert_does_not_fit(&picks, &[1.0, 1.0, 1.0]);
    }

    /// Equal-weight servers whose connections never close (conns grow equally) share the
    /// connections in rotation, as do servers whose counts are not updated at all (e.g. many
    /// picks between two refreshes of the counters).
    #[test]
    fn equal_servers_share_when_counts_are_stale() {
        let alg = LeastConn::new();
        let servers = views(&[2, 2, 2, 2]);
        let counts = count_picks(&alg, &servers, 40_000);
        assert_eq!(counts, [10_000; 4]);
    }
}
