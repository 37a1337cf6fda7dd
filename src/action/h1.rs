//! The plain-HTTP hot path: one HTTP/1.1 exchange with a site, written out and parsed
//! here, in the task of the client's request, for requests without a body (`GET`, `HEAD`,
//! `OPTIONS`) — the bulk of browsing.
//!
//! hyper's client drives each site connection from a task of its own: every request
//! crosses a channel to that task, and its answer crosses back, which costs two task
//! wake-ups and about 17 000 instructions a request (callgrind, issue 6 note; the worker
//! went from 42 000 to 34 100 instructions a request with this path). Here the
//! request's own task writes the head, reads the answer with `httparse`, and keeps the
//! connection for the next request as soon as the answer has been read whole. A short
//! answer usually comes in the same read as its head: the connection then goes back at
//! once, and the client gets head and body in one write. Other bodies stream, under the
//! body idle timeout, and give the connection back at their end.
//!
//! Framing follows RFC 9112 §6.3: no body after `HEAD`, 1xx, 204 and 304; chunked when
//! `Transfer-Encoding` ends with `chunked`; `Content-Length` otherwise; else up to the
//! close. An answer carrying both `Transfer-Encoding` and `Content-Length` is refused (as
//! nginx does), as are conflicting lengths: either could be a response-splitting attempt.
//! Requests with a body, and upgrades, keep going through hyper (see [`super::pool`]).
//!
//! A request that finds its kept connection closed before any byte of the answer came
//! (the site's idle timeout racing the request) may go again on a new connection: these
//! methods are idempotent (RFC 9110 §9.2.2). hyper only retries a request it had not
//! sent yet; the client got a 502 page in this race.
//!
//! Site answers are untrusted input: `fuzz/fuzz_targets/h1_answer.rs` fuzzes the parsing
//! and the body decoding (the latter without I/O, in `Framing::decode`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest answer head accepted (status line and header fields).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields an answer head may carry.
const MAX_HEADERS: usize = 128;
/// The longest chunk-size line (with its extensions) and the most trailer bytes.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 64 * 1024;
/// What one read asks for while a body streams.
const READ_CHUNK: usize = 64 * 1024;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("the site closed the connection before answering")]
    Closed,
    #[error("the site closed the connection before the end of its answer")]
    Cut,
    #[error("reading from or writing to the site failed")]
    Io(#[source] std::io::Error),
    #[error("the site's answer is not valid HTTP/1.1: {0}")]
    Malformed(&'static str),
    #[error("the site's answer head is longer than {} KiB", MAX_HEAD / 1024)]
    HeadTooLarge,
    /// `101 Switching Protocols` to a request that asked for no switch (this path never
    /// carries one): the connection is not handed over to whatever the site speaks.
    #[error("the site switched protocols (101) without being asked")]
    Switched,
}

/// Whether a request can take this path: a method without a body whose exchange can be
/// tried again on a new connection when a kept one turns out closed (RFC 9110 §9.2.2),
/// no body, no upgrade.
pub fn eligible(method: &Method, headers: &HeaderMap, body_empty: bool) -> bool {
    (method == Method::GET || method == Method::HEAD || method == Method::OPTIONS)
        && body_empty
        && !headers.contains_key(header::UPGRADE)
}

/// A connection to a site, between exchanges: nothing unread, nothing unwritten.
pub struct Conn {
    io: TcpStream,
    /// Read buffer; empty between exchanges.
    buf: BytesMut,
    /// Request heads are written here (kept for the next one).
    wbuf: Vec<u8>,
    pub peer: SocketAddr,
    /// Whether an exchange already went through it (a failure before the answer can
    /// then be the site having closed it meanwhile: the request may go on another).
    pub reused: bool,
}

/// An exchange that failed; `retry`: nothing of the answer came on a kept connection,
/// so the request may go again on another one.
#[derive(Debug)]
pub struct Failure {
    pub error: H1Error,
    pub retry: bool,
}

/// A parsed answer: the response (its body) and the connection, when it can be kept and
/// the answer was read whole.
pub struct Exchanged {
    pub response: Response<RawBody>,
    pub conn: Option<Conn>,
}

/// Hands a connection whose answer was read whole (while streaming) back to its pool.
pub type GiveBack = Box<dyn FnOnce(Conn) + Send + Sync>;

impl Conn {
    pub fn new(io: TcpStream, peer: SocketAddr) -> Conn {
        Conn {
            io,
            buf: BytesMut::new(),
            wbuf: Vec::new(),
            peer,
            reused: false,
        }
    }

    /// The stream, for hyper (requests with a body).
    pub fn into_io(self) -> TcpStream {
        self.io
    }

    /// Whether the site closed the connection (or sent something unasked) while it was
    /// idle. No system call unless the reactor saw it readable.
    pub fn is_closed(&self) -> bool {
        let mut b = [0u8; 1];
        !matches!(self.io.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Sends a request without a body (its URI origin-form) and reads the answer's head.
    /// `give_back` is used if a streamed body ends with the connection reusable.
    pub async fn exchange(
        mut self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        give_back: impl FnOnce() -> GiveBack,
    ) -> Result<Exchanged, Failure> {
        let reused = self.reused;
        self.reused = true;
        encode_head(&mut self.wbuf, method, path, headers);
        if let Err(e) = self.io.write_all(&self.wbuf).await {
            return Err(Failure {
                error: H1Error::Io(e),
                retry: reused,
            });
        }
        let head_request = method == Method::HEAD;
        let mut got_any = false;
        let mut reader = HeadReader::default();
        let head = loop {
            if !self.buf.is_empty() {
                got_any = true;
                match reader.next(&mut self.buf, head_request) {
                    Ok(Some(h)) if h.status.is_informational() => {
                        if h.status == StatusCode::SWITCHING_PROTOCOLS {
                            return Err(fail(H1Error::Switched));
                        }
                        // 100, 103…: interim, the final answer follows.
                        continue;
                    }
                    Ok(Some(h)) => break h,
                    Ok(None) => {}
                    Err(e) => return Err(fail(e)),
                }
            }
            self.buf.reserve(8192);
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) if got_any => return Err(fail(H1Error::Cut)),
                Ok(0) => {
                    return Err(Failure {
                        error: H1Error::Closed,
                        retry: reused,
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Failure {
                        error: H1Error::Io(e),
                        retry: reused && !got_any,
                    });
                }
            }
        };
        let Head {
            status,
            version,
            headers,
            framing,
            keep,
        } = head;
        let mut res = Response::new(RawBody::empty());
        *res.status_mut() = status;
        *res.version_mut() = version;
        *res.headers_mut() = headers;
        // No body, or all of it came with the head (a short answer, usually): the
        // connection can go back now.
        let whole = match framing {
            Framing::Done => Some(None),
            Framing::Length(n) if n as usize <= self.buf.len() => {
                Some((n > 0).then(|| self.buf.split_to(n as usize).freeze()))
            }
            _ => None,
        };
        if let Some(body) = whole {
            *res.body_mut() = RawBody(State::Full(body));
            let conn = (keep && self.buf.is_empty()).then_some(self);
            return Ok(Exchanged {
                response: res,
                conn,
            });
        }
        let back = keep.then(give_back);
        *res.body_mut() = RawBody(State::Stream(Box::new(Stream {
            conn: Some(self),
            framing,
            back,
            yielded: false,
            failed: None,
        })));
        Ok(Exchanged {
            response: res,
            conn: None,
        })
    }
}

fn fail(error: H1Error) -> Failure {
    Failure {
        error,
        retry: false,
    }
}

/// `METHOD path HTTP/1.1`, the fields, the empty line. Names and values were checked
/// when they were parsed (no CR or LF can be in them): nothing can be injected.
fn encode_head(w: &mut Vec<u8>, method: &Method, path: &str, headers: &HeaderMap) {
    w.clear();
    w.extend_from_slice(method.as_str().as_bytes());
    w.push(b' ');
    w.extend_from_slice(if path.is_empty() { "/" } else { path }.as_bytes());
    w.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        w.extend_from_slice(name.as_str().as_bytes());
        w.extend_from_slice(b": ");
        w.extend_from_slice(value.as_bytes());
        w.extend_from_slice(b"\r\n");
    }
    w.extend_from_slice(b"\r\n");
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    /// Nothing left to read.
    Done,
    Length(u64),
    Chunked(Chunk),
    /// Up to the site's close.
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer fields, read and dropped byte by byte up to the empty line: the bytes
    /// seen so far, whether the current line is empty so far, and whether its last
    /// byte was a CR.
    Trailers {
        seen: usize,
        empty: bool,
        cr: bool,
    },
}

#[derive(Debug)]
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    /// The connection can take another request after this answer.
    keep: bool,
}

/// Reads answer heads as their bytes come in. The first bytes are parsed at once, so a
/// garbled answer fails at once; after that, only once an empty line has come. A head
/// that trickles in is thus parsed twice, not again from its start at every read
/// (quadratic: a 64 KiB head sent a byte at a time cost 64 Ki parses of up to 64 KiB).
#[derive(Default)]
struct HeadReader {
    /// How much of the buffer is known to hold no empty line; 0: parse what comes.
    scanned: usize,
    #[cfg(test)]
    parses: usize,
}

impl HeadReader {
    /// The next head at the start of `buf`, taken out of it; `None` while incomplete.
    /// A head longer than [`MAX_HEAD`] is refused however its bytes arrived.
    fn next(&mut self, buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, H1Error> {
        if self.scanned == 0 || head_may_end(buf, self.scanned) {
            #[cfg(test)]
            {
                self.parses += 1;
            }
            if let Some(head) = parse_head(buf, head_request)? {
                self.scanned = 0;
                return Ok(Some(head));
            }
        }
        self.scanned = buf.len();
        if buf.len() >= MAX_HEAD {
            return Err(H1Error::HeadTooLarge);
        }
        Ok(None)
    }
}

/// Whether `buf`, of which the first `scanned` bytes hold no empty line, now holds one
/// (LF LF or LF CR LF: the ends of a head httparse accepts). Only the bytes after
/// `scanned`, and the two before them that may begin one, are looked at.
fn head_may_end(buf: &[u8], scanned: usize) -> bool {
    let from = scanned.saturating_sub(2);
    buf[from..].iter().enumerate().any(|(i, &b)| {
        b == b'\n' && matches!(&buf[from + i + 1..], [b'\n', ..] | [b'\r', b'\n', ..])
    })
}

/// Parses an answer head at the start of `buf` and takes it out; `None` while incomplete.
fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, H1Error> {
    // Uninitialised slots: setting 128 of them up front cost more than the parse.
    let mut slots = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let parser = httparse::ParserConfig::default();
    let len = match parser.parse_response_with_uninit_headers(&mut parsed, buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => return Err(H1Error::HeadTooLarge),
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(H1Error::Malformed("too many header fields"));
        }
        Err(_) => return Err(H1Error::Malformed("a bad status line or header field")),
    };
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::Malformed("a bad status code"))?;
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Where each value lies in the head, to share the head's bytes instead of copying.
    let base = buf.as_ptr() as usize;
    let mut fields: SmallVec<[(HeaderName, usize, usize); 24]> = SmallVec::new();
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| H1Error::Malformed("a bad header name"))?;
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start, start + h.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, start, end) in fields {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| H1Error::Malformed("a bad header value"))?;
        headers.append(name, value);
    }
    let framing = framing(&headers, status, head_request)?;
    let tokens = connection_tokens(&headers);
    let keep = framing != Framing::Eof
        && match version {
            Version::HTTP_11 => !tokens.close,
            _ => tokens.keep_alive,
        };
    Ok(Some(Head {
        status,
        version,
        headers,
        framing,
        keep,
    }))
}

struct Tokens {
    close: bool,
    keep_alive: bool,
}

fn connection_tokens(h: &HeaderMap) -> Tokens {
    let mut t = Tokens {
        close: false,
        keep_alive: false,
    };
    for v in h.get_all(header::CONNECTION) {
        for tok in v.as_bytes().split(|&b| b == b',') {
            let tok = tok.trim_ascii();
            t.close |= tok.eq_ignore_ascii_case(b"close");
            t.keep_alive |= tok.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    t
}

/// RFC 9112 §6.3.
fn framing(h: &HeaderMap, status: StatusCode, head_request: bool) -> Result<Framing, H1Error> {
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Done);
    }
    if h.contains_key(header::TRANSFER_ENCODING) {
        if h.contains_key(header::CONTENT_LENGTH) {
            return Err(H1Error::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        let last = h
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .rfind(|t| !t.is_empty());
        return Ok(match last {
            Some(t) if t.eq_ignore_ascii_case(b"chunked") => Framing::Chunked(Chunk::Size),
            _ => Framing::Eof,
        });
    }
    let mut length = None;
    for v in h.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let n = parse_decimal(part.trim_ascii())
                .ok_or(H1Error::Malformed("a bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::Malformed("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::Eof, Framing::Length))
}

/// Digits only (no sign, no space), at most 19 of them (fits in a u64).
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// A chunk-size line without its CRLF: hex digits, then optional extensions.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return None;
    }
    let mut n = 0u64;
    for &b in &line[..digits] {
        n = (n << 4) | u64::from((b as char).to_digit(16)?);
    }
    Some(n)
}

/// The length of the first line in `buf` (the index of its CR), when it ends with CRLF
/// and is at most `max` bytes long; `None` while it may still end in time. Only the
/// first `max + 2` bytes are looked at, so the answer does not depend on how the bytes
/// arrived.
fn line_end(buf: &[u8], max: usize, too_long: &'static str) -> Option<Result<usize, H1Error>> {
    let window = &buf[..buf.len().min(max + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) if lf > 0 && window[lf - 1] == b'\r' => Some(Ok(lf - 1)),
        Some(_) => Some(Err(H1Error::Malformed("a bare LF in the chunked body"))),
        None if window.len() == max + 2 => Some(Err(H1Error::Malformed(too_long))),
        None => None,
    }
}

/// The body of an answer read by [`Conn::exchange`].
pub struct RawBody(State);

enum State {
    Full(Option<Bytes>),
    Stream(Box<Stream>),
}

struct Stream {
    /// `None` once the body has ended (the connection went back or was closed).
    conn: Option<Conn>,
    framing: Framing,
    back: Option<GiveBack>,
    /// Data went out since the last `Pending`: hyper may still hold it in its buffer.
    yielded: bool,
    /// A failure held back until hyper has written out what came before it.
    failed: Option<H1Error>,
}

impl RawBody {
    fn empty() -> RawBody {
        RawBody(State::Full(None))
    }
}

impl Stream {
    /// The body ended: the connection goes back when it can be kept.
    fn done(&mut self) {
        self.framing = Framing::Done;
        if let (Some(conn), Some(back)) = (self.conn.take(), self.back.take())
            && conn.buf.is_empty()
        {
            back(conn);
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, H1Error>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match self.framing.decode(&mut conn.buf) {
                Ok(Step::Data(data)) => {
                    if self.framing == Framing::Done {
                        // Now: hyper stops asking once a length is reached.
                        self.done();
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Ok(Step::End) => {
                    self.done();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            let buf = &mut conn.buf;
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(READ_CHUNK);
            }
            let mut read = std::pin::pin!(conn.io.read_buf(buf));
            match ready!(read.as_mut().poll(cx)) {
                Ok(0) if self.framing == Framing::Eof => {
                    // The close ends this body; the connection cannot be kept.
                    self.back = None;
                    self.done();
                    return Poll::Ready(None);
                }
                Ok(0) => return Poll::Ready(Some(Err(H1Error::Cut))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(H1Error::Io(e)))),
            }
        }
    }
}

/// What a body's framing can do with the bytes read so far.
#[derive(Debug, PartialEq)]
enum Step {
    Data(Bytes),
    /// The body is complete (its framing is now `Done`).
    End,
    /// More bytes are needed (or, for `Eof` framing, the close).
    More,
}

impl Framing {
    /// Takes from `buf` the next piece of body, the body's end, or nothing when more
    /// bytes are needed. Without I/O, so that it can be fuzzed with any split of the
    /// bytes. Data that completes a `Content-Length` leaves the framing `Done`.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, H1Error> {
        loop {
            match *self {
                Framing::Done | Framing::Length(0) => {
                    *self = Framing::Done;
                    return Ok(Step::End);
                }
                Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) if !buf.is_empty() => {
                    let n = (buf.len() as u64).min(left);
                    let data = buf.split_to(n as usize).freeze();
                    let left = left - n;
                    *self = match *self {
                        Framing::Length(_) if left == 0 => Framing::Done,
                        Framing::Length(_) => Framing::Length(left),
                        _ if left == 0 => Framing::Chunked(Chunk::DataEnd),
                        _ => Framing::Chunked(Chunk::Data(left)),
                    };
                    return Ok(Step::Data(data));
                }
                Framing::Eof if !buf.is_empty() => return Ok(Step::Data(buf.split().freeze())),
                Framing::Chunked(Chunk::Size) => {
                    match line_end(buf, MAX_CHUNK_LINE, "a chunk-size line too long") {
                        Some(end) => {
                            let end = end?;
                            let size = parse_chunk_size(&buf[..end])
                                .ok_or(H1Error::Malformed("a bad chunk size"))?;
                            buf.advance(end + 2);
                            *self = Framing::Chunked(if size == 0 {
                                Chunk::Trailers {
                                    seen: 0,
                                    empty: true,
                                    cr: false,
                                }
                            } else {
                                Chunk::Data(size)
                            });
                        }
                        None => return Ok(Step::More),
                    }
                }
                Framing::Chunked(Chunk::DataEnd) if buf.len() >= 2 => {
                    if &buf[..2] != b"\r\n" {
                        return Err(H1Error::Malformed("chunk data longer than its size"));
                    }
                    buf.advance(2);
                    *self = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Trailers {
                    mut seen,
                    mut empty,
                    mut cr,
                }) => {
                    // Consumed as they come: a site trickling a long trailer costs one
                    // look at each byte, not a new scan of the line at each read.
                    let mut used = 0;
                    for &b in buf.iter() {
                        used += 1;
                        match b {
                            b'\n' if !cr => {
                                return Err(H1Error::Malformed("a bare LF in the chunked body"));
                            }
                            b'\n' if empty => {
                                buf.advance(used);
                                *self = Framing::Done;
                                return Ok(Step::End);
                            }
                            b'\n' => (empty, cr) = (true, false),
                            _ if cr => return Err(H1Error::Malformed("a bare CR in a trailer")),
                            b'\r' => cr = true,
                            _ => {
                                empty = false;
                                seen += 1;
                                if seen > MAX_TRAILERS {
                                    return Err(H1Error::Malformed("trailers too long"));
                                }
                            }
                        }
                    }
                    buf.advance(used);
                    *self = Framing::Chunked(Chunk::Trailers { seen, empty, cr });
                    return Ok(Step::More);
                }
                _ => return Ok(Step::More),
            }
        }
    }
}

impl HttpBody for RawBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let s = match &mut self.0 {
            State::Full(b) => return Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            State::Stream(s) => s,
        };
        if let Some(e) = s.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match s.poll_next(cx) {
            Poll::Pending => {
                s.yielded = false;
                Poll::Pending
            }
            Poll::Ready(Some(Ok(data))) => {
                s.yielded = true;
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => {
                // A failed body leaves the connection in an unknown state.
                s.conn = None;
                s.framing = Framing::Done;
                if std::mem::take(&mut s.yielded) {
                    // hyper drops what it has not written yet when a body fails: let it
                    // write out the bytes that came first, so that the client sees them
                    // before its connection is cut.
                    s.failed = Some(e);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            State::Full(b) => b.is_none(),
            State::Stream(s) => s.framing == Framing::Done && s.failed.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            State::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            State::Stream(s) => match s.framing {
                Framing::Length(n) => SizeHint::with_exact(n),
                Framing::Done if s.failed.is_none() => SizeHint::with_exact(0),
                _ => SizeHint::default(),
            },
        }
    }
}

/// The parsing and framing above without a connection, for the fuzz target
/// (`fuzz/fuzz_targets/h1_answer.rs`).
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// How an answer's bytes ended up.
    #[derive(Debug, PartialEq)]
    pub enum Outcome {
        /// The head was refused.
        BadHead(String),
        /// The head is not complete.
        PartialHead,
        /// The head parsed; the body's data, and how the body ended: `Ok(true)` complete,
        /// `Ok(false)` more bytes needed (or the close, when `framing` is `Eof`).
        Answer {
            status: u16,
            headers: HeaderMap,
            framing: String,
            keep: bool,
            body: Vec<u8>,
            end: Result<bool, String>,
        },
    }

    /// Reads an answer from `input` as the exchange does (interim answers skipped), its
    /// bytes coming `step` at a time: the head through [`HeadReader`], then the body.
    pub fn answer(input: &[u8], head_request: bool, step: usize) -> Outcome {
        let step = step.max(1);
        let mut pending = BytesMut::from(input);
        let mut fed = BytesMut::new();
        let mut reader = HeadReader::default();
        let head = 'read: loop {
            let n = step.min(pending.len());
            fed.extend_from_slice(&pending.split_to(n));
            // What came may hold more than one head (interim answers first).
            while !fed.is_empty() {
                match reader.next(&mut fed, head_request) {
                    Ok(Some(h)) if h.status.is_informational() => {}
                    Ok(Some(h)) => break 'read h,
                    Ok(None) => break,
                    Err(e) => return Outcome::BadHead(e.to_string()),
                }
            }
            if pending.is_empty() {
                return Outcome::PartialHead;
            }
        };
        let mut framing = head.framing;
        let mut body = Vec::new();
        let end = loop {
            match framing.decode(&mut fed) {
                Ok(Step::Data(d)) => body.extend_from_slice(&d),
                Ok(Step::End) => break Ok(true),
                Ok(Step::More) if pending.is_empty() => break Ok(false),
                Ok(Step::More) => {
                    let n = step.clamp(1, pending.len());
                    fed.extend_from_slice(&pending.split_to(n));
                }
                Err(e) => break Err(e.to_string()),
            }
        };
        Outcome::Answer {
            status: head.status.as_u16(),
            headers: head.headers,
            framing: format!("{:?}", head.framing),
            keep: head.keep,
            body,
            end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A site on loopback that reads one request head, answers `answer` and, with
    /// `close`, closes; the task returns the head it read.
    async fn site(answer: Vec<u8>, close: bool) -> (Conn, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if s.read(&mut b).await.unwrap() == 0 {
                    return head;
                }
                head.push(b[0]);
            }
            s.write_all(&answer).await.unwrap();
            if close {
                drop(s);
            } else {
                // Hold the connection until the client closes it.
                let _ = s.read(&mut b).await;
            }
            head
        });
        let io = TcpStream::connect(addr).await.unwrap();
        (Conn::new(io, addr), task)
    }

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example.org"));
        h
    }

    /// Exchanges a GET (or `method`) and collects the body; `back` receives a connection
    /// given back by a streamed body.
    async fn get(
        conn: Conn,
        method: Method,
    ) -> (
        Result<(StatusCode, HeaderMap, Vec<u8>, bool), H1Error>,
        Arc<Mutex<Option<Conn>>>,
    ) {
        let back = Arc::new(Mutex::new(None));
        let b2 = back.clone();
        let give = move || -> GiveBack { Box::new(move |c| *b2.lock().unwrap() = Some(c)) };
        let r = match conn.exchange(&method, "/p?q=1", &headers(), give).await {
            Ok(x) => {
                let kept = x.conn.is_some();
                if let Some(c) = x.conn {
                    *back.lock().unwrap() = Some(c);
                }
                let (parts, body) = x.response.into_parts();
                match body.collect().await {
                    Ok(b) => Ok((parts.status, parts.headers, b.to_bytes().to_vec(), kept)),
                    Err(e) => Err(e),
                }
            }
            Err(f) => Err(f.error),
        };
        (r, back)
    }

    #[tokio::test]
    async fn the_request_head_is_written_in_origin_form() {
        let (conn, task) = site(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(), true).await;
        let (r, back) = get(conn, Method::GET).await;
        assert_eq!(r.unwrap().0, StatusCode::NO_CONTENT);
        assert!(
            back.lock().unwrap().is_some(),
            "204 leaves the connection reusable"
        );
        assert_eq!(
            task.await.unwrap(),
            b"GET /p?q=1 HTTP/1.1\r\nhost: example.org\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_short_answer_is_read_with_its_head_and_the_connection_kept() {
        let (conn, _t) = site(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello".to_vec(),
            false,
        )
        .await;
        let (r, back) = get(conn, Method::GET).await;
        let (status, h, body, kept) = r.unwrap();
        assert_eq!(
            (status, &body[..], kept),
            (StatusCode::OK, &b"hello"[..], true)
        );
        assert_eq!(h.get_all("x-a").iter().count(), 2);
        let conn = back.lock().unwrap().take().unwrap();
        assert!(conn.reused && conn.buf.is_empty() && !conn.is_closed());
    }

    #[tokio::test]
    async fn chunked_answers_with_extensions_and_trailers_are_decoded() {
        let (conn, _t) = site(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;a=b\r\nhello\r\n7\r\n, world\r\n0\r\nX-T: 1\r\n\r\n"
                .to_vec(),
            false,
        )
        .await;
        let (r, back) = get(conn, Method::GET).await;
        let (_, _, body, kept) = r.unwrap();
        assert_eq!(&body[..], b"hello, world");
        assert!(!kept, "streamed: given back by the body, not with the head");
        assert!(back.lock().unwrap().is_some(), "given back at the end");
    }

    #[tokio::test]
    async fn a_long_answer_streams_and_gives_the_connection_back_at_its_end() {
        let len = 200_017;
        let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").into_bytes();
        answer.extend(std::iter::repeat_n(b'x', len));
        let (conn, _t) = site(answer, false).await;
        let (r, back) = get(conn, Method::GET).await;
        let (_, _, body, kept) = r.unwrap();
        assert_eq!(body.len(), len);
        assert!(!kept);
        assert!(back.lock().unwrap().is_some());
    }

    #[tokio::test]
    async fn answers_that_end_with_the_close_are_read_whole_and_not_kept() {
        for answer in [
            &b"HTTP/1.0 200 OK\r\n\r\nuntil the end"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nuntil the end",
        ] {
            let (conn, _t) = site(answer.to_vec(), true).await;
            let (r, back) = get(conn, Method::GET).await;
            assert_eq!(&r.unwrap().2[..], b"until the end");
            assert!(back.lock().unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn keep_alive_follows_the_version_and_connection() {
        for (answer, keep) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"[..],
                false,
            ),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n",
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: x, keep-alive\r\n\r\n",
                true,
            ),
        ] {
            let (conn, _t) = site(answer.to_vec(), false).await;
            let (r, _) = get(conn, Method::GET).await;
            assert_eq!(r.unwrap().3, keep, "{}", String::from_utf8_lossy(answer));
        }
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_head_has_no_body() {
        let (conn, _t) = site(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
            false,
        )
        .await;
        let (r, _) = get(conn, Method::GET).await;
        let (status, h, body, _) = r.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
        assert!(!h.contains_key("link"));
        // HEAD: the length announced, no body read, the connection kept.
        let (conn, _t) = site(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec(),
            false,
        )
        .await;
        let (r, back) = get(conn, Method::HEAD).await;
        let (_, h, body, kept) = r.unwrap();
        assert!(body.is_empty() && kept && h["content-length"] == "1000");
        assert!(back.lock().unwrap().is_some());
    }

    /// Each answer fails the exchange or its body with `Malformed`, and the connection
    /// is not kept.
    async fn assert_malformed(answers: &[&[u8]]) {
        for answer in answers {
            let (conn, _t) = site(answer.to_vec(), true).await;
            let (r, back) = get(conn, Method::GET).await;
            assert!(
                matches!(r, Err(H1Error::Malformed(_))),
                "{}: {:?}",
                String::from_utf8_lossy(answer),
                r.map(|x| x.0)
            );
            assert!(back.lock().unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn ambiguous_or_broken_answers_are_refused() {
        assert_malformed(&[
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd",
            b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
            b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        ])
        .await;
        // A switch nobody asked for is an error of its own (the proxy's page names it).
        let (conn, _t) = site(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n".to_vec(),
            true,
        )
        .await;
        let (r, back) = get(conn, Method::GET).await;
        assert!(matches!(r, Err(H1Error::Switched)), "{:?}", r.map(|x| x.0));
        assert!(back.lock().unwrap().is_none());
        let mut huge = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        let (conn, _t) = site(huge, false).await;
        let (r, _) = get(conn, Method::GET).await;
        assert!(
            matches!(r, Err(H1Error::HeadTooLarge)),
            "{:?}",
            r.map(|x| x.0)
        );
    }

    #[tokio::test]
    async fn bad_chunking_and_cut_bodies_fail_the_body() {
        assert_malformed(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nx\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nx\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\rY\r\n\r\n",
        ])
        .await;
        for answer in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01",
            b"HTTP/1.1 200 OK\r\nContent-Le",
        ] {
            let (conn, _t) = site(answer.to_vec(), true).await;
            let (r, _) = get(conn, Method::GET).await;
            assert!(matches!(r, Err(H1Error::Cut)), "{:?}", r.map(|x| x.0));
        }
    }

    #[tokio::test]
    async fn only_a_kept_connection_closed_before_the_answer_may_be_retried() {
        for reused in [false, true] {
            let (mut conn, _t) = site(Vec::new(), true).await;
            conn.reused = reused;
            let f = conn
                .exchange(&Method::GET, "/", &headers(), || -> GiveBack {
                    Box::new(|_| {})
                })
                .await
                .err()
                .unwrap();
            assert!(matches!(f.error, H1Error::Closed | H1Error::Io(_)));
            assert_eq!(f.retry, reused);
        }
    }

    /// Feeds `bytes` to a [`HeadReader`] `step` at a time, as reads would bring them.
    fn read_head(bytes: &[u8], step: usize) -> (Result<Option<Head>, H1Error>, usize, BytesMut) {
        let mut reader = HeadReader::default();
        let mut buf = BytesMut::new();
        for piece in bytes.chunks(step) {
            buf.extend_from_slice(piece);
            match reader.next(&mut buf, false) {
                Ok(None) => {}
                done => return (done, reader.parses, buf),
            }
        }
        (Ok(None), reader.parses, buf)
    }

    #[test]
    fn a_head_that_trickles_in_is_parsed_when_it_can_be_complete_not_at_every_read() {
        let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
        for i in 0..100 {
            head.extend(format!("X-Field-{i}: {}\r\n", "v".repeat(300)).bytes());
        }
        head.extend(b"\r\nok");
        for step in [1, 2, 3, 7, 4096] {
            let (r, parses, rest) = read_head(&head, step);
            let h = r.expect("valid").expect("complete");
            assert_eq!(
                (h.status, h.headers.len()),
                (StatusCode::OK, 101),
                "step {step}"
            );
            // The first bytes, then the bytes holding the empty line: not one parse per
            // read (about 31 000 of them a byte at a time before).
            assert!(parses <= 2, "step {step}: {parses} parses");
            assert!(b"ok".starts_with(&rest), "step {step}: {rest:?} left");
        }
        // The empty line split across reads in every way, and LF-only ends of lines.
        for head in [
            &b"HTTP/1.1 204 No Content\r\nA: b\r\n\r\n"[..],
            b"HTTP/1.1 204 No Content\nA: b\n\n",
        ] {
            for step in 1..head.len() {
                let (r, parses, _) = read_head(head, step);
                assert!(
                    matches!(r, Ok(Some(_))),
                    "step {step}: {:?}",
                    r.map(|h| h.map(|h| h.status))
                );
                assert!(parses <= 2, "step {step}: {parses} parses");
            }
        }
    }

    #[test]
    fn a_garbled_head_fails_at_its_first_bytes_and_a_long_one_however_it_comes() {
        let (r, parses, _) = read_head(b"SSH-2.0-OpenSSH_9.2\r\n", 4);
        assert!(
            matches!(r, Err(H1Error::Malformed(_))),
            "{:?}",
            r.map(|h| h.is_some())
        );
        assert_eq!(parses, 1);
        // Longer than MAX_HEAD: refused when it comes whole as when it trickles in.
        let mut long = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        long.extend(b"\r\n\r\n");
        for step in [1, 1000, long.len()] {
            let (r, _, _) = read_head(&long, step);
            assert!(
                matches!(r, Err(H1Error::HeadTooLarge)),
                "step {step}: {:?}",
                r.map(|h| h.is_some())
            );
        }
    }

    #[test]
    fn chunk_sizes() {
        for (line, want) in [
            (&b"0"[..], Some(0)),
            (b"1a", Some(26)),
            (b"FF ; name=value", Some(255)),
            (b"ffffffffffffffff", Some(u64::MAX)),
            (b"10000000000000000", None),
            (b"", None),
            (b"-1", None),
            (b"0x1", None),
            (b"1 2", None),
        ] {
            assert_eq!(
                parse_chunk_size(line),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn eligible_requests() {
        let h = headers();
        assert!(eligible(&Method::GET, &h, true));
        assert!(eligible(&Method::HEAD, &h, true));
        assert!(!eligible(&Method::GET, &h, false), "a body");
        assert!(!eligible(&Method::POST, &h, true), "not safe to send again");
        let mut up = headers();
        up.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!eligible(&Method::GET, &up, true));
    }
}
