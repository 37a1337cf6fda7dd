//! The TLS ClientHello of a CONNECT tunnel, read without being consumed, and its SNI.
//!
//! Once a CONNECT has been answered 200, the first bytes of the tunnel decide what
//! happens next: the name the client asks of the server (SNI) is checked against the
//! CONNECT host, then the stream is either relayed untouched (tunnel) or handed to a
//! TLS acceptor (bump). Both need the very bytes the client sent, so this module:
//!
//! - [`parse`]s a ClientHello from a buffer — pure, synchronous, allocation only for the
//!   result, total on any input (it is fuzzed in the tests below) — for its SNI only;
//! - [`peek`]s it from a stream, reading until a whole hello is buffered, within a
//!   deadline and never more than [`MAX_HELLO`] bytes, and gives the bytes back;
//! - [`Rewind`]s: an IO that replays those bytes before reading on, for the acceptor or
//!   the upstream.
//!
//! The parser is strict where leniency would let a client show the proxy one name and
//! the server another: a second `server_name` extension, a second host name, a name type
//! other than `host_name` (OpenSSL refuses those too), bytes after the hello in its last
//! record, or another record type between its fragments are all [`HelloError::Malformed`].
//! It is lenient where nothing is at stake: the record-layer version minor byte is
//! ignored, and the other extensions are framed but not read.
//!
//! The SNI is only lower-cased and checked for printable ASCII here; the caller turns it
//! into a [`crate::classify::Host`] (one trailing dot, IP literals, label rules) like any
//! other host before comparing it with the CONNECT host.
//!
//! Why not `rustls::server::Acceptor` over the peeked bytes (tried, and measured against this module): it
//! cannot say how many bytes are still missing (what bounds [`peek`]'s reads) nor tell a
//! client that does not speak TLS from its first byte, so the record layer here stays;
//! and it is a server's policy rather than a reader: it refuses a hello without
//! `signature_algorithms` (older clients, whose relayed tunnels must reach their site),
//! treats an address given as SNI as no SNI, lets an entry of another name type follow
//! the host name, and has one error for every refusal. Keeping the rules above on top of
//! it would have kept all of this module's code and added its own.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::policy::ReasonCode;

/// TLS record header: content type (1), legacy version (2), length (2).
const RECORD_HEADER: usize = 5;
/// Largest plaintext record fragment allowed by TLS (RFC 8446 §5.1).
const MAX_FRAGMENT: usize = 1 << 14;
/// Handshake message header: type (1), length (3).
const HANDSHAKE_HEADER: usize = 4;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// How many record headers [`MAX_HELLO`] leaves room for.
const MAX_HELLO_RECORDS: usize = 16;

const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST_NAME: u8 = 0;
/// RFC 6066 allows 2^16-1, DNS allows 253 (255 with a trailing dot and length octets):
/// anything longer is not a name a server could be reached by.
const MAX_SNI_LEN: usize = 255;

/// Largest number of bytes the records carrying one ClientHello may take, headers
/// included: 16 KiB of handshake data plus the headers of 16 records. Real hellos are
/// 0.2–2 KiB in one record (post-quantum key shares included); a hello that needs more
/// bytes than this — a huge one, or a small one cut into a great many tiny records — is
/// [`HelloError::TooLarge`], so [`peek`] never buffers more than this per connection.
pub const MAX_HELLO: usize = MAX_FRAGMENT + MAX_HELLO_RECORDS * RECORD_HEADER;

/// What the proxy needs from a ClientHello: the name it checks against the CONNECT host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The `host_name` of the `server_name` extension, lower-cased, printable ASCII,
    /// 1–255 bytes. `None` when the client sent no SNI (rustls and browsers do so for an
    /// IP address).
    pub sni: Option<String>,
}

/// Why a buffer does not hold a ClientHello. [`HelloError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// More bytes are needed (at least this many in total).
    #[error("the ClientHello is incomplete: at least {0} bytes are needed")]
    Incomplete(usize),
    /// Not a TLS handshake record (plain HTTP inside CONNECT, SSH, …): the proxy can
    /// only tunnel or refuse it.
    #[error("the client did not start a TLS handshake")]
    NotTls,
    /// A TLS record that is not a well-formed ClientHello.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    /// The hello would need more than [`MAX_HELLO`] bytes.
    #[error("the ClientHello needs more than {MAX_HELLO} bytes")]
    TooLarge,
}

impl HelloError {
    /// Stable short code, for traces and metrics.
    pub fn code(&self) -> &'static str {
        self.reason().as_str()
    }

    /// The trace's code for this error.
    pub fn reason(&self) -> ReasonCode {
        match self {
            HelloError::Incomplete(_) => ReasonCode::HelloIncomplete,
            HelloError::NotTls => ReasonCode::HelloNotTls,
            HelloError::Malformed(_) => ReasonCode::HelloMalformed,
            HelloError::TooLarge => ReasonCode::HelloTooLarge,
        }
    }
}

/// Why [`peek`] returned without a ClientHello. [`PeekError::code`] is stable.
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    /// The bytes are not a ClientHello; never [`HelloError::Incomplete`].
    #[error(transparent)]
    Hello(#[from] HelloError),
    /// The client closed its side before a whole hello arrived (`got` bytes did).
    #[error(
        "the client closed the connection after {got} bytes, before its ClientHello was complete"
    )]
    Eof { got: usize },
    /// No whole hello within the deadline given to [`peek`] (slow or silent client).
    #[error("no complete ClientHello within {0:?}")]
    TimedOut(Duration),
    /// Reading from the client failed.
    #[error("reading the ClientHello failed: {0}")]
    Io(#[source] io::Error),
}

impl PeekError {
    /// Stable short code, for traces and metrics.
    pub fn code(&self) -> &'static str {
        self.reason().as_str()
    }

    /// The trace's code for this error.
    pub fn reason(&self) -> ReasonCode {
        match self {
            PeekError::Hello(e) => e.reason(),
            PeekError::Eof { .. } => ReasonCode::HelloEof,
            PeekError::TimedOut(_) => ReasonCode::HelloTimeout,
            PeekError::Io(_) => ReasonCode::HelloIo,
        }
    }
}

/// Parses a ClientHello from the start of `buf`: one or several handshake records
/// (a hello may be fragmented across records), taking at most [`MAX_HELLO`] bytes.
/// Bytes after the record that ends the hello (early data) are not looked at.
///
/// Decides as early as the bytes allow: [`HelloError::NotTls`] from the first byte,
/// [`HelloError::TooLarge`] from the handshake header. Pure, allocates only the result,
/// never panics.
pub fn parse(buf: &[u8]) -> Result<ClientHello, HelloError> {
    let (end, len) = locate(buf)?;
    let records = buf.get(..end).ok_or(INTERNAL)?;
    let mut handshake = Reader {
        frag: &[],
        rest: records,
        left: HANDSHAKE_HEADER + len,
    };
    handshake.skip(HANDSHAKE_HEADER, INTERNAL_MSG)?;
    parse_body(handshake)
}

/// Checked by [`locate`] already; reported rather than unwrapped should it ever happen.
const INTERNAL_MSG: &str = "inconsistent record layer";
const INTERNAL: HelloError = HelloError::Malformed(INTERNAL_MSG);

/// Walks the record layer: checks every record header up to the end of the hello and
/// that the records hold the whole handshake message. Returns the offset in `buf` where
/// the hello's last record ends and the hello body's length.
fn locate(buf: &[u8]) -> Result<(usize, usize), HelloError> {
    // Where the current record starts.
    let mut pos = 0;
    // Handshake bytes in the records before `pos`.
    let mut have = 0;
    // The handshake message header, gathered across records if need be.
    let mut header = [0u8; HANDSHAKE_HEADER];
    // Handshake bytes in total (header + body), once the header is known.
    let mut need: Option<usize> = None;
    loop {
        // Handshake bytes still missing before this record.
        let missing = need.unwrap_or(HANDSHAKE_HEADER).saturating_sub(have);
        let tail = buf.get(pos..).unwrap_or_default();
        if let Some(&kind) = tail.first()
            && kind != CONTENT_HANDSHAKE
        {
            return Err(if pos == 0 {
                HelloError::NotTls
            } else {
                HelloError::Malformed("another record type interrupts the ClientHello")
            });
        }
        if let Some(&major) = tail.get(1)
            && major != 3
        {
            return Err(if pos == 0 {
                HelloError::NotTls
            } else {
                HelloError::Malformed("record version is not 3.x")
            });
        }
        let Some(&[_, _, _, hi, lo]) = tail.get(..RECORD_HEADER) else {
            return incomplete(pos + RECORD_HEADER + missing);
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 {
            return Err(HelloError::Malformed("empty handshake record"));
        }
        if len > MAX_FRAGMENT {
            return Err(HelloError::Malformed("record longer than 16 KiB"));
        }
        let end = pos + RECORD_HEADER + len;
        if end > MAX_HELLO {
            return Err(HelloError::TooLarge);
        }
        let fragment = tail.get(RECORD_HEADER..).unwrap_or_default();
        let fragment = fragment.get(..len).unwrap_or(fragment);
        if need.is_none() {
            // Gather what this record holds of the handshake header.
            for (i, &b) in fragment.iter().enumerate() {
                match header.get_mut(have + i) {
                    Some(slot) => *slot = b,
                    None => break,
                }
            }
            if have + fragment.len() >= HANDSHAKE_HEADER {
                let [kind, l0, l1, l2] = header;
                if kind != HANDSHAKE_CLIENT_HELLO {
                    return Err(HelloError::Malformed(
                        "first handshake message is not a ClientHello",
                    ));
                }
                let body = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                need = Some(HANDSHAKE_HEADER + body);
            }
        }
        let missing = need.unwrap_or(HANDSHAKE_HEADER).saturating_sub(have);
        if fragment.len() < len {
            // This record is not all there yet; if the hello goes on past it, another
            // record header and the rest of the hello are needed too.
            let after = missing.saturating_sub(len);
            let more = if after > 0 { RECORD_HEADER + after } else { 0 };
            return incomplete(end + more);
        }
        match need {
            // The hello ends with this record, which must end with it (RFC 8446 §5.1:
            // a ClientHello is aligned with a record boundary).
            Some(total) if len == missing => return Ok((end, total - HANDSHAKE_HEADER)),
            Some(_) if len > missing => {
                return Err(HelloError::Malformed(
                    "data after the ClientHello in its last record",
                ));
            }
            // The hello goes on in the next record (the header may still be unknown,
            // then `len < missing` too).
            _ => {}
        }
        have += len;
        pos = end;
    }
}

/// `Incomplete(n)`, or `TooLarge` when `n` bytes could never be accepted.
fn incomplete(n: usize) -> Result<(usize, usize), HelloError> {
    if n > MAX_HELLO {
        Err(HelloError::TooLarge)
    } else {
        Err(HelloError::Incomplete(n))
    }
}

/// Parses the ClientHello body (RFC 8446 §4.1.2; RFC 5246 §7.4.1.2 for the optional
/// extensions of older clients): its framing is checked, its only field read is the SNI.
fn parse_body(mut r: Reader<'_>) -> Result<ClientHello, HelloError> {
    r.skip(2, "truncated legacy_version")?;
    r.skip(32, "truncated random")?;
    let session_id = r.vec_u8("truncated legacy_session_id")?;
    if session_id.left > 32 {
        return Err(HelloError::Malformed(
            "legacy_session_id longer than 32 bytes",
        ));
    }
    let suites = r.vec_u16("truncated cipher_suites")?;
    if suites.left == 0 || suites.left % 2 != 0 {
        return Err(HelloError::Malformed(
            "cipher_suites empty or of odd length",
        ));
    }
    let compression = r.vec_u8("truncated legacy_compression_methods")?;
    if compression.left == 0 {
        return Err(HelloError::Malformed("no compression method"));
    }
    let mut hello = ClientHello { sni: None };
    if r.is_empty() {
        // A TLS 1.0–1.2 hello may have no extensions at all.
        return Ok(hello);
    }
    let mut extensions = r.vec_u16("truncated extensions")?;
    if !r.is_empty() {
        return Err(HelloError::Malformed("data after the extensions"));
    }
    while !extensions.is_empty() {
        let kind = extensions.u16("truncated extension type")?;
        let data = extensions.vec_u16("truncated extension")?;
        if kind == EXT_SERVER_NAME {
            if hello.sni.is_some() {
                return Err(HelloError::Malformed("server_name extension sent twice"));
            }
            hello.sni = Some(parse_sni(data)?);
        }
    }
    Ok(hello)
}

/// `server_name` (RFC 6066 §3): exactly one entry, of type `host_name`.
fn parse_sni(mut data: Reader<'_>) -> Result<String, HelloError> {
    let mut list = data.vec_u16("truncated server_name list")?;
    if !data.is_empty() {
        return Err(HelloError::Malformed("data after the server_name list"));
    }
    if list.is_empty() {
        return Err(HelloError::Malformed("empty server_name list"));
    }
    let mut name = None;
    while !list.is_empty() {
        let kind = list.u8("truncated server_name entry")?;
        let mut entry = list.vec_u16("truncated server_name entry")?;
        if kind != NAME_TYPE_HOST_NAME {
            return Err(HelloError::Malformed("server_name entry of unknown type"));
        }
        if name.is_some() {
            return Err(HelloError::Malformed("two host names in server_name"));
        }
        if entry.left == 0 {
            return Err(HelloError::Malformed("empty host name in server_name"));
        }
        if entry.left > MAX_SNI_LEN {
            return Err(HelloError::Malformed(
                "host name in server_name longer than 255 bytes",
            ));
        }
        let mut text = String::with_capacity(entry.left);
        while !entry.is_empty() {
            let b = entry.u8(INTERNAL_MSG)?;
            if !b.is_ascii_graphic() {
                // NUL (C string truncation), controls, spaces and non-ASCII bytes have
                // no place in a host name and every reason to fool a filter or a log.
                return Err(HelloError::Malformed(
                    "host name in server_name is not printable ASCII",
                ));
            }
            text.push(char::from(b.to_ascii_lowercase()));
        }
        name = Some(text);
    }
    name.ok_or(HelloError::Malformed("empty server_name list"))
}

/// Reads the handshake layer — the fragments of consecutive records as one stream —
/// within a length-bounded scope, without copying. [`Reader::vec_u8`] and friends split
/// off a sub-scope for a length-prefixed vector and move past it.
///
/// Record headers were checked by [`locate`]; here they are only skipped, and a
/// shortfall is reported as `Malformed` with the message of the read that hit it.
#[derive(Clone, Copy)]
struct Reader<'a> {
    /// Unread part of the current record's fragment.
    frag: &'a [u8],
    /// The records after the current one.
    rest: &'a [u8],
    /// Bytes left in this scope.
    left: usize,
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// Makes `frag` non-empty by moving to the next record.
    fn refill(&mut self, what: &'static str) -> Result<(), HelloError> {
        while self.frag.is_empty() {
            let Some(&[_, _, _, hi, lo]) = self.rest.get(..RECORD_HEADER) else {
                return Err(HelloError::Malformed(what));
            };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            let after = self.rest.get(RECORD_HEADER..).unwrap_or_default();
            let (Some(frag), Some(rest)) = (after.get(..len), after.get(len..)) else {
                return Err(HelloError::Malformed(what));
            };
            self.frag = frag;
            self.rest = rest;
        }
        Ok(())
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        if self.left == 0 {
            return Err(HelloError::Malformed(what));
        }
        self.refill(what)?;
        let (&b, rest) = self.frag.split_first().ok_or(HelloError::Malformed(what))?;
        self.frag = rest;
        self.left -= 1;
        Ok(b)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        Ok(u16::from_be_bytes([self.u8(what)?, self.u8(what)?]))
    }

    fn skip(&mut self, mut n: usize, what: &'static str) -> Result<(), HelloError> {
        if n > self.left {
            return Err(HelloError::Malformed(what));
        }
        self.left -= n;
        while n > 0 {
            self.refill(what)?;
            let k = n.min(self.frag.len());
            self.frag = self.frag.get(k..).unwrap_or_default();
            n -= k;
        }
        Ok(())
    }

    /// Splits off the next `n` bytes as their own scope and moves past them.
    fn take(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, HelloError> {
        let sub = Reader { left: n, ..*self };
        self.skip(n, what)?;
        Ok(sub)
    }

    fn vec_u8(&mut self, what: &'static str) -> Result<Reader<'a>, HelloError> {
        let n = self.u8(what)?;
        self.take(usize::from(n), what)
    }

    fn vec_u16(&mut self, what: &'static str) -> Result<Reader<'a>, HelloError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }
}

/// First read's buffer size: most hellos fit, the largest take a few reads.
const FIRST_READ: usize = 4096;

/// Reads from `io` until a whole ClientHello is buffered, the bytes cannot be one, the
/// client closes, or `timeout` (for the whole hello, not per read) passes. Returns the
/// outcome and every byte read, so that nothing is lost whatever is done next: give
/// them to [`Rewind::new`].
///
/// At most [`MAX_HELLO`] bytes are read; the bytes may go past the hello (early data).
/// A client that does not speak TLS is known from its first byte: `NotTls` comes as
/// soon as that byte does, not at the deadline.
pub async fn peek<IO: AsyncRead + Unpin>(
    io: &mut IO,
    timeout: Duration,
) -> (Result<ClientHello, PeekError>, Bytes) {
    // `None`: a timeout so long that the deadline cannot be represented.
    let deadline = Instant::now().checked_add(timeout);
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    // Parsing again is pointless until the buffer holds at least this many bytes.
    let mut want = 1;
    let result = loop {
        let room = MAX_HELLO.saturating_sub(buf.len());
        if room == 0 {
            // `parse` says TooLarge before this; kept so the loop cannot spin.
            break Err(HelloError::TooLarge.into());
        }
        buf.reserve(room.min(FIRST_READ));
        let mut limited = (&mut buf).limit(room);
        let read = io.read_buf(&mut limited);
        let read = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                Ok(read) => read,
                Err(_) => break Err(PeekError::TimedOut(timeout)),
            },
            None => read.await,
        };
        match read {
            Ok(0) => break Err(PeekError::Eof { got: buf.len() }),
            Ok(_) => {}
            Err(e) => break Err(PeekError::Io(e)),
        }
        if buf.len() < want {
            continue;
        }
        match parse(&buf) {
            Ok(hello) => break Ok(hello),
            Err(HelloError::Incomplete(n)) => want = n,
            Err(e) => break Err(e.into()),
        }
    };
    (result, buf.freeze())
}

/// An IO that first yields `prefix`, then reads from `inner`; writes go to `inner`.
/// Replays the bytes [`peek`] read to the TLS acceptor (bump) or the upstream (tunnel).
#[derive(Debug)]
pub struct Rewind<IO> {
    /// Peeked bytes not read back yet; emptied (and its buffer freed) once replayed.
    prefix: Bytes,
    inner: IO,
}

impl<IO> Rewind<IO> {
    pub fn new(prefix: Bytes, inner: IO) -> Self {
        Rewind { prefix, inner }
    }

    /// The part of the prefix not read yet, and the inner IO.
    pub fn into_inner(self) -> (Bytes, IO) {
        (self.prefix, self.inner)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(this.prefix.get(..n).unwrap_or_default());
            this.prefix.advance(n);
            if this.prefix.is_empty() {
                // Do not keep the peek buffer alive for the life of the tunnel.
                this.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::{PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConfig, RootCertStore, ServerConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    const LONG: Duration = Duration::from_secs(30);
    /// Extensions the hellos of these tests carry, which the parser does not read.
    const EXT_ALPN: u16 = 16;
    const EXT_SUPPORTED_VERSIONS: u16 = 43;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    fn client_config(roots: RootCertStore, alpn: &[&[u8]]) -> ClientConfig {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// What rustls writes first when connecting to `name`: its ClientHello record,
    /// read with `read_exact` from the record header, independently of this module.
    async fn rustls_hello(name: &str, alpn: &[&[u8]]) -> Vec<u8> {
        let name = ServerName::try_from(name.to_string()).expect("server name");
        let connector = TlsConnector::from(Arc::new(client_config(RootCertStore::empty(), alpn)));
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let handshake = tokio::spawn(async move { connector.connect(name, client).await.is_ok() });
        let mut record = vec![0u8; RECORD_HEADER];
        server.read_exact(&mut record).await.expect("record header");
        let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
        record.resize(RECORD_HEADER + len, 0);
        server
            .read_exact(&mut record[RECORD_HEADER..])
            .await
            .expect("record body");
        drop(server);
        assert!(!handshake.await.expect("client task"), "no server answered");
        record
    }

    /// The handshake bytes carried by `records` (test-side reassembly).
    fn handshake_of(mut records: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while !records.is_empty() {
            let len = usize::from(u16::from_be_bytes([records[3], records[4]]));
            out.extend_from_slice(&records[RECORD_HEADER..RECORD_HEADER + len]);
            records = &records[RECORD_HEADER + len..];
        }
        out
    }

    /// `handshake` in records of `sizes` bytes each, the last size repeating.
    fn records(handshake: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = handshake;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i.min(sizes.len() - 1)].min(rest.len());
            out.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 1]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            i += 1;
        }
        out
    }

    fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    fn u16_vec(data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(data);
        out
    }

    /// A `server_name` extension with these (type, name) entries.
    fn sni_ext(entries: &[(u8, &[u8])]) -> Vec<u8> {
        let mut list = Vec::new();
        for (kind, name) in entries {
            list.push(*kind);
            list.extend_from_slice(&u16_vec(name));
        }
        ext(EXT_SERVER_NAME, &u16_vec(&list))
    }

    fn sni(name: &[u8]) -> Vec<u8> {
        sni_ext(&[(NAME_TYPE_HOST_NAME, name)])
    }

    /// A ClientHello handshake message (header included) with these extensions;
    /// `None`: no extensions block at all, as old clients may send.
    fn handshake(extensions: Option<&[Vec<u8>]>) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0x5a; 32]);
        body.push(32);
        body.extend_from_slice(&[0xa5; 32]);
        body.extend_from_slice(&u16_vec(&[0x13, 0x01, 0x13, 0x02]));
        body.extend_from_slice(&[1, 0]);
        if let Some(extensions) = extensions {
            body.extend_from_slice(&u16_vec(&extensions.concat()));
        }
        let mut out = vec![HANDSHAKE_CLIENT_HELLO];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&body);
        out
    }

    fn one_record(extensions: &[Vec<u8>]) -> Vec<u8> {
        records(&handshake(Some(extensions)), &[MAX_FRAGMENT])
    }

    /// A hello whose handshake message is exactly `size` bytes, by padding (RFC 7685).
    fn handshake_of_size(size: usize) -> Vec<u8> {
        let base = handshake(Some(&[sni(b"big.example"), ext(21, &[])])).len();
        let hs = handshake(Some(&[sni(b"big.example"), ext(21, &vec![0; size - base])]));
        assert_eq!(hs.len(), size);
        hs
    }

    /// Yields its data one byte per read, then end of file.
    struct OneByte {
        data: Vec<u8>,
        pos: usize,
    }

    impl AsyncRead for OneByte {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if let Some(&b) = this.data.get(this.pos)
                && buf.remaining() > 0
            {
                buf.put_slice(&[b]);
                this.pos += 1;
            }
            Poll::Ready(Ok(()))
        }
    }

    // --- real ClientHellos ---

    #[tokio::test]
    async fn rustls_hello_with_name_gives_its_sni() {
        let hello = rustls_hello("Intranet.Example.FR", &[b"h2", b"http/1.1"]).await;
        assert_eq!(
            parse(&hello),
            Ok(ClientHello {
                sni: Some("intranet.example.fr".into()),
            })
        );
    }

    #[tokio::test]
    async fn rustls_hello_to_ip_address_has_no_sni() {
        let hello = rustls_hello("192.0.2.7", &[]).await;
        let parsed = parse(&hello).expect("parses");
        assert_eq!(parsed.sni, None);
    }

    #[tokio::test]
    async fn peek_reads_a_rustls_hello_and_returns_every_byte() {
        let hello = rustls_hello("mairie.example", &[b"http/1.1"]).await;
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let mut sent = hello.clone();
        sent.extend_from_slice(b"\x17\x03\x03\x00\x02ed"); // early data after the hello
        client.write_all(&sent).await.unwrap();
        let (result, bytes) = peek(&mut server, LONG).await;
        let parsed = result.expect("hello");
        assert_eq!(parsed.sni.as_deref(), Some("mairie.example"));
        assert_eq!(bytes, sent);
    }

    // --- fragmentation and slow clients ---

    #[tokio::test]
    async fn hello_fragmented_across_records_parses_the_same() {
        let hello = rustls_hello("frag.example", &[b"h2", b"http/1.1"]).await;
        let expected = parse(&hello).expect("one record");
        let hs = handshake_of(&hello);
        for sizes in [
            &[1][..],
            &[2],
            &[3],
            &[4],
            &[5],
            &[7],
            &[100],
            &[hs.len() - 1],
            &[2, 1000],
        ] {
            let fragmented = records(&hs, sizes);
            assert_eq!(
                parse(&fragmented),
                Ok(expected.clone()),
                "record sizes {sizes:?}"
            );
        }
    }

    #[tokio::test]
    async fn every_prefix_is_incomplete_with_a_true_lower_bound() {
        let hello = rustls_hello("prefix.example", &[b"h2"]).await;
        let hs = handshake_of(&hello);
        for sizes in [&[MAX_FRAGMENT][..], &[1], &[3], &[7], &[50, 9]] {
            let full = records(&hs, sizes);
            for k in 0..full.len() {
                match parse(&full[..k]) {
                    Err(HelloError::Incomplete(n)) => assert!(
                        k < n && n <= full.len(),
                        "sizes {sizes:?}, prefix {k}: bound {n} of {}",
                        full.len()
                    ),
                    other => panic!("sizes {sizes:?}, prefix {k}: {other:?}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn peek_assembles_a_hello_arriving_one_byte_at_a_time() {
        let hello = rustls_hello("lent.example", &[b"h2"]).await;
        let fragmented = records(&handshake_of(&hello), &[7]);
        for data in [hello.clone(), fragmented] {
            let mut io = OneByte {
                data: data.clone(),
                pos: 0,
            };
            let (result, bytes) = peek(&mut io, LONG).await;
            assert_eq!(result.expect("hello").sni.as_deref(), Some("lent.example"));
            assert_eq!(bytes, data);
        }
    }

    #[tokio::test]
    async fn truncated_hello_is_incomplete_then_eof() {
        let hello = rustls_hello("court.example", &[]).await;
        let truncated = &hello[..hello.len() - 1];
        assert_eq!(parse(truncated), Err(HelloError::Incomplete(hello.len())));
        let mut io = OneByte {
            data: truncated.to_vec(),
            pos: 0,
        };
        let (result, bytes) = peek(&mut io, LONG).await;
        assert!(matches!(result, Err(PeekError::Eof { got }) if got == truncated.len()));
        assert_eq!(bytes, truncated);
        assert_eq!(result.unwrap_err().code(), "hello-eof");
    }

    #[tokio::test]
    async fn peek_on_silent_client_times_out_keeping_the_bytes() {
        let hello = rustls_hello("muet.example", &[]).await;
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(&hello[..20]).await.unwrap();
        let timeout = Duration::from_millis(100);
        let (result, bytes) = peek(&mut server, timeout).await;
        assert!(
            matches!(result, Err(PeekError::TimedOut(t)) if t == timeout),
            "{result:?}"
        );
        assert_eq!(bytes, hello[..20]);
        drop(client);
    }

    #[tokio::test]
    async fn peek_with_unrepresentable_timeout_does_not_panic() {
        let hello = one_record(&[sni(b"a.example")]);
        let (result, _) = peek(&mut &hello[..], Duration::MAX).await;
        assert_eq!(result.expect("hello").sni.as_deref(), Some("a.example"));
    }

    // --- not TLS ---

    #[test]
    fn plain_http_is_not_tls() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(HelloError::NotTls));
        assert_eq!(parse(b"G"), Err(HelloError::NotTls));
        assert_eq!(parse(b"SSH-2.0-OpenSSH_9.6\r\n"), Err(HelloError::NotTls));
        // SSLv2-compatible hello, and a 0x16 byte not followed by a TLS version.
        assert_eq!(
            parse(&[0x80, 0x2e, 0x01, 0x03, 0x01]),
            Err(HelloError::NotTls)
        );
        assert_eq!(parse(&[0x16, 0x47]), Err(HelloError::NotTls));
        assert_eq!(
            parse(&[]),
            Err(HelloError::Incomplete(RECORD_HEADER + HANDSHAKE_HEADER))
        );
        assert_eq!(
            parse(&[0x16]),
            Err(HelloError::Incomplete(RECORD_HEADER + HANDSHAKE_HEADER))
        );
    }

    #[tokio::test]
    async fn peek_says_not_tls_after_the_first_byte_not_at_the_deadline() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        // The client stays connected and silent after its first byte.
        client.write_all(b"G").await.unwrap();
        let (result, bytes) = peek(&mut server, LONG).await;
        assert!(
            matches!(result, Err(PeekError::Hello(HelloError::NotTls))),
            "{result:?}"
        );
        assert_eq!(bytes, &b"G"[..]);
        client.write_all(b"ET / HTTP/1.1\r\n").await.unwrap();
        let (result, bytes) = peek(&mut server, LONG).await;
        assert_eq!(result.unwrap_err().code(), "hello-not-tls");
        assert_eq!(bytes, &b"ET / HTTP/1.1\r\n"[..]);
    }

    // --- malformed hellos ---

    #[test]
    fn hand_built_hello_parses() {
        let versions = ext(EXT_SUPPORTED_VERSIONS, &[4, 0x03, 0x04, 0x03, 0x03]);
        let alpn = ext(EXT_ALPN, &u16_vec(b"\x02h2\x08http/1.1"));
        let hello = one_record(&[ext(0xff01, &[0]), sni(b"www.example.org"), alpn, versions]);
        assert_eq!(
            parse(&hello),
            Ok(ClientHello {
                sni: Some("www.example.org".into()),
            })
        );
    }

    #[test]
    fn hello_without_extensions_parses() {
        let hello = records(&handshake(None), &[MAX_FRAGMENT]);
        let parsed = parse(&hello).expect("old-style hello");
        assert_eq!(parsed.sni, None);
    }

    #[test]
    fn sni_in_upper_case_is_lower_cased() {
        let hello = one_record(&[sni(b"WWW.Impots.GOUV.fr")]);
        assert_eq!(
            parse(&hello).unwrap().sni.as_deref(),
            Some("www.impots.gouv.fr")
        );
    }

    #[test]
    fn sni_of_255_bytes_is_accepted_and_256_refused() {
        let name = vec![b'a'; 255];
        assert_eq!(
            parse(&one_record(&[sni(&name)]))
                .unwrap()
                .sni
                .unwrap()
                .len(),
            255
        );
        let name = vec![b'a'; 256];
        assert_eq!(
            parse(&one_record(&[sni(&name)])),
            Err(HelloError::Malformed(
                "host name in server_name longer than 255 bytes"
            ))
        );
    }

    /// Each case: what the hello carries, and the exact diagnostic.
    #[test]
    fn ambiguous_or_invalid_sni_is_malformed() {
        let cases: &[(&str, Vec<Vec<u8>>, &str)] = &[
            (
                "two server_name extensions",
                vec![sni(b"allowed.example"), sni(b"blocked.example")],
                "server_name extension sent twice",
            ),
            (
                "two host names in one extension",
                vec![sni_ext(&[(0, b"allowed.example"), (0, b"blocked.example")])],
                "two host names in server_name",
            ),
            (
                "a name type other than host_name",
                vec![sni_ext(&[(0, b"allowed.example"), (1, b"blocked.example")])],
                "server_name entry of unknown type",
            ),
            (
                "trailing NUL",
                vec![sni(b"allowed.example\0")],
                "host name in server_name is not printable ASCII",
            ),
            (
                "NUL inside",
                vec![sni(b"allowed.example\0.evil")],
                "host name in server_name is not printable ASCII",
            ),
            (
                "non-ASCII",
                vec![sni("café.example".as_bytes())],
                "host name in server_name is not printable ASCII",
            ),
            (
                "a space",
                vec![sni(b"a b.example")],
                "host name in server_name is not printable ASCII",
            ),
            (
                "CR LF",
                vec![sni(b"a.example\r\nX: y")],
                "host name in server_name is not printable ASCII",
            ),
            (
                "empty name",
                vec![sni(b"")],
                "empty host name in server_name",
            ),
            (
                "empty list",
                vec![ext(EXT_SERVER_NAME, &u16_vec(&[]))],
                "empty server_name list",
            ),
            (
                "empty extension",
                vec![ext(EXT_SERVER_NAME, &[])],
                "truncated server_name list",
            ),
            (
                "list length beyond the extension",
                vec![ext(EXT_SERVER_NAME, &[0, 9, 0, 0, 1, b'a'])],
                "truncated server_name list",
            ),
            (
                "bytes after the list",
                vec![ext(
                    EXT_SERVER_NAME,
                    &[&sni(b"a.example")[4..], &[0][..]].concat(),
                )],
                "data after the server_name list",
            ),
        ];
        for (what, extensions, message) in cases {
            assert_eq!(
                parse(&one_record(extensions)),
                Err(HelloError::Malformed(message)),
                "{what}"
            );
        }
    }

    /// Extensions other than `server_name` are only framed: contents a TLS stack would
    /// refuse are the server's (or the bump acceptor's) to refuse, nothing is at stake
    /// for the proxy. An extension running past the block is still malformed.
    #[test]
    fn extensions_other_than_sni_are_framed_but_not_read() {
        let unread: &[(&str, Vec<Vec<u8>>)] = &[
            ("empty ALPN list", vec![ext(EXT_ALPN, &u16_vec(&[]))]),
            (
                "empty protocol",
                vec![ext(EXT_ALPN, &u16_vec(b"\x02h2\x00"))],
            ),
            (
                "protocol past the list",
                vec![ext(EXT_ALPN, &u16_vec(b"\x09h2"))],
            ),
            (
                "ALPN twice",
                vec![
                    ext(EXT_ALPN, &u16_vec(b"\x02h2")),
                    ext(EXT_ALPN, &u16_vec(b"\x08http/1.1")),
                ],
            ),
            (
                "odd versions",
                vec![ext(EXT_SUPPORTED_VERSIONS, &[3, 3, 4, 3])],
            ),
            (
                "versions twice",
                vec![
                    ext(EXT_SUPPORTED_VERSIONS, &[2, 3, 4]),
                    ext(EXT_SUPPORTED_VERSIONS, &[2, 3, 3]),
                ],
            ),
        ];
        for (what, extensions) in unread {
            let mut extensions = extensions.clone();
            extensions.push(sni(b"a.example"));
            assert_eq!(
                parse(&one_record(&extensions)).map(|h| h.sni),
                Ok(Some("a.example".into())),
                "{what}"
            );
        }
        assert_eq!(
            parse(&one_record(&[vec![0, 21, 0, 9, 0]])),
            Err(HelloError::Malformed("truncated extension")),
            "extension past the block"
        );
    }

    #[test]
    fn broken_record_layer_is_malformed() {
        let hs = handshake(Some(&[sni(b"a.example")]));
        let two = records(&hs, &[40]);
        // An alert record between the two fragments of the hello.
        let mut interleaved = two[..RECORD_HEADER + 40].to_vec();
        interleaved.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
        interleaved.extend_from_slice(&two[RECORD_HEADER + 40..]);
        assert_eq!(
            parse(&interleaved),
            Err(HelloError::Malformed(
                "another record type interrupts the ClientHello"
            ))
        );
        // Another handshake message after the hello, in its last record.
        let mut trailing = hs.clone();
        trailing.extend_from_slice(&[20, 0, 0, 0]);
        assert_eq!(
            parse(&records(&trailing, &[MAX_FRAGMENT])),
            Err(HelloError::Malformed(
                "data after the ClientHello in its last record"
            ))
        );
        // Not a ClientHello but a ServerHello.
        let mut server_hello = hs.clone();
        server_hello[0] = 2;
        assert_eq!(
            parse(&records(&server_hello, &[MAX_FRAGMENT])),
            Err(HelloError::Malformed(
                "first handshake message is not a ClientHello"
            ))
        );
        assert_eq!(
            parse(&[22, 3, 1, 0, 0, 1]),
            Err(HelloError::Malformed("empty handshake record"))
        );
        assert_eq!(
            parse(&[22, 3, 1, 0x40, 0x01, 1]),
            Err(HelloError::Malformed("record longer than 16 KiB"))
        );
        // Handshake length beyond what the body holds.
        let mut short = hs.clone();
        short.truncate(hs.len() - 3);
        let mut short = records(&short, &[MAX_FRAGMENT]);
        short.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
        assert_eq!(
            parse(&short),
            Err(HelloError::Malformed(
                "another record type interrupts the ClientHello"
            ))
        );
    }

    #[test]
    fn body_length_mismatch_is_malformed() {
        // Handshake length one byte longer than the body, the spare byte sent.
        let mut hs = handshake(Some(&[sni(b"a.example")]));
        hs[3] += 1;
        hs.push(0);
        assert_eq!(
            parse(&records(&hs, &[MAX_FRAGMENT])),
            Err(HelloError::Malformed("data after the extensions"))
        );
        // Session id longer than 32 bytes.
        let mut hs = handshake(None);
        hs[HANDSHAKE_HEADER + 34] = 33;
        assert_eq!(
            parse(&records(&hs, &[MAX_FRAGMENT])),
            Err(HelloError::Malformed(
                "legacy_session_id longer than 32 bytes"
            ))
        );
    }

    // --- size limits ---

    #[test]
    fn huge_declared_hello_is_too_large_from_its_header() {
        let header = [
            22,
            3,
            1,
            0x40,
            0x00,
            HANDSHAKE_CLIENT_HELLO,
            0xff,
            0xff,
            0xff,
        ];
        assert_eq!(parse(&header), Err(HelloError::TooLarge));
        // 16 KiB of body does not fit either: the header takes 4 bytes of the record.
        let header = [
            22,
            3,
            1,
            0x40,
            0x00,
            HANDSHAKE_CLIENT_HELLO,
            0x00,
            0x40,
            0x00,
        ];
        assert_eq!(
            parse(&header),
            Err(HelloError::Incomplete(MAX_FRAGMENT + 2 * RECORD_HEADER + 4))
        );
        let header = [
            22,
            3,
            1,
            0x40,
            0x00,
            HANDSHAKE_CLIENT_HELLO,
            0x00,
            0x41,
            0x00,
        ];
        assert_eq!(parse(&header), Err(HelloError::TooLarge));
    }

    #[test]
    fn max_hello_is_the_exact_limit() {
        // 16 KiB of handshake in 16 records is exactly MAX_HELLO bytes: accepted.
        let hs = handshake_of_size(MAX_FRAGMENT);
        let at_limit = records(&hs, &[MAX_FRAGMENT / MAX_HELLO_RECORDS]);
        assert_eq!(at_limit.len(), MAX_HELLO);
        assert_eq!(
            parse(&at_limit).unwrap().sni.as_deref(),
            Some("big.example")
        );
        // The same in 17 records is 5 bytes too many.
        let mut sizes = vec![MAX_FRAGMENT / MAX_HELLO_RECORDS; MAX_HELLO_RECORDS - 1];
        sizes.extend([MAX_FRAGMENT / MAX_HELLO_RECORDS - 1, 1]);
        let over = records(&hs, &sizes);
        assert_eq!(over.len(), MAX_HELLO + RECORD_HEADER);
        assert_eq!(parse(&over), Err(HelloError::TooLarge));
        // A small hello cut into a great many tiny records.
        let tiny = records(&handshake_of_size(4000), &[1]);
        assert_eq!(parse(&tiny), Err(HelloError::TooLarge));
    }

    #[tokio::test]
    async fn peek_accepts_a_hello_of_max_hello_bytes() {
        let at_limit = records(
            &handshake_of_size(MAX_FRAGMENT),
            &[MAX_FRAGMENT / MAX_HELLO_RECORDS],
        );
        let (mut client, mut server) = tokio::io::duplex(1000);
        let writer = {
            let at_limit = at_limit.clone();
            tokio::spawn(async move { client.write_all(&at_limit).await })
        };
        let (result, bytes) = peek(&mut server, LONG).await;
        assert_eq!(result.expect("hello").sni.as_deref(), Some("big.example"));
        assert_eq!(bytes, at_limit);
        writer.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn peek_refuses_a_huge_hello_without_reading_it() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let header = [
            22,
            3,
            1,
            0x40,
            0x00,
            HANDSHAKE_CLIENT_HELLO,
            0xff,
            0xff,
            0xff,
        ];
        client.write_all(&header).await.unwrap();
        let (result, bytes) = peek(&mut server, LONG).await;
        assert_eq!(result.unwrap_err().code(), "hello-too-large");
        assert_eq!(bytes, &header[..]);
        // Tiny records: peek stops at MAX_HELLO bytes at the latest.
        let tiny = records(&handshake_of_size(4000), &[1]);
        let (result, bytes) = peek(&mut &tiny[..], LONG).await;
        assert!(
            matches!(result, Err(PeekError::Hello(HelloError::TooLarge))),
            "{result:?}"
        );
        assert!(bytes.len() <= MAX_HELLO);
        assert_eq!(bytes, tiny[..bytes.len()]);
    }

    #[test]
    fn error_codes_are_stable() {
        let codes = [
            HelloError::Incomplete(1).code(),
            HelloError::NotTls.code(),
            HelloError::Malformed("x").code(),
            HelloError::TooLarge.code(),
            PeekError::Eof { got: 0 }.code(),
            PeekError::TimedOut(Duration::ZERO).code(),
            PeekError::Io(io::ErrorKind::BrokenPipe.into()).code(),
        ];
        assert_eq!(
            codes,
            [
                "hello-incomplete",
                "hello-not-tls",
                "hello-malformed",
                "hello-too-large",
                "hello-eof",
                "hello-timeout",
                "hello-io"
            ]
        );
    }

    // --- never panics ---

    /// xorshift64: fixed seed, reproducible, no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// Up to `max - 1` random bytes.
        fn bytes_upto(&mut self, max: usize) -> Vec<u8> {
            let n = self.below(max);
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// What must hold of any hello `parse` accepts.
    fn check_accepted(result: &Result<ClientHello, HelloError>, input: &[u8]) {
        match result {
            Ok(hello) => {
                if let Some(sni) = &hello.sni {
                    assert!(!sni.is_empty() && sni.len() <= MAX_SNI_LEN, "{input:?}");
                    assert!(
                        sni.bytes()
                            .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase())
                    );
                }
            }
            Err(HelloError::Incomplete(n)) => assert!(*n > input.len() && *n <= MAX_HELLO),
            Err(_) => {}
        }
    }

    /// A random but well-framed hello: random extensions (often the three we read, with
    /// random contents), random record sizes, sometimes a random byte changed after.
    fn random_hello(rng: &mut Rng) -> Vec<u8> {
        let mut extensions = Vec::new();
        for _ in 0..rng.below(6) {
            let kind = [
                EXT_SERVER_NAME,
                EXT_ALPN,
                EXT_SUPPORTED_VERSIONS,
                rng.next() as u16,
            ][rng.below(4)];
            let data = match rng.below(3) {
                0 => rng.bytes_upto(40),
                1 => {
                    let inner = rng.bytes_upto(20);
                    u16_vec(&inner)
                }
                _ => {
                    let name = rng.bytes_upto(12);
                    sni_ext(&[(rng.below(2) as u8, &name)])[4..].to_vec()
                }
            };
            extensions.push(ext(kind, &data));
        }
        let hs = handshake(Some(&extensions));
        let sizes: Vec<usize> = (0..3).map(|_| 1 + rng.below(hs.len())).collect();
        let mut out = records(&hs, &sizes);
        if rng.below(2) == 0 {
            let i = rng.below(out.len());
            out[i] = rng.next() as u8;
        }
        out
    }

    /// A ClientHello rustls 0.23 sent (SNI fuzz.example, ALPN h2 and http/1.1, X25519MLKEM768
    /// key share), kept so that the mutation loop is the same on every run.
    const RUSTLS_HELLO: &[u8] = include_bytes!("testdata/rustls-0.23-client-hello.bin");

    #[test]
    fn stored_rustls_hello_parses() {
        assert_eq!(
            parse(RUSTLS_HELLO),
            Ok(ClientHello {
                sni: Some("fuzz.example".into()),
            })
        );
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        let real = RUSTLS_HELLO.to_vec();
        let real_fragmented = records(&handshake_of(&real), &[61]);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let start = std::time::Instant::now();
        let (mut random_ok, mut mutated_ok) = (0, 0);
        for _ in 0..100_000 {
            let input = match rng.below(3) {
                // Pure noise, mostly NotTls.
                0 => rng.bytes_upto(300),
                // A plausible header over noise.
                1 => {
                    let mut v = vec![22, 3, 1];
                    v.extend(rng.bytes_upto(400));
                    v
                }
                _ => random_hello(&mut rng),
            };
            let result = parse(&input);
            check_accepted(&result, &input);
            random_ok += usize::from(result.is_ok());
        }
        for _ in 0..100_000 {
            let mut input = if rng.below(2) == 0 {
                real.clone()
            } else {
                real_fragmented.clone()
            };
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(input.len());
                match rng.below(6) {
                    0 => input[i] ^= 1 << rng.below(8),
                    1 => input[i] = rng.next() as u8,
                    2 => input[i] = [0, 1, 0xff, 0x80][rng.below(4)],
                    3 => input.truncate(i),
                    4 => input.insert(i, rng.next() as u8),
                    _ => {
                        input.remove(i);
                    }
                }
                if input.is_empty() {
                    break;
                }
            }
            let result = parse(&input);
            check_accepted(&result, &input);
            mutated_ok += usize::from(result.is_ok());
        }
        eprintln!(
            "200 000 parses in {:?} ({random_ok} random and {mutated_ok} mutated inputs of a {}-byte hello accepted)",
            start.elapsed(),
            real.len()
        );
        // The generators reach deep into the parser, not only its first checks.
        assert!(
            random_ok > 1000 && mutated_ok > 1000,
            "{random_ok} {mutated_ok}"
        );
    }

    // --- Rewind ---

    #[tokio::test]
    async fn rewind_reads_back_prefix_then_the_rest() {
        let inner = &b" world, and more"[..];
        let mut all = Vec::new();
        Rewind::new(Bytes::from_static(b"hello"), inner)
            .read_to_end(&mut all)
            .await
            .unwrap();
        assert_eq!(all, b"hello world, and more");
        // In small reads, across the boundary.
        let mut rw = Rewind::new(Bytes::from_static(b"hello"), inner);
        let mut buf = [0u8; 3];
        let mut got = Vec::new();
        loop {
            let n = rw.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"hello world, and more");
        // Unread prefix comes back from into_inner.
        let mut rw = Rewind::new(Bytes::from_static(b"hello"), inner);
        rw.read_exact(&mut buf[..2]).await.unwrap();
        let (prefix, rest) = rw.into_inner();
        assert_eq!((&prefix[..], rest), (&b"llo"[..], inner));
    }

    #[tokio::test]
    async fn rewind_writes_go_to_the_inner_io() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut rw = Rewind::new(Bytes::from_static(b"peeked"), a);
        rw.write_all(b"to the client").await.unwrap();
        rw.flush().await.unwrap();
        rw.shutdown().await.unwrap();
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"to the client");
    }

    /// The bump path: peek on the accepted stream, then finish the handshake on the
    /// replayed bytes with a certificate for the SNI.
    #[tokio::test]
    async fn tls_handshake_completes_through_rewind_after_peek() {
        let certified =
            rcgen::generate_simple_self_signed(vec!["bump.example".to_string()]).unwrap();
        let cert = certified.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        let mut server_config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key.into())
            .unwrap();
        server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let connector = TlsConnector::from(Arc::new(client_config(roots, &[b"h2", b"http/1.1"])));

        let (client_io, mut server_io) = tokio::io::duplex(64 * 1024);
        let client = tokio::spawn(async move {
            let name = ServerName::try_from("bump.example").unwrap();
            let mut tls = connector
                .connect(name, client_io)
                .await
                .expect("client handshake");
            tls.write_all(b"ping").await.unwrap();
            tls.flush().await.unwrap();
            let mut answer = [0u8; 4];
            tls.read_exact(&mut answer).await.unwrap();
            answer
        });

        let (hello, peeked) = peek(&mut server_io, LONG).await;
        let hello = hello.expect("hello");
        assert_eq!(hello.sni.as_deref(), Some("bump.example"));
        let acceptor = TlsAcceptor::from(Arc::new(server_config));
        let mut tls: tokio_rustls::server::TlsStream<Rewind<DuplexStream>> = acceptor
            .accept(Rewind::new(peeked, server_io))
            .await
            .expect("server handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(tls.get_ref().1.server_name(), Some("bump.example"));
        let mut ping = [0u8; 4];
        tls.read_exact(&mut ping).await.unwrap();
        assert_eq!(&ping, b"ping");
        tls.write_all(b"pong").await.unwrap();
        tls.flush().await.unwrap();
        assert_eq!(&client.await.unwrap(), b"pong");
    }
}
