//! One upstream pool at run time: its members (one per resolved address), their live counters
//! and health, and their keep-alive connections.
//!
//! Everything here is shared by all workers (`Arc`, atomics, short mutexes). The health actor
//! writes member health; the proxy path reads it with plain loads, never through a mailbox.
//! Connections are bounded per member by `max_conns` across the whole process: a slot is taken
//! before connecting and given back when the connection's task ends. Idle connections are kept
//! (most recent first, preferring the worker that drives them) up to `max_idle`, checked before
//! reuse, and closed after `idle_timeout`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchyard_conf::{Upstream, UpstreamProtocol};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::balance::{Balancer, Candidate};
use super::body::UpBody;
use super::client::MemberConn;

/// Milliseconds since the process started: a clock atomics can hold.
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// A member address with its counters and pool.
#[derive(Debug)]
pub struct MemberState {
    pub addr: SocketAddr,
    /// The configured host (for SNI and `Host` when the client sent none).
    pub host: String,
    /// `host:port` as configured.
    pub authority: String,
    pub tls: bool,
    pub weight: u32,
    pub max_conns: usize,
    pub backup: bool,
    /// Open connections (busy or idle), bounded by `max_conns`.
    pub open: AtomicUsize,
    /// Requests in flight.
    pub active: AtomicUsize,
    /// Connections ever opened (tests and the benchmark measure reuse with it).
    pub opened_total: AtomicU64,
    /// Result of the active checks (true when none are configured).
    pub healthy: AtomicBool,
    /// Passive marking: out of rotation until this time (`now_ms`), 0 = not marked.
    pub down_until: AtomicU64,
    failures: AtomicU32,
    window_start: AtomicU64,
    /// Consecutive passed and failed active checks.
    pub check_ok: AtomicU32,
    pub check_fail: AtomicU32,
    idle: Mutex<Vec<Idle>>,
    idle_count: AtomicUsize,
    /// The shared HTTP/2 connection, when the pool speaks HTTP/2.
    h2: Mutex<Option<http2::SendRequest<UpBody>>>,
    /// Whether `h2` was ever set (spares the lock for HTTP/1.1 pools).
    h2_live: AtomicBool,
}

#[derive(Debug)]
struct Idle {
    conn: MemberConn,
    since: Instant,
    worker: std::thread::ThreadId,
}

impl MemberState {
    fn new(addr: SocketAddr, m: &switchyard_conf::Member) -> MemberState {
        MemberState {
            addr,
            host: m.host.clone(),
            authority: m.authority(),
            tls: m.tls,
            weight: m.weight,
            max_conns: m.max_conns,
            backup: m.backup,
            open: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            opened_total: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            down_until: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            window_start: AtomicU64::new(0),
            check_ok: AtomicU32::new(0),
            check_fail: AtomicU32::new(0),
            idle: Mutex::new(Vec::new()),
            idle_count: AtomicUsize::new(0),
            h2: Mutex::new(None),
            h2_live: AtomicBool::new(false),
        }
    }

    /// Healthy and not cooling down after passive failures.
    pub fn up(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.down_until.load(Ordering::Relaxed) <= now_ms()
    }

    /// Can take a request without waiting for a connection.
    pub fn has_room(&self) -> bool {
        self.idle_count.load(Ordering::Relaxed) > 0
            || self.open.load(Ordering::Relaxed) < self.max_conns
            || (self.h2_live.load(Ordering::Relaxed)
                && self
                    .h2
                    .lock()
                    .map(|h| h.as_ref().is_some_and(|c| !c.is_closed()))
                    .unwrap_or(false))
    }

    /// Passive health: count a failure; `limit` within `window` takes the member out for
    /// `cooldown`. Returns true when this failure took it out.
    pub fn record_failure(&self, limit: u32, window: Duration, cooldown: Duration) -> bool {
        if limit == 0 {
            return false;
        }
        let now = now_ms();
        let start = self.window_start.load(Ordering::Relaxed);
        if now.saturating_sub(start) > window.as_millis() as u64 {
            self.window_start.store(now, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
        }
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= limit && self.down_until.load(Ordering::Relaxed) <= now {
            self.down_until
                .store(now + cooldown.as_millis() as u64, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }

    pub fn record_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Drop idle connections older than `idle_timeout` (they close as they are dropped).
    pub fn sweep_idle(&self, idle_timeout: Duration) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|c| c.since.elapsed() < idle_timeout && c.conn.reusable());
        self.idle_count.store(idle.len(), Ordering::SeqCst);
    }

    /// The most recently used idle connection; with `own_only`, only one this worker drives
    /// (its I/O then completes on this worker's thread, with no cross-thread wake-ups).
    fn take_idle(&self, idle_timeout: Duration, own_only: bool) -> Option<MemberConn> {
        if self.idle_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let me = std::thread::current().id();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let pos = match idle.iter().rposition(|c| c.worker == me) {
            Some(pos) => pos,
            None if own_only => return None,
            None => idle.len().checked_sub(1)?,
        };
        let entry = idle.remove(pos);
        self.idle_count.store(idle.len(), Ordering::SeqCst);
        drop(idle);
        (entry.since.elapsed() < idle_timeout && entry.conn.reusable()).then_some(entry.conn)
    }

    /// Keep a connection whose exchange completed for the next request.
    pub fn put_idle(&self, conn: MemberConn, max_idle: usize) {
        if !conn.reusable() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= max_idle {
            return;
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
            worker: std::thread::current().id(),
        });
        self.idle_count.store(idle.len(), Ordering::SeqCst);
    }
}

/// The current members of a pool and the balancer built for them. Swapped whole when a host
/// name resolves to other addresses.
#[derive(Debug)]
pub struct MemberSet {
    pub members: Vec<Arc<MemberState>>,
    pub balancer: Balancer,
}

impl MemberSet {
    pub fn new(conf: &Upstream, members: Vec<Arc<MemberState>>) -> MemberSet {
        let ids: Vec<String> = members
            .iter()
            .map(|m| format!("{}#{}", m.authority, m.addr))
            .collect();
        let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
        MemberSet {
            balancer: Balancer::new(conf.balance, &ids, &weights),
            members,
        }
    }

    pub fn candidates(&self, tried: &[usize]) -> Vec<Candidate> {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| Candidate {
                weight: m.weight,
                active: m.active.load(Ordering::Relaxed),
                available: m.up() && !tried.contains(&i) && m.has_room(),
                backup: m.backup,
            })
            .collect()
    }
}

/// A pool at run time.
pub struct UpstreamState {
    pub conf: Upstream,
    pub set: ArcSwap<MemberSet>,
    /// Requests waiting for a connection slot.
    pub queued: AtomicUsize,
    /// Signalled whenever a connection is released or closed.
    pub released: Notify,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for UpstreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamState")
            .field("name", &self.conf.name)
            .field("queued", &self.queued)
            .finish_non_exhaustive()
    }
}

/// Resolve every configured member to its addresses (each address one member). Unresolvable
/// names are logged and skipped; they are tried again at the next resolution.
pub fn resolve(conf: &Upstream, old: Option<&MemberSet>) -> Vec<Arc<MemberState>> {
    use std::net::ToSocketAddrs;
    let mut out: Vec<Arc<MemberState>> = Vec::new();
    for m in &conf.members {
        let addrs: Vec<SocketAddr> = match (m.host.as_str(), m.port).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => {
                tracing::warn!(upstream = %conf.name, member = %m.authority(), error = %e, "member does not resolve");
                // Keep the addresses we had.
                old.map(|s| {
                    s.members
                        .iter()
                        .filter(|x| x.authority == m.authority())
                        .map(|x| x.addr)
                        .collect()
                })
                .unwrap_or_default()
            }
        };
        for addr in addrs {
            if out
                .iter()
                .any(|x| x.addr == addr && x.authority == m.authority())
            {
                continue;
            }
            let existing = old.and_then(|s| {
                s.members
                    .iter()
                    .find(|x| x.addr == addr && x.authority == m.authority())
                    .cloned()
            });
            out.push(existing.unwrap_or_else(|| Arc::new(MemberState::new(addr, m))));
        }
    }
    out
}

impl UpstreamState {
    pub fn new(conf: Upstream) -> io::Result<UpstreamState> {
        let members = resolve(&conf, None);
        let tls = if conf.members.iter().any(|m| m.tls) {
            Some(super::tls::connector(&conf)?)
        } else {
            None
        };
        Ok(UpstreamState {
            set: ArcSwap::from_pointee(MemberSet::new(&conf, members)),
            conf,
            queued: AtomicUsize::new(0),
            released: Notify::new(),
            tls,
        })
    }

    /// Tell requests waiting for a connection that one was released (no-op without waiters).
    pub fn wake_queue(&self) {
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.released.notify_waiters();
        }
    }

    /// Resolve the host names again; swap the member set if the addresses changed.
    pub fn re_resolve(&self) {
        let current = self.set.load();
        let members = resolve(&self.conf, Some(&current));
        let same = members.len() == current.members.len()
            && members
                .iter()
                .zip(&current.members)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if !same {
            tracing::info!(
                upstream = %self.conf.name,
                members = members.len(),
                "member addresses changed"
            );
            self.set
                .store(Arc::new(MemberSet::new(&self.conf, members)));
        }
    }

    /// A connection to `member`: a checked idle one, a new one if below the cap, or
    /// `Ok(None)` when the member is at its cap.
    pub async fn connection(
        self: &Arc<Self>,
        member: &Arc<MemberState>,
        upgrade: bool,
    ) -> io::Result<Option<Conn>> {
        let h2 = self.speaks_h2(member);
        if h2 {
            let shared = member.h2.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(c) = shared.filter(|c| !c.is_closed()) {
                return Ok(Some(Conn::H2(c)));
            }
        } else if !upgrade {
            while let Some(mut c) = member.take_idle(self.conf.idle_timeout, true) {
                // Checked on reuse: a connection the member closed while idle is dropped.
                if c.is_usable() {
                    return Ok(Some(Conn::H1(c, true)));
                }
            }
        }
        let Some(slot) = Slot::take(member, self) else {
            // At the cap: another worker's idle connection is better than waiting.
            if !h2 && !upgrade {
                while let Some(mut c) = member.take_idle(self.conf.idle_timeout, false) {
                    if c.is_usable() {
                        return Ok(Some(Conn::H1(c, true)));
                    }
                }
            }
            return Ok(None);
        };
        let io = tokio::time::timeout(self.conf.connect_timeout, self.connect(member))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        member.opened_total.fetch_add(1, Ordering::Relaxed);
        if h2 {
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(1 << 20)
                .initial_connection_window_size(8 << 20)
                .handshake(TokioIo::new(io))
                .await
                .map_err(io::Error::other)?;
            actix_rt::spawn(async move {
                let _slot = slot;
                let _ = conn.await;
            });
            *member.h2.lock().unwrap_or_else(|e| e.into_inner()) = Some(send.clone());
            member.h2_live.store(true, Ordering::Relaxed);
            Ok(Some(Conn::H2(send)))
        } else if upgrade {
            let (send, conn) = http1::Builder::new()
                .handshake(TokioIo::new(io))
                .await
                .map_err(io::Error::other)?;
            // The connection becomes the tunnel: it runs on its own.
            actix_rt::spawn(async move {
                let _slot = slot;
                let _ = conn.with_upgrades().await;
            });
            Ok(Some(Conn::H1Spawned(send)))
        } else {
            Ok(Some(Conn::H1(MemberConn::new(io, slot), false)))
        }
    }

    /// HTTP/2 to this pool's members: over TLS (ALPN h2) or in clear text (prior knowledge).
    pub fn speaks_h2(&self, _member: &MemberState) -> bool {
        self.conf.protocol != UpstreamProtocol::Http1
    }

    /// A fresh connection for a health check, outside the pool and its bound.
    pub async fn connect_for_check(&self, member: &MemberState) -> io::Result<TokioIo<Stream>> {
        self.connect(member).await.map(TokioIo::new)
    }

    async fn connect(&self, member: &MemberState) -> io::Result<Stream> {
        let tcp = TcpStream::connect(member.addr).await?;
        let _ = tcp.set_nodelay(true);
        if !member.tls {
            return Ok(Stream::Plain(tcp));
        }
        let connector = self
            .tls
            .as_ref()
            .ok_or_else(|| io::Error::other("no TLS connector"))?;
        let name = self
            .conf
            .tls
            .server_name
            .clone()
            .unwrap_or_else(|| member.host.clone());
        let name = rustls_pki_types::ServerName::try_from(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = connector.connect(name, tcp).await?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// A connection ready for one request.
#[derive(Debug)]
pub enum Conn {
    /// HTTP/1.1 over our own codec; `true` when it was reused from the idle pool.
    H1(MemberConn, bool),
    /// HTTP/1.1 driven by its own task (upgrades: it becomes a tunnel).
    H1Spawned(http1::SendRequest<UpBody>),
    H2(http2::SendRequest<UpBody>),
}

/// One of a member's `max_conns` slots, held by the connection's task.
#[derive(Debug)]
pub(super) struct Slot {
    member: Arc<MemberState>,
    upstream: Arc<UpstreamState>,
}

impl Slot {
    fn take(member: &Arc<MemberState>, upstream: &Arc<UpstreamState>) -> Option<Slot> {
        let mut open = member.open.load(Ordering::Relaxed);
        loop {
            if open >= member.max_conns {
                return None;
            }
            match member.open.compare_exchange_weak(
                open,
                open + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Slot {
                        member: member.clone(),
                        upstream: upstream.clone(),
                    });
                }
                Err(now) => open = now,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.member.open.fetch_sub(1, Ordering::SeqCst);
        self.upstream.wake_queue();
    }
}

/// Plain TCP or TLS to a member.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Bytes in a small response body kept whole rather than streamed.
pub const COLLECT_MAX: u64 = 64 * 1024;
