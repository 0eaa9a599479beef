//! Switchyard's configuration: the model ([`Config`]), loading (TOML + `conf.d/`), validation.
//!
//! This crate knows nothing of sockets or HTTP. It turns text into a validated [`Config`] or a
//! [`ConfError`] that names the file, line and column (syntax, unknown keys, wrong types) or the
//! exact key (semantic errors such as a missing root).
//!
//! # Files
//!
//! [`load`] reads FILE, then every `*.toml` in the `conf.d/` directory beside it in file-name
//! order (hidden files skipped). For a scalar key, or a key of `[limits]`, `[timeouts]`,
//! `[log]`, `[tls]` or `[http2]`, the last file that sets it wins; `[[listen]]`, `[[vhost]]` and
//! `[[tls.certificate]]` entries append. Relative paths are resolved against FILE's directory,
//! also in `conf.d/` files.
//!
//! # Schema
//!
//! Every key is optional unless marked required; unknown keys are errors.
//!
//! ```toml
//! workers = 2                   # worker threads, 1..=1024; default: available cores
//!
//! [[listen]]                    # repeatable; default when none: 127.0.0.1:8080
//! address = "127.0.0.1:8080"    # required in a [[listen]]: IP:PORT, "[::]:443" for IPv6
//!
//! [limits]                      # defaults: Limits::default(); all must be greater than 0
//! max_request_line = 8192       # sizes: integer bytes, or "512", "64KiB", "1MiB", "1MB", "2GiB"
//! max_header_bytes = "32KiB"
//! max_headers = 100             # counts: integers
//! max_body = "1MiB"
//! max_connections = 10000
//! service_queue = 1024
//! max_ranges = 16
//! small_file_max = "64KiB"
//! file_cache_bytes = "64MiB"
//!
//! [timeouts]                    # humantime strings; defaults: Timeouts::default()
//! sniff = "10s"                 # all greater than 0, except shutdown = "0s" (exit at once)
//! header = "10s"
//! keepalive = "75s"
//! body = "30s"
//! send = "60s"
//! file_revalidate = "1s"        # how long file metadata is trusted; "0s" = stat every request
//! shutdown = "30s"
//! tls_handshake = "10s"         # a TLS handshake, from the sniffed ClientHello to Finished
//!
//! [tls]                         # TLS 1.3 and 1.2, ALPN h2 and http/1.1, on every listener
//! cert = "certs/default.pem"    # default certificate chain (PEM, end-entity first); cert and
//! key = "certs/default.key"     # key go together. Key: PEM PKCS#8, PKCS#1 or SEC1. Absent: a
//!                               # self-signed certificate for localhost, 127.0.0.1, ::1 at start
//! session_cache = 4096          # server-side resumption cache entries, 0..=1048576; 0 disables
//! tickets = true                # stateless resumption tickets (rotated keys); default true
//!
//! [[tls.certificate]]           # repeatable: chosen by SNI, else the default certificate answers
//! names = ["example.com", "*.example.com"]  # required; "*.x" matches one label; no IPs, no "*"
//! cert = "certs/example.pem"    # required
//! key = "certs/example.key"     # required
//!
//! [http2]                       # defaults: Http2Config::default(); sizes as in [limits]
//! max_concurrent_streams = 128  # more open streams: REFUSED_STREAM
//! initial_stream_window = "1MiB"       # 1 ..= 2^31-1 bytes
//! initial_connection_window = "16MiB"  # 65535 ..= 2^31-1 bytes
//! max_frame_size = "16KiB"      # 16384 ..= 16777215 bytes
//! max_header_list_size = "64KiB"
//! max_pending_resets = 20       # rapid-reset protection: then GOAWAY ENHANCE_YOUR_CALM
//! max_error_resets = 1024       # streams reset for client errors before GOAWAY
//!
//! [log]
//! access = "stderr"             # "stderr" | "stdout" | a file path; absent: no access log
//! access_format = "combined"    # "combined" (default) | "json"
//!
//! [[vhost]]                     # at least one; the first whose names match the Host wins
//! names = ["example.com", "*.example.org"]  # lowercased; absent, [] or "*": any host
//!
//! [[vhost.location]]            # at least one per vhost; longest path prefix wins
//! path = "/"                    # required, starts with "/", unique within the vhost
//! root = "www"                  # required, an existing directory (stored canonical)
//! index = ["index.html"]        # file names tried for a directory; default ["index.html"]
//! autoindex = false             # directory listings; default false
//! symlinks = "inside_root"      # "inside_root" (default) | "follow" | "refuse"
//! dotfiles = "refuse"           # "refuse" (default) | "allow"
//! precompressed = true          # serve x.br / x.zst / x.gz for x; default true
//! sendfile = true               # large files on plain HTTP/1.1 by sendfile(2); false: read and
//!                               # written in 64 KiB chunks (file systems where it misbehaves)
//! seed = true                   # seed this location's files over BitTorrent; default true
//! piece_length = "1MiB"         # this location's piece length; default [torrent]'s
//! cache = false                 # responses go through the [cache]; needs it enabled
//! ```
//!
//! `[torrent]` (seeding, tracker, peer limits) is described in the `torrent` module,
//! `[cache]` in the `cache` module and `[redis_routes]` in `redis_routes`; both of the
//! latter merge like `[limits]`.
//!
//! # Errors
//!
//! [`ConfError`]'s `Display` is the whole message for the operator:
//!
//! - unreadable file: `PATH: <io error>`
//! - syntax, unknown key, wrong type: `PATH:LINE:COLUMN: <toml message>`
//! - meaning: `PATH:LINE:COLUMN: KEY: <message>`, e.g.
//!   `site.toml:7:8: vhost[0].location[1].root: /srv/nope: No such file or directory (os error 2)`.
//!   `KEY` indexes the merged lists, while the position is in the file the value came from.
//! - no vhost at all: `PATH: no [[vhost]]: ...`
//!
//! Certificate files are read and checked during validation, so `check` reports them too:
//! `sy.toml:9:8: tls.key: /etc/sy/certs/other.key is not the private key of the certificate in
//! /etc/sy/certs/site.pem`, or `tls.certificate[0].cert: /etc/sy/certs/a.pem: No such file or
//! directory (os error 2)`. [`CertPair::load`] is the same check, for whoever builds the TLS
//! configuration afterwards.

mod cache;
mod certs;
mod model;
pub mod proxy;
mod quic;
mod raw;
mod redis_routes;
mod source;
mod torrent;
mod units;
mod validate;

#[cfg(test)]
mod tests;

pub use cache::{CacheConfig, DiskTier};
pub use certs::{CertError, CertFile};
pub use model::*;
pub use proxy::{
    Balance, HashKey, HeaderEdits, HealthCheck, Member, PassiveHealth, ProxyLocation, Upstream,
    UpstreamProtocol, UpstreamTls, parse_member,
};
pub use quic::{
    Congestion, MAX_STREAMS_BIDI, QuicConfig, RetryPolicy, parse_idle_timeout, parse_retry,
};
pub use redis_routes::RedisRoutesConfig;
pub use torrent::{MAX_PIECE_LENGTH, MIN_PIECE_LENGTH, TorrentConfig, default_state_dir};
pub use validate::{DEFAULT_LISTEN, MAX_SESSION_CACHE, MAX_WORKERS};

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a configuration could not be used. Always the operator's to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    msg: String,
}

impl ConfError {
    pub fn new(msg: impl Into<String>) -> Self {
        ConfError { msg: msg.into() }
    }
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for ConfError {}

/// Canonicalise a directory that must exist. `key` names the config key for the error message.
pub fn canonical_dir(dir: &Path, key: Option<&str>) -> Result<PathBuf, ConfError> {
    let what = key.map(|k| format!("{k}: ")).unwrap_or_default();
    let root = dir
        .canonicalize()
        .map_err(|e| ConfError::new(format!("{what}{}: {e}", dir.display())))?;
    if !root.is_dir() {
        return Err(ConfError::new(format!(
            "{what}{} is not a directory",
            dir.display()
        )));
    }
    Ok(root)
}

/// A validated configuration and the files it was read from, in the order they were applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    /// The main file first, then the `conf.d/` files in name order.
    pub files: Vec<PathBuf>,
}

/// Read `path` and the `conf.d/*.toml` files beside it, merge them and validate the result.
pub fn load(path: &Path) -> Result<Config, ConfError> {
    load_with_files(path).map(|loaded| loaded.config)
}

/// Like [`load`], also telling which files were read (for logs and `check`).
pub fn load_with_files(path: &Path) -> Result<Loaded, ConfError> {
    let sources = source::read_all(path)?;
    let config = validate::validate(&sources, &base_dir(path)?)?;
    Ok(Loaded {
        config,
        files: sources.into_iter().map(|s| s.path).collect(),
    })
}

/// Validate `text` as if it were the file at `path`, without reading `conf.d/`.
///
/// Relative paths resolve against `path`'s directory; errors name `path`. For tests and for
/// configurations that do not live on disk.
pub fn load_str(path: &Path, text: &str) -> Result<Config, ConfError> {
    let source = source::Source::parse(path.to_owned(), text.to_owned())?;
    validate::validate(std::slice::from_ref(&source), &base_dir(path)?)
}

/// The logic of `switchyard check -c FILE`: load and validate, then summarise in one line,
/// e.g. `ok: 2 files, 1 listener, 2 vhosts, 3 locations, 2 workers`.
pub fn check(path: &Path) -> Result<String, ConfError> {
    let Loaded { config, files } = load_with_files(path)?;
    let locations: usize = config.vhosts.iter().map(|v| v.locations.len()).sum();
    let mut summary = format!(
        "ok: {}, {}, {}, {}, {}",
        counted(files.len(), "file"),
        counted(config.listeners.len(), "listener"),
        counted(config.vhosts.len(), "vhost"),
        counted(locations, "location"),
        counted(config.workers, "worker"),
    );
    if !config.upstreams.is_empty() {
        summary.push_str(&format!(
            ", {}",
            counted(config.upstreams.len(), "upstream")
        ));
    }
    Ok(summary)
}

fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The absolute directory of the main file, against which relative paths resolve.
fn base_dir(path: &Path) -> Result<PathBuf, ConfError> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::path::absolute(parent).map_err(|e| ConfError::new(format!("{}: {e}", path.display())))
}
