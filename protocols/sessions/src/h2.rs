//! The HTTP/2 session actor (RFC 9113), over the `h2` crate.
//!
//! One [`H2Session`] per connection, whether it arrived in clear with the prior-knowledge
//! preface or over TLS by ALPN. The `h2` crate owns the framing, HPACK, stream states and flow
//! control; this module translates each stream into a [`Request`], routes it, and writes the
//! [`Response`] back with flow control. It decides nothing about what a request means.
//!
//! The driver is one future: it polls the `h2` connection (which reads and writes the socket)
//! and accepts streams; each stream's work runs as a local task in a [`JoinSet`] the driver
//! owns, so streams proceed concurrently and all of them are aborted when the session ends.
//!
//! Bounds: the handshake must complete within `timeouts.header`; streams past
//! `max_concurrent_streams` are refused by `h2` (REFUSED_STREAM); a request body is collected
//! up to `limits.max_body` (413 beyond), with each pause bounded by `timeouts.body`; a response
//! holds at most [`SEND_CHUNK`] bytes of a file in memory and at most `MAX_SEND_BUFFER` bytes
//! buffered per stream, and a stream whose client grants no window for `timeouts.send` is reset.
//! A connection with no open stream for `timeouts.keepalive` is closed gracefully, and so is
//! every connection when the server drains: GOAWAY with the last stream id, in-flight streams
//! finish, then the connection closes. Rapid resets and streams of client errors end the
//! connection with GOAWAY ENHANCE_YOUR_CALM (`h2`'s counters, sized from the configuration).

use std::cell::{RefCell, RefMut};
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use h2::server::{Builder, SendResponse};
use h2::{Reason, RecvStream, SendStream};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};
use switchyard_conf::Http2Config;
use switchyard_services::message::{
    Body, BodyPart, BodyStream, FileRange, Frame, FrameSource, Response,
};
use switchyard_services::metrics::{self, Proto};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};

use crate::date::with_http_date;
use crate::driven::Driven;
use crate::env::{ConnGuard, SessionEnv};
use crate::head::Head;
use crate::io::Guarded;
use switchyard_wire::h2guard::{FloodLimits, Verdict};

/// Bodies in memory up to this size are handed to `h2` whole, with END_STREAM, right after the
/// headers: `h2` sends them as the window allows, so a small response costs one HEADERS and one
/// DATA frame and no wait for capacity. This is the most a stream buffers beyond its window.
const DIRECT_MAX: usize = 64 * 1024;
/// Most request bytes read and dropped after an early answer before the stream is reset.
const DISCARD_MAX: usize = 1024 * 1024;
/// Most bytes asked of the flow-control window at once, and the size of each positional file
/// read: a file is never in memory beyond one such chunk per stream.
const SEND_CHUNK: usize = 64 * 1024;
/// Most response bytes `h2` buffers per stream before it stops granting capacity.
const MAX_SEND_BUFFER: usize = 256 * 1024;
/// After GOAWAY, how long a connection with no open stream waits for the client to close
/// (the graceful GOAWAY needs one PING round trip) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// RFC 9113 §6.5.2: SETTINGS_MAX_FRAME_SIZE lies between 2^14 and 2^24-1.
const FRAME_SIZE_RANGE: (u32, u32) = (1 << 14, (1 << 24) - 1);
/// RFC 9113 §6.9.1: a flow-control window never exceeds 2^31-1.
const MAX_WINDOW: u32 = (1 << 31) - 1;

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
    /// Counts this connection until the driver returns.
    _guard: ConnGuard,
}

/// The `h2` server builder for our configuration. Values outside what RFC 9113 allows are
/// clamped, so a configuration can never make the library panic.
fn builder(cfg: &Http2Config) -> Builder {
    let mut builder = Builder::new();
    builder
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .initial_window_size(cfg.initial_stream_window.min(MAX_WINDOW))
        .initial_connection_window_size(cfg.initial_connection_window.min(MAX_WINDOW))
        .max_frame_size(
            cfg.max_frame_size
                .clamp(FRAME_SIZE_RANGE.0, FRAME_SIZE_RANGE.1),
        )
        .max_header_list_size(cfg.max_header_list_size)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        // Rapid reset (CVE-2023-44487): streams the client resets before we accept them pile
        // up; past this many the connection gets GOAWAY ENHANCE_YOUR_CALM.
        .max_pending_accept_reset_streams(cfg.max_pending_resets)
        // Streams we must reset because of the client's errors, before GOAWAY
        // ENHANCE_YOUR_CALM.
        .max_local_error_reset_streams(Some(cfg.max_error_resets));
    builder
}

impl H2Conn {
    async fn run<S>(self, io: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let peer = self.peer;
        let env = self.env.clone();
        // RFC 9113 §3.4: the client preface is followed by a SETTINGS frame, and our preface is
        // a SETTINGS frame; both must arrive before any stream, within the header timeout.
        // A first look at the client's frames: floods (RFC 9113 §10.5) and frame-level errors the
        // library would report with the wrong code ring `alarm` before it sees them.
        let (io, alarm) = Guarded::new(io, FloodLimits::default());
        let (io, writer) = Coalesced::new(io);
        let handshake = builder(&env.http2).handshake::<_, Bytes>(io);
        let mut conn = match timeout(env.timeouts.header, handshake).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
                return;
            }
            Err(_elapsed) => {
                tracing::debug!(%peer, "HTTP/2 handshake timed out");
                return;
            }
        };
        // From here on, frames are written out once per wakeup of this driver, not per frame.
        writer.defer_flushes();
        let this = Rc::new(self);
        let mut drain = env.drain.watch();
        let mut streams: JoinSet<()> = JoinSet::new();
        let idle = sleep(env.timeouts.keepalive);
        tokio::pin!(idle);
        // When the last stream ended. `idle` is not moved at every stream; when it fires it
        // re-arms itself from here if streams came and went meanwhile.
        let mut last_active = Instant::now();
        // Set once GOAWAY is on its way: from then on `idle` bounds the wait for the close.
        let mut closing = false;
        let mut flooded = false;
        loop {
            tokio::select! {
                biased;
                next = poll_fn(|cx| {
                    let next = match conn.poll_accept(cx) {
                        Poll::Ready(Some(Ok((request, respond)))) => {
                            return Poll::Ready(Next::Stream(request, respond));
                        }
                        Poll::Ready(Some(Err(e))) => Next::Failed(e.to_string()),
                        // The client closed, or GOAWAY was exchanged and no stream is left.
                        Poll::Ready(None) => Next::Closed,
                        Poll::Pending => {
                            // Everything `h2` wrote during this wakeup goes out in one write. A
                            // full socket registers this task for writability; the frames wait
                            // in the (bounded) buffer meanwhile.
                            return match writer.poll_flush_deferred(cx) {
                                Poll::Ready(Err(e)) => Poll::Ready(Next::Failed(e.to_string())),
                                _ => Poll::Pending,
                            };
                        }
                    };
                    Poll::Ready(next)
                }) => match next {
                    Next::Stream(request, respond) => {
                        // Most answers are ready at once (a cached file): poll the stream's
                        // work here first, and give it a task of its own only if it must wait.
                        let mut work = Box::pin(Rc::clone(&this).serve_stream(request, respond));
                        if poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx).is_ready())).await {
                            last_active = Instant::now();
                        } else {
                            streams.spawn_local(work);
                        }
                    }
                    Next::Failed(e) => {
                        tracing::debug!(%peer, error = %e, "HTTP/2 connection ended");
                        break;
                    }
                    Next::Closed => break,
                },
                Some(done) = streams.join_next(), if !streams.is_empty() => {
                    if let Err(e) = done
                        && e.is_panic()
                    {
                        tracing::error!(%peer, "an HTTP/2 stream task panicked");
                    }
                    if streams.is_empty() {
                        last_active = Instant::now();
                    }
                }
                () = &mut idle, if streams.is_empty() => {
                    let wait = if closing { CLOSE_GRACE } else { env.timeouts.keepalive };
                    if last_active + wait > Instant::now() {
                        idle.as_mut().reset(last_active + wait);
                        continue;
                    }
                    if closing {
                        tracing::debug!(%peer, "HTTP/2 client did not close after GOAWAY");
                        break;
                    }
                    closing = true;
                    conn.graceful_shutdown();
                    last_active = Instant::now();
                    idle.as_mut().reset(last_active + CLOSE_GRACE);
                }
                verdict = alarm.rung(), if !flooded => {
                    let reason = match verdict {
                        // RFC 9113 §10.5: "An endpoint MAY treat activity that is suspicious as
                        // a connection error of type ENHANCE_YOUR_CALM."
                        Verdict::Flood(_) => h2::Reason::ENHANCE_YOUR_CALM,
                        Verdict::FrameSize { .. } => h2::Reason::FRAME_SIZE_ERROR,
                        Verdict::NoSettingsFirst { .. } => h2::Reason::PROTOCOL_ERROR,
                        Verdict::FlowControl { .. } => h2::Reason::FLOW_CONTROL_ERROR,
                        Verdict::Compression { .. } => h2::Reason::COMPRESSION_ERROR,
                    };
                    tracing::info!(%peer, ?verdict, %reason, "HTTP/2 connection error: GOAWAY");
                    // Nothing more is read; streams in progress end with the connection.
                    flooded = true;
                    closing = true;
                    streams.abort_all();
                    conn.abrupt_shutdown(reason);
                    last_active = Instant::now();
                    idle.as_mut().reset(last_active + CLOSE_GRACE);
                }
                () = drain.as_mut(), if !closing => {
                    // RFC 9113 §6.8: "A server that is attempting to gracefully shut down a
                    // connection SHOULD send an initial GOAWAY frame with the last stream
                    // identifier set to 2^31-1 and a NO_ERROR code. [...] After allowing time
                    // for any in-flight stream creation (at least one round-trip time), the
                    // server MAY send another GOAWAY frame with an updated last stream
                    // identifier." `h2` sends both; streams below the last id still finish.
                    closing = true;
                    conn.graceful_shutdown();
                    last_active = Instant::now();
                    idle.as_mut().reset(last_active + CLOSE_GRACE);
                }
            }
        }
    }

    /// Answer one stream: build the request, route it, send the response, log it.
    async fn serve_stream(
        self: Rc<Self>,
        request: http::Request<RecvStream>,
        mut respond: SendResponse<Bytes>,
    ) {
        let env = &self.env;
        let (parts, body) = request.into_parts();
        // Taken when the body streams to a proxied member.
        let mut body = Some(body);
        let Ok(head) = Head::new(parts) else {
            respond.send_reset(Reason::PROTOCOL_ERROR);
            return;
        };
        let is_head = head.is_head();
        let log_facts = head.log_facts(env.access_log.as_ref());

        let streams = if head.routable() && body.as_ref().is_some_and(|b| !b.is_end_stream()) {
            env.router.streams_body(head.host.as_deref(), head.path())
        } else {
            None
        };
        let response = if !head.routable() {
            // `*` (server-wide OPTIONS) and other forms we do not serve.
            Response::text(StatusCode::BAD_REQUEST, "400 Bad Request\n")
        } else if let Some(limit) = streams {
            // A proxied location: the body streams to the member as it arrives.
            let announced = head.content_length();
            if limit.is_some_and(|max| announced.is_some_and(|n| n > max)) {
                error_response(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                let recv = body.take().expect("checked above");
                let stream = BodyStream::new(
                    H2RequestBody {
                        recv,
                        limit,
                        seen: 0,
                    },
                    announced,
                );
                let req = head.into_request(
                    Version::HTTP_2,
                    self.scheme,
                    self.peer,
                    Bytes::new(),
                    Some(stream),
                );
                env.router.call(req).await
            }
        } else {
            let recv = body.as_mut().expect("not taken on this path");
            match self.read_body(&head, recv, &mut respond).await {
                Ok(bytes) => {
                    let req =
                        head.into_request(Version::HTTP_2, self.scheme, self.peer, bytes, None);
                    env.router.call(req).await
                }
                Err(BodyError::Answer(status)) => error_response(status),
                Err(BodyError::Stream(e)) => {
                    // Reset by the client, or by `h2` for a protocol violation (a
                    // Content-Length that does not match the DATA): nothing to answer.
                    tracing::debug!(peer = %self.peer, error = %e, "HTTP/2 request body failed");
                    return;
                }
            }
        };

        let status = response.status;
        let sent = match self.send_response(&mut respond, response, is_head).await {
            Ok(sent) => Some(sent),
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "HTTP/2 response not delivered");
                None
            }
        };
        metrics::response(Proto::Http2, status, sent.unwrap_or(0));
        if let (Some(log), Some(facts)) = (&env.access_log, log_facts) {
            facts.record(log, self.peer, "HTTP/2.0", status, sent.unwrap_or(0));
        }
        if let Some(body) = body.as_mut()
            && !body.is_end_stream()
            && sent.is_some()
        {
            self.discard_body(body).await;
        }
        // Dropping the handles ends the stream. RFC 9113 §8.1: "a server MAY request that the
        // client abort transmission of a request without error by sending a RST_STREAM with an
        // error code of NO_ERROR after sending a complete response" — `h2` does exactly that
        // when a response is complete while the request body is still arriving (413, 408).
    }

    /// After an early answer (413, 408), read and drop what the client still sends, up to
    /// [`DISCARD_MAX`] bytes: some clients report a reset that arrives while they are still
    /// uploading as a failure, even with NO_ERROR and a complete response. A client sending
    /// more than that, or pausing longer than `timeouts.body`, gets the RST_STREAM.
    async fn discard_body(&self, body: &mut RecvStream) {
        let mut discarded = 0;
        while discarded < DISCARD_MAX {
            match timeout(self.env.timeouts.body, body.data()).await {
                Ok(Some(Ok(chunk))) => {
                    discarded += chunk.len();
                    if body.flow_control().release_capacity(chunk.len()).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Collect the request body, bounded by `limits.max_body` and, per pause, `timeouts.body`.
    async fn read_body(
        &self,
        head: &Head,
        body: &mut RecvStream,
        respond: &mut SendResponse<Bytes>,
    ) -> Result<Bytes, BodyError> {
        if body.is_end_stream() {
            return Ok(Bytes::new());
        }
        let max_body = self.env.limits.max_body;
        // `h2` has already checked that Content-Length is a number, and checks the DATA
        // against it (RFC 9113 §8.1.1: "A request or response is also malformed if the value of
        // a content-length header field does not equal the sum of the DATA frame payload
        // lengths"): a mismatch resets the stream with PROTOCOL_ERROR and fails `data()`.
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
            let mut interim = http::Response::new(());
            *interim.status_mut() = StatusCode::CONTINUE;
            respond.send_informational(interim)?;
        }
        let mut collected = BytesMut::new();
        let mut first: Option<Bytes> = None;
        loop {
            let chunk = match timeout(self.env.timeouts.body, body.data()).await {
                Err(_elapsed) => return Err(BodyError::Answer(StatusCode::REQUEST_TIMEOUT)),
                Ok(None) => break,
                Ok(Some(chunk)) => chunk?,
            };
            // The bytes are ours now: let the client send more.
            body.flow_control().release_capacity(chunk.len())?;
            let total =
                (collected.len() + first.as_ref().map_or(0, Bytes::len) + chunk.len()) as u64;
            if total > max_body {
                return Err(BodyError::Answer(StatusCode::PAYLOAD_TOO_LARGE));
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
    async fn send_response(
        &self,
        respond: &mut SendResponse<Bytes>,
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
        if !bodiless && let Some(len) = body.known_len() {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        if let Some(alt_svc) = &self.env.alt_svc {
            headers.insert(header::ALT_SVC, alt_svc.clone());
        }
        let mut head = http::Response::new(());
        *head.status_mut() = status;
        *head.headers_mut() = headers;

        let no_data = bodiless || is_head || body.is_empty();
        let mut stream = respond.send_response(head, no_data)?;
        if no_data {
            return Ok(0);
        }
        let len = body.len();
        if let Body::Stream(stream_body) = body {
            let send = Sender {
                stream: &mut stream,
                send_timeout: self.env.timeouts.send,
            };
            let result = send.stream(stream_body).await;
            if result.is_err() {
                stream.send_reset(Reason::CANCEL);
            }
            return result;
        }
        let send = Sender {
            stream: &mut stream,
            send_timeout: self.env.timeouts.send,
        };
        let result = send.body(body).await;
        if let Err(e) = &result
            && !matches!(e, SendError::H2(_))
        {
            // RFC 9113 §8.1: a response that cannot be completed is ended with RST_STREAM;
            // CANCEL says the server gave up on it.
            stream.send_reset(Reason::CANCEL);
        }
        result.map(|()| len)
    }
}

/// What the driver learns from one poll of the connection.
// Lives on the stack for one poll, then the stream moves into its task: boxing the large
// variant would cost an allocation per stream for nothing.
#[allow(clippy::large_enum_variant)]
enum Next {
    Stream(http::Request<RecvStream>, SendResponse<Bytes>),
    Closed,
    Failed(String),
}

/// Sends one response body with flow control.
struct Sender<'a> {
    stream: &'a mut SendStream<Bytes>,
    send_timeout: Duration,
}

impl Sender<'_> {
    async fn body(mut self, body: Body) -> Result<(), SendError> {
        match body {
            // Streams are sent by `Sender::stream`; upgrades do not exist in HTTP/2.
            Body::Empty | Body::Stream(_) | Body::Upgrade(_) => {
                Ok(self.stream.send_data(Bytes::new(), true)?)
            }
            Body::Bytes(bytes) => self.bytes(bytes, true).await,
            Body::File(range) => self.file(&range, true).await,
            Body::Parts(parts) => {
                let last = parts.len().saturating_sub(1);
                for (i, part) in parts.into_iter().enumerate() {
                    match part {
                        BodyPart::Bytes(bytes) => self.bytes(bytes, i == last).await?,
                        BodyPart::File(range) => self.file(&range, i == last).await?,
                    }
                }
                Ok(())
            }
        }
    }

    /// A streamed body: each chunk waits for flow-control capacity, so a slow client slows the
    /// producer; trailers end the stream (gRPC status). Returns the bytes sent.
    async fn stream(mut self, mut body: BodyStream) -> Result<u64, SendError> {
        let mut sent = 0u64;
        loop {
            match body.frame().await {
                None => {
                    self.stream.send_data(Bytes::new(), true)?;
                    return Ok(sent);
                }
                Some(Err(e)) => return Err(SendError::Io(e)),
                Some(Ok(Frame::Trailers(trailers))) => {
                    self.stream.send_trailers(trailers)?;
                    return Ok(sent);
                }
                Some(Ok(Frame::Data(mut bytes))) => {
                    sent += bytes.len() as u64;
                    while !bytes.is_empty() {
                        let n = self.capacity(bytes.len()).await?;
                        let chunk = bytes.split_to(n);
                        self.stream.send_data(chunk, false)?;
                    }
                }
            }
        }
    }

    async fn bytes(&mut self, mut bytes: Bytes, end: bool) -> Result<(), SendError> {
        if bytes.len() <= DIRECT_MAX {
            return Ok(self.stream.send_data(bytes, end)?);
        }
        while !bytes.is_empty() {
            let n = self.capacity(bytes.len()).await?;
            let chunk = bytes.split_to(n);
            self.stream.send_data(chunk, end && bytes.is_empty())?;
        }
        Ok(())
    }

    /// Send a file range with positional reads, one window-sized chunk at a time.
    async fn file(&mut self, range: &FileRange, end: bool) -> Result<(), SendError> {
        if range.len == 0 {
            return Ok(self.stream.send_data(Bytes::new(), end)?);
        }
        let mut offset = range.offset;
        let stop = range.offset + range.len;
        while offset < stop {
            let left = usize::try_from(stop - offset).unwrap_or(usize::MAX);
            let n = self.capacity(left).await?;
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
            offset += n as u64;
            self.stream.send_data(buf.freeze(), end && offset == stop)?;
        }
        Ok(())
    }

    /// Wait until the stream may send some of `want` bytes; returns how many (at least one).
    async fn capacity(&mut self, want: usize) -> Result<usize, SendError> {
        // RFC 9113 §6.9: "A sender MUST NOT send a flow-controlled frame with a length that
        // exceeds the space available in either of the flow-control windows advertised by the
        // receiver." `h2` assigns us capacity from both windows.
        let want = want.min(SEND_CHUNK);
        self.stream.reserve_capacity(want);
        loop {
            let available = self.stream.capacity();
            if available > 0 {
                return Ok(available.min(want));
            }
            let stream = &mut *self.stream;
            match timeout(self.send_timeout, poll_fn(|cx| stream.poll_capacity(cx))).await {
                Err(_elapsed) => return Err(SendError::Stalled),
                // The stream was reset (by the client) or closed.
                Ok(None) => return Err(SendError::Closed),
                Ok(Some(Err(e))) => return Err(SendError::H2(e)),
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// A request body streamed from the client to a proxied member: flow-control capacity is
/// released as each chunk is taken, so the client sends only as fast as the member reads.
struct H2RequestBody {
    recv: RecvStream,
    limit: Option<u64>,
    seen: u64,
}

impl FrameSource for H2RequestBody {
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<io::Result<Frame>>> {
        let this = self.get_mut();
        if !this.recv.is_end_stream() {
            match this.recv.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    this.seen += data.len() as u64;
                    if this.limit.is_some_and(|max| this.seen > max) {
                        return Poll::Ready(Some(Err(io::Error::other("request body too large"))));
                    }
                    return Poll::Ready(Some(Ok(Frame::Data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(io::Error::other(e)))),
                Poll::Ready(None) => {}
            }
        }
        match this.recv.poll_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(t))) => Poll::Ready(Some(Ok(Frame::Trailers(t)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(io::Error::other(e)))),
        }
    }
}

/// Why a request body was not collected.
#[derive(Debug)]
enum BodyError {
    /// Answer with this status instead of routing (413, 408).
    Answer(StatusCode),
    /// The stream failed (reset by the client, or by `h2` for a protocol error).
    Stream(h2::Error),
}

impl From<h2::Error> for BodyError {
    fn from(e: h2::Error) -> Self {
        BodyError::Stream(e)
    }
}

/// Why a response was not completed.
#[derive(Debug)]
enum SendError {
    /// The stream or connection failed (the client reset it, or it went away).
    H2(h2::Error),
    /// The stream ended before the body was sent.
    Closed,
    /// The client granted no window for `timeouts.send`.
    Stalled,
    FileShrank,
    Io(io::Error),
}

impl From<h2::Error> for SendError {
    fn from(e: h2::Error) -> Self {
        SendError::H2(e)
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::H2(e) => write!(f, "{e}"),
            SendError::Closed => f.write_str("stream closed before the body was sent"),
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

/// RFC 9113 §8.2.2: "An endpoint MUST NOT generate an HTTP/2 message containing
/// connection-specific header fields. [...] Connection, Proxy-Connection, Keep-Alive,
/// Transfer-Encoding, and Upgrade" and "TE [...] MUST NOT contain any value other than
/// 'trailers'". Also drops `Content-Length`, which the session derives from the body.
pub(crate) fn strip_connection_fields(headers: &mut HeaderMap) {
    // One pass over the names (no hashing) answers the usual case, where services set none of
    // these; the removals below run only when one is present. `Date` and `Server` need no
    // removal: the caller `insert`s them, which replaces every earlier value.
    let connection_specific = |name: &HeaderName| {
        name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::TE
            || name == header::CONTENT_LENGTH
            || name == "keep-alive"
            || name == "proxy-connection"
    };
    if !headers.keys().any(connection_specific) {
        return;
    }
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

thread_local! {
    /// The `Date` value of the current second, shared by every response of this thread.
    static DATE: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((u64::MAX, None)) };
}

/// The current IMF-fixdate as a header value, rebuilt at most once per second per thread (a
/// clone is a reference-count bump).
pub(crate) fn http_date() -> HeaderValue {
    let secs = crate::date::unix_secs();
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs || cached.1.is_none() {
            let value = with_http_date(HeaderValue::from_bytes).ok();
            *cached = (secs, value);
        }
        cached
            .1
            .clone()
            .unwrap_or_else(|| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
    })
}

/// Frames `h2` writes during one wakeup of the driver are collected here and written to the
/// socket once, when the driver is about to wait again.
///
/// `h2` flushes its frame buffer whenever a DATA payload of more than a few hundred bytes is
/// queued, and flushes the socket after every such write: with many small responses on one
/// connection that is one `writev(2)` per response. This writer copies small writes into a
/// bounded buffer, treats `h2`'s flushes as no-ops once the handshake is done, and is flushed
/// by the driver after each `poll_accept` that found nothing more to do. Large writes (file
/// chunks) go to the socket directly, behind what is buffered, in one vectored write.
struct Coalesced<S> {
    shared: Rc<RefCell<CoalescedState<S>>>,
}

struct CoalescedState<S> {
    io: S,
    buf: BytesMut,
    /// False during the handshake (every flush is real), true afterwards.
    defer: bool,
}

/// The driver's handle on the [`Coalesced`] writer it gave to `h2`.
struct DeferredFlush<S> {
    shared: Rc<RefCell<CoalescedState<S>>>,
}

/// Writes up to this size are copied into the buffer; larger ones are written directly.
const COALESCE_MAX: usize = 16 * 1024;
/// The buffer is written out before it would grow past this.
const COALESCE_LIMIT: usize = 64 * 1024;

impl<S: AsyncWrite + Unpin> Coalesced<S> {
    fn new(io: S) -> (Coalesced<S>, DeferredFlush<S>) {
        let shared = Rc::new(RefCell::new(CoalescedState {
            io,
            buf: BytesMut::new(),
            defer: false,
        }));
        let flush = DeferredFlush {
            shared: Rc::clone(&shared),
        };
        (Coalesced { shared }, flush)
    }

    fn state(&self) -> RefMut<'_, CoalescedState<S>> {
        self.shared.borrow_mut()
    }
}

impl<S: AsyncWrite + Unpin> DeferredFlush<S> {
    fn defer_flushes(&self) {
        self.shared.borrow_mut().defer = true;
    }

    /// Write out what is buffered; `Pending` (with the waker registered) if the socket is full.
    fn poll_flush_deferred(&self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let mut state = self.shared.borrow_mut();
        match state.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut state.io).poll_flush(cx),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> CoalescedState<S> {
    /// Write the whole buffer to the socket.
    fn poll_drain(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        while !self.buf.is_empty() {
            let n = match Pin::new(&mut self.io).poll_write(cx, &self.buf) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.buf.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Accept `bufs`: copied into the buffer when small, else written behind the buffer in one
    /// vectored write. Returns how many of the caller's bytes were taken.
    fn poll_take(
        &mut self,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total <= COALESCE_MAX && self.buf.len() + total <= COALESCE_LIMIT {
            if self.buf.capacity() == 0 {
                self.buf.reserve(COALESCE_LIMIT);
            }
            for b in bufs {
                self.buf.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        if total <= COALESCE_MAX {
            // Small, but the buffer is full: make room first.
            match self.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map_ok(|()| 0),
            }
            for b in bufs {
                self.buf.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        loop {
            const SLICES: usize = 8;
            let mut slices = [io::IoSlice::new(&[]); SLICES];
            slices[0] = io::IoSlice::new(&self.buf);
            let mut count = 1;
            for b in bufs.iter().take(SLICES - 1) {
                slices[count] = io::IoSlice::new(b);
                count += 1;
            }
            let buffered = self.buf.len();
            let n = match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n > buffered {
                self.buf.clear();
                return Poll::Ready(Ok(n - buffered));
            }
            self.buf.advance(n);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.shared.borrow_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.state().poll_take(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.state().poll_take(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let mut state = self.state();
        if state.defer {
            // The driver flushes once per wakeup (`DeferredFlush`).
            return Poll::Ready(Ok(()));
        }
        match state.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut state.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let mut state = self.state();
        match state.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut state.io).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The session against `h2`'s own client over an in-memory pipe, serving this crate's
    //! directory through the real router and files service.

    use std::sync::Arc;

    use h2::client;
    use http::Method;
    use switchyard_conf::Limits;

    use super::*;
    use crate::env::ConnTracker;
    use crate::testing::env;

    /// Start a session on one end of a pipe and hand the client a connection on the other.
    async fn connect(env: Rc<SessionEnv>, client: &client::Builder) -> client::SendRequest<Bytes> {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let guard = ConnGuard::new(Rc::default(), Arc::new(ConnTracker::default()));
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
            assert!(want.len() > DIRECT_MAX / 2);
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
            assert_eq!(err.reason(), Some(Reason::PROTOCOL_ERROR), "{err}");
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
            assert_eq!(err.reason(), Some(Reason::PROTOCOL_ERROR), "{err}");
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
        let cfg = Http2Config {
            max_frame_size: 1,
            initial_stream_window: u32::MAX,
            initial_connection_window: u32::MAX,
            ..Http2Config::default()
        };
        let _ = builder(&cfg);
    }
}
