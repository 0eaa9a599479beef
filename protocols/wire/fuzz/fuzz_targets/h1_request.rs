//! Fuzz target: `parse_request_head` on arbitrary bytes with small limits.
//!
//! Properties: it never panics; a Complete head consumed at least one byte
//! and no more than it was given; a Partial is only ever returned for a
//! buffer within `H1Limits::max_head_len` (the session relies on that to
//! bound its buffer). For short inputs, every prefix is parsed too, as a
//! session would see the bytes arrive: once a prefix is refused every longer
//! one is, and once a prefix is Complete every longer one is Complete with
//! the same head length. A connection's Host memo never changes an outcome:
//! parsing the input again with the memo its first parse primed gives the
//! same result and the same host.

#![no_main]

use http::Version;
use libfuzzer_sys::fuzz_target;
use switchyard_wire::h1::{
    H1Limits, HostMemo, Parse, RequestError, parse_request_head, parse_request_head_with,
};

/// Prefix checks cost a parse per byte; keep them to inputs this short.
const PREFIX_CHECK_MAX: usize = 300;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Outcome {
    Partial,
    Complete(usize),
    Refused(RequestError),
}

fn check(input: &[u8], limits: &H1Limits) -> Outcome {
    match parse_request_head(input, limits) {
        Ok(Parse::Complete(head, used)) => {
            assert!(
                used > 0 && used <= input.len(),
                "consumed {used} of {}",
                input.len()
            );
            assert!(head.version == Version::HTTP_10 || head.version == Version::HTTP_11);
            Outcome::Complete(used)
        }
        Ok(Parse::Partial) => {
            assert!(
                input.len() <= limits.max_head_len(),
                "Partial for {} bytes",
                input.len()
            );
            Outcome::Partial
        }
        Err(err) => {
            let _ = err.status();
            Outcome::Refused(err)
        }
    }
}

/// What the memo could change: the outcome and the host.
fn host_of(parsed: Result<Parse, RequestError>) -> Result<Option<(usize, Option<String>)>, RequestError> {
    match parsed? {
        Parse::Complete(head, used) => Ok(Some((used, head.host))),
        Parse::Partial => Ok(None),
    }
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the limits, so that limit edges are hit
    // without multi-kilobyte inputs; the rest is the buffer.
    let [a, b, input @ ..] = data else { return };
    let limits = H1Limits {
        max_request_line: 8 + usize::from(*a),
        max_header_bytes: 4 + usize::from(*b) * 2,
        max_headers: 1 + usize::from(*a % 16) + usize::from(*b % 2) * 200,
    };
    let whole = check(input, &limits);
    let mut memo = HostMemo::default();
    let first = host_of(parse_request_head_with(input, &limits, &mut memo));
    let again = host_of(parse_request_head_with(input, &limits, &mut memo));
    assert_eq!(first, again);
    if input.len() > PREFIX_CHECK_MAX {
        return;
    }
    let mut previous = Outcome::Partial;
    for len in 0..=input.len() {
        let Some(prefix) = input.get(..len) else {
            return;
        };
        let now = check(prefix, &limits);
        match previous {
            Outcome::Partial => {}
            Outcome::Complete(used) => assert_eq!(now, Outcome::Complete(used), "at {len}"),
            Outcome::Refused(_) => assert!(
                matches!(now, Outcome::Refused(_)),
                "refused, then {now:?} at {len}"
            ),
        }
        previous = now;
    }
    assert_eq!(previous, whole);
});
