//! Fuzz target: RFC 9218 priority parameters from arbitrary field values.
//!
//! Properties: parsing never panics, the urgency stays within 0..=7, and a value that is a
//! valid Dictionary keeps its meaning when more members follow it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_wire::priority::Priority;

fuzz_target!(|data: &[u8]| {
    let p = Priority::parse(data);
    assert!(p.urgency <= 7);
    // An unknown member appended after a value that parsed changes nothing.
    if !data.is_empty() && data.iter().all(|c| (0x20..0x7f).contains(c)) {
        let mut longer = data.to_vec();
        longer.extend_from_slice(b", zz=1");
        // Both parse, with one meaning, or neither does (defaults).
        assert_eq!(
            p,
            Priority::parse(&longer),
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
});
