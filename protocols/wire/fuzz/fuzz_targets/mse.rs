//! Fuzz target: the MSE responder on arbitrary input, fed in chunks whose sizes come from the
//! input itself.
//!
//! Properties: it never panics; it asks to send at most once (Yb and PadB), and that reply is
//! a 96-byte key plus at most 512 bytes of padding; after an error or completion nothing more
//! is consumed. (Random bytes cannot reach past the synchronisation hash, which needs the DH
//! secret; the unit tests drive the later states with a real initiator.)

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard_wire::mse::{KEY_LEN, MAX_PAD, RANDOM_LEN, Responder, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let random: [u8; RANDOM_LEN] = std::array::from_fn(|i| (i as u8) ^ seed);
    let mut responder = Responder::new(&random);
    let mut input = BytesMut::new();
    let mut sent = 0;
    let mut at = 0;
    while at < rest.len() {
        let chunk = 1 + usize::from(rest[at]) % 97;
        let end = (at + chunk).min(rest.len());
        input.extend_from_slice(&rest[at..end]);
        at = end;
        match responder.poll(&mut input, |_| Some([7; 20])) {
            Ok(Step::Send(reply)) => {
                sent += 1;
                assert_eq!(sent, 1, "Yb sent twice");
                assert!(reply.len() >= KEY_LEN && reply.len() <= KEY_LEN + MAX_PAD);
            }
            Ok(Step::Need) => {}
            Ok(Step::Done(_)) | Err(_) => return,
        }
    }
});
