//! HTTP/3 over QUIC on the listener's own port (RFC 9114), driven by ngtcp2's `gtlsclient`: the
//! Alt-Svc advertisement on HTTP/1.1 and HTTP/2, the files service over HTTP/3, early data
//! (0-RTT GET served, 0-RTT POST answered 425), hostile datagrams, and the drain.
//!
//! The QUIC interop runner's cases, with aioquic as a second client and loss through an
//! impairment proxy, are in `interop/quic/run.sh`.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use switchyard_interop::{
    Backend, IO_TIMEOUT, Server, Signal, WebRoot, config, curl, log_lines, peak_rss, pseudo_random,
    sha256, sha256_file, toml_path,
};

const HELLO: &[u8] = b"hello over quic\n";

fn site() -> WebRoot {
    let www = WebRoot::new();
    www.file("hello.txt", HELLO)
        .file("digits.txt", b"0123456789".repeat(100));
    www
}

/// `gtlsclient ARGS... 127.0.0.1 PORT URL...` (HTTP/3), exiting when every stream closed. Its
/// debug output (stdout and stderr) is returned as text.
fn gtlsclient(server: &Server, args: &[&str], paths: &[&str]) -> (Output, String) {
    let addr = server.addr();
    let port = addr.port().to_string();
    let out = Command::new("timeout")
        .arg("60")
        .arg("gtlsclient")
        .args([
            "--exit-on-all-streams-close",
            "--no-quic-dump",
            "--timeout=10s",
        ])
        .args(args)
        .arg(addr.ip().to_string())
        .arg(&port)
        .args(paths.iter().map(|p| format!("https://127.0.0.1:{port}{p}")))
        .stdin(Stdio::null())
        .output()
        .expect("run gtlsclient (Debian package ngtcp2-client)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// [`gtlsclient`] saving each answer's body in a new directory, which is returned too.
fn download(server: &Server, paths: &[&str]) -> (Output, String, tempfile::TempDir) {
    let dl = tempfile::tempdir().expect("scratch");
    let dir = dl.path().to_str().expect("utf-8 path");
    let (out, text) = gtlsclient(server, &["--no-http-dump", "--download", dir], paths);
    (out, text, dl)
}

fn statuses(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.split(":status: ").nth(1))
        .map(|s| s.trim_end_matches(']'))
        .collect()
}

// ---- Alt-Svc --------------------------------------------------------------------------------------

#[test]
fn tls_responses_advertise_http3_on_the_same_port_and_cleartext_ones_do_not() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let want = format!("h3=\":{}\"; ma=86400", server.addr().port());
    let tls = |path: &str| format!("https://localhost:{}{path}", server.addr().port());
    let h1 = curl(&["-k", "--http1.1", &tls("/hello.txt")]);
    assert_eq!(h1.status, 200, "{}", h1.stderr);
    assert_eq!(h1.header("alt-svc"), Some(want.as_str()));
    let h2 = curl(&["-k", "--http2", &tls("/nothing-here")]);
    assert_eq!(h2.status, 404, "{}", h2.stderr);
    assert_eq!(
        h2.header("alt-svc"),
        Some(want.as_str()),
        "errors advertise too"
    );
    // HTTP/3 is for https origins: an advertisement in clear is noise a client drops.
    let h1 = curl(&["--http1.1", &server.url("/hello.txt")]);
    assert_eq!(h1.status, 200, "{}", h1.stderr);
    assert_eq!(h1.header("alt-svc"), None);
    let h2c = curl(&["--http2-prior-knowledge", &server.url("/hello.txt")]);
    assert_eq!(h2c.status, 200, "{}", h2c.stderr);
    assert_eq!(h2c.header("alt-svc"), None);
}

#[test]
fn http3_is_advertised_once_per_connection() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let url = |path: &str| format!("https://localhost:{}{path}", server.addr().port());
    for version in ["--http1.1", "--http2"] {
        // Three requests, one after the other, on the connection curl keeps open.
        let out = Command::new("curl")
            .args([
                "-sSk",
                version,
                "-D",
                "-",
                "-w",
                "connects=%{num_connects}\n",
            ])
            .args(["-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null"])
            .args([url("/hello.txt"), url("/nothing-here"), url("/hello.txt")])
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{version}: {text}");
        let connects: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("connects="))
            .collect();
        assert_eq!(
            connects,
            ["connects=1", "connects=0", "connects=0"],
            "{version}: curl did not keep its connection: {text}"
        );
        let heads = text.matches("HTTP/").count();
        let advertised = text.to_ascii_lowercase().matches("\nalt-svc: ").count();
        assert_eq!(
            (heads, advertised),
            (3, 1),
            "{version}: only the first response of a connection advertises: {text}"
        );
        let first = text.split("\r\n\r\n").next().unwrap_or("");
        assert!(
            first.to_ascii_lowercase().contains("\nalt-svc: h3="),
            "{version}: {text}"
        );
    }
    // Over HTTP/3, where it refreshes the client's record: three streams, one copy.
    let paths = ["/hello.txt", "/nothing-here", "/digits.txt"];
    let (out, text) = gtlsclient(&server, &[], &paths);
    assert!(out.status.success(), "{text}");
    assert_eq!(statuses(&text).len(), 3, "{text}");
    assert_eq!(text.matches("[alt-svc: h3=").count(), 1, "{text}");
}

#[test]
fn without_quic_nothing_is_advertised_and_udp_is_closed() {
    let www = site();
    let server = Server::serve(www.root()).arg("--no-quic").start();
    let tls = format!("https://localhost:{}/hello.txt", server.addr().port());
    let h1 = curl(&["-k", "--http1.1", &tls]);
    assert_eq!(h1.status, 200);
    assert_eq!(h1.header("alt-svc"), None);
    let (_, text) = gtlsclient(&server, &["--handshake-timeout=1s"], &["/hello.txt"]);
    assert!(statuses(&text).is_empty(), "answered without QUIC: {text}");
}

// ---- the files service over HTTP/3 --------------------------------------------------------------

#[test]
fn files_are_served_over_http3_byte_for_byte() {
    let www = site();
    let big = pseudo_random(3 * 1024 * 1024 + 17, 5);
    www.file("big.bin", &big);
    let server = Server::serve(www.root()).start();
    let (out, text, dl) = download(&server, &["/hello.txt", "/big.bin", "/missing"]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Negotiated ALPN is h3"), "{text}");
    let mut got = statuses(&text);
    got.sort_unstable();
    assert_eq!(got, ["200", "200", "404"]);
    assert_eq!(
        std::fs::read(dl.path().join("hello.txt")).ok(),
        Some(HELLO.to_vec())
    );
    assert_eq!(sha256_file(&dl.path().join("big.bin")), sha256(&big));
}

#[test]
fn a_loopback_path_carries_datagrams_far_larger_than_ethernet_allows() {
    // Path MTU Discovery on a loopback path probes up to 64 KiB, so the client handles a
    // fraction of the packets. Datagrams over 6,550 bytes also show that GSO batches are cut
    // to fit one UDP send: ten of them would not, and the kernel would refuse the batch.
    let www = site();
    let big = pseudo_random(8 * 1024 * 1024, 41);
    www.file("big.bin", &big);
    let server = Server::serve(www.root()).start();
    let (out, text, dl) = download(&server, &["/big.bin"]);
    assert!(out.status.success(), "{}", tail(&text));
    assert_eq!(sha256_file(&dl.path().join("big.bin")), sha256(&big));
    // gtlsclient: "Received packet: local=... remote=... ecn=0x2 16384 bytes"
    let sizes: Vec<usize> = text
        .lines()
        .filter(|l| l.starts_with("Received packet:"))
        .filter_map(|l| l.strip_suffix(" bytes")?.rsplit(' ').next()?.parse().ok())
        .collect();
    let large: usize = sizes.iter().filter(|&&n| n > 6_550).sum();
    // Most of the file, not a lucky probe: a lost batch would have sent quinn back to 1200
    // bytes (black-hole detection) for the rest of the download.
    assert!(
        large > big.len() / 2,
        "{large} of {} bytes came in datagrams over 6,550 bytes; largest {:?}",
        big.len(),
        sizes.iter().max()
    );
}

// ---- request bodies -------------------------------------------------------------------------------

/// A request body to a proxied location streams to the member as it arrives, as over HTTP/1.1
/// and HTTP/2: bounded by the location's limit (none on `/sink`, 1 MiB on `/capped/`), not by
/// `limits.max_body`, and never held whole. A body to static files is read and dropped.
#[test]
fn an_upload_streams_through_the_proxy_and_one_to_static_files_is_dropped() {
    const BODY: usize = 48 << 20;
    let member = Backend::start("m");
    let www = site();
    let toml = format!(
        "workers = 2\n\n[limits]\nmax_body = \"1MiB\"\n\n[[listen]]\naddress = \"127.0.0.1:0\"\n\n\
         [[vhost]]\n\n[[vhost.location]]\npath = \"/sink\"\nproxy = \"pool\"\n\n\
         [[vhost.location]]\npath = \"/capped/\"\nproxy = \"pool\"\nstrip_prefix = true\n\
         max_body = \"1MiB\"\n\n\
         [[vhost.location]]\npath = \"/\"\nroot = {}\n\n\
         [[upstream]]\nname = \"pool\"\nmembers = [\"{}\"]\n",
        toml_path(www.root()),
        member.addr
    );
    let server = Server::run_config(&toml).start();
    let upload = www.outside().join("upload.bin");
    std::fs::write(&upload, vec![b'u'; BODY]).expect("write the upload");
    let data = format!("--data={}", upload.display());
    let scratch = tempfile::tempdir().expect("scratch");
    let dir = format!("--download={}", scratch.path().display());
    let (out, text) = gtlsclient(
        &server,
        &[&data, "--http-method=PUT", "--no-http-dump", &dir],
        &["/sink"],
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(statuses(&text), ["200"], "{text}");
    let counted =
        std::fs::read_to_string(scratch.path().join("sink")).expect("the member's answer");
    assert_eq!(
        counted.trim(),
        BODY.to_string(),
        "bytes the member received"
    );
    // The location's own limit applies.
    let (_, text) = gtlsclient(&server, &[&data, "--http-method=PUT"], &["/capped/sink"]);
    assert_eq!(statuses(&text), ["413"], "{text}");

    // Over `max_body` for static files: 413; within it, read and dropped, then answered.
    let (_, text) = gtlsclient(&server, &[&data, "--http-method=PUT"], &["/hello.txt"]);
    assert_eq!(statuses(&text), ["413"], "{text}");
    let small = www.outside().join("small.bin");
    std::fs::write(&small, vec![b's'; 512 << 10]).expect("write the small upload");
    let small = format!("--data={}", small.display());
    let (_, text) = gtlsclient(&server, &[&small, "--http-method=GET"], &["/hello.txt"]);
    assert_eq!(statuses(&text), ["200"], "{text}");

    let peak = peak_rss(server.pid());
    assert!(peak < (BODY / 2) as u64, "peak RSS {peak} bytes");
}

// ---- early data (RFC 8470) ------------------------------------------------------------------------

/// A first connection leaves a session ticket and the transport parameters in `dir`; the
/// next one sends its request as 0-RTT.
fn early(server: &Server, dir: &Path, method: &str) -> String {
    let session = format!("--session-file={}", dir.join("session").display());
    let tp = format!("--tp-file={}", dir.join("tp").display());
    let method = format!("--http-method={method}");
    let (out, text) = gtlsclient(server, &[&session, &tp, "--no-http-dump"], &["/hello.txt"]);
    assert!(out.status.success(), "priming connection: {text}");
    let (out, text) = gtlsclient(
        server,
        &[&session, &tp, &method, "--no-http-dump"],
        &["/hello.txt"],
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("0RTT STREAM(0x0b) id=0x0"),
        "request not sent as early data: {text}"
    );
    assert!(!text.contains("Early data was rejected"), "{text}");
    text
}

#[test]
fn early_get_is_served_and_early_post_is_too_early() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let scratch = tempfile::tempdir().expect("scratch");
    let get = early(&server, scratch.path(), "GET");
    assert_eq!(statuses(&get), ["200"]);
    let post = early(&server, scratch.path(), "POST");
    assert_eq!(
        statuses(&post),
        ["425"],
        "a POST in 0-RTT must not be processed"
    );
}

#[test]
fn early_data_refused_when_zero_rtt_is_off() {
    let www = site();
    let server = Server::serve(www.root()).arg("--no-zero-rtt").start();
    let scratch = tempfile::tempdir().expect("scratch");
    let session = format!("--session-file={}", scratch.path().join("s").display());
    let tp = format!("--tp-file={}", scratch.path().join("tp").display());
    let _ = gtlsclient(&server, &[&session, &tp], &["/hello.txt"]);
    let (_, text) = gtlsclient(&server, &[&session, &tp], &["/hello.txt"]);
    assert!(text.contains("Early data was rejected"), "{text}");
    assert_eq!(statuses(&text), ["200"], "answered after the handshake");
}

// ---- hostile input --------------------------------------------------------------------------------

#[test]
fn hostile_datagrams_are_dropped_and_others_are_served() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    udp.connect(server.addr()).expect("connect");
    udp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xc0],
        vec![0u8; 1200],
        pseudo_random(1200, 9),
        // A long header of QUIC v1 cut short after the version.
        vec![0xc0, 0, 0, 0, 1],
        // An Initial claiming a 255-byte connection ID (at most 20 are allowed).
        [&[0xc0, 0, 0, 0, 1, 255][..], &[0u8; 1194][..]].concat(),
        // A short header for a connection nobody has.
        [&[0x40][..], &pseudo_random(60, 3)[..]].concat(),
    ];
    for datagram in &junk {
        udp.send(datagram).expect("send");
    }
    // RFC 9000 §6: an Initial-sized datagram of an unknown version is answered with Version
    // Negotiation (version 0), listing QUIC v1.
    let mut unknown = vec![0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8];
    unknown.extend_from_slice(&[1; 8]);
    unknown.push(8);
    unknown.extend_from_slice(&[2; 8]);
    unknown.resize(1200, 0);
    udp.send(&unknown).expect("send");
    let mut buf = [0u8; 1500];
    let n = udp.recv(&mut buf).expect("a Version Negotiation packet");
    assert!(
        n >= 7 && buf[0] & 0x80 != 0,
        "not a long header: {:?}",
        &buf[..n]
    );
    assert_eq!(&buf[1..5], &[0, 0, 0, 0], "not Version Negotiation");
    let versions: Vec<&[u8]> = buf[..n].rchunks(4).collect();
    assert!(versions.contains(&&[0u8, 0, 0, 1][..]), "v1 not offered");

    let (out, text) = gtlsclient(&server, &["--no-http-dump"], &["/hello.txt"]);
    assert!(out.status.success(), "{text}");
    assert_eq!(statuses(&text), ["200"]);
}

// ---- admission: Retry policy and connection cap ---------------------------------------------------

#[test]
fn retry_is_asked_only_above_the_configured_rate() {
    let www = site();
    let server = Server::serve(www.root())
        .arg("--workers")
        .arg("1")
        .arg("--quic-retry")
        .arg("above 2/s")
        .start();
    // Back to back, well within one second: the first two are let in, later ones must first
    // answer a Retry (and are then served).
    let mut retried = Vec::new();
    for _ in 0..6 {
        let (out, text) = gtlsclient(&server, &["--no-http-dump"], &["/hello.txt"]);
        assert!(out.status.success(), "{text}");
        assert_eq!(statuses(&text), ["200"]);
        retried.push(text.contains("type=Retry"));
    }
    assert_eq!(&retried[..2], [false, false], "{retried:?}");
    assert!(
        retried[2..].contains(&true),
        "no Retry above the rate: {retried:?}"
    );
}

#[test]
fn connections_past_the_cap_are_refused_and_admitted_again_when_one_ends() {
    let www = site();
    let toml = config(
        www.root(),
        "",
        "workers = 1\n[quic]\nmax_connections = 1\nidle_timeout = \"1s\"\n",
    );
    let server = Server::run_config(&toml).start();
    let port = server.addr().port().to_string();
    // The first client stays connected after its answer (no exit flag) until the idle timeout.
    let scratch = tempfile::tempdir().expect("scratch");
    let log_path = scratch.path().join("first.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut first = Command::new("timeout")
        .args(["20", "gtlsclient", "--no-quic-dump", "--timeout=1s"])
        .args(["127.0.0.1", &port])
        .arg(format!("https://127.0.0.1:{port}/hello.txt"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("run gtlsclient");
    let deadline = Instant::now() + IO_TIMEOUT;
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains(":status: 200")
    {
        assert!(Instant::now() < deadline, "first connection not answered");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (_, text) = gtlsclient(&server, &["--handshake-timeout=3s"], &["/hello.txt"]);
    assert!(
        statuses(&text).is_empty(),
        "second connection served: {text}"
    );
    assert!(text.contains("CONNECTION_REFUSED"), "{}", tail(&text));
    let _ = first.wait();
    // Once the first connection is gone (idle timeout), a new one is admitted.
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let (_, text) = gtlsclient(&server, &["--handshake-timeout=3s"], &["/hello.txt"]);
        if statuses(&text) == ["200"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never admitted again: {}",
            tail(&text)
        );
    }
}

// ---- drain --------------------------------------------------------------------------------------

#[test]
fn sigterm_lets_an_http3_download_finish_with_goaway_then_exits_0() {
    let www = WebRoot::new();
    let data = pseudo_random(64 * 1024 * 1024, 29);
    www.file("large.bin", &data);
    let mut server = Server::serve(www.root())
        .env("RUST_LOG", "info,switchyard_sessions::h3=debug")
        .start();
    let scratch = tempfile::tempdir().expect("scratch");
    let dir = scratch.path().join("dl");
    std::fs::create_dir(&dir).expect("mkdir");
    let log = std::fs::File::create(scratch.path().join("client.log")).expect("log");
    let port = server.addr().port().to_string();
    // Small flow-control windows keep the download in flight long enough to signal during it.
    let mut child = Command::new("timeout")
        .arg("120")
        .arg("gtlsclient")
        .args([
            "--exit-on-all-streams-close",
            "--no-quic-dump",
            "--no-http-dump",
            "--max-data=128K",
            "--max-stream-data-bidi-local=128K",
            "--max-window=128K",
            "--max-stream-window=128K",
            "--download",
        ])
        .arg(&dir)
        .args(["127.0.0.1", &port])
        .arg(format!("https://127.0.0.1:{port}/large.bin"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("run gtlsclient");
    let dest = dir.join("large.bin");
    let deadline = Instant::now() + IO_TIMEOUT;
    while std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0) < 1024 * 1024 {
        assert!(Instant::now() < deadline, "download did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The client is frozen, so its answer cannot finish and the drain is held open: a new
    // connection meanwhile is refused at once (not left to time out), and the frozen one then
    // carries on.
    freeze(&child, Signal::STOP);
    server.signal(Signal::TERM);
    let deadline = Instant::now() + IO_TIMEOUT;
    while !server.stderr().contains("draining:") {
        assert!(Instant::now() < deadline, "no drain after SIGTERM");
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let (_, text) = gtlsclient(&server, &["--handshake-timeout=5s"], &["/large.bin"]);
    assert!(
        statuses(&text).is_empty(),
        "a new connection was served while draining: {}",
        tail(&text)
    );
    assert!(
        text.contains("CONNECTION_REFUSED"),
        "a new connection was not refused while draining: {}",
        tail(&text)
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refusal took {:?}",
        started.elapsed()
    );
    freeze(&child, Signal::CONT);
    let status = child.wait().expect("gtlsclient");
    let text = std::fs::read_to_string(scratch.path().join("client.log")).unwrap_or_default();
    assert!(status.success(), "client failed: {}", tail(&text));
    assert_eq!(
        sha256_file(&dest),
        sha256(&data),
        "download cut by the drain"
    );
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("no exit 20 s after the drain finished");
    assert!(status.success(), "exit status {status:?} after SIGTERM");
    assert!(
        server.stderr().contains("HTTP/3 GOAWAY sent: draining"),
        "the connection was not sent GOAWAY"
    );
}

/// Send `signal` (STOP or CONT) to a client started under `timeout`, which runs it in a process
/// group of its own: the group is signalled, so the client itself is frozen or resumed.
fn freeze(child: &std::process::Child, signal: Signal) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"))
        .expect("non-zero pid");
    rustix::process::kill_process_group(pid, signal).expect("signal the client");
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

// ---- access log -----------------------------------------------------------------------------------

#[test]
fn every_protocol_writes_the_same_access_log_line() {
    let www = site();
    let log = www.outside().join("access.log");
    let server = Server::serve(www.root())
        .arg("--access-log")
        .arg(&log)
        .start();
    let with_agent = |args: &[&str]| -> Vec<String> {
        ["-A", "interop-agent/2.0", "-e", "http://ref.test/"]
            .iter()
            .chain(args)
            .map(|s| (*s).to_owned())
            .collect()
    };
    let h2c = curl(&with_agent(&[
        "--http2-prior-knowledge",
        &server.url("/hello.txt?q=2"),
    ]));
    assert_eq!(h2c.status, 200);
    let tls_url = format!("https://127.0.0.1:{}/missing", server.addr().port());
    assert_eq!(curl(&with_agent(&["-k", "--http2", &tls_url])).status, 404);
    let (out, text) = gtlsclient(&server, &["--no-http-dump"], &["/hello.txt"]);
    assert!(out.status.success(), "{text}");

    let lines = log_lines(&log, 3);
    assert_eq!(lines.len(), 3, "access log lines: {lines:#?}");
    let len = HELLO.len();
    assert!(
        lines[0].ends_with(&format!(
            "\"GET /hello.txt?q=2 HTTP/2.0\" 200 {len} \"http://ref.test/\" \"interop-agent/2.0\""
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"GET /missing HTTP/2.0\" 404 "),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(&format!("\"GET /hello.txt HTTP/3.0\" 200 {len} ")),
        "{}",
        lines[2]
    );
}
