//! HTTP/2 in clear text with prior knowledge (RFC 9113 §3.3): the files service over h2c, shown
//! with curl and nghttp; the protocol limits (concurrent streams, rapid reset, idle timeout)
//! shown with raw frames; and the drain (SIGTERM) finishing an HTTP/2 download.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchyard_interop::{
    CLOSE_TIMEOUT, CurlOutput, IO_TIMEOUT, Server, Signal, WebRoot, config, curl, curl_to,
    peak_rss, pseudo_random, sha256, sha256_file,
};

const HELLO: &[u8] = b"hello world\n";

/// 1000 bytes: "0123456789" a hundred times, so any range is easy to check.
fn digits() -> Vec<u8> {
    b"0123456789".repeat(100)
}

fn site() -> WebRoot {
    let www = WebRoot::new();
    www.file("hello.txt", HELLO)
        .file("digits.txt", digits())
        .file("app.js", "console.log('identity')")
        .file("app.js.gz", "GZ-BYTES");
    www
}

/// `curl --http2-prior-knowledge URL ARGS...`: curl speaks only HTTP/2 on the connection, so a
/// server that does not fails the transfer.
fn h2(server: &Server, path: &str, args: &[&str]) -> CurlOutput {
    let mut all = vec!["--http2-prior-knowledge".to_owned(), server.url(path)];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let out = curl(&all);
    assert_eq!(out.exit, 0, "curl {path} {args:?} failed: {}", out.stderr);
    out
}

// ---- the files service over h2c -----------------------------------------------------------------

/// A body to static files, which ignore it, is not collected but dropped as it arrives, then
/// the request is answered (405 for a POST, 200 for a GET with a body): the server never holds
/// the body, however large `max_body` is.
#[test]
fn a_body_sent_to_static_files_is_not_collected() {
    const BODY: usize = 128 << 20;
    let www = site();
    let upload = www.outside().join("upload.bin");
    std::fs::write(&upload, vec![b'x'; BODY]).expect("write the upload");
    let server =
        Server::run_config(&config(www.root(), "", "[limits]\nmax_body = \"256MiB\"\n")).start();
    let data = format!("@{}", upload.display());
    let post = h2(&server, "/hello.txt", &["--data-binary", &data]);
    assert_eq!(post.status, 405, "{}", post.stderr);
    let get = h2(
        &server,
        "/hello.txt",
        &["-X", "GET", "--data-binary", &data],
    );
    assert_eq!((get.status, get.body.as_slice()), (200, HELLO));
    let peak = peak_rss(server.pid());
    assert!(
        peak < (BODY / 2) as u64,
        "peak RSS {peak} bytes after two {BODY}-byte bodies that nothing reads"
    );
}

/// RFC 9113 §8.3.1: a server-wide OPTIONS has `:path` `*`, and is answered 200; `*` with
/// another method is answered 400.
#[test]
fn options_with_path_asterisk_is_answered_200_and_get_with_it_400() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let status = |method: &str| h2(&server, "/", &["-X", method, "--request-target", "*"]).status;
    assert_eq!(status("OPTIONS"), 200);
    assert_eq!(status("GET"), 400);
}

#[test]
fn get_is_answered_over_http2() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-o",
            "-",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .arg(server.url("/hello.txt"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        "hello world\n\n2 200",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = h2(&server, "/hello.txt", &[]);
    assert_eq!(out.status, 200);
    assert_eq!(out.body, HELLO);
    assert_eq!(out.header("content-length"), Some("12"));
    assert!(
        out.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain")
    );
    assert!(out.header("date").is_some(), "no Date: {:?}", out.headers);
    // RFC 9113 §8.2.2: no connection-specific fields in HTTP/2.
    for field in ["connection", "keep-alive", "transfer-encoding"] {
        assert_eq!(out.header(field), None, "{field} sent over HTTP/2");
    }
}

#[test]
fn head_has_length_and_no_body() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let out = h2(&server, "/digits.txt", &["-I"]);
    assert_eq!(out.status, 200);
    assert_eq!(out.header("content-length"), Some("1000"));
    // On the wire: one HEADERS frame that ends the stream, and no DATA.
    let mut conn = RawH2::open(&server);
    conn.handshake();
    conn.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block("HEAD", "/digits.txt"),
    ));
    let head = conn.until("response HEADERS", |f| f.stream == 1);
    assert_eq!(head.kind, HEADERS, "{head:?}");
    assert_ne!(
        head.flags & END_STREAM,
        0,
        "HEAD response does not end the stream"
    );
    // A GET after it on the same connection is answered; no DATA of stream 1 came before.
    conn.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &request_block("GET", "/digits.txt"),
    ));
    let next = conn.until("DATA of stream 3", |f| f.kind == DATA || f.stream == 1);
    assert_eq!(next.stream, 3, "frame for the HEAD stream: {next:?}");
}

#[test]
fn missing_file_is_404() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let out = h2(&server, "/nope.txt", &[]);
    assert_eq!(out.status, 404);
}

#[test]
fn single_range_is_206() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let out = h2(&server, "/digits.txt", &["-H", "Range: bytes=10-14"]);
    assert_eq!(out.status, 206);
    assert_eq!(out.header("content-range"), Some("bytes 10-14/1000"));
    assert_eq!(out.header("content-length"), Some("5"));
    assert_eq!(out.body, b"01234");
}

#[test]
fn multiple_ranges_are_multipart_byteranges() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let out = h2(&server, "/digits.txt", &["-H", "Range: bytes=0-2,995-999"]);
    assert_eq!(out.status, 206);
    let ctype = out.header("content-type").unwrap_or("").to_owned();
    let boundary = ctype
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {ctype}"));
    assert_eq!(
        out.header("content-length").map(str::parse::<usize>),
        Some(Ok(out.body.len()))
    );
    let text = out.text();
    assert!(
        text.contains("Content-Range: bytes 0-2/1000\r\n\r\n012\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Content-Range: bytes 995-999/1000\r\n\r\n56789\r\n"),
        "{text}"
    );
    assert!(text.ends_with(&format!("--{boundary}--\r\n")), "{text}");
}

#[test]
fn if_none_match_with_current_etag_is_304_without_body() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let first = h2(&server, "/hello.txt", &[]);
    let etag = first.header("etag").expect("ETag").to_owned();
    let out = h2(
        &server,
        "/hello.txt",
        &["-H", &format!("If-None-Match: {etag}")],
    );
    assert_eq!(out.status, 304);
    assert!(out.body.is_empty());
    assert_eq!(out.header("etag"), Some(etag.as_str()));
}

#[test]
fn precompressed_sibling_with_vary() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let out = h2(&server, "/app.js", &["-H", "Accept-Encoding: gzip"]);
    assert_eq!(out.status, 200);
    assert_eq!(out.header("content-encoding"), Some("gzip"));
    assert_eq!(out.body, b"GZ-BYTES");
    let vary = out.header("vary").unwrap_or("");
    assert!(
        vary.to_ascii_lowercase().contains("accept-encoding"),
        "Vary: {vary}"
    );
    let plain = h2(&server, "/app.js", &[]);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.text(), "console.log('identity')");
}

#[test]
fn large_file_downloads_intact() {
    let www = WebRoot::new();
    let data = pseudo_random(64 * 1024 * 1024, 21);
    www.file("large.bin", &data);
    let server = Server::serve(www.root()).start();
    let scratch = tempfile::tempdir().expect("scratch");
    let dest = scratch.path().join("large.bin");
    let out = curl_to(
        &dest,
        &["--http2-prior-knowledge", &server.url("/large.bin")],
    );
    assert_eq!(out.exit, 0, "{}", out.stderr);
    assert_eq!(out.status, 200);
    assert_eq!(
        sha256_file(&dest),
        sha256(&data),
        "64 MiB over HTTP/2 corrupted"
    );
}

/// A server whose request bodies are limited to 1 KiB.
fn small_body_server(www: &WebRoot) -> Server {
    Server::run_config(&config(www.root(), "", "[limits]\nmax_body = 1024\n")).start()
}

#[test]
fn announced_body_over_max_body_is_413() {
    let www = site();
    let server = small_body_server(&www);
    let scratch = tempfile::tempdir().expect("scratch");
    let big = scratch.path().join("big");
    std::fs::write(&big, vec![b'x'; 64 * 1024]).expect("write body");
    let out = h2(
        &server,
        "/hello.txt",
        &["--data-binary", &format!("@{}", big.display())],
    );
    assert_eq!(out.status, 413, "{:?}", out.headers);
    // A body within the limit reaches the files service, which refuses the method.
    let out = h2(&server, "/hello.txt", &["--data-binary", "small"]);
    assert_eq!(out.status, 405);
}

#[test]
fn streamed_body_over_max_body_is_413() {
    // From stdin curl cannot announce a length: the limit applies to the DATA received.
    let www = site();
    let server = small_body_server(&www);
    let mut child = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["--http2-prior-knowledge", "--data-binary", "@-"])
        .arg(server.url("/hello.txt"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run curl");
    let mut stdin = child.stdin.take().expect("stdin");
    // The server may stop reading once it has answered: a failed write is expected then.
    let writer = std::thread::spawn(move || stdin.write_all(&vec![b'y'; 256 * 1024]));
    let out = child.wait_with_output().expect("curl output");
    let _ = writer.join();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "413",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- many streams on one connection -------------------------------------------------------------

/// Run nghttp and return its stdout; it must succeed.
fn nghttp(args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg("nghttp")
        .args(args)
        .output()
        .expect("run nghttp (interop/test.sh installs nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "nghttp {args:?} failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Lines of `nghttp -s` statistics that report a response with `status` for `path`.
fn answered(stats: &str, status: u16, path: &str) -> usize {
    stats
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 7 && f[4] == status.to_string() && f[6] == path
        })
        .count()
}

#[test]
fn a_hundred_concurrent_streams_on_one_connection() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let stats = nghttp(&["-n", "-s", "-m", "100", &server.url("/digits.txt")]);
    assert_eq!(answered(&stats, 200, "/digits.txt"), 100, "{stats}");
}

#[test]
fn streams_past_the_limit_are_refused_never_lost() {
    let www = site();
    let server = Server::run_config(&config(
        www.root(),
        "",
        "[http2]\nmax_concurrent_streams = 4\n",
    ))
    .start();
    // nghttp opens all 20 streams before it has read our SETTINGS, as RFC 9113 §6.5.2 allows
    // (the initial limit is unlimited). §5.1.2: "An endpoint that receives a HEADERS frame that
    // causes its advertised concurrent stream limit to be exceeded MUST treat this as a stream
    // error of type PROTOCOL_ERROR or REFUSED_STREAM"; §8.7: REFUSED_STREAM means the request
    // was not processed and may be retried. Every stream is answered one way or the other.
    let verbose = nghttp(&["-n", "-v", "-m", "20", &server.url("/hello.txt")]);
    assert!(
        verbose.contains("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):4]"),
        "limit not advertised: {verbose}"
    );
    let served = verbose.matches(":status: 200").count();
    let refused = verbose.matches("(error_code=REFUSED_STREAM(0x07))").count();
    assert_eq!(served + refused, 20, "{verbose}");
    assert!(served >= 4, "fewer than the limit served: {verbose}");
    assert!(refused > 0, "20 streams at once on a limit of 4: {verbose}");
}

// ---- raw frames: what a client that ignores the rules gets ---------------------------------------

/// RFC 9113 §3.4: the client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM, or of a GOAWAY.
    fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A request header block in HPACK (RFC 7541) without Huffman coding or indexing: `:scheme
/// http` from the static table (6), literals with indexed names for `:method` (2), `:path` (4)
/// and `:authority` (1).
fn request_block(method: &str, path: &str) -> Vec<u8> {
    let mut block = vec![0x86];
    for (index, value) in [(0x02u8, method), (0x04, path), (0x01, "localhost")] {
        block.push(index);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// A raw HTTP/2 connection: the preface and an empty SETTINGS are sent at once.
struct RawH2 {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawH2 {
    fn open(server: &Server) -> RawH2 {
        let mut stream = TcpStream::connect(server.addr()).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        stream.write_all(&hello).expect("send preface");
        RawH2 {
            stream,
            buf: Vec::new(),
        }
    }

    /// Wait for the server's SETTINGS and acknowledge them.
    fn handshake(&mut self) -> Frame {
        let settings = self.until("server SETTINGS", |f| f.kind == SETTINGS && f.flags == 0);
        self.send(&frame(SETTINGS, 0x1, 0, &[]));
        settings
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send frames");
    }

    /// The next frame, or `None` at EOF, reset or the deadline.
    fn next_frame(&mut self, deadline: Instant) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = (usize::from(self.buf[0]) << 16)
                    | (usize::from(self.buf[1]) << 8)
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let head: Vec<u8> = self.buf.drain(..9).collect();
                    let payload = self.buf.drain(..len).collect();
                    return Some(Frame {
                        kind: head[3],
                        flags: head[4],
                        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]])
                            & 0x7fff_ffff,
                        payload,
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Read frames until `want` matches one (returned) or the connection ends (panics, listing
    /// what was seen).
    fn until(&mut self, what: &str, want: impl Fn(&Frame) -> bool) -> Frame {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut seen = Vec::new();
        while let Some(f) = self.next_frame(deadline) {
            if want(&f) {
                return f;
            }
            seen.push((f.kind, f.flags, f.stream, f.error_code()));
        }
        panic!("no {what}; frames seen (type, flags, stream, error): {seen:?}");
    }
}

#[test]
fn streams_past_max_concurrent_streams_are_refused() {
    let www = site();
    let server = Server::run_config(&config(
        www.root(),
        "",
        "[http2]\nmax_concurrent_streams = 4\n",
    ))
    .start();
    let mut conn = RawH2::open(&server);
    let settings = conn.handshake();
    // SETTINGS_MAX_CONCURRENT_STREAMS (0x3) = 4
    assert!(
        settings.payload.chunks(6).any(|s| s == [0, 3, 0, 0, 0, 4]),
        "{settings:?}"
    );
    // Four requests whose bodies never end keep four streams open...
    let mut frames = Vec::new();
    for id in [1u32, 3, 5, 7] {
        frames.extend(frame(
            HEADERS,
            END_HEADERS,
            id,
            &request_block("POST", "/hello.txt"),
        ));
    }
    // ...so a fifth is one too many (RFC 9113 §5.1.2).
    frames.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        9,
        &request_block("GET", "/hello.txt"),
    ));
    conn.send(&frames);
    let reset = conn.until("RST_STREAM on stream 9", |f| {
        f.kind == RST_STREAM && f.stream == 9
    });
    assert_eq!(reset.error_code(), Some(REFUSED_STREAM), "{reset:?}");
    // The open streams are still served once their bodies end.
    conn.send(&frame(DATA, END_STREAM, 1, b"x"));
    let answer = conn.until("response on stream 1", |f| {
        f.kind == HEADERS && f.stream == 1
    });
    assert_eq!(answer.stream, 1);
}

#[test]
fn rapid_reset_gets_goaway_enhance_your_calm() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let mut conn = RawH2::open(&server);
    conn.handshake();
    // Open and cancel 200 streams at once (CVE-2023-44487); the default allows 20 pending.
    let mut frames = Vec::new();
    for i in 0..200u32 {
        let id = 1 + 2 * i;
        frames.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &request_block("GET", "/hello.txt"),
        ));
        frames.extend(frame(RST_STREAM, 0, id, &0x8u32.to_be_bytes())); // CANCEL
    }
    // The server may close mid-way: ignore a failed write.
    let _ = conn.stream.write_all(&frames);
    let goaway = conn.until("GOAWAY", |f| f.kind == GOAWAY);
    assert_eq!(goaway.error_code(), Some(ENHANCE_YOUR_CALM), "{goaway:?}");
    // And the server still serves everyone else.
    server.assert_serves("/hello.txt", HELLO);
}

/// Send `first`, then `one` 2,000 times at once, and expect GOAWAY ENHANCE_YOUR_CALM (the
/// server's budget is 500 of a kind per second).
fn flood_gets_enhance_your_calm(what: &str, first: &[u8], one: &[u8]) {
    let www = site();
    let server = Server::serve(www.root()).start();
    let mut conn = RawH2::open(&server);
    conn.handshake();
    let mut burst = first.to_vec();
    burst.extend(one.iter().copied().cycle().take(one.len() * 2_000));
    // The server stops reading once it has seen the flood: ignore a failed write.
    let _ = conn.stream.write_all(&burst);
    let goaway = conn.until("GOAWAY", |f| f.kind == GOAWAY);
    assert_eq!(
        goaway.error_code(),
        Some(ENHANCE_YOUR_CALM),
        "{what}: {goaway:?}"
    );
    server.assert_serves("/hello.txt", HELLO);
}

#[test]
fn ping_flood_gets_goaway_enhance_your_calm() {
    flood_gets_enhance_your_calm("PING", &[], &frame(0x6, 0, 0, &[7; 8]));
}

#[test]
fn settings_flood_gets_goaway_enhance_your_calm() {
    flood_gets_enhance_your_calm("SETTINGS", &[], &frame(SETTINGS, 0, 0, &[]));
}

#[test]
fn empty_data_flood_gets_goaway_enhance_your_calm() {
    let open = frame(
        HEADERS,
        END_HEADERS,
        1,
        &request_block("POST", "/hello.txt"),
    );
    flood_gets_enhance_your_calm("empty DATA", &open, &frame(DATA, 0, 1, &[]));
}

#[test]
fn idle_connection_gets_goaway_then_closes() {
    let www = site();
    let server =
        Server::run_config(&config(www.root(), "", "[timeouts]\nkeepalive = \"1s\"\n")).start();
    let mut conn = RawH2::open(&server);
    conn.handshake();
    conn.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block("GET", "/hello.txt"),
    ));
    conn.until("response", |f| {
        f.kind == DATA && f.stream == 1 && f.flags & END_STREAM != 0
    });
    let started = Instant::now();
    let goaway = conn.until("GOAWAY after the idle timeout", |f| f.kind == GOAWAY);
    assert_eq!(goaway.error_code(), Some(0), "{goaway:?}");
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    while conn.next_frame(deadline).is_some() {}
    assert!(
        started.elapsed() < CLOSE_TIMEOUT,
        "connection not closed after the idle GOAWAY"
    );
}

#[test]
fn a_stream_the_client_grants_no_window_is_reset_and_the_connection_serves_on() {
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: the client will take no DATA on any stream until it
    // sends WINDOW_UPDATE, which it never does for stream 1. The server resets that stream
    // (CANCEL) once `timeouts.send` has passed, and answers the next stream, which the client
    // opens with a window of its own.
    let www = site();
    let server = Server::run_config(&config(www.root(), "", "[timeouts]\nsend = \"1s\"\n")).start();
    let mut conn = RawH2::open(&server);
    conn.send(&frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]));
    conn.handshake();
    conn.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block("GET", "/hello.txt"),
    ));
    let started = Instant::now();
    let reset = conn.until("RST_STREAM on the starved stream", |f| {
        assert!(
            !(f.kind == DATA && f.stream == 1 && !f.payload.is_empty()),
            "DATA sent beyond a window of 0"
        );
        f.kind == RST_STREAM && f.stream == 1
    });
    assert_eq!(reset.error_code(), Some(0x8), "{reset:?}"); // CANCEL
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "reset before the send timeout: {:?}",
        started.elapsed()
    );
    conn.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &request_block("GET", "/hello.txt"),
    ));
    conn.send(&frame(0x8, 0, 3, &1024u32.to_be_bytes())); // WINDOW_UPDATE
    let data = conn.until("DATA on stream 3", |f| f.kind == DATA && f.stream == 3);
    assert_eq!(data.payload, HELLO);
}

// ---- drain ------------------------------------------------------------------------------------------

#[test]
fn sigterm_lets_an_http2_download_finish_then_exits_0() {
    let www = WebRoot::new();
    let data = pseudo_random(64 * 1024 * 1024, 23);
    www.file("large.bin", &data);
    let mut server = Server::serve(www.root()).start();
    let scratch = tempfile::tempdir().expect("scratch");
    let dest = scratch.path().join("large.bin");
    // Rate-limited so the download is surely in flight when the signal arrives.
    let child = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "120",
            "--limit-rate",
            "16M",
            "--http2-prior-knowledge",
        ])
        .arg("-o")
        .arg(&dest)
        .arg(server.url("/large.bin"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run curl");
    // Wait (bounded) until the first megabyte has arrived.
    let deadline = Instant::now() + IO_TIMEOUT;
    while std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0) < 1024 * 1024 {
        assert!(Instant::now() < deadline, "download did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.signal(Signal::TERM);
    let out = child.wait_with_output().expect("curl");
    assert!(
        out.status.success(),
        "download cut by the drain: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sha256_file(&dest),
        sha256(&data),
        "download corrupted by the drain"
    );
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("no exit 20 s after the drain finished");
    assert!(status.success(), "exit status {status:?} after SIGTERM");
}
