//! Fuzz target: the HTTP/2 server connection fed arbitrary client bytes after a valid preface
//! and SETTINGS, in reads whose size the first byte chooses.
//!
//! Properties: it never panics; every request it announces can be answered (head, a body, and
//! trailers on every third) without an error while the stream is open, whenever the input
//! chooses to answer it and to release it; the frames it writes always parse (a 9-octet header
//! and the length it announces); and once it reports a connection error it takes no more
//! input.

#![no_main]

use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use switchyard_wire::h2::frame::{HEADER_LEN, PREFACE, put_settings};
use switchyard_wire::h2::{Conn, Event, Settings};

fn check_frames(out: &mut BytesMut) {
    while !out.is_empty() {
        assert!(out.len() >= HEADER_LEN, "partial frame header");
        let len = usize::from(out[0]) << 16 | usize::from(out[1]) << 8 | usize::from(out[2]);
        assert!(out.len() >= HEADER_LEN + len, "frame longer than written");
        out.advance(HEADER_LEN + len);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, rest)) = data.split_first() else {
        return;
    };
    let mut conn = Conn::new(Settings {
        max_concurrent_streams: 8,
        ..Settings::default()
    });
    let mut input = BytesMut::from(&PREFACE[..]);
    put_settings(&mut input, &[]);
    let now = Instant::now();
    conn.recv(&mut input, now).expect("a valid handshake");
    let mut buf = BytesMut::new();
    let mut answered = 0u32;
    // Streams announced and not yet answered, and answered ones not yet released: the input
    // decides when each step happens, so frames also arrive between a stream's answer and its
    // release, and after it.
    let mut waiting: Vec<u32> = Vec::new();
    let mut held: Vec<u32> = Vec::new();
    for chunk in rest.chunks(usize::from(piece).max(1)) {
        let control = chunk.first().copied().unwrap_or(0);
        buf.extend_from_slice(chunk);
        let failed = conn.recv(&mut buf, now).is_err();
        while let Some(event) = conn.next_event() {
            waiting.push(match event {
                Event::Request { id, .. } | Event::TooLarge { id } => id,
            });
        }
        if control & 1 == 0 {
            for id in waiting.drain(..) {
                if !conn.is_open(id) {
                    continue;
                }
                answered += 1;
                conn.send_head(id, 200, &HeaderMap::new(), false).expect("open stream");
                if answered % 3 == 0 {
                    conn.send_data(id, Bytes::from_static(b"body"), false).expect("open");
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().expect("valid"));
                    conn.send_trailers(id, trailers).expect("open");
                } else {
                    conn.send_data(id, Bytes::from(vec![0u8; 40_000]), true).expect("open");
                }
                held.push(id);
            }
        }
        if control & 2 == 0 {
            for id in held.drain(..) {
                conn.finish(id);
            }
        }
        conn.write_data(1 << 20);
        check_frames(&mut conn.out.take_all());
        if failed {
            assert!(conn.ended().is_some());
            let mut more = BytesMut::from(&b"\0\0\0\x06\0\0\0\0\0"[..]);
            assert!(conn.recv(&mut more, now).is_err());
            break;
        }
    }
});
