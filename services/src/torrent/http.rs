//! The HTTP side of the torrent service: `.torrent` and `.magnet` for served files, and the
//! tracker's `/announce` and `/scrape`.
//!
//! [`intercept`] runs before the files service for a location that seeds. It answers only what
//! is ours: a `.torrent`/`.magnet` name that no real file has, whose base name is a served
//! regular file (under the location's dotfile and symlink policies). Everything else falls
//! through to the files service unchanged.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use switchyard_conf::{DotfilePolicy, FilesConfig};

use super::metainfo::{auto_piece_length, magnet, torrent_file};
use super::store::{FileKey, TorrentStore};
use super::tracker::{
    encode_announce, encode_failure, encode_scrape, parse_announce, parse_scrape,
};
use crate::files::{path, resolve};
use crate::message::{Body, Request, Response};

/// The tracker's paths, at the root of every virtual host.
pub const ANNOUNCE: &str = "/announce";
pub const SCRAPE: &str = "/scrape";

/// Most info-hashes in a scrape without `info_hash` (a "full scrape").
const FULL_SCRAPE_MAX: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Torrent,
    Magnet,
}

/// A cheap test for the request paths [`intercept`] may answer (the hot path skips the rest).
pub fn wants(path: &str) -> bool {
    path == ANNOUNCE || path == SCRAPE || path.ends_with(".torrent") || path.ends_with(".magnet")
}

/// Answer `req` if it is for the tracker or a torrent of a served file; `None` otherwise.
pub async fn intercept(
    store: &Arc<TorrentStore>,
    req: &Request,
    cfg: &FilesConfig,
) -> Option<Response> {
    match req.path.as_str() {
        ANNOUNCE => return Some(announce(store, req)),
        SCRAPE => return Some(scrape(store, req)),
        _ => {}
    }
    if !cfg.seed || !(req.method == Method::GET || req.method == Method::HEAD) {
        return None;
    }
    let (raw_base, kind) = if let Some(base) = req.path.strip_suffix(".torrent") {
        (base, Kind::Torrent)
    } else if let Some(base) = req.path.strip_suffix(".magnet") {
        (base, Kind::Magnet)
    } else {
        return None;
    };
    let decoded = path::decode(&req.path).ok()?;
    if decoded.trailing_slash
        || (cfg.dotfiles == DotfilePolicy::Refuse
            && decoded.segments.iter().any(|s| path::is_dotfile(s)))
    {
        return None;
    }
    // A real file (or directory) with that name wins.
    if resolve::walk(&cfg.root, &decoded.segments, cfg.symlinks).is_ok() {
        return None;
    }
    let base = path::decode(raw_base).ok()?;
    let name = base.segments.last()?.clone();
    let found = resolve::walk(&cfg.root, &base.segments, cfg.symlinks).ok()?;
    if !found.found.meta.is_file() || base.trailing_slash {
        return None;
    }
    let meta = &found.found.meta;
    let piece_length = cfg
        .piece_length
        .or(store.config.piece_length)
        .unwrap_or_else(|| auto_piece_length(meta.len()));
    let key = FileKey::new(&found.found.path, &name, meta, piece_length);
    let seeded = match store.torrent(key).await {
        Ok(seeded) => seeded,
        Err(e) => {
            tracing::warn!(error = %e.0, "cannot hash a file for its torrent");
            return Some(Response::internal_error());
        }
    };
    let origin = origin(store, req);
    let announce = format!("{origin}{ANNOUNCE}");
    let web_seed = format!("{origin}{raw_base}");
    let (content_type, body) = match kind {
        Kind::Torrent => (
            "application/x-bittorrent",
            torrent_file(&seeded.info, &announce, Some(&web_seed)),
        ),
        Kind::Magnet => (
            "text/plain; charset=utf-8",
            format!(
                "{}\n",
                magnet(
                    &seeded.info_hash,
                    &seeded.name,
                    seeded.length,
                    &announce,
                    &web_seed
                )
            )
            .into_bytes(),
        ),
    };
    Some(bencoded(body, content_type))
}

/// `scheme://host[:port]` this server is reached at: the configured public URL, else the
/// request's own scheme and Host.
fn origin(store: &TorrentStore, req: &Request) -> String {
    match &store.config.public_url {
        Some(url) => url.clone(),
        None => format!(
            "{}://{}",
            req.scheme,
            req.host.as_deref().unwrap_or("localhost")
        ),
    }
}

/// Our peer-wire address as the client knows it (same host and port as HTTP), when it is an
/// IP literal or `localhost`.
fn this_server(store: &TorrentStore, req: &Request) -> Option<SocketAddr> {
    let origin = origin(store, req);
    let (scheme, authority) = origin.split_once("://")?;
    let authority = authority.split('/').next()?;
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Some(addr);
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, rest) = bracketed.split_once(']')?;
        match rest.strip_prefix(':') {
            Some(p) => (host, p.parse().ok()?),
            None => (host, default_port),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, default_port),
        }
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().ok()?
    };
    Some(SocketAddr::new(ip, port))
}

fn announce(store: &Arc<TorrentStore>, req: &Request) -> Response {
    let remote = req.peer.ip().to_canonical();
    let query = req.query.as_deref().unwrap_or("");
    let a = match parse_announce(query, remote, store.config.peers_per_answer) {
        Ok(a) => a,
        Err(reason) => return failure(reason),
    };
    if !store.seeds(&a.info_hash) {
        return failure("unknown info_hash: this tracker tracks only this server's files");
    }
    let me = this_server(store, req);
    let mut rng = fastrand::Rng::new();
    let reply = {
        let mut tracker = store.tracker.lock().unwrap_or_else(|p| p.into_inner());
        tracker.announce(&a, me, Instant::now(), &mut rng)
    };
    tracing::debug!(peer = %a.addr, left = a.left, event = ?a.event, peers = reply.peers.len(), "announce");
    bencoded(
        encode_announce(&reply, a.compact, a.no_peer_id),
        "text/plain",
    )
}

fn scrape(store: &Arc<TorrentStore>, req: &Request) -> Response {
    let query = req.query.as_deref().unwrap_or("");
    let mut hashes = match parse_scrape(query) {
        Ok(h) => h,
        Err(reason) => return failure(reason),
    };
    if hashes.is_empty() {
        hashes = store.info_hashes(FULL_SCRAPE_MAX);
    }
    // BEP 48: only info-hashes this tracker knows appear in `files`.
    hashes.retain(|h| store.seeds(h));
    let stats = {
        let mut tracker = store.tracker.lock().unwrap_or_else(|p| p.into_inner());
        tracker.scrape(&hashes, Instant::now())
    };
    bencoded(encode_scrape(&stats), "text/plain")
}

fn failure(reason: &str) -> Response {
    bencoded(encode_failure(reason), "text/plain")
}

fn bencoded(body: Vec<u8>, content_type: &'static str) -> Response {
    let mut headers = http::HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Response {
        status: StatusCode::OK,
        headers,
        shared: None,
        body: Body::Bytes(Bytes::from(body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str, scheme: &'static str) -> Request {
        Request {
            method: Method::GET,
            path: "/announce".into(),
            query: None,
            version: http::Version::HTTP_11,
            host: Some(host.into()),
            headers: http::HeaderMap::new(),
            scheme,
            peer: "127.0.0.1:5000".parse().unwrap(),
            body: Bytes::new(),
            stream: None,
        }
    }

    #[test]
    fn this_server_is_found_from_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let store = TorrentStore::new(switchyard_conf::TorrentConfig {
            state_dir: dir.path().to_path_buf(),
            ..Default::default()
        });
        let cases = [
            ("127.0.0.1:8080", "http", Some("127.0.0.1:8080")),
            ("[::1]:9000", "http", Some("[::1]:9000")),
            ("localhost:81", "http", Some("127.0.0.1:81")),
            ("10.0.0.1", "https", Some("10.0.0.1:443")),
            ("[::1]", "http", Some("[::1]:80")),
            ("example.com:80", "http", None),
        ];
        for (host, scheme, expected) in cases {
            let expected = expected.map(|e| e.parse::<SocketAddr>().unwrap());
            assert_eq!(this_server(&store, &req(host, scheme)), expected, "{host}");
        }
    }

    #[test]
    fn unknown_info_hash_is_a_bencoded_failure() {
        let dir = tempfile::tempdir().unwrap();
        let store = TorrentStore::new(switchyard_conf::TorrentConfig {
            state_dir: dir.path().to_path_buf(),
            ..Default::default()
        });
        let mut r = req("127.0.0.1:1", "http");
        r.query = Some(format!(
            "info_hash={}&peer_id=-XX0001-000000000000&port=1&left=0",
            "%01".repeat(20)
        ));
        let resp = announce(&store, &r);
        let Body::Bytes(body) = resp.body else {
            panic!("bytes body")
        };
        assert!(body.starts_with(b"d14:failure reason"), "{body:?}");
        r.query = Some("info_hash=short".into());
        let Body::Bytes(body) = announce(&store, &r).body else {
            panic!("bytes body")
        };
        assert_eq!(
            &body[..],
            &b"d14:failure reason26:info_hash must be 20 bytese"[..]
        );
    }
}
