//! Loading as an operator meets it: files on disk, `conf.d/` merging, and the exact messages
//! `switchyard check` prints. Each test writes a small configuration tree into a temp directory.
//! `[tls]` and `[http2]` have their own file, `tests/tls.rs`; `[cache]` and `[redis_routes]`
//! theirs, `tests/cache.rs`.

mod cache;
mod quic;
mod tls;
mod torrent;

use super::*;
use std::fs;
use std::time::Duration;
use tempfile::TempDir;

/// A temp directory holding `files` (path relative to it, contents) and an empty `www/`.
fn tree(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("www")).unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    dir
}

/// The smallest useful vhost, to append to configurations that test something else.
const SITE: &str = "[[vhost]]\n[[vhost.location]]\npath = \"/\"\nroot = \"www\"\n";

fn load_one(text: &str) -> (TempDir, Result<Config, ConfError>) {
    let dir = tree(&[("sy.toml", text)]);
    let result = load(&dir.path().join("sy.toml"));
    (dir, result)
}

/// The error message with the temp directory replaced by `DIR`.
fn error_of(text: &str) -> String {
    let (dir, result) = load_one(text);
    match result {
        Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
        Err(e) => e
            .to_string()
            .replace(&dir.path().display().to_string(), "DIR"),
    }
}

fn files(location: &Location) -> &FilesConfig {
    match &location.handler {
        Handler::Files(files) => files,
        Handler::Proxy(_) | Handler::Metrics => panic!("a files location was expected"),
    }
}

#[test]
fn defaults_apply_to_a_minimal_file() {
    let (dir, config) = load_one(SITE);
    let config = config.unwrap();
    let www = dir.path().join("www").canonicalize().unwrap();
    assert_eq!(
        config,
        Config {
            workers: default_workers(),
            listeners: vec![Listener {
                addr: "127.0.0.1:8080".parse().unwrap()
            }],
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            log: LogConfig { access: None },
            tls: TlsConfig::default(),
            http2: Http2Config::default(),
            torrent: TorrentConfig::default(),
            quic: QuicConfig::default(),
            cache: CacheConfig::default(),
            redis_routes: None,
            vhosts: vec![VirtualHost {
                names: vec![],
                locations: vec![Location {
                    prefix: "/".into(),
                    handler: Handler::Files(FilesConfig::new(www)),
                    cache: false,
                }],
            }],
            upstreams: vec![],
        }
    );
}

#[test]
fn every_key_is_parsed() {
    let text = r#"
workers = 3
[[listen]]
address = "0.0.0.0:80"
[[listen]]
address = "[::]:443"
[limits]
max_request_line = 1000
max_header_bytes = "2KiB"
max_headers = 7
max_body = "3MB"
max_connections = 9
service_queue = 11
max_ranges = 2
small_file_max = "1KiB"
file_cache_bytes = "1GiB"
[timeouts]
sniff = "1s"
header = "2s"
keepalive = "3m"
body = "400ms"
send = "5s"
shutdown = "0s"
file_revalidate = "250ms"
tls_handshake = "3s"
[log]
access = "logs/access.log"
access_format = "json"
[[vhost]]
names = ["Example.COM", "*.example.org"]
[[vhost.location]]
path = "/static/"
root = "www"
index = ["index.htm", "default.html"]
autoindex = true
symlinks = "follow"
dotfiles = "allow"
precompressed = false
sendfile = false
[[vhost.location]]
path = "/raw/"
root = "www"
symlinks = "refuse"
"#;
    let dir = tree(&[("sy.toml", text), ("logs/.keep", "")]);
    let config = load(&dir.path().join("sy.toml")).unwrap();
    assert_eq!(config.workers, 3);
    let addrs: Vec<String> = config
        .listeners
        .iter()
        .map(|l| l.addr.to_string())
        .collect();
    assert_eq!(addrs, ["0.0.0.0:80", "[::]:443"]);
    assert_eq!(
        config.limits,
        Limits {
            max_request_line: 1000,
            max_header_bytes: 2048,
            max_headers: 7,
            max_body: 3_000_000,
            max_connections: 9,
            service_queue: 11,
            max_ranges: 2,
            small_file_max: 1024,
            file_cache_bytes: 1 << 30,
        }
    );
    assert_eq!(
        config.timeouts,
        Timeouts {
            sniff: Duration::from_secs(1),
            header: Duration::from_secs(2),
            keepalive: Duration::from_secs(180),
            body: Duration::from_millis(400),
            send: Duration::from_secs(5),
            shutdown: Duration::ZERO,
            tls_handshake: Duration::from_secs(3),
            file_revalidate: Duration::from_millis(250),
        }
    );
    let base = std::path::absolute(dir.path()).unwrap();
    assert_eq!(
        config.log.access,
        Some(AccessLog {
            target: LogTarget::File(base.join("logs/access.log")),
            format: AccessFormat::Json,
        })
    );
    let vhost = &config.vhosts[0];
    assert_eq!(vhost.names, ["example.com", "*.example.org"]);
    let www = dir.path().join("www").canonicalize().unwrap();
    assert_eq!(vhost.locations[0].prefix, "/static/");
    assert_eq!(
        *files(&vhost.locations[0]),
        FilesConfig {
            root: www.clone(),
            index: vec!["index.htm".into(), "default.html".into()],
            autoindex: true,
            symlinks: SymlinkPolicy::Follow,
            dotfiles: DotfilePolicy::Allow,
            precompressed: false,
            sendfile: false,
            seed: true,
            piece_length: None,
        }
    );
    assert!(files(&vhost.locations[1]).sendfile);
    assert_eq!(files(&vhost.locations[1]).symlinks, SymlinkPolicy::Refuse);
    assert_eq!(files(&vhost.locations[1]).dotfiles, DotfilePolicy::Refuse);
}

#[test]
fn log_targets() {
    let cases = [("stderr", LogTarget::Stderr), ("stdout", LogTarget::Stdout)];
    for (access, target) in cases {
        let (_dir, config) = load_one(&format!("[log]\naccess = \"{access}\"\n{SITE}"));
        let want = AccessLog {
            target,
            format: AccessFormat::Combined,
        };
        assert_eq!(
            config.unwrap().log.access,
            Some(want),
            "access = {access:?}"
        );
    }
}

#[test]
fn sizes_in_limits() {
    let cases: &[(&str, u64)] = &[
        ("1", 1),
        ("65536", 65536),
        ("\"512\"", 512),
        ("\"64KiB\"", 64 * 1024),
        ("\"1MiB\"", 1 << 20),
        ("\"1MB\"", 1_000_000),
        ("\"2GiB\"", 2 << 30),
    ];
    for (value, want) in cases {
        let (_dir, config) = load_one(&format!("[limits]\nmax_body = {value}\n{SITE}"));
        assert_eq!(config.unwrap().limits.max_body, *want, "max_body = {value}");
    }
}

/// Semantic errors: the exact key, and the position of the value in its file.
#[test]
fn semantic_errors_name_key_and_position() {
    let cases: &[(&str, &str)] = &[
        (
            "workers = 0\n",
            "DIR/sy.toml:1:11: workers: must be at least 1",
        ),
        (
            "workers = -4\n",
            "DIR/sy.toml:1:11: workers: must be at least 1",
        ),
        (
            "workers = 5000\n",
            "DIR/sy.toml:1:11: workers: must be at most 1024",
        ),
        (
            "[[listen]]\naddress = \"localhost\"\n",
            "DIR/sy.toml:2:11: listen[0].address: invalid socket address \"localhost\"",
        ),
        (
            "[[listen]]\n",
            "DIR/sy.toml:1:1: listen[0].address: missing (e.g. address = \"127.0.0.1:8080\")",
        ),
        (
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[[listen]]\naddress = \"127.0.0.1:1\"\n",
            "DIR/sy.toml:4:11: listen[1].address: 127.0.0.1:1 is already listen[0]",
        ),
        (
            "[limits]\nmax_body = 0\n",
            "DIR/sy.toml:2:12: limits.max_body: must be greater than 0",
        ),
        (
            "[limits]\nmax_body = \"0KiB\"\n",
            "DIR/sy.toml:2:12: limits.max_body: must be greater than 0",
        ),
        (
            "[limits]\nmax_headers = -1\n",
            "DIR/sy.toml:2:15: limits.max_headers: must be greater than 0",
        ),
        (
            "[limits]\nsmall_file_max = \"1.5MiB\"\n",
            "DIR/sy.toml:2:18: limits.small_file_max: invalid size \"1.5MiB\": expected whole bytes \
             with an optional unit: B, KB, KiB, MB, MiB, GB, GiB, TB, TiB",
        ),
        (
            "[limits]\nmax_body = \"1m\"\n",
            "DIR/sy.toml:2:12: limits.max_body: invalid size \"1m\": ambiguous unit \"m\", write MiB \
             (powers of 1024) or MB (powers of 1000)",
        ),
        (
            "[timeouts]\nheader = \"0s\"\n",
            "DIR/sy.toml:2:10: timeouts.header: must be greater than 0",
        ),
        (
            "[log]\naccess_format = \"xml\"\n",
            "DIR/sy.toml:2:17: log.access_format: unknown format \"xml\", expected \"combined\" or \"json\"",
        ),
        (
            "[log]\naccess = \"\"\n",
            "DIR/sy.toml:2:10: log.access: must not be empty",
        ),
        (
            "[log]\naccess = \"nope/access.log\"\n",
            "DIR/sy.toml:2:10: log.access: directory DIR/nope does not exist",
        ),
        (
            "[[vhost]]\n[[vhost.location]]\nroot = \"www\"\n",
            "DIR/sy.toml:2:1: vhost[0].location[0].path: missing (e.g. path = \"/\")",
        ),
        (
            "[[vhost]]\n[[vhost.location]]\npath = \"img\"\nroot = \"www\"\n",
            "DIR/sy.toml:3:8: vhost[0].location[0].path: must start with \"/\"",
        ),
        (
            "[[vhost]]\n[[vhost.location]]\npath = \"/\"\n",
            "DIR/sy.toml:2:1: vhost[0].location[0].root: missing: the directory to serve",
        ),
        (
            "[[vhost]]\n[[vhost.location]]\npath = \"/\"\nroot = \"www\"\n\
             [[vhost.location]]\npath = \"/\"\nroot = \"www\"\n",
            "DIR/sy.toml:6:8: vhost[0].location[1].path: duplicate path \"/\", already vhost[0].location[0]",
        ),
        (
            "[[vhost]]\n[[vhost.location]]\npath = \"/\"\nroot = \"www\"\nsymlinks = \"always\"\n",
            "DIR/sy.toml:5:12: vhost[0].location[0].symlinks: unknown policy \"always\", \
             expected \"inside_root\", \"follow\" or \"refuse\"",
        ),
        (
            "[[vhost]]\n[[vhost.location]]\npath = \"/\"\nroot = \"www\"\ndotfiles = \"hide\"\n",
            "DIR/sy.toml:5:12: vhost[0].location[0].dotfiles: unknown policy \"hide\", \
             expected \"refuse\" or \"allow\"",
        ),
        (
            "[[vhost]]\n[[vhost.location]]\npath = \"/\"\nroot = \"www\"\nindex = [\"a/b.html\"]\n",
            "DIR/sy.toml:5:10: vhost[0].location[0].index[0]: \"a/b.html\" must be a file name, not a path",
        ),
        (
            "[[vhost]]\nnames = [\"a.com\"]\n",
            "DIR/sy.toml:1:1: vhost[0].location: at least one [[vhost.location]] is required",
        ),
        (
            "workers = 1\n",
            "DIR/sy.toml: no [[vhost]]: at least one [[vhost]] with a [[vhost.location]] is required",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(error_of(text), *want, "config:\n{text}");
    }
}

#[test]
fn vhost_names() {
    let site = |names: &str| {
        format!("[[vhost]]\nnames = {names}\n[[vhost.location]]\npath = \"/\"\nroot = \"www\"\n")
    };
    let accepted: &[(&str, &[&str])] = &[
        ("[\"Example.COM\"]", &["example.com"]),
        (
            "[\"*.example.org\", \"example.org\"]",
            &["*.example.org", "example.org"],
        ),
        ("[\"a.com\", \"A.com\"]", &["a.com"]),
        ("[\"10.0.0.1\", \"[::1]\"]", &["10.0.0.1", "[::1]"]),
        ("[\"*\"]", &[]),
        ("[\"a.com\", \"*\"]", &[]),
        ("[]", &[]),
    ];
    for (names, want) in accepted {
        let (_dir, config) = load_one(&site(names));
        assert_eq!(config.unwrap().vhosts[0].names, *want, "names = {names}");
    }
    let refused = [
        "[\"example.com:8080\"]",
        "[\"exa mple.com\"]",
        "[\"\"]",
        "[\"a.*.com\"]",
        "[\"*.\"]",
        "[\"bücher.de\"]",
        "[\"[nope]\"]",
    ];
    for names in refused {
        let err = error_of(&site(names));
        assert!(
            err.starts_with("DIR/sy.toml:2:10: vhost[0].names[0]: "),
            "names = {names}: {err}"
        );
    }
}

#[test]
fn a_name_or_any_host_belongs_to_one_vhost() {
    let site = |names: &str| {
        format!("[[vhost]]\n{names}\n[[vhost.location]]\npath = \"/\"\nroot = \"www\"\n")
    };
    let twice = site("names = [\"a.com\"]") + &site("names = [\"b.com\", \"A.com\"]");
    assert_eq!(
        error_of(&twice),
        "DIR/sy.toml:7:19: vhost[1].names[1]: \"a.com\" is already a name of vhost[0]"
    );
    let two_catch_alls = site("") + &site("");
    assert_eq!(
        error_of(&two_catch_alls),
        "DIR/sy.toml:6:1: vhost[1].names: vhost[0] already answers any host"
    );
    let star_after_default = site("") + &site("names = [\"*\"]");
    assert_eq!(
        error_of(&star_after_default),
        "DIR/sy.toml:7:10: vhost[1].names[0]: vhost[0] already answers any host"
    );
}

#[test]
fn missing_root_names_the_key_and_the_path() {
    let text = format!("{SITE}[[vhost.location]]\npath = \"/img/\"\nroot = \"nope\"\n");
    let err = error_of(&text);
    assert!(
        err.starts_with(
            "DIR/sy.toml:7:8: vhost[0].location[1].root: DIR/nope: No such file or directory"
        ),
        "{err}"
    );
    let (dir, result) = load_one(&text.replace("nope", "sy.toml"));
    let err = result.unwrap_err().to_string();
    let file = dir.path().join("sy.toml").canonicalize().unwrap();
    assert!(
        err.ends_with(&format!("root: {} is not a directory", file.display())),
        "{err}"
    );
}

#[test]
fn paths_in_messages_are_as_given() {
    let text = "[[vhost]]\n[[vhost.location]]\npath = \"/\"\nroot = \"/srv/nope\"\n";
    let err = load_str(Path::new("site.toml"), text)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "site.toml:4:8: vhost[0].location[0].root: /srv/nope: No such file or directory (os error 2)"
    );
}

#[test]
fn syntax_error_has_exact_position() {
    assert_eq!(
        error_of("workers = 2\n[limits]\nmax_body = \n"),
        "DIR/sy.toml:3:12: string values must be quoted, expected literal string"
    );
    assert_eq!(
        error_of("workers = 2\nworkers = 3\n"),
        "DIR/sy.toml:2:1: duplicate key"
    );
}

#[test]
fn wrong_type_has_exact_position() {
    assert_eq!(
        error_of("[timeouts]\nsniff = 10\n"),
        "DIR/sy.toml:2:9: invalid type: integer `10`, expected a string"
    );
    let err = error_of("[limits]\nmax_body = true\n");
    assert!(
        err.starts_with("DIR/sy.toml:2:12: invalid type: boolean `true`, expected a size"),
        "{err}"
    );
}

#[test]
fn unknown_key_in_nested_table_in_conf_d_has_exact_position() {
    let dir = tree(&[
        ("sy.toml", SITE),
        (
            "conf.d/10-site.toml",
            "[[vhost]]\n[[vhost.location]]\npath = \"/\"\nrooot = \"www\"\n",
        ),
    ]);
    let err = load(&dir.path().join("sy.toml")).unwrap_err().to_string();
    let file = dir.path().join("conf.d/10-site.toml");
    let want = format!(
        "{}:4:1: unknown field `rooot`, expected one of ",
        file.display()
    );
    assert!(err.starts_with(&want), "{err}");
    let top = error_of("worker = 2\n");
    assert!(
        top.starts_with("DIR/sy.toml:1:1: unknown field `worker`"),
        "{top}"
    );
}

#[test]
fn conf_d_merges_in_name_order() {
    let dir = tree(&[
        (
            "sy.toml",
            &format!("workers = 1\n[limits]\nmax_body = 100\nmax_headers = 5\n{SITE}"),
        ),
        // Written first, read last: name order, not creation order.
        (
            "conf.d/20-late.toml",
            "workers = 3\n[[vhost]]\nnames = [\"late.example\"]\n[[vhost.location]]\npath = \"/\"\nroot = \"www\"\n",
        ),
        (
            "conf.d/10-early.toml",
            "workers = 2\n[limits]\nmax_body = 200\n[[listen]]\naddress = \"127.0.0.1:9\"\n[[vhost]]\nnames = [\"early.example\"]\n[[vhost.location]]\npath = \"/\"\nroot = \"www\"\n",
        ),
        ("conf.d/30-notes.txt", "not toml at all ["),
    ]);
    let loaded = load_with_files(&dir.path().join("sy.toml")).unwrap();
    let names: Vec<_> = loaded
        .files
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["sy.toml", "conf.d/10-early.toml", "conf.d/20-late.toml"].map(PathBuf::from)
    );
    let config = loaded.config;
    assert_eq!(config.workers, 3, "the last file wins");
    assert_eq!(config.limits.max_body, 200, "a table key is overridden");
    assert_eq!(config.limits.max_headers, 5, "other keys of the table stay");
    assert_eq!(config.listeners.len(), 1);
    let hosts: Vec<_> = config.vhosts.iter().map(|v| v.names.clone()).collect();
    assert_eq!(
        hosts,
        [
            vec![],
            vec!["early.example".to_owned()],
            vec!["late.example".to_owned()]
        ]
    );
}

#[test]
fn conf_d_errors_use_merged_index_and_own_file() {
    let dir = tree(&[
        ("sy.toml", SITE),
        (
            "conf.d/10-site.toml",
            "\n[[vhost]]\nnames = [\"x.example\"]\n[[vhost.location]]\npath = \"/\"\nroot = \"gone\"\n",
        ),
    ]);
    let err = load(&dir.path().join("sy.toml")).unwrap_err().to_string();
    let file = dir.path().join("conf.d/10-site.toml");
    let want = format!("{}:6:8: vhost[1].location[0].root: ", file.display());
    assert!(err.starts_with(&want), "{err}");
}

#[test]
fn relative_roots_resolve_against_the_main_file() {
    let dir = tree(&[
        (
            "etc/sy.toml",
            "[[vhost]]\n[[vhost.location]]\npath = \"/\"\nroot = \"../www\"\n",
        ),
        (
            "etc/conf.d/1.toml",
            "[[vhost]]\nnames = [\"b\"]\n[[vhost.location]]\npath = \"/\"\nroot = \"site\"\n",
        ),
        ("etc/site/index.html", ""),
    ]);
    let config = load(&dir.path().join("etc/sy.toml")).unwrap();
    let root = |v: usize| files(&config.vhosts[v].locations[0]).root.clone();
    assert_eq!(root(0), dir.path().join("www").canonicalize().unwrap());
    assert_eq!(root(1), dir.path().join("etc/site").canonicalize().unwrap());
    assert!(root(0).is_absolute());
}

#[test]
fn unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let err = load(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: No such file or directory", path.display())),
        "{err}"
    );
}

#[test]
fn check_summarises() {
    let dir = tree(&[
        (
            "sy.toml",
            &format!("workers = 2\n{SITE}[[vhost.location]]\npath = \"/a/\"\nroot = \"www\"\n"),
        ),
        (
            "conf.d/10.toml",
            "[[vhost]]\nnames = [\"b\"]\n[[vhost.location]]\npath = \"/\"\nroot = \"www\"\n",
        ),
    ]);
    let summary = check(&dir.path().join("sy.toml")).unwrap();
    assert_eq!(
        summary,
        "ok: 2 files, 1 listener, 2 vhosts, 3 locations, 2 workers"
    );
    let (dir, _) = load_one(&format!("workers = 1\n{SITE}"));
    assert_eq!(
        check(&dir.path().join("sy.toml")).unwrap(),
        "ok: 1 file, 1 listener, 1 vhost, 1 location, 1 worker"
    );
}

#[test]
fn load_str_reads_no_conf_d() {
    let dir = tree(&[("conf.d/1.toml", "workers = 9\n")]);
    let config = load_str(&dir.path().join("sy.toml"), &format!("workers = 4\n{SITE}")).unwrap();
    assert_eq!(config.workers, 4);
}

#[test]
fn example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/switchyard.toml");
    let Loaded {
        config,
        files: read,
    } = load_with_files(&path).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(config.workers, 2);
    let addrs: Vec<String> = config
        .listeners
        .iter()
        .map(|l| l.addr.to_string())
        .collect();
    assert_eq!(addrs, ["127.0.0.1:8080", "[::1]:8080"]);
    assert_eq!(
        config.limits,
        Limits {
            max_body: 10 * 1024 * 1024,
            ..Limits::default()
        }
    );
    assert_eq!(config.timeouts, Timeouts::default());
    assert_eq!(config.tls, TlsConfig::default());
    assert_eq!(config.http2, Http2Config::default());
    assert_eq!(config.quic, QuicConfig::default());
    assert_eq!(
        config.log.access,
        Some(AccessLog {
            target: LogTarget::Stderr,
            format: AccessFormat::Combined
        })
    );
    let examples = path.parent().unwrap();
    let www = examples.join("www").canonicalize().unwrap();
    assert_eq!(config.vhosts.len(), 2);
    assert_eq!(config.vhosts[0].names, ["localhost", "*.localhost"]);
    assert_eq!(
        *files(&config.vhosts[0].locations[0]),
        FilesConfig::new(www.clone())
    );
    let metrics = &config.vhosts[0].locations[1];
    assert_eq!(
        (metrics.prefix.as_str(), &metrics.handler),
        ("/metrics", &Handler::Metrics)
    );
    let docs = &config.vhosts[1];
    assert_eq!(docs.names, ["docs.example.com"]);
    assert_eq!(
        files(&docs.locations[0]).root,
        examples.join("www-docs").canonicalize().unwrap()
    );
    assert!(files(&docs.locations[0]).autoindex);
    assert_eq!(docs.locations[1].prefix, "/assets/");
    assert_eq!(
        *files(&docs.locations[1]),
        FilesConfig {
            root: www,
            index: vec![],
            autoindex: false,
            symlinks: SymlinkPolicy::Refuse,
            dotfiles: DotfilePolicy::Allow,
            precompressed: false,
            sendfile: true,
            seed: true,
            piece_length: None,
        }
    );
    assert!(
        check(&path)
            .unwrap()
            .starts_with("ok: 2 files, 2 listeners, 2 vhosts, 4 locations, 2 workers")
    );
}

#[test]
fn port_zero_may_be_listed_twice() {
    let text = format!(
        "[[listen]]\naddress = \"127.0.0.1:0\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n{SITE}"
    );
    let (_dir, result) = load_one(&text);
    let config = result.expect("two ephemeral listeners are two different ports");
    assert_eq!(config.listeners.len(), 2);
}

#[test]
fn a_metrics_location_is_parsed_and_takes_no_files_or_proxy_keys() {
    let text = "[[vhost]]\n[[vhost.location]]\npath = \"/\"\nroot = \"www\"\n\n\
                [[vhost.location]]\npath = \"/metrics\"\nmetrics = true\n";
    let (_dir, config) = load_one(text);
    let config = config.unwrap();
    let metrics = &config.vhosts[0].locations[1];
    assert_eq!(
        (metrics.prefix.as_str(), &metrics.handler, metrics.cache),
        ("/metrics", &Handler::Metrics, false)
    );
    // `metrics = false` is a files location like any other.
    let off = text.replace("metrics = true", "metrics = false\nroot = \"www\"");
    let (_dir, config) = load_one(&off);
    assert!(matches!(
        config.unwrap().vhosts[0].locations[1].handler,
        Handler::Files(_)
    ));
    for extra in ["root = \"www\"", "proxy = \"pool\"", "autoindex = true"] {
        let key = extra.split(' ').next().unwrap_or_default();
        let err = error_of(&format!("{text}{extra}\n"));
        assert!(
            err.contains(&format!(
                "vhost[0].location[1].{key}: a metrics location serves the counters only"
            )),
            "{extra}: {err}"
        );
    }
}

/// Every size key reads its value the same way: a negative integer is refused as such, with
/// its file, line, column and key, whatever the key's own range is.
#[test]
fn a_negative_size_is_an_error_naming_its_key() {
    let upstream = "[[upstream]]\nname = \"app\"\nmembers = [\"127.0.0.1:9\"]\n";
    let cases = [
        (
            format!("[limits]\nmax_body = -1\n{SITE}"),
            "DIR/sy.toml:2:12: limits.max_body: a size cannot be negative, got -1",
        ),
        (
            format!("[http2]\nmax_header_list_size = -16384\n{SITE}"),
            "DIR/sy.toml:2:24: http2.max_header_list_size: a size cannot be negative, got -16384",
        ),
        (
            format!("[cache]\nmemory_size = -5\n{SITE}"),
            "DIR/sy.toml:2:15: cache.memory_size: a size cannot be negative, got -5",
        ),
        (
            format!("[redis_routes]\nurl = \"redis://x\"\nmax_body = -1\n{SITE}"),
            "DIR/sy.toml:3:12: redis_routes.max_body: a size cannot be negative, got -1",
        ),
        (
            format!(
                "{upstream}[[vhost]]\n[[vhost.location]]\npath = \"/\"\nproxy = \"app\"\nmax_body = -2\n"
            ),
            "DIR/sy.toml:8:12: vhost[0].location[0].max_body: a size cannot be negative, got -2",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(error_of(&text), want, "{text}");
    }
}

#[test]
fn files_keys_on_a_proxy_location_and_proxy_keys_on_a_files_location_are_errors() {
    let proxy = "[[upstream]]\nname = \"app\"\nmembers = [\"127.0.0.1:9\"]\n\
                 [[vhost]]\n[[vhost.location]]\npath = \"/\"\nproxy = \"app\"\n";
    let (_dir, config) = load_one(proxy);
    assert!(matches!(
        config.unwrap().vhosts[0].locations[0].handler,
        Handler::Proxy(_)
    ));
    let files_only = [
        "index = [\"a.html\"]",
        "autoindex = true",
        "symlinks = \"follow\"",
        "dotfiles = \"allow\"",
        "precompressed = false",
        "sendfile = false",
        "seed = false",
        "piece_length = \"1MiB\"",
    ];
    let proxy_only = [
        "strip_prefix = true",
        "forwarded = false",
        "max_body = \"1MiB\"",
    ];
    let cases = files_only
        .map(|extra| {
            (
                proxy,
                extra,
                "only applies to locations serving files (root)",
            )
        })
        .into_iter()
        .chain(proxy_only.map(|extra| (SITE, extra, "only applies to proxy locations")));
    for (base, extra, message) in cases {
        let key = extra.split(' ').next().unwrap_or_default();
        let err = error_of(&format!("{base}{extra}\n"));
        assert!(
            err.contains(&format!("vhost[0].location[0].{key}: {message}")),
            "{extra}: {err}"
        );
    }
}
