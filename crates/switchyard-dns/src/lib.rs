//! Name resolution for servers given by name.
//!
//! Two ways, as in HAProxy: the system resolver (`getaddrinfo`, what HAProxy calls
//! `init-addr libc`), and a `resolvers` section: DNS queries sent over UDP straight to the
//! configured nameservers, without a cache, so a changed record is seen at the next
//! resolution rather than when some TTL expires. Message encoding and decoding is
//! hickory-proto's; this crate only decides what to ask, whom, and which answers to trust
//! (matching id and question, no truncated or error responses).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::RData;
/// Re-exported for callers of [`decode_answer`] (and the fuzz target).
pub use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

/// Largest answer accepted over UDP (HAProxy's `accepted_payload_size` default is 512; we
/// read up to the EDNS-era common size and let the parser judge).
const MAX_RESPONSE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("'{0}' is not a valid host name")]
    BadName(String),
    #[error("no nameserver answered for '{0}'")]
    Timeout(String),
    #[error("'{name}': nameserver {server} answered {code}")]
    Refused {
        name: String,
        server: SocketAddr,
        code: String,
    },
    #[error("'{0}' has no address")]
    NoAddress(String),
    #[error("cannot resolve '{name}': {reason}")]
    System { name: String, reason: String },
    #[error("DNS socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Which address family to prefer when a name has both (`resolve-prefer`); HAProxy prefers
/// IPv6 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    Ipv4,
    #[default]
    Ipv6,
}

/// Nameservers of one `resolvers` section.
#[derive(Debug, Clone)]
pub struct Nameservers {
    pub servers: Vec<SocketAddr>,
    /// How long to wait for one answer (`timeout retry`).
    pub timeout: Duration,
    /// How many rounds over all nameservers (`resolve_retries`).
    pub retries: u32,
}

/// How names are turned into addresses.
#[derive(Debug, Clone)]
pub enum Resolver {
    System,
    Dns(Nameservers),
}

impl Resolver {
    /// The addresses of `name`, the preferred family first. Without a preference, DNS
    /// queries prefer IPv6 (HAProxy's default) and the system resolver keeps its order
    /// (which `/etc/gai.conf` governs).
    pub async fn resolve(
        &self,
        name: &str,
        prefer: Option<Family>,
    ) -> Result<Vec<IpAddr>, DnsError> {
        let mut addrs = match self {
            Resolver::System => system(name).await?,
            Resolver::Dns(servers) => servers.resolve(name, prefer.unwrap_or_default()).await?,
        };
        if addrs.is_empty() {
            return Err(DnsError::NoAddress(name.to_string()));
        }
        if let Some(prefer) = prefer {
            // Stable: keeps the answer's order within a family.
            addrs.sort_by_key(|ip| match (ip, prefer) {
                (IpAddr::V4(_), Family::Ipv4) | (IpAddr::V6(_), Family::Ipv6) => 0,
                _ => 1,
            });
        }
        Ok(addrs)
    }
}

async fn system(name: &str) -> Result<Vec<IpAddr>, DnsError> {
    let found = tokio::net::lookup_host((name, 0))
        .await
        .map_err(|e| DnsError::System {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
    let mut addrs: Vec<IpAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr.ip()) {
            addrs.push(addr.ip());
        }
    }
    Ok(addrs)
}

impl Nameservers {
    /// Asks for the preferred family first and the other one only when it has nothing, as
    /// HAProxy does.
    pub async fn resolve(&self, name: &str, prefer: Family) -> Result<Vec<IpAddr>, DnsError> {
        let (first, second) = match prefer {
            Family::Ipv4 => (RecordType::A, RecordType::AAAA),
            Family::Ipv6 => (RecordType::AAAA, RecordType::A),
        };
        let found = self.query(name, first).await?;
        if !found.is_empty() {
            return Ok(found);
        }
        self.query(name, second).await
    }

    async fn query(&self, name: &str, kind: RecordType) -> Result<Vec<IpAddr>, DnsError> {
        let fqdn = Name::from_ascii(name)
            .map(|mut n| {
                n.set_fqdn(true);
                n
            })
            .map_err(|_| DnsError::BadName(name.to_string()))?;
        let mut last_error = DnsError::Timeout(name.to_string());
        for _ in 0..self.retries.max(1) {
            for server in &self.servers {
                match self.ask(*server, &fqdn, kind).await {
                    Ok(addrs) => return Ok(addrs),
                    Err(error) => last_error = error,
                }
            }
        }
        Err(last_error)
    }

    async fn ask(
        &self,
        server: SocketAddr,
        name: &Name,
        kind: RecordType,
    ) -> Result<Vec<IpAddr>, DnsError> {
        let id: u16 = rand::random();
        let request = encode_query(id, name, kind)?;
        let local: SocketAddr = if server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(server).await?;
        socket.send(&request).await?;
        let mut buf = vec![0; MAX_RESPONSE];
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let received = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
                .await
                .map_err(|_| DnsError::Timeout(name.to_string()))??;
            // Anything that is not the answer to this question is ignored (spoofing,
            // late answers to an earlier attempt), not treated as an error.
            match decode_answer(&buf[..received], id, name, kind) {
                Answer::Addresses(addrs) => return Ok(addrs),
                Answer::Error(code) => {
                    return Err(DnsError::Refused {
                        name: name.to_string(),
                        server,
                        code,
                    })
                }
                Answer::NotOurs => continue,
            }
        }
    }
}

fn encode_query(id: u16, name: &Name, kind: RecordType) -> Result<Vec<u8>, DnsError> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name.clone(), kind));
    message
        .to_vec()
        .map_err(|_| DnsError::BadName(name.to_string()))
}

/// What a datagram says about our question.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Addresses(Vec<IpAddr>),
    /// The nameserver answered with an error code (NXDOMAIN, SERVFAIL, REFUSED...).
    Error(String),
    /// Not a well-formed response to this query.
    NotOurs,
}

/// Decodes a datagram received for query `id` about `name`/`kind`. Faces the network: never
/// panics, whatever the bytes (see the fuzz target).
pub fn decode_answer(datagram: &[u8], id: u16, name: &Name, kind: RecordType) -> Answer {
    let Ok(message) = Message::from_vec(datagram) else {
        return Answer::NotOurs;
    };
    // Names compare case-insensitively (some servers echo 0x20-randomized case).
    let same_question = match message.queries() {
        [query] => query.query_type() == kind && query.name().to_lowercase() == name.to_lowercase(),
        _ => false,
    };
    if message.id() != id || message.message_type() != MessageType::Response || !same_question {
        return Answer::NotOurs;
    }
    if message.truncated() {
        // A truncated answer may miss addresses; the next resolution tries again.
        return Answer::Error("a truncated answer".into());
    }
    match message.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Answer::Error("NXDOMAIN".into()),
        other => return Answer::Error(other.to_string()),
    }
    // Address records of any owner in the answer: a CNAME chain ends in records named
    // after its target.
    let addrs = message
        .answers()
        .iter()
        .filter_map(|record| match record.data() {
            RData::A(a) if kind == RecordType::A => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) if kind == RecordType::AAAA => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect();
    Answer::Addresses(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, CNAME};
    use hickory_proto::rr::Record;

    fn name(text: &str) -> Name {
        let mut n = Name::from_ascii(text).unwrap();
        n.set_fqdn(true);
        n
    }

    fn response(id: u16, question: &Name, answers: Vec<Record>) -> Message {
        let mut m = Message::new();
        m.set_id(id)
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .add_query(Query::query(question.clone(), RecordType::A));
        for answer in answers {
            m.add_answer(answer);
        }
        m
    }

    #[test]
    fn addresses_follow_a_cname_chain_and_other_questions_are_ignored() {
        let db = name("db.example.");
        let target = name("node3.example.");
        let answers = vec![
            Record::from_rdata(db.clone(), 30, RData::CNAME(CNAME(target.clone()))),
            Record::from_rdata(target, 30, RData::A(A::new(10, 0, 0, 3))),
        ];
        let bytes = response(7, &db, answers).to_vec().unwrap();
        assert_eq!(
            decode_answer(&bytes, 7, &db, RecordType::A),
            Answer::Addresses(vec!["10.0.0.3".parse().unwrap()])
        );
        assert_eq!(
            decode_answer(&bytes, 8, &db, RecordType::A),
            Answer::NotOurs,
            "another id"
        );
        assert_eq!(
            decode_answer(&bytes, 7, &name("other.example."), RecordType::A),
            Answer::NotOurs
        );
        assert_eq!(
            decode_answer(&bytes, 7, &db, RecordType::AAAA),
            Answer::NotOurs
        );
    }

    #[test]
    fn error_codes_truncation_and_garbage_are_reported_not_trusted() {
        let db = name("db.example.");
        let mut nx = response(1, &db, vec![]);
        nx.set_response_code(ResponseCode::NXDomain);
        assert_eq!(
            decode_answer(&nx.to_vec().unwrap(), 1, &db, RecordType::A),
            Answer::Error("NXDOMAIN".into())
        );
        let mut truncated = response(2, &db, vec![]);
        truncated.set_truncated(true);
        assert!(matches!(
            decode_answer(&truncated.to_vec().unwrap(), 2, &db, RecordType::A),
            Answer::Error(_)
        ));
        for garbage in [
            &b""[..],
            b"\x00",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            assert_eq!(
                decode_answer(garbage, 0, &db, RecordType::A),
                Answer::NotOurs
            );
        }
    }

    /// What the fuzz target does, in a few thousand deterministic rounds: mutations of a
    /// valid answer (flipped bytes, truncations, inflated counts) never panic, and the
    /// untouched answer still decodes.
    #[test]
    fn mutated_answers_never_panic() {
        let db = name("db.example.");
        let valid = response(
            9,
            &db,
            vec![Record::from_rdata(
                db.clone(),
                5,
                RData::A(A::new(10, 0, 0, 1)),
            )],
        )
        .to_vec()
        .unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let mut bytes = valid.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            let cut = (next() as usize) % (bytes.len() + 1);
            let _ = decode_answer(&bytes[..cut], 9, &db, RecordType::A);
            let _ = decode_answer(&bytes, 9, &db, RecordType::AAAA);
        }
        assert_eq!(
            decode_answer(&valid, 9, &db, RecordType::A),
            Answer::Addresses(vec!["10.0.0.1".parse().unwrap()])
        );
    }

    #[tokio::test]
    async fn a_silent_nameserver_times_out_and_the_next_one_answers() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let answering = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let answering_addr = answering.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0; 512];
            while let Ok((n, peer)) = answering.recv_from(&mut buf).await {
                let query = Message::from_vec(&buf[..n]).unwrap();
                let q = query.queries()[0].clone();
                let mut reply = response(query.id(), q.name(), vec![]);
                if q.query_type() == RecordType::A {
                    reply.add_answer(Record::from_rdata(
                        q.name().clone(),
                        1,
                        RData::A(A::new(127, 0, 0, 9)),
                    ));
                }
                // Echo the question as asked (its type may be AAAA).
                reply.queries_mut()[0] = q;
                let _ = answering.send_to(&reply.to_vec().unwrap(), peer).await;
            }
        });
        let resolver = Resolver::Dns(Nameservers {
            servers: vec![silent.local_addr().unwrap(), answering_addr],
            timeout: Duration::from_millis(100),
            retries: 1,
        });
        // IPv6 preferred: no AAAA, so the A query is asked next.
        let found = resolver.resolve("db.test", None).await.unwrap();
        assert_eq!(found, vec!["127.0.0.9".parse::<IpAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn the_system_resolver_knows_localhost() {
        let found = Resolver::System
            .resolve("localhost", Some(Family::Ipv4))
            .await
            .unwrap();
        assert!(found[0].is_loopback(), "{found:?}");
    }
}
