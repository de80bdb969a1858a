//! The hash functions selectable with `hash-type ... <function> [avalanche]`.
//!
//! They follow the definitions HAProxy documents for its `sdbm`, `djb2`, `wt6` and `crc32`
//! functions, all producing 32 bits. `avalanche` here is the MurmurHash3 32-bit finalizer,
//! which makes every input bit affect every output bit: the raw functions map nearby inputs
//! (consecutive client addresses) to nearby outputs, which is harmless modulo a total weight
//! but clusters keys on one arc of a consistent-hash ring.

use switchyard_config::HashFunction;

/// Hash `data` with `function`.
pub fn hash(function: HashFunction, data: &[u8]) -> u32 {
    match function {
        HashFunction::Sdbm => sdbm(data),
        HashFunction::Djb2 => djb2(data),
        HashFunction::Wt6 => wt6(data),
        HashFunction::Crc32 => crc32(data),
    }
}

/// sdbm: `h = c + h * 65599` (computed with shifts as in the original database library).
pub fn sdbm(data: &[u8]) -> u32 {
    data.iter().fold(0u32, |h, &c| {
        u32::from(c)
            .wrapping_add(h << 6)
            .wrapping_add(h << 16)
            .wrapping_sub(h)
    })
}

/// djb2: `h = h * 33 + c`, starting from 5381.
pub fn djb2(data: &[u8]) -> u32 {
    data.iter().fold(5381u32, |h, &c| {
        (h << 5).wrapping_add(h).wrapping_add(u32::from(c))
    })
}

/// wt6: two 32-bit lanes mixed with data-dependent rotations (Willy Tarreau's function, designed
/// for short keys such as addresses).
pub fn wt6(data: &[u8]) -> u32 {
    let mut h0: u32 = 0xa53c_965a;
    let mut h1: u32 = 0x5ca6_953a;
    let mut step0: u32 = 6;
    let mut step1: u32 = 18;
    for &c in data {
        let c = u32::from(c);
        h0 = !(h0 ^ c);
        h1 = !h1.wrapping_add(c);
        // Swap the lanes while rotating; rotate_left is well defined for a step of 0.
        let t = h1.rotate_left(step0);
        h1 = h0.rotate_left(step1);
        h0 = t;
        let t = ((h0 >> 16) ^ h1) & 0xffff;
        step0 = t & 0x1f;
        step1 = t >> 11;
    }
    h0 ^ h1
}

/// Lookup table of the reflected IEEE 802.3 polynomial, computed at compile time.
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE, as in zlib and Ethernet).
pub fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &c| {
        // The index is masked to 0..=255, so it always fits the table.
        CRC32_TABLE[((crc ^ u32::from(c)) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// Full avalanche of a 32-bit value (MurmurHash3 `fmix32`): a bijection, so distinct hashes stay
/// distinct, and flipping any input bit flips each output bit with probability ~1/2.
pub fn avalanche(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// 64-bit avalanche (MurmurHash3 `fmix64`), used to place consistent-hash ring points.
pub(crate) fn avalanche64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::assert_fits;

    #[test]
    fn known_values() {
        assert_eq!(sdbm(b""), 0);
        assert_eq!(sdbm(b"a"), 97);
        assert_eq!(sdbm(b"ab"), 97u32.wrapping_mul(65599).wrapping_add(98));
        assert_eq!(djb2(b""), 5381);
        assert_eq!(djb2(b"a"), 5381 * 33 + 97);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
        assert_eq!(wt6(b""), 0xa53c_965a ^ 0x5ca6_953a);
        assert_eq!(avalanche(0), 0);
        assert_eq!(avalanche(1), 0x514e_28b7);
    }

    #[test]
    fn dispatch_matches_functions() {
        let data = b"10.1.2.3";
        assert_eq!(hash(HashFunction::Sdbm, data), sdbm(data));
        assert_eq!(hash(HashFunction::Djb2, data), djb2(data));
        assert_eq!(hash(HashFunction::Wt6, data), wt6(data));
        assert_eq!(hash(HashFunction::Crc32, data), crc32(data));
    }

    #[test]
    fn sdbm_matches_multiplicative_form() {
        for data in [&b"hello"[..], b"\xff\xfe\x00\x01", b"192.168.1.1"] {
            let slow = data.iter().fold(0u32, |h, &c| {
                h.wrapping_mul(65599).wrapping_add(u32::from(c))
            });
            assert_eq!(sdbm(data), slow);
        }
    }

    #[test]
    fn avalanche_flips_about_half_the_bits() {
        let mut flipped = 0u64;
        let mut trials = 0u64;
        for x in (0u32..2000).map(|i| i.wrapping_mul(0x9e37_79b9)) {
            for bit in 0..32 {
                flipped += u64::from((avalanche(x) ^ avalanche(x ^ (1 << bit))).count_ones());
                trials += 32;
            }
        }
        let ratio = flipped as f64 / trials as f64;
        assert!((0.49..0.51).contains(&ratio), "{ratio}");
    }

    #[test]
    fn avalanche_is_a_bijection_on_a_sample() {
        let mut seen: Vec<u32> = (0u32..100_000).map(avalanche).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 100_000);
    }

    /// Every function spreads random 4-byte keys evenly over 16 buckets of its low bits.
    #[test]
    fn functions_spread_random_keys() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let keys: Vec<[u8; 4]> = (0..20_000).map(|_| rng.gen()).collect();
        for f in [
            HashFunction::Sdbm,
            HashFunction::Djb2,
            HashFunction::Wt6,
            HashFunction::Crc32,
        ] {
            for aval in [false, true] {
                let mut buckets = [0u64; 16];
                for k in &keys {
                    let mut h = hash(f, k);
                    if aval {
                        h = avalanche(h);
                    }
                    buckets[(h % 16) as usize] += 1;
                }
                assert_fits(&buckets, &[1.0; 16][..]);
            }
        }
    }
}
