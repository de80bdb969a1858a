//! `mode http` on the wire, through the real binary: raw `TcpStream` clients on one side, a
//! scripted server on the other that records the exact bytes of each request it reads and
//! answers each with exactly the bytes it was given. Every test asserts on what each side
//! received, byte for byte: chunked bodies with extensions and trailers, pipelining, bodiless
//! responses (`HEAD`, `204`, `304`), HTTP/1.0 keep-alive, close-delimited responses,
//! `100 Continue` both ways, malformed and oversized requests, request smuggling guards,
//! hop-by-hop headers, `option forwardfor` and multi-megabyte bodies.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_testkit::{free_port, Switchyard};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// How long any read waits for its peer before the test fails.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A simple response the tests use when its content does not matter.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The proxy in front of a scripted server, and where clients connect.
struct Rig {
    server: Server,
    port: u16,
    _proxy: Switchyard,
}

impl Rig {
    /// `listen web` in front of a server answering `replies` in order.
    fn new(replies: Vec<Reply>) -> Rig {
        Rig::with_options(replies, "")
    }

    /// As [`Rig::new`], with `options` (whole lines) added to the `listen` section.
    fn with_options(replies: Vec<Reply>, options: &str) -> Rig {
        let server = Server::start(replies);
        let port = free_port();
        let config = format!(
            "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n\
             \x20   timeout server 5s\n\
             listen web\n    bind 127.0.0.1:{port}\n{options}    server s 127.0.0.1:{}\n",
            server.port
        );
        let proxy = Switchyard::start(BIN, &config).unwrap_or_else(|e| panic!("{e:#}"));
        Rig {
            server,
            port,
            _proxy: proxy,
        }
    }

    fn client(&self) -> Conn {
        Conn::new(TcpStream::connect(("127.0.0.1", self.port)).unwrap())
    }

    /// Sends `request` on `client`, then asserts that the server read exactly `forwarded`
    /// and the client exactly `answer`.
    fn round_trip(&self, client: &mut Conn, request: &[u8], forwarded: &[u8], answer: &[u8]) {
        client.send(request);
        assert_bytes("request at the server", &self.server.request(), forwarded);
        assert_bytes("response at the client", &client.response(), answer);
    }

    /// Sends `request` on a new connection and asserts that the proxy answers it with its
    /// own `400` and closes, and that nothing reached the server.
    fn assert_refused(&self, request: &[u8]) {
        let mut client = self.client();
        // The proxy may close before it read all of a large request: writing can fail.
        let _ = client.stream.write_all(request);
        let answer = client.response();
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 400 Bad Request\r\n")
                && text.contains("connection: close\r\n"),
            "for {}: {text}",
            show(request)
        );
        client.assert_closed();
        self.server.assert_untouched();
    }
}

/// What the scripted server writes for one request, and whether it closes after that.
struct Reply {
    bytes: Vec<u8>,
    close: bool,
}

fn reply(bytes: impl AsRef<[u8]>) -> Reply {
    Reply {
        bytes: bytes.as_ref().to_vec(),
        close: false,
    }
}

fn reply_then_close(bytes: impl AsRef<[u8]>) -> Reply {
    Reply {
        close: true,
        ..reply(bytes)
    }
}

/// A server on a free loopback port that reads whole requests (by their framing) on any of
/// its connections, records each, and answers it with the next of its replies; with none
/// left, it closes.
struct Server {
    port: u16,
    accepts: Arc<AtomicUsize>,
    requests: Receiver<Vec<u8>>,
}

impl Server {
    fn start(replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepts);
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let (seen, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::SeqCst);
                let (replies, seen) = (Arc::clone(&replies), seen.clone());
                std::thread::spawn(move || serve_script(Conn::new(stream), &replies, &seen));
            }
        });
        Server {
            port,
            accepts,
            requests,
        }
    }

    /// The next request the server read, byte for byte.
    fn request(&self) -> Vec<u8> {
        self.requests
            .recv_timeout(IO_TIMEOUT)
            .expect("the server read no (whole) request")
    }

    /// No connection has reached the server, given a moment to arrive.
    fn assert_untouched(&self) {
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            self.accepts.load(Ordering::SeqCst),
            0,
            "the proxy connected to the server"
        );
    }
}

fn serve_script(mut conn: Conn, replies: &Mutex<VecDeque<Reply>>, seen: &Sender<Vec<u8>>) {
    while let Ok(request) = conn.read_message(false) {
        let _ = seen.send(request);
        let Some(reply) = replies.lock().unwrap().pop_front() else {
            return;
        };
        if conn.stream.write_all(&reply.bytes).is_err() || reply.close {
            return;
        }
    }
}

/// One end of a TCP connection, reading whole HTTP/1 messages by their framing.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The peer has closed (or reset) the connection.
    eof: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("writing {}: {e}", show(bytes)));
    }

    fn response(&mut self) -> Vec<u8> {
        self.read_message(false).unwrap_or_else(|e| panic!("{e}"))
    }

    fn response_to_head(&mut self) -> Vec<u8> {
        self.read_message(true).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The next whole message (a request, or a response to a `HEAD` request if `to_head`).
    fn read_message(&mut self, to_head: bool) -> Result<Vec<u8>, String> {
        loop {
            if let Some(len) = whole_message(&self.buf, to_head, self.eof) {
                return Ok(self.buf.drain(..len).collect());
            }
            if self.eof {
                return Err(format!(
                    "closed before a whole message: {}",
                    show(&self.buf)
                ));
            }
            self.fill()?;
        }
    }

    /// Reads what comes next; `Err` when nothing does in time.
    fn fill(&mut self) -> Result<(), String> {
        let len = self.buf.len();
        self.buf.resize(len + 64 * 1024, 0);
        let read = self.stream.read(&mut self.buf[len..]);
        self.buf.truncate(len + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => self.eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => self.eof = true,
            Err(e) => return Err(format!("{e}, having read {}", show(&self.buf))),
        }
        Ok(())
    }

    /// All that comes until the peer closes the connection.
    fn rest_until_close(&mut self) -> Vec<u8> {
        while !self.eof {
            self.fill()
                .unwrap_or_else(|e| panic!("the connection stayed open: {e}"));
        }
        std::mem::take(&mut self.buf)
    }

    /// The peer closes the connection without sending anything more.
    fn assert_closed(&mut self) {
        let rest = self.rest_until_close();
        assert!(
            rest.is_empty(),
            "bytes after the last message: {}",
            show(&rest)
        );
    }
}

/// The length of the whole message at the start of `buf` once it is all there: a request,
/// or a response (to a `HEAD` request if `to_head`); `eof` ends a close-delimited response.
fn whole_message(buf: &[u8], to_head: bool, eof: bool) -> Option<usize> {
    let window = &buf[..buf.len().min(64 * 1024)];
    let head_len = find(window, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_len]);
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    let status = start
        .starts_with("HTTP/")
        .then(|| start.split(' ').nth(1)?.parse::<u16>().ok())
        .flatten();
    let header = |name: &str| {
        lines.clone().find_map(|line| {
            let (n, value) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_ascii_lowercase())
        })
    };
    if to_head || status.is_some_and(|s| s < 200 || s == 204 || s == 304) {
        return Some(head_len);
    }
    if header("transfer-encoding").is_some_and(|te| te.ends_with("chunked")) {
        return Some(head_len + chunked_len(&buf[head_len..])?);
    }
    match header("content-length") {
        Some(n) => {
            let total = head_len + n.parse::<usize>().ok()?;
            (buf.len() >= total).then_some(total)
        }
        None if status.is_some() => eof.then_some(buf.len()),
        None => Some(head_len),
    }
}

/// The length of the chunked body at the start of `body`, trailers included, once it is
/// all there.
fn chunked_len(body: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = at + find(&body[at..], b"\r\n")?;
        let line = std::str::from_utf8(&body[at..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            break;
        }
        at += size + 2;
        if body.len() < at {
            return None;
        }
    }
    // Trailer lines, up to the empty one.
    loop {
        let line_end = at + find(&body[at..], b"\r\n")?;
        let empty = line_end == at;
        at = line_end + 2;
        if empty {
            return Some(at);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Bytes as escaped text, from the start (long ones cut short), for failure messages.
fn show(bytes: &[u8]) -> String {
    const MAX: usize = 2048;
    let text = bytes[..bytes.len().min(MAX)].escape_ascii().to_string();
    if bytes.len() > MAX {
        format!("{text}... ({} bytes)", bytes.len())
    } else {
        text
    }
}

fn assert_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let from = at.saturating_sub(64);
    panic!(
        "{what}: {} bytes, {} expected, first difference at byte {at}; from byte {from}:\n \
         got: {}\nwant: {}",
        got.len(),
        want.len(),
        show(&got[from..]),
        show(&want[from..])
    );
}

/// `len` bytes that are not all alike, so a lost, repeated or reordered piece shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[test]
fn chunked_bodies_with_extensions_and_trailers_pass_intact_and_the_connection_goes_on() {
    let chunked_response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Done: 1\r\n\r\n";
    let next_response = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext";
    let rig = Rig::new(vec![reply(chunked_response), reply(next_response)]);
    let mut client = rig.client();
    let head = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let body = b"4;name=value\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: yes\r\n\r\n";
    // The head and part of the body, then the rest: the chunk scanner crosses reads.
    client.send(&[&head[..], &body[..9]].concat());
    std::thread::sleep(Duration::from_millis(50));
    client.send(&body[9..]);
    assert_bytes(
        "chunked request at the server",
        &rig.server.request(),
        &[&head[..], &body[..]].concat(),
    );
    assert_bytes(
        "chunked response at the client",
        &client.response(),
        chunked_response,
    );
    let next = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
    rig.round_trip(&mut client, next, next, next_response);
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none".as_slice(),
        b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\ntwo",
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nthree",
    ];
    let rig = Rig::new(answers.iter().map(reply).collect());
    let requests = [
        b"POST /1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            .as_slice(),
        b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    let mut client = rig.client();
    client.send(&requests.concat());
    for (request, answer) in requests.iter().zip(answers) {
        assert_bytes("request at the server", &rig.server.request(), request);
        assert_bytes("response at the client", &client.response(), answer);
    }
}

#[test]
fn head_204_and_304_responses_carry_no_body_and_the_connection_goes_on() {
    let to_head = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n";
    let no_content = b"HTTP/1.1 204 No Content\r\nX-Id: 1\r\n\r\n";
    let not_modified = b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n";
    let rig = Rig::new(vec![
        reply(to_head),
        reply(no_content),
        reply(not_modified),
        reply(OK),
    ]);
    let mut client = rig.client();
    let head = b"HEAD /file HTTP/1.1\r\nHost: x\r\n\r\n";
    client.send(head);
    assert_bytes("HEAD at the server", &rig.server.request(), head);
    assert_bytes("response to HEAD", &client.response_to_head(), to_head);
    for (request, answer) in [
        (
            &b"DELETE /item HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &no_content[..],
        ),
        (
            b"GET /file HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v1\"\r\n\r\n",
            not_modified,
        ),
        (b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n", OK),
    ] {
        rig.round_trip(&mut client, request, request, answer);
    }
}

#[test]
fn http10_client_without_keep_alive_is_closed_after_its_response() {
    let rig = Rig::new(vec![reply(OK)]);
    let mut client = rig.client();
    rig.round_trip(
        &mut client,
        b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
        // The server connection is kept alive all the same.
        b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    );
    client.assert_closed();
}

#[test]
fn http10_client_with_keep_alive_keeps_its_connection() {
    let rig = Rig::new(vec![reply(OK), reply(OK)]);
    let mut client = rig.client();
    let request = b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n";
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";
    rig.round_trip(&mut client, request, request, answer);
    rig.round_trip(&mut client, request, request, answer);
}

#[test]
fn close_delimited_response_is_relayed_whole_then_the_client_is_closed() {
    let body = "every byte until the server closes\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
    let rig = Rig::new(vec![reply_then_close(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n{body}"
    ))]);
    let mut client = rig.client();
    let request = b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
    rig.round_trip(
        &mut client,
        request,
        request,
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}")
            .as_bytes(),
    );
    client.assert_closed();
}

#[test]
fn expect_100_continue_is_answered_by_the_proxy_and_the_server_gets_the_body_without_it() {
    let created = b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone";
    let rig = Rig::new(vec![reply(created), reply(OK)]);
    let mut client = rig.client();
    client.send(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    assert_bytes(
        "interim response",
        &client.response(),
        b"HTTP/1.1 100 Continue\r\n\r\n",
    );
    client.send(b"hello");
    assert_bytes(
        "request at the server",
        &rig.server.request(),
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_bytes("final response", &client.response(), created);
    let next = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    rig.round_trip(&mut client, next, next, OK);
}

#[test]
fn interim_responses_from_the_server_reach_http11_clients_only_without_hop_by_hop_fields() {
    let interim_then_ok = [&b"HTTP/1.1 100 Continue\r\n\r\n"[..], OK].concat();
    let rig = Rig::new(vec![reply(&interim_then_ok), reply(&interim_then_ok)]);
    let mut client = rig.client();
    let request = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
    client.send(request);
    assert_bytes("request at the server", &rig.server.request(), request);
    assert_bytes(
        "interim response",
        &client.response(),
        b"HTTP/1.1 100 Continue\r\n\r\n",
    );
    assert_bytes("final response", &client.response(), OK);

    // An interim head follows the final head's rules: its hop-by-hop fields stay on the
    // server's hop and its bare-LF line ends go on as CRLF.
    let hints = b"HTTP/1.1 103 Early Hints\nLink: </s.css>; rel=preload\nConnection: x-hint\nX-Hint: 1\nKeep-Alive: timeout=5\n\n";
    let hints_then_ok = [&hints[..], OK].concat();
    let hinted = Rig::new(vec![reply(&hints_then_ok)]);
    let mut client = hinted.client();
    let request = b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n";
    client.send(request);
    assert_bytes("request at the server", &hinted.server.request(), request);
    assert_bytes(
        "early hints",
        &client.response(),
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
    );
    assert_bytes("final response", &client.response(), OK);

    let mut old = rig.client();
    rig.round_trip(
        &mut old,
        b"POST /b HTTP/1.0\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
        b"POST /b HTTP/1.0\r\nHost: x\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    );
    old.assert_closed();
}

#[test]
fn malformed_requests_get_400_and_never_reach_the_server() {
    let rig = Rig::new(vec![]);
    for request in [
        &b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n: empty-name\r\n\r\n",
        b"GET / HTTP/9.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
        b"GARBAGE\n\n",
        b"\x01\x02\x03 junk\nmore junk\n\n",
    ] {
        rig.assert_refused(request);
    }
}

#[test]
fn oversized_head_gets_400_and_never_reaches_the_server() {
    let rig = Rig::new(vec![]);
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..64 {
        request.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "a".repeat(1024)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    assert!(request.len() > 64 * 1024);
    // The proxy limits heads to 15 KiB (`switchyard_h1::MAX_HEAD`) and answers a larger one with 400,
    // as HAProxy does, not 431.
    rig.assert_refused(&request);
}

/// RFC 9112 section 6.1: no `Transfer-Encoding` in a response to an HTTP/1.0 request; a
/// chunked body goes to such a client decoded, delimited by the close.
#[test]
fn chunked_response_to_http10_client_is_sent_unchunked() {
    let rig = Rig::new(vec![reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
    )]);
    let mut client = rig.client();
    client.send(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    let answer = String::from_utf8_lossy(&client.rest_until_close()).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{answer}"
    );
    assert_eq!(body, "Wikipedia", "{answer}");
}

/// RFC 9112 section 6.1: the request goes on with one framing, and since a hop before the
/// proxy may have read the other, its connection closes after the response.
#[test]
fn content_length_beside_chunked_is_dropped_and_the_connection_closes_after() {
    let rig = Rig::new(vec![reply(OK), reply(OK)]);
    let mut client = rig.client();
    // Were the 3 bytes of Content-Length taken for the body, "hello..." would be read as
    // the next request.
    let chunked = b"5\r\nhello\r\n0\r\n\r\n";
    rig.round_trip(
        &mut client,
        &[
            &b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            chunked,
        ]
        .concat(),
        &[
            &b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            chunked,
        ]
        .concat(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    );
    client.assert_closed();
}

/// A head whose lines end in bare LF is accepted, and goes on with every line ending in
/// CRLF: a server that only splits lines at CRLF cannot see other headers than the proxy.
#[test]
fn bare_line_feeds_reach_the_server_as_crlf() {
    let rig = Rig::new(vec![reply(OK)]);
    let mut client = rig.client();
    rig.round_trip(
        &mut client,
        b"GET / HTTP/1.1\nHost: x\r\nX-A: 1\n\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n",
        OK,
    );
}

#[test]
fn ambiguous_request_framing_gets_400_and_never_reaches_the_server() {
    let rig = Rig::new(vec![]);
    for request in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        // RFC 9112 section 6.1: faulty framing, which a 1.0 hop would read as no body.
        b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        rig.assert_refused(request);
    }
}

#[test]
fn hop_by_hop_headers_never_cross_but_connection_cannot_remove_framing_or_host() {
    let rig = Rig::new(vec![
        reply(
            b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: a\r\n\
              Keep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
        ),
        reply(OK),
        reply(OK),
    ]);
    let mut client = rig.client();
    rig.round_trip(
        &mut client,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\n\
          Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nX-Kept: yes\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Kept: yes\r\n\r\n",
        OK,
    );
    let form = b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    rig.round_trip(
        &mut client,
        b"POST /form HTTP/1.1\r\nHost: x\r\nConnection: Content-Length, Host\r\n\
          Content-Length: 5\r\n\r\nhello",
        form,
        OK,
    );
    let chunked = b"POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n0\r\n\r\n";
    rig.round_trip(
        &mut client,
        b"POST /form HTTP/1.1\r\nHost: x\r\nConnection: transfer-encoding\r\n\
          Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        chunked,
        OK,
    );
}

#[test]
fn option_forwardfor_adds_the_client_address() {
    let rig = Rig::with_options(vec![reply(OK)], "    option forwardfor\n");
    let mut client = rig.client();
    rig.round_trip(
        &mut client,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n",
        OK,
    );
}

#[test]
fn three_mib_bodies_pass_byte_for_byte_both_ways() {
    const LEN: usize = 3 * 1024 * 1024;
    let response = [
        format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n").as_bytes(),
        &pattern(LEN, 0x5a),
    ]
    .concat();
    let rig = Rig::new(vec![reply(&response), reply(OK)]);
    let mut client = rig.client();
    let request = [
        format!("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {LEN}\r\n\r\n").as_bytes(),
        &pattern(LEN, 0xa5),
    ]
    .concat();
    rig.round_trip(&mut client, &request, &request, &response);
    let next = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    rig.round_trip(&mut client, next, next, OK);
}

/// An idle client does not pin a server connection: the connection goes back to its server's
/// pool when the response is over, and the pool's purges close it once the server's
/// estimated need has decayed (the third purge: `pool-purge-delay 1s`, so ~3 s; HAProxy's
/// default 5 s makes it ~15 s), while the client's own connection stays open and its next
/// request goes over a new server connection.
#[test]
fn an_idle_clients_server_connection_is_closed_by_the_pool_purges() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_port = listener.local_addr().unwrap().port();
    let port = free_port();
    // The client's own limit (12 s) is further than the purges.
    let config = format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 8s\n\
         \x20   timeout server 8s\n    timeout http-request 12s\n    timeout http-keep-alive 12s\n\
         listen web\n    bind 127.0.0.1:{port}\n    server s 127.0.0.1:{server_port} pool-purge-delay 1s\n"
    );
    let _proxy = Switchyard::start(BIN, &config).unwrap_or_else(|e| panic!("{e:#}"));
    let mut client = Conn::new(TcpStream::connect(("127.0.0.1", port)).unwrap());
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut served = Vec::new();
    for round in 0..2 {
        client.send(request);
        let mut server = Conn::new(listener.accept().unwrap().0);
        assert_bytes("request at the server", &server.response(), request);
        server.stream.write_all(OK).unwrap();
        assert_bytes("response at the client", &client.response(), OK);
        if round == 0 {
            let answered = std::time::Instant::now();
            server
                .stream
                .set_read_timeout(Some(Duration::from_secs(12)))
                .unwrap();
            let mut byte = [0u8; 1];
            let read = server.stream.read(&mut byte);
            let quiet = answered.elapsed();
            assert!(
                matches!(read, Ok(0)),
                "the proxy kept its server connection: {read:?} after {quiet:?}"
            );
            // Purges at 1, 2 and 3 s: the need (1) stays, then halves to 0, then the
            // surplus goes.
            assert!(
                (Duration::from_millis(2900)..Duration::from_millis(6000)).contains(&quiet),
                "closed after {quiet:?}"
            );
        }
        served.push(server);
    }
}
