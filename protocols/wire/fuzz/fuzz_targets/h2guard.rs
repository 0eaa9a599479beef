//! Fuzz target: the HTTP/2 frame guard on arbitrary client bytes, whole and split.
//!
//! Properties: it never panics; a verdict's `at` lies within the slice it was given; and the
//! verdict does not depend on how the bytes were split into reads (the same first verdict, at
//! the same absolute offset, whether fed whole or in the pieces the first byte chooses).

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use switchyard_wire::h2guard::{FloodLimits, FrameGuard, Verdict};

/// The first verdict and the absolute offset of the frame it blames (`None` for floods).
fn first_verdict(data: &[u8], piece: usize, now: Instant) -> Option<(Verdict, Option<usize>)> {
    let mut guard = FrameGuard::new(FloodLimits::default());
    let mut offset = 0;
    for chunk in data.chunks(piece.max(1)) {
        if let Some(verdict) = guard.observe(chunk, now) {
            let at = match verdict {
                Verdict::FrameSize { at } | Verdict::NoSettingsFirst { at } => {
                    assert!(at <= chunk.len(), "at {at} beyond a read of {}", chunk.len());
                    Some(offset + at)
                }
                Verdict::Flood(_) => None,
            };
            return Some((verdict, at));
        }
        offset += chunk.len();
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, rest)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let whole = first_verdict(rest, rest.len(), now);
    let split = first_verdict(rest, usize::from(piece), now);
    match (whole, split) {
        (None, None) => {}
        (Some((a, None)), Some((b, None))) => assert_eq!(a, b),
        // A frame header split across reads is blamed from the start of the read that
        // completes it; whole, it is blamed where it starts: never later.
        (Some((a, Some(x))), Some((b, Some(y)))) => {
            assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b));
            assert!(y <= x + 9 && x <= y + 9, "whole at {x}, split at {y}");
        }
        (a, b) => panic!("verdict depends on the split: whole {a:?}, split {b:?}"),
    }
});
