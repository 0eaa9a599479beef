//! The HTTP/1.1 session actor (RFC 9112).
//!
//! One [`H1Session`] per connection. Its driver is a single sequential loop: read until a
//! request head is complete, read its body, route it, write the answer, repeat. Pipelined
//! requests (RFC 9112 §9.3.2) are answered strictly in order because only one request is in
//! flight at a time; their responses are batched in the write buffer and flushed when the
//! session next needs to read, so 50 pipelined requests cost a handful of syscalls.
//!
//! Every wait is bounded: the head must complete within `timeouts.header` of its first byte
//! (slowloris), an idle keep-alive connection closes after `timeouts.keepalive`, a body read may
//! pause at most `timeouts.body`, and a client that stops reading is dropped after
//! `timeouts.send`. Buffers are bounded by the codec's limits. A framing error is answered with
//! its status code and the connection is closed, since the next request's start is unknown.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Instant as StdInstant, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, Version, header};
use switchyard_services::message::{
    Body, BodyPart, BodySender, BodyStream, FileRange, Frame, Request, Response, SharedFields,
    Tunnel,
};
use switchyard_services::metrics::{self, Proto};
use switchyard_services::router::BodyUse;
use switchyard_wire::chunked::{
    ChunkedDecoder, ChunkedError, Decoded, write_chunk_size, write_last_chunk,
};
use switchyard_wire::h1::{
    BodyKind, H1Limits, HostMemo, Parse, RequestHead, parse_request_head_with,
};
use switchyard_wire::h2c::{stream_one, upgrade_request};
use switchyard_wire::response::{
    Fields, Framing, ServerFields, write_continue, write_response_head,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, timeout_at};

use crate::access_log::{AccessEntry, AccessLog};
use crate::date::with_http_date;
use crate::deadline::within;
use crate::driven::Driven;
use crate::env::{AltSvcOnce, ConnGuard, SessionEnv};
use crate::follow::{BULK_MIN, Bulk, Follow, Follower, Moved};
use crate::h2::H2Session;
use crate::head::never_has_content;
use crate::io::{Prefixed, SpliceStreamOne, Transport, send_file};
use crate::spare;

/// Bodies up to this size are copied into the write buffer next to their head (one syscall);
/// larger ones are written from their own buffer.
const COALESCE_MAX: usize = 32 * 1024;
/// Pipelined answers are batched in the write buffer until the session must read again, but
/// never beyond this: a client pipelining many requests without reading cannot make us hold
/// more than this per connection.
const WBUF_HIGH_WATER: usize = 64 * 1024;

/// What answering a request needs besides the request itself.
struct Exchange {
    version: Version,
    is_head: bool,
    keep_alive: bool,
    body_kind: BodyKind,
    expect_continue: bool,
    /// Where the body the route streams goes, and the location's limit on it, until it is fed.
    feeder: Option<(BodySender, Option<u64>)>,
    /// The access log's part, when there is a log; boxed, so that an exchange without one
    /// stays small.
    log: Option<Box<LogStart>>,
}

impl Exchange {
    /// The status of `response` and the body bytes it sends, as the metrics and the log count
    /// them.
    fn counted(&self, response: &Response) -> (StatusCode, u64) {
        let sent = if self.is_head { 0 } else { response.body.len() };
        (response.status, sent)
    }
}

/// What the access log says of a request, kept from its head until it is answered.
struct LogStart {
    log: AccessLog,
    method: Method,
    target: String,
    referer: Option<String>,
    user_agent: Option<String>,
    host: Option<String>,
    started: Option<StdInstant>,
}

/// Whether `body` goes out whole into the write buffer after its head, with no waiting.
/// `sends_body` is false for HEAD and for statuses that never have content: then nothing of
/// it goes out.
fn fits_buffer(body: &Body, sends_body: bool) -> bool {
    match body {
        // A tunnel is no body: it is served after the head.
        Body::Upgrade(_) => false,
        _ if !sends_body => true,
        Body::Empty => true,
        Body::Bytes(bytes) => bytes.len() <= COALESCE_MAX,
        Body::Stream(_) | Body::File(_) | Body::Parts(_) => false,
    }
}

/// How a streamed request body ended.
enum Fed {
    /// Read to its end.
    Complete,
    /// Not read to its end (the member stopped reading it, or the client failed).
    Abandoned,
    /// Longer than the location allows.
    TooLarge,
}

/// Chunks of a streamed request body buffered between the client and the member.
const STREAM_CHANNEL: usize = 4;
/// Room made for each read from the client.
const READ_BUFFER: usize = 8 * 1024;
/// Most room made at once for an announced request body.
const BODY_READ_STEP: usize = 64 * 1024;
/// Smallest file range sent with the socket corked: a smaller one leaves in a segment or two,
/// and corking it would only add two system calls.
const CORK_MIN: u64 = 64 * 1024;
/// Largest piece of a file read into memory at once when `sendfile` cannot be used (TLS).
const FILE_CHUNK: usize = 64 * 1024;
/// RFC 7540 §3.2: "HTTP/1.1 101 Switching Protocols" and the protocol switched to.
const SWITCHING_TO_H2C: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
/// After answering early (an error, or an upload refused before its end) we read and discard
/// what the client still sends, so that closing does not reset the connection before it has
/// read our answer: a client still writing its body fails its write on the reset and never
/// reads the answer. Bounded in time, not bytes: a client over loopback can push megabytes
/// before it notices the answer (nginx's `lingering_time` and `lingering_timeout`, 30 s and 5 s).
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(10);
/// Lingering stops when the client has sent nothing for this long.
const LINGER_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// The HTTP/1.1 session actor: the shell around one connection's driver (see [`Driven`]).
#[derive(Debug)]
pub struct H1Session;

impl H1Session {
    /// Start a session for an accepted connection. `prefix` holds the bytes the acceptor already
    /// read while sniffing the protocol; they are the start of the first request.
    pub fn start(
        stream: Transport,
        peer: SocketAddr,
        prefix: BytesMut,
        env: Rc<SessionEnv>,
        guard: ConnGuard,
    ) {
        let conn = H1Conn::new(stream, peer, prefix, env, guard, Follower::new(0));
        Driven::start("H1Session", conn.run());
    }

    /// Go on serving a plain connection another worker served until now (see
    /// [`crate::follow`]): it moved between two requests, with nothing buffered.
    /// `env` is the worker's environment for the settings the connection keeps.
    pub fn resume(moved: Moved, env: Rc<SessionEnv>) {
        let Moved {
            stream,
            peer,
            guard,
            moves,
            ..
        } = moved;
        let tcp = match tokio::net::TcpStream::from_std(stream) {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot take a moved connection");
                return;
            }
        };
        let conn = H1Conn::new(
            Transport::Plain(tcp),
            peer,
            BytesMut::new(),
            env,
            guard,
            Follower::new(moves),
        );
        Driven::start("H1Session", conn.run());
    }
}

/// Why a connection stops after the current exchange.
enum Close {
    /// The peer closed, timed out idle, or we are draining: nothing more to say.
    Quietly,
    /// We answered an error and the peer may still be sending: drain its bytes, then close.
    Linger,
    /// `Upgrade: h2c` accepted (101 queued): the connection continues as HTTP/2, whose stream
    /// 1 is this HEADERS frame carrying the request that asked for the upgrade.
    UpgradeH2c(Bytes),
    /// Idle, with nothing buffered: the connection goes on at the worker of this index (it
    /// follows its client's CPU, see [`crate::follow`]).
    Move(usize),
}

#[derive(Debug)]
struct H1Conn {
    stream: Transport,
    peer: SocketAddr,
    env: Rc<SessionEnv>,
    limits: H1Limits,
    /// The last Host field checked, reused while the client keeps sending the same one.
    host_memo: HostMemo,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Completes when the server starts draining; ends idle waits.
    drain: Pin<Box<OwnedNotified>>,
    /// Bounds idle keep-alive waits; see `read_head`.
    idle_timer: Pin<Box<tokio::time::Sleep>>,
    /// Set when the current exchange leaves the connection unusable for another request: a
    /// streamed request body not read to its end, a close-delimited response, a tunnel.
    close_after: bool,
    /// Alt-Svc, on the first response only.
    alt_svc: AltSvcOnce,
    /// When this connection looks at its client's CPU, and what it saw.
    follower: Follower,
    /// Counts this connection until the driver returns.
    _guard: ConnGuard,
}

impl H1Conn {
    fn new(
        stream: Transport,
        peer: SocketAddr,
        prefix: BytesMut,
        env: Rc<SessionEnv>,
        guard: ConnGuard,
        follower: Follower,
    ) -> Self {
        let limits = H1Limits {
            max_request_line: env.limits.max_request_line,
            max_header_bytes: env.limits.max_header_bytes,
            max_headers: env.limits.max_headers,
        };
        let mut rbuf = prefix;
        rbuf.reserve(READ_BUFFER);
        let drain = env.drain.watch();
        let idle_timer = Box::pin(tokio::time::sleep(env.timeouts.keepalive));
        H1Conn {
            stream,
            peer,
            env,
            limits,
            host_memo: HostMemo::default(),
            rbuf,
            wbuf: BytesMut::new(),
            drain,
            idle_timer,
            close_after: false,
            alt_svc: AltSvcOnce::default(),
            follower,
            _guard: guard,
        }
    }

    /// The connection's driver. A block rather than an `async fn`: the future of an `async fn`
    /// keeps a second copy of its by-value arguments, here the whole connection state.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would hold the state twice"
    )]
    fn run(mut self) -> impl Future<Output = ()> {
        async move {
            let close = match self.serve().await {
                Ok(close) => close,
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "HTTP/1.1 connection failed");
                    return;
                }
            };
            if self.flush().await.is_err() {
                return;
            }
            match close {
                Close::Quietly => {}
                Close::Linger => self.linger().await,
                Close::UpgradeH2c(stream_one) => self.upgrade_h2c(stream_one),
                Close::Move(to) => self.move_to(to),
            }
        }
    }

    /// Hand the connection to an HTTP/2 session (RFC 7540 §3.2); the 101 has been sent.
    fn upgrade_h2c(self, stream_one: Bytes) {
        let H1Conn {
            stream,
            peer,
            env,
            rbuf,
            _guard,
            ..
        } = self;
        let Transport::Plain(tcp) = stream else {
            return;
        };
        let io = SpliceStreamOne::new(Prefixed::new(rbuf, tcp), stream_one);
        H2Session::start(io, peer, "http", env, _guard);
    }

    /// Hand the connection to worker `to`, or go on serving it here if that worker cannot take
    /// it now.
    fn move_to(self, to: usize) {
        let H1Conn {
            stream,
            peer,
            env,
            follower,
            _guard: mut guard,
            ..
        } = self;
        let (Transport::Plain(tcp), Some(follow)) = (stream, env.follow.clone()) else {
            return;
        };
        // Out of this worker's reactor; the other worker registers it with its own.
        let stream = match tcp.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot move a connection");
                return;
            }
        };
        guard.count_for(follow.counter(to));
        let moved = Moved {
            stream,
            peer,
            guard,
            settings: env.settings(),
            moves: follower.moves().saturating_add(1),
        };
        match follow.send(to, moved) {
            Ok(()) => metrics::connection_moved(),
            // Counted as a move all the same: it looks less often from now on.
            Err(mut back) => {
                back.guard.count_for(follow.counter(follow.worker()));
                H1Session::resume(back, env);
            }
        }
    }

    /// Serve requests until the connection should close.
    async fn serve(&mut self) -> io::Result<Close> {
        // A connection that moved here was past its first request.
        let mut first = self.follower.moves() == 0;
        loop {
            let head = match self.read_head(first).await? {
                Ok(head) => head,
                Err(close) => return Ok(close),
            };
            first = false;
            // RFC 7540 §3.2: only in clear text, and only if stream 1 can carry the request.
            if matches!(self.stream, Transport::Plain(_))
                && !self.env.draining()
                && upgrade_request(&head)
            {
                if let Some(stream_one) = stream_one(&head) {
                    self.wbuf.extend_from_slice(SWITCHING_TO_H2C);
                    return Ok(Close::UpgradeH2c(stream_one));
                }
            }
            let started = self.env.access_log.is_some().then(StdInstant::now);
            // Proxied locations stream the body to the member while it arrives; a body nobody
            // reads is dropped as it arrives.
            let body_use = match head.body {
                BodyKind::None | BodyKind::Length(0) => BodyUse::Collect,
                _ => self.env.router.body_use(head.host.as_deref(), &head.path),
            };
            let (body, streams) = match body_use {
                BodyUse::Stream(limit) => {
                    if let (BodyKind::Length(n), Some(max)) = (head.body, limit)
                        && n > max
                    {
                        self.write_error(StatusCode::PAYLOAD_TOO_LARGE, head.version);
                        return Ok(Close::Linger);
                    }
                    (Bytes::new(), Some(limit))
                }
                BodyUse::Collect | BodyUse::Discard => {
                    let read = match head.body {
                        BodyKind::None | BodyKind::Length(0) => Ok(Bytes::new()),
                        // Boxed: most requests have no body, and every connection's future
                        // would otherwise keep room for reading one while it sits idle.
                        _ => Box::pin(self.read_body(&head, body_use == BodyUse::Collect)).await?,
                    };
                    match read {
                        Ok(body) => (body, None),
                        Err(status) => {
                            self.write_error(status, head.version);
                            return Ok(Close::Linger);
                        }
                    }
                }
            };
            let keep_alive = head.keep_alive && !self.env.draining();
            let delivered = match self.start_exchange(head, body, streams, keep_alive, started) {
                Ok(delivered) => delivered,
                Err(exchange) => exchange.await,
            };
            if !delivered {
                return Ok(Close::Quietly);
            }
            if self.close_after {
                return Ok(Close::Linger);
            }
            if self.wbuf.len() >= WBUF_HIGH_WATER {
                self.flush().await?;
            }
            if !keep_alive {
                // The client may already have sent more; closing on unread bytes would reset
                // the connection under our answer.
                return Ok(Close::Linger);
            }
        }
    }

    /// Read until a complete head is buffered. `Ok(Err(_))` means: stop, nothing to answer
    /// (EOF, idle timeout, drain) or an error already answered.
    async fn read_head(&mut self, first: bool) -> io::Result<Result<RequestHead, Close>> {
        let timeouts = self.env.timeouts.clone();
        // The head deadline runs from the head's first byte. The very first request's first
        // byte arrived before the session started (the acceptor sniffed it).
        // Otherwise it is set when a parse finds a head begun but not complete: a head that
        // arrives whole in one read, the usual case, costs no clock read.
        let mut deadline = first.then(|| Instant::now() + timeouts.header);
        loop {
            if !self.rbuf.is_empty() {
                match parse_request_head_with(&self.rbuf, &self.limits, &mut self.host_memo) {
                    Ok(Parse::Complete(head, consumed)) => {
                        self.rbuf.advance(consumed);
                        return Ok(Ok(head));
                    }
                    Ok(Parse::Partial) => {
                        deadline.get_or_insert_with(|| Instant::now() + timeouts.header);
                    }
                    Err(e) => {
                        tracing::debug!(peer = %self.peer, error = ?e, "bad request head");
                        self.write_error(e.status(), Version::HTTP_11);
                        return Ok(Err(Close::Linger));
                    }
                }
            }
            // More bytes are needed: first send what earlier (pipelined) requests produced.
            self.flush().await?;
            let idle = self.rbuf.is_empty();
            if idle && self.env.draining() {
                return Ok(Err(Close::Quietly));
            }
            let read = if let Some(deadline) = deadline {
                self.reserve_read_space();
                timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await
            } else {
                // Idle keep-alive: hold no buffers while waiting, so ten thousand idle
                // connections cost their sockets and little else. Wait for readability, then
                // read into a spare buffer of this worker.
                spare::give(std::mem::take(&mut self.wbuf));
                match &mut self.stream {
                    Transport::Plain(tcp) => {
                        if let Some(follow) = &self.env.follow
                            && self.follower.due()
                        {
                            let to = Follow::cpu_of(&*tcp).and_then(|cpu| follow.destination(cpu));
                            if let Some(to) = self.follower.saw(to) {
                                return Ok(Err(Close::Move(to)));
                            }
                        }
                        spare::give(std::mem::take(&mut self.rbuf));
                        // The keep-alive timer stays armed across requests: it is only moved
                        // when it fires and the connection turns out to have been busy since,
                        // at most once per keep-alive period, instead of once per request.
                        let idle_until = Instant::now() + timeouts.keepalive;
                        loop {
                            tokio::select! {
                                // In this order, not a random one: when the request arrives
                                // only the socket is polled again (the timer and the drain
                                // watch keep the registrations of the first poll).
                                biased;
                                ready = tcp.readable() => break ready?,
                                () = self.idle_timer.as_mut() => {
                                    if Instant::now() >= idle_until {
                                        return Ok(Err(Close::Quietly));
                                    }
                                    self.idle_timer.as_mut().reset(idle_until);
                                }
                                () = self.drain.as_mut() => return Ok(Err(Close::Quietly)),
                            }
                        }
                        self.rbuf = spare::take();
                        self.rbuf.reserve(READ_BUFFER);
                        // One poll of an ordinary read: unlike `try_read`, it tells the runtime
                        // when the socket was drained, sparing a failed `recv` next time.
                        let mut read = std::pin::pin!(tcp.read_buf(&mut self.rbuf));
                        match std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await {
                            Poll::Ready(result) => Ok(result),
                            Poll::Pending => continue,
                        }
                    }
                    // TLS may hold decrypted bytes the socket's readiness knows nothing of:
                    // read through it (keeping a read buffer) instead.
                    tls @ Transport::Tls(_) => {
                        if self.rbuf.capacity() - self.rbuf.len() < READ_BUFFER / 2 {
                            self.rbuf.reserve(READ_BUFFER);
                        }
                        // The same standing keep-alive timer as above; the read is tried
                        // first since a busy client's next request is often there already.
                        let idle_until = Instant::now() + timeouts.keepalive;
                        loop {
                            tokio::select! {
                                biased;
                                read = tls.read_buf(&mut self.rbuf) => break Ok(read),
                                () = self.idle_timer.as_mut() => {
                                    if Instant::now() >= idle_until {
                                        return Ok(Err(Close::Quietly));
                                    }
                                    self.idle_timer.as_mut().reset(idle_until);
                                }
                                () = self.drain.as_mut() => return Ok(Err(Close::Quietly)),
                            }
                        }
                    }
                }
            };
            match read {
                Ok(Ok(0)) => return Ok(Err(Close::Quietly)),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_elapsed) if idle && deadline.is_none() => return Ok(Err(Close::Quietly)),
                Err(_elapsed) => {
                    // RFC 9110 §15.5.9: 408 when the client did not complete a request in time.
                    self.write_error(StatusCode::REQUEST_TIMEOUT, Version::HTTP_11);
                    return Ok(Err(Close::Quietly));
                }
            }
        }
    }

    /// Read the request body the head announced, bounded by `limits.max_body`: kept, or, when
    /// `keep` is false, dropped as it arrives (the connection holds one read buffer, not the
    /// body). `Ok(Err(status))` is an answer to send before closing (400, 408, 413).
    async fn read_body(
        &mut self,
        head: &RequestHead,
        keep: bool,
    ) -> io::Result<Result<Bytes, StatusCode>> {
        let max_body = self.env.limits.max_body;
        match head.body {
            BodyKind::None => Ok(Ok(Bytes::new())),
            BodyKind::Length(0) => Ok(Ok(Bytes::new())),
            BodyKind::Length(len) if len > max_body => Ok(Err(StatusCode::PAYLOAD_TOO_LARGE)),
            BodyKind::Length(len) => {
                // `len <= max_body`, which the configuration keeps within memory bounds.
                let len = usize::try_from(len)
                    .map_err(|_| io::Error::other("body length overflows usize"))?;
                if head.expect_continue && self.rbuf.len() < len {
                    self.send_continue().await?;
                }
                if !keep {
                    let mut left = len;
                    loop {
                        let here = left.min(self.rbuf.len());
                        self.rbuf.advance(here);
                        left -= here;
                        if left == 0 {
                            return Ok(Ok(Bytes::new()));
                        }
                        self.reserve_read_space();
                        if let Err(status) = self.read_body_bytes().await? {
                            return Ok(Err(status));
                        }
                    }
                }
                while self.rbuf.len() < len {
                    // Grow with what arrives, not with what was announced: a client that
                    // announces a large body and sends nothing holds no memory for it.
                    self.rbuf
                        .reserve((len - self.rbuf.len()).min(BODY_READ_STEP));
                    match self.read_body_bytes().await? {
                        Ok(()) => {}
                        Err(status) => return Ok(Err(status)),
                    }
                }
                Ok(Ok(self.rbuf.split_to(len).freeze()))
            }
            BodyKind::Chunked => {
                let mut decoder = ChunkedDecoder::new(max_body);
                let mut body = BytesMut::new();
                let mut continued = !head.expect_continue;
                loop {
                    match decoder.decode(&mut self.rbuf) {
                        Ok(Decoded::Data(data)) if keep => body.extend_from_slice(&data),
                        Ok(Decoded::Data(_)) => {}
                        Ok(Decoded::Done) => return Ok(Ok(body.freeze())),
                        Ok(Decoded::NeedMore) => {
                            if !continued {
                                continued = true;
                                self.send_continue().await?;
                            }
                            self.reserve_read_space();
                            if let Err(status) = self.read_body_bytes().await? {
                                return Ok(Err(status));
                            }
                        }
                        Err(ChunkedError::TooLarge) => {
                            return Ok(Err(StatusCode::PAYLOAD_TOO_LARGE));
                        }
                        Err(ChunkedError::Malformed(why)) => {
                            tracing::debug!(peer = %self.peer, why, "malformed chunked body");
                            return Ok(Err(StatusCode::BAD_REQUEST));
                        }
                    }
                }
            }
        }
    }

    /// One read of body bytes, allowed to pause at most `timeouts.body`.
    async fn read_body_bytes(&mut self) -> io::Result<Result<(), StatusCode>> {
        match within(self.env.timeouts.body, self.stream.read_buf(&mut self.rbuf)).await {
            Some(Ok(0)) => Err(io::ErrorKind::UnexpectedEof.into()),
            Some(Ok(_)) => Ok(Ok(())),
            Some(Err(e)) => Err(e),
            None => Ok(Err(StatusCode::REQUEST_TIMEOUT)),
        }
    }

    /// RFC 9110 §10.1.1: a client that sent `Expect: 100-continue` waits for this interim
    /// response before sending the body.
    async fn send_continue(&mut self) -> io::Result<()> {
        write_continue(&mut self.wbuf);
        self.flush().await
    }

    /// Answer one request. Most requests to a static site are answered from memory, and the
    /// answer fits the write buffer: those are queued at once, and make no future at all. The
    /// others come back as a boxed exchange to await. A function of its own, so that nothing
    /// of the request takes room in every connection's future while it waits for the next.
    fn start_exchange(
        &mut self,
        head: RequestHead,
        body: Bytes,
        streams: Option<Option<u64>>,
        keep_alive: bool,
        started: Option<StdInstant>,
    ) -> Result<bool, Pin<Box<impl Future<Output = bool> + '_>>> {
        let (req, exchange) = self.request(head, body, streams, keep_alive, started);
        let answer = match exchange.feeder {
            None => self.env.router.answer_now(&req),
            Some(_) => None,
        };
        match answer {
            Some(response)
                if fits_buffer(
                    &response.body,
                    !exchange.is_head && !never_has_content(response.status),
                ) =>
            {
                drop(req);
                Ok(self.answer_buffered(response, exchange))
            }
            answer => Err(Box::pin(self.exchange(req, exchange, answer))),
        }
    }

    /// The request a head and its body make, and what answering it needs besides.
    fn request(
        &self,
        head: RequestHead,
        body: Bytes,
        streams: Option<Option<u64>>,
        keep_alive: bool,
        started: Option<StdInstant>,
    ) -> (Request, Exchange) {
        let (stream, feeder) = match streams {
            Some(limit) => {
                let len = match head.body {
                    BodyKind::Length(n) => Some(n),
                    _ => None,
                };
                let (tx, rx) = BodyStream::channel(STREAM_CHANNEL, len);
                (Some(rx), Some((tx, limit)))
            }
            None => (None, None),
        };
        let log = self.env.access_log.clone().map(|log| {
            let target = match &head.query {
                Some(q) => format!("{}?{q}", head.path),
                None => head.path.clone(),
            };
            Box::new(LogStart {
                log,
                method: head.method.clone(),
                target,
                referer: header_str(&head.headers, header::REFERER),
                user_agent: header_str(&head.headers, header::USER_AGENT),
                host: head.host.clone(),
                started,
            })
        });
        let exchange = Exchange {
            version: head.version,
            is_head: head.method == Method::HEAD,
            keep_alive,
            body_kind: head.body,
            expect_continue: head.expect_continue,
            feeder,
            log,
        };
        let req = Request {
            method: head.method,
            path: head.path,
            query: head.query,
            version: head.version,
            host: head.host,
            headers: head.headers,
            scheme: self.stream.scheme(),
            peer: self.peer,
            body,
            stream,
        };
        (req, exchange)
    }

    /// Queue `response`, whose whole body fits the write buffer. Returns false if the
    /// connection broke (never, here: it is written out with the next flush).
    fn answer_buffered(&mut self, response: Response, exchange: Exchange) -> bool {
        let keep_alive = exchange.keep_alive && !self.close_after;
        let (status, sent) = exchange.counted(&response);
        let (_, _, bodiless, body) =
            self.write_head(response, exchange.version, keep_alive, exchange.is_head);
        let unsent = self.queue_body(body, !bodiless && !exchange.is_head);
        debug_assert!(unsent.is_none(), "checked by fits_buffer");
        self.answered(status, sent, Ok(()), exchange)
    }

    /// Route one request, unless it is `answered` already, and write its answer. Returns false
    /// if the connection broke.
    async fn exchange(
        &mut self,
        req: Request,
        mut exchange: Exchange,
        answered: Option<Response>,
    ) -> bool {
        let response = match (answered, exchange.feeder.take()) {
            (Some(response), _) => {
                drop(req);
                response
            }
            (None, None) => self.env.router.call(req).await,
            (None, Some((tx, limit))) => {
                let env = self.env.clone();
                // Boxed: proxied exchanges should not enlarge every exchange's future.
                let (response, fed) = tokio::join!(
                    env.router.call(req),
                    Box::pin(self.feed_body(
                        exchange.body_kind,
                        exchange.expect_continue,
                        limit,
                        tx
                    ))
                );
                match fed {
                    Fed::Complete => response,
                    Fed::Abandoned => {
                        self.close_after = true;
                        response
                    }
                    // RFC 9110 §15.5.14: the body exceeded the location's limit.
                    Fed::TooLarge => {
                        self.close_after = true;
                        Response::text(StatusCode::PAYLOAD_TOO_LARGE, "413 Content Too Large\n")
                    }
                }
            }
        };
        let keep_alive = exchange.keep_alive && !self.close_after;
        let (status, sent) = exchange.counted(&response);
        let result = self
            .write_response(response, exchange.version, keep_alive, exchange.is_head)
            .await;
        self.answered(status, sent, result, exchange)
    }

    /// Count and log an answer once it is written (or failed to be). Returns whether it was.
    fn answered(
        &self,
        status: StatusCode,
        sent: u64,
        result: io::Result<()>,
        exchange: Exchange,
    ) -> bool {
        let sent = if result.is_ok() { sent } else { 0 };
        metrics::response(Proto::Http1, status, sent);
        if let Some(entry) = exchange.log {
            entry.log.record(&AccessEntry {
                peer: self.peer,
                time: SystemTime::now(),
                method: entry.method.as_str(),
                target: &entry.target,
                protocol: if exchange.version == Version::HTTP_10 {
                    "HTTP/1.0"
                } else {
                    "HTTP/1.1"
                },
                status: status.as_u16(),
                bytes: sent,
                referer: entry.referer.as_deref(),
                user_agent: entry.user_agent.as_deref(),
                duration: entry.started.map(|t| t.elapsed()).unwrap_or_default(),
                host: entry.host.as_deref(),
            });
        }
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "response not delivered");
                false
            }
        }
    }

    /// Queue the head of `response` and hand back what `write_response` needs to send its body
    /// (a function of its own, so the head's fields are gone before the body's first await).
    fn write_head(
        &mut self,
        response: Response,
        version: Version,
        keep_alive: bool,
        is_head: bool,
    ) -> (StatusCode, Framing, bool, Body) {
        let Response {
            status,
            headers,
            shared,
            body,
        } = response;
        let bodiless = never_has_content(status);
        let framing = if bodiless {
            Framing::None
        } else {
            match body.known_len() {
                Some(len) => Framing::Length(len),
                None => Framing::unknown_length(version),
            }
        };
        if framing == Framing::Close {
            self.close_after = true;
        }
        // One allocation for the head and a body that will be copied next to it.
        let coalesced = match &body {
            Body::Bytes(bytes) if bytes.len() <= COALESCE_MAX && !is_head => bytes.len(),
            _ => 0,
        };
        if self.wbuf.capacity() == 0 {
            self.wbuf = spare::take();
        }
        self.wbuf.reserve(1024 + coalesced);
        with_http_date(|date| {
            write_response_head(
                &mut self.wbuf,
                version,
                status,
                Fields {
                    lines: shared.as_deref().map_or(&[][..], SharedFields::lines),
                    map: &headers,
                },
                framing,
                keep_alive,
                &ServerFields {
                    date,
                    alt_svc: self.alt_svc.take(&self.env, self.stream.scheme()),
                },
            )
        });
        (status, framing, bodiless, body)
    }

    async fn write_response(
        &mut self,
        response: Response,
        version: Version,
        keep_alive: bool,
        is_head: bool,
    ) -> io::Result<()> {
        let (status, framing, bodiless, body) =
            self.write_head(response, version, keep_alive, is_head);
        let Some(body) = self.queue_body(body, !bodiless && !is_head) else {
            return Ok(());
        };
        match body {
            Body::Upgrade(tunnel) if status == StatusCode::SWITCHING_PROTOCOLS => {
                Box::pin(self.tunnel(tunnel)).await
            }
            Body::Upgrade(_) | Body::Empty => Ok(()),
            Body::Stream(stream) => {
                Box::pin(self.write_stream(stream, framing == Framing::Chunked)).await
            }
            Body::Bytes(bytes) => self.write_bytes(bytes).await,
            // Boxed, as the other rare writers: every connection's future has room for the
            // largest writer it may await.
            Body::File(range) => Box::pin(self.write_file(&range)).await,
            Body::Parts(parts) => Box::pin(self.write_parts(parts)).await,
        }
    }

    /// After its head, queue a body that [`fits_buffer`]; any other comes back, to be sent.
    #[inline]
    fn queue_body(&mut self, body: Body, sends_body: bool) -> Option<Body> {
        if !fits_buffer(&body, sends_body) {
            return Some(body);
        }
        if let Body::Bytes(bytes) = body
            && sends_body
        {
            self.wbuf.extend_from_slice(&bytes);
        }
        None
    }

    /// A multipart/byteranges body, part by part.
    async fn write_parts(&mut self, parts: Vec<BodyPart>) -> io::Result<()> {
        for part in parts {
            match part {
                BodyPart::Bytes(bytes) => self.write_bytes(bytes).await?,
                BodyPart::File(range) => self.write_file(&range).await?,
            }
        }
        Ok(())
    }

    /// Read a streamed request body from the client into `tx` as the member takes it. Unless
    /// [`Fed::Complete`], the connection cannot carry another request.
    async fn feed_body(
        &mut self,
        kind: BodyKind,
        expect_continue: bool,
        limit: Option<u64>,
        tx: BodySender,
    ) -> Fed {
        match self.pump_body(kind, expect_continue, limit, &tx).await {
            Ok(true) => Fed::Complete,
            Ok(false) => Fed::Abandoned,
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "streamed request body failed");
                let too_large = e.kind() == io::ErrorKind::FileTooLarge;
                let _ = tx.send(Err(e)).await;
                if too_large {
                    Fed::TooLarge
                } else {
                    Fed::Abandoned
                }
            }
        }
    }

    async fn pump_body(
        &mut self,
        kind: BodyKind,
        expect_continue: bool,
        limit: Option<u64>,
        tx: &BodySender,
    ) -> io::Result<bool> {
        let paused = || io::Error::new(io::ErrorKind::TimedOut, "client paused sending the body");
        if expect_continue && self.rbuf.is_empty() {
            self.send_continue().await?;
        }
        match kind {
            BodyKind::None => Ok(true),
            BodyKind::Length(len) => {
                let mut left = len;
                while left > 0 {
                    if self.rbuf.is_empty() {
                        let step = left.min(BODY_READ_STEP as u64) as usize;
                        self.rbuf.reserve(step);
                        if self.read_body_bytes().await?.is_err() {
                            return Err(paused());
                        }
                    }
                    let n = left.min(self.rbuf.len() as u64) as usize;
                    let chunk = self.rbuf.split_to(n).freeze();
                    left -= n as u64;
                    if tx.send(Ok(Frame::Data(chunk))).await.is_err() {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            BodyKind::Chunked => {
                let mut decoder = ChunkedDecoder::new(limit.unwrap_or(u64::MAX));
                loop {
                    match decoder.decode(&mut self.rbuf) {
                        Ok(Decoded::Data(data)) => {
                            if tx.send(Ok(Frame::Data(data))).await.is_err() {
                                return Ok(false);
                            }
                        }
                        Ok(Decoded::Done) => return Ok(true),
                        Ok(Decoded::NeedMore) => {
                            self.reserve_read_space();
                            if self.read_body_bytes().await?.is_err() {
                                return Err(paused());
                            }
                        }
                        Err(ChunkedError::TooLarge) => {
                            return Err(io::Error::new(
                                io::ErrorKind::FileTooLarge,
                                "request body too large",
                            ));
                        }
                        Err(ChunkedError::Malformed(why)) => return Err(io::Error::other(why)),
                    }
                }
            }
        }
    }

    /// Send a streamed body as it arrives: chunked (with trailers) or with its known length.
    /// A source that fails mid-body closes the connection, which tells the client its copy is
    /// truncated.
    async fn write_stream(&mut self, mut body: BodyStream, chunked: bool) -> io::Result<()> {
        let expected = body.len();
        let mut sent = 0u64;
        loop {
            match body.frame().await {
                None => break,
                Some(Err(e)) => {
                    self.close_after = true;
                    return Err(e);
                }
                Some(Ok(Frame::Data(data))) => {
                    if data.is_empty() {
                        continue;
                    }
                    sent += data.len() as u64;
                    if chunked {
                        write_chunk_size(&mut self.wbuf, data.len());
                        self.write_bytes(data).await?;
                        self.wbuf.extend_from_slice(b"\r\n");
                    } else {
                        self.write_bytes(data).await?;
                    }
                    self.flush().await?;
                }
                Some(Ok(Frame::Trailers(trailers))) => {
                    if chunked {
                        write_last_chunk(&mut self.wbuf, Some(&trailers));
                        return self.flush().await;
                    }
                }
            }
        }
        if chunked {
            write_last_chunk(&mut self.wbuf, None);
        }
        if expected.is_some_and(|n| n != sent) {
            self.close_after = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "streamed body shorter than announced",
            ));
        }
        Ok(())
    }

    /// After a `101 Switching Protocols` from a member: copy bytes both ways between the client
    /// and the member until either side closes. The connection is the tunnel's from now on.
    async fn tunnel(&mut self, tunnel: Tunnel) -> io::Result<()> {
        self.close_after = true;
        self.flush().await?;
        let mut far = tunnel.io.await?;
        if !self.rbuf.is_empty() {
            far.write_all(&self.rbuf).await?;
            self.rbuf.clear();
        }
        let _ = tokio::io::copy_bidirectional(&mut self.stream, &mut far).await;
        Ok(())
    }

    async fn write_bytes(&mut self, bytes: Bytes) -> io::Result<()> {
        if bytes.len() <= COALESCE_MAX {
            self.wbuf.extend_from_slice(&bytes);
            return Ok(());
        }
        self.flush().await?;
        self.write_all_bounded(&bytes).await
    }

    /// Send a file range: by `sendfile(2)` on a plain socket (unless the location turned it off),
    /// in bounded chunks otherwise.
    ///
    /// A large range on a plain socket is sent corked (`TCP_CORK`, nginx's `tcp_nopush`): the
    /// head shares the first segment with the body, and no segment leaves part-filled between
    /// two `sendfile` calls. Measured on loopback with curl, a 64 MiB download took 37 ms
    /// uncorked and 31–33 ms corked (nginx: 31 ms).
    async fn write_file(&mut self, range: &FileRange) -> io::Result<()> {
        let tcp = match &self.stream {
            Transport::Plain(tcp) if range.sendfile => tcp,
            _ => {
                self.flush().await?;
                return self.write_file_chunks(range).await;
            }
        };
        let corked = range.len >= CORK_MIN && rustix::net::sockopt::set_tcp_cork(tcp, true).is_ok();
        let mut sent = self.flush().await;
        if sent.is_ok() {
            sent = self.sendfile(range).await;
        }
        if corked {
            if let Transport::Plain(tcp) = &self.stream {
                // Uncorking pushes out the last, part-filled segment at once.
                let _ = rustix::net::sockopt::set_tcp_cork(tcp, false);
            }
        }
        sent
    }

    /// Positional reads of at most [`FILE_CHUNK`] into one reused buffer, each written out
    /// before the next is read: memory stays bounded whatever the file's size.
    async fn write_file_chunks(&mut self, range: &FileRange) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut chunk = vec![
            0u8;
            usize::try_from(range.len)
                .unwrap_or(FILE_CHUNK)
                .min(FILE_CHUNK)
        ];
        let mut offset = range.offset;
        let end = range.offset + range.len;
        while offset < end {
            let want = usize::try_from(end - offset)
                .unwrap_or(FILE_CHUNK)
                .min(chunk.len());
            let n = range.file.read_at(&mut chunk[..want], offset)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ));
            }
            self.write_all_bounded(&chunk[..n]).await?;
            offset += n as u64;
        }
        Ok(())
    }

    /// `sendfile(2)` on this worker, or on another one when this one shares the client's CPU
    /// and the range is large (see [`crate::follow`]).
    async fn sendfile(&mut self, range: &FileRange) -> io::Result<()> {
        let Transport::Plain(stream) = &self.stream else {
            return Err(io::Error::other("sendfile needs a plain socket"));
        };
        let send_timeout = self.env.timeouts.send;
        if let Some(follow) = &self.env.follow
            && range.len >= BULK_MIN
            && let Some(to) = Follow::cpu_of(stream)
                .and_then(|cpu| follow.bulk_sender(cpu, rustix::thread::sched_getcpu()))
        {
            let (done, sent) = tokio::sync::oneshot::channel();
            let bulk = Bulk {
                socket: std::net::TcpStream::from(stream.as_fd().try_clone_to_owned()?),
                range: range.clone(),
                send_timeout,
                done,
            };
            if follow.send_body(to, bulk).is_ok() {
                metrics::body_handed();
                return sent
                    .await
                    .unwrap_or_else(|_| Err(io::Error::other("the sending worker stopped")));
            }
        }
        send_file(stream, range, send_timeout).await
    }

    /// Write all of `buf`, giving up if the client accepts nothing for `timeouts.send`.
    async fn write_all_bounded(&mut self, mut buf: &[u8]) -> io::Result<()> {
        // Usually the socket has room: write without arming a timer.
        if let Transport::Plain(tcp) = &self.stream {
            match tcp.try_write(buf) {
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        let send_timeout = self.env.timeouts.send;
        let stalled = || io::Error::new(io::ErrorKind::TimedOut, "client stopped reading");
        while !buf.is_empty() {
            let n = within(send_timeout, self.stream.write(buf))
                .await
                .ok_or_else(stalled)??;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        if let Transport::Tls(_) = &self.stream {
            // TLS records are assembled in a buffer: push them out now.
            within(send_timeout, self.stream.flush())
                .await
                .ok_or_else(stalled)??;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let wbuf = std::mem::take(&mut self.wbuf);
        let result = self.write_all_bounded(&wbuf).await;
        self.wbuf = wbuf;
        self.wbuf.clear();
        result
    }

    /// Queue an error answer; the connection closes after it.
    fn write_error(&mut self, status: StatusCode, version: Version) {
        let reason = status.canonical_reason().unwrap_or("Error");
        let body = Bytes::from(format!("{} {reason}\n", status.as_u16()));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        let version = if version == Version::HTTP_10 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        with_http_date(|date| {
            write_response_head(
                &mut self.wbuf,
                version,
                status,
                Fields::map(&headers),
                Framing::Length(body.len() as u64),
                false,
                &ServerFields {
                    date,
                    alt_svc: self.alt_svc.take(&self.env, self.stream.scheme()),
                },
            )
        });
        self.wbuf.extend_from_slice(&body);
        metrics::response(Proto::Http1, status, body.len() as u64);
        // Refused requests are logged too (as nginx does), with what is known of them.
        if let Some(log) = &self.env.access_log {
            log.record(&AccessEntry {
                peer: self.peer,
                time: SystemTime::now(),
                method: "-",
                target: "-",
                protocol: "-",
                status: status.as_u16(),
                bytes: body.len() as u64,
                referer: None,
                user_agent: None,
                duration: std::time::Duration::ZERO,
                host: None,
            });
        }
    }

    /// Half-close and discard what the client still sends, until it closes, pauses for
    /// [`LINGER_IDLE`] or [`LINGER_TIME`] has passed, so our last answer is not destroyed by a
    /// reset when we close with unread bytes (nginx's lingering close).
    async fn linger(&mut self) {
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let end = Instant::now() + LINGER_TIME;
        // The read buffer is reused as scratch space: an on-stack array would live in this
        // connection's future for its whole life.
        loop {
            self.rbuf.clear();
            self.reserve_read_space();
            let deadline = end.min(Instant::now() + LINGER_IDLE);
            match timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    }

    fn reserve_read_space(&mut self) {
        if self.rbuf.capacity() - self.rbuf.len() < READ_BUFFER / 2 {
            self.rbuf.reserve(READ_BUFFER);
        }
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use switchyard_conf::Limits;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::testing::env;

    /// Every connection holds its driver's future for its whole life, idle or not: with the
    /// socket and the actor, that is what an idle connection costs (872 bytes when written:
    /// the connection's state, 248, and waiting for a head, 304). What only a request needs
    /// (its exchange, about 1.3 KB with the router's future and the response writer's, and the
    /// reading of a body) is boxed for that request's time.
    #[actix_rt::test]
    async fn a_connection_holds_a_small_future() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (server, peer) = listener.accept().await.expect("accept");
        let guard = crate::testing::guard();
        let conn = H1Conn::new(
            Transport::Plain(server),
            peer,
            BytesMut::new(),
            env(Limits::default()),
            guard,
            Follower::new(0),
        );
        let size = std::mem::size_of_val(&conn.run());
        assert!(size <= 960, "H1Conn::run future is {size} bytes");
    }

    /// A large file goes out corked, and the socket is uncorked once it is sent: left corked,
    /// the last part-filled segment of every answer would wait 200 ms for the kernel's timer.
    #[actix_rt::test]
    async fn a_corked_file_answer_leaves_the_socket_uncorked() {
        use std::os::fd::AsFd;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let dir = tempfile::tempdir().expect("temporary directory");
        // Larger than CORK_MIN, and not a whole number of loopback segments.
        let want: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("big.bin"), &want).expect("write the file");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let (server, peer) = listener.accept().await.expect("accept");
        let probe = server.as_fd().try_clone_to_owned().expect("dup the socket");
        let guard = crate::testing::guard();
        let limits = Limits {
            small_file_max: 0,
            ..Limits::default()
        };
        let conn = H1Conn::new(
            Transport::Plain(server),
            peer,
            BytesMut::new(),
            crate::testing::env_at(dir.path(), limits),
            guard,
            Follower::new(0),
        );
        actix_rt::spawn(conn.run());
        for _ in 0..2 {
            client
                .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .expect("send the request");
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(client.read_u8().await.expect("read the head"));
            }
            let head = String::from_utf8(head).expect("an ASCII head");
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.contains("Content-Length: 100003\r\n"), "{head}");
            let mut body = vec![0; want.len()];
            client.read_exact(&mut body).await.expect("read the body");
            assert!(body == want, "body differs from the file");
            assert!(
                !rustix::net::sockopt::tcp_cork(&probe).expect("read TCP_CORK"),
                "the socket is still corked after the answer"
            );
        }
    }
}
