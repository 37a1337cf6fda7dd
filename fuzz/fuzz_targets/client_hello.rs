//! `action::client_hello::parse`, the ClientHello peek of CONNECT tunnels, on arbitrary
//! bytes. Besides "never panics", the documented contract:
//!
//! - `Incomplete(n)` asks for more than the buffer holds, and never more than
//!   `MAX_HELLO`; giving it exactly `n` bytes (the input, zero-padded) does not ask for
//!   `n` or fewer again, so `peek`'s read loop always makes progress;
//! - a parsed hello does not depend on bytes after it (early data): the input with
//!   bytes appended parses the same;
//! - the SNI is 1–255 bytes of lower-case printable ASCII;
//! - the SNI goes on to `Host::parse` (as `check_hello` does), which must not panic.
#![no_main]

use charte_proxy::action::client_hello::{HelloError, MAX_HELLO, parse};
use charte_proxy::classify::Host;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(hello) => {
            if let Some(sni) = &hello.sni {
                assert!((1..=255).contains(&sni.len()), "SNI length {}", sni.len());
                assert!(
                    sni.bytes()
                        .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()),
                    "SNI {sni:?} not lower-case printable ASCII"
                );
                let _ = Host::parse(sni);
            }
            let mut longer = data.to_vec();
            longer.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x01, 0x01, 0xff]);
            assert_eq!(
                parse(&longer).as_ref(),
                Ok(&hello),
                "bytes after the hello changed the result"
            );
        }
        Err(HelloError::Incomplete(n)) => {
            assert!(n > data.len(), "Incomplete({n}) with {} bytes", data.len());
            assert!(n <= MAX_HELLO, "Incomplete({n}) above MAX_HELLO");
            let mut padded = data.to_vec();
            padded.resize(n, 0);
            if let Err(HelloError::Incomplete(m)) = parse(&padded) {
                assert!(
                    m > n,
                    "Incomplete({n}), then Incomplete({m}) with {n} bytes"
                );
            }
        }
        Err(_) => {}
    }
});
