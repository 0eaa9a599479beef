//! Hipache-style routes from Redis through the real binary: a `redis-server` and `test-backend`
//! members started here, routes written with `redis-cli` the way Hipache's tools write them.
//! Route changes apply live, failing backends are marked dead for every instance, request
//! bodies stream to the backends under `[redis_routes] max_body`, and a Redis that goes away
//! leaves the cached routes serving.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchyard_interop::{Backend, Conn, Response, Server, WebRoot, peak_rss, toml_path};

struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (interop/test.sh installs it)");
        let redis = Redis { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.try_cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn server(redis: &Redis, root: &WebRoot) -> Server {
    server_with(redis, root, "")
}

/// A server whose `[redis_routes]` section also has `extra` (keys, one per line).
fn server_with(redis: &Redis, root: &WebRoot, extra: &str) -> Server {
    let toml = format!(
        "workers = 2\n\n[[listen]]\naddress = \"127.0.0.1:0\"\n\n\
         [redis_routes]\nurl = \"redis://127.0.0.1:{}\"\ncache_ttl = \"60s\"\ndead_ttl = \"30s\"\n{extra}\n\
         [[vhost]]\nnames = [\"static.test\"]\n\n[[vhost.location]]\npath = \"/\"\nroot = {}\n",
        redis.port,
        toml_path(root.root())
    );
    Server::run_config(&toml).start()
}

/// How curl sends an upload.
#[derive(Clone, Copy)]
enum Body {
    /// From a file: announced with `Content-Length`.
    Sized,
    /// From stdin: chunked over HTTP/1.1 (and of unknown length over HTTP/2).
    Piped,
}

/// curl uploading `len` bytes to `path` of `host`; the status and the answer's body.
fn upload(
    server: &Server,
    host: &str,
    path: &str,
    len: usize,
    how: Body,
    args: &[&str],
) -> (u16, String) {
    let dir = tempfile::tempdir().expect("dir");
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--max-time", "60", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Host: {host}"))
        .args(args);
    match how {
        Body::Sized => {
            let file = dir.path().join("upload.bin");
            std::fs::write(&file, vec![b'u'; len]).expect("write the upload");
            curl.arg("-T").arg(&file).stdin(Stdio::null());
        }
        Body::Piped => {
            curl.args(["-T", "-"]).stdin(Stdio::piped());
        }
    }
    let mut child = curl
        .arg(server.url(path))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    if let Some(mut stdin) = child.stdin.take() {
        let chunk = vec![b'u'; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            // A refused upload may stop being read: the answer tells.
            if stdin.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n;
        }
    }
    let out = child.wait_with_output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("curl's status line");
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

fn site() -> WebRoot {
    let root = WebRoot::new();
    root.file("index.html", "static site");
    root
}

fn get_host(server: &Server, host: &str) -> Response {
    let mut conn: Conn = server.connect();
    conn.request(&format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    ))
}

/// Poll until `host` is answered with `body`; how long it took.
fn until_body(server: &Server, host: &str, body: &str) -> Duration {
    let start = Instant::now();
    loop {
        let r = get_host(server, host);
        if r.status == 200 && r.text().trim() == body {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{host} never answered {body:?}; last: {} {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn hosts_in_redis_are_proxied_and_changes_apply_live() {
    let redis = Redis::start();
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    redis.cli(&["RPUSH", "frontend:app.test", "app", &a.url(), &b.url()]);
    redis.cli(&["RPUSH", "frontend:*.wild.test", "wild", &c.url()]);
    let root = site();
    let server = server(&redis, &root);

    // Both backends of the route take turns.
    let mut seen: Vec<String> = (0..6)
        .map(|_| {
            let r = get_host(&server, "App.Test:80");
            assert_eq!(r.status, 200, "{r:?}");
            r.text()
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["a", "b"]);
    // Wildcards, and hosts without a frontend go to the configured vhosts.
    assert_eq!(get_host(&server, "x.wild.test").text(), "c");
    assert_eq!(get_host(&server, "static.test").text(), "static site");
    assert_eq!(get_host(&server, "unknown.test").text(), "static site");

    // A changed list applies within a second (the lookup cache trusts entries for 60 s, so
    // only the keyspace notification can make this happen).
    redis.cli(&["LSET", "frontend:app.test", "1", &c.url()]);
    redis.cli(&["LREM", "frontend:app.test", "0", &b.url()]);
    let took = until_body(&server, "app.test", "c");
    assert!(took < Duration::from_secs(1), "the change took {took:?}");
    for _ in 0..4 {
        assert_eq!(get_host(&server, "app.test").text(), "c");
    }
    // A new frontend, and a deleted one.
    redis.cli(&["RPUSH", "frontend:new.test", "new", &b.url()]);
    let took = until_body(&server, "new.test", "b");
    assert!(took < Duration::from_secs(1), "the new host took {took:?}");
    redis.cli(&["DEL", "frontend:app.test"]);
    let took = until_body(&server, "app.test", "static site");
    assert!(took < Duration::from_secs(1), "the deletion took {took:?}");
}

#[test]
fn failing_backends_are_marked_dead_for_every_instance() {
    let redis = Redis::start();
    let a = Backend::start("a");
    let mut gone = Backend::start("gone");
    let gone_url = gone.url();
    gone.kill();
    redis.cli(&["RPUSH", "frontend:app.test", "app", &gone_url, &a.url()]);
    let root = site();
    let server = server(&redis, &root);
    // No request is lost to the dead backend: failover to the live one.
    for _ in 0..6 {
        let r = get_host(&server, "app.test");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), "a");
    }
    // The failure was written to Redis, for the other instances sharing it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.cli(&["SMEMBERS", "dead:app.test"]) != "0" {
        assert!(Instant::now() < deadline, "no dead mark was written");
        std::thread::sleep(Duration::from_millis(10));
    }
    let ttl: i64 = redis.cli(&["TTL", "dead:app.test"]).parse().expect("TTL");
    assert!((1..=30).contains(&ttl), "the mark expires: {ttl}");

    // A mark written by another instance takes a backend out here too.
    let b = Backend::start("b");
    redis.cli(&["DEL", "frontend:other.test"]);
    redis.cli(&["RPUSH", "frontend:other.test", "other", &a.url(), &b.url()]);
    let _ = until_body(&server, "other.test", "a");
    let _ = until_body(&server, "other.test", "b");
    redis.cli(&["SADD", "dead:other.test", "0"]);
    let start = Instant::now();
    loop {
        let answers: Vec<String> = (0..4)
            .map(|_| get_host(&server, "other.test").text())
            .collect();
        if answers.iter().all(|t| t == "b") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "still using a: {answers:?}"
        );
    }
    // Every backend marked dead: a clear 502.
    redis.cli(&["SADD", "dead:other.test", "1"]);
    let start = Instant::now();
    loop {
        let r = get_host(&server, "other.test");
        if r.status == 502 {
            assert!(r.text().contains("marked dead"), "{r:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "{r:?}");
    }
    // An unusable backend URL: a clear 502 too, and the server keeps serving the others.
    redis.cli(&[
        "RPUSH",
        "frontend:bad.test",
        "bad",
        "ftp://nowhere",
        "http://x/y",
    ]);
    let r = get_host(&server, "bad.test");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.text().contains("no usable backend"), "{r:?}");
    assert_eq!(get_host(&server, "app.test").text(), "a");
    assert_eq!(get_host(&server, "static.test").text(), "static site");
}

#[test]
fn cached_routes_keep_serving_while_redis_is_down() {
    let mut redis = Redis::start();
    let a = Backend::start("a");
    redis.cli(&["RPUSH", "frontend:app.test", "app", &a.url()]);
    let root = site();
    let server = server(&redis, &root);
    assert_eq!(get_host(&server, "app.test").text(), "a");
    redis.kill();
    let start = Instant::now();
    for _ in 0..10 {
        let r = get_host(&server, "app.test");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), "a");
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "answers waited for Redis: {:?}",
        start.elapsed()
    );
    // Hosts never looked up go to the configured vhosts.
    assert_eq!(get_host(&server, "never.test").text(), "static site");
    assert_eq!(get_host(&server, "static.test").text(), "static site");
    // Hostile hosts: clear answers, the server keeps serving.
    let mut conn = server.connect();
    let r = conn.request("GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n");
    assert!(r.status == 200 || r.status == 400, "{r:?}");
    assert_eq!(get_host(&server, "app.test").text(), "a");
}

#[test]
fn request_bodies_stream_to_redis_routed_backends() {
    const LEN: usize = 96 << 20;
    let redis = Redis::start();
    let a = Backend::start("a");
    redis.cli(&["RPUSH", "frontend:app.test", "app", &a.url()]);
    let root = site();
    let server = server(&redis, &root);
    let before = peak_rss(server.pid());
    // 96 MiB, far over `limits.max_body` (1 MiB by default), which bounds collected bodies:
    // it streams to the backend, which counts what it received. Chunked over HTTP/1.1, with a
    // length over HTTP/1.1, and over HTTP/2.
    let chunked = upload(&server, "app.test", "/sink", LEN, Body::Piped, &[]);
    assert_eq!(chunked, (200, LEN.to_string()));
    let sized = upload(&server, "app.test", "/sink", LEN, Body::Sized, &[]);
    assert_eq!(sized, (200, LEN.to_string()));
    let h2 = upload(
        &server,
        "app.test",
        "/sink",
        LEN,
        Body::Piped,
        &["--http2-prior-knowledge"],
    );
    assert_eq!(h2, (200, LEN.to_string()));
    // None of them sat in memory.
    let grew = peak_rss(server.pid()).saturating_sub(before);
    assert!(
        grew < 32 << 20,
        "peak RSS grew by {grew} bytes for {LEN}-byte uploads"
    );
    // A host Redis has no route for falls through to the static site, which answers a body it
    // does not take with 405; the server goes on serving both.
    let (status, _) = upload(
        &server,
        "static.test",
        "/",
        4 << 20,
        Body::Piped,
        &["-X", "POST"],
    );
    assert_eq!(status, 405);
    let h2_post = ["--http2-prior-knowledge", "-X", "POST"];
    let (status, _) = upload(&server, "static.test", "/", 4 << 20, Body::Piped, &h2_post);
    assert_eq!(status, 405);
    assert_eq!(get_host(&server, "static.test").text(), "static site");
    assert_eq!(get_host(&server, "app.test").text(), "a");
}

#[test]
fn redis_routed_bodies_are_bounded_by_their_max_body() {
    let redis = Redis::start();
    let a = Backend::start("a");
    redis.cli(&["RPUSH", "frontend:app.test", "app", &a.url()]);
    let root = site();
    let server = server_with(&redis, &root, "max_body = \"2MiB\"\n");
    let len = 3 << 20;
    // Announced too long: refused before any of it is read. Of unknown length: cut off at the
    // limit. Either way 413, and the connection closes.
    let sized = upload(&server, "app.test", "/sink", len, Body::Sized, &[]);
    assert_eq!(sized.0, 413, "{sized:?}");
    let chunked = upload(&server, "app.test", "/sink", len, Body::Piped, &[]);
    assert_eq!(chunked.0, 413, "{chunked:?}");
    // A body too long is the client's fault: the backend is not marked dead for it.
    assert_eq!(redis.cli(&["EXISTS", "dead:app.test"]), "0");
    // Within the limit it streams through.
    let within = upload(&server, "app.test", "/sink", 2 << 20, Body::Sized, &[]);
    assert_eq!(within, (200, (2usize << 20).to_string()));
    assert_eq!(get_host(&server, "app.test").text(), "a");
}
