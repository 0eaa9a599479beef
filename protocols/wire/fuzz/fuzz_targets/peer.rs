//! Fuzz target: the seed's peer-wire state machine on arbitrary peer bytes.
//!
//! The bytes are framed as the session frames them (length prefix checked first, then
//! `librqbit-peer-protocol` decodes); the first byte picks the torrent's shape, and every
//! message's first payload byte decides whether the choker unchokes the peer. Properties: no
//! panic; every block we would send lies inside the torrent and is at most 16 KiB; the request
//! queue never exceeds its bound; metadata answers name existing pieces; a violation ends the run.

#![no_main]

use std::cell::Cell;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use librqbit_peer_protocol::Message;
use switchyard_wire::peer::{
    MAX_BLOCK, METADATA_PIECE, PeerLimits, PeerWire, TorrentShape, Transmit,
};

thread_local! {
    /// Set while the codec runs: its panics are caught, every other one aborts as usual.
    static IN_CODEC: Cell<bool> = const { Cell::new(false) };
}

fuzz_target!(init: {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_CODEC.with(Cell::get) {
            abort(info);
        }
    }));
}, |data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let shape = TorrentShape {
        piece_length: 16384 << (first % 4),
        total_length: 1 + u64::from(first) * 40_000,
        metadata_length: 1 + u32::from(first) * 300,
    };
    let limits = PeerLimits {
        request_queue: 8,
        idle_timeout: Duration::from_secs(120),
    };
    let mut now = Instant::now();
    let mut wire = PeerWire::new(shape, limits, first & 1 == 1, now);
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if wire.check_length(len).is_err() {
            return;
        }
        let total = 4 + len as usize;
        if rest.len() < total {
            return;
        }
        // The codec is librqbit's, and its bencode integers overflow (a panic with overflow
        // checks on) on long digit runs; the session catches that, so this target does too and
        // fuzzes the state machine behind it. A panic in the state machine still aborts.
        let frame = &rest[..total];
        IN_CODEC.with(|c| c.set(true));
        let decoded = std::panic::catch_unwind(|| Message::deserialize(frame, &[]));
        IN_CODEC.with(|c| c.set(false));
        let Ok(Ok((msg, used))) = decoded else {
            return;
        };
        assert!(used <= total);
        now += Duration::from_millis(10);
        if wire.handle_message(&msg, now).is_err() {
            return;
        }
        assert!(wire.queued_blocks() <= limits.request_queue);
        wire.set_choked(rest.get(4).is_some_and(|b| b & 1 == 1) || !wire.interested());
        while let Some(t) = wire.poll_transmit(now) {
            match t {
                Transmit::Block(b) => {
                    assert!(b.length <= MAX_BLOCK && b.length > 0);
                    assert!(b.offset(&shape) + u64::from(b.length) <= shape.total_length);
                }
                Transmit::MetadataData { piece, .. } => {
                    assert!(piece * METADATA_PIECE < shape.metadata_length);
                }
                _ => {}
            }
        }
        rest = &rest[total..];
    }
    let _ = wire.handle_timeout(now + Duration::from_secs(3600));
});
