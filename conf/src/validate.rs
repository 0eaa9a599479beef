//! From parsed files to a [`Config`]: merge, apply defaults, check meaning, once.
//!
//! Merging follows the file order of `crate::source::read_all`: for a scalar key, or a key of
//! `[limits]`, `[timeouts]` or `[log]`, the last file that sets it wins; `[[listen]]` and
//! `[[vhost]]` entries append. Entries are indexed in the merged list (`vhost[2]` may come from a
//! `conf.d/` file) while errors point at the file, line and column the value was written at.
//!
//! Relative paths (`root`, `log.access`) are resolved against the main file's directory, for
//! every file, so a `conf.d/` snippet means the same wherever it is included from.

use crate::raw::{
    RawFile, RawHttp2, RawLimits, RawLocation, RawSize, RawSniCert, RawTimeouts, RawVhost,
};
use crate::source::Source;
use crate::units::parse_duration;
use crate::{
    AccessFormat, AccessLog, CertFile, CertPair, ConfError, Config, DotfilePolicy, FilesConfig,
    Handler, Http2Config, Limits, Listener, Location, LogConfig, LogTarget, SniCert, SymlinkPolicy,
    Timeouts, TlsConfig, VirtualHost, canonical_dir, default_workers,
};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// Where no `[[listen]]` is configured at all.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// More worker threads than this is a typo, not a machine.
pub const MAX_WORKERS: usize = 1024;

/// Most TLS sessions the server-side cache may hold (its memory is reserved up front).
pub const MAX_SESSION_CACHE: usize = 1 << 20;

/// The largest flow-control window HTTP/2 allows (RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// A value together with the file it was written in, for error messages.
pub(crate) struct At<'a, T> {
    pub source: &'a Source,
    pub item: &'a Spanned<T>,
}

impl<T> At<'_, T> {
    pub fn value(&self) -> &T {
        self.item.get_ref()
    }

    pub fn error(&self, key: &str, message: impl std::fmt::Display) -> ConfError {
        self.source.error(self.item.span(), key, message)
    }
}

/// The value of the last file that sets the key `get` picks out.
pub(crate) fn last<'a, T>(
    sources: &'a [Source],
    get: impl Fn(&'a RawFile) -> Option<&'a Spanned<T>>,
) -> Option<At<'a, T>> {
    sources
        .iter()
        .rev()
        .find_map(|source| get(&source.raw).map(|item| At { source, item }))
}

/// Merge and validate `sources` (main file first). `base` is the absolute directory relative
/// paths are resolved against.
pub(crate) fn validate(sources: &[Source], base: &Path) -> Result<Config, ConfError> {
    let workers = match last(sources, |f| f.workers.as_ref()) {
        None => default_workers(),
        Some(at) => match usize::try_from(*at.value()) {
            Ok(0) | Err(_) => return Err(at.error("workers", "must be at least 1")),
            Ok(n) if n > MAX_WORKERS => {
                return Err(at.error("workers", format_args!("must be at most {MAX_WORKERS}")));
            }
            Ok(n) => n,
        },
    };
    let upstreams = crate::proxy::upstreams(sources, base)?;
    Ok(Config {
        workers,
        listeners: listeners(sources)?,
        limits: limits(sources)?,
        timeouts: timeouts(sources)?,
        log: log(sources, base)?,
        tls: tls(sources, base)?,
        cache: crate::cache::cache(sources, base)?,
        redis_routes: crate::redis_routes::redis_routes(sources)?,
        http2: http2(sources)?,
        quic: crate::quic::validate(sources, base)?,
        vhosts: vhosts(sources, base, &upstreams)?,
        torrent: crate::torrent::torrent(sources, base)?,
        upstreams,
    })
}

fn listeners(sources: &[Source]) -> Result<Vec<Listener>, ConfError> {
    let mut listeners: Vec<Listener> = Vec::new();
    let entries = sources.iter().flat_map(|source| {
        source
            .raw
            .listen
            .iter()
            .flatten()
            .map(move |item| At { source, item })
    });
    for (i, listen) in entries.enumerate() {
        let key = format!("listen[{i}].address");
        let Some(item) = &listen.value().address else {
            return Err(listen.error(&key, "missing (e.g. address = \"127.0.0.1:8080\")"));
        };
        let address = At {
            source: listen.source,
            item,
        };
        let addr: SocketAddr = address.value().parse().map_err(|_| {
            address.error(
                &key,
                format_args!("invalid socket address {:?}", address.value()),
            )
        })?;
        // Port 0 asks the kernel for a free port each time, so it never collides.
        if let Some(j) = listeners
            .iter()
            .position(|l| l.addr == addr && addr.port() != 0)
        {
            return Err(address.error(&key, format_args!("{addr} is already listen[{j}]")));
        }
        listeners.push(Listener { addr });
    }
    if listeners.is_empty() {
        listeners.push(Listener {
            addr: DEFAULT_LISTEN,
        });
    }
    Ok(listeners)
}

fn limits(sources: &[Source]) -> Result<Limits, ConfError> {
    let d = Limits::default();
    Ok(Limits {
        max_request_line: size_usize(
            sources,
            "max_request_line",
            |l| l.max_request_line.as_ref(),
            d.max_request_line,
        )?,
        max_header_bytes: size_usize(
            sources,
            "max_header_bytes",
            |l| l.max_header_bytes.as_ref(),
            d.max_header_bytes,
        )?,
        max_headers: count(
            sources,
            "max_headers",
            |l| l.max_headers.as_ref(),
            d.max_headers,
        )?,
        max_body: size(sources, "max_body", |l| l.max_body.as_ref(), d.max_body)?,
        max_connections: count(
            sources,
            "max_connections",
            |l| l.max_connections.as_ref(),
            d.max_connections,
        )?,
        service_queue: count(
            sources,
            "service_queue",
            |l| l.service_queue.as_ref(),
            d.service_queue,
        )?,
        max_ranges: count(
            sources,
            "max_ranges",
            |l| l.max_ranges.as_ref(),
            d.max_ranges,
        )?,
        small_file_max: size(
            sources,
            "small_file_max",
            |l| l.small_file_max.as_ref(),
            d.small_file_max,
        )?,
        file_cache_bytes: size(
            sources,
            "file_cache_bytes",
            |l| l.file_cache_bytes.as_ref(),
            d.file_cache_bytes,
        )?,
    })
}

/// A `[limits]` size in bytes, greater than 0.
fn size<'a>(
    sources: &'a [Source],
    name: &str,
    get: impl Fn(&'a RawLimits) -> Option<&'a Spanned<RawSize>>,
    default: u64,
) -> Result<u64, ConfError> {
    let Some(at) = last(sources, |f| f.limits.as_ref().and_then(&get)) else {
        return Ok(default);
    };
    let key = format!("limits.{name}");
    let bytes = at.value().bytes().map_err(|e| at.error(&key, e))?;
    if bytes == 0 {
        return Err(at.error(&key, "must be greater than 0"));
    }
    Ok(bytes)
}

/// A `[limits]` size that must also fit in memory addressing (`usize`).
fn size_usize<'a>(
    sources: &'a [Source],
    name: &str,
    get: impl Fn(&'a RawLimits) -> Option<&'a Spanned<RawSize>>,
    default: usize,
) -> Result<usize, ConfError> {
    let bytes = size(sources, name, get, default as u64)?;
    // Only reachable where usize is 32 bits.
    usize::try_from(bytes).map_err(|_| {
        ConfError::new(format!(
            "limits.{name}: {bytes} is too large for this machine"
        ))
    })
}

/// A `[limits]` count, greater than 0.
fn count<'a>(
    sources: &'a [Source],
    name: &str,
    get: impl Fn(&'a RawLimits) -> Option<&'a Spanned<i64>>,
    default: usize,
) -> Result<usize, ConfError> {
    let Some(at) = last(sources, |f| f.limits.as_ref().and_then(&get)) else {
        return Ok(default);
    };
    match usize::try_from(*at.value()) {
        Ok(0) | Err(_) => Err(at.error(&format!("limits.{name}"), "must be greater than 0")),
        Ok(n) => Ok(n),
    }
}

fn timeouts(sources: &[Source]) -> Result<Timeouts, ConfError> {
    let d = Timeouts::default();
    Ok(Timeouts {
        sniff: duration(sources, "sniff", |t| t.sniff.as_ref(), d.sniff, false)?,
        header: duration(sources, "header", |t| t.header.as_ref(), d.header, false)?,
        keepalive: duration(
            sources,
            "keepalive",
            |t| t.keepalive.as_ref(),
            d.keepalive,
            false,
        )?,
        body: duration(sources, "body", |t| t.body.as_ref(), d.body, false)?,
        send: duration(sources, "send", |t| t.send.as_ref(), d.send, false)?,
        // Zero is meaningful here: exit at once without draining.
        shutdown: duration(
            sources,
            "shutdown",
            |t| t.shutdown.as_ref(),
            d.shutdown,
            true,
        )?,
        tls_handshake: duration(
            sources,
            "tls_handshake",
            |t| t.tls_handshake.as_ref(),
            d.tls_handshake,
            false,
        )?,
        // Zero is meaningful here too: check the file on every request.
        file_revalidate: duration(
            sources,
            "file_revalidate",
            |t| t.file_revalidate.as_ref(),
            d.file_revalidate,
            true,
        )?,
    })
}

/// A `[timeouts]` duration; zero only where `zero_ok`.
fn duration<'a>(
    sources: &'a [Source],
    name: &str,
    get: impl Fn(&'a RawTimeouts) -> Option<&'a Spanned<String>>,
    default: Duration,
    zero_ok: bool,
) -> Result<Duration, ConfError> {
    let Some(at) = last(sources, |f| f.timeouts.as_ref().and_then(&get)) else {
        return Ok(default);
    };
    let key = format!("timeouts.{name}");
    let value = parse_duration(at.value()).map_err(|e| at.error(&key, e))?;
    if value.is_zero() && !zero_ok {
        return Err(at.error(&key, "must be greater than 0"));
    }
    Ok(value)
}

fn log(sources: &[Source], base: &Path) -> Result<LogConfig, ConfError> {
    let format = match last(sources, |f| f.log.as_ref()?.access_format.as_ref()) {
        None => AccessFormat::default(),
        Some(at) => match at.value().as_str() {
            "combined" => AccessFormat::Combined,
            "json" => AccessFormat::Json,
            other => {
                return Err(at.error(
                    "log.access_format",
                    format_args!("unknown format {other:?}, expected \"combined\" or \"json\""),
                ));
            }
        },
    };
    let Some(at) = last(sources, |f| f.log.as_ref()?.access.as_ref()) else {
        return Ok(LogConfig { access: None });
    };
    let target = match at.value().as_str() {
        "" => return Err(at.error("log.access", "must not be empty")),
        "stderr" => LogTarget::Stderr,
        "stdout" => LogTarget::Stdout,
        path => {
            let path = base.join(path);
            let dir = path.parent().unwrap_or(base);
            if !dir.is_dir() {
                return Err(at.error(
                    "log.access",
                    format_args!("directory {} does not exist", dir.display()),
                ));
            }
            LogTarget::File(path)
        }
    };
    Ok(LogConfig {
        access: Some(AccessLog { target, format }),
    })
}

fn tls(sources: &[Source], base: &Path) -> Result<TlsConfig, ConfError> {
    let d = TlsConfig::default();
    let cert = last(sources, |f| f.tls.as_ref()?.cert.as_ref());
    let key = last(sources, |f| f.tls.as_ref()?.key.as_ref());
    let default_cert = match (cert, key) {
        (None, None) => None,
        (Some(cert), None) => {
            return Err(cert.error(
                "tls.key",
                "missing: tls.cert needs its private key (e.g. key = \"certs/default.key\")",
            ));
        }
        (None, Some(key)) => {
            return Err(key.error(
                "tls.cert",
                "missing: tls.key needs its certificate chain (e.g. cert = \"certs/default.pem\")",
            ));
        }
        (Some(cert), Some(key)) => Some(cert_pair("tls", &cert, &key, base)?),
    };
    let session_cache = match last(sources, |f| f.tls.as_ref()?.session_cache.as_ref()) {
        None => d.session_cache,
        Some(at) => match usize::try_from(*at.value()) {
            Err(_) => {
                return Err(at.error(
                    "tls.session_cache",
                    "must be 0 (no server-side cache) or more",
                ));
            }
            Ok(n) if n > MAX_SESSION_CACHE => {
                return Err(at.error(
                    "tls.session_cache",
                    format_args!("must be at most {MAX_SESSION_CACHE}"),
                ));
            }
            Ok(n) => n,
        },
    };
    let tickets =
        last(sources, |f| f.tls.as_ref()?.tickets.as_ref()).map_or(d.tickets, |at| *at.value());
    Ok(TlsConfig {
        default_cert,
        certificates: sni_certs(sources, base)?,
        session_cache,
        tickets,
    })
}

/// The `[[tls.certificate]]` entries of all files, in order; a name belongs to one entry.
fn sni_certs(sources: &[Source], base: &Path) -> Result<Vec<SniCert>, ConfError> {
    let entries = sources.iter().flat_map(|source| {
        source
            .raw
            .tls
            .iter()
            .flat_map(|tls| tls.certificate.iter().flatten())
            .map(move |item| At { source, item })
    });
    // Which entry already claimed a name.
    let mut owners: HashMap<String, usize> = HashMap::new();
    let mut certs = Vec::new();
    for (i, entry) in entries.enumerate() {
        certs.push(sni_cert(i, &entry, &mut owners, base)?);
    }
    Ok(certs)
}

fn sni_cert(
    i: usize,
    entry: &At<'_, RawSniCert>,
    owners: &mut HashMap<String, usize>,
    base: &Path,
) -> Result<SniCert, ConfError> {
    let source = entry.source;
    let prefix = format!("tls.certificate[{i}]");
    let raw = entry.value();
    let raw_names = raw.names.as_deref().unwrap_or_default();
    if raw_names.is_empty() {
        return Err(entry.error(
            &format!("{prefix}.names"),
            "at least one server name is required (e.g. names = [\"example.com\"])",
        ));
    }
    let mut names = Vec::new();
    for (n, item) in raw_names.iter().enumerate() {
        let name = At { source, item };
        let key = format!("{prefix}.names[{n}]");
        let value = sni_name(name.value()).map_err(|e| name.error(&key, e))?;
        match owners.get(&value) {
            Some(&owner) if owner != i => {
                return Err(name.error(
                    &key,
                    format_args!("{value:?} is already a name of tls.certificate[{owner}]"),
                ));
            }
            Some(_) => continue, // repeated within this entry: harmless
            None => owners.insert(value.clone(), i),
        };
        names.push(value);
    }
    let Some(cert) = &raw.cert else {
        return Err(entry.error(
            &format!("{prefix}.cert"),
            "missing: the PEM certificate chain for these names",
        ));
    };
    let Some(key) = &raw.key else {
        return Err(entry.error(&format!("{prefix}.key"), "missing: the PEM private key"));
    };
    let pair = cert_pair(
        &prefix,
        &At { source, item: cert },
        &At { source, item: key },
        base,
    )?;
    Ok(SniCert { names, pair })
}

/// One `[[tls.certificate]]` name: a host name or `*.suffix`, lowercased. SNI carries neither
/// IP addresses (RFC 6066 §3) nor "any host": the default certificate answers those.
fn sni_name(raw: &str) -> Result<String, String> {
    if raw == "*" {
        return Err(
            "\"*\" is not a server name: the default certificate (tls.cert) answers every name no entry lists"
                .to_owned(),
        );
    }
    let name = host_name(raw)?;
    if name.starts_with('[') || name.parse::<Ipv4Addr>().is_ok() {
        return Err(format!(
            "{raw:?}: SNI carries no IP addresses (RFC 6066 §3); clients connecting by address get the default certificate"
        ));
    }
    Ok(name)
}

/// Resolve and load a certificate pair; an unreadable or mismatched file is an error at the key
/// (`PREFIX.cert` or `PREFIX.key`) that names it.
fn cert_pair(
    prefix: &str,
    cert: &At<'_, String>,
    key: &At<'_, String>,
    base: &Path,
) -> Result<CertPair, ConfError> {
    let cert_key = format!("{prefix}.cert");
    let key_key = format!("{prefix}.key");
    if cert.value().is_empty() {
        return Err(cert.error(&cert_key, "must not be empty"));
    }
    if key.value().is_empty() {
        return Err(key.error(&key_key, "must not be empty"));
    }
    let pair = CertPair {
        cert: base.join(cert.value()),
        key: base.join(key.value()),
    };
    pair.load().map_err(|e| match e.file() {
        CertFile::Cert => cert.error(&cert_key, e),
        CertFile::Key => key.error(&key_key, e),
    })?;
    Ok(pair)
}

fn http2(sources: &[Source]) -> Result<Http2Config, ConfError> {
    let d = Http2Config::default();
    // RFC 9113 §6.5.2: "Values above the maximum flow-control window size of 2^31-1 MUST be
    // treated as a connection error"; frame sizes lie in 2^14 ..= 2^24-1.
    Ok(Http2Config {
        max_concurrent_streams: h2_count(
            sources,
            "max_concurrent_streams",
            |h| h.max_concurrent_streams.as_ref(),
            d.max_concurrent_streams,
            u32::MAX,
        )?,
        initial_stream_window: h2_size(
            sources,
            "initial_stream_window",
            |h| h.initial_stream_window.as_ref(),
            d.initial_stream_window,
            (1, MAX_WINDOW),
            "RFC 9113 §6.5.2",
        )?,
        // A connection window starts at 65535 and no SETTINGS can lower it (RFC 9113 §6.9.2).
        initial_connection_window: h2_size(
            sources,
            "initial_connection_window",
            |h| h.initial_connection_window.as_ref(),
            d.initial_connection_window,
            (65_535, MAX_WINDOW),
            "RFC 9113 §6.9.2",
        )?,
        max_frame_size: h2_size(
            sources,
            "max_frame_size",
            |h| h.max_frame_size.as_ref(),
            d.max_frame_size,
            (1 << 14, (1 << 24) - 1),
            "RFC 9113 §6.5.2",
        )?,
        max_header_list_size: h2_size(
            sources,
            "max_header_list_size",
            |h| h.max_header_list_size.as_ref(),
            d.max_header_list_size,
            (1, u32::MAX),
            "a 32-bit SETTINGS value, RFC 9113 §6.5.1",
        )?,
        max_pending_resets: h2_count(
            sources,
            "max_pending_resets",
            |h| h.max_pending_resets.as_ref(),
            d.max_pending_resets,
            usize::MAX,
        )?,
        max_error_resets: h2_count(
            sources,
            "max_error_resets",
            |h| h.max_error_resets.as_ref(),
            d.max_error_resets,
            usize::MAX,
        )?,
    })
}

/// An `[http2]` size in bytes within `min ..= max`.
fn h2_size<'a>(
    sources: &'a [Source],
    name: &str,
    get: impl Fn(&'a RawHttp2) -> Option<&'a Spanned<RawSize>>,
    default: u32,
    (min, max): (u32, u32),
    rfc: &str,
) -> Result<u32, ConfError> {
    let Some(at) = last(sources, |f| f.http2.as_ref().and_then(&get)) else {
        return Ok(default);
    };
    let key = format!("http2.{name}");
    let bytes = at.value().bytes().map_err(|e| at.error(&key, e))?;
    match u32::try_from(bytes) {
        Ok(0) if min == 1 => Err(at.error(&key, "must be greater than 0")),
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(at.error(
            &key,
            format_args!("must be between {min} and {max} bytes ({rfc})"),
        )),
    }
}

/// An `[http2]` count, greater than 0 and fitting `T`.
fn h2_count<'a, T: TryFrom<i64> + std::fmt::Display>(
    sources: &'a [Source],
    name: &str,
    get: impl Fn(&'a RawHttp2) -> Option<&'a Spanned<i64>>,
    default: T,
    max: T,
) -> Result<T, ConfError> {
    let Some(at) = last(sources, |f| f.http2.as_ref().and_then(&get)) else {
        return Ok(default);
    };
    let key = format!("http2.{name}");
    let value = *at.value();
    if value <= 0 {
        return Err(at.error(&key, "must be greater than 0"));
    }
    T::try_from(value).map_err(|_| at.error(&key, format_args!("must be at most {max}")))
}

fn vhosts(
    sources: &[Source],
    base: &Path,
    upstreams: &[crate::proxy::Upstream],
) -> Result<Vec<VirtualHost>, ConfError> {
    let entries = sources.iter().flat_map(|source| {
        source
            .raw
            .vhost
            .iter()
            .flatten()
            .map(move |item| At { source, item })
    });
    // Which vhost already claimed a name; "*" stands for "any host".
    let mut owners: HashMap<String, usize> = HashMap::new();
    let mut vhosts = Vec::new();
    for (i, vhost) in entries.enumerate() {
        vhosts.push(virtual_host(i, &vhost, &mut owners, base, upstreams)?);
    }
    if vhosts.is_empty() {
        let main = sources
            .first()
            .map(|s| s.path.display().to_string())
            .unwrap_or_default();
        return Err(ConfError::new(format!(
            "{main}: no [[vhost]]: at least one [[vhost]] with a [[vhost.location]] is required"
        )));
    }
    Ok(vhosts)
}

fn virtual_host(
    i: usize,
    vhost: &At<'_, RawVhost>,
    owners: &mut HashMap<String, usize>,
    base: &Path,
    upstreams: &[crate::proxy::Upstream],
) -> Result<VirtualHost, ConfError> {
    let source = vhost.source;
    let raw_names = vhost.value().names.as_deref().unwrap_or_default();
    let mut names = Vec::new();
    for (n, item) in raw_names.iter().enumerate() {
        let name = At { source, item };
        let key = format!("vhost[{i}].names[{n}]");
        let value = host_name(name.value()).map_err(|e| name.error(&key, e))?;
        match owners.get(&value) {
            Some(&owner) if owner != i => {
                return Err(name.error(&key, already_claimed(&value, owner)));
            }
            Some(_) => continue, // repeated within this vhost: harmless
            None => owners.insert(value.clone(), i),
        };
        if value != "*" {
            names.push(value);
        }
    }
    // No names at all, or "*", answers any host; the model spells that as no names.
    if raw_names.is_empty() {
        if let Some(&owner) = owners.get("*") {
            return Err(vhost.error(&format!("vhost[{i}].names"), already_claimed("*", owner)));
        }
        owners.insert("*".to_owned(), i);
    } else if raw_names.iter().any(|n| n.get_ref() == "*") {
        names.clear();
    }

    let key = format!("vhost[{i}].location");
    let raw_locations = vhost.value().location.as_deref().unwrap_or_default();
    if raw_locations.is_empty() {
        return Err(vhost.error(&key, "at least one [[vhost.location]] is required"));
    }
    let mut locations: Vec<Location> = Vec::new();
    for (j, item) in raw_locations.iter().enumerate() {
        let location = At { source, item };
        let location = files_location(&format!("{key}[{j}]"), &location, base, upstreams)?;
        if let Some(k) = locations.iter().position(|l| l.prefix == location.prefix) {
            let path = item
                .get_ref()
                .path
                .as_ref()
                .map_or(item.span(), |p| p.span());
            return Err(source.error(
                path,
                &format!("{key}[{j}].path"),
                format_args!("duplicate path {:?}, already {key}[{k}]", location.prefix),
            ));
        }
        locations.push(location);
    }
    Ok(VirtualHost { names, locations })
}

fn already_claimed(name: &str, owner: usize) -> String {
    if name == "*" {
        format!("vhost[{owner}] already answers any host")
    } else {
        format!("{name:?} is already a name of vhost[{owner}]")
    }
}

/// Lowercase and check one `names` entry: `example.com`, `*.example.org`, `*`, `[::1]`, `10.0.0.1`.
fn host_name(raw: &str) -> Result<String, String> {
    if raw == "*" {
        return Ok(raw.to_owned());
    }
    if !raw.is_ascii() {
        return Err(format!(
            "{raw:?}: write internationalised names in punycode (xn--...)"
        ));
    }
    let name = raw.to_ascii_lowercase();
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(name),
            Err(_) => Err(format!("{raw:?} is not an IPv6 address")),
        };
    }
    let rest = name.strip_prefix("*.").unwrap_or(&name);
    if rest.contains(':') {
        return Err(format!(
            "{raw:?}: names carry no port (the listener decides the port)"
        ));
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if rest.is_empty() || rest.starts_with('.') || !rest.chars().all(valid) {
        return Err(format!(
            "{raw:?} is not a host name (letters, digits, '-', '.', or a leading \"*.\")"
        ));
    }
    Ok(name)
}

/// The keys of a location that only a files location takes, and whether each is set.
fn files_only_keys(raw: &RawLocation) -> [(&'static str, bool); 8] {
    [
        ("index", raw.index.is_some()),
        ("autoindex", raw.autoindex.is_some()),
        ("symlinks", raw.symlinks.is_some()),
        ("dotfiles", raw.dotfiles.is_some()),
        ("precompressed", raw.precompressed.is_some()),
        ("sendfile", raw.sendfile.is_some()),
        ("seed", raw.seed.is_some()),
        ("piece_length", raw.piece_length.is_some()),
    ]
}

/// The keys of a location that only a proxy location takes, and whether each is set.
fn proxy_only_keys(raw: &RawLocation) -> [(&'static str, bool); 5] {
    [
        ("strip_prefix", raw.strip_prefix.is_some()),
        ("max_body", raw.max_body.is_some()),
        ("forwarded", raw.forwarded.is_some()),
        ("request_headers", raw.request_headers.is_some()),
        ("response_headers", raw.response_headers.is_some()),
    ]
}

/// One `[[vhost.location]]` serving files. `key` is `vhost[i].location[j]`.
fn files_location(
    key: &str,
    location: &At<'_, RawLocation>,
    base: &Path,
    upstreams: &[crate::proxy::Upstream],
) -> Result<Location, ConfError> {
    let source = location.source;
    let raw = location.value();
    let Some(path) = &raw.path else {
        return Err(location.error(&format!("{key}.path"), "missing (e.g. path = \"/\")"));
    };
    if !path.get_ref().starts_with('/') {
        return Err(source.error(path.span(), &format!("{key}.path"), "must start with \"/\""));
    }
    if let Some(metrics) = &raw.metrics
        && *metrics.get_ref()
    {
        let handler_keys = [
            ("root", raw.root.is_some()),
            ("proxy", raw.proxy.is_some()),
            ("cache", raw.cache.is_some()),
        ];
        let keys = handler_keys
            .into_iter()
            .chain(files_only_keys(raw))
            .chain(proxy_only_keys(raw));
        for (name, set) in keys {
            if set {
                return Err(location.error(
                    &format!("{key}.{name}"),
                    "a metrics location serves the counters only",
                ));
            }
        }
        return Ok(Location {
            prefix: path.get_ref().clone(),
            handler: Handler::Metrics,
            cache: false,
        });
    }
    if let Some(proxy) = &raw.proxy {
        if let Some(root) = &raw.root {
            return Err(source.error(
                root.span(),
                &format!("{key}.root"),
                "a location has either root or proxy, not both",
            ));
        }
        for (name, set) in files_only_keys(raw) {
            if set {
                return Err(location.error(
                    &format!("{key}.{name}"),
                    "only applies to locations serving files (root)",
                ));
            }
        }
        let proxy_raw = crate::proxy::RawProxyLocation {
            proxy: Some(proxy),
            strip_prefix: raw.strip_prefix,
            max_body: raw.max_body.as_ref(),
            forwarded: raw.forwarded,
            request_headers: raw.request_headers.as_ref(),
            response_headers: raw.response_headers.as_ref(),
        };
        let handler = crate::proxy::proxy_location(source, &proxy_raw, key, upstreams)?;
        return Ok(Location {
            prefix: path.get_ref().clone(),
            handler: Handler::Proxy(handler),
            cache: crate::cache::location_switch(raw),
        });
    }
    for (name, set) in proxy_only_keys(raw) {
        if set {
            return Err(location.error(&format!("{key}.{name}"), "only applies to proxy locations"));
        }
    }
    let Some(root) = &raw.root else {
        return Err(location.error(&format!("{key}.root"), "missing: the directory to serve"));
    };
    let root_key = format!("{key}.root");
    if root.get_ref().is_empty() {
        return Err(source.error(root.span(), &root_key, "must not be empty"));
    }
    let root_dir = canonical_dir(&base.join(root.get_ref()), None)
        .map_err(|e| source.error(root.span(), &root_key, e))?;

    let mut files = FilesConfig::new(root_dir);
    if let Some(index) = &raw.index {
        files.index = Vec::with_capacity(index.len());
        for (n, name) in index.iter().enumerate() {
            let file = name.get_ref();
            if file.is_empty() || file.contains('/') || file == "." || file == ".." {
                return Err(source.error(
                    name.span(),
                    &format!("{key}.index[{n}]"),
                    format_args!("{file:?} must be a file name, not a path"),
                ));
            }
            files.index.push(file.clone());
        }
    }
    if let Some(autoindex) = raw.autoindex {
        files.autoindex = autoindex;
    }
    if let Some(precompressed) = raw.precompressed {
        files.precompressed = precompressed;
    }
    if let Some(sendfile) = raw.sendfile {
        files.sendfile = sendfile;
    }
    if let Some(seed) = raw.seed {
        files.seed = seed;
    }
    if let Some(item) = &raw.piece_length {
        let key = format!("{key}.piece_length");
        files.piece_length = Some(crate::torrent::piece_length(source, item, &key)?);
    }
    if let Some(symlinks) = &raw.symlinks {
        files.symlinks = match symlinks.get_ref().as_str() {
            "inside_root" => SymlinkPolicy::InsideRoot,
            "follow" => SymlinkPolicy::Follow,
            "refuse" => SymlinkPolicy::Refuse,
            other => {
                return Err(source.error(
                    symlinks.span(),
                    &format!("{key}.symlinks"),
                    format_args!(
                        "unknown policy {other:?}, expected \"inside_root\", \"follow\" or \"refuse\""
                    ),
                ));
            }
        };
    }
    if let Some(dotfiles) = &raw.dotfiles {
        files.dotfiles = match dotfiles.get_ref().as_str() {
            "refuse" => DotfilePolicy::Refuse,
            "allow" => DotfilePolicy::Allow,
            other => {
                return Err(source.error(
                    dotfiles.span(),
                    &format!("{key}.dotfiles"),
                    format_args!("unknown policy {other:?}, expected \"refuse\" or \"allow\""),
                ));
            }
        };
    }
    Ok(Location {
        prefix: path.get_ref().clone(),
        handler: Handler::Files(files),
        cache: crate::cache::location_switch(raw),
    })
}
