//! The HTTP/2 session actor (RFC 9113), over our sans-IO connection
//! ([`switchyard_wire::h2::Conn`]).
//!
//! One [`H2Session`] per connection, whether it arrived in clear with the prior-knowledge
//! preface, by `Upgrade: h2c`, or over TLS by ALPN. The wire crate owns framing, HPACK, stream
//! states, flow control and the flood budgets; this module reads and writes the socket,
//! translates each stream into a [`Request`], routes it, and feeds the [`Response`] back. It
//! decides nothing about what a request means.
//!
//! The driver is one future. Each wakeup it reads what the socket has, lets the connection
//! process it, starts the streams it announced, frames queued response data, and writes
//! everything the connection produced in one write. A stream's work is polled once on the
//! spot (a cached file answers at once, with no task and no wakeup); only work that must wait
//! becomes a local task in a [`JoinSet`] the driver owns, so every stream is aborted when the
//! session ends. Stream tasks and the driver share the connection state through an
//! `Rc<RefCell<_>>` on this one thread; a task that queues data wakes the driver.
//!
//! Bounds: the client's preface and SETTINGS must arrive within `timeouts.header`; a request
//! body is collected up to `limits.max_body` (413 beyond), with each pause bounded by
//! `timeouts.body`, and dropped as it arrives when no service reads it (static files); a
//! response holds at most [`SEND_CHUNK`] bytes of a file in memory and at most `send_buffer`
//! bytes queued per stream, and a stream whose client grants no window for
//! `timeouts.send` is reset. The driver stops reading while [`OUT_HIGH`] bytes wait to be
//! written, so a client that does not read cannot make us buffer without bound. A connection
//! with no open stream for `timeouts.keepalive` is closed gracefully, and so is every
//! connection when the server drains: GOAWAY, a PING round trip, GOAWAY with the last stream
//! id; in-flight streams finish, then the connection closes.

use std::cell::RefCell;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header;
use http::{StatusCode, Version};
use switchyard_conf::Http2Config;
use switchyard_services::message::{
    Body, BodyPart, BodySender, BodyStream, FileRange, Frame, Response,
};
use switchyard_services::metrics::{self, Proto};
use switchyard_services::router::BodyUse;
use switchyard_wire::h2::{Conn, Ended, Event, Reason, Recv, Settings};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep, sleep};

use crate::deadline::within;
use crate::driven::Driven;
use crate::env::{AltSvcOnce, ConnGuard, SessionEnv};
use crate::head::{Head, Outgoing};
use crate::spare;

/// Most request bytes read and dropped after an early answer before the stream is reset.
const DISCARD_MAX: usize = 1024 * 1024;
/// The size of each positional file read, and of the pieces a large in-memory body is queued
/// in: a file is never in memory beyond one such chunk per stream (plus what is queued).
const SEND_CHUNK: usize = 64 * 1024;
/// Request body chunks in flight to a proxied member.
const STREAM_CHANNEL: usize = 4;
/// Response bytes queued per stream before its writer waits for the client.
const SEND_BUFFER: usize = 256 * 1024;
/// Bytes of frames the driver lets pile up for the socket before it stops reading and framing
/// more; also the most it hands the socket in one write.
const OUT_HIGH: usize = 256 * 1024;
/// Most slices handed to one vectored write: at 16 KiB frames, `OUT_HIGH` is 32 (a header and
/// a payload for each).
const WRITE_SLICES: usize = 64;
/// Free room the read buffer has before each read: a frame header and a full default frame
/// fit, so a busy connection reads many frames per call.
const READ_MIN: usize = 16 * 1024 + 9;
/// Room the output has when a connection wakes from idle: a batch of small responses fits.
const WRITE_MIN: usize = 16 * 1024;
/// After GOAWAY, how long a connection waits for the client to close (the graceful GOAWAY
/// needs one PING round trip) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

type Shared = Rc<RefCell<Conn>>;

/// One HTTP/2 connection's session: its driver future runs in a `Driven` actor, so the
/// connection (and every stream task the driver owns) lives and dies with that actor.
#[derive(Debug)]
pub struct H2Session;

impl H2Session {
    /// Start a session on `io`, which must begin with the client connection preface (a
    /// [`Prefixed`](crate::io::Prefixed) stream replays what the acceptor sniffed). `scheme` is
    /// `"http"` for h2c, `"https"` over TLS.
    pub fn start<S>(
        io: S,
        peer: SocketAddr,
        scheme: &'static str,
        env: Rc<SessionEnv>,
        guard: ConnGuard,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let conn = H2Conn {
            peer,
            scheme,
            env,
            alt_svc: AltSvcOnce::default(),
            _guard: guard,
        };
        Driven::start("H2Session", conn.run(io));
    }
}

/// What every stream of one connection shares.
struct H2Conn {
    peer: SocketAddr,
    scheme: &'static str,
    env: Rc<SessionEnv>,
    /// Alt-Svc, on the first response head sent only.
    alt_svc: AltSvcOnce,
    /// Counts this connection until the driver returns.
    _guard: ConnGuard,
}

/// The connection's settings from our configuration. The wire crate clamps values outside
/// what RFC 9113 allows, so a configuration can never break the protocol.
fn settings(cfg: &Http2Config) -> Settings {
    Settings {
        max_concurrent_streams: cfg.max_concurrent_streams,
        stream_window: cfg.initial_stream_window,
        connection_window: cfg.initial_connection_window,
        max_frame_size: cfg.max_frame_size,
        max_header_list_size: cfg.max_header_list_size,
        max_pending_resets: cfg.max_pending_resets,
        max_error_resets: cfg.max_error_resets,
        send_buffer: SEND_BUFFER,
        ..Settings::default()
    }
}

impl H2Conn {
    /// The connection's driver, built here and polled in place. An `async fn` would keep `io`
    /// twice, as its argument and inside the driver: over a kilobyte more for every TLS
    /// connection, idle or not.
    fn run<S>(self, io: S) -> impl Future<Output = ()>
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let env = Rc::clone(&self.env);
        let conn = Rc::new(RefCell::new(Conn::new(settings(&env.http2))));
        let mut driver = Driver {
            io,
            conn,
            this: Rc::new(self),
            rbuf: spare::take(),
            streams: JoinSet::new(),
            // RFC 9113 §3.4: the client's preface and SETTINGS must come within the header
            // timeout.
            timer: Box::pin(sleep(env.timeouts.header)),
            phase: Phase::Handshake,
            drain: env.drain.watch(),
            read_closed: false,
            last_active: Instant::now(),
            unflushed: false,
        };
        poll_fn(move |cx| driver.poll(cx))
    }
}

/// Where the driver is in the connection's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the client's preface and SETTINGS.
    Handshake,
    Open,
    /// GOAWAY is on its way (idle, or draining): streams finish, then we close.
    Closing,
    /// The connection ended with an error: our GOAWAY is written, then the write side is
    /// shut and the client's remaining bytes are read and dropped until it closes.
    Lingering,
}

struct Driver<S> {
    io: S,
    conn: Shared,
    this: Rc<H2Conn>,
    rbuf: BytesMut,
    streams: JoinSet<()>,
    /// The deadline of the current phase: handshake, keep-alive, close grace.
    timer: Pin<Box<Sleep>>,
    phase: Phase,
    drain: Pin<Box<tokio::sync::futures::OwnedNotified>>,
    read_closed: bool,
    /// When the last stream ended; the keep-alive timer re-arms from here.
    last_active: Instant,
    /// Bytes went to `io` and no flush has completed since (a TLS stream may hold them).
    unflushed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    fn poll(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        // While the driver runs, what streams queue (those it polls in place included) wakes
        // nobody: the loop below writes it before it returns.
        self.conn.borrow_mut().enter(cx.waker());
        let result = self.drive(cx);
        self.conn.borrow_mut().leave();
        result
    }

    fn drive(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        loop {
            let mut progress = false;
            // Read, unless frames already wait for a client that does not read them.
            let out_len = self.conn.borrow().out.len();
            if !self.read_closed && out_len < OUT_HIGH {
                if self.rbuf.capacity() - self.rbuf.len() < READ_MIN {
                    if self.rbuf.capacity() == 0 {
                        self.rbuf = spare::take();
                    }
                    self.rbuf.reserve(READ_MIN);
                }
                match std::pin::pin!(self.io.read_buf(&mut self.rbuf)).poll(cx) {
                    Poll::Ready(Ok(0)) => {
                        self.read_closed = true;
                        progress = true;
                    }
                    Poll::Ready(Ok(_)) => {
                        progress = true;
                        if self.phase != Phase::Lingering {
                            self.receive();
                        } else {
                            self.rbuf.clear();
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(peer = %self.this.peer, error = %e, "HTTP/2 read failed");
                        return Poll::Ready(());
                    }
                    Poll::Pending => self.release_buffers_if_idle(),
                }
            }
            if self.read_closed && self.phase != Phase::Lingering {
                // The client closed its side: nothing more can be asked of us.
                return Poll::Ready(());
            }
            // New streams.
            loop {
                let event = self.conn.borrow_mut().next_event();
                let Some(event) = event else { break };
                self.start_stream(event, cx);
                progress = true;
            }
            // Stream tasks that ended.
            while let Poll::Ready(Some(done)) = self.streams.poll_join_next(cx) {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!(peer = %self.this.peer, "an HTTP/2 stream task panicked");
                }
                progress = true;
            }
            // Write what the connection produced.
            match self.poll_write_out(cx) {
                Poll::Ready(Err(e)) => {
                    tracing::debug!(peer = %self.this.peer, error = %e, "HTTP/2 write failed");
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(wrote)) => progress |= wrote,
                Poll::Pending => {}
            }
            if let Some(done) = self.phase_step(cx) {
                return done;
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// An idle connection (nothing half-read, nothing to write, no stream) holds no buffer:
    /// they go back to the worker's spares, so ten thousand idle connections cost their
    /// sockets and their HPACK tables, not 32 KiB each.
    fn release_buffers_if_idle(&mut self) {
        if !self.rbuf.is_empty() || !self.streams.is_empty() {
            return;
        }
        let mut conn = self.conn.borrow_mut();
        if conn.active_streams() > 0 || !conn.out.is_empty() {
            return;
        }
        spare::give(std::mem::take(&mut self.rbuf));
        spare::give(conn.out.take_buf());
    }

    /// Hand the bytes read to the connection.
    fn receive(&mut self) {
        let mut conn = self.conn.borrow_mut();
        if conn.out.capacity() == 0 {
            // Given back while idle: answers to what was just read are written into a spare
            // one, not into a buffer that grows by reallocation.
            conn.out.set_buf(spare::take());
            conn.out.buf().reserve(WRITE_MIN);
        }
        if let Err(e) = conn.recv(&mut self.rbuf, std::time::Instant::now()) {
            let level_info = e.reason == Reason::ENHANCE_YOUR_CALM;
            if level_info {
                tracing::info!(peer = %self.this.peer, reason = %e.reason, what = e.what, "HTTP/2 connection error: GOAWAY");
            } else {
                tracing::debug!(peer = %self.this.peer, reason = %e.reason, what = e.what, "HTTP/2 connection error: GOAWAY");
            }
        }
        if self.phase == Phase::Handshake && conn.handshaken() {
            self.phase = Phase::Open;
            drop(conn);
            self.rearm(self.this.env.timeouts.keepalive);
        }
    }

    /// Timers, draining and the end of the connection. `Some` ends the driver.
    fn phase_step(&mut self, cx: &mut TaskContext<'_>) -> Option<Poll<()>> {
        let (ended, done, active, out_empty) = {
            let conn = self.conn.borrow();
            (
                conn.ended(),
                conn.is_done(),
                conn.active_streams(),
                conn.out.is_empty(),
            )
        };
        let idle = active == 0 && self.streams.is_empty();
        if let Some(ended) = ended
            && self.phase != Phase::Lingering
        {
            self.streams.abort_all();
            if ended == Ended::BadPreface {
                return Some(Poll::Ready(()));
            }
            self.phase = Phase::Lingering;
            self.rearm(CLOSE_GRACE);
        }
        if self.phase == Phase::Lingering {
            if out_empty {
                // Our GOAWAY is out: shut our side, and read until the client closes, so
                // our close does not reset the connection before the GOAWAY is read.
                if let Poll::Ready(_) = Pin::new(&mut self.io).poll_shutdown(cx)
                    && self.read_closed
                {
                    return Some(Poll::Ready(()));
                }
            }
            if self.timer.as_mut().poll(cx).is_ready() {
                return Some(Poll::Ready(()));
            }
            return None;
        }
        if done && out_empty {
            return Some(Poll::Ready(()));
        }
        if self.phase == Phase::Open && self.drain.as_mut().poll(cx).is_ready() {
            // RFC 9113 §6.8: "A server that is attempting to gracefully shut down a
            // connection SHOULD send an initial GOAWAY frame with the last stream identifier
            // set to 2^31-1 and a NO_ERROR code. [...] After allowing time for any in-flight
            // stream creation (at least one round-trip time), the server MAY send another
            // GOAWAY frame with an updated last stream identifier."
            self.conn.borrow_mut().start_shutdown();
            self.phase = Phase::Closing;
            self.rearm(CLOSE_GRACE);
            cx.waker().wake_by_ref();
            return None;
        }
        if !idle {
            self.last_active = Instant::now();
            return None;
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        match self.phase {
            Phase::Handshake => {
                tracing::debug!(peer = %self.this.peer, "HTTP/2 handshake timed out");
                Some(Poll::Ready(()))
            }
            Phase::Open => {
                let deadline = self.last_active + self.this.env.timeouts.keepalive;
                if deadline > Instant::now() {
                    self.timer.as_mut().reset(deadline);
                    cx.waker().wake_by_ref();
                    return None;
                }
                self.conn.borrow_mut().start_shutdown();
                self.phase = Phase::Closing;
                self.rearm(CLOSE_GRACE);
                cx.waker().wake_by_ref();
                None
            }
            Phase::Closing => {
                let deadline = self.last_active + CLOSE_GRACE;
                if deadline > Instant::now() {
                    self.timer.as_mut().reset(deadline);
                    cx.waker().wake_by_ref();
                    return None;
                }
                tracing::debug!(peer = %self.this.peer, "HTTP/2 client did not close after GOAWAY");
                Some(Poll::Ready(()))
            }
            Phase::Lingering => None,
        }
    }

    fn rearm(&mut self, after: Duration) {
        self.last_active = Instant::now();
        self.timer.as_mut().reset(self.last_active + after);
    }

    /// Frame queued data and write everything pending. `Ok(true)` when bytes went out.
    fn poll_write_out(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<bool>> {
        let mut wrote = false;
        loop {
            let mut conn = self.conn.borrow_mut();
            if conn.out.len() < OUT_HIGH && conn.wants_write() {
                conn.write_data(OUT_HIGH);
                if conn.take_held() {
                    // A more urgent stream's writer was woken to queue more: be polled again
                    // after it ran (tasks run in the order they were woken).
                    cx.waker().wake_by_ref();
                }
            }
            if conn.out.is_empty() {
                drop(conn);
                if wrote || self.unflushed {
                    // TLS: push the records out; a no-op on TCP. A TLS stream takes bytes
                    // while the socket is full and holds them: until a flush completes, every
                    // wakeup (the socket draining among them) flushes again, or the end of an
                    // answer would wait for the next event, as late as the keep-alive timer.
                    return match Pin::new(&mut self.io).poll_flush(cx) {
                        Poll::Ready(Ok(())) => {
                            self.unflushed = false;
                            Poll::Ready(Ok(wrote))
                        }
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Pending => {
                            self.unflushed = true;
                            Poll::Ready(Ok(wrote))
                        }
                    };
                }
                return Poll::Ready(Ok(false));
            }
            // Frames and the payloads kept by reference in one `writev` (or one pass of the TLS
            // layer, which copies them into its records).
            let mut slices = [io::IoSlice::new(&[]); WRITE_SLICES];
            let count = conn.out.chunks_vectored(&mut slices);
            match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    conn.out.advance(n);
                    wrote = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    drop(conn);
                    if wrote {
                        let _ = Pin::new(&mut self.io).poll_flush(cx);
                    }
                    // No need to mark `unflushed`: bytes are still queued, and the write that
                    // empties the queue sets `wrote`, which flushes.
                    return Poll::Pending;
                }
            }
        }
    }

    /// Start serving a stream the connection announced: poll its work once here, and give
    /// it a task of its own only if it must wait.
    fn start_stream(&mut self, event: Event, cx: &mut TaskContext<'_>) {
        let work = match event {
            Event::Request {
                id,
                head,
                end_stream,
            } => {
                if !self.conn.borrow().is_open(id) {
                    // Reset by the client before we got to it.
                    return;
                }
                let Ok(head) = Head::new(head) else {
                    // RFC 9113 §8.3.1: a Host that contradicts :authority makes the request
                    // malformed.
                    self.conn.borrow_mut().reset(id, Reason::PROTOCOL_ERROR);
                    return;
                };
                let stream = StreamCtx {
                    conn: Rc::clone(&self.conn),
                    this: Rc::clone(&self.this),
                    id,
                };
                Box::pin(stream.serve(head, end_stream)) as Pin<Box<dyn Future<Output = ()>>>
            }
            Event::TooLarge { id } => {
                let stream = StreamCtx {
                    conn: Rc::clone(&self.conn),
                    this: Rc::clone(&self.this),
                    id,
                };
                let response = Response::text(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "431 Request Header Fields Too Large\n",
                );
                Box::pin(stream.answer(response)) as Pin<Box<dyn Future<Output = ()>>>
            }
        };
        let mut work = work;
        if work.as_mut().poll(cx).is_pending() {
            self.streams.spawn_local(work);
        }
    }
}

/// One stream's handle on the connection.
struct StreamCtx {
    conn: Shared,
    this: Rc<H2Conn>,
    id: u32,
}

impl Drop for StreamCtx {
    /// However the stream's work ends (done, failed, aborted with the connection, or a panic),
    /// the connection learns that nobody serves the stream any more: a complete response whose
    /// request is still arriving ends with RST_STREAM(NO_ERROR), an incomplete one with
    /// CANCEL, so the stream never lingers as active.
    fn drop(&mut self) {
        if let Ok(mut conn) = self.conn.try_borrow_mut() {
            conn.finish(self.id);
        }
    }
}

impl StreamCtx {
    /// Answer one request: build it, route it, send the response, log it.
    async fn serve(self, head: Head, end_stream: bool) {
        let this = Rc::clone(&self.this);
        let env = &this.env;
        let is_head = head.is_head();
        let log_facts = head.log_facts(env.access_log.as_ref());
        let mut body_open = !end_stream;

        let body_use = if head.routable() && body_open {
            env.router.body_use(head.host.as_deref(), head.path())
        } else {
            BodyUse::Collect
        };
        let response = if !head.routable() {
            // Authority form and other targets we do not serve.
            Response::text(StatusCode::BAD_REQUEST, "400 Bad Request\n")
        } else if let BodyUse::Stream(limit) = body_use {
            // A proxied location: the body streams to the member as it arrives.
            let announced = head.content_length();
            if limit.is_some_and(|max| announced.is_some_and(|n| n > max)) {
                error_response(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                let (tx, rx) = BodyStream::channel(STREAM_CHANNEL, announced);
                let req = head.into_request(
                    Version::HTTP_2,
                    this.scheme,
                    this.peer,
                    Bytes::new(),
                    Some(rx),
                );
                // Boxed, as the other rare paths below are (bodies, files, streams, multipart,
                // timers): the future every stream allocates, which holds the largest of its
                // paths, shrinks from 2.1 to 1.3 KiB.
                let (response, fed) =
                    Box::pin(async { tokio::join!(env.router.call(req), self.feed(tx, limit)) })
                        .await;
                // Answered before the body ended (a member's early answer, a route that does
                // not read bodies, 413): what the client still sends is read and dropped after
                // the answer, as below, rather than reset under its upload.
                body_open = fed != Fed::Complete;
                if fed == Fed::TooLarge {
                    error_response(StatusCode::PAYLOAD_TOO_LARGE)
                } else {
                    response
                }
            }
        } else {
            // A body nobody reads is dropped as it arrives. It is still read before the
            // answer: an answer before the upload ends would need a reset to stop it, which
            // some clients take badly (curl before 8.1 stalls after a 200).
            let body = if body_open {
                Box::pin(self.read_body(&head, body_use != BodyUse::Discard)).await
            } else {
                Ok(Bytes::new())
            };
            match body {
                Ok(bytes) => {
                    body_open = false;
                    let req =
                        head.into_request(Version::HTTP_2, this.scheme, this.peer, bytes, None);
                    env.router.call(req).await
                }
                Err(BodyError::Answer(status)) => error_response(status),
                Err(BodyError::Stream(reason)) => {
                    // Reset by the client, or by the connection for a protocol violation (a
                    // Content-Length that does not match the DATA): nothing to answer.
                    tracing::debug!(peer = %this.peer, %reason, "HTTP/2 request body failed");
                    return;
                }
            }
        };

        let outgoing = self.outgoing(response, is_head);
        let status = outgoing.status;
        let sent = self.deliver(outgoing).await;
        metrics::response(Proto::Http2, status, sent.unwrap_or(0));
        if let (Some(log), Some(facts)) = (&env.access_log, log_facts) {
            facts.record(log, this.peer, "HTTP/2.0", status, sent.unwrap_or(0));
        }
        if body_open && sent.is_some() && !self.conn.borrow().recv_finished(self.id) {
            Box::pin(self.discard_body()).await;
        }
        // Dropping `self` finishes the stream (see `Drop`).
    }

    /// Answer with `response` without routing (431).
    async fn answer(self, response: Response) {
        let outgoing = self.outgoing(response, false);
        let status = outgoing.status;
        let sent = self.deliver(outgoing).await;
        metrics::response(Proto::Http2, status, sent.unwrap_or(0));
    }

    /// Send the response and wait until all of it is framed, within `timeouts.send` per
    /// wait. The body bytes sent, or `None` when the stream had to be given up: then it is
    /// reset with CANCEL (RFC 9113 §8.1: a response that cannot be completed ends with
    /// RST_STREAM).
    async fn deliver(&self, outgoing: Outgoing) -> Option<u64> {
        let result = match self.send_response(outgoing).await {
            Ok(sent) => {
                let flushed = poll_fn(|cx| self.conn.borrow_mut().poll_sent(self.id, cx));
                match within(self.this.env.timeouts.send, flushed).await {
                    Some(()) => Ok(sent),
                    None => Err(SendError::Stalled),
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(sent) => Some(sent),
            Err(e) => {
                self.give_up(&e);
                None
            }
        }
    }

    /// Reset a stream whose response cannot be completed. Out of line, so the logging's
    /// temporaries take no room in the future of every response.
    #[cold]
    #[inline(never)]
    fn give_up(&self, e: &SendError) {
        tracing::debug!(peer = %self.this.peer, error = %e, "HTTP/2 response not delivered");
        self.conn.borrow_mut().reset(self.id, Reason::CANCEL);
    }

    /// The next piece of the request body, bounded by `timeouts.body` per pause.
    async fn recv(&self) -> Result<Option<Recv>, BodyError> {
        let next = poll_fn(|cx| self.conn.borrow_mut().poll_recv(self.id, cx));
        match within(self.this.env.timeouts.body, next).await {
            None => Err(BodyError::Answer(StatusCode::REQUEST_TIMEOUT)),
            Some(None) => Ok(None),
            Some(Some(Ok(item))) => Ok(Some(item)),
            Some(Some(Err(reason))) => Err(BodyError::Stream(reason)),
        }
    }

    /// Pump the request body into the channel a proxied member reads, as the member takes
    /// it: the client's window reopens only as chunks move on.
    async fn feed(&self, tx: BodySender, limit: Option<u64>) -> Fed {
        let mut seen = 0u64;
        loop {
            let frame = match self.recv().await {
                Ok(None) => return Fed::Complete,
                Ok(Some(Recv::Data(data))) => {
                    seen += data.len() as u64;
                    if limit.is_some_and(|max| seen > max) {
                        let _ = tx
                            .send(Err(io::Error::other("request body too large")))
                            .await;
                        return Fed::TooLarge;
                    }
                    Frame::Data(data)
                }
                Ok(Some(Recv::Trailers(trailers))) => Frame::Trailers(trailers),
                Err(e) => {
                    let _ = tx
                        .send(Err(io::Error::other(format!("request body: {e:?}"))))
                        .await;
                    return Fed::Abandoned;
                }
            };
            if tx.send(Ok(frame)).await.is_err() {
                return Fed::Abandoned;
            }
        }
    }

    /// After an early answer (413, 408), read and drop what the client still sends, up to
    /// [`DISCARD_MAX`] bytes: some clients report a reset that arrives while they are still
    /// uploading as a failure, even with NO_ERROR and a complete response. A client sending
    /// more than that, or pausing longer than `timeouts.body`, gets the RST_STREAM.
    async fn discard_body(&self) {
        let mut discarded = 0;
        while discarded < DISCARD_MAX {
            match self.recv().await {
                Ok(Some(Recv::Data(chunk))) => discarded += chunk.len(),
                _ => return,
            }
        }
    }

    /// Read the request body, bounded by `limits.max_body` and, per pause, `timeouts.body`:
    /// collected, or, when `keep` is false, dropped as it arrives.
    async fn read_body(&self, head: &Head, keep: bool) -> Result<Bytes, BodyError> {
        let max_body = self.this.env.limits.max_body;
        // The connection has already checked that Content-Length is a number, and checks the
        // DATA against it (RFC 9113 §8.1.1): a mismatch resets the stream.
        let announced = head.content_length();
        if announced.is_some_and(|len| len > max_body) {
            return Err(BodyError::Answer(StatusCode::PAYLOAD_TOO_LARGE));
        }
        let expects_continue = head
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects_continue {
            // RFC 9110 §10.1.1: the client waits for this interim response before sending.
            self.conn
                .borrow_mut()
                .send_informational(self.id, 100)
                .map_err(BodyError::Stream)?;
        }
        let mut collected = BytesMut::new();
        let mut first: Option<Bytes> = None;
        let mut received = 0u64;
        loop {
            let chunk = match self.recv().await? {
                None => break,
                Some(Recv::Trailers(_)) => continue,
                Some(Recv::Data(chunk)) => chunk,
            };
            received += chunk.len() as u64;
            if received > max_body {
                return Err(BodyError::Answer(StatusCode::PAYLOAD_TOO_LARGE));
            }
            if !keep {
                continue;
            }
            // A body in one DATA frame (the usual case) is kept without a copy.
            match first.take() {
                None if collected.is_empty() => first = Some(chunk),
                None => collected.extend_from_slice(&chunk),
                Some(previous) => {
                    collected.reserve(previous.len() + chunk.len());
                    collected.extend_from_slice(&previous);
                    collected.extend_from_slice(&chunk);
                }
            }
        }
        Ok(first.unwrap_or_else(|| collected.freeze()))
    }

    /// Send the response head and body. Returns the body bytes sent.
    async fn send_response(&self, outgoing: Outgoing) -> Result<u64, SendError> {
        let Some(body) = self.send_head(outgoing)? else {
            return Ok(0);
        };
        let len = body.len();
        let result = match body {
            Body::Stream(stream_body) => return Box::pin(self.stream(stream_body)).await,
            Body::Empty | Body::Upgrade(_) => self.data(Bytes::new(), true),
            Body::Bytes(bytes) => self.bytes(bytes, true).await,
            Body::File(range) => Box::pin(self.file(&range, true)).await,
            Body::Parts(parts) => Box::pin(self.parts(parts)).await,
        };
        result.map(|()| len)
    }

    /// The response as it will be sent: its head within the client's
    /// SETTINGS_MAX_HEADER_LIST_SIZE (see [`Outgoing::within`]).
    fn outgoing(&self, response: Response, is_head: bool) -> Outgoing {
        let limit = self.conn.borrow().peer_max_header_list_size();
        let alt_svc = self.this.alt_svc.peek(&self.this.env, self.this.scheme);
        Outgoing::new(response, is_head).within(limit.map(u64::from), alt_svc)
    }

    /// Queue the response head; the body that follows it, or `None` when there is none to
    /// send. Not async, so what the head needs is gone before the body is awaited.
    fn send_head(&self, outgoing: Outgoing) -> Result<Option<Body>, SendError> {
        let this = &self.this;
        let no_data = outgoing.body.as_ref().is_none_or(Body::is_empty);
        self.conn
            .borrow_mut()
            .send_head_with(self.id, outgoing.status.as_u16(), no_data, |w| {
                outgoing.fields(w, this.alt_svc.take(&this.env, this.scheme));
            })
            .map_err(SendError::Reset)?;
        Ok(outgoing.body.filter(|_| !no_data))
    }

    /// A multipart body, part after part.
    async fn parts(&self, parts: Vec<BodyPart>) -> Result<(), SendError> {
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.into_iter().enumerate() {
            match part {
                BodyPart::Bytes(bytes) => self.bytes(bytes, i == last).await?,
                BodyPart::File(range) => self.file(&range, i == last).await?,
            }
        }
        Ok(())
    }

    fn data(&self, data: Bytes, end: bool) -> Result<(), SendError> {
        self.conn
            .borrow_mut()
            .send_data(self.id, data, end)
            .map_err(SendError::Reset)
    }

    /// Wait until the stream may queue more, bounded by `timeouts.send`.
    async fn room(&self) -> Result<(), SendError> {
        let room = poll_fn(|cx| self.conn.borrow_mut().poll_send_room(self.id, cx));
        match within(self.this.env.timeouts.send, room).await {
            None => Err(SendError::Stalled),
            Some(Err(reason)) => Err(SendError::Reset(reason)),
            Some(Ok(())) => Ok(()),
        }
    }

    /// A streamed body: each chunk waits for room, so a slow client slows the producer;
    /// trailers end the stream (gRPC status). Returns the bytes sent.
    async fn stream(&self, mut body: BodyStream) -> Result<u64, SendError> {
        let mut sent = 0u64;
        loop {
            self.room().await?;
            match body.frame().await {
                None => {
                    self.data(Bytes::new(), true)?;
                    return Ok(sent);
                }
                Some(Err(e)) => return Err(SendError::Io(e)),
                Some(Ok(Frame::Trailers(trailers))) => {
                    self.conn
                        .borrow_mut()
                        .send_trailers(self.id, trailers)
                        .map_err(SendError::Reset)?;
                    return Ok(sent);
                }
                Some(Ok(Frame::Data(bytes))) => {
                    sent += bytes.len() as u64;
                    self.data(bytes, false)?;
                }
            }
        }
    }

    async fn bytes(&self, mut bytes: Bytes, end: bool) -> Result<(), SendError> {
        while bytes.len() > SEND_CHUNK {
            self.room().await?;
            let chunk = bytes.split_to(SEND_CHUNK);
            self.data(chunk, false)?;
        }
        self.room().await?;
        self.data(bytes, end)
    }

    /// Send a file range with positional reads, one chunk at a time as room allows.
    async fn file(&self, range: &FileRange, end: bool) -> Result<(), SendError> {
        if range.len == 0 {
            return self.data(Bytes::new(), end);
        }
        let mut offset = range.offset;
        let stop = range.offset + range.len;
        while offset < stop {
            self.room().await?;
            let n = usize::try_from(stop - offset)
                .unwrap_or(usize::MAX)
                .min(SEND_CHUNK);
            let chunk = match crate::io::read_file_chunk(&range.file, offset, n) {
                Ok(Some(chunk)) => chunk,
                // The file shrank under us: the response cannot be completed.
                Ok(None) => return Err(SendError::FileShrank),
                Err(e) => return Err(SendError::Io(e)),
            };
            offset += n as u64;
            self.data(chunk, end && offset == stop)?;
        }
        Ok(())
    }
}

/// How feeding a request body to a proxied member ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fed {
    Complete,
    /// The client reset the stream, paused too long, or the member stopped reading.
    Abandoned,
    /// More than the location allows: 413.
    TooLarge,
}

/// Why a request body was not collected.
#[derive(Debug)]
enum BodyError {
    /// Answer with this status instead of routing (413, 408).
    Answer(StatusCode),
    /// The stream was reset (by the client, or for a protocol error).
    Stream(Reason),
}

/// Why a response was not completed.
#[derive(Debug)]
enum SendError {
    /// The stream was reset or the connection ended.
    Reset(Reason),
    /// The client granted no window for `timeouts.send`.
    Stalled,
    FileShrank,
    Io(io::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Reset(reason) => write!(f, "stream reset ({reason})"),
            SendError::Stalled => f.write_str("client granted no flow-control window in time"),
            SendError::FileShrank => f.write_str("file shrank while being sent"),
            SendError::Io(e) => write!(f, "reading the body: {e}"),
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
    //! The session against `h2`'s own client over an in-memory pipe, serving this crate's
    //! directory through the real router and files service.

    use std::sync::Arc;

    use h2::client;
    use http::Method;
    use http::header::{HeaderMap, HeaderName, HeaderValue};
    use switchyard_conf::Limits;

    use super::*;
    use crate::head::strip_connection_fields;
    use crate::testing::env;

    /// Start a session on one end of a pipe and hand the client a connection on the other.
    async fn connect(env: Rc<SessionEnv>, client: &client::Builder) -> client::SendRequest<Bytes> {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        connect_over(ours, theirs, env, client).await
    }

    async fn connect_over<S>(
        ours: tokio::io::DuplexStream,
        theirs: S,
        env: Rc<SessionEnv>,
        client: &client::Builder,
    ) -> client::SendRequest<Bytes>
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let guard = crate::testing::guard();
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("literal address");
        H2Session::start(theirs, peer, "http", env, guard);
        let (send, conn) = client.handshake(ours).await.expect("client handshake");
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        send
    }

    fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://localhost{path}"));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(()).expect("valid request")
    }

    /// Send a request with `body` and collect the response (status, headers, body).
    async fn exchange(
        send: &mut client::SendRequest<Bytes>,
        req: http::Request<()>,
        body: Option<Bytes>,
    ) -> Result<(http::response::Parts, Vec<u8>), h2::Error> {
        let mut send = send.clone().ready().await?;
        let (response, mut stream) = send.send_request(req, body.is_none())?;
        if let Some(body) = body {
            stream.send_data(body, true)?;
        }
        let (parts, mut recv) = response.await?.into_parts();
        let mut bytes = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk?;
            recv.flow_control().release_capacity(chunk.len())?;
            bytes.extend_from_slice(&chunk);
        }
        Ok((parts, bytes))
    }

    /// An idle connection holds its driver and nothing beside it: the transport is not kept a
    /// second time (a TLS stream is 1248 bytes).
    #[test]
    fn a_connection_holds_its_driver_and_nothing_more() {
        run(async {
            let conn = H2Conn {
                peer: "127.0.0.1:40000".parse().expect("literal address"),
                scheme: "http",
                env: env(Limits::default()),
                alt_svc: AltSvcOnce::default(),
                _guard: crate::testing::guard(),
            };
            let (io, _peer) = tokio::io::duplex(64);
            let driver = std::mem::size_of::<Driver<tokio::io::DuplexStream>>();
            let size = std::mem::size_of_val(&conn.run(io));
            assert!(
                size <= driver,
                "H2Conn::run future is {size} bytes, its driver {driver}"
            );
        });
    }

    fn run(test: impl Future<Output = ()>) {
        actix_rt::System::new().block_on(test);
    }

    #[test]
    fn get_head_and_404_are_translated() {
        run(async {
            let mut send = connect(env(Limits::default()), &client::Builder::new()).await;
            let want = std::fs::read("Cargo.toml").expect("read Cargo.toml");
            let get = request(Method::GET, "/Cargo.toml?x=1", &[]);
            let (parts, body) = exchange(&mut send, get, None).await.expect("GET");
            assert_eq!(parts.status, StatusCode::OK);
            assert_eq!(parts.version, Version::HTTP_2);
            assert_eq!(body, want);
            let length = parts.headers.get(header::CONTENT_LENGTH);
            assert_eq!(length, Some(&HeaderValue::from(want.len())));
            assert_eq!(
                parts.headers.get(header::SERVER).map(|v| v.as_bytes()),
                Some(&b"switchyard"[..])
            );
            assert!(parts.headers.contains_key(header::DATE));

            let head = request(Method::HEAD, "/Cargo.toml", &[]);
            let (parts, body) = exchange(&mut send, head, None).await.expect("HEAD");
            assert_eq!(parts.status, StatusCode::OK);
            assert_eq!(parts.headers.get(header::CONTENT_LENGTH), length);
            assert!(body.is_empty());

            let missing = request(Method::GET, "/no-such-file", &[]);
            let (parts, _) = exchange(&mut send, missing, None).await.expect("404");
            assert_eq!(parts.status, StatusCode::NOT_FOUND);
        });
    }

    #[test]
    fn files_are_sent_within_a_small_window() {
        run(async {
            // Not cached: every file is a `Body::File`, read in chunks as the window opens.
            let limits = Limits {
                small_file_max: 0,
                ..Limits::default()
            };
            let mut builder = client::Builder::new();
            builder.initial_window_size(1000);
            let mut send = connect(env(limits), &builder).await;
            let want = std::fs::read("src/h2.rs").expect("read src/h2.rs");
            // Larger than one file chunk: read and queued in pieces.
            assert!(want.len() > SEND_CHUNK / 2);
            let req = request(Method::GET, "/src/h2.rs", &[]);
            let (parts, body) = exchange(&mut send, req, None).await.expect("GET");
            assert_eq!(parts.status, StatusCode::OK);
            assert!(body == want, "body differs from the file");

            let ranges = request(Method::GET, "/src/h2.rs", &[("range", "bytes=0-9,20-29")]);
            let (parts, body) = exchange(&mut send, ranges, None).await.expect("ranges");
            assert_eq!(parts.status, StatusCode::PARTIAL_CONTENT);
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains(&String::from_utf8_lossy(&want[20..30]).into_owned()));
            assert_eq!(
                parts.headers.get(header::CONTENT_LENGTH),
                Some(&HeaderValue::from(body.len()))
            );
        });
    }

    /// A stream that keeps what it is given and passes it on as room allows, as TLS does with
    /// its records: `poll_write` takes bytes while the socket is full, and only `poll_flush` (or
    /// a later write) moves them on.
    struct Buffering<S> {
        inner: S,
        held: Vec<u8>,
    }

    /// What [`Buffering`] holds before `poll_write` must wait (rustls's default is 64 KiB).
    const HELD_MAX: usize = 16 * 1024;

    impl<S: AsyncWrite + Unpin> Buffering<S> {
        fn push(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            while !self.held.is_empty() {
                match Pin::new(&mut self.inner).poll_write(cx, &self.held) {
                    Poll::Ready(Ok(n)) => drop(self.held.drain(..n)),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for Buffering<S> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut TaskContext<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.held.len() >= HELD_MAX {
                std::task::ready!(self.push(cx))?;
            }
            let take = buf.len().min(HELD_MAX - self.held.len());
            self.held.extend_from_slice(&buf[..take]);
            // Whatever fits goes now; the rest stays held, and the caller is told all went.
            let _ = self.push(cx);
            Poll::Ready(Ok(take))
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            std::task::ready!(self.push(cx))?;
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut TaskContext<'_>,
        ) -> Poll<io::Result<()>> {
            std::task::ready!(self.push(cx))?;
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Buffering<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut TaskContext<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    #[test]
    fn bytes_a_tls_stream_holds_are_flushed_when_the_socket_drains() {
        // A narrow pipe is full whenever the last DATA frame is written, so the stream holds
        // it; the driver must flush again once the client has read and room appears, not
        // leave the end of the answer waiting for the next event (the keep-alive timer).
        run(async {
            let limits = Limits {
                small_file_max: 0,
                ..Limits::default()
            };
            let (ours, theirs) = tokio::io::duplex(1024);
            let theirs = Buffering {
                inner: theirs,
                held: Vec::new(),
            };
            let mut send = connect_over(ours, theirs, env(limits), &client::Builder::new()).await;
            let want = std::fs::read("src/h2.rs").expect("read src/h2.rs");
            for _ in 0..3 {
                let req = request(Method::GET, "/src/h2.rs", &[]);
                let answer =
                    tokio::time::timeout(Duration::from_secs(10), exchange(&mut send, req, None))
                        .await
                        .expect("the end of the answer never came")
                        .expect("GET");
                assert!(answer.1 == want, "body differs from the file");
            }
        });
    }

    #[test]
    fn bodies_over_max_body_are_413() {
        run(async {
            let limits = Limits {
                max_body: 16,
                ..Limits::default()
            };
            let mut send = connect(env(limits), &client::Builder::new()).await;
            // Announced too large: answered before any DATA is read.
            let req = request(Method::POST, "/Cargo.toml", &[("content-length", "17")]);
            let body = Some(Bytes::from_static(b"01234567890123456"));
            let (parts, _) = exchange(&mut send, req, body).await.expect("413");
            assert_eq!(parts.status, StatusCode::PAYLOAD_TOO_LARGE);
            // Not announced: the DATA received counts.
            let req = request(Method::POST, "/Cargo.toml", &[]);
            let body = Some(Bytes::from(vec![b'x'; 100]));
            let (parts, _) = exchange(&mut send, req, body).await.expect("413");
            assert_eq!(parts.status, StatusCode::PAYLOAD_TOO_LARGE);
            // Within the limit the request reaches the service (which refuses the method).
            let req = request(Method::POST, "/Cargo.toml", &[]);
            let body = Some(Bytes::from_static(b"small"));
            let (parts, _) = exchange(&mut send, req, body).await.expect("405");
            assert_eq!(parts.status, StatusCode::METHOD_NOT_ALLOWED);
        });
    }

    #[test]
    fn content_length_not_matching_data_is_a_stream_error() {
        run(async {
            let mut send = connect(env(Limits::default()), &client::Builder::new()).await;
            // RFC 9113 §8.1.1: a content-length that does not equal the DATA received is
            // malformed: stream error PROTOCOL_ERROR.
            let req = request(Method::POST, "/Cargo.toml", &[("content-length", "10")]);
            let err = exchange(&mut send, req, Some(Bytes::from_static(b"abc")))
                .await
                .expect_err("a short body must not be answered");
            assert_eq!(err.reason(), Some(h2::Reason::PROTOCOL_ERROR), "{err}");
            // The connection carries on.
            let req = request(Method::GET, "/Cargo.toml", &[]);
            let (parts, _) = exchange(&mut send, req, None).await.expect("GET after");
            assert_eq!(parts.status, StatusCode::OK);
        });
    }

    #[test]
    fn host_differing_from_authority_is_malformed() {
        run(async {
            let mut send = connect(env(Limits::default()), &client::Builder::new()).await;
            let req = request(Method::GET, "/Cargo.toml", &[("host", "elsewhere")]);
            let err = exchange(&mut send, req, None)
                .await
                .expect_err("must be reset");
            assert_eq!(err.reason(), Some(h2::Reason::PROTOCOL_ERROR), "{err}");
        });
    }

    #[test]
    fn connection_fields_are_never_sent() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("content-length", "99"),
            ("etag", "\"x\""),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_connection_fields(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["etag"]);
    }

    #[test]
    fn configuration_out_of_range_is_clamped_not_a_panic() {
        run(async {
            let mut env = env(Limits::default());
            Rc::get_mut(&mut env).expect("unshared").http2 = Arc::new(Http2Config {
                max_frame_size: 1,
                initial_stream_window: u32::MAX,
                initial_connection_window: u32::MAX,
                ..Http2Config::default()
            });
            let mut send = connect(env, &client::Builder::new()).await;
            let get = request(Method::GET, "/Cargo.toml", &[]);
            let (parts, _) = exchange(&mut send, get, None).await.expect("GET");
            assert_eq!(parts.status, StatusCode::OK);
        });
    }
}
