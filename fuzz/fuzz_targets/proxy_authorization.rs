//! The `Proxy-Authorization` value as the proxy reads it before any password check or
//! GSSAPI call: its scheme (`negotiate::scheme_of`), the Negotiate token's framing
//! (`negotiate::parse_negotiate`) and Basic's (`auth::parse_basic`), on arbitrary bytes
//! (a header value is bytes: hyper does not promise UTF-8).
//!
//! Besides "never panics":
//! - a value read as a Negotiate token has the Negotiate scheme, a non-empty token no
//!   longer than the base64 it came from allows, and the value is at most
//!   `MAX_NEGOTIATE_HEADER` long; the token written back as `Negotiate <base64>` reads
//!   as the same token (what reaches GSSAPI does not depend on the spelling);
//! - a value read as Basic credentials has the Basic scheme and a user without `:`; the
//!   credentials written back read as the same ones (within the 4 KiB Basic reads);
//! - a value is never both.
#![no_main]

use base64::Engine as _;
use charte_proxy::identity::auth::parse_basic;
use charte_proxy::identity::negotiate::{MAX_NEGOTIATE_HEADER, Scheme, parse_negotiate, scheme_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let scheme = scheme_of(data);
    let negotiate = parse_negotiate(data);
    let basic = parse_basic(data);
    if let Ok(token) = &negotiate {
        assert_eq!(scheme, Scheme::Negotiate, "{data:?}");
        assert!(!token.is_empty(), "{data:?}");
        assert!(data.len() <= MAX_NEGOTIATE_HEADER);
        assert!(token.len() <= data.len() * 3 / 4 + 3, "{data:?}");
        let again = format!(
            "Negotiate {}",
            base64::engine::general_purpose::STANDARD.encode(token)
        );
        assert_eq!(parse_negotiate(again.as_bytes()).as_ref(), Ok(token));
        assert!(basic.is_none(), "{data:?} is Negotiate and Basic");
    }
    if let Some((user, password)) = &basic {
        assert_eq!(scheme, Scheme::Basic, "{data:?}");
        assert!(!user.contains(':'), "{data:?}");
        let again = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        // Credentials read as ISO-8859-1 grow when written back in UTF-8: past the
        // 4 KiB that `parse_basic` reads, the value is refused, as it should be.
        if again.len() <= 4096 {
            assert_eq!(
                parse_basic(again.as_bytes()).as_ref(),
                Some(&(user.clone(), password.clone()))
            );
        }
    }
});
