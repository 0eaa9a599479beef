//! HTTP/1.1 session rules (RFC 9112), shown against the real binary over raw sockets.
//!
//! Every hostile-input case ends by checking that the server still answers a normal request on
//! a fresh connection. Timeout tests set small values in a config file and wait on the socket
//! (EOF, reset or a 408) with a generous bound: they never sleep to synchronise.

use std::time::Duration;

use switchyard_interop::{
    CLOSE_TIMEOUT, Conn, IO_TIMEOUT, Response, Server, WebRoot, config, get, get_close, peak_rss,
};

const ALPHA: &[u8] = b"alpha\n";

/// A small site: `/a.txt` and fifty numbered files for pipelining.
fn site() -> WebRoot {
    let www = WebRoot::new();
    www.file("a.txt", ALPHA).file("b.txt", "bravo\n");
    for i in 0..50 {
        www.file(&format!("p/{i:02}.txt"), format!("file number {i:02}\n"));
    }
    www
}

fn serve(www: &WebRoot) -> Server {
    Server::serve(www.root()).start()
}

/// A server run from a config whose extra tables are `extra` (e.g. `[timeouts]`).
fn serve_with(www: &WebRoot, extra: &str) -> Server {
    Server::run_config(&config(www.root(), "", extra)).start()
}

/// Send `raw` on a fresh connection and expect one response with `status`, then a close.
fn expect_status_and_close(server: &Server, raw: &[u8], status: u16) -> Response {
    let mut conn = server.connect();
    conn.send(raw);
    let resp = conn.read_response();
    assert_eq!(
        resp.status,
        status,
        "request {:?} got {resp:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)])
    );
    let closed = conn.wait_closed(CLOSE_TIMEOUT);
    assert!(
        closed.closed,
        "connection left open after {status} for {:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)])
    );
    // Nothing after the error: bytes following a rejected request are never answered.
    assert!(
        closed.bytes.is_empty(),
        "more was answered after {status}: {:?}",
        String::from_utf8_lossy(&closed.bytes)
    );
    resp
}

/// Send `raw` on a fresh connection and expect one response with `status` (close optional).
fn expect_status(server: &Server, raw: &[u8], status: u16) -> Response {
    let mut conn = server.connect();
    conn.send(raw);
    let resp = conn.read_response();
    assert_eq!(
        resp.status,
        status,
        "request {:?} got {resp:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)])
    );
    resp
}

// ---- connection management -------------------------------------------------------------------

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    for i in 0..10 {
        let path = if i % 2 == 0 { "/a.txt" } else { "/b.txt" };
        let resp = conn.request(&get(path));
        assert_eq!(resp.status, 200, "request {i}");
        assert_eq!(resp.version, "HTTP/1.1");
        assert!(
            !resp.header_has_token("connection", "close"),
            "request {i} closed: {resp:?}"
        );
        let want: &[u8] = if i % 2 == 0 { ALPHA } else { b"bravo\n" };
        assert_eq!(resp.body, want);
    }
}

#[test]
fn pipelined_50_requests_in_one_write_are_answered_in_order() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    let batch: String = (0..50).map(|i| get(&format!("/p/{i:02}.txt"))).collect();
    conn.send(batch.as_bytes());
    for i in 0..50 {
        let resp = conn.read_response();
        assert_eq!(resp.status, 200, "response {i}");
        assert_eq!(
            resp.text(),
            format!("file number {i:02}\n"),
            "response {i} out of order"
        );
    }
    assert!(conn.buffered().is_empty(), "extra bytes after 50 responses");
}

#[test]
fn pipelining_1000_requests_without_reading_completes() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    // ~40 KB of requests, sent before reading anything: the server must apply backpressure
    // (stop reading while its answers are unread) without deadlock or loss.
    let batch: String = (0..1000)
        .map(|i| get(&format!("/p/{:02}.txt", i % 50)))
        .collect();
    conn.send(batch.as_bytes());
    for i in 0..1000 {
        let resp = conn.read_response();
        assert_eq!(
            resp.text(),
            format!("file number {:02}\n", i % 50),
            "response {i}"
        );
    }
}

#[test]
fn pipelined_requests_mixing_head_and_get_keep_framing() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    let batch = format!(
        "HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n{}HEAD /b.txt HTTP/1.1\r\nHost: x\r\n\r\n{}",
        get("/b.txt"),
        get("/a.txt")
    );
    conn.send(batch.as_bytes());
    let head = conn.read_head_response();
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("6"))
    );
    assert_eq!(conn.read_response().body, b"bravo\n");
    let head = conn.read_head_response();
    assert_eq!(head.status, 200);
    assert_eq!(
        conn.read_response().body,
        ALPHA,
        "HEAD response carried a body"
    );
}

#[test]
fn request_arriving_one_byte_at_a_time_is_answered() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    for b in get("/a.txt").bytes() {
        conn.send(&[b]);
        std::thread::sleep(Duration::from_millis(2)); // pacing, so bytes travel separately
    }
    let resp = conn.read_response();
    assert_eq!((resp.status, resp.body.as_slice()), (200, ALPHA));
}

#[test]
fn connection_close_is_honoured() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    let resp = conn.request(&get_close("/a.txt"));
    assert_eq!(resp.status, 200);
    assert!(resp.header_has_token("connection", "close"), "{resp:?}");
    assert!(
        conn.wait_closed(CLOSE_TIMEOUT).closed,
        "server kept the connection open"
    );
}

#[test]
fn http10_request_is_answered_and_closed() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    // HTTP/1.0 does not require Host (RFC 9112 §3.2 requires it of HTTP/1.1 only).
    let resp = conn.request("GET /a.txt HTTP/1.0\r\n\r\n");
    assert_eq!((resp.status, resp.body.as_slice()), (200, ALPHA));
    assert!(!resp.chunked, "chunked coding sent to an HTTP/1.0 client");
    assert!(
        conn.wait_closed(CLOSE_TIMEOUT).closed,
        "HTTP/1.0 connection left open"
    );
}

#[test]
fn http10_keep_alive_is_honoured() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    let req = "GET /a.txt HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n";
    let first = conn.request(req);
    assert_eq!(first.status, 200);
    assert!(
        first.header_has_token("connection", "keep-alive"),
        "{first:?}"
    );
    assert!(
        first.header("content-length").is_some(),
        "keep-alive needs a length: {first:?}"
    );
    let second = conn.request(req);
    assert_eq!((second.status, second.body.as_slice()), (200, ALPHA));
}

#[test]
fn absolute_form_target_is_served() {
    let www = site();
    let server = serve(&www);
    let req = format!(
        "GET http://{}/a.txt HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr(),
        server.addr()
    );
    let resp = server.connect().request(&req);
    assert_eq!((resp.status, resp.body.as_slice()), (200, ALPHA));
}

/// RFC 9112 §3.2.4: `OPTIONS *` asks about the server, not a resource: a 200 with an empty
/// body, and the connection stays open. `*` with any other method is refused.
#[test]
fn a_server_wide_options_is_answered_and_asterisk_form_is_only_for_options() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    let resp = conn.request("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("content-length"), Some("0"), "{resp:?}");
    assert_eq!(conn.request(&get("/a.txt")).body, ALPHA, "kept alive");
    expect_status_and_close(&server, b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn responses_carry_date_header() {
    let www = site();
    let server = serve(&www);
    let resp = server.get("/a.txt");
    let date = resp.header("date").expect("Date header (RFC 9110 §6.6.1)");
    assert!(date.ends_with(" GMT"), "Date not in IMF-fixdate: {date}");
}

// ---- request bodies ---------------------------------------------------------------------------

/// A body sent to a location whose service ignores it (static files) is read and dropped as it
/// arrives, by length and chunked: the connection holds a read buffer, not the body, so a
/// large `max_body` does not let each connection pin that much memory. The request is still
/// answered and the connection kept.
#[test]
fn a_body_sent_to_static_files_is_dropped_as_it_arrives_not_held() {
    const BODY: usize = 192 << 20;
    let www = site();
    let server = serve_with(&www, "[limits]\nmax_body = \"256MiB\"\n");
    let mut conn = server.connect();
    let piece = vec![b'x'; 1 << 20];
    conn.send(
        format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: {BODY}\r\n\r\n").as_bytes(),
    );
    for _ in 0..BODY / piece.len() {
        conn.send(&piece);
    }
    let resp = conn.read_response();
    assert_eq!((resp.status, resp.body.as_slice()), (200, ALPHA));
    conn.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), &piece, b"\r\n"].concat();
    for _ in 0..BODY / piece.len() {
        conn.send(&chunk);
    }
    conn.send(b"0\r\n\r\n");
    let resp = conn.read_response();
    assert_eq!((resp.status, resp.body.as_slice()), (200, ALPHA));
    assert_eq!(conn.request(&get("/a.txt")).body, ALPHA, "kept alive");
    let peak = peak_rss(server.pid());
    assert!(
        peak < (BODY / 3) as u64,
        "peak RSS {peak} bytes after two {BODY}-byte bodies that nothing reads"
    );
}

#[test]
fn chunked_request_body_is_consumed_and_connection_reused() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    let req = "GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
               5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    conn.send(format!("{req}{}", get("/b.txt")).as_bytes());
    let first = conn.read_response();
    assert_eq!((first.status, first.body.as_slice()), (200, ALPHA));
    let second = conn.read_response();
    assert_eq!(
        (second.status, second.body.as_slice()),
        (200, b"bravo\n".as_slice()),
        "chunked body was not framed correctly"
    );
}

#[test]
fn chunked_body_with_extensions_and_trailers_is_framed() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    let req = "GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
               A;name=value\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n";
    conn.send(format!("{req}{}", get("/b.txt")).as_bytes());
    assert_eq!(conn.read_response().status, 200);
    let second = conn.read_response();
    assert_eq!(
        (second.status, second.body.as_slice()),
        (200, b"bravo\n".as_slice())
    );
}

#[test]
fn content_length_body_is_consumed_and_connection_reused() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    // The body looks like a request: if it were not consumed, three responses would come back.
    let body = get("/b.txt");
    let req = format!(
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.send(format!("{req}{}", get_close("/a.txt")).as_bytes());
    assert_eq!(conn.read_response().body, ALPHA);
    assert_eq!(
        conn.read_response().body,
        ALPHA,
        "body was parsed as a request"
    );
    assert!(conn.wait_closed(CLOSE_TIMEOUT).closed);
}

#[test]
fn invalid_chunk_size_is_400_and_close() {
    let www = site();
    let server = serve(&www);
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "5 5\r\nhello\r\n0\r\n\r\n",
        "ffffffffffffffffffff\r\nx\r\n0\r\n\r\n",
    ] {
        let req =
            format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        expect_status_and_close(&server, req.as_bytes(), 400);
    }
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn expect_100_continue_gets_interim_response_before_body() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    conn.send(
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = conn.read_response();
    assert_eq!(
        interim.status, 100,
        "expected 100 Continue before the body, got {interim:?}"
    );
    assert_eq!(interim.version, "HTTP/1.1");
    conn.send(b"hello");
    let resp = conn.read_response();
    assert_eq!((resp.status, resp.body.as_slice()), (200, ALPHA));
    // The connection is still usable.
    assert_eq!(conn.request(&get("/b.txt")).body, b"bravo\n");
}

#[test]
fn expect_100_continue_with_oversized_body_is_413_without_continue() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    conn.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\nExpect: 100-continue\r\n\r\n");
    let resp = conn.read_response();
    assert_eq!(
        resp.status, 413,
        "oversized body must be refused before 100 Continue: {resp:?}"
    );
    server.assert_serves("/a.txt", ALPHA);
}

// ---- framing and smuggling --------------------------------------------------------------------

#[test]
fn missing_host_is_400() {
    let www = site();
    let server = serve(&www);
    expect_status(
        &server,
        b"GET /a.txt HTTP/1.1\r\nUser-Agent: t\r\n\r\n",
        400,
    );
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn repeated_host_is_400() {
    let www = site();
    let server = serve(&www);
    expect_status(
        &server,
        b"GET /a.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
    );
    expect_status(
        &server,
        b"GET /a.txt HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        400,
    );
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn content_length_with_transfer_encoding_is_400_and_close() {
    let www = site();
    let server = serve(&www);
    // CL.TE smuggling shape: if CL were used, "0\r\n\r\n" would be a body and the tail a request.
    let req = "GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
               0\r\n\r\nGET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    expect_status_and_close(&server, req.as_bytes(), 400);
    let req = "GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n\
               0\r\n\r\n";
    expect_status_and_close(&server, req.as_bytes(), 400);
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn unknown_transfer_encoding_is_refused_and_closed() {
    let www = site();
    let server = serve(&www);
    for te in [
        "gzip",
        "chunked, gzip",
        "xchunked",
        "identity",
        // Two fields combine to "chunked, identity": chunked is not the final coding.
        "chunked\r\nTransfer-Encoding: identity",
    ] {
        let req =
            format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
        let mut conn = server.connect();
        conn.send(req.as_bytes());
        let resp = conn.read_response();
        // RFC 9112 §6.1: an unrecognised coding is 501; a malformed final coding is 400.
        assert!(
            matches!(resp.status, 400 | 501),
            "Transfer-Encoding: {te} got {resp:?}"
        );
        assert!(
            conn.wait_closed(CLOSE_TIMEOUT).closed,
            "Transfer-Encoding: {te} left open"
        );
    }
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn invalid_content_length_is_400() {
    let www = site();
    let server = serve(&www);
    for cl in [
        "abc",
        "-1",
        "1.5",
        "+5",
        "0x10",
        "",
        "5 5",
        "99999999999999999999999999",
    ] {
        let req = format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: {cl}\r\n\r\nhello");
        expect_status_and_close(&server, req.as_bytes(), 400);
    }
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn conflicting_content_length_is_400() {
    let www = site();
    let server = serve(&www);
    let two_fields =
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
    expect_status_and_close(&server, two_fields.as_bytes(), 400);
    let list = "GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!";
    expect_status_and_close(&server, list.as_bytes(), 400);
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn whitespace_before_colon_is_400() {
    let www = site();
    let server = serve(&www);
    expect_status_and_close(
        &server,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Thing : y\r\n\r\n",
        400,
    );
    expect_status_and_close(
        &server,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Thing\t: y\r\n\r\n",
        400,
    );
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn malformed_requests_are_400_and_close() {
    let www = site();
    let server = serve(&www);
    let cases: &[&[u8]] = &[
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\n: empty-name\r\n\r\n",
        b"GET /a.txt HTTX/1.1\r\nHost: x\r\n\r\n",
        b"GET /a.txt HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"G(T /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /a\x01.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /a.txt HTTP/1.1\r\nHost: x y\r\n\r\n",
    ];
    for raw in cases {
        expect_status_and_close(&server, raw, 400);
    }
    server.assert_serves("/a.txt", ALPHA);
}

// ---- limits -----------------------------------------------------------------------------------

#[test]
fn request_line_longer_than_limit_is_414() {
    let www = site();
    let server = serve(&www);
    let req = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    expect_status(&server, req.as_bytes(), 414);
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn request_line_under_limit_is_not_rejected() {
    let www = site();
    let server = serve(&www);
    let req = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(4000));
    expect_status(&server, req.as_bytes(), 404);
}

#[test]
fn header_section_larger_than_limit_is_431() {
    let www = site();
    let server = serve(&www);
    // One huge field (40 KiB > 32 KiB default).
    let req = format!(
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(40 * 1024)
    );
    expect_status(&server, req.as_bytes(), 431);
    // Many medium fields, fewer than max_headers, together over the byte limit.
    let fields: String = (0..40)
        .map(|i| format!("X-F{i}: {}\r\n", "c".repeat(1024)))
        .collect();
    let req = format!("GET /a.txt HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
    expect_status(&server, req.as_bytes(), 431);
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn too_many_header_fields_is_431() {
    let www = site();
    let server = serve(&www);
    let fields: String = (0..120).map(|i| format!("X-F{i}: v\r\n")).collect();
    let req = format!("GET /a.txt HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
    expect_status(&server, req.as_bytes(), 431);
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn body_larger_than_max_body_is_413() {
    let www = site();
    let server = serve(&www);
    // Default max_body is 1 MiB; the body is announced, never sent: the answer must not wait for it.
    let mut conn = server.connect();
    conn.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n");
    let resp = conn.read_response();
    assert_eq!(resp.status, 413, "{resp:?}");
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn a_client_that_sends_its_whole_body_before_reading_still_gets_the_413() {
    let www = site();
    let server = serve(&www);
    // The 413 goes out as soon as the head is read; this client, like many, writes its whole
    // 64 MiB body before it reads anything. Closing on its unread bytes would reset the
    // connection, failing its writes and destroying the answer: the server must linger,
    // discarding the body, until the client has sent it.
    let len = 64 << 20;
    let mut conn = server.connect();
    conn.send(
        format!("POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
    );
    let body = vec![b'z'; len];
    if let Err(e) = conn.try_send(&body) {
        panic!("the upload was cut off after the 413 instead of discarded: {e}");
    }
    let resp = conn.read_response();
    assert_eq!(resp.status, 413, "{resp:?}");
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn chunked_body_larger_than_max_body_is_413() {
    let www = site();
    let server = serve_with(&www, "[limits]\nmax_body = 1024\n");
    let chunks: String = (0..8)
        .map(|_| format!("200\r\n{}\r\n", "z".repeat(512)))
        .collect();
    let req = format!(
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}0\r\n\r\n"
    );
    let mut conn = server.connect();
    conn.send(req.as_bytes());
    let resp = conn.read_response();
    assert_eq!(resp.status, 413, "{resp:?}");
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn configured_limits_are_enforced() {
    let www = site();
    let server = serve_with(
        &www,
        "[limits]\nmax_request_line = 256\nmax_header_bytes = 1024\nmax_headers = 5\nmax_body = 10\n",
    );
    let line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(300));
    expect_status(&server, line.as_bytes(), 414);
    let big = format!(
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(1500)
    );
    expect_status(&server, big.as_bytes(), 431);
    let many: String = (0..8).map(|i| format!("X-F{i}: v\r\n")).collect();
    expect_status(
        &server,
        format!("GET /a.txt HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
        431,
    );
    expect_status(
        &server,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
        413,
    );
    // Just inside every limit.
    let ok = "GET /a.txt HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-B: 2\r\nContent-Length: 10\r\n\r\n0123456789";
    let resp = expect_status(&server, ok.as_bytes(), 200);
    assert_eq!(resp.body, ALPHA);
}

// ---- timeouts ---------------------------------------------------------------------------------

/// A server whose `[timeouts]` table is `timeouts` (everything else default).
fn serve_timeouts(www: &WebRoot, timeouts: &str) -> Server {
    serve_with(www, &format!("[timeouts]\n{timeouts}\n"))
}

fn assert_closed_by_timeout(conn: &mut Conn, what: &str) {
    let closed = conn.wait_closed(CLOSE_TIMEOUT);
    assert!(
        closed.closed,
        "{what}: connection still open after {CLOSE_TIMEOUT:?}"
    );
    if let Some(status) = closed.status() {
        assert_eq!(status, 408, "{what}: only a 408 may precede the close");
    } else {
        assert!(
            closed.bytes.is_empty(),
            "{what}: unexpected bytes {:?}",
            closed.bytes
        );
    }
    assert!(
        closed.elapsed >= Duration::from_millis(500),
        "{what}: closed after {:?}, before the 1 s timeout could have fired",
        closed.elapsed
    );
}

#[test]
fn header_read_timeout_closes_slowloris_connection() {
    let www = site();
    let server = serve_timeouts(&www, "header = \"1s\"");
    let mut conn = server.connect();
    conn.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    assert_closed_by_timeout(&mut conn, "partial head");
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn header_timeout_bounds_the_whole_head_not_each_byte() {
    let www = site();
    let server = serve_timeouts(&www, "header = \"1s\"");
    let mut conn = server.connect();
    conn.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Drip: ");
    let start = std::time::Instant::now();
    // Drip one byte every 200 ms; each read below waits on the socket for 200 ms.
    let closed = loop {
        if conn.try_send(b"a").is_err() {
            break true;
        }
        let c = conn.wait_closed(Duration::from_millis(200));
        if c.closed {
            break true;
        }
        if start.elapsed() > Duration::from_secs(8) {
            break false;
        }
    };
    assert!(
        closed,
        "a client dripping bytes kept the head open for 8 s with header = 1s"
    );
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn idle_keepalive_timeout_closes_connection() {
    let www = site();
    let server = serve_timeouts(&www, "keepalive = \"1s\"");
    let mut conn = server.connect();
    assert_eq!(conn.request(&get("/a.txt")).status, 200);
    let closed = conn.wait_closed(CLOSE_TIMEOUT);
    assert!(closed.closed, "idle keep-alive connection still open");
    assert!(
        closed.bytes.is_empty() || closed.status() == Some(408),
        "{:?}",
        closed.bytes
    );
    assert!(
        closed.elapsed >= Duration::from_millis(500),
        "closed too early: {:?}",
        closed.elapsed
    );
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn keepalive_connection_survives_shorter_idle_periods() {
    let www = site();
    let server = serve_timeouts(&www, "keepalive = \"3s\"");
    let mut conn = server.connect();
    assert_eq!(conn.request(&get("/a.txt")).status, 200);
    assert!(
        conn.stays_open_for(Duration::from_millis(1000)),
        "closed long before keepalive"
    );
    assert_eq!(conn.request(&get("/b.txt")).status, 200);
}

#[test]
fn body_read_timeout_closes_connection() {
    let www = site();
    let server = serve_timeouts(&www, "body = \"1s\"");
    let mut conn = server.connect();
    conn.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b");
    assert_closed_by_timeout(&mut conn, "stalled body");
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn silent_connection_is_closed_after_sniff_timeout() {
    let www = site();
    let server = serve_timeouts(&www, "sniff = \"1s\"");
    let mut conn = server.connect();
    let closed = conn.wait_closed(CLOSE_TIMEOUT);
    assert!(
        closed.closed,
        "a connection that never sent a byte is still open"
    );
    assert!(
        closed.elapsed >= Duration::from_millis(500),
        "closed too early: {:?}",
        closed.elapsed
    );
    server.assert_serves("/a.txt", ALPHA);
}

#[test]
fn default_timeouts_do_not_cut_a_prompt_client() {
    let www = site();
    let server = serve(&www);
    let mut conn = server.connect();
    conn.send(b"GET /a.txt HTTP/1.1\r\n");
    assert!(conn.stays_open_for(Duration::from_millis(300)));
    conn.send(b"Host: x\r\n\r\n");
    let resp = conn.read_response_within(false, IO_TIMEOUT);
    assert_eq!(resp.body, ALPHA);
}
