//! Operations: fault isolation (a panicking request), graceful drain on SIGTERM/SIGINT, access
//! logs, `switchyard check`, connection limits, 1,000 concurrent connections and binary garbage.

use std::path::Path;
use std::time::{Duration, Instant};

use switchyard_interop::{
    CLOSE_TIMEOUT, Conn, IO_TIMEOUT, Server, Signal, WebRoot, check, config, curl, curl_to, get,
    get_close, log_lines, metric, pseudo_random, sha256, toml_path, wait_until,
};

const HELLO: &[u8] = b"hello world\n";

fn site() -> WebRoot {
    let www = WebRoot::new();
    www.file("hello.txt", HELLO).file("boom", "not a bomb");
    www
}

/// A file larger than any socket buffer, so a client that stops reading stalls the server.
fn with_large(www: &WebRoot, len: usize, seed: u64) -> String {
    let data = pseudo_random(len, seed);
    www.file("large.bin", &data);
    sha256(&data)
}

/// Start `GET /large.bin` on a fresh connection and read its head and the first `n` body bytes.
fn start_download(server: &Server, n: usize) -> (Conn, usize, Vec<u8>) {
    let mut conn = server.connect();
    conn.send(get("/large.bin").as_bytes());
    let head = conn.read_head_response();
    assert_eq!(head.status, 200, "{head:?}");
    let len: usize = head
        .header("content-length")
        .expect("Content-Length on a file")
        .parse()
        .expect("numeric Content-Length");
    let first = conn
        .read_exact_raw(n, IO_TIMEOUT)
        .expect("first body bytes");
    (conn, len, first)
}

// ---- a panic is one request's problem ---------------------------------------------------------

#[test]
fn panic_in_files_service_answers_500_and_other_connections_continue() {
    let www = site();
    let want = with_large(&www, 16 * 1024 * 1024, 7);
    let server = Server::serve(www.root())
        .env("SWITCHYARD_FAULT_PANIC_PATH", "/boom")
        .start();

    // Opened before the panic: an idle keep-alive connection and a download in progress.
    let mut idle = server.connect();
    assert_eq!(idle.request(&get("/hello.txt")).status, 200);
    let (mut download, len, mut body) = start_download(&server, 1024 * 1024);

    let mut victim = server.connect();
    let resp = victim.request(&get_close("/boom"));
    assert_eq!(
        resp.status, 500,
        "the panicking request must be answered 500: {resp:?}"
    );

    // The idle connection and the download carry on.
    assert_eq!(
        idle.request(&get("/hello.txt")).body,
        HELLO,
        "keep-alive connection broken by a panic"
    );
    body.extend(
        download
            .read_exact_raw(len - body.len(), Duration::from_secs(30))
            .expect("rest of download"),
    );
    assert_eq!(
        sha256(&body),
        want,
        "download corrupted by a panic elsewhere"
    );

    // Panic repeatedly (reaching every worker's service), then everything still works.
    for i in 0..20 {
        let resp = server.get("/boom");
        assert_eq!(resp.status, 500, "panic #{i}: {resp:?}");
    }
    for _ in 0..20 {
        server.assert_serves("/hello.txt", HELLO);
    }
    assert_eq!(idle.request(&get("/hello.txt")).body, HELLO);
    // Pipelined requests around a panicking one on one connection: answers stay in order.
    let mut conn = server.connect();
    conn.send(format!("{}{}{}", get("/hello.txt"), get("/boom"), get("/hello.txt")).as_bytes());
    assert_eq!(conn.read_response().status, 200);
    assert_eq!(conn.read_response().status, 500);
    let last = conn.try_read_response(false, IO_TIMEOUT);
    if let Ok(Some(last)) = last {
        assert_eq!((last.status, last.body.as_slice()), (200, HELLO));
    } // else: closing after a 500 is allowed.
}

// ---- signals ------------------------------------------------------------------------------------

/// After SIGTERM, poll (bounded) until new connections are no longer served.
fn wait_until_not_accepting(server: &Server, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        let mut conn = Conn::open_or_none(server.addr());
        let Some(conn) = conn.as_mut() else {
            return true;
        };
        if conn.try_send(get_close("/hello.txt").as_bytes()).is_err() {
            return true;
        }
        match conn.try_read_response(false, Duration::from_secs(2)) {
            Ok(Some(resp)) if resp.status == 200 => {}
            _ => return true,
        }
    }
    false
}

#[test]
fn sigterm_stops_accepting_finishes_download_then_exits_0() {
    let www = site();
    let want = with_large(&www, 64 * 1024 * 1024, 9);
    let mut server = Server::serve(www.root()).start();
    let (mut download, len, mut body) = start_download(&server, 1024 * 1024);

    server.signal(Signal::TERM);
    assert!(
        wait_until_not_accepting(&server, Duration::from_secs(10)),
        "still accepting and serving new connections 10 s after SIGTERM"
    );
    assert!(server.is_running(), "exited with a download in flight");

    body.extend(
        download
            .read_exact_raw(len - body.len(), Duration::from_secs(60))
            .expect("rest of download"),
    );
    assert_eq!(
        sha256(&body),
        want,
        "download cut or corrupted by the drain"
    );

    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("no exit 20 s after the drain finished");
    assert!(status.success(), "exit status {status:?} after SIGTERM");
}

#[test]
fn sigterm_closes_idle_keepalive_connections_and_exits_0() {
    let www = site();
    let mut server = Server::serve(www.root()).start();
    let mut idle = server.connect();
    assert_eq!(idle.request(&get("/hello.txt")).status, 200);
    server.signal(Signal::TERM);
    let status = server
        .wait_exit(CLOSE_TIMEOUT)
        .expect("an idle keep-alive connection held off exit");
    assert!(status.success(), "exit status {status:?}");
    assert!(idle.wait_closed(Duration::from_secs(2)).closed);
}

#[test]
fn sigint_exits_0() {
    let www = site();
    let mut server = Server::serve(www.root()).start();
    server.assert_serves("/hello.txt", HELLO);
    server.signal(Signal::INT);
    let status = server
        .wait_exit(CLOSE_TIMEOUT)
        .expect("still running 15 s after SIGINT");
    assert!(status.success(), "exit status {status:?}");
}

/// The `sd_notify(3)` datagrams a `Type=notify` unit's manager reads. No service manager runs
/// here, so the test holds the socket systemd would, and reads what the server says on it.
#[test]
fn a_service_manager_is_told_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let www = site();
    let dir = tempfile::tempdir().expect("scratch");
    let path = dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&path).expect("bind the notify socket");
    manager
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    let next = || {
        let mut buf = [0u8; 512];
        let n = manager.recv(&mut buf).expect("a datagram from the server");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut server = Server::run_config(&config(www.root(), "", ""))
        .env("NOTIFY_SOCKET", &path)
        .start();
    let ready = next();
    assert!(
        ready.starts_with("READY=1\nSTATUS=listening on 127.0.0.1:"),
        "{ready:?}"
    );
    // Ready means served.
    server.assert_serves("/hello.txt", HELLO);

    let config_path = server.dir().join("switchyard.toml");
    let same = config(www.root(), "", "");
    let bigger_body = config(www.root(), "", "[limits]\nmax_body = \"2MiB\"");
    let longer_queue = config(www.root(), "", "[limits]\nservice_queue = 99");
    for (text, status) in [
        (
            "this is not toml [",
            "STATUS=reload failed, running configuration kept: ",
        ),
        (
            &*same,
            "STATUS=configuration reloaded: vhosts=1 certificates=1\n",
        ),
        (
            &*bigger_body,
            "STATUS=configuration reloaded: vhosts=1 certificates=1\n",
        ),
        (
            &*longer_queue,
            "STATUS=configuration reloaded: vhosts=1 certificates=1; a restart applies limits.service_queue\n",
        ),
    ] {
        std::fs::write(&config_path, text).expect("write config");
        server.signal(Signal::HUP);
        let reloading = next();
        let usec = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{reloading:?}"));
        assert!(usec.parse::<u64>().is_ok_and(|n| n > 0), "{reloading:?}");
        // The line ends where the status does.
        let done = next() + "\n";
        assert!(
            done.starts_with(&format!("READY=1\n{status}")),
            "{done:?}, expected {status:?}"
        );
        assert_eq!(done.lines().count(), 2, "one line per assignment: {done:?}");
    }

    server.signal(Signal::TERM);
    assert_eq!(next(), "STOPPING=1\nSTATUS=draining");
    let status = server.wait_exit(CLOSE_TIMEOUT).expect("exit after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn an_abstract_notify_socket_is_told_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let name = format!("switchyard-notify-test-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
    let manager = UnixDatagram::bind_addr(&addr).expect("bind the notify socket");
    manager
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    let www = site();
    let _server = Server::serve(www.root())
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .start();
    let mut buf = [0u8; 512];
    let n = manager.recv(&mut buf).expect("a datagram from the server");
    assert!(buf[..n].starts_with(b"READY=1\n"), "{:?}", &buf[..n]);
}

// ---- access log ---------------------------------------------------------------------------------

fn serve_with_access_log(www: &WebRoot, format: &str) -> (Server, std::path::PathBuf) {
    let log = www.outside().join("access.log");
    let extra = format!(
        "[log]\naccess = {}\naccess_format = \"{format}\"\n",
        toml_path(&log)
    );
    (
        Server::run_config(&config(www.root(), "", &extra)).start(),
        log,
    )
}

#[test]
fn access_log_combined_is_written_to_file() {
    let www = site();
    let (server, log) = serve_with_access_log(&www, "combined");
    let ok = curl(&[
        server.url("/hello.txt?q=1"),
        "-A".into(),
        "interop-agent/1.0".into(),
        "-e".into(),
        "http://ref.test/".into(),
    ]);
    assert_eq!(ok.status, 200);
    let missing = curl(&[server.url("/nope.txt"), "-A".into(), "evil\"agent".into()]);
    assert_eq!(missing.status, 404);
    let lines = log_lines(&log, 2);
    assert_eq!(lines.len(), 2, "access log lines: {lines:#?}");
    let first = &lines[0];
    assert!(first.starts_with("127.0.0.1 - - ["), "{first}");
    assert!(
        first.ends_with(
            "\"GET /hello.txt?q=1 HTTP/1.1\" 200 12 \"http://ref.test/\" \"interop-agent/1.0\""
        ),
        "not combined format: {first}"
    );
    let second = &lines[1];
    assert!(
        second.contains("\"GET /nope.txt HTTP/1.1\" 404 "),
        "{second}"
    );
    assert!(
        !second.contains("evil\"agent"),
        "a quote in User-Agent was logged raw: {second}"
    );
    // A request refused before it was understood is logged too, its line as "-".
    let mut conn = server.connect();
    let refused = conn.request("GET /hello.txt HTTP/1.1\r\n\r\n");
    assert_eq!(refused.status, 400);
    let lines = log_lines(&log, 3);
    assert_eq!(lines.len(), 3, "access log lines: {lines:#?}");
    assert!(lines[2].contains("] \"-\" 400 "), "{}", lines[2]);
}

#[test]
fn sigusr1_reopens_the_access_log_after_a_rotation() {
    let www = site();
    let (server, log) = serve_with_access_log(&www, "combined");
    assert_eq!(curl(&[server.url("/hello.txt")]).status, 200);
    assert_eq!(log_lines(&log, 1).len(), 1);
    // logrotate's way: move the file away, then signal.
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).expect("rotate the log");
    server.signal(Signal::USR1);
    // Until the server has handled the signal, lines still go to the moved file; keep asking
    // (each request is the event we wait on) until one lands in a new file at the old path.
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut requests = 1;
    while !log.exists() {
        assert!(Instant::now() < deadline, "no new access log after SIGUSR1");
        assert_eq!(curl(&[server.url("/hello.txt")]).status, 200);
        requests += 1;
    }
    // Every request's line is in one of the two files, none twice, none lost.
    let count = |path: &Path| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count()
    };
    while count(&rotated) + count(&log) < requests && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert!(
        count(&rotated) >= 1 && count(&log) >= 1,
        "{} / {}",
        count(&rotated),
        count(&log)
    );
    assert_eq!(
        count(&rotated) + count(&log),
        requests,
        "lines lost or doubled across the reopen"
    );
    server.assert_serves("/hello.txt", HELLO);
}

#[test]
fn sighup_swaps_the_routes_keeps_open_connections_and_counts_reloads() {
    let first = WebRoot::new();
    first.file("which.txt", "first\n");
    let second = WebRoot::new();
    second.file("which.txt", "second\n");
    let metrics = "\n[[vhost.location]]\npath = \"/metrics\"\nmetrics = true\n";
    let server = Server::run_config(&config(first.root(), metrics, "")).start();
    let scrape = || metrics_text(&server);
    let reloads = |text: &str| {
        [
            "switchyard_config_reloads_total{result=\"applied\"}",
            "switchyard_config_reloads_total{result=\"refused\"}",
            "switchyard_config_last_reload_successful",
        ]
        .map(|series| metric(text, series))
    };
    let text = scrape();
    let started = metric(&text, "process_start_time_seconds");
    assert_eq!(reloads(&text), [0, 0, 1]);
    assert_eq!(
        metric(
            &text,
            "switchyard_config_last_reload_success_timestamp_seconds"
        ),
        started
    );
    let path = server.dir().join("switchyard.toml");
    // A keep-alive connection opened under the first configuration.
    let mut open = server.connect();
    assert_eq!(open.request(&get("/which.txt")).body, b"first\n");

    // A broken configuration is refused: the server keeps the running one.
    std::fs::write(&path, "this is not toml [").expect("write config");
    server.signal(Signal::HUP);
    // The log line is the only sign the signal was handled: watch for it (bounded), so the
    // next SIGHUP is not merged with this one.
    let deadline = Instant::now() + IO_TIMEOUT;
    while !server.stderr().contains("reload failed") {
        assert!(
            Instant::now() < deadline,
            "a broken configuration was not reported on SIGHUP"
        );
        std::thread::yield_now();
    }
    assert_eq!(open.request(&get("/which.txt")).body, b"first\n");
    assert_eq!(reloads(&scrape()), [0, 1, 0], "a refused reload is counted");
    std::fs::write(&path, config(second.root(), metrics, "")).expect("write config");
    server.signal(Signal::HUP);
    // New requests see the second root once the reload is done; wait on that, bounded.
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let body = curl(&[server.url("/which.txt")]).body;
        if body == b"second\n" {
            break;
        }
        assert_eq!(body, b"first\n", "neither root answered");
        assert!(Instant::now() < deadline, "SIGHUP did not swap the routes");
    }
    // The connection opened before the reload is still served.
    assert_eq!(open.request(&get("/which.txt")).status, 200);
    // Counted before it is logged.
    wait_until(IO_TIMEOUT, "the reload is logged", || {
        server.stderr().contains("configuration reloaded")
    });
    let text = scrape();
    assert_eq!(reloads(&text), [1, 1, 1], "an applied reload is counted");
    assert!(
        metric(
            &text,
            "switchyard_config_last_reload_success_timestamp_seconds"
        ) >= started
    );
    assert!(
        server.stderr().contains("reload failed"),
        "the broken file was not reported"
    );
}

/// The `SETTINGS_MAX_CONCURRENT_STREAMS` a new HTTP/2 (prior knowledge) connection is offered.
fn h2_max_concurrent_streams(server: &Server) -> u32 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(server.addr()).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .expect("preface");
    // The server's preface is a SETTINGS frame, its first frame.
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).expect("the server's SETTINGS");
    assert_eq!(
        (head[3], head[4]),
        (0x4, 0),
        "not a SETTINGS frame first: {head:?}"
    );
    let len = usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).expect("SETTINGS payload");
    payload
        .chunks_exact(6)
        .find(|entry| entry[..2] == [0, 3])
        .map(|entry| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
        .expect("SETTINGS_MAX_CONCURRENT_STREAMS is announced")
}

/// nginx's reload: connections accepted after it get the new limits, timeouts, HTTP/2 settings
/// and access log; a connection keeps the ones it was accepted with. The files limits travel
/// with the routes, so they change for every request routed after the reload.
#[test]
fn sighup_applies_limits_timeouts_http2_and_the_access_log_to_new_connections() {
    let www = site();
    let log = www.outside().join("access.log");
    let tight = "[limits]\nmax_request_line = 256\nmax_ranges = 1\n\n\
                 [http2]\nmax_concurrent_streams = 7\n";
    let server = Server::run_config(&config(www.root(), "", tight)).start();
    let long_line = format!("/{}", "a".repeat(300));
    let two_ranges = "GET /hello.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0,4-4\r\n\r\n";
    let mut before = server.connect();
    assert_eq!(before.request(two_ranges).status, 200, "one range allowed");
    assert_eq!(server.get(&long_line).status, 414);
    assert_eq!(h2_max_concurrent_streams(&server), 7);

    // An access log that cannot be opened refuses the whole reload: nothing else changes.
    let unopenable = format!(
        "[limits]\nmax_ranges = 2\n\n[log]\naccess = {}\n",
        toml_path(&www.outside().join("no-such-dir").join("access.log"))
    );
    let path = server.dir().join("switchyard.toml");
    std::fs::write(&path, config(www.root(), "", &unopenable)).expect("write config");
    server.signal(Signal::HUP);
    wait_until(IO_TIMEOUT, "the refused reload is logged", || {
        server.stderr().contains("reload failed")
    });
    assert!(
        server.stderr().contains("log.access"),
        "{}",
        server.stderr()
    );
    assert_eq!(server.get(&long_line).status, 414);
    assert_eq!(server.connect().request(two_ranges).status, 200);

    let loose = format!(
        "[limits]\nmax_ranges = 2\n\n[timeouts]\nkeepalive = \"1s\"\n\n\
         [http2]\nmax_concurrent_streams = 9\n\n[log]\naccess = {}\n",
        toml_path(&log)
    );
    std::fs::write(
        server.dir().join("switchyard.toml"),
        config(www.root(), "", &loose),
    )
    .expect("write config");
    server.signal(Signal::HUP);
    wait_until(IO_TIMEOUT, "the reload is logged", || {
        server.stderr().contains("configuration reloaded")
    });
    assert!(
        !server.stderr().contains("apply after a restart"),
        "none of these needs a restart: {}",
        server.stderr()
    );

    // New connections: the default request line, the new HTTP/2 settings, the access log.
    assert_eq!(server.get(&long_line).status, 404);
    assert_eq!(h2_max_concurrent_streams(&server), 9);
    assert_eq!(curl(&[server.url("/hello.txt?logged")]).status, 200);
    let lines = log_lines(&log, 1);
    assert!(
        lines.iter().any(|l| l.contains("GET /hello.txt?logged ")),
        "the access log of the new configuration: {lines:#?}"
    );
    // The new keep-alive timeout: an idle new connection is closed after 1 s, not 75.
    let mut idle = server.connect();
    assert_eq!(idle.request(&get("/hello.txt")).status, 200);
    let closed = idle.wait_closed(IO_TIMEOUT);
    assert!(closed.closed && closed.bytes.is_empty(), "{closed:?}");

    // The connection from before keeps its request-line limit; its requests see the new routes
    // and with them the new files limits: two ranges are now served as two parts.
    let parts = before.request(two_ranges);
    assert_eq!(parts.status, 206, "{parts:?}");
    assert!(
        parts
            .header("content-type")
            .is_some_and(|t| t.starts_with("multipart/byteranges")),
        "{parts:?}"
    );
    assert_eq!(before.request(&get(&long_line)).status, 414);
}

#[test]
fn access_log_json_is_one_object_per_line() {
    let www = site();
    let (server, log) = serve_with_access_log(&www, "json");
    let ok = curl(&[
        server.url("/hello.txt"),
        "-A".into(),
        "ua \"quoted\" \\ back".into(),
    ]);
    assert_eq!(ok.status, 200);
    assert_eq!(curl(&[server.url("/nope.txt")]).status, 404);
    let lines = log_lines(&log, 2);
    assert_eq!(lines.len(), 2, "access log lines: {lines:#?}");
    let first: serde_json::Value =
        serde_json::from_str(&lines[0]).unwrap_or_else(|e| panic!("{e}: {}", lines[0]));
    let values: Vec<&serde_json::Value> =
        first.as_object().expect("a JSON object").values().collect();
    let has = |pred: &dyn Fn(&serde_json::Value) -> bool| values.iter().any(|v| pred(v));
    assert!(
        has(&|v| v.as_u64() == Some(200) || v.as_str() == Some("200")),
        "no status 200: {first}"
    );
    assert!(has(&|v| v.as_str() == Some("GET")), "no method: {first}");
    assert!(
        has(&|v| v.as_str().is_some_and(|s| s.contains("/hello.txt"))),
        "no path: {first}"
    );
    assert!(
        has(&|v| v.as_str() == Some("ua \"quoted\" \\ back")),
        "User-Agent not round-tripped: {first}"
    );
    let second: serde_json::Value = serde_json::from_str(&lines[1]).expect("second line is JSON");
    assert!(
        second
            .as_object()
            .expect("object")
            .values()
            .any(|v| v.as_u64() == Some(404) || v.as_str() == Some("404"))
    );
}

// ---- switchyard check -----------------------------------------------------------------------------

/// Write `toml` as `switchyard.toml` in a fresh dir, run `check`, return (exit ok, output, path).
fn check_text(toml: &str) -> (bool, String, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, toml).expect("write config");
    let out = check(&path);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text, path.display().to_string(), dir)
}

/// Whether `text` names `path:LINE:COL` for this `line`.
fn names_position(text: &str, path: &str, line: usize) -> bool {
    let prefix = format!("{path}:{line}:");
    text.find(&prefix).is_some_and(|i| {
        let rest = &text[i + prefix.len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(':')
    })
}

#[test]
fn check_accepts_a_valid_config() {
    let www = site();
    let (ok, text, _, _dir) = check_text(&config(www.root(), "autoindex = true", "workers = 2\n"));
    assert!(ok, "valid config rejected: {text}");
    assert!(text.starts_with("ok"), "check output: {text}");
}

#[test]
fn check_reports_syntax_error_with_file_line_column() {
    let (ok, text, path, _dir) = check_text("workers = 2\n\n[limits\nmax_body = 1\n");
    assert!(!ok, "syntax error accepted");
    assert!(
        names_position(&text, &path, 3),
        "no {path}:3:COL in: {text}"
    );
}

#[test]
fn check_reports_unknown_key_with_file_line_column() {
    let www = site();
    let toml = config(www.root(), "", "[limits]\nmax_body = 10\nmax_bogus = 5\n");
    let line = toml
        .lines()
        .position(|l| l.starts_with("max_bogus"))
        .expect("line")
        + 1;
    let (ok, text, path, _dir) = check_text(&toml);
    assert!(!ok, "unknown key accepted");
    assert!(
        names_position(&text, &path, line),
        "no {path}:{line}:COL in: {text}"
    );
    assert!(text.contains("max_bogus"), "{text}");
}

#[test]
fn check_reports_wrong_type_with_file_line_column() {
    let www = site();
    let toml = config(www.root(), "", "workers = \"two\"\n");
    let line = toml
        .lines()
        .position(|l| l.starts_with("workers"))
        .expect("line")
        + 1;
    let (ok, text, path, _dir) = check_text(&toml);
    assert!(!ok, "wrong type accepted");
    assert!(
        names_position(&text, &path, line),
        "no {path}:{line}:COL in: {text}"
    );
}

#[test]
fn check_names_the_key_of_a_missing_root() {
    let toml =
        "[[listen]]\naddress = \"127.0.0.1:0\"\n[[vhost]]\n[[vhost.location]]\npath = \"/\"\n";
    let (ok, text, _, _dir) = check_text(toml);
    assert!(!ok, "missing root accepted");
    assert!(text.contains("vhost[0].location[0].root"), "{text}");
}

#[test]
fn check_names_the_key_of_a_nonexistent_root() {
    let www = site();
    let (ok, text, _, _dir) = check_text(&config(&www.outside().join("no-such-dir"), "", ""));
    assert!(!ok, "nonexistent root accepted");
    assert!(text.contains("vhost[0].location[0].root"), "{text}");
}

#[test]
fn check_names_the_key_of_a_bad_address() {
    let www = site();
    let toml = config(www.root(), "", "").replace("127.0.0.1:0", "127.0.0.1:notaport");
    let (ok, text, _, _dir) = check_text(&toml);
    assert!(!ok, "bad address accepted");
    assert!(text.contains("listen[0].address"), "{text}");
}

#[test]
fn check_names_the_key_of_a_bad_duration_and_policy() {
    let www = site();
    let (ok, text, _, _dir) =
        check_text(&config(www.root(), "", "[timeouts]\nheader = \"soon\"\n"));
    assert!(!ok && text.contains("timeouts.header"), "{text}");
    let (ok, text, _, _dir) = check_text(&config(www.root(), "symlinks = \"sometimes\"", ""));
    assert!(
        !ok && text.contains("vhost[0].location[0].symlinks"),
        "{text}"
    );
}

#[test]
fn check_reports_errors_in_conf_d_files_by_their_path() {
    let www = site();
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("switchyard.toml");
    std::fs::write(&main, config(www.root(), "", "")).expect("write main");
    std::fs::create_dir(dir.path().join("conf.d")).expect("conf.d");
    let bad = dir.path().join("conf.d/20-bad.toml");
    std::fs::write(
        dir.path().join("conf.d/10-good.toml"),
        "[limits]\nmax_body = 10\n",
    )
    .expect("write");
    std::fs::write(&bad, "\n[timeouts]\nbogus = \"1s\"\n").expect("write");
    let out = check(&main);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "bad conf.d file accepted: {text}");
    assert!(
        names_position(&text, &bad.display().to_string(), 3),
        "no {}:3:COL in: {text}",
        bad.display()
    );
}

#[test]
fn conf_d_files_are_merged() {
    let www = site();
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("switchyard.toml");
    std::fs::write(&main, "[[listen]]\naddress = \"127.0.0.1:0\"\n").expect("write main");
    std::fs::create_dir(dir.path().join("conf.d")).expect("conf.d");
    let site = format!(
        "[[vhost]]\n[[vhost.location]]\npath = \"/\"\nroot = {}\n",
        toml_path(www.root())
    );
    std::fs::write(dir.path().join("conf.d/10-site.toml"), site).expect("write");
    let out = check(&main);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::command(["run", "-c"]).arg(&main).start();
    server.assert_serves("/hello.txt", HELLO);
}

#[test]
fn run_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[limits\n").expect("write");
    let out = std::process::Command::new(switchyard_interop::binary())
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .expect("run switchyard");
    assert!(!out.status.success(), "run started with a broken config");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{}:1:", path.display())));
}

#[test]
fn serve_of_a_missing_directory_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(switchyard_interop::binary())
        .arg("serve")
        .arg(dir.path().join("missing"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("run switchyard");
    assert!(
        !out.status.success(),
        "serve of a missing directory succeeded"
    );
}

// ---- listeners, workers, connection limits ------------------------------------------------------

#[test]
fn every_configured_listener_serves() {
    let www = site();
    let toml = config(www.root(), "", "[[listen]]\naddress = \"[::1]:0\"\n");
    let server = Server::run_config(&toml).listeners(2).start();
    assert_ne!(server.addrs()[0], server.addrs()[1]);
    for addr in server.addrs() {
        let resp = Conn::open(*addr).request(&get_close("/hello.txt"));
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (200, HELLO),
            "listener {addr}"
        );
    }
}

#[test]
fn serve_honours_workers_flag() {
    let www = site();
    let server = Server::serve(www.root()).arg("--workers").arg("1").start();
    server.assert_serves("/hello.txt", HELLO);
}

#[test]
fn connections_past_max_connections_are_closed() {
    let www = site();
    let server = Server::run_config(&config(
        www.root(),
        "",
        "workers = 1\n[limits]\nmax_connections = 4\n",
    ))
    .start();
    let mut held: Vec<Conn> = (0..4).map(|_| server.connect()).collect();
    for conn in &mut held {
        assert_eq!(conn.request(&get("/hello.txt")).status, 200);
    }
    let mut extra = server.connect();
    let _ = extra.try_send(get("/hello.txt").as_bytes());
    let closed = extra.wait_closed(Duration::from_secs(5));
    assert!(
        closed.closed,
        "a 5th connection stayed open with max_connections = 4"
    );
    assert!(
        matches!(closed.status(), None | Some(503)),
        "{:?}",
        String::from_utf8_lossy(&closed.bytes)
    );
    // Freeing a slot lets a new connection in.
    drop(held.pop());
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let mut conn = server.connect();
        let _ = conn.try_send(get_close("/hello.txt").as_bytes());
        if let Ok(Some(resp)) = conn.try_read_response(false, Duration::from_secs(2))
            && resp.status == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection accepted after a slot was freed"
        );
    }
}

#[test]
fn thousand_concurrent_connections_are_all_answered() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let mut conns: Vec<Conn> = (0..1000).map(|_| server.connect()).collect();
    for conn in &mut conns {
        conn.send(get("/hello.txt").as_bytes());
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        let resp = conn.read_response_within(false, Duration::from_secs(30));
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (200, HELLO),
            "connection {i}"
        );
    }
    // All 1000 are still open and keep-alive.
    for conn in &mut conns {
        conn.send(get("/hello.txt").as_bytes());
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        assert_eq!(
            conn.read_response().status,
            200,
            "second request on connection {i}"
        );
    }
}

/// Open `n` connections from a thread pinned to `cpu`, each answered once (so the server has
/// accepted and counted it). Over loopback a connection's handshake is received on the CPU of
/// the thread that connects, and that is when the kernel picks its listener. In a `burst`,
/// every handshake is done before the first request, so all are placed before the server
/// accepts any; otherwise each is answered before the next one opens.
fn connections_from_cpu(server: &Server, cpu: usize, n: usize, burst: bool) -> Vec<Conn> {
    let addr = server.addr();
    std::thread::spawn(move || {
        pin_to(cpu);
        let answer = |conn: &mut Conn| assert_eq!(conn.request(&get("/hello.txt")).status, 200);
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            conns.push(Conn::open(addr));
            if !burst {
                conns.last_mut().map(answer);
            }
        }
        if burst {
            conns.iter_mut().for_each(answer);
        }
        conns
    })
    .join()
    .expect("client thread")
}

/// Keep the calling thread on `cpu`: over loopback, its segments are received there.
fn pin_to(cpu: usize) {
    use rustix::thread::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set).expect("pin the client thread");
}

/// The CPUs the test may run on (the server inherits them; worker w pairs with the w-th), and
/// a server with two workers and metrics.
fn paired_server(www: &WebRoot) -> (Vec<usize>, Server) {
    use rustix::thread::{CpuSet, sched_getaffinity};
    let set = sched_getaffinity(None).expect("CPUs of the test");
    let cpus: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect();
    assert!(
        cpus.len() >= 2,
        "workers pair with CPUs: this test needs two, it has {cpus:?}"
    );
    let server = Server::serve(www.root())
        .arg("--workers")
        .arg("2")
        .arg("--metrics")
        .arg("/metrics")
        .start();
    (cpus, server)
}

/// `switchyard_worker_connections_open` of workers 0 and 1 (the scrape's own connection is
/// open on one of them).
fn open_per_worker(server: &Server) -> [u64; 2] {
    let text = metrics_text(server);
    [0, 1].map(|w| {
        metric(
            &text,
            &format!("switchyard_worker_connections_open{{worker=\"{w}\"}}"),
        )
    })
}

/// The server's metrics, as a scrape over HTTP/1.1 sees them.
fn metrics_text(server: &Server) -> String {
    let scrape = curl(&["--http1.1", &server.url("/metrics")]);
    String::from_utf8_lossy(&scrape.body).into_owned()
}

/// Connections received on a CPU go to the worker paired with it (`SO_INCOMING_CPU`), until
/// that worker has stayed a margin above the others: then they are hashed over all workers.
#[test]
fn connections_go_to_the_worker_paired_with_their_cpu_until_it_is_loaded() {
    let www = site();
    let (cpus, server) = paired_server(&www);
    let mut held = connections_from_cpu(&server, cpus[0], 20, true);
    let [w0, w1] = open_per_worker(&server);
    assert!(
        (20..=21).contains(&w0) && w1 <= 1,
        "CPU {}: {w0} {w1}",
        cpus[0]
    );
    held.extend(connections_from_cpu(&server, cpus[1], 20, true));
    let [w0, w1] = open_per_worker(&server);
    assert!(
        (20..=21).contains(&w0) && (20..=21).contains(&w1),
        "{w0} {w1}"
    );
    // 40 more from the first CPU: worker 0 is 40 above worker 1, beyond the margin it may keep
    // (16 + 20/8), but only for now: they all go to worker 0.
    held.extend(connections_from_cpu(&server, cpus[0], 40, true));
    let [w0, w1] = open_per_worker(&server);
    assert!(
        (60..=61).contains(&w0) && (20..=21).contains(&w1),
        "{w0} {w1}"
    );
    // Once the imbalance has lasted (0.1 s), worker 0 stops asking for its CPU's connections
    // and 200 more, opened one after the other, are hashed: worker 1 gets about half of them
    // (pairing alone would leave it none).
    std::thread::sleep(Duration::from_millis(150));
    held.extend(connections_from_cpu(&server, cpus[0], 200, false));
    let [w0, w1] = open_per_worker(&server);
    assert!(w0 + w1 >= 280, "{w0} {w1}");
    assert!(w1 >= 70, "worker 1 has {w1} of {}: not rebalanced", w0 + w1);
    // Every one of them is still served.
    for (i, conn) in held.iter_mut().enumerate() {
        assert_eq!(
            conn.request(&get("/hello.txt")).status,
            200,
            "connection {i}"
        );
    }
}

/// Send `requests` requests on each connection, one connection after the other, from a thread
/// pinned to `cpu`; every answer must be the file.
fn use_from_cpu(cpu: usize, mut conns: Vec<Conn>, requests: usize) -> Vec<Conn> {
    std::thread::spawn(move || {
        pin_to(cpu);
        for (i, conn) in conns.iter_mut().enumerate() {
            for r in 0..requests {
                let answer = conn.request(&get("/hello.txt"));
                assert_eq!(
                    (answer.status, answer.body.as_slice()),
                    (200, HELLO),
                    "connection {i}, request {r}"
                );
            }
        }
        conns
    })
    .join()
    .expect("client thread")
}

/// A plain HTTP/1.1 connection whose requests come from another CPU than the one it was
/// accepted on moves, between two requests, to the worker paired with that CPU, and is served
/// there; moves stop where they would load that worker beyond the balance margin.
#[test]
fn connections_move_to_the_worker_of_the_cpu_their_requests_come_from() {
    let www = site();
    let (cpus, server) = paired_server(&www);
    let moved =
        |server: &Server| metric(&metrics_text(server), "switchyard_connections_moved_total");
    // Accepted on the first CPU: all on worker 0, each past its first request.
    let held = connections_from_cpu(&server, cpus[0], 40, true);
    let [w0, w1] = open_per_worker(&server);
    assert!((40..=41).contains(&w0) && w1 <= 1, "{w0} {w1}");
    // Used from the second CPU, 40 requests each: a connection looks at its CPU after its first
    // request, then every 16, and moves when two looks agree (after its 35th). The first ones
    // move while worker 1 stays within the margin of worker 0 (16 + an eighth of the least
    // load): 28 of them, leaving 12 against 28.
    let held = use_from_cpu(cpus[1], held, 40);
    let [w0, w1] = open_per_worker(&server);
    let n = moved(&server);
    assert!((26..=30).contains(&n), "{n} moved ({w0} {w1})");
    assert!(w0 + w1 >= 40, "{w0} {w1}");
    assert!(w1 > w0, "{w0} {w1}: none followed their CPU");
    assert!(w1 <= w0 + 16 + w0 / 8 + 1, "{w0} {w1}: beyond the margin");
    // Served where they are now, from anywhere.
    let mut held = held;
    for (i, conn) in held.iter_mut().enumerate() {
        assert_eq!(conn.request(&get("/hello.txt")).body, HELLO, "{i}");
    }
    // Used from the first CPU again, they move back, up to the margin again (about 16). A
    // connection that moved looks at its CPU half as often: after 16 requests, then 32.
    let _held = use_from_cpu(cpus[0], held, 60);
    let [w0, w1] = open_per_worker(&server);
    assert!(
        moved(&server) >= n + 10,
        "{} moved ({w0} {w1})",
        moved(&server)
    );
    assert!(w0 > w1, "{w0} {w1}");
}

/// Keep every thread of process `pid` on `cpu`.
fn pin_process(pid: u32, cpu: usize) {
    use rustix::thread::{CpuSet, Pid, sched_setaffinity};
    let mut set = CpuSet::new();
    set.set(cpu);
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    for task in tasks {
        let tid = task.expect("a thread").file_name();
        let tid: i32 = tid.to_string_lossy().parse().expect("a thread id");
        sched_setaffinity(Pid::from_raw(tid), &set).expect("pin a server thread");
    }
}

/// A large file asked for from the CPU the serving worker runs on is sent by a worker paired
/// with another CPU (the sending and the client's reading then run side by side), whole, and
/// the connection goes on; asked for from another CPU, it is sent where it is.
#[test]
fn a_large_body_is_sent_by_a_worker_off_its_clients_cpu() {
    let www = site();
    let data = pseudo_random(8 << 20, 23);
    www.file("large.bin", &data);
    let (cpus, server) = paired_server(&www);
    // Whichever worker serves a connection, it runs on the first CPU.
    pin_process(server.pid(), cpus[0]);
    let handed = |server: &Server| metric(&metrics_text(server), "switchyard_bodies_handed_total");
    let addr = server.addr();
    let download = move |cpu: usize, data: Vec<u8>| {
        std::thread::spawn(move || {
            pin_to(cpu);
            let mut conn = Conn::open(addr);
            let whole = conn.request(&get("/large.bin"));
            assert_eq!(whole.status, 200);
            assert!(sha256(&whole.body) == sha256(&data), "the whole file");
            let range =
                "GET /large.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=1000-5999999\r\n\r\n";
            let part = conn.request(range);
            assert_eq!(part.status, 206);
            assert!(
                sha256(&part.body) == sha256(&data[1000..6_000_000]),
                "the range"
            );
            assert_eq!(conn.request(&get("/hello.txt")).body, HELLO);
        })
        .join()
        .expect("client thread");
    };
    download(cpus[1], data.clone());
    assert_eq!(
        handed(&server),
        0,
        "apart from the client: sent where it is"
    );
    download(cpus[0], data);
    assert_eq!(
        handed(&server),
        2,
        "beside the client: handed to the other worker"
    );
}

#[test]
fn concurrent_large_downloads_are_intact() {
    let www = site();
    let want = with_large(&www, 16 * 1024 * 1024, 11);
    let server = Server::serve(www.root()).start();
    let dir = tempfile::tempdir().expect("download dir");
    let url = server.url("/large.bin");
    let downloads: Vec<_> = (0..8)
        .map(|i| {
            let dest = dir.path().join(format!("large-{i}.bin"));
            let url = url.clone();
            std::thread::spawn(move || (curl_to(&dest, &[url]), dest))
        })
        .collect();
    for (i, handle) in downloads.into_iter().enumerate() {
        let (out, dest) = handle.join().expect("download thread");
        assert_eq!(
            (out.exit, out.status),
            (0, 200),
            "download {i}: {}",
            out.stderr
        );
        assert_eq!(
            switchyard_interop::sha256_file(&dest),
            want,
            "download {i} corrupted"
        );
    }
}

// ---- binary garbage -----------------------------------------------------------------------------

/// Garbage must get a 400 or a bare close (never a hang, never another answer).
fn assert_refused(server: &Server, payload: &[u8], what: &str) {
    let mut conn = server.connect();
    let _ = conn.try_send(payload);
    let closed = conn.wait_closed(CLOSE_TIMEOUT);
    assert!(
        closed.closed,
        "{what}: connection still open after {CLOSE_TIMEOUT:?}"
    );
    match closed.status() {
        None => assert!(
            closed.bytes.is_empty(),
            "{what}: non-HTTP bytes sent back: {:?}",
            String::from_utf8_lossy(&closed.bytes)
        ),
        Some(status) => assert_eq!(status, 400, "{what}"),
    }
}

#[test]
fn binary_garbage_is_refused_and_server_keeps_serving() {
    let www = site();
    let server = Server::serve(www.root()).start();
    for seed in 1..=8u64 {
        let mut payload = pseudo_random(4096, seed);
        payload[0] = b'\x01'; // not a TLS, BitTorrent or HTTP/2 prefix: the HTTP/1 path must refuse it
        assert_refused(&server, &payload, &format!("random seed {seed}"));
    }
    assert_refused(&server, &[0u8; 2048], "NUL bytes");
    assert_refused(&server, &[0xffu8; 2048], "0xff bytes");
    let mut after_line = b"GET /hello.txt HTTP/1.1\r\n".to_vec();
    after_line.extend(pseudo_random(2048, 99));
    assert_refused(&server, &after_line, "request line then garbage");
    server.assert_serves("/hello.txt", HELLO);
}

#[test]
fn garbage_after_a_valid_request_is_refused() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let mut conn = server.connect();
    assert_eq!(conn.request(&get("/hello.txt")).status, 200);
    let mut payload = pseudo_random(4096, 5);
    payload[0] = b'\x01';
    let _ = conn.try_send(&payload);
    let closed = conn.wait_closed(CLOSE_TIMEOUT);
    assert!(closed.closed, "connection still open after garbage");
    assert!(matches!(closed.status(), None | Some(400)));
    server.assert_serves("/hello.txt", HELLO);
}

#[test]
fn early_client_disconnects_do_not_disturb_the_server() {
    let www = site();
    with_large(&www, 8 * 1024 * 1024, 3);
    let server = Server::serve(www.root()).start();
    for _ in 0..50 {
        // Half a request, then gone.
        let mut conn = server.connect();
        conn.send(b"GET /hello.txt HTTP/1.1\r\nHo");
    }
    for _ in 0..20 {
        // A large download abandoned after its first bytes.
        let (conn, _, _) = start_download(&server, 1024);
        drop(conn);
    }
    server.assert_serves("/hello.txt", HELLO);
    let out = curl_to(Path::new("/dev/null"), &[server.url("/large.bin")]);
    assert_eq!((out.exit, out.status), (0, 200), "{}", out.stderr);
}

// ---- metrics ------------------------------------------------------------------------------------

#[test]
fn metrics_count_connections_and_responses_by_protocol() {
    let www = site();
    let server = Server::serve(www.root())
        .arg("--metrics")
        .arg("/metrics")
        .start();
    let url = server.url("/hello.txt");
    for _ in 0..3 {
        assert_eq!(curl(&["--http1.1", &url]).status, 200);
    }
    assert_eq!(curl(&["--http1.1", &server.url("/missing")]).status, 404);
    for _ in 0..2 {
        assert_eq!(curl(&["--http2-prior-knowledge", &url]).status, 200);
    }
    let https = format!("https://localhost:{}/hello.txt", server.addr().port());
    assert_eq!(curl(&["-k", "--http1.1", &https]).status, 200);
    // A ClientHello that is not one: the handshake fails, and is counted.
    let mut conn = server.connect();
    conn.send(b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\xff\xff\xff\xff");
    assert!(conn.wait_closed(CLOSE_TIMEOUT).closed);

    let scrape = curl(&["--http1.1", &server.url("/metrics")]);
    assert_eq!(scrape.status, 200, "{}", scrape.stderr);
    assert_eq!(
        scrape.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8_lossy(&scrape.body).into_owned();
    let responses = |proto: &str, class: &str| {
        metric(
            &text,
            &format!("switchyard_responses_total{{protocol=\"{proto}\",code=\"{class}\"}}"),
        )
    };
    // The scrape's own response is counted after it is written.
    assert_eq!(responses("http1", "2xx"), 4, "{text}");
    assert_eq!(responses("http1", "4xx"), 1, "{text}");
    assert_eq!(responses("h2", "2xx"), 2, "{text}");
    assert_eq!(responses("h3", "2xx"), 0, "{text}");
    let body = |proto: &str| {
        metric(
            &text,
            &format!("switchyard_response_body_bytes_total{{protocol=\"{proto}\"}}"),
        )
    };
    assert_eq!(body("h2"), 2 * HELLO.len() as u64, "{text}");
    let conns = |proto: &str| {
        metric(
            &text,
            &format!("switchyard_connections_total{{protocol=\"{proto}\"}}"),
        )
    };
    // Four plain HTTP/1.1 connections and the scrape's; the TLS handshake and the broken one.
    assert_eq!(conns("http1"), 5, "{text}");
    assert_eq!(conns("h2c"), 2, "{text}");
    assert_eq!(conns("tls"), 2, "{text}");
    assert_eq!(metric(&text, "switchyard_tls_handshake_failures_total"), 1);
    assert_eq!(conns("unrecognised"), 0, "{text}");
    assert!(metric(&text, "switchyard_connections_open") >= 1, "{text}");
    assert!(
        metric(&text, "process_resident_memory_bytes") > 1 << 20,
        "{text}"
    );
    assert!(metric(&text, "process_open_fds") > 3, "{text}");

    // A connection closed before its first byte is counted as unrecognised.
    drop(server.connect());
    let unrecognised = "switchyard_connections_total{protocol=\"unrecognised\"}";
    wait_until(IO_TIMEOUT, "the closed connection counted", || {
        metric(&metrics_text(&server), unrecognised) == 1
    });

    let post = curl(&["--http1.1", "-X", "POST", &server.url("/metrics")]);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    // Everything else is still served from files.
    server.assert_serves("/hello.txt", HELLO);
}
