//! The `hq-interop` session (HTTP/0.9 over QUIC), for the QUIC interop runner.
//!
//! One [`HqSession`] per QUIC connection whose ALPN is `hq-interop`. Each bidirectional stream
//! carries `GET /path\r\n` (parsed by `switchyard_wire::hq`) and is answered with the bytes of
//! the file, routed through the same [`Router`](switchyard_services::router::Router) as every
//! other protocol, then the stream ends. There is no status line: anything but 200 resets the
//! stream (H3_REQUEST_REJECTED's value, 0x10b, as other hq servers do). Request lines are
//! bounded ([`MAX_REQUEST`]), file bodies go out in [`SEND_CHUNK`](crate::h3::SEND_CHUNK) reads.
//!
//! Early data: requests are all GETs, which RFC 8470 allows from 0-RTT.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Instant as StdInstant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Version};
use switchyard_services::message::Request;
use switchyard_services::metrics::{self, Proto};
use switchyard_wire::hq::{HqRequest, MAX_REQUEST, parse_request};
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::access_log::AccessEntry;
use crate::driven::Driven;
use crate::env::{ConnGuard, SessionEnv};
use crate::h3::{H3_NO_ERROR, Lingering, QuicOut, SendError};

/// Reset code for a refused or failed request (the value of H3_REQUEST_REJECTED).
const REJECTED: quinn::VarInt = quinn::VarInt::from_u32(0x10b);

/// One `hq-interop` connection's session, run in a `Driven` actor.
#[derive(Debug)]
pub struct HqSession;

impl HqSession {
    pub fn start(conn: quinn::Connection, env: Rc<SessionEnv>, guard: ConnGuard) {
        Driven::start("HqSession", run(conn, env, guard));
    }
}

async fn run(conn: quinn::Connection, env: Rc<SessionEnv>, _guard: ConnGuard) {
    let peer = conn.remote_address();
    let mut drain = env.drain.watch();
    let mut streams: JoinSet<Option<quinn::SendStream>> = JoinSet::new();
    let mut lingering = Lingering::default();
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    streams.spawn_local(serve_stream(send, recv, peer, env.clone()));
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "hq connection ended");
                    break;
                }
            },
            Some(done) = streams.join_next(), if !streams.is_empty() => {
                if let Ok(Some(send)) = done {
                    lingering.push(send);
                }
            }
            () = drain.as_mut() => {
                // No more requests: finish the ones in flight and let the client have every
                // answer (closing discards what QUIC has not delivered), then close.
                while let Some(done) = streams.join_next().await {
                    if let Ok(Some(send)) = done {
                        lingering.push(send);
                    }
                }
                let _ = timeout(env.timeouts.send, lingering.delivered()).await;
                conn.close(H3_NO_ERROR, b"");
                break;
            }
        }
    }
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    peer: SocketAddr,
    env: Rc<SessionEnv>,
) -> Option<quinn::SendStream> {
    let started = StdInstant::now();
    let mut buf = Vec::with_capacity(256);
    let path = loop {
        let mut fin = false;
        match timeout(env.timeouts.header, recv.read_chunk(MAX_REQUEST + 2, true)).await {
            Ok(Ok(Some(chunk))) => buf.extend_from_slice(&chunk.bytes),
            Ok(Ok(None)) => fin = true,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "hq request not received");
                return None;
            }
            Err(_elapsed) => {
                let _ = send.reset(REJECTED);
                return None;
            }
        }
        match parse_request(&buf, fin) {
            Ok(HqRequest::Need) => continue,
            Ok(HqRequest::Get(path)) => break path.to_owned(),
            Err(e) => {
                tracing::debug!(%peer, error = ?e, "hq request refused");
                let _ = send.reset(REJECTED);
                let _ = recv.stop(REJECTED);
                return None;
            }
        }
    };
    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path.clone(), None),
    };
    let request = Request {
        method: Method::GET,
        path: path_only,
        query,
        version: Version::HTTP_09,
        host: None,
        headers: HeaderMap::new(),
        scheme: "https",
        peer,
        body: Bytes::new(),
        stream: None,
    };
    let response = env.router.call(request).await;
    let status = response.status;
    let result = if status == StatusCode::OK {
        QuicOut::new(&mut send, env.timeouts.send, false)
            .finish(response.body)
            .await
    } else {
        Err(SendError::Stalled)
    };
    let sent = match &result {
        Ok(n) => {
            let _ = send.finish();
            *n
        }
        Err(e) => {
            if status == StatusCode::OK {
                tracing::debug!(%peer, error = %e, "hq response not delivered");
            }
            let _ = send.reset(REJECTED);
            0
        }
    };
    metrics::response(Proto::Hq, status, sent);
    if let Some(log) = &env.access_log {
        log.record(&AccessEntry {
            peer,
            time: SystemTime::now(),
            method: "GET",
            target: &path,
            protocol: "HTTP/0.9",
            status: status.as_u16(),
            bytes: sent,
            referer: None,
            user_agent: None,
            duration: started.elapsed(),
            host: None,
        });
    }
    // Kept until the client has it, should the connection be closed by a drain.
    result.is_ok().then_some(send)
}
