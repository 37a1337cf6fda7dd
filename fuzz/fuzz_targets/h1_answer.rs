//! A site's answer as the plain-HTTP path reads it (`action::h1`): the head parsed with
//! `httparse` into `http` types, the framing chosen (RFC 9112 §6.3), the body decoded
//! (`Content-Length`, chunked with extensions and trailers, or up to the close).
//!
//! Input: one byte of options (bit 0: the request was `HEAD`; the other bits: how many
//! bytes arrive at a time, 1 to 127), then the answer's bytes.
//!
//! Besides "never panics", checked:
//! - the outcome does not depend on how the bytes arrive: fed all at once, fed
//!   `step` bytes at a time and fed one byte at a time, the same head, data and end.
//!   One allowance: a garbled head is refused at once when it comes whole, but when
//!   it trickles in it is parsed again only once an empty line has come (linear time),
//!   so without one it may still be waiting for more;
//! - an answer carrying both `Transfer-Encoding` and `Content-Length` is never accepted
//!   (a response-splitting vector), nor two different lengths;
//! - a `Content-Length` body never yields more than its length; a `HEAD`, 204 or 304
//!   answer yields no body;
//! - a connection is kept only when the body ends by its framing, never at the close.
#![no_main]

use charte_proxy::action::h1::fuzzing::{Outcome, answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&opts, input)) = data.split_first() else {
        return;
    };
    let head_request = opts & 1 == 1;
    let step = usize::from(opts >> 1).max(1);
    let whole = answer(input, head_request, usize::MAX);
    for step in [step, 1] {
        let fed = answer(input, head_request, step);
        if matches!(whole, Outcome::BadHead(_)) {
            assert!(
                matches!(fed, Outcome::BadHead(_) | Outcome::PartialHead),
                "fed {step} at a time: {fed:?} where the whole answer was refused"
            );
        } else {
            assert_eq!(whole, fed, "fed {step} at a time");
        }
    }
    let Outcome::Answer {
        status,
        headers,
        framing,
        keep,
        body,
        end,
    } = whole
    else {
        return;
    };
    assert!(
        !(headers.contains_key("transfer-encoding") && headers.contains_key("content-length")
            && !head_request && !matches!(status, 100..=199 | 204 | 304)),
        "both framings accepted: {framing}"
    );
    if let Some(rest) = framing.strip_prefix("Length(") {
        let n: u64 = rest.trim_end_matches(')').parse().unwrap();
        assert!(body.len() as u64 <= n, "{} bytes for a length of {n}", body.len());
        let values: Vec<_> = headers.get_all("content-length").iter().collect();
        assert!(!values.is_empty());
    }
    if head_request || matches!(status, 204 | 304) {
        assert!(body.is_empty() && framing == "Done");
    }
    if framing == "Eof" {
        assert!(!keep, "kept a connection whose body ends at the close");
        assert_ne!(end, Ok(true));
    }
});
