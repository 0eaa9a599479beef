//! The acceptor: one actor per worker and listener. It accepts, sniffs the protocol from the
//! first bytes (with a deadline), and hands the connection to that protocol's session actor.
//!
//! Sniffing reads (rather than peeks) the first bytes: a peek cannot wait for *more* bytes
//! while some are buffered. The bytes read are handed to the session as the start of its input.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, WrapFuture};
use bytes::BytesMut;
use switchyard_sessions::h1::H1Session;
use switchyard_sessions::io::Transport;
use switchyard_sessions::{ConnGuard, ConnTracker, SessionEnv};
use switchyard_wire::sniff::{Protocol, Sniff, classify};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout_at};

/// Enough to classify any protocol we know (the HTTP/2 preface is the longest, 24 bytes).
const SNIFF_BUFFER: usize = 4096;
/// Pause after an accept error such as EMFILE, so a full fd table does not spin the worker.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct Acceptor {
    worker: usize,
    listener: Option<std::net::TcpListener>,
    env: Rc<SessionEnv>,
    /// Open connections of this worker.
    open: Rc<Cell<usize>>,
    tracker: Arc<ConnTracker>,
}

impl Acceptor {
    pub fn new(
        worker: usize,
        listener: std::net::TcpListener,
        env: Rc<SessionEnv>,
        open: Rc<Cell<usize>>,
        tracker: Arc<ConnTracker>,
    ) -> Self {
        Acceptor {
            worker,
            listener: Some(listener),
            env,
            open,
            tracker,
        }
    }
}

impl Actor for Acceptor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(std_listener) = self.listener.take() else {
            return;
        };
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(worker = self.worker, error = %e, "cannot register listener");
                ctx.stop();
                return;
            }
        };
        let accept = accept_loop(
            listener,
            self.env.clone(),
            self.open.clone(),
            self.tracker.clone(),
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
    env: Rc<SessionEnv>,
    open: Rc<Cell<usize>>,
    tracker: Arc<ConnTracker>,
) {
    let mut drain = env.drain.watch();
    let max = env.limits.max_connections;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
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
        if open.get() >= max {
            tracing::debug!(%peer, max, "connection limit reached; closing new connection");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let guard = ConnGuard::new(open.clone(), tracker.clone());
        // Sniffing is short and bounded by `timeouts.sniff`; it runs as its own task so a slow
        // client never delays the next accept.
        actix_rt::spawn(sniff_and_start(stream, peer, env.clone(), guard));
    }
    // Dropping the listener closes the socket: new connections are refused while we drain.
}

async fn sniff_and_start(
    mut stream: TcpStream,
    peer: SocketAddr,
    env: Rc<SessionEnv>,
    guard: ConnGuard,
) {
    let deadline = Instant::now() + env.timeouts.sniff;
    let mut prefix = BytesMut::with_capacity(SNIFF_BUFFER);
    let protocol = loop {
        if let Sniff::Is(protocol) = classify(&prefix) {
            break protocol;
        }
        match timeout_at(deadline, stream.read_buf(&mut prefix)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_elapsed) => {
                tracing::debug!(%peer, "no protocol recognised before the sniff deadline; closing");
                return;
            }
        }
    };
    match protocol {
        Protocol::Http1 => H1Session::start(Transport::Plain(stream), peer, prefix, env, guard),
        // Hand-off points for the TLS, h2c and peer-wire sessions; until they exist the
        // connection is closed cleanly.
        Protocol::Tls | Protocol::H2Prior | Protocol::BitTorrent => {
            tracing::debug!(%peer, ?protocol, "protocol not enabled on this listener; closing");
        }
    }
}
