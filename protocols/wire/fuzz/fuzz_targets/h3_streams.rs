//! Fuzz target: what a client sends on HTTP/3 streams (RFC 9114, RFC 9204).
//!
//! The first byte chooses the stream (request, control, QPACK encoder or decoder) and the size
//! of the pieces the rest arrives in. Properties: nothing panics, and the pieces do not matter:
//! the same bytes read whole give the same parts (DATA joined) and the same outcome. Every
//! field section of a request stream is also decoded and checked as a request head.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard_wire::h3::{
    ControlReader, Decoder, H3Error, Part, RequestReader, decode_request, decode_trailers, qpack,
};

#[derive(Debug, PartialEq)]
enum Seen {
    Part(Part),
    Control(switchyard_wire::h3::Control),
}

/// What reading `input` in pieces of `piece` octets yields, and how it ends.
fn read(kind: u8, input: &[u8], piece: usize) -> (Vec<Seen>, Result<(), H3Error>) {
    let mut request = RequestReader::new(256);
    let mut control = ControlReader::default();
    let mut buf = BytesMut::new();
    let mut seen: Vec<Seen> = Vec::new();
    for chunk in input.chunks(piece) {
        buf.extend_from_slice(chunk);
        let step = match kind {
            0 => loop {
                match request.next(&mut buf) {
                    Ok(Some(Part::Data(more))) => match seen.last_mut() {
                        Some(Seen::Part(Part::Data(prev))) => {
                            let mut both = BytesMut::from(&prev[..]);
                            both.extend_from_slice(&more);
                            *prev = both.freeze();
                        }
                        _ => seen.push(Seen::Part(Part::Data(more))),
                    },
                    Ok(Some(part)) => seen.push(Seen::Part(part)),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            },
            1 => loop {
                match control.next(&mut buf) {
                    Ok(Some(c)) => seen.push(Seen::Control(c)),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            },
            2 => qpack::encoder_instructions(&mut buf),
            _ => qpack::decoder_instructions(&mut buf),
        };
        if let Err(e) = step {
            return (seen, Err(e));
        }
    }
    let end = if kind == 0 { request.finish(&buf) } else { Ok(()) };
    (seen, end)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let kind = first & 3;
    let piece = usize::from(first >> 2).max(1);
    let whole = read(kind, input, input.len().max(1));
    let pieces = read(kind, input, piece);
    assert_eq!(whole, pieces);
    let mut decoder = Decoder::default();
    let mut heads = 0;
    for seen in &whole.0 {
        if let Seen::Part(Part::Headers(section)) = seen {
            let first = decode_request(&mut decoder, section, 4096);
            assert_eq!(first.is_ok(), decode_request(&mut decoder, section, 4096).is_ok());
            if heads > 0 {
                let _ = decode_trailers(&mut decoder, section, 4096);
            }
            heads += 1;
        }
    }
});
