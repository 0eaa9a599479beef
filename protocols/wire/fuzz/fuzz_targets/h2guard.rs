//! Fuzz target: the HTTP/2 frame guard on arbitrary client bytes, whole and split.
//!
//! Properties: it never panics; a verdict's `at` lies within the slice it was given; the verdict
//! does not depend on how the bytes were split into reads (the same kind of first verdict,
//! whether fed whole or in the pieces the first byte chooses); and however the bytes were
//! split, what the library is handed stops before the end of the frame blamed.

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
            let at = verdict.at().map(|at| {
                assert!(at <= chunk.len(), "at {at} beyond a read of {}", chunk.len());
                offset + at
            });
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
        // Whole, a frame is blamed where it starts (`x`). Split, it is blamed from the start
        // of the read that completes its header or payload (`y`): at most a header's length
        // earlier, and never so late that the library already holds the whole frame.
        (Some((a, Some(x))), Some((b, Some(y)))) => {
            assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b));
            let header = &rest[x..x + 9];
            let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let end = x + 9 + len;
            assert!(x <= y + 9 && y < end, "whole at {x}, split at {y}, frame ends at {end}");
        }
        (a, b) => panic!("verdict depends on the split: whole {a:?}, split {b:?}"),
    }
});
