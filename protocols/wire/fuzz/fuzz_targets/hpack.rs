//! Fuzz target: HPACK decoding of arbitrary header blocks.
//!
//! Properties: it never panics, and it is deterministic: the same blocks give the same fields
//! and results on a fresh decoder. The first byte chooses where the input is cut into blocks,
//! so the dynamic table carries entries from one block to the next.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_wire::hpack::{Decoder, HpackError};

type Decoded = Vec<Result<Vec<(Vec<u8>, Vec<u8>)>, HpackError>>;

fn run(blocks: &[&[u8]]) -> Decoded {
    let mut decoder = Decoder::new(4096);
    let mut results = Vec::new();
    for block in blocks {
        let mut fields = Vec::new();
        let result = decoder.decode(block, |n, v| fields.push((n.to_vec(), v.to_vec())));
        let failed = result.is_err();
        results.push(result.map(|()| fields));
        if failed {
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
