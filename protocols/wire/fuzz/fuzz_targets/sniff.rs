//! Fuzz target: `classify` on arbitrary bytes and on every prefix of them.
//!
//! Properties: it never panics; `Need(n)` always asks for more than it was
//! given; once a prefix is decided every longer prefix gets the same answer;
//! and no prefix shorter than the first decided one was promised an answer
//! later than it came (`Need(n)` with `n` beyond the deciding length).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_wire::sniff::{Sniff, classify};

fuzz_target!(|data: &[u8]| {
    let mut decided = None;
    let mut largest_need = 0;
    for len in 0..=data.len() {
        let Some(prefix) = data.get(..len) else {
            return;
        };
        match classify(prefix) {
            Sniff::Need(n) => {
                assert!(decided.is_none(), "Need after a decision at {len}");
                assert!(n > len, "Need({n}) for {len} bytes");
                largest_need = largest_need.max(n);
            }
            Sniff::Is(protocol) => {
                if let Some((earlier, _)) = decided {
                    assert_eq!(earlier, protocol, "answer changed at {len}");
                } else {
                    assert!(
                        largest_need <= len,
                        "Need({largest_need}) but decided at {len}"
                    );
                    decided = Some((protocol, len));
                }
            }
        }
    }
});
