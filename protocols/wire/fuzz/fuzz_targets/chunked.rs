//! Fuzz target: the chunked body decoder fed arbitrary bytes in arbitrary
//! pieces.
//!
//! Properties: it never panics; it never yields more than `max_body` bytes
//! nor an empty Data; and the outcome (the data, the error or the end, and
//! what is left after the end) does not depend on how the input was split.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard_wire::chunked::{ChunkedDecoder, ChunkedError, Decoded};

#[derive(Debug, PartialEq, Eq)]
enum End {
    Done(Vec<u8>),
    Error(ChunkedError),
    NeedMore,
}

/// Feeds `input` in pieces whose lengths come from `splits` (cycled; 0
/// means "the rest at once").
fn run(input: &[u8], splits: &[u8], max_body: u64) -> (Vec<u8>, End) {
    let mut decoder = ChunkedDecoder::new(max_body);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut rest = input;
    let mut sizes = splits.iter().cycle();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(data)) => {
                assert!(!data.is_empty(), "empty Data");
                body.extend_from_slice(&data);
                assert!(
                    body.len() as u64 <= max_body,
                    "{} bytes over max_body {max_body}",
                    body.len()
                );
            }
            Ok(Decoded::NeedMore) => {
                if rest.is_empty() {
                    return (body, End::NeedMore);
                }
                let size = match sizes.next() {
                    Some(&0) | None => rest.len(),
                    Some(&n) => usize::from(n).min(rest.len()),
                };
                let (piece, tail) = rest.split_at(size);
                buf.extend_from_slice(piece);
                rest = tail;
            }
            Ok(Decoded::Done) => {
                let mut left = buf.to_vec();
                left.extend_from_slice(rest);
                return (body, End::Done(left));
            }
            Err(err) => return (body, End::Error(err)),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // First byte: max_body; next four: the split pattern; the rest: input.
    let [max, s0, s1, s2, s3, input @ ..] = data else {
        return;
    };
    let max_body = u64::from(*max) * 8;
    let whole = run(input, &[0], max_body);
    let split = run(input, &[*s0, *s1, *s2, *s3], max_body);
    assert_eq!(whole, split, "outcome depends on the split");
    let bytewise = run(input, &[1], max_body);
    assert_eq!(whole, bytewise, "outcome differs byte at a time");
});
