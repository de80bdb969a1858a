//! Helpers shared by the unit tests: building views and a chi-square goodness-of-fit check.

use std::net::{IpAddr, Ipv4Addr};

use crate::{Algorithm, PickRequest, ServerView};

pub fn views(weights: &[u32]) -> Vec<ServerView> {
    weights
        .iter()
        .map(|&weight| ServerView {
            weight,
            conns: 0,
            eligible: true,
        })
        .collect()
}

pub fn views_eligible(weights: &[u32], eligible: &[bool]) -> Vec<ServerView> {
    weights
        .iter()
        .zip(eligible)
        .map(|(&weight, &eligible)| ServerView {
            weight,
            conns: 0,
            eligible,
        })
        .collect()
}

pub fn req(servers: &[ServerView], generation: u64) -> PickRequest<'_> {
    PickRequest {
        servers,
        generation,
        client: None,
        key: None,
    }
}

pub fn req_client(servers: &[ServerView], generation: u64, client: IpAddr) -> PickRequest<'_> {
    PickRequest {
        servers,
        generation,
        client: Some(client),
        key: None,
    }
}

pub fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// `n` picks against a fixed view; returns how often each index was chosen.
pub fn count_picks(alg: &dyn Algorithm, servers: &[ServerView], n: usize) -> Vec<u64> {
    let mut counts = vec![0u64; servers.len()];
    for _ in 0..n {
        let i = alg.pick(&req(servers, 0)).expect("an eligible server");
        counts[i] += 1;
    }
    counts
}

/// Pearson's chi-square statistic of `observed` against the proportions `expected_weights`.
/// Cells with an expected weight of 0 must have observed 0 (else the statistic is infinite).
pub fn chi_square(observed: &[u64], expected_weights: &[f64]) -> f64 {
    assert_eq!(observed.len(), expected_weights.len());
    let total: u64 = observed.iter().sum();
    let wsum: f64 = expected_weights.iter().sum();
    observed
        .iter()
        .zip(expected_weights)
        .map(|(&o, &w)| {
            let e = total as f64 * w / wsum;
            if e == 0.0 {
                if o == 0 {
                    0.0
                } else {
                    f64::INFINITY
                }
            } else {
                (o as f64 - e).powi(2) / e
            }
        })
        .sum()
}

/// Upper critical value of the chi-square distribution at p = 0.001 for `df` degrees of freedom:
/// a correct distribution exceeds it once in a thousand runs (and the tests use seeded or
/// deterministic inputs, so they do not flake at all).
pub fn chi2_critical_p001(df: usize) -> f64 {
    const TABLE: [f64; 20] = [
        10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322, 26.124, 27.877, 29.588, 31.264,
        32.909, 34.528, 36.123, 37.697, 39.252, 40.790, 42.312, 43.820, 45.315,
    ];
    TABLE[df - 1]
}

/// Asserts `observed` fits `weights` (only cells with non-zero weight count as degrees of freedom).
pub fn assert_fits(observed: &[u64], weights: &[f64]) {
    let chi = chi_square(observed, weights);
    let df = weights.iter().filter(|&&w| w > 0.0).count() - 1;
    let crit = chi2_critical_p001(df);
    assert!(
        chi < crit,
        "distribution {observed:?} does not fit weights {weights:?}: chi2 {chi:.2} >= {crit}"
    );
}

/// Asserts `observed` does NOT fit `weights`: used to show the tests have power.
pub fn assert_does_not_fit(observed: &[u64], weights: &[f64]) {
    let chi = chi_square(observed, weights);
    let df = weights.iter().filter(|&&w| w > 0.0).count() - 1;
    assert!(
        chi >= chi2_critical_p001(df),
        "{observed:?} unexpectedly fits {weights:?} (chi2 {chi:.2})"
    );
}

pub fn as_f64(weights: &[u32]) -> Vec<f64> {
    weights.iter().map(|&w| f64::from(w)).collect()
}
