//! System start-up: bind the listeners, start one worker arbiter per core, handle signals.
//!
//! ```text
//!   main thread (actix System)           worker arbiters (one thread each)
//!   ├─ binds every listener ×workers     ├─ FilesService actor (bounded mailbox)
//!   │  (SO_REUSEPORT: one socket each)   ├─ Router (shared RouteTable snapshot + its services)
//!   ├─ prints `listening on ADDR`        └─ Acceptor actor per listener → session actors
//!   └─ waits for SIGTERM/SIGINT → drain
//! ```
//!
//! Drain: the shutdown signal flips a watch channel. Acceptors drop their listeners (new
//! connections are refused), idle keep-alive sessions close, busy ones finish their current
//! response (answered with `Connection: close`) and close. The process exits when the last
//! connection is gone or `timeouts.shutdown` has passed.

use std::fmt;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::rc::Rc;
use std::sync::Arc;

use actix::Actor;
use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use switchyard_conf::{Config, LogConfig};
use switchyard_services::actor::FilesService;
use switchyard_services::cache::CacheLayer;
use switchyard_services::files::FileCache;
use switchyard_services::proxy::ProxyService;
use switchyard_services::proxy::health::{HealthActor, PoolsChanged};
use switchyard_services::redis_routes::RedisRoutes;
use switchyard_services::redis_routes::proxy::RedisProxy;
use switchyard_services::router::{RouteTable, Router};
use switchyard_services::workers::WorkerLoads;
use switchyard_sessions::access_log::AccessLog;
use switchyard_sessions::follow::{self, Follow, Handoff};
use switchyard_sessions::tls::TlsTerminator;
use switchyard_sessions::{ConnTracker, Drain, LiveEnv, SessionEnv, Tunables};
use tokio::sync::mpsc;

use crate::acceptor::Acceptor;
use crate::notify::Notifier;
use crate::quic::{QuicAcceptor, QuicSetup};

/// Pending connections the kernel may queue per listening socket.
const BACKLOG: i32 = 4096;

/// Why the server could not start (or stopped abnormally).
#[derive(Debug)]
pub enum StartError {
    Bind(SocketAddr, std::io::Error),
    AccessLog(std::io::Error),
    Tls(switchyard_sessions::tls::TlsError),
    Quic(String),
    Runtime(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::AccessLog(e) => write!(f, "cannot open the access log: {e}"),
            StartError::Tls(e) => write!(f, "TLS: {e}"),
            StartError::Quic(e) => write!(f, "QUIC: {e}"),
            StartError::Runtime(e) => write!(f, "runtime failure: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Where a reload (SIGHUP) reads the configuration again from; `None` for `serve`.
pub type ReloadSource = Option<std::path::PathBuf>;

/// Start the Redis route provider on a thread with its own runtime, which runs until the
/// process exits. Waits up to two seconds for the first connection.
fn start_redis_routes(cfg: switchyard_conf::RedisRoutesConfig) -> std::io::Result<RedisRoutes> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("redis-routes".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let started = RedisRoutes::start(&cfg).map_err(std::io::Error::other);
                // Serve routes from the first request when Redis answers promptly.
                if let Ok(routes) = &started {
                    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
                    while !routes.is_connected() && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    if !routes.is_connected() {
                        tracing::warn!(
                            url = %cfg.url,
                            "redis routes: Redis is not reachable yet; hosts are routed by the configured virtual hosts until it is"
                        );
                    }
                }
                let _ = tx.send(started);
                std::future::pending::<()>().await;
            });
        })?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the Redis routes thread stopped"))?
}

pub fn run(config: Config, reload_from: ReloadSource) -> Result<(), StartError> {
    let workers = config.workers;
    // The CPU whose connections each worker's listeners ask for, set before they listen.
    let cpus = crate::steering::paired_cpus(workers);
    let Bound {
        tcp: sockets,
        udp: udp_sockets,
        addrs: bound,
    } = bind_all(&config, &cpus)?;
    let access_log = open_access_log(&config.log).map_err(StartError::AccessLog)?;
    let system = actix::System::new();
    // Each worker gets its own route snapshot and small-file cache: the hot path then touches
    // only its own core's memory (no reference counts bouncing between cores). The cache budget
    // is split between workers.
    let tables: Vec<Arc<ArcSwap<RouteTable>>> = (0..workers)
        .map(|_| Arc::new(ArcSwap::from_pointee(RouteTable::new(&config))))
        .collect();
    let cache_share = config.limits.file_cache_bytes / workers as u64;
    let (service_queue, file_revalidate) =
        (config.limits.service_queue, config.timeouts.file_revalidate);
    // What a reload changes for connections accepted after it; every acceptor follows it.
    let tunables = Arc::new(ArcSwap::from_pointee(tunables(&config, access_log)));
    // One terminator for all workers: they share its session cache and ticket keys, so a
    // client resumes whichever worker it lands on.
    let tls = TlsTerminator::new(&config.tls).map_err(StartError::Tls)?;
    let quic = if config.quic.enabled {
        Some(QuicSetup::new(&tls, &config.quic).map_err(StartError::Quic)?)
    } else {
        None
    };
    let drain = Arc::new(Drain::default());
    let torrent = crate::seeding::start(&config);
    let tracker = Arc::new(ConnTracker::default());
    let panic_path: Option<Arc<str>> = std::env::var("SWITCHYARD_FAULT_PANIC_PATH")
        .ok()
        .map(Arc::from);
    if let Some(path) = &panic_path {
        tracing::warn!(path = %path, "fault injection enabled: requests for this path panic");
    }

    // The upstream pools are shared by all workers (always present, so a reload can add pools);
    // their health actor runs on the main arbiter.
    let proxy = Arc::new(ProxyService::new(&config.upstreams).map_err(StartError::Runtime)?);
    switchyard_services::metrics::watch_proxy(Arc::clone(&proxy));
    // One response cache for the process (memory tier, and the disk tier when configured),
    // shared by every worker: a response stored by one worker answers on all of them.
    let response_cache = if config.cache.enabled {
        Some(CacheLayer::new(&config.cache).map_err(StartError::Runtime)?)
    } else {
        None
    };

    // Redis routes: one provider for the process, its connection driven by a thread of its
    // own (workers only send commands through it).
    let redis = match &config.redis_routes {
        Some(cfg) => {
            let routes = start_redis_routes(cfg.clone()).map_err(StartError::Runtime)?;
            Some(Arc::new(RedisProxy::new(
                routes,
                proxy.clone(),
                cfg.max_body,
            )))
        }
        None => None,
    };

    // Each worker's TCP connections, counted for `limits.max_connections`, for connection
    // steering and for the metrics.
    let loads = WorkerLoads::new(workers);
    switchyard_services::metrics::watch_workers(Arc::clone(&loads));
    // Each listener's acceptors take the plain HTTP/1.1 connections other workers hand over to
    // follow their client's CPU: one inbox per listener and worker.
    let (mut inboxes, handovers) = inboxes(&sockets, &cpus);

    let mut arbiters = Vec::with_capacity(workers);
    for (worker, (listeners, udp)) in sockets.into_iter().zip(udp_sockets).enumerate() {
        let arbiter = actix::Arbiter::new();
        let tunables = tunables.clone();
        let tls = tls.clone();
        let torrent = torrent.clone();
        let quic = quic.clone();
        let table = tables[worker].clone();
        let proxy = proxy.clone();
        let response_cache = response_cache.clone();
        let redis = redis.clone();
        let (shutdown, tracker, panic_path) = (drain.clone(), tracker.clone(), panic_path.clone());
        let load = loads.worker(worker);
        let mut inboxes = std::mem::take(&mut inboxes[worker]).into_iter();
        let (handovers, loads, cpus) = (handovers.clone(), loads.clone(), cpus.clone());
        arbiter.spawn_fn(move || {
            let cache = FileCache::with_revalidate(cache_share, file_revalidate);
            let files = FilesService::new(cache.clone(), panic_path).start_bounded(service_queue);
            let mut router = Router::new(table, files, cache)
                .with_torrent(torrent.clone())
                .with_proxy(proxy);
            if let Some(response_cache) = response_cache {
                router = router.with_cache(response_cache);
            }
            if let Some(redis) = redis {
                router = router.with_redis_routes(redis);
            }
            // Limits, timeouts, HTTP/2 settings and the access log come from `tunables`.
            let current = tunables.load();
            let env = SessionEnv {
                router,
                limits: current.limits.clone(),
                timeouts: current.timeouts.clone(),
                access_log: None,
                drain: shutdown,
                http2: current.http2.clone(),
                torrent,
                alt_svc: None,
                follow: None,
            };
            let mut udp = udp.into_iter();
            for (index, (listener, cpu)) in listeners.into_iter().enumerate() {
                // Each listener advertises its own port's QUIC endpoint (RFC 7838 Alt-Svc).
                let mut env = env.clone();
                let inbox = inboxes.next().flatten();
                if inbox.is_some() {
                    let senders = Rc::from(handovers[index].clone());
                    env.follow = Some(Rc::new(Follow::new(worker, &cpus, loads.clone(), senders)));
                }
                if let (Some(quic), Some(socket)) = (&quic, udp.next()) {
                    if let Ok(addr) = socket.local_addr() {
                        env.alt_svc = Some(SessionEnv::alt_svc_for(addr.port()));
                    }
                    QuicAcceptor::new(
                        socket,
                        quic.clone(),
                        LiveEnv::new(env.clone(), tunables.clone()),
                        tracker.clone(),
                        workers,
                    )
                    .start();
                }
                Acceptor::new(
                    listener,
                    LiveEnv::new(env, tunables.clone()),
                    load.clone(),
                    cpu,
                    tracker.clone(),
                    tls.clone(),
                    inbox,
                )
                .start();
            }
        });
        arbiters.push(arbiter);
    }

    let quic_on = config.quic.enabled;
    let running = config;
    system.block_on(async move {
        // The handlers are in place before anyone is told we are listening, so a signal sent
        // right after the readiness line drains instead of killing the process.
        let health = HealthActor::new(proxy.clone()).start();
        let signals = match StopSignals::install() {
            Ok(signals) => signals,
            Err(e) => return Err(StartError::Runtime(e)),
        };
        for addr in &bound {
            if quic_on {
                tracing::info!(%addr, "QUIC (HTTP/3, hq-interop) on the same UDP port");
            }
            tracing::info!(%addr, workers, "listening");
            crate::println_stdout(&format!("listening on {addr}"));
        }
        let notifier = Notifier::from_env();
        let addrs: Vec<String> = bound.iter().map(ToString::to_string).collect();
        notifier.ready(&format!("listening on {}", addrs.join(", ")));
        actix_rt::spawn(async move {
            let reopen_logs = || {
                if let Some(log) = &tunables.load().access_log {
                    log.reopen();
                    tracing::info!("SIGUSR1: the access log is reopened before its next line");
                }
            };
            let signal = signals
                .wait(
                    || {
                        notifier.reloading();
                        let status = reload(
                            reload_from.as_deref(),
                            &running,
                            &tables,
                            &tunables,
                            &proxy,
                            &health,
                            &tls,
                        );
                        notifier.ready(&status);
                    },
                    reopen_logs,
                )
                .await;
            tracing::info!(
                signal,
                live = tracker.live(),
                "draining: no new connections, finishing in-flight requests"
            );
            notifier.stopping();
            drain.start();
            let shutdown_timeout = tunables.load().timeouts.shutdown;
            if tokio::time::timeout(shutdown_timeout, tracker.wait_idle())
                .await
                .is_err()
            {
                tracing::warn!(
                    live = tracker.live(),
                    "shutdown timeout: closing remaining connections"
                );
            }
            tracing::info!("stopped");
            actix::System::current().stop();
        });
        Ok(())
    })?;
    let result = system.run().map_err(StartError::Runtime);
    for arbiter in arbiters {
        arbiter.stop();
        let _ = arbiter.join();
    }
    result
}

/// Each worker's inbox for each listener, `[worker][listener]`.
type Inboxes = Vec<Vec<Option<mpsc::Receiver<Handoff>>>>;
/// Each listener's senders to those inboxes, `[listener][worker]`.
type Handovers = Arc<Vec<Vec<mpsc::Sender<Handoff>>>>;

/// A connection following its client's CPU (see [`switchyard_sessions::follow`]) goes to the
/// acceptor of its listener on another worker, through that acceptor's inbox. None with one
/// worker, or when workers are not paired with CPUs.
fn inboxes(
    sockets: &[Vec<(TcpListener, Option<u32>)>],
    cpus: &[Option<u32>],
) -> (Inboxes, Handovers) {
    let listeners = sockets.first().map_or(0, Vec::len);
    let workers = sockets.len();
    let mut inboxes: Inboxes = (0..workers).map(|_| Vec::new()).collect();
    if workers < 2 || cpus.iter().any(Option::is_none) {
        return (inboxes, Arc::default());
    }
    let mut handovers = Vec::with_capacity(listeners);
    for _ in 0..listeners {
        let mut senders = Vec::with_capacity(workers);
        for inbox in &mut inboxes {
            let (tx, rx) = mpsc::channel(follow::INBOX);
            senders.push(tx);
            inbox.push(Some(rx));
        }
        handovers.push(senders);
    }
    (inboxes, Arc::new(handovers))
}

/// Bind every listener once per worker with `SO_REUSEPORT`, so each worker accepts on its own
/// socket and the kernel spreads connections; with QUIC on, the same port number on UDP too,
/// one socket per worker. Port 0 is resolved by the first bind and reused; when that port is
/// taken on UDP (a client's ephemeral socket may hold it), another one is picked.
/// Returns each worker's TCP and UDP sockets and the bound address of every listener.
struct Bound {
    /// With the CPU each listener asks for, when the socket took the option.
    tcp: Vec<Vec<(TcpListener, Option<u32>)>>,
    udp: Vec<Vec<UdpSocket>>,
    addrs: Vec<SocketAddr>,
}

/// Free ports tried for a port-0 listener before giving up.
const PORT_ATTEMPTS: usize = 32;

fn bind_all(config: &Config, cpus: &[Option<u32>]) -> Result<Bound, StartError> {
    let workers = cpus.len();
    let mut bound = Bound {
        tcp: (0..workers).map(|_| Vec::new()).collect(),
        udp: (0..workers).map(|_| Vec::new()).collect(),
        addrs: Vec::with_capacity(config.listeners.len()),
    };
    for listener in &config.listeners {
        let mut attempt = 0;
        let (tcp, udp, addr) = loop {
            attempt += 1;
            match bind_listener(listener.addr, cpus, config.quic.enabled) {
                Err(StartError::Bind(addr, e))
                    if listener.addr.port() == 0
                        && e.kind() == std::io::ErrorKind::AddrInUse
                        && attempt < PORT_ATTEMPTS =>
                {
                    tracing::debug!(%addr, "port taken on UDP; trying another");
                }
                other => break other?,
            }
        };
        for (worker, (tcp, udp)) in tcp.into_iter().zip(udp).enumerate() {
            bound.tcp[worker].push(tcp);
            if let Some(udp) = udp {
                bound.udp[worker].push(udp);
            }
        }
        bound.addrs.push(addr);
    }
    Ok(bound)
}

type ListenerSockets = (
    Vec<(TcpListener, Option<u32>)>,
    Vec<Option<UdpSocket>>,
    SocketAddr,
);

/// One listener's sockets, one TCP (and UDP when `quic`) per worker; worker `w`'s TCP socket
/// asks for the connections of CPU `cpus[w]`.
fn bind_listener(
    mut addr: SocketAddr,
    cpus: &[Option<u32>],
    quic: bool,
) -> Result<ListenerSockets, StartError> {
    let mut tcp = Vec::with_capacity(cpus.len());
    let mut udp = Vec::with_capacity(cpus.len());
    for &cpu in cpus {
        let (socket, cpu) = bind_one(addr, cpu).map_err(|e| StartError::Bind(addr, e))?;
        addr = socket.local_addr().map_err(|e| StartError::Bind(addr, e))?;
        tcp.push((socket, cpu));
        udp.push(if quic {
            Some(crate::quic::bind_udp(addr).map_err(|e| StartError::Bind(addr, e))?)
        } else {
            None
        });
    }
    Ok((tcp, udp, addr))
}

/// A listening socket of the reuseport group at `addr`, asking for `cpu`'s connections
/// (returned when the socket took the option) from its first one.
fn bind_one(addr: SocketAddr, cpu: Option<u32>) -> std::io::Result<(TcpListener, Option<u32>)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    let cpu = cpu.filter(|&cpu| crate::steering::ask_for(&socket, cpu));
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok((socket.into(), cpu))
}

/// The signals that stop or reload the server, registered with the OS at [`StopSignals::install`].
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Register the handlers now (inside the runtime); from here on these signals are ours.
    fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    /// Wait for SIGTERM or SIGINT; call `on_hangup` for every SIGHUP and `on_usr1` for every
    /// SIGUSR1 meanwhile.
    async fn wait(mut self, on_hangup: impl Fn(), on_usr1: impl Fn()) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => on_hangup(),
                _ = self.usr1.recv() => on_usr1(),
            }
        }
    }
}

/// The access log `log` asks for, opened.
fn open_access_log(log: &LogConfig) -> std::io::Result<Option<AccessLog>> {
    log.access.as_ref().map(AccessLog::open).transpose()
}

/// The settings of `config` a reload changes for new connections, with `access_log` opened
/// from its `[log]`.
fn tunables(config: &Config, access_log: Option<AccessLog>) -> Tunables {
    Tunables {
        limits: Arc::new(config.limits.clone()),
        timeouts: Arc::new(config.timeouts.clone()),
        http2: Arc::new(config.http2.clone()),
        access_log,
        log: config.log.clone(),
    }
}

/// SIGHUP: read the configuration again, then swap the routing snapshot, the upstream pools,
/// the TLS certificates and the [`Tunables`] (limits, timeouts, HTTP/2 settings, access log).
/// Open connections keep going with the settings they were accepted with; requests routed from
/// now on see the new virtual hosts and locations, connections accepted from now on the new
/// limits and timeouts, handshakes from now on (TCP and QUIC) the new certificates.
/// Everything is read, checked and opened before anything changes: a reload applies whole or
/// not at all, and is counted either way. What [`restart_only_changes`] lists (listeners,
/// workers, sizes of queues and caches, TLS session settings, QUIC, seeding, Redis routes) is
/// fixed at start and needs a restart to change. Returns what happened, in a line for the
/// service manager.
fn reload(
    source: Option<&std::path::Path>,
    running: &Config,
    tables: &[Arc<ArcSwap<RouteTable>>],
    tunables: &ArcSwap<Tunables>,
    proxy: &ProxyService,
    health: &actix::Addr<HealthActor>,
    tls: &TlsTerminator,
) -> String {
    let Some(path) = source else {
        tracing::info!("SIGHUP ignored: `serve` has no configuration file to reload");
        return "SIGHUP ignored: no configuration file".to_owned();
    };
    let applied = (|| {
        let new = switchyard_conf::load(path).map_err(|e| e.to_string())?;
        let pending = restart_only_changes(running, &new).join(", ");
        if !pending.is_empty() {
            tracing::warn!(%pending, "changed on disk; these apply after a restart");
        }
        let certificates = tls.load_certificates(&new.tls).map_err(|e| e.to_string())?;
        // The same access log is kept (one writer per file); another one is opened now, so a
        // path that cannot be opened refuses the whole reload.
        let current = tunables.load();
        let access_log = if new.log == current.log {
            current.access_log.clone()
        } else {
            open_access_log(&new.log).map_err(|e| format!("access log: {e}"))?
        };
        // Pools first, so that routes to a new pool find it.
        proxy.reload(&new.upstreams).map_err(|e| e.to_string())?;
        health.do_send(PoolsChanged);
        let count = certificates.count();
        tls.install(certificates);
        tunables.store(Arc::new(self::tunables(&new, access_log)));
        for table in tables {
            table.store(Arc::new(RouteTable::new(&new)));
        }
        Ok::<_, String>((new.vhosts.len(), count, pending))
    })();
    switchyard_services::metrics::reloaded(applied.is_ok());
    match applied {
        Ok((vhosts, certificates, pending)) => {
            tracing::info!(vhosts, certificates, "configuration reloaded");
            let mut status =
                format!("configuration reloaded: vhosts={vhosts} certificates={certificates}");
            if !pending.is_empty() {
                status.push_str("; a restart applies ");
                status.push_str(&pending);
            }
            status
        }
        Err(error) => {
            tracing::error!(%error, "reload failed; keeping the running configuration");
            format!("reload failed, running configuration kept: {error}")
        }
    }
}

/// The parts of `new` that differ from the configuration the process started with and that only
/// a restart applies: what the sockets, threads, queues and caches were built with at start.
/// Everything else (routes, pools, certificates, [`Tunables`]) a reload applies.
fn restart_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    [
        ("workers", new.workers != running.workers),
        ("listen", new.listeners != running.listeners),
        (
            "limits.service_queue",
            new.limits.service_queue != running.limits.service_queue,
        ),
        (
            "limits.file_cache_bytes",
            new.limits.file_cache_bytes != running.limits.file_cache_bytes,
        ),
        (
            "timeouts.file_revalidate",
            new.timeouts.file_revalidate != running.timeouts.file_revalidate,
        ),
        (
            "tls.session_cache",
            new.tls.session_cache != running.tls.session_cache,
        ),
        ("tls.tickets", new.tls.tickets != running.tls.tickets),
        ("quic", new.quic != running.quic),
        ("cache", new.cache != running.cache),
        ("torrent", new.torrent != running.torrent),
        ("redis_routes", new.redis_routes != running.redis_routes),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_restart_only_sections_are_reported() {
        let root = std::env::temp_dir();
        let listen = "127.0.0.1:0".parse().expect("address");
        let running = Config::serve_dir(&root, listen).expect("config");
        assert!(restart_only_changes(&running, &running).is_empty());
        let mut new = running.clone();
        // Routes, certificates, limits, timeouts, HTTP/2 settings and the access log are what
        // a reload applies: not reported.
        new.vhosts.clear();
        new.tls.certificates.clear();
        new.limits.max_body += 1;
        new.limits.max_connections += 1;
        new.timeouts.keepalive += std::time::Duration::from_secs(1);
        new.http2.max_concurrent_streams += 1;
        new.log.access = None;
        assert!(restart_only_changes(&running, &new).is_empty());
        new.limits.service_queue += 1;
        new.tls.tickets = !new.tls.tickets;
        new.timeouts.file_revalidate += std::time::Duration::from_secs(1);
        assert_eq!(
            restart_only_changes(&running, &new),
            [
                "limits.service_queue",
                "timeouts.file_revalidate",
                "tls.tickets"
            ]
        );
    }
}
