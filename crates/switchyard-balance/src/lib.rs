//! Load-balancing algorithms. Each is a small type behind [`Algorithm`], pure apart from its
//! own bookkeeping, so it can be unit-tested without sockets.
//!
//! The engine decides which servers are *eligible* (up, not in maintenance or drain, not full,
//! active vs backup tier) and hands the algorithm a view of every server of the tier; the
//! algorithm only chooses among the eligible ones.
//!
//! Every `pick` is on the data path: no panics, no indexing that can fail when the slice is
//! empty or changed size, and internal locks are held only for arithmetic. A poisoned lock is
//! recovered (the protected state is always valid between statements), never propagated.

use std::net::IpAddr;

use switchyard_config::{Balance, HashType};

pub mod first;
pub mod hash;
pub mod leastconn;
pub mod random;
pub mod roundrobin;
pub mod source;
pub mod static_rr;

#[cfg(test)]
mod testutil;

pub use first::First;
pub use leastconn::LeastConn;
pub use random::Random;
pub use roundrobin::RoundRobin;
pub use source::Source;
pub use static_rr::StaticRoundRobin;

/// How one server looks to the algorithm at pick time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerView {
    /// Effective weight (0..=256). A weight of 0 is never picked.
    pub weight: u32,
    /// Connections currently established or being established to the server.
    pub conns: u32,
    /// May receive this connection now.
    pub eligible: bool,
}

impl ServerView {
    /// Eligible and with a non-zero weight: the only servers any algorithm may return.
    #[inline]
    pub fn pickable(&self) -> bool {
        self.eligible && self.weight > 0
    }
}

/// One pick request.
#[derive(Debug, Clone, Copy)]
pub struct PickRequest<'a> {
    /// Every server of the tier, indexed as the engine knows them; the answer is an index here.
    pub servers: &'a [ServerView],
    /// Changes whenever the set of eligible servers or any weight changes for a reason other
    /// than a connection count (state change, weight change, server added or removed).
    /// Algorithms that cache structures derived from weights rebuild them when it changes.
    pub generation: u64,
    /// Client address, for `source` hashing.
    pub client: Option<IpAddr>,
    /// What `uri`, `url_param` and `hdr` hash, taken from the HTTP request by the engine;
    /// `None` when the request lacks it (or in tcp mode): round robin then, as in HAProxy.
    pub key: Option<&'a [u8]>,
}

/// A load-balancing algorithm.
pub trait Algorithm: Send + Sync + std::fmt::Debug {
    /// Choose an eligible server, or `None` when no server is eligible.
    fn pick(&self, request: &PickRequest<'_>) -> Option<usize>;
}

/// Build the algorithm configured by `balance` and `hash-type`.
///
/// `uri`, `url_param` and `hdr` hash [`PickRequest::key`] with the `hash-type` settings (the
/// same hashing as `source`); without a key they fall back to round robin, as HAProxy does when
/// the hashed element is missing. `rdp-cookie` needs an RDP payload the engine does not
/// inspect, so it builds [`RoundRobin`].
pub fn build(balance: &Balance, hash_type: &HashType) -> Box<dyn Algorithm> {
    match balance {
        Balance::RoundRobin => Box::new(RoundRobin::new()),
        Balance::StaticRr => Box::new(StaticRoundRobin::new()),
        Balance::LeastConn => Box::new(LeastConn::new()),
        Balance::First => Box::new(First::new()),
        Balance::Source => Box::new(Source::new(*hash_type)),
        Balance::Random { draws } => Box::new(Random::new(*draws)),
        Balance::Uri | Balance::UrlParam(_) | Balance::Hdr(_) => {
            Box::new(Source::of_request_data(*hash_type))
        }
        Balance::RdpCookie(_) => Box::new(RoundRobin::new()),
    }
}

/// Lock a mutex, recovering from poisoning: every critical section in this crate leaves the
/// state consistent after each statement, and a panic elsewhere must not take the data path
/// down with it.
#[inline]
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `a_conns / a_weight < b_conns / b_weight`, without floats or division. Weights are non-zero
/// for pickable servers; u64 products of u32 operands cannot overflow.
#[inline]
pub(crate) fn load_less(a_conns: u64, a_weight: u32, b_conns: u64, b_weight: u32) -> bool {
    a_conns * u64::from(b_weight) < b_conns * u64::from(a_weight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use switchyard_config::{HashFunction, HashMethod};

    #[test]
    fn build_maps_every_balance() {
        let servers = views(&[1, 1, 1]);
        let hash = HashType::default();
        let all = [
            Balance::RoundRobin,
            Balance::StaticRr,
            Balance::LeastConn,
            Balance::First,
            Balance::Source,
            Balance::Random { draws: 2 },
            Balance::Random { draws: 0 },
            Balance::Uri,
            Balance::UrlParam("id".into()),
            Balance::Hdr("host".into()),
            Balance::RdpCookie(None),
        ];
        for balance in &all {
            let alg = build(balance, &hash);
            let picked = alg.pick(&req(&servers, 0));
            assert!(picked.is_some_and(|i| i < 3), "{balance:?}");
            assert_eq!(alg.pick(&req(&[], 0)), None, "{balance:?}");
            let none = views_eligible(&[1, 1], &[false, false]);
            assert_eq!(alg.pick(&req(&none, 0)), None, "{balance:?}");
            let zero = views(&[0, 0]);
            assert_eq!(alg.pick(&req(&zero, 0)), None, "{balance:?}");
        }
        let consistent = HashType {
            method: HashMethod::Consistent,
            function: HashFunction::Crc32,
            avalanche: true,
        };
        let alg = build(&Balance::Source, &consistent);
        assert!(alg
            .pick(&req_client(&servers, 0, ip(10, 0, 0, 1)))
            .is_some());
    }

    #[test]
    fn l7_algorithms_round_robin_in_tcp() {
        let servers = views(&[1, 1, 1]);
        for balance in [
            Balance::Uri,
            Balance::UrlParam("x".into()),
            Balance::Hdr("h".into()),
            Balance::RdpCookie(Some("mstshash".into())),
        ] {
            let alg = build(&balance, &HashType::default());
            let seq: Vec<_> = (0..6)
                .map(|_| alg.pick(&req(&servers, 0)).unwrap())
                .collect();
            assert_eq!(seq, [0, 1, 2, 0, 1, 2], "{balance:?}");
            // A client address is not what they hash: still round robin.
            let client = ip(10, 0, 0, 1);
            let seq: Vec<_> = (0..3)
                .map(|_| alg.pick(&req_client(&servers, 0, client)).unwrap())
                .collect();
            assert_eq!(seq, [0, 1, 2], "{balance:?}");
        }
    }

    #[test]
    fn l7_keys_pick_the_same_server_and_spread() {
        let servers = views(&[1, 1, 1]);
        for method in [HashMethod::MapBased, HashMethod::Consistent] {
            let hash_type = HashType {
                method,
                ..HashType::default()
            };
            let alg = build(&Balance::Uri, &hash_type);
            let pick = |key: &str| {
                alg.pick(&PickRequest {
                    key: Some(key.as_bytes()),
                    ..req(&servers, 0)
                })
                .unwrap()
            };
            let mut seen = [0u32; 3];
            for i in 0..300 {
                let uri = format!("/item/{i}");
                let first = pick(&uri);
                // Interleaved with other keys, the same key keeps its server.
                assert_eq!(pick("/other"), pick("/other"));
                assert_eq!(pick(&uri), first, "{method:?} {uri}");
                seen[first] += 1;
            }
            assert!(seen.iter().all(|&n| n > 50), "{method:?} {seen:?}");
        }
    }

    /// The chi-square check has power: deliberately wrong pickers over weights 1:2:3 fail it,
    /// both a grossly wrong one (ignores weights) and a subtly wrong one (weight + 1).
    #[test]
    fn chi_square_rejects_wrong_distributions() {
        use rand::{Rng, SeedableRng};
        let weights = [1u32, 2, 3];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut uniform = [0u64; 3];
        let mut off_by_one = [0u64; 3];
        let mut right = [0u64; 3];
        for _ in 0..60_000 {
            uniform[rng.gen_range(0..3)] += 1;
            let t = rng.gen_range(0..9); // weights 2:3:4
            off_by_one[usize::from(t >= 2) + usize::from(t >= 5)] += 1;
            let t = rng.gen_range(0..6); // weights 1:2:3
            right[usize::from(t >= 1) + usize::from(t >= 3)] += 1;
        }
        let w = as_f64(&weights);
        assert_does_not_fit(&uniform, &w);
        assert_does_not_fit(&off_by_one, &w);
        assert_fits(&right, &w);
    }

    #[test]
    fn load_less_cross_multiplies() {
        assert!(load_less(1, 2, 1, 1)); // 0.5 < 1
        assert!(!load_less(2, 2, 1, 1)); // 1 == 1
        assert!(load_less(u64::from(u32::MAX), 256, u64::from(u32::MAX), 1));
    }

    #[test]
    fn lock_recovers_from_poison() {
        let m = std::sync::Arc::new(std::sync::Mutex::new(5));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 5);
    }
}
