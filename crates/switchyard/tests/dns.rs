//! Servers given by name follow DNS: a `resolvers` section pointing at a nameserver the test
//! runs (answers it changes at will), configuration and dynamic servers, a DNS outage that
//! keeps the last address, and `add server` with a name resolved by the system.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_testkit::{cli, free_port, greeter, greeting_through, Switchyard};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const NAME: &str = "db.switchyard.test";

/// A nameserver answering `A` queries for every name with `address` (no AAAA records);
/// silent while `mute` is set.
struct FakeDns {
    port: u16,
    address: Arc<Mutex<Ipv4Addr>>,
    mute: Arc<AtomicBool>,
}

impl FakeDns {
    fn start(first: Ipv4Addr) -> FakeDns {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let address = Arc::new(Mutex::new(first));
        let mute = Arc::new(AtomicBool::new(false));
        let (answer_with, muted) = (Arc::clone(&address), Arc::clone(&mute));
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                if muted.load(Ordering::Relaxed) || n < 12 {
                    continue;
                }
                let ip = *answer_with.lock().unwrap();
                let _ = socket.send_to(&answer(&buf[..n], ip), peer);
            }
        });
        FakeDns {
            port,
            address,
            mute,
        }
    }

    fn set(&self, ip: Ipv4Addr) {
        *self.address.lock().unwrap() = ip;
    }
}

/// The response to `query`: header and question echoed, one A record when asked for A.
fn answer(query: &[u8], ip: Ipv4Addr) -> Vec<u8> {
    // The question ends after the name's zero label and 4 bytes of type and class.
    let mut end = 12;
    while end < query.len() && query[end] != 0 {
        end += usize::from(query[end]) + 1;
    }
    let question_end = (end + 5).min(query.len());
    let qtype = u16::from_be_bytes([query[end + 1], query[end + 2]]);
    let mut out = query[..question_end].to_vec();
    out[2] = 0x81; // response, recursion desired
    out[3] = 0x80; // recursion available, NOERROR
    out[6..8].copy_from_slice(&(u16::from(qtype == 1)).to_be_bytes()); // ANCOUNT
    out[8..12].fill(0); // NSCOUNT, ARCOUNT
    if qtype == 1 {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    out
}

/// Backends named after their address, on the same port of 127.0.0.2 and 127.0.0.3.
fn twin_greeters() -> u16 {
    loop {
        let port = free_port();
        let (Ok(a), Ok(b)) = (
            TcpListener::bind(("127.0.0.2", port)),
            TcpListener::bind(("127.0.0.3", port)),
        ) else {
            continue;
        };
        for (listener, name) in [(a, "at .2"), (b, "at .3")] {
            std::thread::spawn(move || {
                use std::io::Write;
                for mut stream in listener.incoming().flatten() {
                    let _ = stream.write_all(format!("{name}\n").as_bytes());
                }
            });
        }
        return port;
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn servers_given_by_name_follow_dns_and_survive_its_outage() {
    let dns = FakeDns::start(Ipv4Addr::new(127, 0, 0, 2));
    let port = twin_greeters();
    let (admin, front, dynamic_front) = (free_port(), free_port(), free_port());
    let config = format!(
        "global\n    stats socket ipv4@127.0.0.1:{admin} level admin\n\
         resolvers test\n    nameserver ns1 127.0.0.1:{dns}\n    timeout resolve 200ms\n    timeout retry 200ms\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
         frontend fe\n    bind 127.0.0.1:{front}\n    default_backend be\n\
         frontend fe_dynamic\n    bind 127.0.0.1:{dynamic_front}\n    default_backend dynamic\n\
         backend be\n    server db {NAME}:{port} resolvers test resolve-prefer ipv4\n\
         backend dynamic\n    balance roundrobin\n",
        dns = dns.port,
    );
    let sy =
        Switchyard::start_with(BIN, &config, &[], Some(&[front, dynamic_front, admin])).unwrap();
    assert_eq!(greeting_through(front), "at .2");
    assert_eq!(
        cli(
            admin,
            &format!("add server dynamic/d {NAME}:{port} resolvers test")
        ),
        "New server registered.\n\n"
    );
    assert_eq!(cli(admin, "set server dynamic/d state ready"), "\n");
    assert_eq!(greeting_through(dynamic_front), "at .2");
    let state = cli(admin, "show servers state be");
    let row: Vec<&str> = state.lines().nth(2).unwrap().split(' ').collect();
    assert_eq!((row[4], row[17]), ("127.0.0.2", NAME), "{state}");

    // The record changes: both servers follow, without a reload.
    let changed = Instant::now();
    dns.set(Ipv4Addr::new(127, 0, 0, 3));
    wait_for("the configured server to follow DNS", || {
        greeting_through(front) == "at .3"
    });
    wait_for("the dynamic server to follow DNS", || {
        greeting_through(dynamic_front) == "at .3"
    });
    eprintln!("DNS change followed in {:?}", changed.elapsed());
    assert!(sy
        .stderr_so_far()
        .contains("be/db changed its IP from 127.0.0.2 to 127.0.0.3 by DNS resolution."));

    // The nameserver goes silent: the last address stays in use.
    dns.mute.store(true, Ordering::Relaxed);
    wait_for("the outage to be noticed", || {
        sy.stderr_so_far().contains("no nameserver answered")
    });
    assert_eq!(greeting_through(front), "at .3");
    dns.mute.store(false, Ordering::Relaxed);
    wait_for("resolution to recover", || {
        sy.stderr_so_far().contains("resolves again")
    });

    // Without a resolvers section, a dynamic server's name is resolved by the system.
    let local = greeter("localhost");
    assert_eq!(
        cli(
            admin,
            &format!("add server dynamic/l localhost:{local} resolve-prefer ipv4")
        ),
        "New server registered.\n\n"
    );
    assert_eq!(cli(admin, "set server dynamic/d state maint"), "\n");
    assert_eq!(cli(admin, "set server dynamic/l state ready"), "\n");
    assert_eq!(greeting_through(dynamic_front), "localhost");
    let answer = cli(admin, "add server dynamic/x nowhere.invalid:1");
    assert!(answer.contains("nowhere.invalid"), "{answer}");
}
