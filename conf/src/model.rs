//! The validated configuration: what the rest of Switchyard reads.
//!
//! Every type here is already checked: addresses parsed, roots canonicalised, limits non-zero.
//! Nothing downstream re-validates or handles a "missing" value; defaults were applied by the
//! loader (`crate::load`) or by [`Config::serve_dir`] for zero-config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration of one running server.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Worker arbiters (threads); each owns an acceptor per listener and its sessions.
    pub workers: usize,
    /// Addresses to accept connections on (TCP now; UDP/QUIC on the same port later).
    pub listeners: Vec<Listener>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub log: LogConfig,
    /// Certificates for TLS connections (sniffed on every listener).
    pub tls: TlsConfig,
    /// HTTP/2 protocol limits (over TLS, prior knowledge and `Upgrade: h2c`).
    pub http2: Http2Config,
    /// The QUIC endpoint (HTTP/3) on every listener's port, over UDP.
    pub quic: crate::QuicConfig,
    /// The HTTP cache for locations with `cache = true`, and the Redis route table (Hipache).
    pub cache: crate::CacheConfig,
    pub redis_routes: Option<crate::RedisRoutesConfig>,
    /// Virtual hosts in configuration order. The first one whose `names` match the request's
    /// host wins; a vhost with no names (or `"*"`) matches any host. If none matches, the first
    /// vhost answers (nginx's default server behaviour).
    pub vhosts: Vec<VirtualHost>,
    /// BitTorrent seeding of served files and the built-in tracker.
    pub torrent: crate::TorrentConfig,
    /// Named pools of members that `proxy` locations forward to.
    pub upstreams: Vec<crate::proxy::Upstream>,
}

/// One listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
}

/// Bounds on what a client may send and on what we hold. Each maps to a specific status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method SP target SP version) in bytes; longer → 414.
    pub max_request_line: usize,
    /// Largest header section (all field lines) in bytes; larger → 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more → 431.
    pub max_headers: usize,
    /// Largest request body in bytes; larger → 413.
    pub max_body: u64,
    /// Open client connections per worker; past this new connections are closed at once.
    pub max_connections: usize,
    /// Capacity of each service actor's mailbox; when full the request is answered 503.
    pub service_queue: usize,
    /// Most ranges honoured in one Range header; more (after coalescing) → the whole file (200).
    pub max_ranges: usize,
    /// Files up to this size are kept in the in-memory small-file cache.
    pub small_file_max: u64,
    /// Total bytes the small-file cache may hold (shared by all workers).
    pub file_cache_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_body: 1024 * 1024,
            max_connections: 10_000,
            service_queue: 1024,
            max_ranges: 16,
            small_file_max: 64 * 1024,
            file_cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Every wait on a peer is bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Wait for the first bytes of a new connection (protocol sniffing).
    pub sniff: Duration,
    /// Wait for a complete request head once its first byte arrived (slowloris).
    pub header: Duration,
    /// Idle keep-alive: wait for the first byte of the next request.
    pub keepalive: Duration,
    /// Longest pause while reading a request body.
    pub body: Duration,
    /// Longest pause while the client is not accepting response bytes.
    pub send: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take before the process exits anyway.
    pub shutdown: Duration,
    /// A TLS handshake must complete within this (after the ClientHello was sniffed).
    pub tls_handshake: Duration,
    /// How long the files service trusts what it knows about a file before `stat`ing it again
    /// (nginx's `open_file_cache_valid`). Edits show within this time; zero checks every request.
    pub file_revalidate: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            sniff: Duration::from_secs(10),
            header: Duration::from_secs(10),
            keepalive: Duration::from_secs(75),
            body: Duration::from_secs(30),
            send: Duration::from_secs(60),
            shutdown: Duration::from_secs(30),
            tls_handshake: Duration::from_secs(10),
            file_revalidate: Duration::from_secs(1),
        }
    }
}

/// TLS: which certificate answers which server name, and session resumption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate for clients that send no SNI or an unknown name. `None`: a self-signed
    /// certificate for localhost, 127.0.0.1 and ::1 is generated at start.
    pub default_cert: Option<CertPair>,
    /// Certificates chosen by SNI, in configuration order.
    pub certificates: Vec<SniCert>,
    /// Server-side session cache entries (TLS 1.2 session IDs and TLS 1.3 stateful resumption).
    pub session_cache: usize,
    /// Issue session tickets (stateless resumption, rotated keys).
    pub tickets: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            default_cert: None,
            certificates: Vec::new(),
            session_cache: 4096,
            tickets: true,
        }
    }
}

/// A PEM certificate chain and its private key, both files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate and the server names (SNI) it answers; `*.example.com` matches one label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCert {
    pub names: Vec<String>,
    pub pair: CertPair,
}

/// HTTP/2 settings we announce and the protections we apply (RFC 9113 §6.5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Config {
    /// SETTINGS_MAX_CONCURRENT_STREAMS; streams past it are refused (REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE: how much a client may send on one stream unacknowledged.
    pub initial_stream_window: u32,
    /// Connection-level receive window.
    pub initial_connection_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE we accept (16 KiB ..= 16 MiB - 1).
    pub max_frame_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: decoded header bytes per request (CONTINUATION floods end here).
    pub max_header_list_size: u32,
    /// Streams a client may reset before we answer them, per second, beyond
    /// `max_concurrent_streams`; past this the connection gets GOAWAY ENHANCE_YOUR_CALM
    /// (rapid-reset protection).
    pub max_pending_resets: usize,
    /// Streams we may reset because of client errors before we GOAWAY the connection.
    pub max_error_resets: usize,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            max_concurrent_streams: 128,
            initial_stream_window: 1024 * 1024,
            initial_connection_window: 16 * 1024 * 1024,
            max_frame_size: 16 * 1024,
            max_header_list_size: 64 * 1024,
            max_pending_resets: 20,
            max_error_resets: 1024,
        }
    }
}

/// Logging beyond the `RUST_LOG`-filtered diagnostics on stderr.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogConfig {
    /// One line per answered request, when set.
    pub access: Option<AccessLog>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    pub target: LogTarget,
    pub format: AccessFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessFormat {
    /// The NCSA combined format nginx and Apache write by default.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// A virtual host: a set of names and the locations served under them.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualHost {
    /// Lowercased host names without port. `*.example.com` matches any subdomain. Empty = any.
    pub names: Vec<String>,
    /// Locations, matched by longest path prefix.
    pub locations: Vec<Location>,
}

/// A path prefix and what answers under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// Path prefix, always starting with `/`. `/` matches everything.
    pub prefix: String,
    pub handler: Handler,
    /// Responses under this location go through the cache (`[cache]` must be enabled).
    pub cache: bool,
}

/// What answers requests routed to a location.
#[derive(Debug, Clone, PartialEq)]
pub enum Handler {
    Files(FilesConfig),
    /// Forward to an `[[upstream]]` pool.
    Proxy(crate::proxy::ProxyLocation),
    /// The process's counters in the Prometheus text format (`metrics = true`).
    Metrics,
}

/// Static files from a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    /// Canonical (absolute, symlink-free) path of the directory served.
    pub root: PathBuf,
    /// File names tried, in order, when a directory is requested.
    pub index: Vec<String>,
    /// Generate an HTML listing for directories without an index file.
    pub autoindex: bool,
    pub symlinks: SymlinkPolicy,
    pub dotfiles: DotfilePolicy,
    /// Serve `x.br`, `x.zst`, `x.gz` for `x` when the client accepts that encoding.
    pub precompressed: bool,
    /// Send large files on plain HTTP/1.1 connections by `sendfile(2)`; off: read and write them
    /// in bounded chunks (for file systems whose `sendfile` is broken or slow, as nginx's
    /// `sendfile off`).
    pub sendfile: bool,
    /// Seed this location's files over BitTorrent (when `[torrent]` is enabled).
    pub seed: bool,
    /// Piece length for this location's torrents; `None`: `[torrent]`'s or the size heuristic.
    pub piece_length: Option<u32>,
}

impl FilesConfig {
    /// The defaults for a `[[vhost.location]]` with only a root: no listing, no escaping symlinks.
    pub fn new(root: PathBuf) -> Self {
        FilesConfig {
            root,
            index: vec!["index.html".to_owned()],
            autoindex: false,
            symlinks: SymlinkPolicy::default(),
            dotfiles: DotfilePolicy::default(),
            precompressed: true,
            sendfile: true,
            seed: true,
            piece_length: None,
        }
    }
}

/// What to do with symbolic links met while resolving a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SymlinkPolicy {
    /// Follow a link only if its target is still inside the root.
    #[default]
    InsideRoot,
    /// Follow links wherever they lead (the operator vouches for them).
    Follow,
    /// Never follow a link.
    Refuse,
}

/// What to do with path segments that start with a dot (`.git`, `.env`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DotfilePolicy {
    /// Answer 404 as if they did not exist.
    #[default]
    Refuse,
    Allow,
}

impl Config {
    /// Zero-config: serve `dir` on `listen` with directory listings on (the `serve` command).
    ///
    /// Fails when `dir` does not exist or is not a directory.
    pub fn serve_dir(
        dir: &std::path::Path,
        listen: SocketAddr,
    ) -> Result<Config, crate::ConfError> {
        let root = crate::canonical_dir(dir, None)?;
        let mut files = FilesConfig::new(root);
        files.autoindex = true;
        Ok(Config {
            workers: default_workers(),
            listeners: vec![Listener { addr: listen }],
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            http2: Http2Config::default(),
            torrent: crate::TorrentConfig::default(),
            quic: crate::QuicConfig::default(),
            cache: crate::CacheConfig::default(),
            redis_routes: None,
            vhosts: vec![VirtualHost {
                names: Vec::new(),
                locations: vec![Location {
                    prefix: "/".to_owned(),
                    handler: Handler::Files(files),
                    cache: false,
                }],
            }],
            upstreams: Vec::new(),
        })
    }
}

/// One worker per available core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
