//! The acceptor: one actor per worker and listener. It accepts, sniffs the protocol from the
//! first bytes (with a deadline), and hands the connection to that protocol's session actor.
//!
//! Sniffing reads (rather than peeks) the first bytes: a peek cannot wait for *more* bytes
//! while some are buffered. The bytes read are handed to the session as the start of its input.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, WrapFuture};
use bytes::BytesMut;
use switchyard_services::metrics::{self, Conn};
use switchyard_services::workers::WorkerLoad;
use switchyard_sessions::follow::Handoff;
use switchyard_sessions::h1::H1Session;
use switchyard_sessions::h2::H2Session;
use switchyard_sessions::io::{Prefixed, Transport};
use switchyard_sessions::peer::PeerSession;
use switchyard_sessions::tls::{Alpn, TlsTerminator};
use switchyard_sessions::{ConnGuard, ConnTracker, LiveEnv, SessionEnv};
use switchyard_wire::mse;
use switchyard_wire::sniff::{Protocol, Sniff, classify};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

use crate::steering::Steering;

/// Enough to classify any protocol we know (the HTTP/2 preface is the longest, 24 bytes).
const SNIFF_BUFFER: usize = 4096;
/// Pause after an accept error such as EMFILE, so a full fd table does not spin the worker.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct Acceptor {
    listener: Option<std::net::TcpListener>,
    /// Taken by the accept loop when the actor starts.
    env: Option<LiveEnv>,
    /// Open connections of this worker (and a view of the others').
    load: WorkerLoad,
    /// The CPU whose connections this listener asks for, if it took the option (see
    /// [`crate::steering`]).
    cpu: Option<u32>,
    tracker: Arc<ConnTracker>,
    /// Terminates sniffed TLS connections (shared by all workers: one session cache).
    tls: TlsTerminator,
    /// Connections of this listener, and large bodies to send on them, that other workers hand
    /// to this one (see [`switchyard_sessions::follow`]); taken by the accept loop.
    inbox: Option<mpsc::Receiver<Handoff>>,
}

impl Acceptor {
    pub fn new(
        listener: std::net::TcpListener,
        env: LiveEnv,
        load: WorkerLoad,
        cpu: Option<u32>,
        tracker: Arc<ConnTracker>,
        tls: TlsTerminator,
        inbox: Option<mpsc::Receiver<Handoff>>,
    ) -> Self {
        Acceptor {
            listener: Some(listener),
            env: Some(env),
            load,
            cpu,
            tracker,
            tls,
            inbox,
        }
    }
}

impl Actor for Acceptor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (Some(std_listener), Some(env)) = (self.listener.take(), self.env.take()) else {
            return;
        };
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(worker = self.load.index(), error = %e, "cannot register listener");
                ctx.stop();
                return;
            }
        };
        let steering = self.cpu.map(Steering::new);
        let accept = accept_loop(
            listener,
            steering,
            env,
            self.load.clone(),
            self.tracker.clone(),
            Rc::new(self.tls.clone()),
            self.inbox.take(),
        );
        ctx.spawn(
            accept
                .into_actor(self)
                .map(|(), _act, ctx: &mut Context<Self>| ctx.stop()),
        );
    }
}

async fn accept_loop(
    listener: TcpListener,
    mut steering: Option<Steering>,
    mut env: LiveEnv,
    load: WorkerLoad,
    tracker: Arc<ConnTracker>,
    tls: Rc<TlsTerminator>,
    mut inbox: Option<mpsc::Receiver<Handoff>>,
) {
    let mut drain = env.current().drain.watch();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(handoff) = next_handoff(&mut inbox) => {
                match handoff {
                    // It keeps the settings it was accepted with.
                    Handoff::Connection(mut moved) => {
                        let settings = std::mem::take(&mut moved.settings);
                        H1Session::resume(moved, env.current().keeping(settings));
                    }
                    Handoff::Body(bulk) => {
                        actix_rt::spawn(bulk.send());
                    }
                }
                continue;
            }
            () = drain.as_mut() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        // The settings of the configuration running now (a reload changes them).
        let env = env.current();
        let max = env.limits.max_connections;
        if load.open() >= max {
            tracing::debug!(%peer, max, "connection limit reached; closing new connection");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let guard = ConnGuard::new(load.counter(), tracker.clone());
        if let Some(steering) = &mut steering {
            steering.rebalance(&listener, &load);
        }
        // Sniffing is short and bounded by `timeouts.sniff`; it runs as its own task so a slow
        // client never delays the next accept.
        actix_rt::spawn(sniff_and_start(
            stream,
            peer,
            env.clone(),
            guard,
            tls.clone(),
        ));
    }
    // Dropping the listener closes the socket: new connections are refused while we drain.
    // Connections still in the inbox are idle ones, which the drain closes anyway: dropped.
    // Bodies are part of answers in flight: sent. Workers that would hand over one more keep it.
    if let Some(mut inbox) = inbox {
        inbox.close();
        while let Ok(handoff) = inbox.try_recv() {
            if let Handoff::Body(bulk) = handoff {
                actix_rt::spawn(bulk.send());
            }
        }
    }
}

/// The next connection or body handed to this worker; never, without an inbox.
async fn next_handoff(inbox: &mut Option<mpsc::Receiver<Handoff>>) -> Option<Handoff> {
    match inbox {
        Some(inbox) => inbox.recv().await,
        None => std::future::pending().await,
    }
}

async fn sniff_and_start(
    mut stream: TcpStream,
    peer: SocketAddr,
    env: Rc<SessionEnv>,
    guard: ConnGuard,
    tls: Rc<TlsTerminator>,
) {
    let deadline = Instant::now() + env.timeouts.sniff;
    let mut prefix = BytesMut::with_capacity(SNIFF_BUFFER);
    let protocol = loop {
        if let Sniff::Is(protocol) = classify(&prefix) {
            break protocol;
        }
        match timeout_at(deadline, stream.read_buf(&mut prefix)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                metrics::connection(Conn::Unrecognised);
                return;
            }
            Ok(Ok(_)) => {}
            Err(_elapsed) => {
                tracing::debug!(%peer, "no protocol recognised before the sniff deadline; closing");
                metrics::connection(Conn::Unrecognised);
                return;
            }
        }
    };
    match protocol {
        Protocol::Http1 => metrics::connection(Conn::Http1),
        Protocol::H2Prior => metrics::connection(Conn::H2c),
        Protocol::Tls => metrics::connection(Conn::Tls),
        Protocol::BitTorrent => metrics::connection(Conn::BitTorrent),
        // Counted below, once it is known to be an MSE key or text.
        Protocol::Opaque => {}
    }
    match protocol {
        Protocol::Http1 => H1Session::start(Transport::Plain(stream), peer, prefix, env, guard),
        // h2c with prior knowledge: the sniffed bytes are the start of the preface.
        Protocol::H2Prior => {
            H2Session::start(Prefixed::new(prefix, stream), peer, "http", env, guard);
        }
        // TLS: the handshake runs here, bounded by `timeouts.tls_handshake`; ALPN picks the
        // session. A failed handshake ends only this connection.
        Protocol::Tls => {
            let io = Prefixed::new(prefix, stream);
            match tls.accept(io, env.timeouts.tls_handshake).await {
                Ok((tls, Alpn::H2)) => H2Session::start(tls, peer, "https", env, guard),
                Ok((tls, Alpn::Http11 | Alpn::None)) => {
                    let transport = Transport::Tls(Box::new(tls));
                    H1Session::start(transport, peer, BytesMut::new(), env, guard);
                }
                Err(e) => {
                    metrics::tls_failed();
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                }
            }
        }
        Protocol::BitTorrent if env.torrent.is_some() => {
            PeerSession::start(stream, peer, prefix, env, guard);
        }
        Protocol::BitTorrent => {
            tracing::debug!(%peer, ?protocol, "seeding is disabled; closing");
        }
        // Not HTTP, TLS or a plain BitTorrent handshake: with seeding on, perhaps an MSE public
        // key (96 random bytes, then at most 512 of padding, then the peer waits for ours).
        // A line break within the key's bytes is a malformed text request (random bytes hold
        // one in about 700 keys, and such a peer retries in plain); more bytes than key and
        // padding is garbage. Both go to the HTTP/1 session, which answers 400.
        Protocol::Opaque if env.torrent.is_some() => {
            let text = |prefix: &[u8]| {
                let key = &prefix[..prefix.len().min(mse::KEY_LEN)];
                key.windows(2).any(|w| w == b"\r\n")
            };
            while prefix.len() < mse::KEY_LEN && !text(&prefix) {
                match timeout_at(deadline, stream.read_buf(&mut prefix)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                    Ok(Ok(_)) => {}
                }
            }
            if !text(&prefix) && prefix.len() <= mse::KEY_LEN + mse::MAX_PAD {
                metrics::connection(Conn::BitTorrent);
                PeerSession::start_encrypted(stream, peer, prefix, env, guard);
            } else {
                metrics::connection(Conn::Http1);
                H1Session::start(Transport::Plain(stream), peer, prefix, env, guard);
            }
        }
        Protocol::Opaque => {
            metrics::connection(Conn::Http1);
            H1Session::start(Transport::Plain(stream), peer, prefix, env, guard);
        }
    }
}
