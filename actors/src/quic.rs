//! The QUIC endpoint on every listener's port (UDP), for HTTP/3 and `hq-interop`.
//!
//! ```text
//!   main thread: QuicSetup::new  ── one quinn ServerConfig (TLS from the shared terminator:
//!                                   same certificates, session cache and ticket keys) and one
//!                                   EndpointConfig (stateless-reset key) for every endpoint
//!   worker arbiter ×N: QuicAcceptor per listener, on its own SO_REUSEPORT UDP socket
//!      Incoming ──► admission (connection cap, Retry policy) ──► handshake (≤ tls_handshake)
//!                   ──► ALPN h3 → H3Session  |  hq-interop → HqSession
//! ```
//!
//! One endpoint per worker and listener: the kernel spreads datagrams over the sockets by
//! 4-tuple, so a connection stays on one worker for its life and workers share no lock. The
//! price is that a client whose address or port changes mid-connection (migration, NAT
//! rebinding) lands on another worker's endpoint, which does not know it; migration is
//! therefore disabled. All endpoints share the token key (a Retry token from one is valid at
//! another) and the stateless-reset key.
//!
//! Drain: the acceptor refuses new connections (CONNECTION_REFUSED); sessions send
//! GOAWAY and close once their requests are done. quinn-udp provides GSO/GRO and ECN; its socket
//! is wrapped so that a GSO batch of large datagrams is cut to fit one send ([`crate::udp`]).
//!
//! Path MTU Discovery probes up to quinn's 1452 bytes, and up to 64 KiB for a peer on a loopback
//! address ([`Path::Loopback`]): there the path carries such datagrams whole (as TCP uses the
//! loopback MTU for its segments), and a client's cost is per packet: with 1452-byte datagrams
//! gtlsclient spends 0.4 s of CPU on a 64 MiB download, with large ones about 0.1 s.

use std::fmt;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, WrapFuture};
use quinn::crypto::rustls::{HandshakeData, QuicServerConfig};
use quinn::{EndpointConfig, IdleTimeout, Incoming, ServerConfig, TransportConfig, VarInt};
use socket2::{Domain, Protocol, Socket, Type};
use switchyard_conf::{Congestion, QuicConfig, RetryPolicy};
use switchyard_services::workers::OpenCounter;
use switchyard_sessions::h3::{H3Session, Handshake};
use switchyard_sessions::hq::HqSession;
use switchyard_sessions::tls::TlsTerminator;
use switchyard_sessions::{ConnGuard, ConnTracker, LiveEnv, SessionEnv};

/// ALPN identifiers offered over QUIC (RFC 9114 §3.1; the interop runner's HTTP/0.9).
const ALPN_H3: &[u8] = b"h3";
const ALPN_HQ: &[u8] = b"hq-interop";
/// Kernel socket buffers asked for each UDP socket: a burst of a fast sender must not be
/// dropped by a default ~200 KiB buffer.
const UDP_BUFFER: usize = 8 * 1024 * 1024;

/// What every QUIC endpoint of the process shares, built once at start.
#[derive(Clone)]
pub struct QuicSetup {
    server: ServerConfig,
    /// `server` for a peer on a loopback address ([`Path::Loopback`]).
    loopback: Arc<ServerConfig>,
    endpoint: EndpointConfig,
    config: Arc<QuicConfig>,
    /// QUIC connections of the whole process, against `quic.max_connections`.
    live: Arc<AtomicUsize>,
}

impl fmt::Debug for QuicSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicSetup")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl QuicSetup {
    /// QUIC's TLS is the terminator's (same certificates by SNI, session cache and ticket
    /// keys, so a client resumes across TCP and QUIC alike), restricted to TLS 1.3 by QUIC,
    /// with ALPN `h3` and `hq-interop`, early data when `zero_rtt`, and the key log of
    /// `SSLKEYLOGFILE` when that variable is set.
    pub fn new(tls: &TlsTerminator, config: &QuicConfig) -> Result<QuicSetup, String> {
        let mut rustls = (**tls.server_config()).clone();
        rustls.alpn_protocols = vec![ALPN_H3.to_vec(), ALPN_HQ.to_vec()];
        // RFC 9001 §4.6.1: QUIC requires max_early_data_size of 0xffffffff to allow 0-RTT.
        let zero_rtt = config.zero_rtt && rustls.session_storage.can_cache();
        if config.zero_rtt && !zero_rtt {
            tracing::warn!(
                "quic.zero_rtt needs a server-side session cache (tls.session_cache > 0): 0-RTT is off"
            );
        }
        rustls.max_early_data_size = if zero_rtt { u32::MAX } else { 0 };
        if zero_rtt {
            // RFC 8446 §8.1 (and rustls): early data only with stateful resumption, where the
            // server cache hands out each session once, so a replayed ClientHello finds nothing.
            // QUIC tickets are therefore session-cache keys, not encrypted (stateless) tickets.
            rustls.ticketer = Arc::new(StatefulTicketsOnly);
        }
        rustls.send_half_rtt_data = true;
        if std::env::var_os("SSLKEYLOGFILE").is_some() {
            tracing::warn!("SSLKEYLOGFILE is set: QUIC TLS secrets are written to it");
            rustls.key_log = Arc::new(rustls::KeyLogFile::new());
        }
        let crypto = QuicServerConfig::try_from(rustls)
            .map_err(|e| format!("QUIC TLS configuration: {e}"))?;
        if let Some(dir) = &config.qlog_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("quic.qlog_dir {}: {e}", dir.display()))?;
        }
        let mut server = ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(transport(config, Path::Network)?));
        // See the module docs: a migrated client would reach another worker's endpoint.
        server.migration(false);
        let mut loopback = server.clone();
        loopback.transport_config(Arc::new(transport(config, Path::Loopback)?));
        Ok(QuicSetup {
            server,
            loopback: Arc::new(loopback),
            endpoint: EndpointConfig::default(),
            config: Arc::new(config.clone()),
            live: Arc::new(AtomicUsize::new(0)),
        })
    }
}

/// Issues no stateless tickets: TLS 1.3 then sends session-cache keys as tickets (stateful
/// resumption), which is what early data requires.
#[derive(Debug)]
struct StatefulTicketsOnly;

impl rustls::server::ProducesTickets for StatefulTicketsOnly {
    fn enabled(&self) -> bool {
        false
    }

    fn lifetime(&self) -> u32 {
        0
    }

    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// The largest UDP payload Path MTU Discovery probes for on a loopback path, whose MTU is 64 KiB:
/// the bound of one UDP send ([`crate::udp::MAX_SEND`]). Elsewhere quinn's default of 1452
/// bytes holds (a 1500-byte Ethernet MTU less the IPv6 and UDP headers).
const LOOPBACK_MAX_UDP_PAYLOAD: u16 = crate::udp::MAX_SEND as u16;

/// The path a connection takes, which bounds the datagram size worth probing for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Peer on a loopback address: datagrams of up to 64 KiB arrive whole, and a client then
    /// handles a fraction of the packets (its cost is per packet, not per byte).
    Loopback,
    /// Anything else: probe up to quinn's default.
    Network,
}

impl Path {
    fn of(peer: SocketAddr) -> Path {
        if peer.ip().to_canonical().is_loopback() {
            Path::Loopback
        } else {
            Path::Network
        }
    }
}

/// Transport parameters and local tuning from `[quic]`, for a connection on `path`.
fn transport(config: &QuicConfig, path: Path) -> Result<TransportConfig, String> {
    let varint = |name: &str, v: u64| {
        VarInt::from_u64(v).map_err(|_| format!("quic.{name}: {v} does not fit a QUIC varint"))
    };
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(config.max_streams_bidi))
        // RFC 9114 §6.2: the client's control stream and two QPACK streams, plus room for
        // extensions a client may open.
        .max_concurrent_uni_streams(VarInt::from_u32(16))
        .stream_receive_window(varint("stream_window", config.stream_window)?)
        .receive_window(varint("connection_window", config.connection_window)?)
        .send_window(config.send_window)
        .max_idle_timeout(Some(
            IdleTimeout::try_from(config.idle_timeout)
                .map_err(|_| "quic.idle_timeout: out of range".to_owned())?,
        ))
        // quinn-udp: GSO on send, GRO on receive, where the kernel offers them.
        .enable_segmentation_offload(true);
    if path == Path::Loopback {
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(LOOPBACK_MAX_UDP_PAYLOAD);
        t.mtu_discovery_config(Some(mtu));
    }
    match config.congestion {
        Congestion::Cubic => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()));
        }
        Congestion::Bbr => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
        }
        Congestion::NewReno => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::NewRenoConfig::default()));
        }
    }
    Ok(t)
}

/// Bind the UDP socket for `addr` (whose port is already fixed by the TCP listener).
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Decides, per new connection, whether it must first prove its address with a Retry.
///
/// Sans-IO: the caller passes the time. With [`RetryPolicy::AboveRate`] the rate is counted
/// over one-second windows; once a window has seen more new connections than the rate, every
/// further one in that window is asked to retry (a validated retry is then accepted).
#[derive(Debug)]
pub struct RetryGate {
    policy: RetryPolicy,
    window: Option<Instant>,
    seen: u32,
}

impl RetryGate {
    pub fn new(policy: RetryPolicy) -> RetryGate {
        RetryGate {
            policy,
            window: None,
            seen: 0,
        }
    }

    /// Handle a new connection at `now`; `validated` when its address is already proven (it
    /// carries a Retry or NEW_TOKEN token). True: answer with a Retry.
    pub fn handle_new(&mut self, now: Instant, validated: bool) -> bool {
        if validated {
            return false;
        }
        match self.policy {
            RetryPolicy::Never => false,
            RetryPolicy::Always => true,
            RetryPolicy::AboveRate(rate) => {
                let fresh = self
                    .window
                    .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
                if fresh {
                    self.window = Some(now);
                    self.seen = 0;
                }
                self.seen = self.seen.saturating_add(1);
                self.seen > rate
            }
        }
    }
}

/// One endpoint: the accept loop for one listener on one worker.
pub struct QuicAcceptor {
    socket: Option<UdpSocket>,
    setup: QuicSetup,
    /// Taken by the accept loop when the actor starts.
    env: Option<LiveEnv>,
    tracker: Arc<ConnTracker>,
    /// QUIC connections of this worker (for drain accounting, apart from TCP's).
    open: OpenCounter,
    workers: usize,
}

impl fmt::Debug for QuicAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicAcceptor")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl QuicAcceptor {
    pub fn new(
        socket: UdpSocket,
        setup: QuicSetup,
        env: LiveEnv,
        tracker: Arc<ConnTracker>,
        workers: usize,
    ) -> QuicAcceptor {
        QuicAcceptor {
            socket: Some(socket),
            setup,
            env: Some(env),
            tracker,
            open: OpenCounter::default(),
            workers,
        }
    }
}

impl Actor for QuicAcceptor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (Some(socket), Some(env)) = (self.socket.take(), self.env.take()) else {
            return;
        };
        let runtime = Arc::new(quinn::TokioRuntime);
        let endpoint = match quinn::Runtime::wrap_udp_socket(&*runtime, socket).and_then(|socket| {
            quinn::Endpoint::new_with_abstract_socket(
                self.setup.endpoint.clone(),
                Some(self.setup.server.clone()),
                Arc::new(crate::udp::WithinLimit(socket)),
                runtime,
            )
        }) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the QUIC endpoint");
                ctx.stop();
                return;
            }
        };
        let accept = accept_loop(
            endpoint,
            self.setup.clone(),
            env,
            self.open.clone(),
            self.tracker.clone(),
            self.workers,
        );
        ctx.spawn(
            accept
                .into_actor(self)
                .map(|(), _act, ctx: &mut Context<Self>| ctx.stop()),
        );
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    setup: QuicSetup,
    mut env: LiveEnv,
    open: OpenCounter,
    tracker: Arc<ConnTracker>,
    workers: usize,
) {
    let mut drain = env.current().drain.watch();
    // The rate is the process's; each worker's endpoint sees about its share.
    let policy = match setup.config.retry {
        RetryPolicy::AboveRate(rate) => {
            RetryPolicy::AboveRate((rate / workers.max(1) as u32).max(1))
        }
        other => other,
    };
    let mut gate = RetryGate::new(policy);
    let max = setup.config.max_connections;
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = drain.as_mut() => break,
        };
        let Some(incoming) = incoming else { break };
        let peer = incoming.remote_address();
        if setup.live.load(Ordering::Acquire) >= max {
            tracing::debug!(%peer, max, "QUIC connection limit reached; refusing");
            incoming.refuse();
            continue;
        }
        if incoming.may_retry()
            && gate.handle_new(Instant::now(), incoming.remote_address_validated())
        {
            if let Err(e) = incoming.retry() {
                tracing::debug!(%peer, error = %e, "QUIC retry not sent");
            }
            continue;
        }
        let slot = Slot::take(&setup.live);
        let guard = ConnGuard::new(open.clone(), tracker.clone());
        // The settings of the configuration running now (a reload changes them).
        let env = env.current().clone();
        actix_rt::spawn(handshake(incoming, setup.clone(), env, guard, slot));
    }
    // Draining: existing connections carry on; a new one is refused with CONNECTION_REFUSED, so
    // its client learns at once (as from a closed TCP port) instead of waiting for its idle
    // timeout, which is all that an endpoint without a server config would give it: quinn
    // answers an unknown Initial with a stateless reset that no handshaking client can read.
    //
    // The endpoint and its socket stay until the process exits, even once this worker's
    // connections are gone: closing one socket of the SO_REUSEPORT group would make the kernel
    // re-spread datagrams over the rest, and another worker's connections could land on an
    // endpoint that does not know them.
    tracing::debug!("QUIC endpoint refuses new connections");
    while let Some(incoming) = endpoint.accept().await {
        tracing::debug!(peer = %incoming.remote_address(), "draining: QUIC connection refused");
        incoming.refuse();
    }
}

/// One place in `quic.max_connections`, released when the connection is gone.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(live: &Arc<AtomicUsize>) -> Slot {
        live.fetch_add(1, Ordering::AcqRel);
        Slot(live.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accept `incoming` (with its own qlog when asked), wait for the ALPN, and start the session
/// for it; the handshake must complete within `max(timeouts.tls_handshake, quic.idle_timeout)`.
async fn handshake(
    incoming: Incoming,
    setup: QuicSetup,
    env: Rc<SessionEnv>,
    guard: ConnGuard,
    slot: Slot,
) {
    let peer = incoming.remote_address();
    let path = Path::of(peer);
    let qlog = setup
        .config
        .qlog_dir
        .as_deref()
        .map(|dir| qlog_server_config(&setup, dir, &incoming, path));
    let accepted = match qlog {
        Some(Ok(config)) => incoming.accept_with(Arc::new(config)),
        other => {
            if let Some(Err(e)) = other {
                tracing::warn!(%peer, error = %e, "qlog not written for this connection");
            }
            match path {
                Path::Loopback => incoming.accept_with(setup.loopback.clone()),
                Path::Network => incoming.accept(),
            }
        }
    };
    let mut connecting = match accepted {
        Ok(connecting) => connecting,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "QUIC connection not accepted");
            return;
        }
    };
    // QUIC retransmits the handshake with exponential backoff: under heavy loss a sound
    // handshake takes longer than a TCP one, and a silent one already ends at the idle timeout.
    // The bound is the larger of the two, so a client cannot keep a handshake open for ever.
    let limit = env.timeouts.tls_handshake.max(setup.config.idle_timeout);
    let alpn = match tokio::time::timeout(limit, connecting.handshake_data()).await {
        Ok(Ok(data)) => data
            .downcast::<HandshakeData>()
            .ok()
            .and_then(|data| data.protocol),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "QUIC handshake failed");
            return;
        }
        Err(_elapsed) => {
            tracing::debug!(%peer, "QUIC handshake timed out");
            return;
        }
    };
    // 0.5-RTT: answer requests that arrived in 0-RTT as soon as they are read. The handshake
    // flag tells the session which requests are early data.
    let (conn, complete) = match connecting.into_0rtt() {
        Ok(pair) => pair,
        Err(connecting) => match tokio::time::timeout(limit, connecting).await {
            Ok(Ok(conn)) => {
                let done = Handshake::default();
                done.complete();
                start_session(conn, alpn.as_deref(), done, env, guard, slot);
                return;
            }
            _ => return,
        },
    };
    let done = Handshake::default();
    let flag = done.clone();
    let watched = conn.clone();
    actix_rt::spawn(async move {
        match tokio::time::timeout(limit, complete).await {
            Ok(_) => flag.complete(),
            Err(_elapsed) => {
                tracing::debug!(peer = %watched.remote_address(), "QUIC handshake timed out");
                watched.close(VarInt::from_u32(0), b"handshake timeout");
            }
        }
    });
    start_session(conn, alpn.as_deref(), done, env, guard, slot);
}

fn start_session(
    conn: quinn::Connection,
    alpn: Option<&[u8]>,
    handshake: Handshake,
    env: Rc<SessionEnv>,
    guard: ConnGuard,
    slot: Slot,
) {
    // The slot is held until quinn reports the connection closed.
    let closed = conn.clone();
    actix_rt::spawn(async move {
        closed.closed().await;
        drop(slot);
    });
    switchyard_services::metrics::connection(switchyard_services::metrics::Conn::Quic);
    match alpn {
        Some(ALPN_H3) => H3Session::start(conn, handshake, env, guard),
        Some(ALPN_HQ) => HqSession::start(conn, env, guard),
        // rustls refuses a QUIC handshake without a protocol we offered, so this is not reached.
        _ => conn.close(VarInt::from_u32(0x0101), b"no application protocol"),
    }
}

/// The server configuration with a qlog stream for this connection, written to
/// `DIR/<original destination connection id>_server.sqlog`.
fn qlog_server_config(
    setup: &QuicSetup,
    dir: &std::path::Path,
    incoming: &Incoming,
    path: Path,
) -> Result<ServerConfig, String> {
    let odcid = incoming.orig_dst_cid().to_string();
    let name: PathBuf = dir.join(format!("{odcid}_server.sqlog"));
    let file = std::fs::File::create(&name).map_err(|e| format!("{}: {e}", name.display()))?;
    let mut qlog = quinn::QlogConfig::default();
    qlog.writer(Box::new(std::io::BufWriter::new(file)))
        .title(Some(format!("switchyard {odcid}")));
    let mut transport = transport(&setup.config, path)?;
    transport.qlog_stream(qlog.into_stream());
    let mut server = setup.server.clone();
    server.transport_config(Arc::new(transport));
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_gate_policies() {
        let now = Instant::now();
        let mut never = RetryGate::new(RetryPolicy::Never);
        assert!(!never.handle_new(now, false));
        let mut always = RetryGate::new(RetryPolicy::Always);
        assert!(always.handle_new(now, false));
        assert!(
            !always.handle_new(now, true),
            "a validated address is accepted"
        );
    }

    #[test]
    fn retry_gate_counts_per_second() {
        let start = Instant::now();
        let mut gate = RetryGate::new(RetryPolicy::AboveRate(3));
        let decisions: Vec<bool> = (0..5)
            .map(|i| gate.handle_new(start + Duration::from_millis(i * 10), false))
            .collect();
        assert_eq!(decisions, [false, false, false, true, true]);
        // Retried clients come back validated and are let in during the flood.
        assert!(!gate.handle_new(start + Duration::from_millis(60), true));
        // A new window starts after a second.
        assert!(!gate.handle_new(start + Duration::from_millis(1100), false));
    }
}
