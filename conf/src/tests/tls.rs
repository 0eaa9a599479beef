//! `[tls]`, `[[tls.certificate]]`, `[http2]` and `timeouts.tls_handshake` as an operator meets
//! them. Certificates are generated per test with rcgen into the temp tree's `certs/`.

use super::*;

/// Write `certs/NAME.pem` and `certs/NAME.key` under `dir`: a self-signed certificate for
/// `NAME.test` and its PKCS#8 key.
fn write_pair(dir: &Path, name: &str) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec![format!("{name}.test")]).unwrap();
    let certs = dir.join("certs");
    fs::create_dir_all(&certs).unwrap();
    fs::write(certs.join(format!("{name}.pem")), cert.pem()).unwrap();
    fs::write(
        certs.join(format!("{name}.key")),
        signing_key.serialize_pem(),
    )
    .unwrap();
}

/// A tree with `text` as `sy.toml` (plus [`SITE`]) and the pairs `a` and `b` in `certs/`.
fn with_certs(text: &str) -> (TempDir, Result<Config, ConfError>) {
    let dir = tree(&[("sy.toml", &format!("{text}{SITE}"))]);
    write_pair(dir.path(), "a");
    write_pair(dir.path(), "b");
    let result = load(&dir.path().join("sy.toml"));
    (dir, result)
}

/// The error of [`with_certs`], with the temp directory replaced by `DIR`.
fn error_with_certs(text: &str) -> String {
    let (dir, result) = with_certs(text);
    match result {
        Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
        Err(e) => e
            .to_string()
            .replace(&dir.path().display().to_string(), "DIR"),
    }
}

#[test]
fn without_tls_and_http2_sections_defaults_apply() {
    let (_dir, config) = load_one(SITE);
    let config = config.unwrap();
    assert_eq!(config.tls, TlsConfig::default());
    assert_eq!(config.tls.default_cert, None, "self-signed at start");
    assert_eq!(config.tls.session_cache, 4096);
    assert!(config.tls.tickets);
    assert_eq!(config.http2, Http2Config::default());
    assert_eq!(config.timeouts.tls_handshake, Duration::from_secs(10));
}

#[test]
fn every_tls_key_is_parsed() {
    let text = r#"
[timeouts]
tls_handshake = "2500ms"
[tls]
cert = "certs/a.pem"
key = "certs/a.key"
session_cache = 0
tickets = false
[[tls.certificate]]
names = ["Example.COM", "*.example.com", "example.com"]
cert = "certs/b.pem"
key = "certs/b.key"
[[tls.certificate]]
names = ["other.test"]
cert = "certs/a.pem"
key = "certs/a.key"
"#;
    let (dir, config) = with_certs(text);
    let config = config.unwrap();
    let base = std::path::absolute(dir.path()).unwrap();
    let pair = |name: &str| CertPair {
        cert: base.join(format!("certs/{name}.pem")),
        key: base.join(format!("certs/{name}.key")),
    };
    assert_eq!(config.timeouts.tls_handshake, Duration::from_millis(2500));
    assert_eq!(
        config.tls,
        TlsConfig {
            default_cert: Some(pair("a")),
            certificates: vec![
                SniCert {
                    names: vec!["example.com".into(), "*.example.com".into()],
                    pair: pair("b"),
                },
                SniCert {
                    names: vec!["other.test".into()],
                    pair: pair("a"),
                },
            ],
            session_cache: 0,
            tickets: false,
        }
    );
}

#[test]
fn sni_certificates_without_a_default_one() {
    let text = "[[tls.certificate]]\nnames = [\"b.test\"]\ncert = \"certs/b.pem\"\nkey = \"certs/b.key\"\n";
    let (_dir, config) = with_certs(text);
    let tls = config.unwrap().tls;
    assert_eq!(tls.default_cert, None, "self-signed answers other names");
    assert_eq!(tls.certificates.len(), 1);
}

#[test]
fn every_http2_key_is_parsed() {
    let text = r#"
[http2]
max_concurrent_streams = 64
initial_stream_window = "256KiB"
initial_connection_window = 1048576
max_frame_size = "32KiB"
max_header_list_size = "16KiB"
max_pending_resets = 5
max_error_resets = 50
"#;
    let (_dir, config) = load_one(&format!("{text}{SITE}"));
    assert_eq!(
        config.unwrap().http2,
        Http2Config {
            max_concurrent_streams: 64,
            initial_stream_window: 256 * 1024,
            initial_connection_window: 1 << 20,
            max_frame_size: 32 * 1024,
            max_header_list_size: 16 * 1024,
            max_pending_resets: 5,
            max_error_resets: 50,
        }
    );
}

#[test]
fn http2_bounds_are_the_rfc_ones() {
    type Field = fn(&Http2Config) -> u32;
    let accepted: &[(&str, Field, u32)] = &[
        ("initial_stream_window = 1", |h| h.initial_stream_window, 1),
        (
            "initial_stream_window = 2147483647",
            |h| h.initial_stream_window,
            (1 << 31) - 1,
        ),
        (
            "initial_connection_window = 65535",
            |h| h.initial_connection_window,
            65_535,
        ),
        (
            "initial_connection_window = 2147483647",
            |h| h.initial_connection_window,
            (1 << 31) - 1,
        ),
        ("max_frame_size = 16384", |h| h.max_frame_size, 16_384),
        (
            "max_frame_size = 16777215",
            |h| h.max_frame_size,
            16_777_215,
        ),
        (
            "max_header_list_size = 4294967295",
            |h| h.max_header_list_size,
            u32::MAX,
        ),
        (
            "max_concurrent_streams = 4294967295",
            |h| h.max_concurrent_streams,
            u32::MAX,
        ),
    ];
    for (line, get, want) in accepted {
        let (_dir, config) = load_one(&format!("[http2]\n{line}\n{SITE}"));
        assert_eq!(get(&config.unwrap().http2), *want, "{line}");
    }
}

/// Semantic errors of `[http2]`: the exact key, the position of the value, the bound.
#[test]
fn http2_errors_name_key_position_and_bound() {
    let cases: &[(&str, &str)] = &[
        (
            "max_concurrent_streams = 0",
            "DIR/sy.toml:2:26: http2.max_concurrent_streams: must be greater than 0",
        ),
        (
            "max_concurrent_streams = 4294967296",
            "DIR/sy.toml:2:26: http2.max_concurrent_streams: must be at most 4294967295",
        ),
        (
            "initial_stream_window = 0",
            "DIR/sy.toml:2:25: http2.initial_stream_window: must be greater than 0",
        ),
        (
            "initial_stream_window = \"2GiB\"",
            "DIR/sy.toml:2:25: http2.initial_stream_window: must be between 1 and 2147483647 bytes \
             (RFC 9113 §6.5.2)",
        ),
        (
            "initial_connection_window = \"64KB\"",
            "DIR/sy.toml:2:29: http2.initial_connection_window: must be between 65535 and 2147483647 \
             bytes (RFC 9113 §6.9.2)",
        ),
        (
            "max_frame_size = 16383",
            "DIR/sy.toml:2:18: http2.max_frame_size: must be between 16384 and 16777215 bytes \
             (RFC 9113 §6.5.2)",
        ),
        (
            "max_frame_size = \"16MiB\"",
            "DIR/sy.toml:2:18: http2.max_frame_size: must be between 16384 and 16777215 bytes \
             (RFC 9113 §6.5.2)",
        ),
        (
            "max_frame_size = -1",
            "DIR/sy.toml:2:18: http2.max_frame_size: a size cannot be negative, got -1",
        ),
        (
            "max_header_list_size = \"4GiB\"",
            "DIR/sy.toml:2:24: http2.max_header_list_size: must be between 1 and 4294967295 bytes \
             (a 32-bit SETTINGS value, RFC 9113 §6.5.1)",
        ),
        (
            "max_header_list_size = \"64k\"",
            "DIR/sy.toml:2:24: http2.max_header_list_size: invalid size \"64k\": ambiguous unit \"k\", \
             write KiB (powers of 1024) or KB (powers of 1000)",
        ),
        (
            "max_pending_resets = 0",
            "DIR/sy.toml:2:22: http2.max_pending_resets: must be greater than 0",
        ),
        (
            "max_error_resets = -3",
            "DIR/sy.toml:2:20: http2.max_error_resets: must be greater than 0",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(error_of(&format!("[http2]\n{line}\n")), *want, "{line}");
    }
    let unknown = error_of("[http2]\nmax_streams = 1\n");
    assert!(
        unknown.starts_with("DIR/sy.toml:2:1: unknown field `max_streams`"),
        "{unknown}"
    );
}

/// Semantic errors of `[tls]` and `[[tls.certificate]]`, including what the certificate files
/// hold: the exact key and the position of the value that names the file at fault.
#[test]
fn tls_errors_name_key_and_position() {
    let no_key = "DIR/certs/a.pem: no private key found (expected a PEM \"BEGIN PRIVATE KEY\", \
                  \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block)";
    let cases: &[(&str, &str)] = &[
        (
            "[timeouts]\ntls_handshake = \"0s\"\n",
            "DIR/sy.toml:2:17: timeouts.tls_handshake: must be greater than 0",
        ),
        (
            "[tls]\ncert = \"certs/a.pem\"\n",
            "DIR/sy.toml:2:8: tls.key: missing: tls.cert needs its private key \
             (e.g. key = \"certs/default.key\")",
        ),
        (
            "[tls]\nkey = \"certs/a.key\"\n",
            "DIR/sy.toml:2:7: tls.cert: missing: tls.key needs its certificate chain \
             (e.g. cert = \"certs/default.pem\")",
        ),
        (
            "[tls]\ncert = \"\"\nkey = \"certs/a.key\"\n",
            "DIR/sy.toml:2:8: tls.cert: must not be empty",
        ),
        (
            "[tls]\ncert = \"certs/absent.pem\"\nkey = \"certs/a.key\"\n",
            "DIR/sy.toml:2:8: tls.cert: DIR/certs/absent.pem: No such file or directory (os error 2)",
        ),
        (
            "[tls]\ncert = \"certs\"\nkey = \"certs/a.key\"\n",
            "DIR/sy.toml:2:8: tls.cert: DIR/certs: Is a directory (os error 21)",
        ),
        (
            "[tls]\ncert = \"certs/a.pem\"\nkey = \"certs/absent.key\"\n",
            "DIR/sy.toml:3:7: tls.key: DIR/certs/absent.key: No such file or directory (os error 2)",
        ),
        (
            "[tls]\ncert = \"certs/a.pem\"\nkey = \"certs/b.key\"\n",
            "DIR/sy.toml:3:7: tls.key: DIR/certs/b.key is not the private key of the certificate \
             in DIR/certs/a.pem",
        ),
        (
            "[tls]\ncert = \"certs/a.pem\"\nkey = \"certs/a.pem\"\n",
            &format!("DIR/sy.toml:3:7: tls.key: {no_key}"),
        ),
        (
            "[tls]\ncert = \"certs/a.key\"\nkey = \"certs/a.key\"\n",
            "DIR/sy.toml:2:8: tls.cert: DIR/certs/a.key: no certificate found \
             (expected a PEM \"BEGIN CERTIFICATE\" block)",
        ),
        (
            "[tls]\nsession_cache = -1\n",
            "DIR/sy.toml:2:17: tls.session_cache: must be 0 (no server-side cache) or more",
        ),
        (
            "[tls]\nsession_cache = 2000000\n",
            "DIR/sy.toml:2:17: tls.session_cache: must be at most 1048576",
        ),
        (
            "[tls]\ntickets = \"yes\"\n",
            "DIR/sy.toml:2:11: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "[[tls.certificate]]\ncert = \"certs/a.pem\"\nkey = \"certs/a.key\"\n",
            "DIR/sy.toml:1:1: tls.certificate[0].names: at least one server name is required \
             (e.g. names = [\"example.com\"])",
        ),
        (
            "[[tls.certificate]]\nnames = []\ncert = \"certs/a.pem\"\nkey = \"certs/a.key\"\n",
            "DIR/sy.toml:1:1: tls.certificate[0].names: at least one server name is required \
             (e.g. names = [\"example.com\"])",
        ),
        (
            "[[tls.certificate]]\nnames = [\"*\"]\n",
            "DIR/sy.toml:2:10: tls.certificate[0].names[0]: \"*\" is not a server name: \
             the default certificate (tls.cert) answers every name no entry lists",
        ),
        (
            "[[tls.certificate]]\nnames = [\"a.test\", \"10.0.0.1\"]\n",
            "DIR/sy.toml:2:20: tls.certificate[0].names[1]: \"10.0.0.1\": SNI carries no IP \
             addresses (RFC 6066 §3); clients connecting by address get the default certificate",
        ),
        (
            "[[tls.certificate]]\nnames = [\"[::1]\"]\n",
            "DIR/sy.toml:2:10: tls.certificate[0].names[0]: \"[::1]\": SNI carries no IP \
             addresses (RFC 6066 §3); clients connecting by address get the default certificate",
        ),
        (
            "[[tls.certificate]]\nnames = [\"a.test:443\"]\n",
            "DIR/sy.toml:2:10: tls.certificate[0].names[0]: \"a.test:443\": names carry no port \
             (the listener decides the port)",
        ),
        (
            "[[tls.certificate]]\nnames = [\"a.test\"]\nkey = \"certs/a.key\"\n",
            "DIR/sy.toml:1:1: tls.certificate[0].cert: missing: the PEM certificate chain for \
             these names",
        ),
        (
            "[[tls.certificate]]\nnames = [\"a.test\"]\ncert = \"certs/a.pem\"\n",
            "DIR/sy.toml:1:1: tls.certificate[0].key: missing: the PEM private key",
        ),
        (
            "[[tls.certificate]]\nnames = [\"a.test\"]\ncert = \"certs/a.pem\"\nkey = \"certs/b.key\"\n",
            "DIR/sy.toml:4:7: tls.certificate[0].key: DIR/certs/b.key is not the private key of \
             the certificate in DIR/certs/a.pem",
        ),
        (
            "[[tls.certificate]]\nnames = [\"a.test\"]\ncert = \"certs/nope.pem\"\nkey = \"certs/a.key\"\n",
            "DIR/sy.toml:3:8: tls.certificate[0].cert: DIR/certs/nope.pem: No such file or \
             directory (os error 2)",
        ),
        (
            "[[tls.certificate]]\nnames = [\"a.test\"]\ncert = \"certs/a.pem\"\nkey = \"certs/a.key\"\n\
             [[tls.certificate]]\nnames = [\"b.test\", \"A.test\"]\ncert = \"certs/b.pem\"\nkey = \"certs/b.key\"\n",
            "DIR/sy.toml:6:20: tls.certificate[1].names[1]: \"a.test\" is already a name of \
             tls.certificate[0]",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(error_with_certs(text), *want, "config:\n{text}");
    }
    let unknown = error_with_certs("[tls]\ncertificate_file = \"x\"\n");
    assert!(
        unknown.starts_with("DIR/sy.toml:2:1: unknown field `certificate_file`"),
        "{unknown}"
    );
}

#[test]
fn conf_d_overrides_tls_scalars_and_appends_certificates() {
    let dir = tree(&[
        (
            "etc/sy.toml",
            "[tls]\ncert = \"certs/a.pem\"\nkey = \"certs/a.key\"\nsession_cache = 10\n\
             [[tls.certificate]]\nnames = [\"a.test\"]\ncert = \"certs/a.pem\"\nkey = \"certs/a.key\"\n\
             [http2]\nmax_concurrent_streams = 10\nmax_frame_size = 20000\n\
             [[vhost]]\n[[vhost.location]]\npath = \"/\"\nroot = \"../www\"\n",
        ),
        (
            "etc/conf.d/10-tls.toml",
            // Paths resolve against etc/, not etc/conf.d/.
            "[tls]\ncert = \"certs/b.pem\"\nkey = \"certs/b.key\"\ntickets = false\n\
             [[tls.certificate]]\nnames = [\"b.test\"]\ncert = \"certs/b.pem\"\nkey = \"certs/b.key\"\n\
             [http2]\nmax_concurrent_streams = 20\n\
             [timeouts]\ntls_handshake = \"3s\"\n",
        ),
    ]);
    let etc = dir.path().join("etc");
    write_pair(&etc, "a");
    write_pair(&etc, "b");
    let config = load(&etc.join("sy.toml")).unwrap();
    let base = std::path::absolute(&etc).unwrap();
    let b = CertPair {
        cert: base.join("certs/b.pem"),
        key: base.join("certs/b.key"),
    };
    assert_eq!(config.tls.default_cert, Some(b), "the later file wins");
    assert_eq!(config.tls.session_cache, 10, "other keys of [tls] stay");
    assert!(!config.tls.tickets);
    let names: Vec<_> = config
        .tls
        .certificates
        .iter()
        .map(|c| c.names.clone())
        .collect();
    assert_eq!(
        names,
        [vec!["a.test".to_owned()], vec!["b.test".to_owned()]]
    );
    assert_eq!(config.http2.max_concurrent_streams, 20);
    assert_eq!(config.http2.max_frame_size, 20_000);
    assert_eq!(config.timeouts.tls_handshake, Duration::from_secs(3));
}

#[test]
fn conf_d_certificate_errors_use_merged_index_and_own_file() {
    let dir = tree(&[
        (
            "sy.toml",
            &format!(
                "[[tls.certificate]]\nnames = [\"a.test\"]\ncert = \"certs/a.pem\"\nkey = \"certs/a.key\"\n{SITE}"
            ),
        ),
        (
            "conf.d/10-b.toml",
            "\n[[tls.certificate]]\nnames = [\"b.test\"]\ncert = \"certs/b.pem\"\nkey = \"certs/a.key\"\n",
        ),
    ]);
    write_pair(dir.path(), "a");
    write_pair(dir.path(), "b");
    let err = load(&dir.path().join("sy.toml")).unwrap_err().to_string();
    let file = dir.path().join("conf.d/10-b.toml");
    let base = std::path::absolute(dir.path()).unwrap();
    let want = format!(
        "{}:5:7: tls.certificate[1].key: {} is not the private key of the certificate in {}",
        file.display(),
        base.join("certs/a.key").display(),
        base.join("certs/b.pem").display()
    );
    assert_eq!(err, want);
}

#[test]
fn check_reports_a_mismatched_key() {
    let dir = tree(&[(
        "sy.toml",
        &format!("[tls]\ncert = \"certs/a.pem\"\nkey = \"certs/b.key\"\n{SITE}"),
    )]);
    write_pair(dir.path(), "a");
    write_pair(dir.path(), "b");
    let err = check(&dir.path().join("sy.toml")).unwrap_err().to_string();
    assert!(err.contains("tls.key: "), "{err}");
    assert!(
        err.contains("is not the private key of the certificate in"),
        "{err}"
    );
}
