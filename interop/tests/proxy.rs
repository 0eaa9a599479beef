//! The reverse proxy against real members: nginx instances with distinct content, the
//! `test-backend` program (slow, reset, 500, truncated, garbage, WebSocket echo), and Switchyard
//! itself as an h2c member. Clients are curl and raw sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::path::Path;

use switchyard_interop::{
    Backend, Server, WebRoot, certificate, check, curl, free_port, get, metric, peak_rss,
    terminate, toml_path, wait_until,
};

// ---------------------------------------------------------------------------------------------
// Members
// ---------------------------------------------------------------------------------------------

/// An nginx serving `body` at `/` on a free loopback port, stopped when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(body: &str) -> Nginx {
        let dir = tempfile::tempdir().expect("nginx dir");
        let root = dir.path().join("www");
        std::fs::create_dir(&root).expect("www");
        std::fs::write(root.join("index.html"), body).expect("index");
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; keepalive_requests 1000000;\n\
               client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};\n\
               uwsgi_temp_path {d}; scgi_temp_path {d};\n\
               server {{ listen 127.0.0.1:{port}; root {}; }} }}\n",
            root.display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("conf");
        let child = Command::new("nginx")
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx (interop/test.sh installs it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        wait_until(Duration::from_secs(10), "nginx listens", || {
            TcpStream::connect(addr).is_ok()
        });
        Nginx {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Not SIGKILL: the master stops its workers before it exits (killed outright, it would
        // leave them running).
        terminate(&mut self.child);
    }
}

/// Switchyard proxying `/` to a pool of `members`. `upstream` lines go in the `[[upstream]]`
/// table (sub-tables last), `location` lines in the location.
fn proxy(members: &[SocketAddr], upstream: &str, location: &str) -> Server {
    let list: Vec<String> = members.iter().map(|a| format!("\"{a}\"")).collect();
    Server::run_config(&proxy_toml(&list.join(", "), upstream, location)).start()
}

fn proxy_toml(members: &str, upstream: &str, location: &str) -> String {
    format!(
        "workers = 2\n\n[[listen]]\naddress = \"127.0.0.1:0\"\n\n\
         [[vhost]]\n\n[[vhost.location]]\npath = \"/\"\nproxy = \"pool\"\n{location}\n\n\
         [[upstream]]\nname = \"pool\"\nmembers = [{members}]\n{upstream}\n"
    )
}

/// `n` GETs of `path` on one keep-alive connection; the answering member of each (its body).
fn bodies(server: &Server, path: &str, n: usize) -> Vec<String> {
    let mut conn = server.connect();
    (0..n)
        .map(|_| {
            let r = conn.request(&get(path));
            assert_eq!(r.status, 200, "{}", r.text());
            r.text()
        })
        .collect()
}

fn count(bodies: &[String], name: &str) -> usize {
    bodies.iter().filter(|b| b.trim() == name).count()
}

// ---------------------------------------------------------------------------------------------
// Balancing
// ---------------------------------------------------------------------------------------------

#[test]
fn round_robin_weighted_and_random_two_spread_requests() {
    let members = [Nginx::start("a"), Nginx::start("b"), Nginx::start("c")];
    let addrs: Vec<SocketAddr> = members.iter().map(|m| m.addr).collect();

    let server = proxy(&addrs, "balance = \"round_robin\"", "");
    let got = bodies(&server, "/", 300);
    for name in ["a", "b", "c"] {
        assert_eq!(count(&got, name), 100, "round_robin: {name}");
    }

    let weighted = format!(
        "balance = \"weighted\"\n\
         [[upstream.member]]\naddress = \"{}\"\nweight = 3\n",
        addrs[0]
    );
    let server = proxy(&addrs[1..], &weighted, "");
    let got = bodies(&server, "/", 500);
    assert_eq!(count(&got, "a"), 300, "weighted 3:1:1");
    assert_eq!(count(&got, "b"), 100);
    assert_eq!(count(&got, "c"), 100);

    let server = proxy(&addrs, "balance = \"random_two\"", "");
    let got = bodies(&server, "/", 600);
    for name in ["a", "b", "c"] {
        assert!(
            count(&got, name) > 100,
            "random_two: {name} {}",
            count(&got, name)
        );
    }

    let server = proxy(&addrs, "balance = \"least_conn\"", "");
    let got = bodies(&server, "/", 300);
    for name in ["a", "b", "c"] {
        // Sequential requests leave every member idle: ties rotate.
        assert!(
            count(&got, name) >= 90,
            "least_conn: {name} {}",
            count(&got, name)
        );
    }
}

#[test]
fn hashing_is_sticky_and_a_lost_member_moves_only_its_keys() {
    let mut members: Vec<Backend> = (0..4).map(|i| Backend::start(&format!("m{i}"))).collect();
    let addrs: Vec<SocketAddr> = members.iter().map(|m| m.addr).collect();
    let server = proxy(
        &addrs,
        "balance = \"consistent_hash\"\nhash_key = \"path\"",
        "",
    );
    // Enough keys that sampling adds little to the ring's own spread (the bound below is on
    // the share the lost member owned).
    let keys = 4000;
    let owner = |server: &Server| -> Vec<String> {
        let mut conn = server.connect();
        (0..keys)
            .map(|k| conn.request(&get(&format!("/k/{k}"))).text())
            .collect()
    };
    let before = owner(&server);
    assert_eq!(
        before,
        owner(&server),
        "the same key went to another member"
    );
    for i in 0..4 {
        let n = count(&before, &format!("m{i}"));
        assert!(n > keys / 8, "member m{i} owns only {n} of {keys} keys");
    }
    members[1].kill();
    let after = owner(&server);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(a, "m1");
        if a != b {
            assert_eq!(b, "m1", "a key of a live member moved: {b} -> {a}");
            moved += 1;
        }
    }
    assert!(
        moved as f64 <= 1.2 * keys as f64 / 4.0,
        "{moved} of {keys} keys moved"
    );

    let server = proxy(&addrs, "balance = \"ip_hash\"", "");
    let got = bodies(&server, "/", 50);
    assert!(
        got.iter().all(|b| b == &got[0]),
        "ip_hash is not sticky: {got:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Failover and health
// ---------------------------------------------------------------------------------------------

#[test]
fn a_member_killed_under_load_loses_no_idempotent_request() {
    let mut members: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("m{i}"))).collect();
    let addrs: Vec<SocketAddr> = members.iter().map(|m| m.addr).collect();
    let server = Arc::new(proxy(&addrs, "", ""));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (server, done) = (server.clone(), done.clone());
            std::thread::spawn(move || {
                let mut conn = server.connect();
                let mut failures = Vec::new();
                for _ in 0..500 {
                    let r = conn.request(&get("/slow/1"));
                    if r.status != 200 {
                        failures.push(format!("{} {}", r.status, r.text()));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                failures
            })
        })
        .collect();
    wait_until(Duration::from_secs(30), "load is under way", || {
        done.load(Ordering::Relaxed) >= 300
    });
    members[2].kill();
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client thread"))
        .collect();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(done.load(Ordering::Relaxed), 2000);
}

#[test]
fn retry_on_moves_a_503_to_the_next_member() {
    let members = [Backend::start("a"), Backend::start("b")];
    let addrs: Vec<SocketAddr> = members.iter().map(|m| m.addr).collect();
    let server = proxy(
        &addrs,
        "retry_on = [503]\n[upstream.passive]\nfailures = 0",
        "",
    );
    let got = bodies(&server, "/status/503?only=a", 20);
    assert_eq!(count(&got, "b"), 20, "{got:?}");
    // Not configured: a 500 is the member's answer and is passed on.
    let mut conn = server.connect();
    let statuses: Vec<u16> = (0..4)
        .map(|_| conn.request(&get("/status/500?only=a")).status)
        .collect();
    assert!(statuses.contains(&500), "{statuses:?}");
}

#[test]
fn active_health_takes_a_member_out_and_brings_it_back() {
    let members = [Backend::start("a"), Backend::start("b")];
    let addrs: Vec<SocketAddr> = members.iter().map(|m| m.addr).collect();
    let server = proxy(
        &addrs,
        "[upstream.health]\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"1s\"\nrise = 2\nfall = 2",
        "",
    );
    assert_eq!(count(&bodies(&server, "/", 10), "a"), 5);
    members[0].direct("/health/down");
    let out_since = Instant::now();
    wait_until(Duration::from_secs(10), "member a is out", || {
        server.stderr().contains("member is unhealthy")
    });
    let took = out_since.elapsed();
    assert_eq!(count(&bodies(&server, "/", 20), "b"), 20);
    members[0].direct("/health/up");
    wait_until(Duration::from_secs(10), "member a is back", || {
        server.stderr().contains("member is healthy again")
    });
    assert_eq!(count(&bodies(&server, "/", 10), "a"), 5);
    // fall = 2 checks at 100 ms: a few intervals, far from the 10 s bound.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn all_members_down_is_a_502_that_says_why() {
    let dead: Vec<SocketAddr> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()).parse().expect("addr"))
        .collect();
    let server = proxy(&dead, "", "");
    let out = curl(&[server.url("/")]);
    assert_eq!(out.status, 502);
    assert!(out.text().contains("connect"), "{}", out.text());
    // After the passive marks, the answer says every member is down.
    let mut last = String::new();
    for _ in 0..6 {
        last = curl(&[server.url("/")]).text();
    }
    assert!(last.contains("down") || last.contains("connect"), "{last}");
}

#[test]
fn a_full_pool_queues_then_answers_503() {
    let member = Backend::start("slow");
    let server = Arc::new(proxy(
        &[member.addr],
        "max_conns = 1\nqueue = 1\nqueue_timeout = \"300ms\"",
        "",
    ));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || curl(&[server.url("/slow/1500")]).status)
        })
        .collect();
    let statuses: Vec<u16> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        3,
        "{statuses:?}"
    );
}

#[test]
fn odd_member_answers_are_clear_502s_while_others_are_served() {
    let members = [Backend::start("a"), Backend::start("b")];
    let addrs: Vec<SocketAddr> = members.iter().map(|m| m.addr).collect();
    let server = proxy(&addrs, "[upstream.passive]\nfailures = 0", "");
    for path in ["/garbage", "/truncate", "/reset"] {
        let out = curl(&[server.url(path)]);
        assert_eq!(out.status, 502, "{path}: {}", out.text());
        assert!(
            out.text().starts_with("502 Bad Gateway: "),
            "{path}: {}",
            out.text()
        );
        let ok = curl(&[server.url("/")]);
        assert_eq!(ok.status, 200, "after {path}");
    }
}

#[test]
fn ambiguous_member_framing_is_read_safely_or_refused() {
    let member = Backend::start("m");
    let server = proxy(&[member.addr], "[upstream.passive]\nfailures = 0", "");
    // One client connection, so every request is served by the same worker and reuses that
    // worker's idle member connections (another worker would open its own).
    let mut conn = server.connect();
    let mut get = |path: &str| {
        let r = conn.request(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        (r.status, r.text())
    };
    let before: u64 = get("/conns").1.parse().expect("a count");
    // Transfer-Encoding and Content-Length together: the chunked coding frames the body, and
    // the connection, which may have been crafted to desynchronise us, is not used again.
    assert_eq!(get("/both"), (200, "hello".to_owned()));
    let after: u64 = get("/conns").1.parse().expect("a count");
    assert_eq!(
        after,
        before + 1,
        "the connection that carried /both was reused"
    );
    // Conflicting Content-Length values: a 502 that says why, and the member still serves.
    let bad = curl(&[server.url("/badlength")]);
    assert_eq!(bad.status, 502, "{}", bad.text());
    assert!(bad.text().contains("Content-Length"), "{}", bad.text());
    assert_eq!(curl(&[server.url("/")]).status, 200);
}

#[test]
fn a_member_refusing_an_upload_has_its_answer_forwarded() {
    let member = Backend::start("m");
    let server = proxy(&[member.addr], "[upstream.passive]\nfailures = 0", "");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("upload.bin");
    std::fs::write(&file, vec![b'x'; 32 << 20]).expect("write upload");
    // A streamed 32 MiB upload the member does not read: its 413 comes back, with its body,
    // instead of a 502 or a stalled upload.
    let started = Instant::now();
    let out = curl(&[
        "--data-binary".to_owned(),
        format!("@{}", file.display()),
        server.url("/refuse"),
    ]);
    assert_eq!(out.status, 413, "{}", out.text());
    assert_eq!(out.text(), "refused");
    // Over HTTP/2 too: the answer arrives whole, and what the client still sends is read and
    // dropped rather than reset under its upload (curl reports such a reset as a failure).
    let out = curl(&[
        "--http2-prior-knowledge".to_owned(),
        "--data-binary".to_owned(),
        format!("@{}", file.display()),
        server.url("/refuse"),
    ]);
    assert_eq!(out.status, 413, "{}", out.text());
    assert_eq!(out.text(), "refused");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(curl(&[server.url("/")]).status, 200);
}

#[test]
fn a_body_cut_short_sends_an_idempotent_request_to_the_next_member() {
    let members = [Backend::start("a"), Backend::start("b")];
    let addrs: Vec<SocketAddr> = members.iter().map(|m| m.addr).collect();
    let server = proxy(&addrs, "[upstream.passive]\nfailures = 0", "");
    // Member a sends a head, then closes 990 bytes short: nothing reached the client yet.
    let got = bodies(&server, "/truncate?only=a", 10);
    assert_eq!(count(&got, "b"), 10, "{got:?}");
    // A POST was sent whole to a before its answer broke: it is not sent again.
    let statuses: Vec<u16> = (0..4)
        .map(|_| curl(&["-d", "x", &server.url("/truncate?only=a")]).status)
        .collect();
    assert!(
        statuses.contains(&502) && statuses.contains(&200),
        "{statuses:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Connections and bodies
// ---------------------------------------------------------------------------------------------

#[test]
fn ten_thousand_requests_stay_within_the_pool_bound() {
    let member = Backend::start("m");
    let server = Arc::new(proxy(&[member.addr], "max_conns = 4", ""));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || {
                let mut conn = server.connect();
                for _ in 0..1250 {
                    let r = conn.request(&get("/"));
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    // The member counts the connections it accepted; this request is one more.
    let accepted: u64 = member.direct("/conns").trim().parse().expect("count");
    let upstream = accepted - 1;
    assert!(
        upstream <= 4,
        "{upstream} member connections for a bound of 4"
    );
    let reuse = 1.0 - upstream as f64 / 10_000.0;
    assert!(reuse >= 0.999, "reuse {reuse}");
}

#[test]
fn a_gibibyte_streams_both_ways_in_bounded_memory() {
    const GIB: u64 = 1 << 30;
    let member = Backend::start("m");
    let server = proxy(&[member.addr], "", "");
    let down = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "120",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
        ])
        .arg(server.url(&format!("/bytes/{GIB}")))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&down.stdout), format!("200 {GIB}"));

    // Upload of unknown length: chunked from curl, chunked to the member.
    let mut up = Command::new("curl")
        .args(["-sS", "--max-time", "120", "-T", "-"])
        .arg(server.url("/sink"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    {
        let mut stdin = up.stdin.take().expect("stdin");
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..1024 {
            stdin.write_all(&chunk).expect("feed curl");
        }
    }
    let out = up.wait_with_output().expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), GIB.to_string());

    // Over HTTP/2 too.
    let h2 = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "--max-time",
            "120",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
        ])
        .arg(server.url(&format!("/bytes/{}", GIB / 4)))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&h2.stdout),
        format!("200 {}", GIB / 4)
    );

    // And uploads over HTTP/2: DATA frames stream to the member as they arrive.
    let mut up = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "--max-time",
            "120",
            "-T",
            "-",
        ])
        .arg(server.url("/sink"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    {
        let mut stdin = up.stdin.take().expect("stdin");
        let chunk = vec![9u8; 1 << 20];
        for _ in 0..256 {
            stdin.write_all(&chunk).expect("feed curl");
        }
    }
    let out = up.wait_with_output().expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (GIB / 4).to_string()
    );

    let peak = peak_rss(server.pid());
    assert!(peak < 128 << 20, "peak RSS {peak} bytes");
}

#[test]
fn a_client_that_does_not_read_holds_back_the_member() {
    let member = Backend::start("m");
    let server = proxy(&[member.addr], "", "");
    let before = peak_rss(server.pid());
    let mut conn = TcpStream::connect(server.addr()).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let size: u64 = 512 << 20;
    conn.write_all(format!("GET /bytes/{size} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("send");
    // Read nothing for a while: the member can only have sent what the buffers on the way hold.
    std::thread::sleep(Duration::from_secs(2));
    let stalled = peak_rss(server.pid());
    assert!(
        stalled < before + (32 << 20),
        "RSS grew from {before} to {stalled} bytes while the client read nothing"
    );
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut head_seen = false;
    while total < size {
        let n = conn.read(&mut buf).expect("read");
        assert!(n > 0, "closed after {total} body bytes");
        let mut chunk = &buf[..n];
        if !head_seen {
            let at = chunk
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("head in first read");
            chunk = &chunk[at + 4..];
            head_seen = true;
        }
        total += chunk.len() as u64;
    }
    assert_eq!(total, size);
}

#[test]
fn websocket_echoes_through_the_proxy_and_survives_other_traffic() {
    let members = [Backend::start("a")];
    let server = proxy(&[members[0].addr], "", "");
    let mut ws = TcpStream::connect(server.addr()).expect("connect");
    ws.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        ws.read_exact(&mut byte).expect("101 head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    let mut echo = |msg: &[u8]| {
        ws.write_all(msg).expect("send");
        let mut back = vec![0u8; msg.len()];
        ws.read_exact(&mut back).expect("echo");
        assert_eq!(back, msg);
    };
    echo(b"\x81\x05hello");
    // Other requests, including failing ones, do not disturb the tunnel.
    for path in ["/", "/garbage", "/reset", "/"] {
        let _ = curl(&[server.url(path)]);
    }
    echo(&[0x42; 100_000]);
}

// ---------------------------------------------------------------------------------------------
// Headers, protocols, command line, configuration
// ---------------------------------------------------------------------------------------------

#[test]
fn the_proxy_command_forwards_with_forwarded_headers_and_without_hop_by_hop() {
    let member = Backend::start("m");
    let server = Server::command([
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &format!("http://{}", member.addr),
        "--balance",
        "least_conn",
    ])
    .start();
    let mut conn = server.connect();
    let r = conn.request(
        "GET /headers?q=1 HTTP/1.1\r\nHost: site.test\r\nConnection: keep-alive, x-secret\r\n\
         X-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = r.text().to_ascii_lowercase();
    assert!(seen.starts_with("get /headers?q=1 http/1.1"), "{seen}");
    assert!(seen.contains("host: site.test"), "{seen}");
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http"), "{seen}");
    assert!(seen.contains("x-forwarded-host: site.test"), "{seen}");
    assert!(seen.contains("via: 1.1 switchyard"), "{seen}");
    assert!(!seen.contains("x-secret"), "{seen}");
    assert!(!seen.contains("keep-alive: timeout"), "{seen}");
    assert_eq!(r.header("x-member"), Some("m"));
}

#[test]
fn prefix_stripping_and_header_edits() {
    let member = Backend::start("m");
    let location = "strip_prefix = true\n\
                    request_headers = { set = { \"X-App\" = \"one\" }, remove = [\"Cookie\"] }\n\
                    response_headers = { add = { \"X-Served-By\" = \"switchyard\" }, remove = [\"X-Member\"] }";
    let toml = proxy_toml(&format!("\"{}\"", member.addr), "", location)
        .replace("path = \"/\"", "path = \"/api/\"");
    let server = Server::run_config(&toml).start();
    let mut conn = server.connect();
    let r = conn.request("GET /api/headers HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\n\r\n");
    assert_eq!(r.status, 200);
    let seen = r.text().to_ascii_lowercase();
    assert!(seen.starts_with("get /headers http/1.1"), "{seen}");
    assert!(seen.contains("x-app: one"), "{seen}");
    assert!(!seen.contains("cookie"), "{seen}");
    assert_eq!(r.header("x-served-by"), Some("switchyard"));
    assert_eq!(r.header("x-member"), None);
}

#[test]
fn an_h2c_member_is_reached_over_http2() {
    let root = WebRoot::new();
    root.file("hello.txt", "hello over h2c\n");
    let member = Server::serve(root.root()).start();
    let server = proxy(&[member.addr()], "protocol = \"h2c\"", "");
    for _ in 0..3 {
        let out = curl(&[server.url("/hello.txt")]);
        assert_eq!(out.status, 200);
        assert_eq!(out.text(), "hello over h2c\n");
    }
    let out = curl(&[
        "--http2-prior-knowledge".to_owned(),
        server.url("/hello.txt"),
    ]);
    assert_eq!(out.text(), "hello over h2c\n");
}

#[test]
fn check_reports_proxy_mistakes_with_their_position() {
    let dir = tempfile::tempdir().expect("dir");
    let cases = [
        (
            proxy_toml("\"127.0.0.1:1\"", "", "").replace("proxy = \"pool\"", "proxy = \"nope\""),
            "no [[upstream]] named \"nope\"",
        ),
        (
            proxy_toml("\"127.0.0.1:1\"", "balance = \"fastest\"", ""),
            "unknown policy \"fastest\"",
        ),
        (proxy_toml("\"localhost\"", "", ""), "missing :port"),
        (
            proxy_toml("\"127.0.0.1:1\"", "[upstream.health]\nrise = 0", ""),
            "health.rise",
        ),
    ];
    for (i, (toml, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, toml).expect("write");
        let out = check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} passed check");
        assert!(stderr.contains(want), "case {i}: {stderr}");
        let position = format!("{}:", path.display());
        let after = stderr.split(&position).nth(1).unwrap_or("");
        let mut nums = after.split(':').take(2).map(|n| n.parse::<u32>());
        assert!(
            nums.next().is_some_and(|n| n.is_ok()) && nums.next().is_some_and(|n| n.is_ok()),
            "case {i} has no line:column: {stderr}"
        );
    }
    let path = dir.path().join("ok.toml");
    std::fs::write(
        &path,
        proxy_toml(
            "\"127.0.0.1:1\", \"https://example.com\"",
            "balance = \"consistent_hash\"\nhash_key = \"cookie:sid\"",
            "strip_prefix = true",
        ),
    )
    .expect("write");
    let out = check(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 upstream"));
}

#[test]
fn trailers_pass_through_to_http2_and_http1_clients() {
    let member = Backend::start("m");
    let server = proxy(&[member.addr], "", "");
    let h2 = curl(&[
        "--http2-prior-knowledge".to_owned(),
        server.url("/trailers"),
    ]);
    assert_eq!(h2.status, 200);
    assert_eq!(h2.text(), "hello");
    let mut conn = server.connect();
    let r = conn.request("GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.chunked, "a body of unknown length goes chunked");
    assert_eq!(r.text(), "hello");
    // The trailer section follows the last chunk on the wire; the helper reads up to it, so
    // read the raw bytes of a second exchange to see it.
    let mut raw = TcpStream::connect(server.addr()).expect("connect");
    raw.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    raw.write_all(
        b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .expect("send");
    let mut all = Vec::new();
    raw.read_to_end(&mut all).expect("read");
    let text = String::from_utf8_lossy(&all).to_ascii_lowercase();
    assert!(text.contains("\r\n0\r\ngrpc-status: 0\r\n\r\n"), "{text}");
}

#[test]
fn https_members_are_verified_with_sni_over_http1_and_h2() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = certificate(dir.path(), "member", &["localhost"]);
    let (other, _) = certificate(dir.path(), "other", &["localhost"]);
    let root = WebRoot::new();
    root.file("hello.txt", "hello over tls\n");
    let member = Server::serve(root.root())
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .start();
    let url = format!("\"https://localhost:{}\"", member.addr().port());
    for protocol in ["http1", "h2"] {
        let upstream = format!("protocol = \"{protocol}\"\ntls_ca = {}", toml_path(&cert));
        let server = Server::run_config(&proxy_toml(&url, &upstream, "")).start();
        let out = curl(&[server.url("/hello.txt")]);
        assert_eq!(out.status, 200, "{protocol}: {}", out.text());
        assert_eq!(out.text(), "hello over tls\n");
    }
    // A certificate the configured CA did not sign is refused.
    let upstream = format!("tls_ca = {}", toml_path(&other));
    let server = Server::run_config(&proxy_toml(&url, &upstream, "")).start();
    let out = curl(&[server.url("/hello.txt")]);
    assert_eq!(out.status, 502, "{}", out.text());
    assert!(out.text().contains("certificate"), "{}", out.text());
}

#[test]
fn a_reload_swaps_pools_and_keeps_unchanged_ones() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    // One worker: member connections are pooled per worker, and this test counts them.
    let one_worker = |toml: String| toml.replace("workers = 2", "workers = 1");
    let server =
        Server::run_config(&one_worker(proxy_toml(&format!("\"{}\"", a.addr), "", ""))).start();
    assert_eq!(count(&bodies(&server, "/", 4), "a"), 4);
    let conns_before: u64 = a.direct("/conns").trim().parse().expect("count");
    // Same pool, new location header edit: the pool (and its connections) carry on.
    let path = server.dir().join("switchyard.toml");
    let members = format!("\"{}\"", a.addr);
    std::fs::write(
        &path,
        one_worker(proxy_toml(
            &members,
            "",
            "response_headers = { set = { \"X-Gen\" = \"2\" } }",
        )),
    )
    .expect("rewrite");
    server.signal(switchyard_interop::Signal::HUP);
    wait_until(Duration::from_secs(10), "the new routes apply", || {
        curl(&[server.url("/")]).header("x-gen") == Some("2")
    });
    let conns_after: u64 = a.direct("/conns").trim().parse().expect("count");
    // One more for the second direct request; no new member connection was needed.
    assert_eq!(
        conns_after - conns_before,
        1,
        "{conns_before} -> {conns_after}"
    );
    // A changed pool: members replaced.
    let members = format!("\"{}\"", b.addr);
    std::fs::write(&path, proxy_toml(&members, "", "")).expect("rewrite");
    server.signal(switchyard_interop::Signal::HUP);
    wait_until(Duration::from_secs(10), "the new pool answers", || {
        curl(&[server.url("/")]).text() == "b"
    });
}

/// `times` POSTs of a 10,000-byte chunked body to `path`, each on a new connection, against a
/// location whose `max_body` is smaller: each is answered 413.
fn chunked_uploads_over_the_limit(server: &Server, path: &str, times: usize) {
    let mut request =
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    for _ in 0..10 {
        request.extend_from_slice(b"3e8\r\n");
        request.extend_from_slice(&[b'x'; 1000]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    for _ in 0..times {
        let mut conn = server.connect();
        conn.send(&request);
        assert_eq!(conn.read_response().status, 413);
    }
}

#[test]
fn a_location_body_limit_answers_413_for_announced_and_streamed_bodies() {
    let member = Backend::start("m");
    // One failure takes a member out for a minute: a body that is too long is the client's
    // fault, not the member's, and must not count.
    let passive = "[upstream.passive]\nfailures = 1\ncooldown = \"60s\"";
    let server = proxy(&[member.addr], passive, "max_body = \"4KiB\"");
    let big = vec![b'x'; 10_000];
    let mut conn = server.connect();
    let mut request = format!(
        "POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    request.extend_from_slice(&big);
    conn.send(&request);
    assert_eq!(conn.read_response().status, 413);
    // Chunked: the limit is found while streaming.
    chunked_uploads_over_the_limit(&server, "/sink", 3);
    // Within the limit, both ways of framing reach the member, which is still in.
    let mut conn = server.connect();
    let r = conn.request("POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "5"));
    let r = conn.request("POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!((r.status, r.text().as_str()), (200, "3"));
}

#[test]
fn idle_member_connections_close_after_idle_timeout() {
    let member = Backend::start("m");
    let server = proxy(&[member.addr], "idle_timeout = \"300ms\"", "");
    assert_eq!(bodies(&server, "/", 3), vec!["m", "m", "m"]);
    // The pooled connection and this direct one.
    assert_eq!(member.direct("/open").trim(), "2");
    wait_until(
        Duration::from_secs(5),
        "the idle connection is closed",
        || member.direct("/open").trim() == "1",
    );
    // And a new one is made when needed.
    assert_eq!(bodies(&server, "/", 1), vec!["m"]);
}

/// An nghttpd (h2c) serving `root`, sending `trailers` after every body.
struct Nghttpd {
    child: Child,
    addr: SocketAddr,
}

impl Nghttpd {
    fn start(root: &Path, trailers: &[&str]) -> Nghttpd {
        let port = free_port();
        let mut cmd = Command::new("nghttpd");
        cmd.args(["--no-tls", "-a", "127.0.0.1", "-d"]).arg(root);
        for t in trailers {
            cmd.arg(format!("--trailer={t}"));
        }
        let child = cmd
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nghttpd (interop/test.sh installs nghttp2-server)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        wait_until(Duration::from_secs(10), "nghttpd listens", || {
            TcpStream::connect(addr).is_ok()
        });
        Nghttpd { child, addr }
    }
}

impl Drop for Nghttpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn grpc_style_trailers_pass_from_an_h2_member_to_an_h2_client() {
    let root = WebRoot::new();
    root.file("small.bin", vec![1u8; 100]);
    root.file("big.bin", vec![2u8; 300_000]);
    let member = Nghttpd::start(root.root(), &["grpc-status: 0", "grpc-message: fine"]);
    let server = proxy(&[member.addr], "protocol = \"h2c\"", "");
    // Small bodies are collected whole, large ones stream: trailers survive both.
    for (path, len) in [("/small.bin", 100), ("/big.bin", 300_000)] {
        let out = Command::new("nghttp")
            .args([
                "-v",
                "-H",
                "te: trailers",
                "-H",
                "content-type: application/grpc",
            ])
            .arg(server.url(path))
            .output()
            .expect("run nghttp");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{path}: {text}");
        let data: usize = text
            .lines()
            .filter(|l| l.contains("recv DATA frame"))
            .filter_map(|l| {
                l.split("length=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        assert_eq!(data, len, "{path}");
        // nghttp prints a frame's fields before the frame line: the trailer fields follow the
        // last DATA frame and precede the HEADERS frame that ends the stream.
        let last_data = text.rfind("recv DATA frame").expect("a DATA frame");
        let after = &text[last_data..];
        assert!(after.contains("grpc-status: 0"), "{path}: {text}");
        assert!(after.contains("grpc-message: fine"), "{path}: {text}");
        assert!(after.contains("recv HEADERS frame"), "{path}: {text}");
        assert!(after.contains("END_STREAM | END_HEADERS"), "{path}: {text}");
    }
}

#[test]
fn an_h2_member_is_not_taken_out_for_a_client_body_that_is_too_long() {
    let root = WebRoot::new();
    root.file("small.bin", vec![1u8; 100]);
    let member = Nghttpd::start(root.root(), &[]);
    let upstream = "protocol = \"h2c\"\n[upstream.passive]\nfailures = 1\ncooldown = \"60s\"";
    let server = proxy(&[member.addr], upstream, "max_body = \"4KiB\"");
    assert_eq!(curl(&[server.url("/small.bin")]).status, 200);
    // Chunked, so the limit is found while the body streams to the member over HTTP/2.
    chunked_uploads_over_the_limit(&server, "/small.bin", 3);
    // One counted failure would have taken the only member out for a minute.
    let r = curl(&[server.url("/small.bin")]);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn passive_failures_take_a_member_out_for_its_cooldown() {
    let members = [Backend::start("a"), Backend::start("b")];
    let addrs: Vec<SocketAddr> = members.iter().map(|m| m.addr).collect();
    let server = proxy(
        &addrs,
        "retry_on = [502]\n[upstream.passive]\nfailures = 2\nwindow = \"10s\"\ncooldown = \"1s\"",
        "",
    );
    // Each of these is a failure of a (retried on b).
    let got = bodies(&server, "/status/502?only=a", 4);
    assert_eq!(count(&got, "b"), 4, "{got:?}");
    wait_until(Duration::from_secs(5), "a is marked down", || {
        server
            .stderr()
            .contains("member marked down after 2 failures")
    });
    let marked = Instant::now();
    let got = bodies(&server, "/", 10);
    if marked.elapsed() < Duration::from_millis(900) {
        assert_eq!(count(&got, "b"), 10, "{got:?}");
    }
    // After the cooldown a is used again.
    wait_until(Duration::from_secs(5), "a is back", || {
        bodies(&server, "/", 2).iter().any(|b| b == "a")
    });
}

// ---- metrics ------------------------------------------------------------------------------------

#[test]
fn metrics_show_each_member_in_or_out_of_rotation_and_its_connections() {
    let live = Nginx::start("live\n");
    // Nothing listens here: every try fails at connect.
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let toml = proxy_toml(
        &format!("\"{}\", \"{dead}\"", live.addr),
        "[upstream.passive]\nfailures = 1\ncooldown = \"60s\"",
        "",
    ) + "\n[[vhost.location]]\npath = \"/metrics\"\nmetrics = true\n";
    let server = Server::run_config(&toml).start();
    // Round robin reaches the dead member within two requests; its failure is retried on the
    // live one, so every answer is the live member's.
    assert!(bodies(&server, "/", 6).iter().all(|b| b.trim() == "live"));

    let scrape = curl(&["--http1.1", &server.url("/metrics")]);
    assert_eq!(scrape.status, 200, "{}", scrape.stderr);
    let text = String::from_utf8_lossy(&scrape.body).into_owned();
    let sample = |family: &str, member: SocketAddr| {
        metric(
            &text,
            &format!("{family}{{upstream=\"pool\",member=\"{member}\"}}"),
        )
    };
    assert_eq!(
        sample("switchyard_upstream_member_up", live.addr),
        1,
        "{text}"
    );
    assert_eq!(sample("switchyard_upstream_member_up", dead), 0, "{text}");
    let opened = sample(
        "switchyard_upstream_member_connections_opened_total",
        live.addr,
    );
    // Five or six answers from the live member over kept-alive member connections.
    assert!((1..5).contains(&opened), "{text}");
    assert_eq!(
        sample("switchyard_upstream_member_requests_active", live.addr),
        0
    );
    assert!(text.contains("switchyard_upstream_queued_requests{upstream=\"pool\"} 0\n"));
}
