//! The HTTP/3 session actor (RFC 9114), over `h3` and `h3-quinn`.
//!
//! One [`H3Session`] per QUIC connection whose ALPN is `h3`. QUIC (quinn) owns packets, loss
//! recovery, flow control and stream limits; `h3` owns frames, QPACK and the control streams;
//! this module turns each request stream into a [`Request`], routes it, and writes the
//! [`Response`] back. It decides nothing about what a request means, so ranges, conditionals,
//! precompressed variants and limits behave exactly as over HTTP/1.1 and HTTP/2.
//!
//! The driver is one future: it accepts request streams from `h3` (which also drives the
//! control stream) and runs each stream's work as a local task in a [`JoinSet`] it owns, so all
//! of them are aborted when the session ends.
//!
//! Bounds: streams beyond `quic.max_streams_bidi` are withheld by QUIC (MAX_STREAMS is raised
//! as streams finish); a request body is collected up to `limits.max_body` (413 beyond), each
//! pause bounded by `timeouts.body`; header sections beyond `limits.max_header_bytes` are
//! refused by `h3` (SETTINGS_MAX_FIELD_SECTION_SIZE); a response holds at most [`SEND_CHUNK`]
//! bytes of a file in memory per stream, and a stream whose client grants no window for
//! `timeouts.send` is reset. On drain the session sends GOAWAY, lets the accepted requests
//! finish, then closes the connection with H3_NO_ERROR.
//!
//! Early data (RFC 8470, RFC 9114 §10.9): a request that arrives before the handshake is
//! complete came in 0-RTT and may be a replay. Only GET and HEAD are served from it; anything
//! else is answered 425 Too Early, and the client retries it after the handshake.

use std::cell::Cell;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use h3::error::{Code, StreamError};
use h3::server::RequestStream;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Version};
use switchyard_services::message::{Body, BodyPart, FileRange, Frame, Response};
use switchyard_services::metrics::{self, Proto};
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::date::http_date;
use crate::deadline::within;
use crate::driven::Driven;
use crate::env::{ConnGuard, SessionEnv};
use crate::h2::strip_connection_fields;
use crate::head::Head;

/// The most bytes of a file read at once and handed to QUIC: a file is never in memory beyond
/// one such chunk per stream.
pub(crate) const SEND_CHUNK: usize = 64 * 1024;
/// After GOAWAY, how long accepted requests may take before the connection is closed anyway
/// (`timeouts.shutdown` bounds the whole process).
const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// RFC 9114 §8.1: H3_NO_ERROR (0x0100), the code of a graceful close.
pub(crate) const H3_NO_ERROR: quinn::VarInt = quinn::VarInt::from_u32(0x0100);

type Stream = RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Whether the TLS handshake of a QUIC connection is complete: until it is, requests arrive in
/// 0-RTT (early data). Set by the endpoint when quinn's `ZeroRttAccepted` resolves.
#[derive(Debug, Clone, Default)]
pub struct Handshake(Rc<Cell<bool>>);

impl Handshake {
    pub fn complete(&self) {
        self.0.set(true);
    }

    pub fn is_complete(&self) -> bool {
        self.0.get()
    }
}

/// One HTTP/3 connection's session: its driver future runs in a `Driven` actor, so the
/// connection (and every stream task) lives and dies with that actor.
#[derive(Debug)]
pub struct H3Session;

impl H3Session {
    /// Start a session on an accepted QUIC connection that negotiated ALPN `h3`.
    pub fn start(
        conn: quinn::Connection,
        handshake: Handshake,
        env: Rc<SessionEnv>,
        guard: ConnGuard,
    ) {
        let peer = conn.remote_address();
        let session = H3Conn {
            peer,
            env,
            handshake,
            _guard: guard,
        };
        Driven::start("H3Session", session.run(conn));
    }
}

/// What every stream of one connection shares.
struct H3Conn {
    peer: SocketAddr,
    env: Rc<SessionEnv>,
    handshake: Handshake,
    /// Counts this connection until the driver returns.
    _guard: ConnGuard,
}

impl H3Conn {
    async fn run(self, quic: quinn::Connection) {
        let peer = self.peer;
        let env = self.env.clone();
        let mut builder = h3::server::builder();
        // RFC 9114 §4.2.2: SETTINGS_MAX_FIELD_SECTION_SIZE; larger header sections are refused.
        builder.max_field_section_size(env.limits.max_header_bytes as u64);
        let setup = builder.build::<_, Bytes>(h3_quinn::Connection::new(quic.clone()));
        let mut conn = match timeout(env.timeouts.header, setup).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "HTTP/3 connection setup failed");
                quic.close(H3_NO_ERROR, b"");
                return;
            }
            Err(_elapsed) => {
                tracing::debug!(%peer, "HTTP/3 connection setup timed out");
                quic.close(H3_NO_ERROR, b"");
                return;
            }
        };
        let this = Rc::new(self);
        let mut drain = env.drain.watch();
        let mut streams: JoinSet<()> = JoinSet::new();
        let mut closing = false;
        // Armed when the drain starts.
        let grace = tokio::time::sleep(DRAIN_GRACE);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                biased;
                accepted = conn.accept() => match accepted {
                    Ok(Some(resolver)) => {
                        let this = Rc::clone(&this);
                        let work = async move {
                            match within(this.env.timeouts.header, resolver.resolve_request()).await {
                                Some(Ok((request, stream))) => this.serve_stream(request, stream).await,
                                Some(Err(e)) => {
                                    tracing::debug!(peer = %this.peer, error = %e, "HTTP/3 request refused");
                                }
                                None => {
                                    tracing::debug!(peer = %this.peer, "HTTP/3 request headers timed out");
                                }
                            }
                        };
                        // Most answers are ready at once (a cached file): poll the stream's work
                        // here first, and give it a task of its own only if it must wait.
                        let mut work = Box::pin(work);
                        if !poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx).is_ready())).await {
                            streams.spawn_local(work);
                        }
                    }
                    // GOAWAY exchanged and every accepted request is done.
                    Ok(None) => break,
                    // Also how a client's normal close is reported (an application close with
                    // code 0 or H3_NO_ERROR, or the idle timeout): not worth more than debug.
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "HTTP/3 connection ended");
                        break;
                    }
                },
                Some(done) = streams.join_next(), if !streams.is_empty() => {
                    if let Err(e) = done
                        && e.is_panic()
                    {
                        tracing::error!(%peer, "an HTTP/3 stream task panicked");
                    }
                }
                () = drain.as_mut(), if !closing => {
                    // RFC 9114 §5.2: "a server that is attempting to gracefully shut down a
                    // connection [...] sends a GOAWAY frame"; requests on streams below its
                    // identifier are still answered.
                    closing = true;
                    grace.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                    if let Err(e) = conn.shutdown(1).await {
                        tracing::debug!(%peer, error = %e, "HTTP/3 GOAWAY not sent");
                        break;
                    }
                    tracing::debug!(%peer, open = streams.len(), "HTTP/3 GOAWAY sent: draining");
                }
                () = &mut grace, if closing => {
                    tracing::debug!(%peer, "HTTP/3 requests still running after GOAWAY grace");
                    break;
                }
            }
        }
        streams.abort_all();
        let stats = quic.stats();
        tracing::debug!(
            %peer,
            rtt = ?stats.path.rtt,
            cwnd = stats.path.cwnd,
            lost_packets = stats.path.lost_packets,
            congestion_events = stats.path.congestion_events,
            sent_packets = stats.path.sent_packets,
            "HTTP/3 connection done"
        );
        // RFC 9114 §5.2: "Once all accepted requests have been processed, the server can close
        // the connection" with H3_NO_ERROR.
        quic.close(H3_NO_ERROR, b"");
    }

    /// Answer one request stream: build the request, route it, send the response, log it.
    async fn serve_stream(self: Rc<Self>, request: http::Request<()>, mut stream: Stream) {
        let env = &self.env;
        // Sampled when the headers arrived: requests that came in before the handshake
        // completed are early data.
        let early = !self.handshake.is_complete();
        let (parts, ()) = request.into_parts();
        let Ok(head) = Head::new(parts) else {
            stream.stop_stream(Code::H3_MESSAGE_ERROR);
            return;
        };
        let is_head = head.is_head();
        let log_facts = head.log_facts(env.access_log.as_ref());

        let response = if !head.routable() {
            Response::text(StatusCode::BAD_REQUEST, "400 Bad Request\n")
        } else if early && !(head.method == Method::GET || is_head) {
            // RFC 8470 §5.2: "425 (Too Early) indicates that the server is unwilling to risk
            // processing a request that might be replayed."
            Response::text(StatusCode::TOO_EARLY, "425 Too Early\n")
        } else {
            match self.read_body(&head, &mut stream).await {
                Ok(body) => {
                    let req = head.into_request(Version::HTTP_3, "https", self.peer, body, None);
                    env.router.call(req).await
                }
                Err(BodyError::Answer(status)) => error_response(status),
                Err(BodyError::Stream(e)) => {
                    tracing::debug!(peer = %self.peer, error = %e, "HTTP/3 request body failed");
                    return;
                }
            }
        };

        let status = response.status;
        let sent = match self.send_response(&mut stream, response, is_head).await {
            Ok(sent) => Some(sent),
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "HTTP/3 response not delivered");
                None
            }
        };
        metrics::response(Proto::Http3, status, sent.unwrap_or(0));
        if let (Some(log), Some(facts)) = (&env.access_log, log_facts) {
            facts.record(log, self.peer, "HTTP/3.0", status, sent.unwrap_or(0));
        }
    }

    /// Collect the request body, bounded by `limits.max_body` and, per pause, `timeouts.body`.
    async fn read_body(&self, head: &Head, stream: &mut Stream) -> Result<Bytes, BodyError> {
        let max_body = self.env.limits.max_body;
        let announced = head.content_length();
        if announced.is_some_and(|len| len > max_body) {
            return Err(BodyError::Answer(StatusCode::PAYLOAD_TOO_LARGE));
        }
        let mut collected = BytesMut::new();
        loop {
            let chunk = match timeout(self.env.timeouts.body, stream.recv_data()).await {
                Err(_elapsed) => return Err(BodyError::Answer(StatusCode::REQUEST_TIMEOUT)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Err(e)) => return Err(BodyError::Stream(e)),
            };
            let mut chunk = chunk;
            if (collected.len() + chunk.remaining()) as u64 > max_body {
                return Err(BodyError::Answer(StatusCode::PAYLOAD_TOO_LARGE));
            }
            while chunk.has_remaining() {
                let n = chunk.chunk().len();
                collected.extend_from_slice(chunk.chunk());
                chunk.advance(n);
            }
        }
        // RFC 9114 §4.1.2: a content-length that does not match the DATA received makes the
        // request malformed.
        if announced.is_some_and(|len| len != collected.len() as u64) {
            stream.stop_stream(Code::H3_MESSAGE_ERROR);
            return Err(BodyError::Answer(StatusCode::BAD_REQUEST));
        }
        Ok(collected.freeze())
    }

    /// Send the response head and body. Returns the body bytes sent.
    async fn send_response(
        &self,
        stream: &mut Stream,
        response: Response,
        is_head: bool,
    ) -> Result<u64, SendError> {
        let mut response = response;
        // Shared fields are copied into the map the protocol library takes.
        let mut headers = response.take_headers();
        let Response { status, body, .. } = response;
        // RFC 9110 §6.4.1: 1xx, 204 and 304 responses never carry content.
        let bodiless = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        strip_connection_fields(&mut headers);
        headers.insert(header::SERVER, HeaderValue::from_static("switchyard"));
        headers.insert(header::DATE, http_date());
        if let (false, Some(len)) = (bodiless, body.known_len()) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        let mut head = http::Response::new(());
        *head.status_mut() = status;
        *head.headers_mut() = headers;
        let send_timeout = self.env.timeouts.send;
        bounded(send_timeout, stream.send_response(head)).await?;
        let len = body.len();
        if !(bodiless || is_head || body.is_empty()) {
            let result = send_body(stream, body, send_timeout).await;
            if let Err(e) = &result
                && !matches!(e, SendError::H3(_))
            {
                // The response cannot be completed: reset the stream, not finish it.
                stream.stop_stream(Code::H3_INTERNAL_ERROR);
                return Err(result.unwrap_err());
            }
            result?;
        }
        bounded(send_timeout, stream.finish()).await?;
        Ok(if bodiless || is_head { 0 } else { len })
    }
}

/// Await a send, failing with [`SendError::Stalled`] after `limit`.
async fn bounded<T>(
    limit: Duration,
    send: impl Future<Output = Result<T, StreamError>>,
) -> Result<T, SendError> {
    match within(limit, send).await {
        None => Err(SendError::Stalled),
        Some(result) => result.map_err(SendError::H3),
    }
}

async fn send_body(stream: &mut Stream, body: Body, limit: Duration) -> Result<(), SendError> {
    match body {
        Body::Empty => Ok(()),
        Body::Bytes(bytes) => bounded(limit, stream.send_data(bytes)).await,
        Body::File(range) => send_file(stream, &range, limit).await,
        Body::Parts(parts) => {
            for part in parts {
                match part {
                    BodyPart::Bytes(bytes) => bounded(limit, stream.send_data(bytes)).await?,
                    BodyPart::File(range) => send_file(stream, &range, limit).await?,
                }
            }
            Ok(())
        }
        Body::Stream(mut body) => {
            // A proxied body: DATA as it arrives, then the trailers (RFC 9114 §4.1).
            while let Some(frame) = body.frame().await {
                match frame.map_err(SendError::Io)? {
                    Frame::Data(bytes) => bounded(limit, stream.send_data(bytes)).await?,
                    Frame::Trailers(trailers) => {
                        bounded(limit, stream.send_trailers(trailers)).await?
                    }
                }
            }
            Ok(())
        }
        // HTTP/3 has no Upgrade (RFC 9114 §4.2); a tunnel answer cannot be carried.
        Body::Upgrade(_) => Err(SendError::Io(io::Error::other(
            "an upgrade cannot be answered over HTTP/3",
        ))),
    }
}

/// Send a file range with positional reads, [`SEND_CHUNK`] bytes at a time; each chunk waits
/// for QUIC to take it (flow control) before the next is read.
async fn send_file(
    stream: &mut Stream,
    range: &FileRange,
    limit: Duration,
) -> Result<(), SendError> {
    let mut offset = range.offset;
    let stop = range.offset + range.len;
    while offset < stop {
        let n = read_chunk(range, offset, stop)?;
        offset += n.len() as u64;
        bounded(limit, stream.send_data(n)).await?;
    }
    Ok(())
}

/// Read the next chunk of `range` at `offset` (at most [`SEND_CHUNK`] bytes, not past `stop`).
pub(crate) fn read_chunk(range: &FileRange, offset: u64, stop: u64) -> Result<Bytes, SendError> {
    let n = usize::try_from(stop - offset)
        .unwrap_or(usize::MAX)
        .min(SEND_CHUNK);
    let mut buf = BytesMut::zeroed(n);
    let mut filled = 0;
    while filled < n {
        match range
            .file
            .read_at(&mut buf[filled..], offset + filled as u64)
        {
            // The file shrank under us: the response cannot be completed.
            Ok(0) => return Err(SendError::FileShrank),
            Ok(read) => filled += read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SendError::Io(e)),
        }
    }
    Ok(buf.freeze())
}

/// Why a request body was not collected.
#[derive(Debug)]
enum BodyError {
    /// Answer with this status instead of routing (413, 408, 400).
    Answer(StatusCode),
    /// The stream failed (reset by the client, or a protocol error).
    Stream(StreamError),
}

/// Why a response was not completed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The stream or connection failed (the client reset it, or it went away).
    H3(StreamError),
    /// The client granted no window for `timeouts.send`.
    Stalled,
    FileShrank,
    Io(io::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::H3(e) => write!(f, "{e}"),
            SendError::Stalled => f.write_str("client granted no flow-control window in time"),
            SendError::FileShrank => f.write_str("file shrank while being sent"),
            SendError::Io(e) => write!(f, "reading the file: {e}"),
        }
    }
}

/// A short `text/plain` answer for a request refused before routing.
fn error_response(status: StatusCode) -> Response {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => Response::text(status, "413 Content Too Large\n"),
        StatusCode::REQUEST_TIMEOUT => Response::text(status, "408 Request Timeout\n"),
        _ => Response::text(StatusCode::BAD_REQUEST, "400 Bad Request\n"),
    }
}
