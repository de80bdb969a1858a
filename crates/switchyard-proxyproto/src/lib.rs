//! The PROXY protocol (HAProxy's specification, versions 1 and 2): the header a proxy puts
//! in front of a connection to tell the next hop who the client really is.
//!
//! [`parse`] is strict — it faces the network, and a lenient parser in front of an
//! `accept-proxy` listener would let clients forge their address: exact keywords and
//! separators, decimal numbers without sign or leading zeros, addresses of the announced
//! family, the v1 line limit of 107 bytes, v2's signature, version and length. It works on
//! what has been received so far (`Ok(None)`: not complete yet), so a caller can peek at a
//! socket and consume exactly the header.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12-byte signature that starts a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A version 1 header is at most 107 bytes, CRLF included.
pub const V1_MAX: usize = 107;
/// The longest header [`parse`] accepts (v2 with TLVs); longer is an error.
pub const MAX_HEADER: usize = 16 + 1024;

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header takes on the wire (what to consume before the payload).
    pub length: usize,
    /// The connection's endpoints; `None` for v1 `UNKNOWN`, v2 `LOCAL` and v2 families
    /// other than TCP over IPv4/IPv6 (the receiver then uses the real addresses).
    pub addresses: Option<Addresses>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("PROXY v1 line longer than 107 bytes")]
    TooLong,
    #[error("malformed PROXY v1 line: {0}")]
    BadV1(&'static str),
    #[error("malformed PROXY v2 header: {0}")]
    BadV2(&'static str),
}

/// Parses the start of `received`: `Ok(Some(header))` once complete, `Ok(None)` when more
/// bytes are needed, an error as soon as the bytes cannot be a valid header.
pub fn parse(received: &[u8]) -> Result<Option<Header>, Error> {
    let sig_len = received.len().min(V2_SIGNATURE.len());
    if !received.is_empty() && received[..sig_len] == V2_SIGNATURE[..sig_len] {
        return if received.len() < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(received)
        };
    }
    let prefix = b"PROXY ";
    let prefix_len = received.len().min(prefix.len());
    if received[..prefix_len] != prefix[..prefix_len] {
        return Err(Error::NotProxy);
    }
    parse_v1(received)
}

fn parse_v1(received: &[u8]) -> Result<Option<Header>, Error> {
    let window = &received[..received.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if received.len() >= V1_MAX {
            return Err(Error::TooLong);
        }
        // A lone LF or CR elsewhere can never become valid.
        if window
            .iter()
            .take(window.len().saturating_sub(1))
            .any(|&b| b == b'\r' || b == b'\n')
            || window.last() == Some(&b'\n')
        {
            return Err(Error::BadV1("stray line break"));
        }
        return Ok(None);
    };
    let line = std::str::from_utf8(&window[..end]).map_err(|_| Error::BadV1("not ASCII"))?;
    let length = end + 2;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(Some(Header {
            length,
            addresses: None,
        })),
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v6 = *family == "TCP6";
            let source = SocketAddr::new(address(src, v6)?, port(sport)?);
            let destination = SocketAddr::new(address(dst, v6)?, port(dport)?);
            Ok(Some(Header {
                length,
                addresses: Some(Addresses {
                    source,
                    destination,
                }),
            }))
        }
        ["PROXY", "TCP4" | "TCP6", ..] => Err(Error::BadV1("expected 4 fields after the family")),
        _ => Err(Error::BadV1("unknown protocol family")),
    }
}

fn address(text: &str, v6: bool) -> Result<IpAddr, Error> {
    if v6 {
        text.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| Error::BadV1("bad IPv6 address"))
    } else {
        text.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| Error::BadV1("bad IPv4 address"))
    }
}

fn port(text: &str) -> Result<u16, Error> {
    let plain = !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !plain {
        return Err(Error::BadV1("bad port"));
    }
    text.parse::<u16>()
        .map_err(|_| Error::BadV1("port out of range"))
}

fn parse_v2(received: &[u8]) -> Result<Option<Header>, Error> {
    if received.len() < 16 {
        return Ok(None);
    }
    let version = received[12] >> 4;
    let command = received[12] & 0x0f;
    if version != 2 {
        return Err(Error::BadV2("version is not 2"));
    }
    if command > 1 {
        return Err(Error::BadV2("unknown command"));
    }
    let family = received[13];
    let payload = usize::from(u16::from_be_bytes([received[14], received[15]]));
    let length = 16 + payload;
    if length > MAX_HEADER {
        return Err(Error::BadV2("header too long"));
    }
    if received.len() < length {
        return Ok(None);
    }
    let body = &received[16..length];
    // LOCAL: a health check or the proxy's own connection; the real addresses stand.
    if command == 0 {
        return Ok(Some(Header {
            length,
            addresses: None,
        }));
    }
    let addresses = match family {
        0x11 => {
            if body.len() < 12 {
                return Err(Error::BadV2("IPv4 addresses truncated"));
            }
            let ip = |at: usize| Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]);
            Some(Addresses {
                source: SocketAddr::new(IpAddr::V4(ip(0)), u16::from_be_bytes([body[8], body[9]])),
                destination: SocketAddr::new(
                    IpAddr::V4(ip(4)),
                    u16::from_be_bytes([body[10], body[11]]),
                ),
            })
        }
        0x21 => {
            if body.len() < 36 {
                return Err(Error::BadV2("IPv6 addresses truncated"));
            }
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            Some(Addresses {
                source: SocketAddr::new(
                    IpAddr::V6(ip(0)),
                    u16::from_be_bytes([body[32], body[33]]),
                ),
                destination: SocketAddr::new(
                    IpAddr::V6(ip(16)),
                    u16::from_be_bytes([body[34], body[35]]),
                ),
            })
        }
        // UNSPEC, UDP and unix families: accepted, addresses not used (as HAProxy).
        0x00 | 0x12 | 0x22 | 0x31 | 0x32 => None,
        _ => return Err(Error::BadV2("unknown address family")),
    };
    Ok(Some(Header { length, addresses }))
}

/// Both endpoints in one family: an IPv4 address facing IPv6 is written as IPv4-mapped.
fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let to_v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if source.is_ipv4() == destination.is_ipv4() {
        (source, destination)
    } else {
        (to_v6(source), to_v6(destination))
    }
}

/// A version 1 line (`send-proxy`).
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// A version 2 header (`send-proxy-v2`), command PROXY, no TLV.
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    let mut out = Vec::with_capacity(52);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        (src, dst) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V6(v6) => v6.octets(),
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(src));
            out.extend_from_slice(&v6(dst));
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(src: &str, dst: &str) -> Addresses {
        Addresses {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
        }
    }

    #[test]
    fn v1_lines_from_the_specification() {
        let line = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\nrest";
        assert_eq!(
            parse(line),
            Ok(Some(Header {
                length: 56,
                addresses: Some(addrs("255.255.255.255:65535", "255.255.255.255:65535")),
            }))
        );
        let longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), V1_MAX - 3);
        assert!(matches!(parse(longest), Ok(Some(h)) if h.length == longest.len()));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Some(Header {
                length: 15,
                addresses: None
            }))
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").map(|h| h.map(|h| h.addresses)),
            Ok(Some(None))
        );
    }

    #[test]
    fn v1_is_strict() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(&[b'P'; 200]), Err(Error::NotProxy));
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend(std::iter::repeat_n(b'1', 120));
        assert_eq!(parse(&long), Err(Error::TooLong));
    }

    #[test]
    fn partial_headers_ask_for_more() {
        let line = encode_v1(
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:5432".parse().unwrap(),
        );
        let v2 = encode_v2(
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:5432".parse().unwrap(),
        );
        for header in [line, v2] {
            for cut in 0..header.len() {
                assert_eq!(parse(&header[..cut]), Ok(None), "cut at {cut}");
            }
            assert!(matches!(parse(&header), Ok(Some(h)) if h.length == header.len()));
        }
    }

    #[test]
    fn both_versions_round_trip_and_mixed_families_map_to_v6() {
        for (src, dst) in [
            ("192.0.2.7:51234", "198.51.100.1:5432"),
            ("[2001:db8::7]:51234", "[2001:db8::1]:5432"),
        ] {
            let expected = addrs(src, dst);
            for encoded in [
                encode_v1(expected.source, expected.destination),
                encode_v2(expected.source, expected.destination),
            ] {
                assert_eq!(parse(&encoded).unwrap().unwrap().addresses, Some(expected));
            }
        }
        let mixed = encode_v1(
            "192.0.2.7:1".parse().unwrap(),
            "[2001:db8::1]:2".parse().unwrap(),
        );
        assert_eq!(
            String::from_utf8(mixed).unwrap(),
            "PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 1 2\r\n"
        );
    }

    #[test]
    fn v2_local_tlvs_and_errors() {
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(
            parse(&local),
            Ok(Some(Header {
                length: 16,
                addresses: None
            }))
        );
        // A TLV after the addresses (e.g. PP2_TYPE_ALPN) is skipped by the length.
        let mut with_tlv = encode_v2("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
        with_tlv[14..16].copy_from_slice(&(12u16 + 5).to_be_bytes());
        with_tlv.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']);
        assert!(matches!(parse(&with_tlv), Ok(Some(h)) if h.length == 16 + 17));
        let mut v3 = local.clone();
        v3[12] = 0x31;
        assert!(parse(&v3).is_err());
        let mut short = local.clone();
        short[13] = 0x11;
        short[12] = 0x21;
        short[15] = 4;
        short.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(parse(&short), Err(Error::BadV2("IPv4 addresses truncated")));
        let mut huge = local;
        huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse(&huge), Err(Error::BadV2("header too long")));
    }

    /// What the fuzz target does, deterministically: mutations never panic, and whatever
    /// parses claims no more bytes than it was given.
    #[test]
    fn mutations_never_panic() {
        let seeds = [
            encode_v1(
                "10.0.0.1:40000".parse().unwrap(),
                "10.0.0.2:5432".parse().unwrap(),
            ),
            encode_v2(
                "[::1]:40000".parse().unwrap(),
                "[::2]:5432".parse().unwrap(),
            ),
        ];
        let mut state = 0x853c_49e6_748f_ea9b_u64;
        for _ in 0..50_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bytes = seeds[(state & 1) as usize].clone();
            let at = (state >> 8) as usize % bytes.len();
            bytes[at] = (state >> 24) as u8;
            let cut = (state >> 40) as usize % (bytes.len() + 1);
            if let Ok(Some(header)) = parse(&bytes[..cut]) {
                assert!(header.length <= cut);
            }
        }
    }
}
