//! Process counters, served in the Prometheus text format by a `metrics = true` location.
//!
//! Every thread counts into a shard of its own: a worker bumps its counters with a plain load
//! and store (it is their only writer), so the request path pays no locked instruction and no
//! cache line moves between workers. A scrape sums the shards. Shards outlive their threads,
//! so totals never go back.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};

use crate::actor::SERVICE_RESTARTS;
use crate::cache::policy::Fwd;
use crate::message::{Request, Response};
use crate::proxy::ProxyService;
use crate::workers::WorkerLoads;

/// What an accepted connection turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// HTTP/1.x in clear text.
    Http1,
    /// HTTP/2 with prior knowledge, in clear text.
    H2c,
    /// A TLS handshake (HTTP/1.1 or HTTP/2 inside).
    Tls,
    BitTorrent,
    /// A QUIC connection (HTTP/3 or hq-interop).
    Quic,
    /// Closed or silent before its protocol was recognised.
    Unrecognised,
}

const CONNS: [(Conn, &str); 6] = [
    (Conn::Http1, "http1"),
    (Conn::H2c, "h2c"),
    (Conn::Tls, "tls"),
    (Conn::BitTorrent, "bittorrent"),
    (Conn::Quic, "quic"),
    (Conn::Unrecognised, "unrecognised"),
];

/// The protocol a response was sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
    Http3,
    /// HTTP/0.9 over QUIC (`hq-interop`).
    Hq,
}

const PROTOS: [(Proto, &str); 4] = [
    (Proto::Http1, "http1"),
    (Proto::Http2, "h2"),
    (Proto::Http3, "h3"),
    (Proto::Hq, "hq"),
];

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Why the response cache sent a request upstream, in label order; a result is `hit`, one of
/// these (by its RFC 9211 name, [`Fwd::as_str`]), or `none` (an answer of the cache's own,
/// such as an error).
const FWDS: [Fwd; 6] = [
    Fwd::Bypass,
    Fwd::Method,
    Fwd::UriMiss,
    Fwd::VaryMiss,
    Fwd::Request,
    Fwd::Stale,
];
const CACHE_RESULTS: usize = FWDS.len() + 2;

/// The `result` label of the cache counter at `index`.
fn cache_result(index: usize) -> &'static str {
    match index {
        0 => "hit",
        i => FWDS.get(i - 1).map_or("none", |fwd| fwd.as_str()),
    }
}

/// A counter with one writer, its thread.
#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

#[derive(Debug, Default)]
struct Shard {
    accepted: [Counter; CONNS.len()],
    opened: Counter,
    closed: Counter,
    tls_failures: Counter,
    moved: Counter,
    bodies_handed: Counter,
    responses: [[Counter; CLASSES.len()]; PROTOS.len()],
    body_bytes: [Counter; PROTOS.len()],
    cache: [Counter; CACHE_RESULTS],
    cache_stored: Counter,
    cache_collapsed: Counter,
}

static SHARDS: Mutex<Vec<Arc<Shard>>> = Mutex::new(Vec::new());
/// Configuration reloads (SIGHUP) applied and refused; when the last applied one was (Unix
/// seconds, 0 until then), and whether the last one was applied.
static RELOADS_APPLIED: AtomicU64 = AtomicU64::new(0);
static RELOADS_REFUSED: AtomicU64 = AtomicU64::new(0);
static LAST_APPLIED_AT: AtomicU64 = AtomicU64::new(0);
static LAST_RELOAD_REFUSED: AtomicBool = AtomicBool::new(false);
static STARTED: OnceLock<SystemTime> = OnceLock::new();
static PROXY: OnceLock<Arc<ProxyService>> = OnceLock::new();
static WORKERS: OnceLock<Arc<WorkerLoads>> = OnceLock::new();

thread_local! {
    static SHARD: Arc<Shard> = {
        let shard = Arc::new(Shard::default());
        SHARDS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::clone(&shard));
        shard
    };
}

fn with(f: impl FnOnce(&Shard)) {
    // During thread teardown the shard may be gone already: that count is dropped.
    let _ = SHARD.try_with(|shard| f(shard));
}

fn conn_index(kind: Conn) -> usize {
    CONNS.iter().position(|(k, _)| *k == kind).unwrap_or(0)
}

fn proto_index(proto: Proto) -> usize {
    PROTOS.iter().position(|(p, _)| *p == proto).unwrap_or(0)
}

/// Note the process's start, for `process_start_time_seconds`.
pub fn mark_start() {
    let _ = STARTED.set(SystemTime::now());
}

/// Report the upstream pools of `proxy` (the process's one; a reload changes its pools in
/// place) with the other metrics.
pub fn watch_proxy(proxy: Arc<ProxyService>) {
    let _ = PROXY.set(proxy);
}

/// Report the open connections of each worker of the process.
pub fn watch_workers(loads: Arc<WorkerLoads>) {
    let _ = WORKERS.set(loads);
}

/// A connection was accepted and recognised as `kind`.
pub fn connection(kind: Conn) {
    with(|s| s.accepted[conn_index(kind)].add(1));
}

/// A connection began to be served (`opened`) or ended (`closed`): their difference is the
/// number open.
pub fn opened() {
    with(|s| s.opened.add(1));
}

pub fn closed() {
    with(|s| s.closed.add(1));
}

/// A configuration reload (SIGHUP) was applied (`true`) or refused and the running
/// configuration kept (`false`).
pub fn reloaded(applied: bool) {
    if applied {
        RELOADS_APPLIED.fetch_add(1, Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH);
        LAST_APPLIED_AT.store(now.map_or(0, |d| d.as_secs()), Relaxed);
    } else {
        RELOADS_REFUSED.fetch_add(1, Relaxed);
    }
    LAST_RELOAD_REFUSED.store(!applied, Relaxed);
}

/// A TLS handshake failed or timed out.
pub fn tls_failed() {
    with(|s| s.tls_failures.add(1));
}

/// A connection was handed to another worker, to follow its client's CPU.
pub fn connection_moved() {
    with(|s| s.moved.add(1));
}

/// A large body was handed to another worker to send, off its client's CPU.
pub fn body_handed() {
    with(|s| s.bodies_handed.add(1));
}

/// A response with `status` was sent in `proto`, carrying `body_bytes` of content.
pub fn response(proto: Proto, status: StatusCode, body_bytes: u64) {
    let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
    let p = proto_index(proto);
    with(|s| {
        s.responses[p][class].add(1);
        s.body_bytes[p].add(body_bytes);
    });
}

/// An answer of the response cache: a hit, or why it went upstream (`fwd`); whether the
/// member's answer was stored, and whether the request waited on another one to that URI.
pub fn cache_outcome(hit: bool, fwd: Option<Fwd>, stored: bool, collapsed: bool) {
    let result = match (hit, fwd) {
        (true, _) => 0,
        (false, Some(fwd)) => 1 + FWDS.iter().position(|f| *f == fwd).unwrap_or(FWDS.len()),
        (false, None) => CACHE_RESULTS - 1,
    };
    with(|s| {
        s.cache[result].add(1);
        s.cache_stored.add(u64::from(stored));
        s.cache_collapsed.add(u64::from(collapsed));
    });
}

/// The sums over every shard.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    accepted: [u64; CONNS.len()],
    opened: u64,
    closed: u64,
    tls_failures: u64,
    moved: u64,
    bodies_handed: u64,
    responses: [[u64; CLASSES.len()]; PROTOS.len()],
    body_bytes: [u64; PROTOS.len()],
    cache: [u64; CACHE_RESULTS],
    cache_stored: u64,
    cache_collapsed: u64,
}

fn totals() -> Totals {
    let shards = SHARDS.lock().unwrap_or_else(|p| p.into_inner());
    let mut t = Totals::default();
    for s in shards.iter() {
        for (sum, c) in t.accepted.iter_mut().zip(&s.accepted) {
            *sum += c.get();
        }
        t.opened += s.opened.get();
        t.closed += s.closed.get();
        t.tls_failures += s.tls_failures.get();
        t.moved += s.moved.get();
        t.bodies_handed += s.bodies_handed.get();
        for (sums, row) in t.responses.iter_mut().zip(&s.responses) {
            for (sum, c) in sums.iter_mut().zip(row) {
                *sum += c.get();
            }
        }
        for (sum, c) in t.body_bytes.iter_mut().zip(&s.body_bytes) {
            *sum += c.get();
        }
        for (sum, c) in t.cache.iter_mut().zip(&s.cache) {
            *sum += c.get();
        }
        t.cache_stored += s.cache_stored.get();
        t.cache_collapsed += s.cache_collapsed.get();
    }
    t
}

/// `# HELP` and `# TYPE` of a family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Every metric in the Prometheus text exposition format (version 0.0.4).
pub fn render() -> String {
    let t = totals();
    let mut out = String::with_capacity(4096);
    let name = "switchyard_connections_total";
    family(
        &mut out,
        name,
        "counter",
        "Connections accepted, by the protocol they turned out to speak.",
    );
    for ((_, label), n) in CONNS.iter().zip(t.accepted) {
        let _ = writeln!(out, "{name}{{protocol=\"{label}\"}} {n}");
    }
    for (name, kind, help, value) in [
        (
            "switchyard_connections_open",
            "gauge",
            "Connections being served now (TCP and QUIC).",
            t.opened.saturating_sub(t.closed),
        ),
        (
            "switchyard_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out.",
            t.tls_failures,
        ),
        (
            "switchyard_connections_moved_total",
            "counter",
            "Connections handed to another worker to follow the CPU their requests arrive on.",
            t.moved,
        ),
        (
            "switchyard_bodies_handed_total",
            "counter",
            "Large file bodies sent by another worker than their connection's, off the client's CPU.",
            t.bodies_handed,
        ),
        (
            "switchyard_service_restarts_total",
            "counter",
            "Service actors restarted after a panic.",
            SERVICE_RESTARTS.load(Relaxed),
        ),
    ] {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    if let Some(loads) = WORKERS.get() {
        let name = "switchyard_worker_connections_open";
        family(
            &mut out,
            name,
            "gauge",
            "TCP connections being served now by each worker.",
        );
        for worker in 0..loads.workers() {
            let _ = writeln!(out, "{name}{{worker=\"{worker}\"}} {}", loads.open(worker));
        }
    }
    reload_metrics(&mut out);
    let name = "switchyard_responses_total";
    family(
        &mut out,
        name,
        "counter",
        "Responses sent, by protocol and status class.",
    );
    for ((_, proto), row) in PROTOS.iter().zip(t.responses) {
        for (class, n) in CLASSES.iter().zip(row) {
            let _ = writeln!(out, "{name}{{protocol=\"{proto}\",code=\"{class}\"}} {n}");
        }
    }
    let name = "switchyard_response_body_bytes_total";
    family(
        &mut out,
        name,
        "counter",
        "Content bytes of the responses sent, by protocol.",
    );
    for ((_, proto), n) in PROTOS.iter().zip(t.body_bytes) {
        let _ = writeln!(out, "{name}{{protocol=\"{proto}\"}} {n}");
    }
    let name = "switchyard_cache_responses_total";
    family(
        &mut out,
        name,
        "counter",
        "Answers of the response cache: hits, and why the others went upstream (RFC 9211 fwd).",
    );
    for (index, n) in t.cache.into_iter().enumerate() {
        let _ = writeln!(out, "{name}{{result=\"{}\"}} {n}", cache_result(index));
    }
    for (name, help, value) in [
        (
            "switchyard_cache_stored_total",
            "Upstream answers the cache stored.",
            t.cache_stored,
        ),
        (
            "switchyard_cache_collapsed_total",
            "Requests that waited for another request to the same URI instead of going upstream.",
            t.cache_collapsed,
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    if let Some(proxy) = PROXY.get() {
        upstream_metrics(&mut out, proxy);
    }
    process_metrics(&mut out);
    out
}

/// A label value: backslash, double quote and line feed escaped.
fn escaped(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Per member of every upstream pool: in rotation or not, connections, requests in flight.
fn upstream_metrics(out: &mut String, proxy: &ProxyService) {
    let mut pools = proxy.upstreams();
    if pools.is_empty() {
        return;
    }
    pools.sort_by(|a, b| a.conf.name.cmp(&b.conf.name));
    let members: Vec<_> = pools
        .iter()
        .flat_map(|pool| {
            let name = escaped(&pool.conf.name);
            pool.set
                .load()
                .members
                .iter()
                .map(move |m| (name.clone(), Arc::clone(m)))
                .collect::<Vec<_>>()
        })
        .collect();
    type Read = fn(&crate::proxy::upstream::MemberState) -> u64;
    let families: [(&str, &str, &str, Read); 4] = [
        (
            "switchyard_upstream_member_up",
            "gauge",
            "1 when the member takes requests: its active checks pass and it is not cooling down after passive failures.",
            |m| u64::from(m.up()),
        ),
        (
            "switchyard_upstream_member_connections",
            "gauge",
            "Open connections to the member, busy or idle.",
            |m| m.open.load(Relaxed) as u64,
        ),
        (
            "switchyard_upstream_member_requests_active",
            "gauge",
            "Requests in flight to the member.",
            |m| m.active.load(Relaxed) as u64,
        ),
        (
            "switchyard_upstream_member_connections_opened_total",
            "counter",
            "Connections ever opened to the member (requests over connections opened shows reuse).",
            |m| m.opened_total.load(Relaxed),
        ),
    ];
    for (name, kind, help, read) in families {
        family(out, name, kind, help);
        for (pool, m) in &members {
            let _ = writeln!(
                out,
                "{name}{{upstream=\"{pool}\",member=\"{}\"}} {}",
                m.addr,
                read(m)
            );
        }
    }
    let name = "switchyard_upstream_queued_requests";
    family(
        out,
        name,
        "gauge",
        "Requests waiting for a connection slot of the pool.",
    );
    for pool in &pools {
        let _ = writeln!(
            out,
            "{name}{{upstream=\"{}\"}} {}",
            escaped(&pool.conf.name),
            pool.queued.load(Relaxed)
        );
    }
}

/// Configuration reloads, named as Prometheus names its own: what an alert on a refused
/// reload (an operator's SIGHUP that changed nothing) watches.
fn reload_metrics(out: &mut String) {
    let name = "switchyard_config_reloads_total";
    family(
        out,
        name,
        "counter",
        "Configuration reloads (SIGHUP), applied or refused (the running configuration kept).",
    );
    for (result, n) in [("applied", &RELOADS_APPLIED), ("refused", &RELOADS_REFUSED)] {
        let _ = writeln!(out, "{name}{{result=\"{result}\"}} {}", n.load(Relaxed));
    }
    let name = "switchyard_config_last_reload_successful";
    family(
        out,
        name,
        "gauge",
        "1 unless the last configuration reload was refused.",
    );
    let _ = writeln!(
        out,
        "{name} {}",
        u8::from(!LAST_RELOAD_REFUSED.load(Relaxed))
    );
    // Until a reload is applied, the configuration running is the one read at start.
    let applied_at = match LAST_APPLIED_AT.load(Relaxed) {
        0 => STARTED
            .get()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs()),
        at => at,
    };
    let name = "switchyard_config_last_reload_success_timestamp_seconds";
    family(
        out,
        name,
        "gauge",
        "When the running configuration was read (start, or the last applied reload), Unix seconds.",
    );
    let _ = writeln!(out, "{name} {applied_at}");
}

/// The standard `process_*` metrics that Linux makes cheap to read.
fn process_metrics(out: &mut String) {
    if let Some(started) = STARTED.get()
        && let Ok(since) = started.duration_since(UNIX_EPOCH)
    {
        let name = "process_start_time_seconds";
        family(
            out,
            name,
            "gauge",
            "Start time of the process since the Unix epoch.",
        );
        let _ = writeln!(out, "{name} {}", since.as_secs());
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kib) = status.lines().find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<u64>()
                .ok()
        })
    {
        let name = "process_resident_memory_bytes";
        family(out, name, "gauge", "Resident memory size in bytes.");
        let _ = writeln!(out, "{name} {}", kib * 1024);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let name = "process_open_fds";
        family(out, name, "gauge", "Open file descriptors.");
        let _ = writeln!(out, "{name} {}", fds.count());
    }
}

/// The answer of a `metrics = true` location: GET and HEAD only.
pub fn answer(req: &Request) -> Response {
    if req.method != Method::GET && req.method != Method::HEAD {
        let mut r = Response::text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
        r.headers
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut r = Response::text(StatusCode::OK, "");
    r.body = crate::message::Body::Bytes(Bytes::from(render()));
    r.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r.headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn counts_from_every_thread_are_summed_and_rendered() {
        let before = render();
        let http1_2xx = "switchyard_responses_total{protocol=\"http1\",code=\"2xx\"}";
        let h3_5xx = "switchyard_responses_total{protocol=\"h3\",code=\"5xx\"}";
        let quic = "switchyard_connections_total{protocol=\"quic\"}";
        let bytes = "switchyard_response_body_bytes_total{protocol=\"http1\"}";
        let workers: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..10 {
                        response(Proto::Http1, StatusCode::OK, 100);
                    }
                    response(Proto::Http3, StatusCode::BAD_GATEWAY, 0);
                    connection(Conn::Quic);
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker thread");
        }
        let after = render();
        // Other tests may count meanwhile: at least what these threads added is there.
        assert!(value(&after, http1_2xx) >= value(&before, http1_2xx) + 30);
        assert!(value(&after, h3_5xx) >= value(&before, h3_5xx) + 3);
        assert!(value(&after, quic) >= value(&before, quic) + 3);
        assert!(value(&after, bytes) >= value(&before, bytes) + 3000);
        // Every family is declared once, before its samples.
        for family in [
            "switchyard_connections_total",
            "switchyard_connections_open",
            "switchyard_responses_total",
            "switchyard_response_body_bytes_total",
            "process_resident_memory_bytes",
        ] {
            assert_eq!(
                after.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escaped("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escaped("plain-name_1"), "plain-name_1");
    }

    #[test]
    fn odd_status_codes_fall_in_the_nearest_class() {
        // 1xx..5xx only; http::StatusCode allows up to 999.
        let before = totals().responses[proto_index(Proto::Hq)];
        response(Proto::Hq, StatusCode::from_u16(599).expect("valid"), 0);
        response(Proto::Hq, StatusCode::from_u16(999).expect("valid"), 0);
        let after = totals().responses[proto_index(Proto::Hq)];
        assert!(after[4] >= before[4] + 2);
    }
}
