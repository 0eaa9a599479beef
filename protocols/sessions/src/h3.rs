//! The HTTP/3 session actor (RFC 9114), over quinn, with our own framing and QPACK.
//!
//! One [`H3Session`] per QUIC connection whose ALPN is `h3`. QUIC (quinn) owns packets, loss
//! recovery, flow control and stream limits; `switchyard_wire::h3` reads and writes the frames
//! and field sections (sans-IO); this module moves bytes between the two, turns each request
//! stream into a [`Request`](switchyard_services::message::Request), routes it, and writes the
//! [`Response`] back. It decides nothing about what a request means, so ranges, conditionals,
//! precompressed variants and limits behave exactly as over HTTP/1.1 and HTTP/2.
//!
//! Streams:
//! * our control stream, opened first, carries SETTINGS (SETTINGS_MAX_FIELD_SECTION_SIZE =
//!   `limits.max_header_bytes`; the QPACK table capacity stays 0) and, on drain, GOAWAY;
//! * the client's control stream and QPACK streams are read by tasks of their own, and every
//!   violation of RFC 9114 §6.2 / RFC 9204 §4.2 ends the connection with the RFC's code;
//! * each request stream is served by its own future, polled once where it is accepted and
//!   given a task only if it must wait (most answers are a cached file, ready at once).
//!
//! Bounds: streams beyond `quic.max_streams_bidi` are withheld by QUIC (MAX_STREAMS is raised
//! as streams finish); a request head must arrive within `timeouts.header`, and its HEADERS
//! frame within `limits.max_header_bytes` (431 beyond, as the field section's size when
//! decoded); a request body is collected up to `limits.max_body` (413 beyond), each pause
//! bounded by `timeouts.body`; a response holds at most [`SEND_CHUNK`] bytes of a file in
//! memory per stream, and a stream whose client grants no window for `timeouts.send` is
//! reset. On drain the session sends GOAWAY, lets the accepted requests finish, then closes the
//! connection with H3_NO_ERROR.
//!
//! Priorities (RFC 9218): each response stream gets the QUIC send priority of its request's
//! `priority` field, changed later by the client's PRIORITY_UPDATE frames (see
//! [`quic_priority`]); quinn sends the most urgent stream first and shares among equals.
//!
//! Early data (RFC 8470, RFC 9114 §10.9): a request that arrives before the handshake is
//! complete came in 0-RTT and may be a replay. Only GET and HEAD are served from it; anything
//! else is answered 425 Too Early, and the client retries it after the handshake.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, Version};
use quinn::{RecvStream, SendStream, VarInt};
use switchyard_services::message::{
    Body, BodyPart, BodySender, BodyStream, FileRange, Frame, Response,
};
use switchyard_services::metrics::{self, Proto};
use switchyard_services::router::BodyUse;
use switchyard_wire::h3::{self as wire, Code, Control, H3Error, Part, RequestReader, UniKind};
use switchyard_wire::h3::{frame, qpack};
use switchyard_wire::priority::Priority;
use tokio::task::JoinSet;

use crate::deadline::within;
use crate::driven::Driven;
use crate::env::{AltSvcOnce, ConnGuard, SessionEnv};
use crate::head::{Head, Outgoing, strip_connection_fields};

/// The most bytes of a file read at once and handed to QUIC: a file is never in memory beyond
/// one such chunk per stream.
pub(crate) const SEND_CHUNK: usize = 64 * 1024;
/// The most bytes asked of QUIC in one read of a stream.
const READ_CHUNK: usize = 64 * 1024;
/// DATA frames of a streamed request body queued for a proxied member.
const STREAM_CHANNEL: usize = 4;
/// Bodies up to this size travel in the same write as their frame header (one copy); larger
/// ones are handed to QUIC as they are.
const COPY_MAX: usize = 4 * 1024;
/// After GOAWAY, how long accepted requests may take before the connection is closed anyway
/// (`timeouts.shutdown` bounds the whole process).
const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// Finished response streams kept before the first pruning (see [`Lingering`]).
const LINGER_PRUNE: usize = 64;

/// RFC 9114 §8.1: H3_NO_ERROR (0x0100), the code of a graceful close.
pub(crate) const H3_NO_ERROR: VarInt = VarInt::from_u32(0x0100);

fn varint(code: Code) -> VarInt {
    VarInt::from_u64(code.0).unwrap_or(VarInt::MAX)
}

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
        quic: quinn::Connection,
        handshake: Handshake,
        env: Rc<SessionEnv>,
        guard: ConnGuard,
    ) {
        let session = H3Conn {
            peer: quic.remote_address(),
            quic,
            env,
            handshake,
            decoder: RefCell::default(),
            opened: Cell::default(),
            max_field_section: Cell::default(),
            priorities: RefCell::default(),
            lingering: RefCell::default(),
            alt_svc: AltSvcOnce::default(),
            _guard: guard,
        };
        Driven::start("H3Session", session.run());
    }
}

/// What every stream of one connection shares.
struct H3Conn {
    peer: SocketAddr,
    quic: quinn::Connection,
    env: Rc<SessionEnv>,
    handshake: Handshake,
    /// QPACK decoding (no table: scratch space and recent Huffman strings).
    decoder: RefCell<wire::Decoder>,
    /// Which of the client's critical streams are open: control, QPACK encoder, decoder.
    opened: Cell<[bool; 3]>,
    /// The client's SETTINGS_MAX_FIELD_SECTION_SIZE, once its SETTINGS arrived (§4.2.2).
    max_field_section: Cell<Option<u64>>,
    /// PRIORITY_UPDATEs on their way to the request streams they name.
    priorities: RefCell<Priorities>,
    /// Finished response streams, for a graceful close to wait for.
    lingering: RefCell<Lingering>,
    /// Alt-Svc (refreshing the client's record of this alternative), on the first response only.
    alt_svc: AltSvcOnce,
    /// Counts this connection until the driver returns.
    _guard: ConnGuard,
}

impl H3Conn {
    async fn run(self) {
        let peer = self.peer;
        let env = self.env.clone();
        let quic = self.quic.clone();
        // §6.2.1: "Each side MUST initiate a single control stream at the beginning of the
        // connection and send its SETTINGS frame as the first frame on this stream."
        let max_field_section = env.limits.max_header_bytes as u64;
        let mut control =
            match within(env.timeouts.header, open_control(&quic, max_field_section)).await {
                Some(Ok(send)) => send,
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "HTTP/3 control stream not opened");
                    quic.close(H3_NO_ERROR, b"");
                    return;
                }
                None => {
                    tracing::debug!(%peer, "HTTP/3 control stream not opened in time");
                    quic.close(varint(Code::H3_STREAM_CREATION_ERROR), b"");
                    return;
                }
            };
        let this = Rc::new(self);
        let mut drain = env.drain.watch();
        let mut requests: JoinSet<()> = JoinSet::new();
        let mut others: JoinSet<()> = JoinSet::new();
        let mut closing = false;
        // The ID after the last request stream accepted: what GOAWAY names (§5.2).
        let mut next_id = 0u64;
        // Armed when the drain starts.
        let grace = tokio::time::sleep(DRAIN_GRACE);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                biased;
                accepted = quic.accept_bi() => match accepted {
                    Ok((mut send, mut recv)) => {
                        if closing {
                            // §5.2: past the GOAWAY identifier; the client may retry it
                            // elsewhere.
                            let _ = send.reset(varint(Code::H3_REQUEST_REJECTED));
                            let _ = recv.stop(varint(Code::H3_REQUEST_REJECTED));
                            continue;
                        }
                        next_id = u64::from(recv.id()) + 4;
                        let mut work = Box::pin(Rc::clone(&this).serve_stream(send, recv));
                        if !poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx).is_ready())).await {
                            requests.spawn_local(work);
                        }
                    }
                    // Also how a client's normal close is reported (an application close with
                    // code 0 or H3_NO_ERROR, or the idle timeout): not worth more than debug.
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "HTTP/3 connection ended");
                        break;
                    }
                },
                accepted = quic.accept_uni() => match accepted {
                    Ok(recv) => {
                        others.spawn_local(Rc::clone(&this).uni_stream(recv));
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "HTTP/3 connection ended");
                        break;
                    }
                },
                Some(done) = requests.join_next(), if !requests.is_empty() => {
                    if let Err(e) = done
                        && e.is_panic()
                    {
                        tracing::error!(%peer, "an HTTP/3 stream task panicked");
                    }
                    if closing && requests.is_empty() {
                        break;
                    }
                }
                Some(done) = others.join_next(), if !others.is_empty() => {
                    if let Err(e) = done
                        && e.is_panic()
                    {
                        tracing::error!(%peer, "an HTTP/3 control stream task panicked");
                    }
                }
                () = drain.as_mut(), if !closing => {
                    // §5.2: "a server that is attempting to gracefully shut down a connection
                    // [...] sends a GOAWAY frame"; requests on streams below its identifier are
                    // still answered.
                    closing = true;
                    grace.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                    let mut goaway = BytesMut::new();
                    frame::put_goaway(&mut goaway, next_id);
                    match within(env.timeouts.send, control.write_chunk(goaway.freeze())).await {
                        Some(Ok(())) => {}
                        Some(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "HTTP/3 GOAWAY not sent");
                            break;
                        }
                        None => break,
                    }
                    tracing::debug!(%peer, open = requests.len(), "HTTP/3 GOAWAY sent: draining");
                    if requests.is_empty() {
                        break;
                    }
                }
                () = &mut grace, if closing => {
                    tracing::debug!(%peer, "HTTP/3 requests still running after GOAWAY grace");
                    break;
                }
            }
        }
        requests.abort_all();
        if closing {
            // Every response is written; wait (within the grace) until the client has them.
            let lingering = std::mem::take(&mut *this.lingering.borrow_mut());
            if tokio::time::timeout_at(grace.deadline(), lingering.delivered())
                .await
                .is_err()
            {
                tracing::debug!(%peer, "HTTP/3 responses still unacknowledged after GOAWAY grace");
            }
        }
        others.abort_all();
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
        // §5.2: "Once all accepted requests have been processed, the server can close the
        // connection" with H3_NO_ERROR. (A connection already closed keeps its first code.)
        quic.close(H3_NO_ERROR, b"");
        drop(control);
    }

    /// End the connection: a protocol error of the client's (§8).
    fn fail(&self, error: H3Error) {
        tracing::debug!(
            peer = %self.peer,
            code = error.code().0,
            what = error.what(),
            "HTTP/3 connection error"
        );
        self.quic
            .close(varint(error.code()), error.what().as_bytes());
    }

    /// A unidirectional stream the client opened: its type, then, for the control and QPACK
    /// streams, everything it carries until the connection ends.
    async fn uni_stream(self: Rc<Self>, mut recv: RecvStream) {
        let mut buf = BytesMut::new();
        let kind = loop {
            if let Some(kind) = wire::uni_kind(&mut buf) {
                break kind;
            }
            // §6.2: "A receiver MUST tolerate unidirectional streams being closed or reset
            // prior to the reception of the unidirectional stream header."
            match recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
                Ok(None) | Err(_) => return,
            }
        };
        let slot = match kind {
            UniKind::Control => 0,
            UniKind::QpackEncoder => 1,
            UniKind::QpackDecoder => 2,
            UniKind::Push => {
                return self.fail(H3Error::Connection(
                    Code::H3_STREAM_CREATION_ERROR,
                    "client opened a push stream",
                ));
            }
            UniKind::Other(kind) => {
                // §6.2: "the recipient MUST either abort reading of the stream or discard
                // incoming data without further processing"; H3_STREAM_CREATION_ERROR is the
                // code to abort with.
                tracing::trace!(peer = %self.peer, kind, "unknown unidirectional stream");
                let _ = recv.stop(varint(Code::H3_STREAM_CREATION_ERROR));
                return;
            }
        };
        let mut opened = self.opened.get();
        if opened[slot] {
            // §6.2.1, RFC 9204 §4.2: only one of each.
            return self.fail(H3Error::Connection(
                Code::H3_STREAM_CREATION_ERROR,
                "second control or QPACK stream",
            ));
        }
        opened[slot] = true;
        self.opened.set(opened);
        let mut control = wire::ControlReader::default();
        loop {
            let checked = match kind {
                UniKind::Control => loop {
                    match control.next(&mut buf) {
                        Ok(Some(Control::Settings {
                            max_field_section_size,
                        })) => {
                            tracing::trace!(peer = %self.peer, ?max_field_section_size, "HTTP/3 client SETTINGS");
                            self.max_field_section.set(max_field_section_size);
                        }
                        Ok(Some(Control::Goaway(id))) => {
                            tracing::debug!(peer = %self.peer, id, "HTTP/3 client going away");
                        }
                        Ok(Some(Control::Priority { stream, priority })) => {
                            if let Err(e) = self.priorities.borrow_mut().update(stream, priority) {
                                break Err(e);
                            }
                        }
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                },
                UniKind::QpackEncoder => qpack::encoder_instructions(&mut buf),
                _ => qpack::decoder_instructions(&mut buf),
            };
            if let Err(e) = checked {
                return self.fail(e);
            }
            match recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
                // §6.2.1: "If either control stream is closed at any point, this MUST be
                // treated as a connection error of type H3_CLOSED_CRITICAL_STREAM"; RFC 9204
                // §4.2 says the same of the QPACK streams.
                Ok(None) | Err(quinn::ReadError::Reset(_)) => {
                    return self.fail(H3Error::Connection(
                        Code::H3_CLOSED_CRITICAL_STREAM,
                        "client closed a critical stream",
                    ));
                }
                // The connection is gone.
                Err(_) => return,
            }
        }
    }

    /// Answer one request stream: read the head, route the request, send the response, log.
    async fn serve_stream(self: Rc<Self>, mut send: SendStream, recv: RecvStream) {
        let env = &self.env;
        let slot = PrioritySlot::open(&self.priorities, u64::from(send.id()));
        let mut incoming = Incoming {
            recv,
            buf: BytesMut::new(),
            reader: RequestReader::new(env.limits.max_header_bytes as u64),
            ended: false,
        };
        let section = match within(env.timeouts.header, incoming.next()).await {
            Some(Ok(Some(Part::Headers(section)))) => Some(section),
            // §4.2.2: a head larger than the limit is answered 431.
            Some(Ok(Some(Part::TooLarge))) => None,
            Some(Ok(_)) => return,
            Some(Err(e)) => return self.failed(e, &mut send, &mut incoming.recv),
            None => {
                tracing::debug!(peer = %self.peer, "HTTP/3 request head timed out");
                let e = H3Error::Stream(Code::H3_REQUEST_INCOMPLETE, "request head timed out");
                return self.failed(Fail::H3(e), &mut send, &mut incoming.recv);
            }
        };
        // Sampled when the head arrived: requests that came in before the handshake completed
        // are early data.
        let early = !self.handshake.is_complete();
        let decoded = match &section {
            Some(section) => {
                let limit = self.field_limit();
                wire::decode_request(&mut self.decoder.borrow_mut(), section, limit)
            }
            None => Ok(None),
        };
        let (head, content_length) = match decoded {
            Ok(Some((parts, content_length))) => match Head::new(parts) {
                Ok(head) => (head, content_length),
                Err(_mismatch) => {
                    let e = H3Error::Stream(Code::H3_MESSAGE_ERROR, ":authority and Host differ");
                    return self.failed(Fail::H3(e), &mut send, &mut incoming.recv);
                }
            },
            Ok(None) => {
                let response = Response::text(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "431 Request Header Fields Too Large\n",
                );
                self.stop_reading(&mut incoming);
                let outgoing = self.outgoing(response, false);
                let status = outgoing.status;
                let result = self.send_response(send, outgoing, None).await;
                metrics::response(Proto::Http3, status, result.unwrap_or(0));
                return;
            }
            Err(e) => return self.failed(Fail::H3(e), &mut send, &mut incoming.recv),
        };
        let is_head = head.is_head();
        let log_facts = head.log_facts(env.access_log.as_ref());
        // RFC 9218: a PRIORITY_UPDATE that came before the head was sent after it.
        let priority = slot
            .update
            .take()
            .unwrap_or_else(|| Priority::of_request(&head.headers));
        let _ = send.set_priority(quic_priority(priority, slot.id));

        let response = if !head.routable() {
            Response::text(StatusCode::BAD_REQUEST, "400 Bad Request\n")
        } else if early && !(head.method == Method::GET || is_head) {
            // RFC 8470 §5.2: "425 (Too Early) indicates that the server is unwilling to risk
            // processing a request that might be replayed."
            Response::text(StatusCode::TOO_EARLY, "425 Too Early\n")
        } else {
            let body_use = if incoming.ended {
                BodyUse::Collect
            } else {
                env.router.body_use(head.host.as_deref(), head.path())
            };
            if let BodyUse::Stream(limit) = body_use {
                // A proxied location: the body streams to the member as it arrives, under the
                // location's own limit.
                if limit.is_some_and(|max| content_length.is_some_and(|n| n > max)) {
                    error_response(StatusCode::PAYLOAD_TOO_LARGE)
                } else {
                    let (tx, rx) = BodyStream::channel(STREAM_CHANNEL, content_length);
                    let req = head.into_request(
                        Version::HTTP_3,
                        "https",
                        self.peer,
                        Bytes::new(),
                        Some(rx),
                    );
                    let (response, fed) = Box::pin(async {
                        tokio::join!(
                            env.router.call(req),
                            self.feed(&mut incoming, content_length, tx, limit)
                        )
                    })
                    .await;
                    match fed {
                        Fed::Complete | Fed::Abandoned => response,
                        Fed::TooLarge => error_response(StatusCode::PAYLOAD_TOO_LARGE),
                        Fed::Failed(e) => return self.failed(e, &mut send, &mut incoming.recv),
                    }
                }
            } else {
                // A body nobody reads is dropped as it arrives.
                let keep = body_use != BodyUse::Discard;
                match self.read_body(&mut incoming, content_length, keep).await {
                    Ok(body) => {
                        let req =
                            head.into_request(Version::HTTP_3, "https", self.peer, body, None);
                        env.router.call(req).await
                    }
                    Err(BodyError::Answer(status)) => error_response(status),
                    Err(BodyError::Fail(e)) => {
                        return self.failed(e, &mut send, &mut incoming.recv);
                    }
                }
            }
        };
        // §4.1: a response may complete before the request did; the rest is not wanted.
        self.stop_reading(&mut incoming);

        let outgoing = self.outgoing(response, is_head);
        let status = outgoing.status;
        if outgoing
            .body
            .as_ref()
            .is_some_and(|b| b.len() > SEND_CHUNK as u64)
        {
            // A long response waits one turn before its first byte is handed to QUIC: requests
            // that came in the same flight are read meanwhile and have their priorities, so a
            // more urgent one among them is not queued behind this one's body.
            tokio::task::yield_now().await;
            if let Some(priority) = slot.update.take() {
                let _ = send.set_priority(quic_priority(priority, slot.id));
            }
        }
        let sent = match self.send_response(send, outgoing, Some(&slot)).await {
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

    /// A request stream failed: a connection error closes the connection; a stream error
    /// aborts both directions of this stream with its code (§8); a lost stream needs nothing.
    fn failed(&self, fail: Fail, send: &mut SendStream, recv: &mut RecvStream) {
        match fail {
            Fail::H3(e @ H3Error::Connection(..)) => self.fail(e),
            Fail::H3(H3Error::Stream(code, what)) => {
                tracing::debug!(peer = %self.peer, code = code.0, what, "HTTP/3 request refused");
                let _ = recv.stop(varint(code));
                let _ = send.reset(varint(code));
            }
            Fail::Read(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "HTTP/3 request not received");
                let _ = send.reset(varint(Code::H3_REQUEST_CANCELLED));
            }
        }
    }

    /// §4.1: "the server MAY abort reading the request stream, send a complete response, and
    /// cleanly close the sending part of the stream. The error code H3_NO_ERROR SHOULD be used
    /// when requesting that the client stop sending on the request stream."
    fn stop_reading(&self, incoming: &mut Incoming) {
        if !incoming.ended {
            let _ = incoming.recv.stop(varint(Code::H3_NO_ERROR));
            incoming.ended = true;
        }
    }

    /// Pump the request body into the channel a proxied member reads, as the member takes it
    /// (QUIC flow control holds the client back meanwhile), under the location's `limit`. Its
    /// trailers go along; its length is checked against Content-Length (§4.1.2).
    async fn feed(
        &self,
        incoming: &mut Incoming,
        content_length: Option<u64>,
        tx: BodySender,
        limit: Option<u64>,
    ) -> Fed {
        let mut seen = 0u64;
        loop {
            // A frame for the member, or why the body ends early: the member is told, and
            // the feed ends as the second half says.
            let step = match within(self.env.timeouts.body, incoming.next()).await {
                None => Err((io::ErrorKind::TimedOut.into(), Fed::Abandoned)),
                Some(Err(e)) => Err((io::Error::other("request body failed"), Fed::Failed(e))),
                Some(Ok(None)) if content_length.is_some_and(|len| len != seen) => Err((
                    io::Error::other("request body cut short"),
                    Fed::Failed(Fail::H3(H3Error::Stream(
                        Code::H3_MESSAGE_ERROR,
                        "content-length does not match the body",
                    ))),
                )),
                Some(Ok(None)) => return Fed::Complete,
                Some(Ok(Some(Part::Data(data)))) => {
                    seen += data.len() as u64;
                    if limit.is_some_and(|max| seen > max) {
                        Err((io::Error::other("request body too large"), Fed::TooLarge))
                    } else {
                        Ok(Frame::Data(data))
                    }
                }
                Some(Ok(Some(Part::Headers(section)))) => {
                    let limit = self.field_limit();
                    let trailers =
                        wire::decode_trailers(&mut self.decoder.borrow_mut(), &section, limit);
                    trailers.map(Frame::Trailers).map_err(|e| {
                        (
                            io::Error::other("malformed trailers"),
                            Fed::Failed(Fail::H3(e)),
                        )
                    })
                }
                Some(Ok(Some(Part::TooLarge))) => continue,
            };
            match step {
                Ok(frame) => {
                    if tx.send(Ok(frame)).await.is_err() {
                        return Fed::Abandoned;
                    }
                }
                Err((error, fed)) => {
                    let _ = tx.send(Err(error)).await;
                    return fed;
                }
            }
        }
    }

    /// Read the request body, bounded by `limits.max_body` and, per pause, `timeouts.body`:
    /// collected, or, when `keep` is false, dropped as it arrives. Its trailers and its length
    /// are checked against Content-Length either way.
    async fn read_body(
        &self,
        incoming: &mut Incoming,
        content_length: Option<u64>,
        keep: bool,
    ) -> Result<Bytes, BodyError> {
        let max_body = self.env.limits.max_body;
        if content_length.is_some_and(|len| len > max_body) {
            return Err(BodyError::Answer(StatusCode::PAYLOAD_TOO_LARGE));
        }
        let mut collected = BytesMut::new();
        let mut received = 0u64;
        loop {
            match within(self.env.timeouts.body, incoming.next()).await {
                None => return Err(BodyError::Answer(StatusCode::REQUEST_TIMEOUT)),
                Some(Err(e)) => return Err(BodyError::Fail(e)),
                Some(Ok(None)) => break,
                Some(Ok(Some(Part::Data(data)))) => {
                    received += data.len() as u64;
                    if received > max_body {
                        return Err(BodyError::Answer(StatusCode::PAYLOAD_TOO_LARGE));
                    }
                    if !keep {
                        continue;
                    }
                    if collected.is_empty() {
                        collected = BytesMut::from(data);
                    } else {
                        collected.extend_from_slice(&data);
                    }
                }
                Some(Ok(Some(Part::Headers(trailers)))) => {
                    // The trailers are checked (a malformed section is H3_MESSAGE_ERROR) and,
                    // like HTTP/2's request trailers, not passed on.
                    let limit = self.field_limit();
                    wire::decode_trailers(&mut self.decoder.borrow_mut(), &trailers, limit)
                        .map_err(|e| BodyError::Fail(Fail::H3(e)))?;
                }
                Some(Ok(Some(Part::TooLarge))) => {}
            }
        }
        // §4.1.2: a content-length that does not match the DATA received makes the request
        // malformed.
        if content_length.is_some_and(|len| len != received) {
            return Err(BodyError::Fail(Fail::H3(H3Error::Stream(
                Code::H3_MESSAGE_ERROR,
                "content-length does not match the body",
            ))));
        }
        Ok(collected.freeze())
    }

    /// The largest field section we decode (`limits.max_header_bytes`).
    fn field_limit(&self) -> u32 {
        u32::try_from(self.env.limits.max_header_bytes).unwrap_or(u32::MAX)
    }

    /// The response as it will be sent: its head within the client's
    /// SETTINGS_MAX_FIELD_SECTION_SIZE once its SETTINGS arrived (see [`Outgoing::within`]).
    fn outgoing(&self, response: Response, is_head: bool) -> Outgoing {
        Outgoing::new(response, is_head).within(
            self.max_field_section.get(),
            self.alt_svc.peek(&self.env, "https"),
        )
    }

    /// Send the response head and body, then end the stream. Returns the body bytes sent.
    async fn send_response(
        &self,
        mut send: SendStream,
        outgoing: Outgoing,
        priority: Option<&PrioritySlot<'_>>,
    ) -> Result<u64, SendError> {
        let alt_svc = self.alt_svc.take(&self.env, "https");
        let mut out = QuicOut::new(&mut send, self.env.timeouts.send, true);
        out.priority = priority.map(|slot| (&*slot.update, slot.id));
        qpack::put_headers_frame(&mut out.pending, Some(outgoing.status.as_u16()), |w| {
            outgoing.fields(w, alt_svc);
        });
        let body = outgoing.body.unwrap_or(Body::Empty);
        match out.finish(body).await {
            Ok(sent) => {
                let _ = send.finish();
                self.lingering.borrow_mut().push(send);
                Ok(sent)
            }
            Err(e) => {
                // The response cannot be completed: reset the stream, not finish it.
                let _ = send.reset(varint(Code::H3_INTERNAL_ERROR));
                Err(e)
            }
        }
    }
}

/// Open our control stream and send its type and SETTINGS.
async fn open_control(quic: &quinn::Connection, max_field_section: u64) -> io::Result<SendStream> {
    let mut send = quic.open_uni().await.map_err(io::Error::other)?;
    // Ahead of every response on the connection: SETTINGS first, GOAWAY promptly.
    let _ = send.set_priority(i32::MAX);
    let mut out = BytesMut::with_capacity(16);
    frame::put_varint(&mut out, frame::CONTROL_STREAM);
    frame::put_settings(
        &mut out,
        &[(frame::SETTINGS_MAX_FIELD_SECTION_SIZE, max_field_section)],
    );
    send.write_chunk(out.freeze())
        .await
        .map_err(io::Error::from)?;
    Ok(send)
}

/// Response streams whose end is queued but perhaps not yet acknowledged. Closing a connection
/// discards what QUIC has not delivered, so a graceful close first waits for these. Streams the
/// client has acknowledged are pruned whenever the list doubles.
#[derive(Default)]
pub(crate) struct Lingering(Vec<SendStream>);

impl Lingering {
    pub(crate) fn push(&mut self, send: SendStream) {
        self.0.push(send);
        let len = self.0.len();
        if len >= LINGER_PRUNE && len.is_power_of_two() {
            let mut cx = Context::from_waker(Waker::noop());
            self.0
                .retain_mut(|send| pin!(send.stopped()).poll(&mut cx).is_pending());
        }
    }

    /// Until the client has acknowledged (or stopped) every stream.
    pub(crate) async fn delivered(self) {
        for send in self.0 {
            let _ = send.stopped().await;
        }
    }
}

/// The receiving half of a request stream, read frame by frame.
struct Incoming {
    recv: RecvStream,
    buf: BytesMut,
    reader: RequestReader,
    /// The client finished the stream, or we stopped reading it.
    ended: bool,
}

impl Incoming {
    /// The next part of the request; `None` at its end (checked to be complete).
    async fn next(&mut self) -> Result<Option<Part>, Fail> {
        loop {
            if let Some(part) = self.reader.next(&mut self.buf).map_err(Fail::H3)? {
                return Ok(Some(part));
            }
            if self.ended {
                return Ok(None);
            }
            match self.recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) => {
                    self.ended = true;
                    self.reader.finish(&self.buf).map_err(Fail::H3)?;
                    return Ok(None);
                }
                Err(e) => return Err(Fail::Read(e)),
            }
        }
    }
}

/// How a request stream failed.
#[derive(Debug)]
enum Fail {
    H3(H3Error),
    /// The stream was reset by the client, or the connection went away.
    Read(quinn::ReadError),
}

/// The QUIC send priority of a response stream (quinn sends higher values first, and shares
/// among equal ones). Each urgency (RFC 9218 §4.1) has a band of its own, the most urgent on
/// top; within a band a non-incremental response ranks by its place in the request order,
/// earlier first, above the incremental ones, which rank alike and so share the bandwidth
/// (§10). Beyond 2^24 requests on one connection the order saturates: later ones share.
fn quic_priority(priority: Priority, stream: u64) -> i32 {
    const ORDER: i32 = 1 << 24;
    let band = i32::from(7 - priority.urgency.min(7)) << 25;
    if priority.incremental {
        return band;
    }
    let order = i32::try_from(stream / 4)
        .unwrap_or(ORDER - 1)
        .min(ORDER - 1);
    band + ORDER - order
}

/// PRIORITY_UPDATEs (RFC 9218 §7.2) for the request streams they name: a stream being served
/// applies the latest one before its next write; one for a stream not yet accepted waits for
/// it; one for a stream already done is dropped.
#[derive(Debug, Default)]
struct Priorities {
    /// Streams being served and streams named before they were accepted.
    slots: HashMap<u64, Rc<Cell<Option<Priority>>>>,
    /// The id after the last request stream accepted.
    next: u64,
}

impl Priorities {
    fn update(&mut self, stream: u64, priority: Priority) -> Result<(), H3Error> {
        if let Some(slot) = self.slots.get(&stream) {
            slot.set(Some(priority));
            return Ok(());
        }
        if stream < self.next {
            return Ok(());
        }
        // The client may open at most `quic.max_streams_bidi` (at most MAX_STREAMS_BIDI) beyond
        // those accepted: a stream past that cannot be opened yet, and naming it is the
        // H3_ID_ERROR of §7.2. This also bounds the slots waiting for their stream.
        if (stream - self.next) / 4 >= u64::from(switchyard_conf::MAX_STREAMS_BIDI) {
            return Err(H3Error::Connection(
                Code::H3_ID_ERROR,
                "PRIORITY_UPDATE for a stream beyond the stream limit",
            ));
        }
        self.slots
            .insert(stream, Rc::new(Cell::new(Some(priority))));
        Ok(())
    }
}

/// A request stream's place in [`Priorities`], from its acceptance until it is done.
struct PrioritySlot<'c> {
    priorities: &'c RefCell<Priorities>,
    id: u64,
    /// A PRIORITY_UPDATE not yet applied.
    update: Rc<Cell<Option<Priority>>>,
}

impl<'c> PrioritySlot<'c> {
    fn open(priorities: &'c RefCell<Priorities>, id: u64) -> PrioritySlot<'c> {
        let mut all = priorities.borrow_mut();
        all.next = all.next.max(id + 4);
        let update = Rc::clone(all.slots.entry(id).or_default());
        PrioritySlot {
            priorities,
            id,
            update,
        }
    }
}

impl Drop for PrioritySlot<'_> {
    fn drop(&mut self) {
        self.priorities.borrow_mut().slots.remove(&self.id);
    }
}

/// Writes a response body to a QUIC stream, as HTTP/3 DATA frames (`framed`) or as the bare
/// bytes of `hq-interop`. Small pieces gather in `pending` with their frame headers and go out
/// in one write; a large piece follows what is pending in the same write, as its own chunk.
/// Every write waits for QUIC's flow control, bounded by `limit`.
pub(crate) struct QuicOut<'s> {
    send: &'s mut SendStream,
    pub(crate) pending: BytesMut,
    limit: Duration,
    framed: bool,
    /// Where the client's PRIORITY_UPDATEs for this stream arrive, and its id: applied before
    /// each write.
    priority: Option<(&'s Cell<Option<Priority>>, u64)>,
}

impl<'s> QuicOut<'s> {
    pub(crate) fn new(send: &'s mut SendStream, limit: Duration, framed: bool) -> QuicOut<'s> {
        QuicOut {
            send,
            pending: BytesMut::new(),
            limit,
            framed,
            priority: None,
        }
    }

    /// Write the whole body; returns its length. Some of it may still be pending.
    async fn body(&mut self, body: Body) -> Result<u64, SendError> {
        match body {
            Body::Empty => Ok(0),
            Body::Bytes(bytes) => {
                let len = bytes.len() as u64;
                self.data(bytes).await?;
                Ok(len)
            }
            Body::File(range) => {
                self.file(&range).await?;
                Ok(range.len)
            }
            Body::Parts(parts) => {
                let mut sent = 0;
                for part in parts {
                    sent += part.len();
                    match part {
                        BodyPart::Bytes(bytes) => self.data(bytes).await?,
                        BodyPart::File(range) => self.file(&range).await?,
                    }
                }
                Ok(sent)
            }
            Body::Stream(mut body) => {
                // A proxied body: DATA as it arrives, then the trailers (RFC 9114 §4.1).
                let mut sent = 0;
                while let Some(frame) = body.frame().await {
                    match frame.map_err(SendError::Io)? {
                        Frame::Data(bytes) => {
                            sent += bytes.len() as u64;
                            self.data(bytes).await?;
                            // A streamed body goes out as it comes.
                            self.flush().await?;
                        }
                        Frame::Trailers(trailers) if self.framed => self.trailers(trailers),
                        // HTTP/0.9 has no trailers.
                        Frame::Trailers(_) => {}
                    }
                }
                Ok(sent)
            }
            // HTTP/3 has no Upgrade (RFC 9114 §4.2); a tunnel answer cannot be carried.
            Body::Upgrade(_) => Err(SendError::Io(io::Error::other(
                "an upgrade cannot be answered over QUIC",
            ))),
        }
    }

    /// Write the whole body and whatever is still pending; returns the body's length. The
    /// caller finishes the stream.
    pub(crate) async fn finish(&mut self, body: Body) -> Result<u64, SendError> {
        let sent = self.body(body).await?;
        self.flush().await?;
        Ok(sent)
    }

    fn frame_header(&mut self, len: u64) {
        if self.framed {
            frame::put_frame_header(&mut self.pending, frame::DATA, len);
        }
    }

    async fn data(&mut self, bytes: Bytes) -> Result<(), SendError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.frame_header(bytes.len() as u64);
        if bytes.len() <= COPY_MAX {
            self.pending.extend_from_slice(&bytes);
            return Ok(());
        }
        self.write(bytes).await
    }

    /// A file range as one DATA frame, read [`SEND_CHUNK`] bytes at a time: each chunk waits
    /// for QUIC to take it before the next is read.
    async fn file(&mut self, range: &FileRange) -> Result<(), SendError> {
        if range.len == 0 {
            return Ok(());
        }
        self.frame_header(range.len);
        let mut offset = range.offset;
        let stop = range.offset + range.len;
        while offset < stop {
            let chunk = read_chunk(range, offset, stop)?;
            offset += chunk.len() as u64;
            self.write(chunk).await?;
        }
        Ok(())
    }

    fn trailers(&mut self, mut trailers: HeaderMap) {
        strip_connection_fields(&mut trailers);
        qpack::put_headers_frame(&mut self.pending, None, |w| {
            for (name, value) in &trailers {
                w.field(name.as_str(), value.as_bytes());
            }
        });
    }

    /// Write what is pending, then `bytes`.
    async fn write(&mut self, bytes: Bytes) -> Result<(), SendError> {
        if self.pending.is_empty() {
            return self.write_chunks(&mut [bytes]).await;
        }
        let pending = self.pending.split().freeze();
        self.write_chunks(&mut [pending, bytes]).await
    }

    async fn flush(&mut self) -> Result<(), SendError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = self.pending.split().freeze();
        self.write_chunks(&mut [pending]).await
    }

    async fn write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<(), SendError> {
        if let Some((update, id)) = self.priority
            && let Some(priority) = update.take()
        {
            let _ = self.send.set_priority(quic_priority(priority, id));
        }
        match within(self.limit, self.send.write_all_chunks(chunks)).await {
            None => Err(SendError::Stalled),
            Some(result) => result.map_err(|e| SendError::Io(e.into())),
        }
    }
}

/// Read the next chunk of `range` at `offset` (at most [`SEND_CHUNK`] bytes, not past `stop`).
fn read_chunk(range: &FileRange, offset: u64, stop: u64) -> Result<Bytes, SendError> {
    let n = usize::try_from(stop - offset)
        .unwrap_or(usize::MAX)
        .min(SEND_CHUNK);
    match crate::io::read_file_chunk(&range.file, offset, n) {
        Ok(Some(chunk)) => Ok(chunk),
        Ok(None) => Err(SendError::FileShrank),
        Err(e) => Err(SendError::Io(e)),
    }
}

/// Why a request body was not collected.
#[derive(Debug)]
enum BodyError {
    /// Answer with this status instead of routing (413, 408).
    Answer(StatusCode),
    /// The stream failed.
    Fail(Fail),
}

/// How feeding a request body to a proxied member ended.
#[derive(Debug)]
enum Fed {
    Complete,
    /// The client paused too long, or the member stopped reading: its answer stands.
    Abandoned,
    /// More than the location allows: 413.
    TooLarge,
    /// The request stream failed (reset, or malformed): answered as [`Fail`] is.
    Failed(Fail),
}

/// Why a response was not completed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The client granted no window for `timeouts.send`.
    Stalled,
    FileShrank,
    /// Writing to the stream (the client stopped it, or the connection is gone), or reading
    /// the file.
    Io(io::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Stalled => f.write_str("client granted no flow-control window in time"),
            SendError::FileShrank => f.write_str("file shrank while being sent"),
            SendError::Io(e) => write!(f, "{e}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn p(urgency: u8, incremental: bool) -> Priority {
        Priority {
            urgency,
            incremental,
        }
    }

    #[test]
    fn quic_priorities_order_urgency_then_request_order_then_incremental() {
        // Streams 0, 4, 8... in request order.
        let order = [
            quic_priority(p(0, false), 8),
            quic_priority(p(0, false), 12),
            quic_priority(p(0, true), 0),
            quic_priority(p(1, false), 0),
            quic_priority(p(3, false), 4),
            quic_priority(p(3, true), 16),
            quic_priority(p(7, false), 0),
            quic_priority(p(7, true), 0),
        ];
        assert!(order.windows(2).all(|w| w[0] > w[1]), "{order:?}");
        // Incremental responses of one urgency rank alike: quinn shares among them.
        assert_eq!(quic_priority(p(5, true), 0), quic_priority(p(5, true), 400));
        // Every response stays below our control stream, and the order saturates.
        assert!(quic_priority(p(0, false), 0) < i32::MAX);
        assert_eq!(
            quic_priority(p(2, false), 4 << 24),
            quic_priority(p(2, false), 4 << 30)
        );
        assert!(quic_priority(p(2, false), 4 << 30) > quic_priority(p(2, true), 0));
    }

    #[test]
    fn updates_reach_their_stream_before_or_after_it_is_accepted() {
        let all = RefCell::new(Priorities::default());
        // Named before it is accepted: waiting for it.
        all.borrow_mut().update(4, p(1, true)).unwrap();
        let first = PrioritySlot::open(&all, 0);
        let second = PrioritySlot::open(&all, 4);
        assert_eq!(first.update.take(), None);
        assert_eq!(second.update.take(), Some(p(1, true)));
        // While it is served.
        all.borrow_mut().update(0, p(6, false)).unwrap();
        assert_eq!(first.update.take(), Some(p(6, false)));
        // Done: forgotten, and a late update is dropped.
        drop(first);
        all.borrow_mut().update(0, p(0, false)).unwrap();
        assert_eq!(all.borrow().slots.len(), 1);
        drop(second);
        assert!(all.borrow().slots.is_empty());
        // Beyond the streams the client may open yet.
        let limit = 8 + 4 * u64::from(switchyard_conf::MAX_STREAMS_BIDI);
        all.borrow_mut().update(limit - 4, p(2, false)).unwrap();
        let beyond = all.borrow_mut().update(limit, p(2, false));
        assert!(matches!(
            beyond,
            Err(H3Error::Connection(Code::H3_ID_ERROR, _))
        ));
    }
}
