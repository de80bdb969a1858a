//! Load generators and test servers for `bench/run.sh` (see `bench/README.md`).
//!
//! - `serve`: a TCP echo server and a minimal HTTP/1.1 server (keep-alive, fixed 13-byte body);
//! - `connrate`: N concurrent clients, each in a loop: connect, send a small request, read the
//!   echo, close; prints connections per second;
//! - `latency`: open-loop request/response over persistent connections at a fixed rate; each
//!   request carries its send time and requests are sent on schedule whether or not earlier
//!   answers have arrived, so a stall in the path shows up in the tail instead of slowing the
//!   sender down (no coordinated omission); prints p50/p90/p99/p99.9/max;
//! - `hold`: opens N connections, does one round trip on each, prints `ready`, then keeps them
//!   idle until SIGTERM/SIGINT or `--hold` seconds.
//!
//! Results are printed as one line of `key=value` pairs for the script to parse.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
#[command(
    name = "switchyard-bench",
    version,
    about = "Load generators and servers for bench/run.sh"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a TCP echo server and/or a minimal HTTP/1.1 server until killed.
    Serve {
        /// Address of the echo server.
        #[arg(long)]
        echo: Option<SocketAddr>,
        /// Address of the HTTP server (answers every request with 200 and "hello, world\n").
        #[arg(long)]
        http: Option<SocketAddr>,
        /// Runtime worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Short connections: each client loops connect / send / read echo / close.
    Connrate {
        #[arg(long)]
        target: SocketAddr,
        /// Concurrent clients.
        #[arg(short = 'c', long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds to run.
        #[arg(short = 'd', long, default_value_t = 10.0)]
        duration: f64,
        /// Request (and echo) size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Spread client sockets over source addresses 127.0.0.1 .. 127.0.0.N.
        #[arg(long, default_value_t = 1)]
        sources: u8,
        /// Runtime worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Open-loop request/response latency over persistent connections at a fixed rate.
    Latency {
        #[arg(long)]
        target: SocketAddr,
        /// Persistent connections; requests go to them round robin.
        #[arg(short = 'c', long, default_value_t = 16)]
        conns: usize,
        /// Requests per second, all connections together.
        #[arg(short = 'r', long, default_value_t = 5000.0)]
        rate: f64,
        /// Seconds to run (the warm-up included).
        #[arg(short = 'd', long, default_value_t = 10.0)]
        duration: f64,
        /// Seconds at the start whose requests are not recorded.
        #[arg(long, default_value_t = 0.5)]
        warmup: f64,
        /// Request (and echo) size in bytes, at least 16.
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Open N connections through the target, one round trip each, then hold them idle.
    Hold {
        #[arg(long)]
        target: SocketAddr,
        /// Connections to open.
        #[arg(short = 'n', long, default_value_t = 10_000)]
        count: usize,
        /// Spread client sockets over source addresses 127.0.0.1 .. 127.0.0.N.
        #[arg(long, default_value_t = 1)]
        sources: u8,
        /// Connections being opened at the same time.
        #[arg(long, default_value_t = 200)]
        parallel: usize,
        /// Give up holding after this many seconds.
        #[arg(long, default_value_t = 120.0)]
        hold: f64,
        /// The round trip is one keep-alive HTTP/1.1 `GET /` and its response (the target
        /// is a `mode http` proxy), instead of an echoed line.
        #[arg(long)]
        http: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Serve {
            echo,
            http,
            threads,
        } => {
            if echo.is_none() && http.is_none() {
                bail!("serve: give --echo ADDR and/or --http ADDR");
            }
            runtime(threads)?.block_on(serve(echo, http))
        }
        Cmd::Connrate {
            target,
            concurrency,
            duration,
            size,
            sources,
            threads,
        } => runtime(threads)?.block_on(connrate(
            target,
            concurrency.max(1),
            secs(duration)?,
            size.max(1),
            sources,
        )),
        Cmd::Latency {
            target,
            conns,
            rate,
            duration,
            warmup,
            size,
        } => {
            if !rate.is_finite() || rate <= 0.0 {
                bail!("--rate must be positive");
            }
            latency(
                target,
                conns.max(1),
                rate,
                secs(duration)?,
                secs(warmup)?,
                size.max(16),
            )
        }
        Cmd::Hold {
            target,
            count,
            sources,
            parallel,
            hold: h,
            http,
        } => runtime(2)?.block_on(hold(
            target,
            count,
            sources,
            parallel.max(1),
            secs(h)?,
            http,
        )),
    }
}

fn secs(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).context("bad number of seconds")
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?)
}

// ------------------------------------------------------------------------------------ servers

async fn serve(echo: Option<SocketAddr>, http: Option<SocketAddr>) -> Result<()> {
    let mut tasks = Vec::new();
    if let Some(addr) = echo {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        tasks.push(tokio::spawn(accept_loop(l, false)));
    }
    if let Some(addr) = http {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        tasks.push(tokio::spawn(accept_loop(l, true)));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

async fn accept_loop(l: tokio::net::TcpListener, http: bool) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                if http {
                    tokio::spawn(http_conn(s));
                } else {
                    tokio::spawn(echo_conn(s));
                }
            }
            // EMFILE and friends: back off instead of spinning
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn echo_conn(mut s: tokio::net::TcpStream) {
    let mut buf = vec![0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

const HTTP_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n";

async fn http_conn(mut s: tokio::net::TcpStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    loop {
        // answer every complete request in the buffer (pipelining), then read more
        let mut out = Vec::new();
        let mut close = false;
        while let Some(head_end) = find(&buf, b"\r\n\r\n") {
            let head = &buf[..head_end];
            let body = content_length(head);
            let total = head_end + 4 + body;
            if buf.len() < total {
                break;
            }
            close |= wants_close(head);
            out.extend_from_slice(HTTP_RESPONSE);
            buf.drain(..total);
            if close {
                break;
            }
        }
        if !out.is_empty() && s.write_all(&out).await.is_err() {
            return;
        }
        if close || buf.len() > 1 << 20 {
            return;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header_lines(head: &[u8]) -> impl Iterator<Item = String> + '_ {
    head.split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).trim().to_ascii_lowercase())
}

fn content_length(head: &[u8]) -> usize {
    header_lines(head)
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn wants_close(head: &[u8]) -> bool {
    let mut lines = header_lines(head);
    let http10 = lines.next().is_some_and(|l| l.ends_with("http/1.0"));
    let mut close = http10;
    for l in lines {
        if let Some(v) = l.strip_prefix("connection:") {
            close = if v.contains("close") {
                true
            } else if v.contains("keep-alive") {
                false
            } else {
                close
            };
        }
    }
    close
}

// ------------------------------------------------------------------------------------ clients

/// A client socket, bound to 127.0.0.(1 + idx % sources) when `sources` > 1. The port is chosen
/// at connect time (IP_BIND_ADDRESS_NO_PORT), so every source address has its own ephemeral range
/// per destination.
async fn connect(
    target: SocketAddr,
    idx: usize,
    sources: u8,
) -> std::io::Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    if sources > 1 {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads an int from a valid pointer for the given length.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let last = 1 + (idx % usize::from(sources)) as u8;
        sock.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0)))?;
    }
    sock.set_nodelay(true)?;
    sock.connect(target).await
}

async fn round_trip(
    s: &mut tokio::net::TcpStream,
    req: &[u8],
    resp: &mut [u8],
) -> std::io::Result<()> {
    s.write_all(req).await?;
    s.read_exact(resp).await?;
    Ok(())
}

/// One keep-alive `GET /`; reads the response head and its `content-length` body.
async fn http_round_trip(s: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    s.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")
        .await?;
    let mut got = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(head_end) = find(&got, b"\r\n\r\n") {
            if got.len() >= head_end + 4 + content_length(&got[..head_end]) {
                return Ok(());
            }
        }
        match s.read(&mut chunk).await? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn connrate(
    target: SocketAddr,
    concurrency: usize,
    duration: Duration,
    size: usize,
    sources: u8,
) -> Result<()> {
    // fail early (and clearly) when nothing listens
    connect(target, 0, 1)
        .await
        .with_context(|| format!("connect {target}"))?;
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let (ok, errors) = (ok.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let req = vec![b'x'; size];
            let mut resp = vec![0u8; size];
            let mut i = w;
            while Instant::now() < deadline {
                let one = async {
                    let mut s = connect(target, i, sources).await?;
                    round_trip(&mut s, &req, &mut resp).await
                };
                match tokio::time::timeout(Duration::from_secs(5), one).await {
                    Ok(Ok(())) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => {
                        // do not spin on an immediate error (e.g. EADDRNOTAVAIL)
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += concurrency;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "conns_per_sec={:.1} completed={} errors={} elapsed={:.3} concurrency={} size={} sources={}",
        ok as f64 / elapsed,
        ok,
        errors.load(Ordering::Relaxed),
        elapsed,
        concurrency,
        size,
        sources
    );
    Ok(())
}

async fn hold(
    target: SocketAddr,
    count: usize,
    sources: u8,
    parallel: usize,
    hold: Duration,
    http: bool,
) -> Result<()> {
    connect(target, 0, 1)
        .await
        .with_context(|| format!("connect {target}"))?;
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let permit = sem.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let one = async {
                let mut s = connect(target, i, sources).await?;
                if http {
                    http_round_trip(&mut s).await?;
                } else {
                    let mut resp = [0u8; 16];
                    round_trip(&mut s, b"idle-connection\n", &mut resp).await?;
                }
                Ok::<_, std::io::Error>(s)
            };
            let r = tokio::time::timeout(Duration::from_secs(10), one).await;
            drop(permit);
            match r {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_string()),
            }
        }));
    }
    let mut held = Vec::with_capacity(count);
    let mut errors = 0usize;
    let mut first_error = String::new();
    for t in tasks {
        match t.await? {
            Ok(s) => held.push(s),
            Err(e) => {
                if errors == 0 {
                    first_error = e;
                }
                errors += 1;
            }
        }
    }
    println!(
        "ready connected={} errors={} open_seconds={:.2}{}",
        held.len(),
        errors,
        start.elapsed().as_secs_f64(),
        if errors > 0 {
            format!(" first_error=\"{first_error}\"")
        } else {
            String::new()
        }
    );
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = tokio::time::sleep(hold) => {}
    }
    drop(held);
    Ok(())
}

// ------------------------------------------------------------------------------------ latency

fn latency(
    target: SocketAddr,
    conns: usize,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    size: usize,
) -> Result<()> {
    // precise sleeps: the default 50 us timer slack would bunch requests together
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes an integer argument and touches no memory.
    unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
    }
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let warm = (rate * warmup.as_secs_f64()).round() as u64;
    if total <= warm {
        bail!("duration too short for the rate and warm-up");
    }
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::with_capacity(conns);
    let mut readers = Vec::with_capacity(conns);
    for c in 0..conns {
        let s = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5))
            .with_context(|| format!("connect {target}"))?;
        s.set_nodelay(true)?;
        let mut r = s.try_clone()?;
        r.set_read_timeout(Some(Duration::from_millis(100)))?;
        let expected = if (c as u64) < total {
            (total - c as u64).div_ceil(conns as u64)
        } else {
            0
        };
        let stop = stop.clone();
        readers.push(std::thread::spawn(move || {
            let mut samples: Vec<u64> = Vec::with_capacity(expected as usize);
            let mut buf = vec![0u8; size];
            let (mut got, mut filled) = (0u64, 0usize);
            while got < expected && !stop.load(Ordering::Relaxed) {
                match r.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        filled += n;
                        if filled == size {
                            let now = base.elapsed().as_nanos() as u64;
                            let seq = u64::from_le_bytes(buf[0..8].try_into().unwrap());
                            let sent = u64::from_le_bytes(buf[8..16].try_into().unwrap());
                            if seq >= warm {
                                samples.push(now.saturating_sub(sent));
                            }
                            got += 1;
                            filled = 0;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(_) => break,
                }
            }
            (samples, got)
        }));
        writers.push(s);
    }

    let interval = 1e9 / rate;
    let start_ns = base.elapsed().as_nanos() as u64 + 20_000_000;
    let mut lag: Vec<u64> = Vec::with_capacity(total as usize);
    let mut msg = vec![b'x'; size];
    let mut sent = 0u64;
    for seq in 0..total {
        let due = start_ns + (seq as f64 * interval) as u64;
        let now = base.elapsed().as_nanos() as u64;
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        let at = base.elapsed().as_nanos() as u64;
        lag.push(at.saturating_sub(due));
        msg[0..8].copy_from_slice(&seq.to_le_bytes());
        msg[8..16].copy_from_slice(&at.to_le_bytes());
        if writers[(seq % conns as u64) as usize]
            .write_all(&msg)
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    let send_end = base.elapsed();
    // give the last answers up to 2 s, then stop the readers
    let grace = Instant::now() + Duration::from_secs(2);
    while readers.iter().any(|r| !r.is_finished()) && Instant::now() < grace {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::with_capacity(total as usize);
    let mut received = 0u64;
    for r in readers {
        let (s, got) = r
            .join()
            .map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
        samples.extend(s);
        received += got;
    }
    drop(writers);
    if samples.is_empty() {
        bail!("no answer recorded (sent {sent})");
    }
    samples.sort_unstable();
    lag.sort_unstable();
    let us = |ns: u64| ns as f64 / 1000.0;
    let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64 / 1000.0;
    let achieved =
        sent as f64 / (send_end.as_nanos() as u64).saturating_sub(start_ns).max(1) as f64 * 1e9;
    println!(
        "p50_us={:.1} p90_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} mean_us={:.1} samples={} sent={} received={} lost={} \
         rate={:.0} achieved_rate={:.0} conns={} size={} sched_lag_p99_us={:.1}",
        us(pct(&samples, 0.50)),
        us(pct(&samples, 0.90)),
        us(pct(&samples, 0.99)),
        us(pct(&samples, 0.999)),
        us(*samples.last().unwrap()),
        mean,
        samples.len(),
        sent,
        received,
        total - received,
        rate,
        achieved,
        conns,
        size,
        us(pct(&lag, 0.99)),
    );
    Ok(())
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(pct(&v, 0.5), 500);
        assert_eq!(pct(&v, 0.99), 990);
        assert_eq!(pct(&v, 0.999), 999);
        assert_eq!(pct(&[7], 0.999), 7);
    }

    #[test]
    fn http_request_parsing() {
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n";
        assert_eq!(content_length(get), 0);
        assert!(!wants_close(get));
        assert!(wants_close(b"GET / HTTP/1.1\r\nConnection: close\r\n"));
        assert!(wants_close(b"GET / HTTP/1.0\r\n"));
        assert!(!wants_close(
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n"
        ));
        assert_eq!(
            content_length(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n"),
            12
        );
    }
}
