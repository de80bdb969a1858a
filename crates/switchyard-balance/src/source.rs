//! `balance source`: the client address picks the server, so a client keeps reaching the same
//! server while the farm does not change.
//!
//! The address bytes (4 for IPv4 and IPv4-mapped IPv6, so dual-stack listeners agree; 16 for
//! IPv6) are hashed with the `hash-type` function, then avalanched when asked. Then:
//!
//! * `map-based`: `hash % total weight of the pickable servers`, mapped through the cumulative
//!   weights. Cheap and stateless, but any change of the pickable set or of a weight remaps
//!   most clients, which is inherent to the method.
//! * `consistent`: a ring with [`POINTS_PER_WEIGHT`] points per unit of weight for every server
//!   of non-zero weight; the key goes to the first point clockwise whose server is pickable. A
//!   server leaving (down or full) only moves its own clients, spread over the others by the
//!   points that follow its own; nobody else moves. Points are placed by hashing
//!   (server index, point number), so a weight change only adds or removes that server's
//!   points. The ring is rebuilt when `generation`, the number of servers or a weight changes.
//!   Keys are always avalanched before the ring lookup (see the comment in `pick`): a raw
//!   short-key hash would not spread over the ring.
//!
//! Without a client address (e.g. a unix socket listener) the pick falls back to round robin.
//!
//! `balance uri`, `url_param` and `hdr` use the same type with the request data the engine
//! hands over in [`PickRequest::key`], which takes precedence over the client address.

use std::net::IpAddr;
use std::sync::Mutex;

use switchyard_config::{HashMethod, HashType};

use crate::hash::{avalanche, avalanche64, hash};
use crate::roundrobin::RoundRobin;
use crate::{lock, Algorithm, PickRequest, ServerView};

/// Ring points per unit of weight: enough for each server's share of the ring to be within a
/// few percent of its weight's share.
pub const POINTS_PER_WEIGHT: u64 = 100;

/// Bound on the ring size (8 MiB); larger farms get fewer points per unit of weight.
const MAX_RING_POINTS: u64 = 1 << 20;

#[derive(Debug)]
pub struct Source {
    hash_type: HashType,
    /// Hashes [`PickRequest::key`] (`uri`, `url_param`, `hdr`) instead of the client address.
    request_data: bool,
    ring: Mutex<Option<Ring>>,
    fallback: RoundRobin,
}

#[derive(Debug)]
struct Ring {
    generation: u64,
    weights: Vec<u32>,
    /// (point, server index), sorted.
    points: Vec<(u32, usize)>,
}

impl Ring {
    fn build(request: &PickRequest<'_>) -> Ring {
        let servers = request.servers;
        let total_weight: u64 = servers.iter().map(|s| u64::from(s.weight)).sum();
        let per_weight = MAX_RING_POINTS
            .checked_div(total_weight)
            .map_or(0, |p| p.clamp(1, POINTS_PER_WEIGHT));
        let mut points =
            Vec::with_capacity(usize::try_from(total_weight * per_weight).unwrap_or(0));
        for (index, server) in servers.iter().enumerate() {
            for point in 0..u64::from(server.weight) * per_weight {
                let key = ((index as u64) << 32) | point;
                points.push(((avalanche64(key) >> 32) as u32, index));
            }
        }
        points.sort_unstable();
        Ring {
            generation: request.generation,
            weights: servers.iter().map(|s| s.weight).collect(),
            points,
        }
    }

    fn valid_for(&self, request: &PickRequest<'_>) -> bool {
        self.generation == request.generation
            && self.weights.len() == request.servers.len()
            && self
                .weights
                .iter()
                .zip(request.servers)
                .all(|(&w, s)| w == s.weight)
    }

    /// First point at or after `key` (wrapping) whose server is pickable.
    fn lookup(&self, key: u32, servers: &[ServerView]) -> Option<usize> {
        let len = self.points.len();
        let start = self.points.partition_point(|&(p, _)| p < key);
        (0..len)
            .filter_map(|step| self.points.get((start + step) % len))
            .map(|&(_, index)| index)
            .find(|&index| servers.get(index).is_some_and(ServerView::pickable))
    }
}

impl Source {
    pub fn new(hash_type: HashType) -> Self {
        Source {
            hash_type,
            request_data: false,
            ring: Mutex::new(None),
            fallback: RoundRobin::new(),
        }
    }

    /// `balance uri|url_param|hdr`: the same hashing over request data.
    pub fn of_request_data(hash_type: HashType) -> Self {
        Source {
            request_data: true,
            ..Source::new(hash_type)
        }
    }

    /// The 32-bit key of a client address.
    pub fn key(&self, client: IpAddr) -> u32 {
        let h = match client {
            IpAddr::V4(v4) => hash(self.hash_type.function, &v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => hash(self.hash_type.function, &v4.octets()),
                None => hash(self.hash_type.function, &v6.octets()),
            },
        };
        if self.hash_type.avalanche {
            avalanche(h)
        } else {
            h
        }
    }

    /// The 32-bit key of request data (`balance uri|url_param|hdr`).
    pub fn key_of(&self, data: &[u8]) -> u32 {
        let h = hash(self.hash_type.function, data);
        if self.hash_type.avalanche {
            avalanche(h)
        } else {
            h
        }
    }

    fn map_based(key: u32, servers: &[ServerView]) -> Option<usize> {
        let total: u64 = servers
            .iter()
            .filter(|s| s.pickable())
            .map(|s| u64::from(s.weight))
            .sum();
        if total == 0 {
            return None;
        }
        let mut ticket = u64::from(key) % total;
        for (i, s) in servers.iter().enumerate() {
            if !s.pickable() {
                continue;
            }
            let w = u64::from(s.weight);
            if ticket < w {
                return Some(i);
            }
            ticket -= w;
        }
        None
    }

    fn consistent(&self, key: u32, request: &PickRequest<'_>) -> Option<usize> {
        if !request.servers.iter().any(ServerView::pickable) {
            return None; // spares walking the whole ring
        }
        {
            let ring = lock(&self.ring);
            if let Some(ring) = ring.as_ref().filter(|r| r.valid_for(request)) {
                return ring.lookup(key, request.servers);
            }
        }
        // Build outside the lock (allocation and sorting); a concurrent builder produces the
        // same ring, so whichever is stored last is fine.
        let built = Ring::build(request);
        let picked = built.lookup(key, request.servers);
        let old = lock(&self.ring).replace(built);
        drop(old); // freed outside the lock
        picked
    }
}

impl Algorithm for Source {
    fn pick(&self, request: &PickRequest<'_>) -> Option<usize> {
        // `source` hashes the client address; `uri`, `url_param` and `hdr` hash the request
        // data the engine gives, and without it (or in tcp mode) go round robin.
        let key = match (self.request_data, request.key, request.client) {
            (true, Some(data), _) => self.key_of(data),
            (false, _, Some(client)) => self.key(client),
            _ => return self.fallback.pick(request),
        };
        match self.hash_type.method {
            HashMethod::MapBased => Self::map_based(key, request.servers),
            // Raw sdbm/djb2 of a 4-byte address fill only a sliver of the 32-bit space (djb2: a
            // ~10M-wide interval), which would put every client on one arc of the ring. The ring
            // therefore always sees an avalanched key; `avalanche` only matters for map-based.
            HashMethod::Consistent if self.hash_type.avalanche => self.consistent(key, request),
            HashMethod::Consistent => self.consistent(avalanche(key), request),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use rand::{Rng, SeedableRng};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use switchyard_config::HashFunction;

    const FUNCTIONS: [HashFunction; 4] = [
        HashFunction::Sdbm,
        HashFunction::Djb2,
        HashFunction::Wt6,
        HashFunction::Crc32,
    ];

    fn hash_types() -> Vec<HashType> {
        let mut out = Vec::new();
        for method in [HashMethod::MapBased, HashMethod::Consistent] {
            for function in FUNCTIONS {
                for avalanche in [false, true] {
                    out.push(HashType {
                        method,
                        function,
                        avalanche,
                    });
                }
            }
        }
        out
    }

    fn consistent(function: HashFunction, avalanche: bool) -> Source {
        Source::new(HashType {
            method: HashMethod::Consistent,
            function,
            avalanche,
        })
    }

    fn random_ips(n: usize, seed: u64) -> Vec<IpAddr> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| IpAddr::V4(Ipv4Addr::from(rng.gen::<u32>())))
            .collect()
    }

    fn assign(alg: &Source, servers: &[ServerView], generation: u64, ips: &[IpAddr]) -> Vec<usize> {
        ips.iter()
            .map(|&ip| alg.pick(&req_client(servers, generation, ip)).unwrap())
            .collect()
    }

    fn counts(assignment: &[usize], n: usize) -> Vec<u64> {
        let mut c = vec![0u64; n];
        for &i in assignment {
            c[i] += 1;
        }
        c
    }

    #[test]
    fn empty_ineligible_zero_weight() {
        for ht in hash_types() {
            let alg = Source::new(ht);
            let client = ip(192, 0, 2, 1);
            assert_eq!(alg.pick(&req_client(&[], 0, client)), None);
            let none = views_eligible(&[1, 1], &[false, false]);
            assert_eq!(alg.pick(&req_client(&none, 0, client)), None);
            assert_eq!(alg.pick(&req_client(&views(&[0, 0]), 0, client)), None);
            let only = views_eligible(&[0, 4, 2], &[true, true, false]);
            for ip in random_ips(200, 1) {
                assert_eq!(alg.pick(&req_client(&only, 0, ip)), Some(1), "{ht:?}");
            }
        }
    }

    #[test]
    fn same_client_same_server() {
        let servers = views(&[1, 2, 3, 1]);
        for ht in hash_types() {
            let alg = Source::new(ht);
            let ips = random_ips(1000, 2);
            let first = assign(&alg, &servers, 0, &ips);
            let again = assign(&alg, &servers, 0, &ips);
            assert_eq!(first, again, "{ht:?}");
            // A fresh instance (another process, a reload) agrees too.
            assert_eq!(assign(&Source::new(ht), &servers, 5, &ips), first, "{ht:?}");
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_hashes_like_ipv4() {
        let alg = Source::new(HashType::default());
        let v4 = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(
            alg.key(IpAddr::V4(v4)),
            alg.key(IpAddr::V6(v4.to_ipv6_mapped()))
        );
        assert_ne!(
            alg.key(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            alg.key(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
    }

    #[test]
    fn no_client_falls_back_to_round_robin() {
        for ht in hash_types() {
            let alg = Source::new(ht);
            let servers = views(&[1, 1, 1]);
            let picks: Vec<_> = (0..6)
                .map(|_| alg.pick(&req(&servers, 0)).unwrap())
                .collect();
            assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        }
    }

    #[test]
    fn map_based_sequence_is_weight_mapped() {
        // sdbm of one octet-vector is known; check the mapping through cumulative weights.
        let servers = views(&[1, 2, 3]);
        for key in 0u32..12 {
            let expected = match key % 6 {
                0 => 0,
                1 | 2 => 1,
                _ => 2,
            };
            assert_eq!(Source::map_based(key, &servers), Some(expected));
        }
    }

    /// 10,000 random clients over weights 1:2:3 with map-based hashing: chi-square fit for every
    /// function, with and without avalanche.
    #[test]
    fn map_based_distribution_follows_weights() {
        let weights = [1, 2, 3];
        let servers = views(&weights);
        let ips = random_ips(10_000, 3);
        for function in FUNCTIONS {
            for avalanche in [false, true] {
                let alg = Source::new(HashType {
                    method: HashMethod::MapBased,
                    function,
                    avalanche,
                });
                let c = counts(&assign(&alg, &servers, 0, &ips), 3);
                assert_fits(&c, &as_f64(&weights));
                assert_does_not_fit(&c, &[1.0, 1.0, 1.0]);
            }
        }
    }

    /// Each server's share of the ring is close to its weight's share. A ring is not a perfect
    /// split (each point's arc is random), so the test measures the exact arc shares with a
    /// relative tolerance, then checks that random clients follow those shares (chi-square).
    #[test]
    fn consistent_distribution_follows_weights() {
        let weights = [1u32, 2, 3, 2];
        let servers = views(&weights);
        let total_w: u32 = weights.iter().sum();
        let ring = Ring::build(&req(&servers, 0));
        let mut arc = vec![0u64; weights.len()];
        let n = ring.points.len();
        for k in 0..n {
            let (p, _) = ring.points[k];
            let (next, _) = ring.points[(k + 1) % n];
            // Keys in (p, next] go to next's server.
            arc[ring.points[(k + 1) % n].1] += u64::from(next.wrapping_sub(p));
        }
        let ring_total: u64 = arc.iter().sum();
        assert_eq!(ring_total, 1u64 << 32);
        for (a, &w) in arc.iter().zip(&weights) {
            let share = *a as f64 / ring_total as f64;
            let expected = f64::from(w) / f64::from(total_w);
            assert!(
                (share / expected - 1.0).abs() < 0.2,
                "share {share:.3} vs {expected:.3}"
            );
        }
        let arc_f: Vec<f64> = arc.iter().map(|&a| a as f64).collect();
        let ips = random_ips(10_000, 4);
        for function in FUNCTIONS {
            for avalanche in [false, true] {
                let alg = consistent(function, avalanche);
                let c = counts(&assign(&alg, &servers, 0, &ips), weights.len());
                assert_fits(&c, &arc_f);
                assert_does_not_fit(&c, &[1.0, 1.0, 1.0, 1.0]);
            }
        }
    }

    /// Removing one server (down, full, or weight 0 with a new generation) moves exactly the
    /// keys of that server, and they spread over the others.
    #[test]
    fn consistent_removal_moves_only_that_servers_keys() {
        let weights = [1u32, 1, 1, 1, 1];
        let servers = views(&weights);
        let ips = random_ips(10_000, 5);
        for function in FUNCTIONS {
            let alg = consistent(function, true);
            let before = assign(&alg, &servers, 0, &ips);
            let removed = 2;
            let mut ineligible = servers.clone();
            ineligible[removed].eligible = false;
            let mut zero = servers.clone();
            zero[removed].weight = 0;
            for (after_servers, generation) in [(&ineligible, 0), (&zero, 1)] {
                let after = assign(&alg, after_servers, generation, &ips);
                let mut moved = 0;
                let mut landed = vec![0u64; weights.len()];
                for (&b, &a) in before.iter().zip(&after) {
                    if b == removed {
                        assert_ne!(a, removed);
                        moved += 1;
                        landed[a] += 1;
                    } else {
                        assert_eq!(a, b, "a key of another server moved");
                    }
                }
                // ~1/5 of the keys moved, and they went to all four remaining servers.
                assert!((1400..2600).contains(&moved), "{moved}");
                assert_eq!(landed[removed], 0);
                for (i, &l) in landed.iter().enumerate() {
                    if i != removed {
                        assert!(l > moved / 10, "{landed:?}");
                    }
                }
            }
            // Back to the original farm: everyone returns to the original server.
            assert_eq!(assign(&alg, &servers, 2, &ips), before);
        }
    }

    /// Map-based, for contrast: removing a server remaps most clients.
    #[test]
    fn map_based_removal_remaps_many() {
        let alg = Source::new(HashType::default());
        let servers = views(&[1, 1, 1, 1, 1]);
        let ips = random_ips(10_000, 6);
        let before = assign(&alg, &servers, 0, &ips);
        let mut fewer = servers.clone();
        fewer[2].eligible = false;
        let after = assign(&alg, &fewer, 0, &ips);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        assert!(moved > 5_000, "{moved}");
    }

    #[test]
    fn consistent_weight_change_moves_keys_only_towards_heavier_server() {
        let alg = consistent(HashFunction::Sdbm, true);
        let ips = random_ips(10_000, 7);
        let before = assign(&alg, &views(&[1, 1, 1]), 0, &ips);
        let after = assign(&alg, &views(&[1, 2, 1]), 1, &ips);
        let mut moved = 0;
        for (&b, &a) in before.iter().zip(&after) {
            if a != b {
                assert_eq!(a, 1, "keys only move to the server that gained points");
                moved += 1;
            }
        }
        // Server 1 goes from ~1/3 to ~1/2 of the keys.
        assert!((1000..2400).contains(&moved), "{moved}");
    }

    #[test]
    fn ring_size_is_bounded_and_server_count_changes_are_safe() {
        let big = views(&vec![256; 100]);
        let ring = Ring::build(&req(&big, 0));
        assert!(ring.points.len() as u64 <= MAX_RING_POINTS);
        assert!(!ring.points.is_empty());
        let alg = consistent(HashFunction::Crc32, false);
        for n in [3usize, 7, 1, 0, 2] {
            let servers = views(&vec![1; n]);
            for ip in random_ips(20, n as u64) {
                let picked = alg.pick(&req_client(&servers, 0, ip));
                assert_eq!(picked.is_some(), n > 0);
                if let Some(i) = picked {
                    assert!(i < n);
                }
            }
        }
    }

    #[test]
    fn ipv6_clients_spread() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let servers = views(&[1, 1, 2]);
        for ht in hash_types() {
            let alg = Source::new(ht);
            let mut c = [0u64; 3];
            for _ in 0..6_000 {
                let client = IpAddr::V6(Ipv6Addr::from(rng.gen::<u128>()));
                c[alg.pick(&req_client(&servers, 0, client)).unwrap()] += 1;
            }
            assert!(c.iter().all(|&x| x > 900), "{ht:?} {c:?}");
        }
    }
}
