//! HTTP/1.x message heads and body framing, for forwarding messages mostly as they came.
//!
//! A head is parsed (by `httparse`) into offsets into the buffer it arrived in, so the
//! forwarding path copies the lines it keeps, in runs, instead of rebuilding a header map:
//! a request that needs no edit goes out as one copy of its head plus the lines a proxy
//! adds. Bodies are relayed as they are framed (length, chunks, or until close); the chunk
//! scanner finds where a chunked body ends without re-encoding it, and gives its data
//! decoded only for a recipient that does not take chunks (an HTTP/1.0 client).
//!
//! Framing follows RFC 9112 section 6: `Transfer-Encoding` wins over `Content-Length` (which
//! is then dropped on the way, against request smuggling), a request whose
//! `Transfer-Encoding` does not end in `chunked` is refused, and conflicting lengths are an
//! error.

use std::mem::MaybeUninit;
use std::ops::Range;

use smallvec::SmallVec;

/// The most header lines a head may have (HAProxy's `tune.http.maxhdr` is 101).
pub const MAX_HEADERS: usize = 101;

/// The longest head accepted, start line and headers (HAProxy's `tune.bufsize` of 16 KiB
/// less its `tune.maxrewrite` reserve).
pub const MAX_HEAD: usize = 15 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Where a part of a head lies in the buffer it was parsed from. Heads are at most
/// [`MAX_HEAD`] bytes, so 16-bit offsets do: a parsed head is then small enough (~300 bytes
/// rather than ~900) that moving it through the forwarding path costs little.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u16,
    pub end: u16,
}

impl Span {
    fn new(range: Range<usize>) -> Span {
        // Offsets within a head of at most MAX_HEAD bytes; saturating keeps a logic error
        // from panicking on the data path (the span would then be empty or short).
        let offset = |at: usize| u16::try_from(at).unwrap_or(u16::MAX);
        Span {
            start: offset(range.start),
            end: offset(range.end),
        }
    }

    pub fn range(self) -> Range<usize> {
        usize::from(self.start)..usize::from(self.end)
    }

    pub fn is_empty(self) -> bool {
        self.start >= self.end
    }
}

/// One header line: where its name and value are, and the whole line with its line end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Span,
    pub value: Span,
    pub line: Span,
}

/// What about a message its headers decide for a proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Semantics {
    /// `Transfer-Encoding` is present; `chunked` is whether its last coding is `chunked`.
    pub transfer_encoding: bool,
    pub chunked: bool,
    /// The agreed value of the `Content-Length` lines, if any.
    pub content_length: Option<u64>,
    /// `Content-Length` lines disagree or are not numbers.
    pub bad_length: bool,
    /// Tokens of `Connection`.
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade_token: bool,
    /// An `Upgrade` line is present.
    pub upgrade: bool,
    /// Field names `Connection` lists (other than `close`, `keep-alive` and `upgrade`): hop-by-hop
    /// headers of this connection only.
    pub named: SmallVec<[Span; 2]>,
}

/// A parsed head: the start line, the header lines, and what they mean.
#[derive(Debug, Clone)]
pub struct Head {
    /// Bytes of the head, up to and including its empty last line.
    pub len: usize,
    pub version: Version,
    /// The start line with its line end.
    pub start_line: Span,
    pub fields: SmallVec<[Field; 16]>,
    pub semantics: Semantics,
    /// Requests: the method and the target. Responses: empty ranges.
    pub method: Span,
    pub target: Span,
    /// Responses: the status code. Requests: 0.
    pub status: u16,
    /// Some line ends in a bare LF (accepted, as by HAProxy); copies end every line in CRLF,
    /// so that the next hop cannot split the head differently.
    pub bare_lf: bool,
}

impl Head {
    /// The first value of header `name` (any case), if present.
    pub fn get<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        self.all(buf, name).next()
    }

    /// Every value of header `name` (any case), in order.
    pub fn all<'a, 'b: 'a>(
        &'a self,
        buf: &'b [u8],
        name: &'a str,
    ) -> impl Iterator<Item = &'b [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |f| buf[f.name.range()].eq_ignore_ascii_case(name.as_bytes()))
            .map(move |f| &buf[f.value.range()])
    }

    /// The request line without its line end, for logs: `GET /path HTTP/1.1`.
    pub fn start_line_text<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        trim_line_end(&buf[self.start_line.range()])
    }

    /// Whether the connection must close after this message (RFC 9112 section 6.1): its
    /// framing came with a `Content-Length` beside `Transfer-Encoding`, or with
    /// `Transfer-Encoding` in HTTP/1.0, which another hop may have read differently.
    pub fn closes_after(&self) -> bool {
        let s = &self.semantics;
        s.transfer_encoding
            && (s.content_length.is_some() || s.bad_length || self.version == Version::Http10)
    }

    /// Whether a header is hop-by-hop for this message: the connection-management headers
    /// (RFC 9110 section 7.6.1) and those `Connection` names. `Transfer-Encoding` is not:
    /// bodies are relayed with their framing. Neither are `Content-Length` and `Host`, which
    /// a `Connection` line naming them must not remove from under the framing or routing.
    pub fn hop_by_hop(&self, buf: &[u8], field: &Field, keep_upgrade: bool) -> bool {
        let name = &buf[field.name.range()];
        let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
        if is("connection") || is("keep-alive") || is("proxy-connection") || is("te") {
            return true;
        }
        if is("upgrade") {
            return !keep_upgrade;
        }
        if is("content-length") || is("transfer-encoding") || is("host") {
            return false;
        }
        self.semantics
            .named
            .iter()
            .any(|token| buf[token.range()].eq_ignore_ascii_case(name))
    }
}

/// Why a head or a body could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("malformed head: {0}")]
    Malformed(&'static str),
    #[error("head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("conflicting or invalid Content-Length")]
    BadLength,
    #[error("Transfer-Encoding not ending in chunked")]
    BadTransferEncoding,
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
}

/// `Ok(None)`: the head is not complete yet (and not too large so far).
pub fn parse_request(buf: &[u8]) -> Result<Option<Head>, Error> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let status = request
        .parse_with_uninit_headers(buf, &mut storage)
        .map_err(from_httparse)?;
    let httparse::Status::Complete(len) = status else {
        return incomplete(buf);
    };
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(Error::Malformed("incomplete request line"));
    };
    let mut head = head_of(buf, len, version, request.headers)?;
    head.method = range_of(buf, method.as_bytes());
    head.target = range_of(buf, target.as_bytes());
    Ok(Some(head))
}

/// As [`parse_request`], for a server's response.
pub fn parse_response(buf: &[u8]) -> Result<Option<Head>, Error> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut response, buf, &mut storage)
        .map_err(from_httparse)?;
    let httparse::Status::Complete(len) = status else {
        return incomplete(buf);
    };
    let (Some(code), Some(version)) = (response.code, response.version) else {
        return Err(Error::Malformed("incomplete status line"));
    };
    let mut head = head_of(buf, len, version, response.headers)?;
    head.status = code;
    Ok(Some(head))
}

fn incomplete(buf: &[u8]) -> Result<Option<Head>, Error> {
    if buf.len() > MAX_HEAD {
        Err(Error::TooLarge)
    } else {
        Ok(None)
    }
}

fn from_httparse(error: httparse::Error) -> Error {
    match error {
        httparse::Error::TooManyHeaders => Error::TooManyHeaders,
        httparse::Error::HeaderName => Error::Malformed("invalid header name"),
        httparse::Error::HeaderValue => Error::Malformed("invalid header value"),
        httparse::Error::NewLine => Error::Malformed("invalid line end"),
        httparse::Error::Status => Error::Malformed("invalid status"),
        httparse::Error::Token => Error::Malformed("invalid token"),
        httparse::Error::Version => Error::Malformed("invalid version"),
    }
}

/// Where `part` (a slice of `buf`) starts and ends in `buf`.
fn range_of(buf: &[u8], part: &[u8]) -> Span {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    Span::new(start..start + part.len())
}

fn head_of(
    buf: &[u8],
    len: usize,
    version: u8,
    headers: &[httparse::Header<'_>],
) -> Result<Head, Error> {
    if len > MAX_HEAD {
        return Err(Error::TooLarge);
    }
    let version = match version {
        0 => Version::Http10,
        _ => Version::Http11,
    };
    // The empty last line is "\r\n" or a bare "\n".
    let end = if buf[..len].ends_with(b"\r\n\r\n") || buf[..len].ends_with(b"\n\r\n") {
        len - 2
    } else {
        len - 1
    };
    let mut fields: SmallVec<[Field; 16]> = SmallVec::with_capacity(headers.len());
    for header in headers {
        let name = range_of(buf, header.name.as_bytes());
        let value = range_of(buf, header.value);
        if let Some(previous) = fields.last_mut() {
            previous.line.end = name.start;
        }
        fields.push(Field {
            line: Span::new(name.range().start..end),
            name,
            value,
        });
    }
    let start_end = fields.first().map_or(end, |f| f.name.range().start);
    // httparse skips empty lines before a start line (RFC 9112 section 2.2); they are
    // neither forwarded nor logged.
    let start = buf[..start_end]
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(start_end);
    let mut head = Head {
        len,
        version,
        start_line: Span::new(start..start_end),
        fields,
        semantics: Semantics::default(),
        method: Span::default(),
        target: Span::default(),
        status: 0,
        bare_lf: false,
    };
    head.bare_lf = !buf[head.start_line.range()].ends_with(b"\r\n")
        || head
            .fields
            .iter()
            .any(|f| !buf[f.line.range()].ends_with(b"\r\n"));
    head.semantics = semantics(buf, &head.fields)?;
    Ok(head)
}

fn semantics(buf: &[u8], fields: &[Field]) -> Result<Semantics, Error> {
    let mut s = Semantics::default();
    for field in fields {
        let name = &buf[field.name.range()];
        let value = &buf[field.value.range()];
        if name.eq_ignore_ascii_case(b"content-length") {
            for item in value.split(|&b| b == b',') {
                let item = trim(item);
                let parsed =
                    (!item.is_empty() && item.len() <= 19 && item.iter().all(u8::is_ascii_digit))
                        .then(|| std::str::from_utf8(item).ok()?.parse::<u64>().ok())
                        .flatten();
                match (parsed, s.content_length) {
                    (Some(n), None) => s.content_length = Some(n),
                    (Some(n), Some(seen)) if n == seen => {}
                    _ => s.bad_length = true,
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            s.transfer_encoding = true;
            // Only the last coding matters: is the body chunked at the outermost?
            if let Some(last) = value
                .split(|&b| b == b',')
                .map(trim)
                .rfind(|c| !c.is_empty())
            {
                s.chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            let mut start = field.value.range().start;
            for token in value.split(|&b| b == b',') {
                let range = start..start + token.len();
                start += token.len() + 1;
                let trimmed = trim(token);
                if trimmed.is_empty() {
                    continue;
                }
                if trimmed.eq_ignore_ascii_case(b"close") {
                    s.close = true;
                } else if trimmed.eq_ignore_ascii_case(b"keep-alive") {
                    s.keep_alive = true;
                } else if trimmed.eq_ignore_ascii_case(b"upgrade") {
                    s.upgrade_token = true;
                } else {
                    let offset =
                        range.start + (trimmed.as_ptr() as usize - token.as_ptr() as usize);
                    s.named.push(Span::new(offset..offset + trimmed.len()));
                }
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            s.upgrade = true;
        }
    }
    Ok(s)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &bytes[start..end.max(start)]
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes (responses only).
    UntilClose,
}

/// A request's body framing; `Err` for a request that must be refused (400).
pub fn request_framing(head: &Head) -> Result<Framing, Error> {
    let s = &head.semantics;
    if s.transfer_encoding {
        return if head.version == Version::Http10 {
            Err(Error::TransferEncodingInHttp10)
        } else if s.chunked {
            Ok(Framing::Chunked)
        } else {
            Err(Error::BadTransferEncoding)
        };
    }
    if s.bad_length {
        return Err(Error::BadLength);
    }
    Ok(match s.content_length {
        Some(0) | None => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

/// A response's body framing, given whether it answers a `HEAD` request; `Err` for a
/// response that cannot be relayed safely (502).
pub fn response_framing(head: &Head, to_head_request: bool) -> Result<Framing, Error> {
    if to_head_request || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(Framing::Empty);
    }
    let s = &head.semantics;
    if s.transfer_encoding {
        return Ok(if s.chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    if s.bad_length {
        return Err(Error::BadLength);
    }
    Ok(match s.content_length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

/// Appends to `out` the lines of `head` (in `buf`) that `keep` accepts, copying runs of
/// consecutive kept lines at once; the start line is always kept. The empty last line is
/// not written: the caller adds its own lines, then ends the head.
pub fn copy_head(out: &mut Vec<u8>, buf: &[u8], head: &Head, mut keep: impl FnMut(&Field) -> bool) {
    if head.bare_lf {
        let lines = std::iter::once(&head.start_line)
            .chain(head.fields.iter().filter(|f| keep(f)).map(|f| &f.line));
        for line in lines {
            out.extend_from_slice(trim_line_end(&buf[line.range()]));
            out.extend_from_slice(b"\r\n");
        }
        return;
    }
    let mut run = head.start_line.range();
    for field in &head.fields {
        let line = field.line.range();
        if keep(field) {
            if run.end == line.start {
                run.end = line.end;
            } else {
                out.extend_from_slice(&buf[run.clone()]);
                run = line;
            }
        } else if !run.is_empty() {
            out.extend_from_slice(&buf[run.clone()]);
            run = line.end..line.end;
        } else {
            run = line.end..line.end;
        }
    }
    out.extend_from_slice(&buf[run]);
}

/// Finds the end of a chunked body in the bytes that pass, without changing them.
#[derive(Debug, Clone, Default)]
pub struct ChunkScanner {
    state: ChunkState,
    /// Bytes of the current chunk-size line or trailer section, bounded.
    line: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// In the chunk size (hex digits); `size` so far.
    #[default]
    SizeStart,
    Size(u64),
    /// After the size: optional whitespace, extensions, up to the line end.
    SizeRest(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

/// Chunk-size lines and the trailer section longer than this are refused.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = MAX_HEAD;

impl ChunkScanner {
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Takes `bytes` (the next ones of the body) and returns how many belong to the body:
    /// all of them, or fewer when the body ends within them.
    pub fn scan(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        self.scan_inner(bytes, None)
    }

    /// As [`ChunkScanner::scan`], also appending the chunks' data to `data`: the body
    /// decoded, for a recipient that does not take chunks (an HTTP/1.0 client).
    pub fn scan_into(&mut self, bytes: &[u8], data: &mut Vec<u8>) -> Result<usize, Error> {
        self.scan_inner(bytes, Some(data))
    }

    fn scan_inner(&mut self, bytes: &[u8], mut data: Option<&mut Vec<u8>>) -> Result<usize, Error> {
        use ChunkState::*;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match self.state {
                Done => return Ok(i),
                Data(left) => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - i);
                    if let Some(data) = data.as_mut() {
                        data.extend_from_slice(&bytes[i..i + take]);
                    }
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 { DataCr } else { Data(left) };
                    continue;
                }
                SizeStart => {
                    self.line = 0;
                    Size(u64::from(
                        hex(b).ok_or(Error::BadChunk("chunk size expected"))?,
                    ))
                }
                Size(size) => match hex(b) {
                    Some(digit) => {
                        if size > u64::MAX >> 8 {
                            return Err(Error::BadChunk("chunk size too large"));
                        }
                        Size(size << 4 | u64::from(digit))
                    }
                    None => self.size_rest(size, b)?,
                },
                SizeRest(size) => self.size_rest(size, b)?,
                SizeLf(size) => {
                    if b != b'\n' {
                        return Err(Error::BadChunk("line end expected after chunk size"));
                    }
                    if size == 0 {
                        self.line = 0;
                        TrailerStart
                    } else {
                        Data(size)
                    }
                }
                DataCr => match b {
                    b'\r' => DataLf,
                    b'\n' => SizeStart,
                    _ => return Err(Error::BadChunk("line end expected after chunk data")),
                },
                DataLf => {
                    if b != b'\n' {
                        return Err(Error::BadChunk("line end expected after chunk data"));
                    }
                    SizeStart
                }
                TrailerStart => match b {
                    b'\r' => FinalLf,
                    b'\n' => Done,
                    _ => self.trailer_byte(b)?,
                },
                Trailer => self.trailer_byte(b)?,
                TrailerLf => {
                    if b != b'\n' {
                        return Err(Error::BadChunk("line end expected in trailers"));
                    }
                    TrailerStart
                }
                FinalLf => {
                    if b != b'\n' {
                        return Err(Error::BadChunk("line end expected at the end"));
                    }
                    Done
                }
            };
            i += 1;
        }
        Ok(i)
    }

    fn size_rest(&mut self, size: u64, b: u8) -> Result<ChunkState, Error> {
        self.line += 1;
        if self.line > MAX_CHUNK_LINE {
            return Err(Error::BadChunk("chunk size line too long"));
        }
        Ok(match b {
            b'\r' => ChunkState::SizeLf(size),
            b'\n' if size == 0 => {
                self.line = 0;
                ChunkState::TrailerStart
            }
            b'\n' => ChunkState::Data(size),
            // Extensions (`;name=value`) and whitespace pass as they are.
            _ => ChunkState::SizeRest(size),
        })
    }

    fn trailer_byte(&mut self, b: u8) -> Result<ChunkState, Error> {
        self.line += 1;
        if self.line > MAX_TRAILERS {
            return Err(Error::BadChunk("trailers too long"));
        }
        Ok(match b {
            b'\r' => ChunkState::TrailerLf,
            b'\n' => ChunkState::TrailerStart,
            _ => ChunkState::Trailer,
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Where the path of a request target ends: before `?`, or the whole target. Absolute-form
/// targets (`http://host/path`) give their path part.
pub fn target_path(target: &[u8]) -> &[u8] {
    let path = absolute_form_path(target);
    let end = path.iter().position(|&b| b == b'?').unwrap_or(path.len());
    &path[..end]
}

/// The query of a request target, without the `?`.
pub fn target_query(target: &[u8]) -> Option<&[u8]> {
    let at = target.iter().position(|&b| b == b'?')?;
    Some(&target[at + 1..])
}

fn absolute_form_path(target: &[u8]) -> &[u8] {
    let Some(scheme_end) = target.windows(3).position(|w| w == b"://") else {
        return target;
    };
    if target[..scheme_end].contains(&b'/') {
        return target;
    }
    let rest = &target[scheme_end + 3..];
    match rest.iter().position(|&b| b == b'/' || b == b'?') {
        Some(at) if rest[at] == b'/' => &rest[at..],
        _ => b"/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(buf: &'a [u8], span: &Span) -> &'a str {
        std::str::from_utf8(&buf[span.range()]).unwrap()
    }

    #[test]
    fn requests_parse_into_ranges_of_their_buffer() {
        let buf = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Long:  spaced  \r\n\r\nBODY";
        let head = parse_request(buf).unwrap().unwrap();
        assert_eq!(head.len, buf.len() - 4);
        assert_eq!(text(buf, &head.method), "GET");
        assert_eq!(text(buf, &head.target), "/a?b=1");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(text(buf, &head.start_line), "GET /a?b=1 HTTP/1.1\r\n");
        assert_eq!(head.fields.len(), 2);
        assert_eq!(text(buf, &head.fields[0].line), "Host: x\r\n");
        assert_eq!(text(buf, &head.fields[1].line), "X-Long:  spaced  \r\n");
        assert_eq!(text(buf, &head.fields[1].value), "spaced");
        assert_eq!(head.get(buf, "HOST"), Some(&b"x"[..]));
        assert_eq!(head.start_line_text(buf), b"GET /a?b=1 HTTP/1.1");
        assert_eq!(request_framing(&head), Ok(Framing::Empty));
    }

    #[test]
    fn ambiguous_framing_closes_the_connection() {
        let head = |text: &str| parse_request(text.as_bytes()).unwrap().unwrap();
        let both =
            head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(request_framing(&both), Ok(Framing::Chunked));
        assert!(both.closes_after());
        let chunked = head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(!chunked.closes_after());
        let old = head("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(request_framing(&old), Err(Error::TransferEncodingInHttp10));
        let response = parse_response(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(response_framing(&response, false), Ok(Framing::Chunked));
        assert!(response.closes_after());
    }

    #[test]
    fn decoding_gives_the_chunks_data_wherever_the_input_splits() {
        let body = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for split in 0..body.len() {
            let mut scanner = ChunkScanner::default();
            let mut data = Vec::new();
            let first = scanner.scan_into(&body[..split], &mut data).unwrap();
            let second = scanner.scan_into(&body[split..], &mut data).unwrap();
            assert_eq!(first + second, body.len() - 4, "split at {split}");
            assert!(scanner.done());
            assert_eq!(data, b"Wikipedia", "split at {split}");
        }
    }

    #[test]
    fn empty_lines_before_a_start_line_are_skipped() {
        let buf = b"\r\n\nGET / HTTP/1.0\r\nHost: x\r\n\r\n";
        let head = parse_request(buf).unwrap().unwrap();
        assert_eq!(head.len, buf.len());
        assert_eq!(text(buf, &head.start_line), "GET / HTTP/1.0\r\n");
        let mut out = Vec::new();
        copy_head(&mut out, buf, &head, |_| true);
        assert_eq!(out, b"GET / HTTP/1.0\r\nHost: x\r\n");
    }

    #[test]
    fn bare_line_feeds_are_copied_as_crlf() {
        let buf = b"GET / HTTP/1.1\nHost: x\r\nX-A: 1\nX-B: 2\n\n";
        let head = parse_request(buf).unwrap().unwrap();
        assert!(head.bare_lf);
        let mut out = Vec::new();
        copy_head(&mut out, buf, &head, |f| &buf[f.name.range()] != b"X-A");
        assert_eq!(out, b"GET / HTTP/1.1\r\nHost: x\r\nX-B: 2\r\n");
        // Found by fuzzing: a start line alone, in bare LF, keeps its text.
        let alone = b"1 ? HTTP/1.0\n\n";
        let head = parse_request(alone).unwrap().unwrap();
        let mut out = Vec::new();
        copy_head(&mut out, alone, &head, |_| true);
        assert_eq!(out, b"1 ? HTTP/1.0\r\n");
        assert_eq!(head.start_line_text(alone), b"1 ? HTTP/1.0");
        let crlf = parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!crlf.bare_lf);
    }

    #[test]
    fn partial_heads_wait_and_oversized_ones_fail() {
        assert!(parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .unwrap()
            .is_none());
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse_request(&big).unwrap_err(), Error::TooLarge);
        assert!(matches!(
            parse_request(b"GARBAGE\r\n\r\n"),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n"),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let req = |h: &str| {
            parse_request(format!("POST / HTTP/1.1\r\n{h}\r\n").as_bytes())
                .unwrap()
                .unwrap()
        };
        assert_eq!(
            request_framing(&req("Content-Length: 5\r\n")),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            request_framing(&req("Content-Length: 5\r\nContent-Length: 5, 5\r\n")),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            request_framing(&req("Content-Length: 5\r\nContent-Length: 6\r\n")),
            Err(Error::BadLength)
        );
        assert_eq!(
            request_framing(&req("Content-Length: -1\r\n")),
            Err(Error::BadLength)
        );
        assert_eq!(
            request_framing(&req("Content-Length: +1\r\n")),
            Err(Error::BadLength)
        );
        assert_eq!(
            request_framing(&req(
                "Transfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n"
            )),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            request_framing(&req("Transfer-Encoding: chunked, gzip\r\n")),
            Err(Error::BadTransferEncoding)
        );
        let resp = |s: &str| {
            parse_response(format!("HTTP/1.1 {s}\r\n\r\n").as_bytes())
                .unwrap()
                .unwrap()
        };
        let ok_cl = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(response_framing(&ok_cl, false), Ok(Framing::Length(9)));
        assert_eq!(response_framing(&ok_cl, true), Ok(Framing::Empty));
        assert_eq!(
            response_framing(&resp("204 No Content"), false),
            Ok(Framing::Empty)
        );
        assert_eq!(
            response_framing(&resp("304 Not Modified"), false),
            Ok(Framing::Empty)
        );
        assert_eq!(
            response_framing(&resp("100 Continue"), false),
            Ok(Framing::Empty)
        );
        assert_eq!(
            response_framing(&resp("200 OK"), false),
            Ok(Framing::UntilClose)
        );
        let gz = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(response_framing(&gz, false), Ok(Framing::UntilClose));
    }

    #[test]
    fn connection_tokens_name_hop_by_hop_headers_but_never_the_framing() {
        let buf = b"GET / HTTP/1.1\r\nConnection: keep-alive, X-Hop , Upgrade, content-length\r\n\
            X-Hop: 1\r\nx-end: 2\r\nUpgrade: ws\r\nKeep-Alive: 5\r\nContent-Length: 0\r\nTE: trailers\r\n\r\n";
        let head = parse_request(buf).unwrap().unwrap();
        assert!(
            head.semantics.keep_alive && head.semantics.upgrade_token && head.semantics.upgrade
        );
        assert!(!head.semantics.close);
        let kept = |keep_upgrade: bool| {
            let mut out = Vec::new();
            copy_head(&mut out, buf, &head, |f| {
                !head.hop_by_hop(buf, f, keep_upgrade)
            });
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            kept(false),
            "GET / HTTP/1.1\r\nx-end: 2\r\nContent-Length: 0\r\n"
        );
        assert_eq!(
            kept(true),
            "GET / HTTP/1.1\r\nx-end: 2\r\nUpgrade: ws\r\nContent-Length: 0\r\n"
        );
        let mut all = Vec::new();
        copy_head(&mut all, buf, &head, |_| true);
        assert_eq!(&all[..], &buf[..buf.len() - 2]);
    }

    #[test]
    fn chunked_bodies_end_where_their_last_chunk_and_trailers_end() {
        let body =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        // Whole, and one byte at a time: the same end.
        let mut whole = ChunkScanner::default();
        assert_eq!(whole.scan(body), Ok(body.len() - 4));
        assert!(whole.done());
        let mut bytewise = ChunkScanner::default();
        let mut taken = 0;
        for b in body.iter() {
            taken += bytewise.scan(std::slice::from_ref(b)).unwrap();
            if bytewise.done() {
                break;
            }
        }
        assert_eq!(taken, body.len() - 4);
        let mut bare = ChunkScanner::default();
        assert_eq!(bare.scan(b"0\r\n\r\n"), Ok(5));
        assert!(bare.done());
        let mut lf = ChunkScanner::default();
        assert_eq!(lf.scan(b"3\nabc\n0\n\n"), Ok(9));
        assert!(lf.done());
        assert!(ChunkScanner::default().scan(b"zz\r\n").is_err());
        assert!(ChunkScanner::default().scan(b"3\r\nabcX").is_err());
        assert!(ChunkScanner::default()
            .scan(b"fffffffffffffffff\r\n")
            .is_err());
    }

    #[test]
    fn targets_give_their_path_and_query() {
        assert_eq!(target_path(b"/a/b?x=1"), b"/a/b");
        assert_eq!(target_query(b"/a/b?x=1&y"), Some(&b"x=1&y"[..]));
        assert_eq!(target_path(b"http://h:80/p?q"), b"/p");
        assert_eq!(target_path(b"http://h"), b"/");
        assert_eq!(target_path(b"*"), b"*");
    }
}
