//! Body formats: what the sender's bytes mean as text, decoded on the fly before folding.
//!
//! - url-encoded forms: `+` is a space, `%XX` a byte;
//! - JSON: string escapes (`\n`, `\"`, `\uXXXX` with surrogate pairs…) decoded;
//! - multipart: the parts found by their delimiter, their headers read (never scanned),
//!   each body decoded by its own `Content-Transfer-Encoding` (base64,
//!   quoted-printable) and `Content-Type` (JSON, url-encoded, or as it is);
//! - anything else as it is.
//!
//! Every decoder is a state machine over bytes given in any pieces: an escape, a base64
//! quantum or a delimiter split between two chunks is decoded as if it came whole. The
//! state is a few bytes, plus, for multipart, the delimiter and one header line (at most
//! [`MAX_HEADER_LINE`] bytes; longer, and the rest of the body is scanned as it is).

use memchr::memmem;

use super::fold::Folder;

/// The longest part header line kept; past it the multipart body is read raw.
pub(crate) const MAX_HEADER_LINE: usize = 8 * 1024;
/// The most header lines of a part.
const MAX_HEADER_LINES: u32 = 64;
/// The longest boundary line accepted at the start of the body (RFC 2046: 70 + "--").
const MAX_BOUNDARY_LINE: usize = 80;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A simple format: the whole body, or one part of a multipart body.
#[derive(Clone, Debug)]
pub(crate) enum Simple {
    Raw,
    Url { esc: u8, first: u8 },
    Json(Json),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Json {
    /// 0: text; 1: after `\`; 2..=5: inside `\u`, that many minus 2 hex digits read.
    st: u8,
    acc: u32,
    /// A high surrogate waiting for its low half.
    high: Option<u32>,
}

impl Simple {
    pub(crate) fn push(&mut self, input: &[u8], f: &mut Folder, out: &mut Vec<u8>) {
        match self {
            Simple::Raw => f.push(input, out),
            Simple::Url { esc, first } => url(esc, first, input, f, out),
            Simple::Json(j) => j.push(input, f, out),
        }
    }

    pub(crate) fn finish(&mut self, f: &mut Folder, out: &mut Vec<u8>) {
        match self {
            Simple::Url { esc, first } => {
                match *esc {
                    1 => f.push(b"%", out),
                    2 => f.push(&[b'%', *first], out),
                    _ => {}
                }
                *esc = 0;
            }
            Simple::Json(j) => *j = Json::default(),
            Simple::Raw => {}
        }
    }
}

fn url(esc: &mut u8, first: &mut u8, input: &[u8], f: &mut Folder, out: &mut Vec<u8>) {
    let mut i = 0;
    while i < input.len() {
        match *esc {
            0 => match memchr::memchr2(b'%', b'+', &input[i..]) {
                None => {
                    f.push(&input[i..], out);
                    return;
                }
                Some(k) => {
                    f.push(&input[i..i + k], out);
                    if input[i + k] == b'+' {
                        f.push(b" ", out);
                    } else {
                        *esc = 1;
                    }
                    i += k + 1;
                }
            },
            1 => {
                if hex(input[i]).is_some() {
                    *first = input[i];
                    *esc = 2;
                    i += 1;
                } else {
                    f.push(b"%", out);
                    *esc = 0;
                }
            }
            _ => {
                let c = input[i];
                *esc = 0;
                match (hex(*first), hex(c)) {
                    (Some(h), Some(l)) => {
                        f.push(&[h * 16 + l], out);
                        i += 1;
                    }
                    _ => f.push(&[b'%', *first], out),
                }
            }
        }
    }
}

impl Json {
    fn push(&mut self, input: &[u8], f: &mut Folder, out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            match self.st {
                0 => match memchr::memchr(b'\\', &input[i..]) {
                    None => {
                        self.lone_high(f, out);
                        f.push(&input[i..], out);
                        return;
                    }
                    Some(k) => {
                        if k > 0 {
                            self.lone_high(f, out);
                            f.push(&input[i..i + k], out);
                        }
                        self.st = 1;
                        i += k + 1;
                    }
                },
                1 => {
                    let c = input[i];
                    i += 1;
                    self.st = 0;
                    if c == b'u' {
                        self.st = 2;
                        self.acc = 0;
                        continue;
                    }
                    self.lone_high(f, out);
                    match c {
                        b'n' | b't' | b'r' | b'b' | b'f' => f.push(b" ", out),
                        b'"' | b'\\' | b'/' => f.push(&[c], out),
                        _ => f.push(&[b'\\', c], out),
                    }
                }
                _ => {
                    let Some(h) = hex(input[i]) else {
                        // A broken \u escape: dropped, the byte read again as text.
                        self.st = 0;
                        continue;
                    };
                    i += 1;
                    self.acc = self.acc * 16 + h as u32;
                    self.st += 1;
                    if self.st == 6 {
                        self.st = 0;
                        self.code_point(f, out);
                    }
                }
            }
        }
    }

    fn code_point(&mut self, f: &mut Folder, out: &mut Vec<u8>) {
        let cp = self.acc;
        let cp = match (self.high.take(), cp) {
            (Some(hi), 0xDC00..=0xDFFF) => 0x10000 + ((hi - 0xD800) << 10) + (cp - 0xDC00),
            (None, 0xD800..=0xDBFF) => {
                self.high = Some(cp);
                return;
            }
            (Some(_), 0xD800..=0xDBFF) => {
                f.push("\u{fffd}".as_bytes(), out);
                self.high = Some(cp);
                return;
            }
            (Some(_), _) => {
                f.push("\u{fffd}".as_bytes(), out);
                cp
            }
            (None, _) => cp,
        };
        let c = char::from_u32(cp).unwrap_or('\u{fffd}');
        let mut b = [0; 4];
        f.push(c.encode_utf8(&mut b).as_bytes(), out);
    }

    fn lone_high(&mut self, f: &mut Folder, out: &mut Vec<u8>) {
        if self.high.take().is_some() {
            f.push("\u{fffd}".as_bytes(), out);
        }
    }
}

/// A part's `Content-Transfer-Encoding`.
#[derive(Clone, Debug)]
enum Transfer {
    None,
    /// Sextets gathered and how many (0–3).
    Base64 {
        acc: u32,
        n: u8,
    },
    /// 0: text; 1: after `=`; 2: after `=` and one hex digit (kept in `first`).
    Quoted {
        st: u8,
        first: u8,
    },
}

fn b64(b: u8) -> Option<u32> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    } as u32)
}

/// The body of one part: its transfer decoding, then its format.
#[derive(Clone, Debug)]
struct Part {
    transfer: Transfer,
    format: Simple,
}

impl Part {
    fn raw() -> Part {
        Part {
            transfer: Transfer::None,
            format: Simple::Raw,
        }
    }

    fn push(&mut self, input: &[u8], f: &mut Folder, out: &mut Vec<u8>) {
        match &mut self.transfer {
            Transfer::None => self.format.push(input, f, out),
            Transfer::Base64 { acc, n } => {
                let mut dec = [0u8; 384];
                let mut len = 0;
                for &b in input {
                    if b == b'=' {
                        flush_b64(acc, n, &mut dec, &mut len);
                        continue;
                    }
                    let Some(v) = b64(b) else { continue };
                    *acc = (*acc << 6) | v;
                    *n += 1;
                    if *n == 4 {
                        dec[len..len + 3].copy_from_slice(&acc.to_be_bytes()[1..]);
                        len += 3;
                        *acc = 0;
                        *n = 0;
                        if len + 3 > dec.len() {
                            self.format.push(&dec[..len], f, out);
                            len = 0;
                        }
                    }
                }
                self.format.push(&dec[..len], f, out);
            }
            Transfer::Quoted { st, first } => {
                let mut i = 0;
                while i < input.len() {
                    match *st {
                        0 => match memchr::memchr(b'=', &input[i..]) {
                            None => {
                                self.format.push(&input[i..], f, out);
                                return;
                            }
                            Some(k) => {
                                self.format.push(&input[i..i + k], f, out);
                                *st = 1;
                                i += k + 1;
                            }
                        },
                        1 => {
                            let c = input[i];
                            if c == b'\r' {
                                i += 1; // soft line break "=\r\n": the \n follows
                            } else if c == b'\n' {
                                *st = 0;
                                i += 1;
                            } else if hex(c).is_some() {
                                *first = c;
                                *st = 2;
                                i += 1;
                            } else {
                                self.format.push(b"=", f, out);
                                *st = 0;
                            }
                        }
                        _ => {
                            let c = input[i];
                            *st = 0;
                            match (hex(*first), hex(c)) {
                                (Some(h), Some(l)) => {
                                    self.format.push(&[h * 16 + l], f, out);
                                    i += 1;
                                }
                                _ => self.format.push(&[b'=', *first], f, out),
                            }
                        }
                    }
                }
            }
        }
    }

    fn finish(&mut self, f: &mut Folder, out: &mut Vec<u8>) {
        if let Transfer::Base64 { acc, n } = &mut self.transfer {
            let mut dec = [0u8; 3];
            let mut len = 0;
            flush_b64(acc, n, &mut dec, &mut len);
            self.format.push(&dec[..len], f, out);
        }
        self.format.finish(f, out);
        f.finish(out);
        f.separate(out);
    }
}

/// Writes the bytes of an incomplete base64 quantum (at padding or at the end).
fn flush_b64(acc: &mut u32, n: &mut u8, dec: &mut [u8], len: &mut usize) {
    let bytes = match *n {
        2 => 1,
        3 => 2,
        _ => 0,
    };
    let v = *acc << (6 * (4 - *n as u32));
    for k in 0..bytes {
        dec[*len + k] = (v >> (16 - 8 * k)) as u8;
    }
    *len += bytes;
    *acc = 0;
    *n = 0;
}

/// The format a `Content-Type` value names (its parameters ignored).
pub(crate) fn simple_of(content_type: &[u8]) -> Simple {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or(b"")
        .trim_ascii();
    let essence = essence.to_ascii_lowercase();
    if essence == b"application/x-www-form-urlencoded" {
        Simple::Url { esc: 0, first: 0 }
    } else if essence == b"application/json" || essence.ends_with(b"+json") {
        Simple::Json(Json::default())
    } else {
        Simple::Raw
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mp {
    /// Reading the first line, `--boundary`.
    Sniff,
    /// Reading a part's header lines.
    Headers,
    /// Inside a part's body, looking for the delimiter.
    Body,
    /// Just after a delimiter: `--` ends the body, anything else up to the line's end is
    /// transport padding; `dash` says a first `-` was seen.
    AfterDelim { dash: bool },
    /// After the delimiter line: skipping to its end.
    SkipLine,
    /// After the closing delimiter: ignored, as every receiver ignores it.
    Epilogue,
    /// Parsing failed: the rest read as it is.
    Raw,
}

/// A multipart body, parsed on the fly.
#[derive(Clone, Debug)]
pub(crate) struct Multipart {
    st: Mp,
    /// The line being read (boundary or header line), bounded.
    line: Vec<u8>,
    header_lines: u32,
    /// `\r\n--boundary`.
    delim: Vec<u8>,
    finder: Option<memmem::Finder<'static>>,
    /// How many bytes of `delim` the previous piece ended with.
    hold: usize,
    part: Part,
}

impl Multipart {
    pub(crate) fn new() -> Multipart {
        Multipart {
            st: Mp::Sniff,
            line: Vec::new(),
            header_lines: 0,
            delim: Vec::new(),
            finder: None,
            hold: 0,
            part: Part::raw(),
        }
    }

    pub(crate) fn push(&mut self, input: &[u8], f: &mut Folder, out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            let rest = &input[i..];
            match self.st {
                Mp::Sniff => match memchr::memchr(b'\n', rest) {
                    Some(k) if self.line.len() + k <= MAX_BOUNDARY_LINE => {
                        self.line.extend_from_slice(&rest[..k]);
                        i += k + 1;
                        self.sniffed(f, out);
                    }
                    None if self.line.len() + rest.len() <= MAX_BOUNDARY_LINE => {
                        self.line.extend_from_slice(rest);
                        return;
                    }
                    _ => self.fall_back(f, out),
                },
                Mp::Headers => match memchr::memchr(b'\n', rest) {
                    Some(k) if self.line.len() + k <= MAX_HEADER_LINE => {
                        self.line.extend_from_slice(&rest[..k]);
                        i += k + 1;
                        self.header_line(f, out);
                    }
                    None if self.line.len() + rest.len() <= MAX_HEADER_LINE => {
                        self.line.extend_from_slice(rest);
                        return;
                    }
                    _ => self.fall_back(f, out),
                },
                Mp::Body => i += self.body(rest, f, out),
                Mp::AfterDelim { dash } => {
                    if rest[0] == b'-' && !dash {
                        self.st = Mp::AfterDelim { dash: true };
                        i += 1;
                    } else if rest[0] == b'-' {
                        self.st = Mp::Epilogue;
                    } else {
                        self.st = Mp::SkipLine;
                    }
                }
                Mp::SkipLine => match memchr::memchr(b'\n', rest) {
                    Some(k) => {
                        i += k + 1;
                        self.st = Mp::Headers;
                        self.header_lines = 0;
                        self.part = Part::raw();
                    }
                    None => return,
                },
                Mp::Epilogue => return,
                Mp::Raw => {
                    self.part.push(rest, f, out);
                    return;
                }
            }
        }
    }

    pub(crate) fn finish(&mut self, f: &mut Folder, out: &mut Vec<u8>) {
        match self.st {
            Mp::Sniff | Mp::Headers => {
                let line = std::mem::take(&mut self.line);
                if self.st == Mp::Sniff {
                    f.push(&line, out);
                }
            }
            Mp::Body => {
                let held = self.hold;
                self.hold = 0;
                let delim = std::mem::take(&mut self.delim);
                self.part.push(&delim[..held], f, out);
                self.delim = delim;
                self.part.finish(f, out);
            }
            Mp::Raw => self.part.finish(f, out),
            _ => {}
        }
    }

    /// The first line is read: a boundary line, or the body is not multipart after all.
    fn sniffed(&mut self, f: &mut Folder, out: &mut Vec<u8>) {
        let line = std::mem::take(&mut self.line);
        let token = line.strip_prefix(b"--").map(|t| t.trim_ascii_end());
        match token {
            // RFC 2046 boundary characters are printable: no control byte, so that
            // the delimiter holds '\r' only at its start (see `body`).
            Some(t)
                if !t.is_empty()
                    && t.len() <= 70
                    && t.iter().all(|&b| b.is_ascii_graphic() || b == b' ') =>
            {
                let mut delim = b"\r\n--".to_vec();
                delim.extend_from_slice(t);
                self.finder = Some(memmem::Finder::new(&delim).into_owned());
                self.delim = delim;
                self.st = Mp::Headers;
                self.header_lines = 0;
                self.part = Part::raw();
            }
            _ => {
                self.st = Mp::Raw;
                self.part = Part::raw();
                self.part.push(&line, f, out);
                self.part.push(b"\n", f, out);
            }
        }
    }

    /// Something does not parse: the rest of the body (and the line kept) as it is.
    fn fall_back(&mut self, f: &mut Folder, out: &mut Vec<u8>) {
        let line = std::mem::take(&mut self.line);
        self.st = Mp::Raw;
        self.part = Part::raw();
        self.part.push(&line, f, out);
    }

    fn header_line(&mut self, f: &mut Folder, out: &mut Vec<u8>) {
        let line = std::mem::take(&mut self.line);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.is_empty() {
            self.st = Mp::Body;
            self.hold = 0;
            return;
        }
        self.header_lines += 1;
        if self.header_lines > MAX_HEADER_LINES {
            self.fall_back(f, out);
            return;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-type") {
            self.part.format = simple_of(value);
        } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            self.part.transfer = if value.eq_ignore_ascii_case(b"base64") {
                Transfer::Base64 { acc: 0, n: 0 }
            } else if value.eq_ignore_ascii_case(b"quoted-printable") {
                Transfer::Quoted { st: 0, first: 0 }
            } else {
                Transfer::None
            };
        }
    }

    /// Part body bytes up to the delimiter; returns how many bytes of `input` it used.
    fn body(&mut self, input: &[u8], f: &mut Folder, out: &mut Vec<u8>) -> usize {
        let dl = self.delim.len();
        if self.hold > 0 {
            let need = dl - self.hold;
            let m = need.min(input.len());
            if input[..m] == self.delim[self.hold..self.hold + m] {
                if m == need {
                    self.hold = 0;
                    self.part.finish(f, out);
                    self.st = Mp::AfterDelim { dash: false };
                    return m;
                }
                self.hold += m;
                return m;
            }
            // Not the delimiter after all: the held bytes were body.
            let delim = std::mem::take(&mut self.delim);
            self.part.push(&delim[..self.hold], f, out);
            self.delim = delim;
            self.hold = 0;
        }
        let found = self.finder.as_ref().and_then(|fd| fd.find(input));
        if let Some(k) = found {
            self.part.push(&input[..k], f, out);
            self.part.finish(f, out);
            self.st = Mp::AfterDelim { dash: false };
            return k + dl;
        }
        // Keep back the longest end of the input that begins the delimiter. The
        // delimiter holds '\r' only at its start, so such an end begins with '\r'.
        let from = input.len().saturating_sub(dl - 1);
        let mut keep = input.len();
        for p in from..input.len() {
            if input[p] == b'\r' && input[p..] == self.delim[..input.len() - p] {
                keep = p;
                break;
            }
        }
        self.part.push(&input[..keep], f, out);
        self.hold = input.len() - keep;
        input.len()
    }
}
