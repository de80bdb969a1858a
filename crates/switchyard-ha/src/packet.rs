//! VRRPv3 advertisements for IPv4 (RFC 5798 §5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                       IPvX Address(es)                        |
//! ```
//!
//! The checksum covers an IPv4 pseudo-header (source, destination, zero, protocol 112,
//! VRRP length) followed by the VRRP message, as RFC 5798 §5.2.8 requires for version 3
//! (version 2, which keepalived speaks by default, had no pseudo-header).

use std::net::Ipv4Addr;
use std::time::Duration;

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// The IPv4 multicast group advertisements are sent to.
pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Routers must send, and check on receipt, this TTL: an advertisement that crossed a
/// router is not from the local link.
pub const TTL: u8 = 255;

const VERSION: u8 = 3;
const TYPE_ADVERTISEMENT: u8 = 1;
const HEADER_LEN: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    pub vrid: u8,
    /// 255: owner of the addresses; 0: the master is leaving.
    pub priority: u8,
    /// In centiseconds, 12 bits (up to 40.95 s).
    pub max_advert_int_cs: u16,
    pub addresses: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet too short ({0} bytes)")]
    Short(usize),
    #[error("not an IPv4 packet")]
    NotIpv4,
    #[error("not a VRRP packet (protocol {0})")]
    NotVrrp(u8),
    #[error("TTL {0} instead of 255: not from the local link")]
    Ttl(u8),
    #[error("VRRP version {0} (only version 3 is spoken)")]
    Version(u8),
    #[error("VRRP type {0} is not an advertisement")]
    Type(u8),
    #[error("bad checksum")]
    Checksum,
    #[error("address count {count} does not match the length {len}")]
    Count { count: u8, len: usize },
    #[error("advertisement interval of 0")]
    ZeroInterval,
}

impl Advertisement {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.max_advert_int_cs) * 10)
    }

    /// The VRRP message (without IP header) for sending from `source` to `destination`.
    pub fn encode(&self, source: Ipv4Addr, destination: Ipv4Addr) -> Vec<u8> {
        let count = u8::try_from(self.addresses.len()).unwrap_or(u8::MAX);
        let mut out = Vec::with_capacity(HEADER_LEN + 4 * usize::from(count));
        out.push((VERSION << 4) | TYPE_ADVERTISEMENT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(count);
        out.extend_from_slice(&(self.max_advert_int_cs & 0x0fff).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for address in self.addresses.iter().take(usize::from(count)) {
            out.extend_from_slice(&address.octets());
        }
        let sum = checksum(source, destination, &out);
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        out
    }

    /// Decodes a VRRP message received from `source` for `destination` (the checksum
    /// covers both).
    pub fn decode(
        message: &[u8],
        source: Ipv4Addr,
        destination: Ipv4Addr,
    ) -> Result<Advertisement, PacketError> {
        if message.len() < HEADER_LEN {
            return Err(PacketError::Short(message.len()));
        }
        let version = message[0] >> 4;
        if version != VERSION {
            return Err(PacketError::Version(version));
        }
        let kind = message[0] & 0x0f;
        if kind != TYPE_ADVERTISEMENT {
            return Err(PacketError::Type(kind));
        }
        if checksum(source, destination, message) != 0 {
            return Err(PacketError::Checksum);
        }
        let count = message[3];
        let body = &message[HEADER_LEN..];
        // Trailing bytes beyond the addresses are tolerated (RFC: "may be ignored").
        if body.len() < 4 * usize::from(count) {
            return Err(PacketError::Count {
                count,
                len: message.len(),
            });
        }
        let max_advert_int_cs = u16::from_be_bytes([message[4], message[5]]) & 0x0fff;
        if max_advert_int_cs == 0 {
            return Err(PacketError::ZeroInterval);
        }
        let addresses = body
            .chunks_exact(4)
            .take(usize::from(count))
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect();
        Ok(Advertisement {
            vrid: message[1],
            priority: message[2],
            max_advert_int_cs,
            addresses,
        })
    }
}

/// A received IPv4 datagram: its header's source, destination and TTL, and the VRRP
/// message it carries. Raw IPv4 sockets deliver the IP header with the payload.
pub struct Received<'a> {
    pub source: Ipv4Addr,
    pub destination: Ipv4Addr,
    pub ttl: u8,
    pub message: &'a [u8],
}

pub fn parse_ipv4(datagram: &[u8]) -> Result<Received<'_>, PacketError> {
    if datagram.len() < 20 {
        return Err(PacketError::Short(datagram.len()));
    }
    if datagram[0] >> 4 != 4 {
        return Err(PacketError::NotIpv4);
    }
    let header_len = usize::from(datagram[0] & 0x0f) * 4;
    if header_len < 20 || datagram.len() < header_len {
        return Err(PacketError::Short(datagram.len()));
    }
    if datagram[9] != PROTOCOL {
        return Err(PacketError::NotVrrp(datagram[9]));
    }
    let total = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let end = if (header_len..=datagram.len()).contains(&total) {
        total
    } else {
        datagram.len()
    };
    Ok(Received {
        source: Ipv4Addr::new(datagram[12], datagram[13], datagram[14], datagram[15]),
        destination: Ipv4Addr::new(datagram[16], datagram[17], datagram[18], datagram[19]),
        ttl: datagram[8],
        message: &datagram[header_len..end],
    })
}

/// Decodes a raw IPv4 datagram into an advertisement, checking the TTL as RFC 5798 §7.1
/// requires. Faces the network: never panics (see the fuzz target).
pub fn decode_datagram(datagram: &[u8]) -> Result<(Ipv4Addr, Advertisement), PacketError> {
    let received = parse_ipv4(datagram)?;
    if received.ttl != TTL {
        return Err(PacketError::Ttl(received.ttl));
    }
    let advertisement =
        Advertisement::decode(received.message, received.source, received.destination)?;
    Ok((received.source, advertisement))
}

/// The Internet checksum of the pseudo-header and `message` (0 when `message` carries a
/// correct checksum).
fn checksum(source: Ipv4Addr, destination: Ipv4Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = match pair {
                [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                [hi] => u16::from_be_bytes([*hi, 0]),
                _ => 0,
            };
            sum += u32::from(word);
        }
    };
    add(&source.octets());
    add(&destination.octets());
    add(&[0, PROTOCOL]);
    add(&u16::try_from(message.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes());
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert() -> Advertisement {
        Advertisement {
            vrid: 51,
            priority: 100,
            max_advert_int_cs: 100,
            addresses: vec![Ipv4Addr::new(10, 9, 0, 100), Ipv4Addr::new(10, 9, 0, 101)],
        }
    }

    #[test]
    fn encode_then_decode_round_trips_and_checks_the_pseudo_header() {
        let src = Ipv4Addr::new(10, 9, 0, 1);
        let bytes = advert().encode(src, MULTICAST_GROUP);
        assert_eq!(bytes.len(), 16);
        assert_eq!(bytes[0], 0x31);
        assert_eq!(
            Advertisement::decode(&bytes, src, MULTICAST_GROUP).unwrap(),
            advert()
        );
        // Same bytes claimed from another source: the pseudo-header makes the sum wrong.
        assert_eq!(
            Advertisement::decode(&bytes, Ipv4Addr::new(10, 9, 0, 2), MULTICAST_GROUP),
            Err(PacketError::Checksum)
        );
        assert_eq!(advert().interval(), Duration::from_secs(1));
    }

    /// An IPv4 datagram laid out as a VRRPv3 router sends it (TOS 0xc0, DF, TTL 255,
    /// VRID 51, priority 150, advert_int 1 s, one address); the interoperability test with a
    /// real keepalived covers the rest.
    #[test]
    fn decodes_a_full_ip_datagram() {
        let ip_packet: [u8; 32] = [
            0x45, 0xc0, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0xff, 0x70, 0x00, 0x00, 10, 9, 0, 3,
            224, 0, 0, 18, 0x31, 51, 150, 1, 0x00, 0x64, 0x00, 0x00, 10, 9, 0, 100,
        ];
        // Fill in the checksum as keepalived computes it (the pseudo-header sum).
        let mut packet = ip_packet;
        let sum = checksum(Ipv4Addr::new(10, 9, 0, 3), MULTICAST_GROUP, &packet[20..]);
        packet[26..28].copy_from_slice(&sum.to_be_bytes());
        let (source, advert) = decode_datagram(&packet).unwrap();
        assert_eq!(source, Ipv4Addr::new(10, 9, 0, 3));
        assert_eq!(
            advert,
            Advertisement {
                vrid: 51,
                priority: 150,
                max_advert_int_cs: 100,
                addresses: vec![Ipv4Addr::new(10, 9, 0, 100)],
            }
        );
        let mut forwarded = packet;
        forwarded[8] = 254;
        assert_eq!(
            decode_datagram(&forwarded).unwrap_err(),
            PacketError::Ttl(254)
        );
    }

    #[test]
    fn malformed_packets_are_errors_never_panics() {
        let src = Ipv4Addr::new(10, 9, 0, 1);
        let good = advert().encode(src, MULTICAST_GROUP);
        assert!(matches!(
            Advertisement::decode(&good[..5], src, MULTICAST_GROUP),
            Err(PacketError::Short(5))
        ));
        let mut v2 = good.clone();
        v2[0] = 0x21;
        assert_eq!(
            Advertisement::decode(&v2, src, MULTICAST_GROUP),
            Err(PacketError::Version(2))
        );
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bytes = good.clone();
            let at = (seed as usize) % bytes.len();
            bytes[at] = (seed >> 32) as u8;
            let cut = ((seed >> 40) as usize) % (bytes.len() + 1);
            let _ = Advertisement::decode(&bytes[..cut], src, MULTICAST_GROUP);
            let _ = decode_datagram(&bytes[..cut]);
        }
    }
}
