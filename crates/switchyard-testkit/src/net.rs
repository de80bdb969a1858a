//! Small TCP helpers shared by the Runtime API tests: a socket client that behaves like
//! `echo CMD | socat stdio tcp:...`, and backends that answer with their name.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Sends one command line to a stats socket on 127.0.0.1 and reads until the server closes.
/// A refused connection is retried for up to 3 s (a process is ready once its frontends
/// listen; its stats sockets may follow a moment later). Panics on other connection errors:
/// tests that expect the socket to be down check that first.
pub fn cli(port: u16, line: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot connect to the stats socket on port {port}: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("setting a read timeout");
    stream
        .write_all(format!("{line}\n").as_bytes())
        .expect("sending the command");
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .unwrap_or_else(|e| panic!("reading the reply to '{line}': {e}"));
    reply
}

/// The rows of a `show stat` table (CSV, HAProxy's header line first) as named cells.
pub fn stat_rows(csv: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("a CSV header")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The `show stat` row of `proxy`'s `service` (`FRONTEND`, `BACKEND` or a server name).
pub fn stat_row(
    csv: &str,
    proxy: &str,
    service: &str,
) -> std::collections::HashMap<String, String> {
    stat_rows(csv)
        .into_iter()
        .find(|row| row["pxname"] == proxy && row["svname"] == service)
        .unwrap_or_else(|| panic!("no row {proxy}/{service} in\n{csv}"))
}

/// A backend on a free loopback port that greets every connection with `NAME\n` and closes.
pub fn greeter(name: &str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a greeter");
    let port = listener.local_addr().expect("greeter address").port();
    let greeting = format!("{name}\n");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(greeting.as_bytes());
        }
    });
    port
}

/// Connects to a frontend on 127.0.0.1 and returns what the backend said (trimmed), or an
/// empty string when the connection fails or is closed without data.
pub fn greeting_through(port: u16) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.trim().to_string()
}

/// A backend on a free loopback port that echoes every byte back, one thread per connection
/// (tests use few connections but keep some open for long).
pub fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding an echo server");
    let port = listener.local_addr().expect("echo server address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = stream;
                let Ok(mut writer) = reader.try_clone() else {
                    return;
                };
                let _ = std::io::copy(&mut reader, &mut writer);
            });
        }
    });
    port
}

/// Clients opening short connections to 127.0.0.1:`port` in a loop, each sending a line
/// and expecting it echoed back (an echo backend behind the proxy): what reload and
/// hand-over tests run to count refused or broken connections.
pub struct EchoLoad {
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

/// What an [`EchoLoad`] saw.
#[derive(Debug)]
pub struct LoadReport {
    pub succeeded: u64,
    /// One entry per failed connection: the error, or a wrong echo.
    pub failures: Vec<String>,
}

impl EchoLoad {
    pub fn start(port: u16, clients: usize) -> EchoLoad {
        use std::sync::atomic::{AtomicBool, Ordering};
        let running = std::sync::Arc::new(AtomicBool::new(true));
        let threads = (0..clients)
            .map(|n| {
                let running = std::sync::Arc::clone(&running);
                std::thread::spawn(move || {
                    let (mut succeeded, mut failures) = (0, Vec::new());
                    let message = format!("client {n} says hello");
                    while running.load(Ordering::Relaxed) {
                        let result = (|| -> std::io::Result<Vec<u8>> {
                            let mut stream = TcpStream::connect(("127.0.0.1", port))?;
                            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                            stream.write_all(message.as_bytes())?;
                            let mut echoed = vec![0; message.len()];
                            stream.read_exact(&mut echoed)?;
                            Ok(echoed)
                        })();
                        match result {
                            Ok(echoed) if echoed == message.as_bytes() => succeeded += 1,
                            Ok(echoed) => failures
                                .push(format!("wrong echo: {}", String::from_utf8_lossy(&echoed))),
                            Err(e) => failures.push(e.to_string()),
                        }
                    }
                    (succeeded, failures)
                })
            })
            .collect();
        EchoLoad { running, threads }
    }

    /// Stops the clients and sums up.
    pub fn finish(self) -> LoadReport {
        self.running
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let mut report = LoadReport {
            succeeded: 0,
            failures: Vec::new(),
        };
        for thread in self.threads {
            if let Ok((succeeded, failures)) = thread.join() {
                report.succeeded += succeeded;
                report.failures.extend(failures);
            }
        }
        report
    }
}

/// A keep-alive HTTP server whose every response body is the port its client connected from:
/// which server connection carried the request.
pub fn http_port_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let from = stream.peer_addr().map_or(0, |addr| addr.port()).to_string();
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    // Requests without a body: a head ends with an empty line.
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match std::io::BufRead::read_line(&mut reader, &mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{from}",
                        from.len()
                    );
                    if writer.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// One `GET /` on a keep-alive client connection; the response's body (with
/// [`http_port_server`] behind the proxy: which server connection carried it).
pub fn http_get(stream: &mut TcpStream) -> String {
    http_get_path(stream, "/")
}

/// One `GET PATH` on a keep-alive client connection; the response's body. Read byte by
/// byte up to the body's `Content-Length`, so nothing of a next response is consumed.
pub fn http_get_path(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}
