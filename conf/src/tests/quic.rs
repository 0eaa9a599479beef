//! `[quic]` as an operator meets it: defaults, every key, and the messages for bad values.

use super::*;

#[test]
fn without_a_quic_section_quic_is_on_with_defaults() {
    let (_dir, config) = load_one(SITE);
    let quic = config.unwrap().quic;
    assert_eq!(quic, QuicConfig::default());
    assert!(quic.enabled);
    assert!(quic.zero_rtt);
    assert_eq!(quic.retry, RetryPolicy::AboveRate(1000));
    assert!(quic.max_streams_bidi <= MAX_STREAMS_BIDI);
}

#[test]
fn every_quic_key_is_parsed() {
    let text = format!(
        r#"
[quic]
enabled = false
retry = "always"
max_connections = 50
idle_timeout = "5s"
max_streams_bidi = 1000
stream_window = "512KiB"
connection_window = 4194304
send_window = "8MiB"
zero_rtt = false
qlog_dir = "www"
congestion = "bbr"
{SITE}"#
    );
    let (dir, config) = load_one(&text);
    let quic = config.unwrap().quic;
    assert_eq!(
        quic,
        QuicConfig {
            enabled: false,
            retry: RetryPolicy::Always,
            max_connections: 50,
            idle_timeout: Duration::from_secs(5),
            max_streams_bidi: 1000,
            stream_window: 512 * 1024,
            connection_window: 4 * 1024 * 1024,
            send_window: 8 * 1024 * 1024,
            zero_rtt: false,
            qlog_dir: Some(dir.path().join("www")),
            congestion: Congestion::Bbr,
        }
    );
}

#[test]
fn the_last_file_setting_a_quic_key_wins() {
    let dir = tree(&[
        ("sy.toml", &format!("[quic]\nretry = \"never\"\n{SITE}")),
        ("conf.d/10.toml", "[quic]\nretry = \"above 20/s\"\n"),
    ]);
    let config = load(&dir.path().join("sy.toml")).unwrap();
    assert_eq!(config.quic.retry, RetryPolicy::AboveRate(20));
}

#[test]
fn bad_quic_values_point_at_the_value() {
    let cases = [
        (
            "[quic]\nretry = \"sometimes\"\n",
            "DIR/sy.toml:2:9: quic.retry: \"sometimes\": expected \"never\", \"always\" or \"above N/s\" (new connections per second)",
        ),
        (
            "[quic]\nmax_streams_bidi = 1001\n",
            "DIR/sy.toml:2:20: quic.max_streams_bidi: must be between 1 and 1000",
        ),
        (
            "[quic]\nmax_connections = 0\n",
            "DIR/sy.toml:2:19: quic.max_connections: must be at least 1",
        ),
        (
            "[quic]\nstream_window = 10\n",
            "DIR/sy.toml:2:17: quic.stream_window: must be between 1KiB and 1073741824 bytes",
        ),
        (
            "[quic]\nidle_timeout = \"0s\"\n",
            "DIR/sy.toml:2:16: quic.idle_timeout: must be between 1ms and 24h",
        ),
        (
            "[quic]\ncongestion = \"vegas\"\n",
            "DIR/sy.toml:2:14: quic.congestion: \"vegas\": expected \"cubic\", \"bbr\" or \"newreno\"",
        ),
        (
            "[quic]\nqlog_dir = \"nowhere\"\n",
            "DIR/sy.toml:2:12: quic.qlog_dir: DIR/nowhere is not a directory",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(error_of(&format!("{text}{SITE}")), want, "for {text:?}");
    }
}

#[test]
fn unknown_quic_keys_are_refused() {
    let e = error_of(&format!("[quic]\nmax_stream = 5\n{SITE}"));
    assert!(e.starts_with("DIR/sy.toml:2:1:"), "{e}");
    assert!(e.contains("max_stream"), "{e}");
}
