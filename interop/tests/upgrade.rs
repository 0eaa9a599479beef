//! `Upgrade: h2c` (RFC 7540 §3.2): a cleartext HTTP/1.1 request may switch its connection to
//! HTTP/2; the request itself is answered on stream 1. Client: curl (`--http2` on http://) and
//! raw sockets for the requests we must not upgrade.

use std::process::{Command, Stdio};

use switchyard_interop::*;

fn site() -> WebRoot {
    let www = WebRoot::new();
    www.file("a.txt", b"alpha\n");
    www.file("b.txt", b"bravo\n");
    www
}

/// `curl --http2 URL...` printing `version status size` per URL.
fn curl_upgrade(urls: &[String]) -> Vec<String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "--http2"])
        .args(["-w", "%{http_version} %{http_code} %{size_download}\\n"]);
    for url in urls {
        cmd.args(["-o", "/dev/null"]).arg(url);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run curl");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn curl_upgrades_and_reuses_the_http2_connection() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let lines = curl_upgrade(&[
        server.url("/a.txt"),
        server.url("/b.txt"),
        server.url("/missing"),
    ]);
    assert_eq!(lines, ["2 200 6", "2 200 6", "2 404 14"], "{lines:?}");
}

#[test]
fn the_upgraded_request_is_answered_on_stream_one_after_a_101() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let out = Command::new("curl")
        .args(["-sS", "-v", "--max-time", "30", "--http2"])
        .arg(server.url("/a.txt"))
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let trace = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        trace.contains("< HTTP/1.1 101 Switching Protocols"),
        "{trace}"
    );
    assert!(trace.contains("< Upgrade: h2c"), "{trace}");
    assert!(trace.contains("< HTTP/2 200"), "{trace}");
    assert_eq!(out.stdout, b"alpha\n");
}

#[test]
fn a_large_download_over_an_upgraded_connection_is_intact() {
    let www = site();
    let data = pseudo_random(16 * 1024 * 1024 + 7, 3);
    www.file("big.bin", &data);
    let server = Server::serve(www.root()).start();
    let dest = www.outside().join("big.download");
    let out = curl_to(&dest, &["--http2".to_owned(), server.url("/big.bin")]);
    assert_eq!((out.exit, out.status), (0, 200), "{}", out.stderr);
    assert_eq!(sha256_file(&dest), sha256(&data));
}

const UPGRADE_HEADERS: &str = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";

#[test]
fn requests_with_a_body_are_answered_in_http1() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let mut conn = server.connect();
    let resp = conn.request(&format!(
        "POST /a.txt HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}Content-Length: 3\r\n\r\nabc"
    ));
    assert_eq!(
        resp.status, 405,
        "a request with a body was upgraded or mishandled"
    );
    assert_eq!(conn.request(&get("/a.txt")).body, b"alpha\n");
}

#[test]
fn an_upgrade_without_settings_is_answered_in_http1() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let mut conn = server.connect();
    let resp = conn
        .request("GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"alpha\n");
}

#[test]
fn an_upgrade_followed_by_garbage_instead_of_a_preface_ends_only_that_connection() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let mut conn = server.connect();
    conn.send(format!("GET /a.txt HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}\r\n").as_bytes());
    let switched = conn.read_head_response();
    assert_eq!(switched.status, 101);
    conn.send(b"this is not an HTTP/2 connection preface, not at all.......\r\n\r\n");
    let closed = conn.wait_closed(CLOSE_TIMEOUT);
    assert!(
        closed.closed,
        "the server kept a connection with a broken preface open"
    );
    server.assert_serves("/b.txt", b"bravo\n");
}
