//! Fuzz target: HPACK header block checks on arbitrary blocks.
//!
//! Properties: it never panics, and it is deterministic: the same blocks give the same results
//! on a fresh state. The first byte chooses where the input is cut into blocks, so the dynamic
//! table carries entries from one block to the next.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_wire::hpack::{HpackCheck, HpackError};

fn run(blocks: &[&[u8]]) -> Vec<Result<(), HpackError>> {
    let mut check = HpackCheck::new(4096);
    let mut results = Vec::new();
    for block in blocks {
        let result = check.block(block);
        results.push(result);
        if result.is_err() {
            break;
        }
    }
    results
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, rest)) = data.split_first() else {
        return;
    };
    let blocks: Vec<&[u8]> = rest.chunks(usize::from(piece).max(1)).collect();
    assert_eq!(run(&blocks), run(&blocks));
});
