//! Serve and seed: every served file is also a torrent on the same port, shown with real,
//! independent BitTorrent clients (aria2c, python3-libtorrent) and raw sockets.
//!
//! Every client runs with DHT, local discovery, UPnP and NAT-PMP off and talks to 127.0.0.1
//! only; libtorrent speaks TCP (its uTP is slow on loopback). Downloads are checked by SHA-256.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use switchyard_interop::{
    Server, Signal, WebRoot, config, curl, pseudo_random, sha256, sha256_file, toml_path,
    workspace_root,
};

/// Bounds every client run; a working download here takes seconds.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

fn lt_client() -> PathBuf {
    workspace_root().join("interop/bt/lt_client.py")
}

/// The piece-hash cache of this test process's servers.
fn state_dir() -> PathBuf {
    std::env::temp_dir().join(format!("sy-bt-state-{}", std::process::id()))
}

/// A server seeding `www`, its piece-hash cache in [`state_dir`].
fn seed(www: &WebRoot, torrent: &str) -> Server {
    let text = format!(
        "{}[torrent]\nstate_dir = {}\n{torrent}",
        config(www.root(), "", ""),
        toml_path(&state_dir())
    );
    Server::run_config(&text)
        .env("RUST_LOG", "info,switchyard_sessions::peer=debug")
        .start()
}

fn get_bytes(server: &Server, path: &str) -> (u16, Option<String>, Vec<u8>) {
    let out = curl(&[server.url(path)]);
    assert_eq!(out.exit, 0, "curl {path}: {}", out.stderr);
    let ct = out.header("content-type").map(str::to_owned);
    (out.status, ct, out.body)
}

fn magnet(server: &Server, path: &str) -> String {
    let (status, _, body) = get_bytes(server, path);
    assert_eq!(status, 200, "GET {path}");
    String::from_utf8(body)
        .expect("utf-8 magnet")
        .trim()
        .to_owned()
}

/// The 20-byte info-hash from a magnet's `xt=urn:btih:HEX`.
fn info_hash(magnet: &str) -> [u8; 20] {
    let hex = magnet
        .split("xt=urn:btih:")
        .nth(1)
        .and_then(|rest| rest.get(..40))
        .expect("btih in magnet");
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The `.torrent` without its `url-list` (the last key), so a client can only use peers.
fn without_web_seed(torrent: &[u8]) -> Vec<u8> {
    let at = torrent
        .windows(10)
        .position(|w| w == b"8:url-list")
        .expect("url-list in torrent");
    let mut out = torrent[..at].to_vec();
    out.push(b'e');
    out
}

/// Run `cmd` to completion within `bound`, killing it (by PID) if it overruns.
fn run(mut cmd: Command, bound: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e} (interop/test.sh installs it)"));
    finish(child, bound)
}

fn finish(mut child: Child, bound: Duration) -> Output {
    let deadline = Instant::now() + bound;
    loop {
        if child.try_wait().expect("wait for client").is_some() {
            return child.wait_with_output().expect("client output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("client output");
            panic!(
                "client ran past {bound:?}: stdout {} stderr {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn aria2c(dir: &Path, extra: &[&str], torrent: &Path) -> Command {
    let mut cmd = Command::new("aria2c");
    cmd.arg("-d")
        .arg(dir)
        .args([
            "--seed-time=0",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--disable-ipv6=true",
            "--console-log-level=warn",
            "--summary-interval=0",
            "--allow-overwrite=true",
        ])
        .args(extra)
        .arg(torrent);
    cmd
}

fn lt(args: &[&str]) -> Command {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(lt_client()).args(args);
    cmd
}

/// The JSON line the libtorrent client prints.
fn lt_result(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "libtorrent client said {stdout:?} ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn big_site(len: usize) -> (WebRoot, String) {
    let www = WebRoot::new();
    let data = pseudo_random(len, 5);
    let digest = sha256(&data);
    www.file("pub/big file.bin", data);
    (www, digest)
}

#[test]
fn torrent_and_magnet_describe_the_served_file() {
    let www = WebRoot::new();
    www.file("a.bin", pseudo_random(1_000_000, 1))
        .file("real.bin.torrent", "a real file wins")
        .file("real.bin", "x")
        .file(".hidden", "secret")
        .dir("dir");
    let server = seed(&www, "");
    let base = format!("http://{}", server.addr());

    let (status, ct, torrent) = get_bytes(&server, "/a.bin.torrent");
    assert_eq!(status, 200);
    assert_eq!(ct.as_deref(), Some("application/x-bittorrent"));
    let announce = format!("{base}/announce");
    let web_seed = format!("{base}/a.bin");
    for needle in [
        format!("8:announce{}:{announce}", announce.len()),
        "4:infod6:lengthi1000000e4:name5:a.bin12:piece lengthi262144e6:pieces80:".to_owned(),
        format!("8:url-listl{}:{web_seed}e", web_seed.len()),
    ] {
        assert!(
            contains(&torrent, needle.as_bytes()),
            "{needle} not in {}",
            String::from_utf8_lossy(&torrent)
        );
    }
    let m = magnet(&server, "/a.bin.magnet");
    assert!(m.starts_with("magnet:?xt=urn:btih:"), "{m}");
    assert!(
        m.contains("&dn=a.bin&xl=1000000&tr=http%3A%2F%2F127.0.0.1%3A"),
        "{m}"
    );
    assert!(
        m.contains("%2Fannounce&ws=http%3A%2F%2F127.0.0.1%3A"),
        "{m}"
    );

    // A real file of that name is served as it is; no torrent for what is not a served file.
    assert_eq!(
        get_bytes(&server, "/real.bin.torrent").2,
        b"a real file wins"
    );
    for path in [
        "/missing.torrent",
        "/dir.torrent",
        "/.hidden.torrent",
        "/a.bin.magnet/",
    ] {
        assert_eq!(get_bytes(&server, path).0, 404, "{path}");
    }

    // A changed file is hashed again: new info-hash; the tracker forgets the old one.
    let old = info_hash(&m);
    std::fs::write(www.path("a.bin"), pseudo_random(500_000, 2)).expect("rewrite");
    let deadline = Instant::now() + Duration::from_secs(10);
    let new = loop {
        let h = info_hash(&magnet(&server, "/a.bin.magnet"));
        if h != old || Instant::now() > deadline {
            break h;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(new, old, "the rewritten file kept its info-hash");
    let enc = |h: &[u8; 20]| h.iter().map(|b| format!("%{b:02X}")).collect::<String>();
    let announce_for = |h: &[u8; 20]| {
        get_bytes(
            &server,
            &format!(
                "/announce?info_hash={}&peer_id=-XX0001-000000000001&port=7000&left=5&compact=1",
                enc(h)
            ),
        )
        .2
    };
    assert!(announce_for(&old).starts_with(b"d14:failure reason"));
    let answer = announce_for(&new);
    assert!(
        contains(&answer, b"8:completei1e10:incompletei1e"),
        "{answer:?}"
    );
    // This server itself, compact (BEP 23): 127.0.0.1 and the HTTP port.
    let mut me = vec![127, 0, 0, 1];
    me.extend_from_slice(&server.addr().port().to_be_bytes());
    assert!(
        contains(&answer, &me),
        "server not listed as a peer: {answer:?}"
    );
    let scrape = get_bytes(&server, &format!("/scrape?info_hash={}", enc(&new))).2;
    assert!(
        contains(&scrape, b"d8:completei1e10:downloadedi0e10:incompletei1ee"),
        "{scrape:?}"
    );
    // Hashes are cached in the state directory, never next to the served files.
    assert!(!www.path("a.bin.info").exists());
    let cached = std::fs::read_dir(state_dir().join("pieces"))
        .expect("state dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".info"))
        .count();
    assert!(cached >= 2, "{cached} cache entries");
    // Every served file was hashed at start, with a summary in the log.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .stderr()
        .contains("hashing done: every served file is seeded")
    {
        assert!(
            Instant::now() < deadline,
            "no hashing summary: {}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// aria2c with `args`, given a .torrent without its web seed, so the only peer it has is this
/// server (through the built-in tracker): the file must arrive whole over the peer wire.
fn aria2c_over_the_peer_wire(size: usize, args: &[&str]) {
    let (www, digest) = big_site(size);
    let server = seed(&www, "");
    let (_, _, torrent) = get_bytes(&server, "/pub/big%20file.bin.torrent");
    let scratch = tempfile::tempdir().expect("scratch");
    let file = scratch.path().join("peers-only.torrent");
    std::fs::write(&file, without_web_seed(&torrent)).expect("write torrent");
    let out = run(aria2c(scratch.path(), args, &file), CLIENT_TIMEOUT);
    assert!(out.status.success(), "aria2c {args:?}: {out:?}");
    assert_eq!(sha256_file(&scratch.path().join("big file.bin")), digest);
    let stderr = server.stderr();
    assert!(stderr.contains("peer closed"), "no peer session: {stderr}");
}

#[test]
fn aria2c_downloads_over_the_peer_wire_through_the_built_in_tracker() {
    aria2c_over_the_peer_wire(24 << 20, &[]);
}

/// aria2c that speaks only MSE (`--bt-require-crypto`): offering plaintext after the
/// handshake (`plain`), or RC4 only (`arc4`). Either way it never falls back to the plain
/// handshake, so a finished download shows the encrypted handshake and, for `arc4`, RC4 on
/// every byte of the peer wire.
fn aria2c_encrypted(level: &str) {
    let level = format!("--bt-min-crypto-level={level}");
    aria2c_over_the_peer_wire(6 << 20, &["--bt-require-crypto=true", level.as_str()]);
}

#[test]
fn aria2c_downloads_over_an_encrypted_handshake_with_plaintext_selected() {
    aria2c_encrypted("plain");
}

#[test]
fn aria2c_downloads_with_rc4_on_the_whole_peer_wire() {
    aria2c_encrypted("arc4");
}

#[test]
fn aria2c_downloads_from_the_web_seed_alone() {
    let (www, digest) = big_site(8 << 20);
    let server = seed(&www, "enabled = true\n");
    let (_, _, torrent) = get_bytes(&server, "/pub/big%20file.bin.torrent");
    let scratch = tempfile::tempdir().expect("scratch");
    let file = scratch.path().join("t.torrent");
    std::fs::write(&file, torrent).expect("write torrent");
    let out = run(
        aria2c(scratch.path(), &["--bt-exclude-tracker=*"], &file),
        CLIENT_TIMEOUT,
    );
    assert!(out.status.success(), "aria2c: {out:?}");
    assert_eq!(sha256_file(&scratch.path().join("big file.bin")), digest);
    assert!(
        !server.stderr().contains("peer closed"),
        "used the peer wire"
    );
}

#[test]
fn libtorrent_fetches_a_magnet_from_the_server_as_a_direct_peer() {
    let (www, digest) = big_site(16 << 20);
    let server = seed(&www, "");
    let m = magnet(&server, "/pub/big%20file.bin.magnet");
    let scratch = tempfile::tempdir().expect("scratch");
    let save = scratch.path().to_str().expect("utf-8 path").to_owned();
    let peer = server.addr().to_string();
    // No tracker, no web seed: metadata over ut_metadata (BEP 9), pieces over the peer wire.
    let out = run(
        lt(&[
            "--magnet",
            &m,
            "--save",
            &save,
            "--peer",
            &peer,
            "--no-webseed",
            "--no-tracker",
            "--timeout",
            "100",
        ]),
        CLIENT_TIMEOUT,
    );
    let result = lt_result(&out);
    assert_eq!(result["state"], "complete", "{result}");
    assert_eq!(result["seen"], serde_json::json!([peer]), "{result}");
    assert_eq!(sha256_file(&scratch.path().join("big file.bin")), digest);
}

#[test]
fn two_libtorrent_downloaders_also_trade_with_each_other() {
    // The server's upload is paced so that the downloaders need each other.
    let (www, digest) = big_site(12 << 20);
    let server = seed(&www, "upload_rate = \"2MiB\"\nannounce_interval = \"5s\"\n");
    let (_, _, torrent) = get_bytes(&server, "/pub/big%20file.bin.torrent");
    let scratch = tempfile::tempdir().expect("scratch");
    let file = scratch.path().join("t.torrent");
    std::fs::write(&file, &torrent).expect("write torrent");
    let start = |name: &str| {
        let dir = scratch.path().join(name);
        std::fs::create_dir(&dir).expect("mkdir");
        let ready = scratch.path().join(format!("{name}.port"));
        let child = lt(&[
            "--torrent",
            file.to_str().expect("utf-8"),
            "--save",
            dir.to_str().expect("utf-8"),
            "--no-webseed",
            "--ready",
            ready.to_str().expect("utf-8"),
            "--stay",
            "4",
            "--timeout",
            "100",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start libtorrent client");
        (child, dir, ready)
    };
    let (a, a_dir, a_ready) = start("a");
    let (b, b_dir, b_ready) = start("b");
    // The tracker lists both downloaders (their listening ports) besides this server.
    let port_of = |ready: &Path| -> u16 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(port) = std::fs::read_to_string(ready)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return port;
            }
            assert!(Instant::now() < deadline, "client never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let ports = [port_of(&a_ready), port_of(&b_ready)];
    let m = magnet(&server, "/pub/big%20file.bin.magnet");
    let hash: String = info_hash(&m).iter().map(|b| format!("%{b:02X}")).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = get_bytes(
            &server,
            &format!(
                "/announce?info_hash={hash}&peer_id=-XX0001-999999999999&port=9&left=1&numwant=50"
            ),
        )
        .2;
        let listed = ports.iter().all(|p| {
            let mut entry = vec![127, 0, 0, 1];
            entry.extend_from_slice(&p.to_be_bytes());
            contains(&answer, &entry)
        });
        if listed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tracker never listed both: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let a = lt_result(&finish(a, CLIENT_TIMEOUT));
    let b = lt_result(&finish(b, CLIENT_TIMEOUT));
    for (r, dir) in [(&a, &a_dir), (&b, &b_dir)] {
        assert_eq!(r["state"], "complete", "{r}");
        assert_eq!(sha256_file(&dir.join("big file.bin")), digest);
    }
    // Each sent the other pieces: the swarm, not only the server, delivered the file.
    let up = |r: &serde_json::Value| r["uploaded"].as_u64().unwrap_or(0);
    assert!(up(&a) > 0 && up(&b) > 0, "no trading: a={a} b={b}");
}

/// A BEP 3 handshake for `hash`.
fn handshake(hash: &[u8; 20]) -> Vec<u8> {
    let mut h = b"\x13BitTorrent protocol".to_vec();
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
    h.extend_from_slice(hash);
    h.extend_from_slice(b"-HO0001-hostilepeer!");
    h
}

/// Send `bytes`, then read until the server closes. True when it closed within the bound.
fn closed_after(addr: SocketAddr, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    // The server may close while we still write a flood: that is the answer too.
    if s.write_all(bytes).is_err() {
        return true;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

fn message(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    m.push(id);
    m.extend_from_slice(payload);
    m
}

fn request(index: u32, begin: u32, length: u32) -> Vec<u8> {
    let mut p = index.to_be_bytes().to_vec();
    p.extend_from_slice(&begin.to_be_bytes());
    p.extend_from_slice(&length.to_be_bytes());
    message(6, &p)
}

#[test]
fn hostile_peers_are_disconnected_while_a_good_peer_keeps_downloading() {
    let (www, digest) = big_site(12 << 20);
    let server = seed(&www, "upload_rate = \"4MiB\"\n");
    let m = magnet(&server, "/pub/big%20file.bin.magnet");
    let hash = info_hash(&m);
    let scratch = tempfile::tempdir().expect("scratch");
    let save = scratch.path().to_str().expect("utf-8").to_owned();
    let peer = server.addr().to_string();
    let good = lt(&[
        "--magnet",
        &m,
        "--save",
        &save,
        "--peer",
        &peer,
        "--no-webseed",
        "--no-tracker",
        "--timeout",
        "100",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start libtorrent client");

    let hs = handshake(&hash);
    let with = |tail: &[u8]| [hs.clone(), tail.to_vec()].concat();
    let interested_then = |tail: Vec<u8>| with(&[message(2, &[]), tail].concat());
    let pieces = (12u32 << 20) / (256 * 1024);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unknown info-hash",
            handshake(&[0x42; 20]),
            "unknown info-hash",
        ),
        (
            "block over 16 KiB",
            interested_then(request(0, 0, 32 * 1024)),
            "exceeds 16 KiB",
        ),
        (
            "request past the end",
            interested_then(request(pieces, 0, 16384)),
            "outside the torrent",
        ),
        (
            "oversized message",
            with(&0x7fff_ffffu32.to_be_bytes()),
            "too large",
        ),
        (
            "unknown message id",
            with(&message(99, b"xx")),
            "bad message",
        ),
        (
            "request flood while choked",
            with(
                &(0..2100)
                    .flat_map(|_| request(0, 0, 16384))
                    .collect::<Vec<u8>>(),
            ),
            "request queue overflow",
        ),
    ];
    for (name, bytes, _) in &cases {
        assert!(
            closed_after(server.addr(), bytes),
            "{name}: not disconnected"
        );
    }
    let result = lt_result(&finish(good, CLIENT_TIMEOUT));
    assert_eq!(result["state"], "complete", "{result}");
    assert_eq!(sha256_file(&scratch.path().join("big file.bin")), digest);
    let log = server.stderr();
    for (name, _, reason) in &cases {
        assert!(
            log.contains(reason),
            "{name}: no `{reason}` in the log:\n{log}"
        );
    }
}

#[test]
fn sigterm_ends_peer_sessions_and_the_process_promptly() {
    let www = WebRoot::new();
    www.file("a.bin", pseudo_random(300_000, 3));
    let mut server = seed(&www, "");
    let hash = info_hash(&magnet(&server, "/a.bin.magnet"));
    // A peer mid-session: handshake answered, interested, unchoked.
    let mut peer = TcpStream::connect(server.addr()).expect("connect");
    peer.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    peer.write_all(&[handshake(&hash), message(2, &[])].concat())
        .expect("send handshake");
    let mut reply = [0u8; 68];
    peer.read_exact(&mut reply).expect("handshake answered");
    assert_eq!(&reply[28..48], &hash);
    server.signal(Signal::TERM);
    // The session ends at the drain instead of holding the process for `timeouts.shutdown`.
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let mut rest = Vec::new();
    let _ = peer.read_to_end(&mut rest);
}
