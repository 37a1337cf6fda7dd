//! The size of a request head, as every listener counts it against
//! `limits.max_head_bytes`.
//!
//! hyper bounds its read buffer (`max_buf_size`) only while a head is still incomplete:
//! a head that arrives whole in a few large reads is parsed however long it is. So the
//! limit is checked on every parsed request, by the shell of each listener: the
//! accept loop for the portal and admin listeners (`server`), the pipeline for the proxy
//! listener and for the requests inside bumped tunnels (where a refusal is traced). Both
//! use this one pure function; it lives here, at the bottom of the layering with the
//! other small shared helpers, because the pipeline does not import `server` and
//! `server` is the pipeline's caller, not its helper.

use http::Request;

/// What the HTTP/1 parser may hold of a head that is not whole yet: the limit and
/// [`PARSER_SLACK`]. A head up to that size is parsed whole whatever its segments, and
/// refused by the count with the error page and a trace record; only a longer one is cut
/// short by the parser with its bare 431. The parser's bound is what keeps a connection's
/// memory in check; the slack is what makes the refusal the same however the bytes came.
pub fn parser_buffer(limit: usize) -> usize {
    limit.saturating_add(PARSER_SLACK)
}

/// See [`parser_buffer`].
pub const PARSER_SLACK: usize = 16 * 1024;

/// The length of `METHOD target HTTP/1.1`, one `name: value` line per field and the
/// empty line, each line ending with CRLF: the head as a client writes it with one
/// space after each colon. It is what arrived, give or take a byte a field (a client
/// may leave the space out, or pad the value, which the parser trims) and the `/` of
/// an absolute target without a path. An HTTP/2 request is counted the same way, its
/// target as the absolute URI its pseudo-fields make.
pub fn request_head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + "://".len());
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    let request_line = req.method().as_str().len() + 1 + scheme + authority + path + 1 + 8 + 2;
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    request_line + fields + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `raw` as hyper would and builds the request from it.
    fn parsed(raw: &str) -> Request<()> {
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Request::new(&mut fields);
        assert!(r.parse(raw.as_bytes()).unwrap().is_complete(), "{raw}");
        let mut b = Request::builder()
            .method(r.method.unwrap())
            .uri(r.path.unwrap());
        for h in r.headers.iter() {
            b = b.header(h.name, h.value);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn a_head_written_with_one_space_after_each_colon_counts_as_it_arrived() {
        for raw in [
            "GET http://a.test/x?y=1 HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n\r\n",
            "GET /origin/form HTTP/1.1\r\nHost: a.test\r\n\r\n",
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n",
            // A name given twice is two lines, counted twice.
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-A: 22\r\nCookie: c=1\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(request_head_size(&parsed(raw)), raw.len(), "{raw:?}");
        }
    }

    #[test]
    fn other_spellings_count_within_a_byte_a_field() {
        // No space after the colon: one byte more a field; padding: less.
        let raw = "GET /x HTTP/1.1\r\nHost:a\r\nX-A:1\r\n\r\n";
        assert_eq!(request_head_size(&parsed(raw)), raw.len() + 2);
        let raw = "GET /x HTTP/1.1\r\nHost:    a   \r\n\r\n";
        assert!(request_head_size(&parsed(raw)) < raw.len());
        // An absolute target without a path is counted with its `/`.
        let raw = "GET http://a.test HTTP/1.1\r\nHost: a.test\r\n\r\n";
        assert!(request_head_size(&parsed(raw)) <= raw.len() + 1);
    }

    #[test]
    fn a_long_field_counts_in_full() {
        let big = "v".repeat(96 * 1024);
        let raw = format!("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX-Big: {big}\r\n\r\n");
        let req = Request::builder()
            .uri("http://a.test/")
            .header("host", "a.test")
            .header("x-big", big.as_str())
            .body(())
            .unwrap();
        assert_eq!(request_head_size(&req), raw.len());
    }
}
