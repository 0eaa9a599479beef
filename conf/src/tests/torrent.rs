//! `[torrent]` and the per-location seeding keys.

use super::*;

#[test]
fn torrent_defaults_seed_everything() {
    let (_dir, config) = load_one(SITE);
    let config = config.unwrap();
    assert!(config.torrent.enabled);
    assert_eq!(config.torrent.piece_length, None);
    assert_eq!(config.torrent.max_unchoked, 16);
    assert_eq!(config.torrent.upload_rate, None);
    let Handler::Files(files) = &config.vhosts[0].locations[0].handler else {
        panic!("a files location");
    };
    assert!(files.seed);
    assert_eq!(files.piece_length, None);
}

#[test]
fn torrent_keys_are_read() {
    let text = format!(
        "[torrent]\nenabled = true\nstate_dir = \"state\"\npiece_length = \"1MiB\"\n\
         public_url = \"https://files.example.com/\"\nmax_unchoked = 4\nmax_peers = 10\n\
         upload_rate = \"10MiB\"\nannounce_interval = \"30s\"\npeers_per_answer = 20\n\
         request_queue = 100\nhash_threads = 3\nhash_at_start = false\n\
         {SITE}seed = false\npiece_length = 262144\n"
    );
    let (dir, config) = load_one(&text);
    let config = config.unwrap();
    let t = &config.torrent;
    assert_eq!(t.state_dir, dir.path().join("state"));
    assert_eq!(t.piece_length, Some(1 << 20));
    assert_eq!(t.public_url.as_deref(), Some("https://files.example.com"));
    assert_eq!((t.max_unchoked, t.max_peers), (4, 10));
    assert_eq!(t.upload_rate, Some(10 << 20));
    assert_eq!(t.announce_interval, Duration::from_secs(30));
    assert_eq!(
        (t.peers_per_answer, t.request_queue, t.hash_threads),
        (20, 100, 3)
    );
    assert!(!t.hash_at_start);
    let Handler::Files(files) = &config.vhosts[0].locations[0].handler else {
        panic!("a files location");
    };
    assert!(!files.seed);
    assert_eq!(files.piece_length, Some(256 * 1024));
}

#[test]
fn torrent_errors_point_at_the_key() {
    let cases = [
        (
            "[torrent]\npiece_length = 100000\n",
            "DIR/sy.toml:2:16: torrent.piece_length: must be a power of two from 16KiB to 16MiB",
        ),
        (
            "[torrent]\npiece_length = \"32MiB\"\n",
            "DIR/sy.toml:2:16: torrent.piece_length: must be a power of two from 16KiB to 16MiB",
        ),
        (
            "[torrent]\npublic_url = \"ftp://x\"\n",
            "DIR/sy.toml:2:14: torrent.public_url: must be an http:// or https:// URL such as \"https://files.example.com\"",
        ),
        (
            "[torrent]\nmax_unchoked = 0\n",
            "DIR/sy.toml:2:16: torrent.max_unchoked: must be 1..=100000",
        ),
        (
            "[torrent]\nannounce_interval = \"0s\"\n",
            "DIR/sy.toml:2:21: torrent.announce_interval: must be 1s..=24h",
        ),
        (
            "[torrent]\nupload_rate = 0\n",
            "DIR/sy.toml:2:15: torrent.upload_rate: must be greater than 0",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error_of(&format!("{text}{SITE}")), expected, "{text}");
    }
    assert_eq!(
        error_of(&format!("{SITE}piece_length = \"3KiB\"\n")),
        "DIR/sy.toml:5:16: vhost[0].location[0].piece_length: must be a power of two from 16KiB to 16MiB"
    );
    assert!(error_of("[torrent]\nseeds = 1\n").contains("unknown field `seeds`"));
}
