//! Fake servers for the check kinds' unit tests: in-process tokio listeners on 127.0.0.1:0.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::Target;

/// A target with roomy timeouts (tests that expect an answer).
pub fn target_for(addr: SocketAddr) -> Target {
    Target {
        addr,
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
    }
}

/// A target whose check times out quickly (tests that expect a timeout).
pub fn short_target(addr: SocketAddr) -> Target {
    Target {
        addr,
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(200),
    }
}

/// A loopback port nobody listens on.
pub fn closed_port_target() -> Target {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    target_for(addr)
}

/// A listener whose accept queue is full, so a new connect gets no SYN-ACK and times out
/// (Linux drops SYNs while the accept queue is full). Keep the guard alive during the test.
pub async fn unanswered_target() -> (Target, (TcpListener, Vec<TcpStream>)) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    (short_target(addr), (listener, fillers))
}

/// Serves exactly one connection with `handler`, returning the listening address.
pub async fn serve_once<F, Fut>(handler: F) -> SocketAddr
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            handler(stream).await;
        }
    });
    addr
}

/// A server that sends `reply` as soon as the connection is accepted, then closes.
pub async fn serve_bytes(reply: Vec<u8>) -> SocketAddr {
    serve_once(move |mut stream| async move {
        let _ = stream.write_all(&reply).await;
        let _ = stream.shutdown().await;
        // Drain what the client sends so our close does not turn into a reset.
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut sink)).await;
    })
    .await
}

/// A server that sends `greeting` (nothing when it is empty), reads `expect_len` bytes (handing
/// them back), then sends `reply` and closes.
pub async fn serve_exchange(
    greeting: Vec<u8>,
    expect_len: usize,
    reply: Vec<u8>,
) -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let addr = serve_once(move |mut stream| async move {
        let _ = stream.write_all(&greeting).await;
        let got = read_exact_n(&mut stream, expect_len).await;
        let _ = tx.send(got);
        let _ = stream.write_all(&reply).await;
        let _ = stream.shutdown().await;
    })
    .await;
    (addr, rx)
}

/// A server that accepts and then says nothing, keeping the connection open for a while.
pub async fn serve_silence() -> SocketAddr {
    serve_once(|mut stream| async move {
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    })
    .await
}

/// Reads until `marker` has been seen (or end of stream), returning what was read.
pub async fn read_until(stream: &mut TcpStream, marker: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if data.windows(marker.len().max(1)).any(|w| w == marker) {
            return data;
        }
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return data,
            Ok(Ok(n)) => data.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads exactly `n` bytes (or what came before the end of stream).
pub async fn read_exact_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut data = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut data[got..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(k)) => got += k,
        }
    }
    data.truncate(got);
    data
}

/// Deterministic random inputs for the no-panic tests: random bytes, and mutations (bit
/// flips, truncations, insertions) of the valid `seeds`.
pub fn fuzz_inputs(seeds: &[&[u8]], count: usize) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5317c4);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        if seeds.is_empty() || i % 3 == 0 {
            let len = rng.gen_range(0..256);
            out.push((0..len).map(|_| rng.gen()).collect());
            continue;
        }
        let mut input = seeds[i % seeds.len()].to_vec();
        for _ in 0..rng.gen_range(1..6) {
            match rng.gen_range(0..4) {
                0 if !input.is_empty() => {
                    let at = rng.gen_range(0..input.len());
                    input[at] ^= 1 << rng.gen_range(0..8);
                }
                1 if !input.is_empty() => {
                    let at = rng.gen_range(0..input.len());
                    input.truncate(at);
                }
                2 => {
                    let at = rng.gen_range(0..=input.len());
                    input.insert(at, rng.gen());
                }
                _ if !input.is_empty() => {
                    let at = rng.gen_range(0..input.len());
                    input[at] =
                        [0, 0xff, b'\n', b'\r', b':', b' ', b'%', b'#'][rng.gen_range(0..8)];
                }
                _ => {}
            }
        }
        out.push(input);
    }
    out
}
