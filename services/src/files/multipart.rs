//! Framing several byte ranges as `multipart/byteranges` (RFC 9110 §14.6).
//!
//! The body is a list of [`BodyPart`]s: small `Bytes` for the boundary lines and part headers,
//! and for each range whatever the caller's `data` function returns (a slice of cached bytes or
//! a [`crate::FileRange`] of the open file), so a multi-range response of a large file is
//! never copied into memory.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::range::content_range;
use crate::message::BodyPart;

/// A fresh boundary. It must not occur in the content (§14.6 via RFC 2046 §5.1.1); a random
/// 64-bit value per response makes that as unlikely as guessing it, and different responses
/// never share one.
pub fn boundary() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // `RandomState::new` is randomly keyed per process and differs on every call.
    let random = RandomState::new().hash_one(n);
    format!("switchyard-{random:016x}")
}

/// The `Content-Type` value of the whole response.
pub fn content_type(boundary: &str) -> String {
    format!("multipart/byteranges; boundary={boundary}")
}

/// The parts of a `multipart/byteranges` body: for each range a boundary delimiter, the part's
/// `Content-Type` and `Content-Range` (§14.6: "each body part ... contains a Content-Range
/// header field"), an empty line and the data; then the close delimiter.
pub fn parts(
    boundary: &str,
    part_type: &str,
    ranges: &[Range<u64>],
    complete_length: u64,
    mut data: impl FnMut(Range<u64>) -> BodyPart,
) -> Vec<BodyPart> {
    let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
    for (i, range) in ranges.iter().enumerate() {
        // RFC 2046 §5.1.1: the CRLF before a delimiter belongs to the delimiter; the first
        // delimiter needs none.
        let lead = if i == 0 { "" } else { "\r\n" };
        let head = format!(
            "{lead}--{boundary}\r\nContent-Type: {part_type}\r\nContent-Range: {}\r\n\r\n",
            content_range(range, complete_length)
        );
        parts.push(BodyPart::Bytes(Bytes::from(head)));
        parts.push(data(range.clone()));
    }
    parts.push(BodyPart::Bytes(Bytes::from(format!(
        "\r\n--{boundary}--\r\n"
    ))));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let content = Bytes::from_static(b"0123456789abcdefghij");
        let parts = parts("B", "text/plain", &[0..3, 10..12], 20, |r| {
            BodyPart::Bytes(content.slice(r.start as usize..r.end as usize))
        });
        let mut body = Vec::new();
        for part in &parts {
            match part {
                BodyPart::Bytes(b) => body.extend_from_slice(b),
                BodyPart::File(_) => unreachable!("only bytes here"),
            }
        }
        let expected = "--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-2/20\r\n\r\n012\
                        \r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 10-11/20\r\n\r\nab\
                        \r\n--B--\r\n";
        assert_eq!(String::from_utf8_lossy(&body), expected);
    }

    #[test]
    fn boundaries_differ() {
        let (a, b) = (boundary(), boundary());
        assert_ne!(a, b);
        assert!(a.len() <= 70, "RFC 2046 limits boundaries to 70 characters");
        assert!(content_type(&a).starts_with("multipart/byteranges; boundary=switchyard-"));
    }
}
