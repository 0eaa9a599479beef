//! Seeding a directory with more files than the server may have open at once.
//!
//! Its own test binary: it lowers the open-file limit of this whole process, which the server
//! it starts inherits, and no other test should run under that limit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use switchyard_interop::{Server, WebRoot, config, curl, toml_path};

/// Descriptors the server may open: far fewer than the files it seeds.
const LIMIT: u64 = 256;
const FILES: usize = 600;

/// A seeded file is opened for a peer connection and closed with it, never kept open: with
/// every file held open, 600 files under a limit of 256 descriptors left most of them
/// unseeded and the server unable to accept a connection.
#[test]
fn more_files_than_descriptors_are_all_seeded_and_the_server_keeps_serving() {
    let hard = getrlimit(Resource::Nofile).maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(LIMIT),
            maximum: hard,
        },
    )
    .expect("lower the open-file limit");
    let www = WebRoot::new();
    for i in 0..FILES {
        www.file(&format!("d{}/f{i}.txt", i / 100), format!("file {i}\n"));
    }
    let state = tempfile::tempdir().expect("state dir");
    let text = format!(
        "{}[torrent]\nstate_dir = {}\n",
        config(www.root(), "", ""),
        toml_path(state.path())
    );
    let server = Server::run_config(&text).start();

    let done = format!("hashing done: every served file is seeded files={FILES} failed=0");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.stderr().contains(&done) {
        assert!(
            Instant::now() < deadline,
            "not every file was seeded: {}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // HTTP still answers, file and torrent alike.
    let last = format!("/d{}/f{}.txt", (FILES - 1) / 100, FILES - 1);
    server.assert_serves(&last, format!("file {}\n", FILES - 1).as_bytes());
    let magnet = curl(&[server.url(&format!("{last}.magnet"))]);
    assert_eq!(magnet.exit, 0, "{}", magnet.stderr);
    let magnet = String::from_utf8(magnet.body).expect("utf-8 magnet");
    let hex = magnet
        .split("xt=urn:btih:")
        .nth(1)
        .and_then(|rest| rest.get(..40))
        .expect("btih in magnet");
    let hash: Vec<u8> = (0..20)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();

    // A peer asking for that file gets the handshake back: the file could be opened.
    let mut peer = TcpStream::connect(server.addr()).expect("connect");
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut hello = b"\x13BitTorrent protocol".to_vec();
    hello.extend_from_slice(&[0; 8]);
    hello.extend_from_slice(&hash);
    hello.extend_from_slice(b"-FD0001-descriptors!");
    peer.write_all(&hello).expect("send handshake");
    let mut reply = [0u8; 68];
    peer.read_exact(&mut reply).expect("the server's handshake");
    assert_eq!(&reply[28..48], &hash[..], "handshake for another torrent");
}
