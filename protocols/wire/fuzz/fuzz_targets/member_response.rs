//! Fuzz target: a member's response as the proxy reads it — the head parser, then a chunked
//! body whose trailers are kept and parsed.
//!
//! Properties: nothing panics; a complete head says how long it is, and within the input; the
//! same bytes give the same head whether or not more bytes follow it; every strict prefix of a
//! complete head asks for more; the fields handed back parse back into a map and never include framing,
//! hop-by-hop or server-owned ones; a HEAD answer never has a body.

#![no_main]

use bytes::BytesMut;
use http::{Method, header};
use libfuzzer_sys::fuzz_target;
use switchyard_wire::chunked::{ChunkedDecoder, Decoded};
use switchyard_wire::client::{ResponseBody, parse_field_lines, parse_response_head, parse_trailers};

fuzz_target!(|data: &[u8]| {
    let max_head = 4096;
    for method in [Method::GET, Method::HEAD] {
        let Ok(Some(head)) = parse_response_head(data, &method, max_head) else {
            continue;
        };
        assert!(head.len <= data.len() && head.len <= max_head);
        let fields = parse_field_lines(&head.fields).expect("kept lines parse back");
        for name in [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
            header::UPGRADE,
            header::TE,
            header::SERVER,
            header::DATE,
        ] {
            assert!(!fields.contains_key(&name), "{name} forwarded");
        }
        if method == Method::HEAD {
            assert_eq!(head.body, ResponseBody::None);
        }
        let alone = parse_response_head(&data[..head.len], &method, max_head)
            .expect("the head alone parses")
            .expect("the head alone is complete");
        assert_eq!(
            (alone.status, alone.body, alone.keep_alive, alone.len),
            (head.status, head.body, head.keep_alive, head.len)
        );
        for cut in [0, head.len / 2, head.len.saturating_sub(1)] {
            if cut < head.len {
                assert!(matches!(
                    parse_response_head(&data[..cut], &method, max_head),
                    Ok(None)
                ));
            }
        }
        if head.body == ResponseBody::Chunked {
            let mut decoder = ChunkedDecoder::keeping_trailers(u64::MAX);
            let mut buf = BytesMut::from(&data[head.len..]);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Decoded::Data(d)) => assert!(!d.is_empty()),
                    Ok(Decoded::Done) => {
                        if let Some(lines) = decoder.take_trailers() {
                            if let Ok(t) = parse_trailers(&lines) {
                                assert!(!t.contains_key(header::CONTENT_LENGTH));
                            }
                        }
                        break;
                    }
                    Ok(Decoded::NeedMore) | Err(_) => break,
                }
            }
        }
    }
});
