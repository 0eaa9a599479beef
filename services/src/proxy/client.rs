//! HTTP/1.1 to a member over our own codec ([`switchyard_wire::client`]), driven by the
//! request's task.
//!
//! A [`MemberConn`] owns the socket and one read buffer. An exchange writes the request head
//! (and a small body) in one write, reads the answer into the buffer, and hands a small body on
//! as a slice of that buffer — no copy, no second task, no channel. A streamed request body is
//! sent while the connection is watched for an early answer (a member refusing an upload
//! answers before reading it); a streamed response body is read by [`ConnBody`] as the client
//! takes it, one read at a time, so neither direction buffers more than one read.
//!
//! After an exchange the connection goes back to the pool only when the member allowed it
//! (`keep_alive`), the request body was sent whole, the response body was read to its end, and
//! nothing is left in the buffer.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method};
use switchyard_wire::client::{self as wire, RequestFraming, ResponseBody, ResponseHead};
use switchyard_wire::{ChunkedDecoder, Decoded};
use tokio::io::{AsyncRead, AsyncWrite};

use tokio_util::io::poll_read_buf;

use super::body::{OnDone, UpBody};
use super::upstream::{MemberState, Slot, Stream};
use crate::message::{BodyStream, Frame, FrameSource};

/// Largest response head accepted from a member.
const MAX_HEAD: usize = 64 * 1024;
/// Read buffer growth while waiting for a head: a head and a small body fit in one read.
const HEAD_CHUNK: usize = 16 * 1024;
/// Largest read while streaming a body.
const STREAM_CHUNK: usize = 64 * 1024;
/// A request body up to this size is copied behind its head and sent in the same write.
const COPY_BODY_MAX: usize = 16 * 1024;

/// An HTTP/1.1 connection to a member, holding one of its connection slots.
pub struct MemberConn {
    io: Stream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// False once an exchange left the connection where no other request can follow.
    reusable: bool,
    _slot: Slot,
}

impl std::fmt::Debug for MemberConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberConn")
            .field("reusable", &self.reusable)
            .field("buffered", &self.rbuf.len())
            .finish_non_exhaustive()
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub struct Failure {
    pub why: String,
    /// The member closed or reset the connection before any byte of an answer. On a connection
    /// reused from the pool this is the member having closed it while idle: the request was
    /// not processed.
    pub closed_before_answer: bool,
    pub timed_out: bool,
    /// The client's request body failed (cut off, or longer than the location allows): the
    /// member is not at fault.
    pub client_failed: bool,
}

impl Failure {
    fn new(why: impl Into<String>) -> Failure {
        Failure {
            why: why.into(),
            closed_before_answer: false,
            timed_out: false,
            client_failed: false,
        }
    }

    fn io(what: &str, e: &io::Error, answered: bool) -> Failure {
        Failure {
            why: format!("{what}: {e}"),
            closed_before_answer: !answered
                && matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::UnexpectedEof
                ),
            timed_out: false,
            client_failed: false,
        }
    }

    fn timeout(why: impl Into<String>) -> Failure {
        Failure {
            why: why.into(),
            closed_before_answer: false,
            timed_out: true,
            client_failed: false,
        }
    }
}

impl MemberConn {
    pub(super) fn new(io: Stream, slot: Slot) -> MemberConn {
        MemberConn {
            io,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            reusable: true,
            _slot: slot,
        }
    }

    /// Whether an idle connection can take a request: the member has not closed it and sent
    /// nothing unasked. Checked without waiting.
    pub fn is_usable(&mut self) -> bool {
        if !self.reusable || !self.rbuf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut probe);
        match Pin::new(&mut self.io).poll_read(&mut cx, &mut buf) {
            Poll::Pending => true,
            // Closed (nothing read), bytes nobody asked for, or an error.
            Poll::Ready(_) => {
                self.reusable = false;
                false
            }
        }
    }

    /// Whether the connection may go back to the pool now.
    pub fn reusable(&self) -> bool {
        self.reusable && self.rbuf.is_empty()
    }

    /// Send a request and read the answer's head (interim 1xx answers skipped). The body, if
    /// any, then comes from [`MemberConn::read_body`] or [`ConnBody`].
    #[allow(clippy::too_many_arguments)]
    pub async fn exchange(
        &mut self,
        method: &Method,
        target: &str,
        host: &str,
        headers: &HeaderMap,
        framing: RequestFraming,
        body: UpBody,
        send_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<ResponseHead, Failure> {
        self.wbuf.clear();
        wire::write_request_head(&mut self.wbuf, method, target, host, headers, framing);
        let mut out = Outbox::default();
        let mut large = None;
        let stream = match body {
            UpBody::Empty | UpBody::Full(None) => None,
            UpBody::Full(Some(b)) if b.len() <= COPY_BODY_MAX => {
                self.wbuf.extend_from_slice(&b);
                None
            }
            UpBody::Full(Some(b)) => {
                large = Some(b);
                None
            }
            UpBody::Stream(s, _) => Some(s),
        };
        out.parts.push_back(self.wbuf.split().freeze());
        out.parts.extend(large);
        let chunked = framing == RequestFraming::Chunked;
        let early = self
            .send(method, out, stream, chunked, send_timeout)
            .await?;
        if let Some(head) = early {
            // The member answered before taking the whole body: what it did not read makes
            // the connection unusable for another request.
            self.reusable = false;
            return Ok(head);
        }
        self.read_head(method, read_timeout).await
    }

    /// Write the queued parts, then the streamed body (chunked when its length is unknown).
    /// While a body streams, or a write waits, an answer is watched for; a final answer ends
    /// the upload and is returned.
    async fn send(
        &mut self,
        method: &Method,
        mut out: Outbox,
        mut body: Option<BodyStream>,
        chunked: bool,
        send_timeout: Duration,
    ) -> Result<Option<ResponseHead>, Failure> {
        let mut finished = body.is_none();
        let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
        std::future::poll_fn(|cx| {
            loop {
                if body.is_some() {
                    if let Poll::Ready(r) = self.poll_early_answer(cx, method) {
                        return Poll::Ready(r.map(Some));
                    }
                }
                if !out.parts.is_empty() {
                    match out.poll_write(&mut self.io, cx) {
                        Poll::Ready(Ok(())) => {
                            timer = None;
                            continue;
                        }
                        Poll::Ready(Err(e)) => {
                            // A member that answers and closes without reading the body makes
                            // the write fail; its answer is the better outcome.
                            if let Ok(Some(head)) = self.parse_buffered(method) {
                                return Poll::Ready(Ok(Some(head)));
                            }
                            if let Poll::Ready(Ok(head)) = self.poll_early_answer(cx, method) {
                                return Poll::Ready(Ok(Some(head)));
                            }
                            return Poll::Ready(Err(Failure::io("send", &e, false)));
                        }
                        Poll::Pending => {
                            if body.is_none() {
                                if let Poll::Ready(r) = self.poll_early_answer(cx, method) {
                                    return Poll::Ready(r.map(Some));
                                }
                            }
                            let t = timer
                                .get_or_insert_with(|| Box::pin(tokio::time::sleep(send_timeout)));
                            if t.as_mut().poll(cx).is_ready() {
                                return Poll::Ready(Err(Failure::timeout(format!(
                                    "sending stalled for {send_timeout:?}"
                                ))));
                            }
                            return Poll::Pending;
                        }
                    }
                }
                if finished {
                    return Poll::Ready(Ok(None));
                }
                let Some(stream) = body.as_mut() else {
                    return Poll::Ready(Ok(None));
                };
                match stream.poll_frame(cx) {
                    Poll::Ready(Some(Ok(Frame::Data(d)))) => {
                        if d.is_empty() {
                            continue;
                        }
                        if chunked {
                            let mut size = BytesMut::with_capacity(18);
                            switchyard_wire::chunked::write_chunk_size(&mut size, d.len());
                            out.parts.push_back(size.freeze());
                            out.parts.push_back(d);
                            out.parts.push_back(Bytes::from_static(b"\r\n"));
                        } else {
                            out.parts.push_back(d);
                        }
                    }
                    Poll::Ready(Some(Ok(Frame::Trailers(t)))) => {
                        if chunked {
                            let mut last = BytesMut::new();
                            switchyard_wire::chunked::write_last_chunk(&mut last, Some(&t));
                            out.parts.push_back(last.freeze());
                        }
                        finished = true;
                    }
                    Poll::Ready(None) => {
                        if chunked {
                            out.parts.push_back(Bytes::from_static(b"0\r\n\r\n"));
                        }
                        finished = true;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        self.reusable = false;
                        return Poll::Ready(Err(Failure {
                            client_failed: true,
                            ..Failure::new(format!("the client's request body failed: {e}"))
                        }));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await
    }

    /// Read whatever the member sent so far; a complete final head is returned, interim ones
    /// are skipped. `Pending` while there is no final head yet.
    fn poll_early_answer(
        &mut self,
        cx: &mut Context<'_>,
        method: &Method,
    ) -> Poll<Result<ResponseHead, Failure>> {
        let mut closed = false;
        while self.rbuf.len() < MAX_HEAD {
            if self.rbuf.capacity() - self.rbuf.len() < 1024 {
                self.rbuf.reserve(HEAD_CHUNK);
            }
            match poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) => {
                    closed = true;
                    break;
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    let answered = !self.rbuf.is_empty();
                    return Poll::Ready(Err(Failure::io("receive", &e, answered)));
                }
                Poll::Pending => break,
            }
        }
        match self.parse_buffered(method) {
            Ok(Some(head)) => Poll::Ready(Ok(head)),
            Err(e) => Poll::Ready(Err(e)),
            Ok(None) if closed => {
                let answered = !self.rbuf.is_empty();
                Poll::Ready(Err(Failure {
                    why: "the member closed the connection while the request was sent".into(),
                    closed_before_answer: !answered,
                    timed_out: false,
                    client_failed: false,
                }))
            }
            Ok(None) => Poll::Pending,
        }
    }

    /// The first final head in the buffer, interim ones taken off before it.
    fn parse_buffered(&mut self, method: &Method) -> Result<Option<ResponseHead>, Failure> {
        while !self.rbuf.is_empty() {
            match wire::parse_response_head(&self.rbuf, method, MAX_HEAD) {
                Ok(Some(head)) => {
                    self.rbuf.advance(head.len);
                    if head.is_interim() {
                        continue;
                    }
                    if !head.keep_alive {
                        self.reusable = false;
                    }
                    return Ok(Some(head));
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.reusable = false;
                    return Err(Failure::new(e.to_string()));
                }
            }
        }
        Ok(None)
    }

    async fn read_head(
        &mut self,
        method: &Method,
        read_timeout: Duration,
    ) -> Result<ResponseHead, Failure> {
        let mut answered = !self.rbuf.is_empty();
        loop {
            if let Some(head) = self.parse_buffered(method)? {
                return Ok(head);
            }
            match self.read_more(HEAD_CHUNK, read_timeout).await {
                Ok(0) => {
                    self.reusable = false;
                    return Err(Failure {
                        why: if answered {
                            "the member closed the connection in the middle of its head".into()
                        } else {
                            "the member closed the connection without answering".into()
                        },
                        closed_before_answer: !answered,
                        timed_out: false,
                        client_failed: false,
                    });
                }
                Ok(_) => answered = true,
                Err(f) => return Err(f),
            }
        }
    }

    /// One read into the buffer, waiting at most `read_timeout`.
    async fn read_more(&mut self, chunk: usize, read_timeout: Duration) -> Result<usize, Failure> {
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(chunk);
        }
        let answered = !self.rbuf.is_empty();
        let read =
            std::future::poll_fn(|cx| poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf));
        match tokio::time::timeout(read_timeout, read).await {
            Err(_) => {
                self.reusable = false;
                Err(Failure::timeout(format!(
                    "no answer within {read_timeout:?}"
                )))
            }
            Ok(Err(e)) => {
                self.reusable = false;
                Err(Failure::io("receive", &e, answered))
            }
            Ok(Ok(n)) => Ok(n),
        }
    }

    /// Read a body of `len` bytes whole (a small one): usually it came with the head.
    pub async fn read_body(
        &mut self,
        len: usize,
        read_timeout: Duration,
    ) -> Result<Bytes, Failure> {
        while self.rbuf.len() < len {
            if self.read_more(len - self.rbuf.len(), read_timeout).await? == 0 {
                self.reusable = false;
                return Err(Failure::new(
                    "the member closed the connection in the middle of its body",
                ));
            }
        }
        Ok(self.rbuf.split_to(len).freeze())
    }
}

/// Parts of a request waiting to be written, sent with vectored writes.
#[derive(Default)]
struct Outbox {
    parts: VecDeque<Bytes>,
}

impl Outbox {
    /// Write until everything queued is sent (`Ready(Ok)`), the socket is full (`Pending`), or
    /// it fails.
    fn poll_write(&mut self, io: &mut Stream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.parts.is_empty() {
            let n = if self.parts.len() == 1 {
                std::task::ready!(Pin::new(&mut *io).poll_write(cx, &self.parts[0]))?
            } else {
                let mut slices = [IoSlice::new(&[]); 16];
                let count = self.parts.len().min(slices.len());
                for (slice, part) in slices.iter_mut().zip(&self.parts) {
                    *slice = IoSlice::new(part);
                }
                std::task::ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let mut left = n;
            while left > 0 {
                let front = self.parts.front_mut().expect("wrote no more than queued");
                if front.len() <= left {
                    left -= front.len();
                    self.parts.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Where a streamed response body is.
#[derive(Debug)]
enum Remaining {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    /// Until the member closes.
    Close,
    Done,
}

/// A member's response body read from a [`MemberConn`] as the client takes it. Each wait for
/// the member is bounded by `read_timeout`. At the end (or when dropped early) `on_done` gets
/// the connection and whether the body was read whole.
pub struct ConnBody {
    conn: Option<MemberConn>,
    remaining: Remaining,
    read_timeout: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    on_done: Option<OnDone>,
    member: Arc<MemberState>,
}

impl std::fmt::Debug for ConnBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnBody")
            .field("member", &self.member.addr)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl ConnBody {
    pub fn new(
        conn: MemberConn,
        body: ResponseBody,
        read_timeout: Duration,
        on_done: OnDone,
        member: Arc<MemberState>,
    ) -> ConnBody {
        let remaining = match body {
            ResponseBody::None => Remaining::Done,
            ResponseBody::Length(n) => Remaining::Length(n),
            ResponseBody::Chunked => {
                Remaining::Chunked(Box::new(ChunkedDecoder::keeping_trailers(u64::MAX)))
            }
            ResponseBody::Close => Remaining::Close,
        };
        ConnBody {
            conn: Some(conn),
            remaining,
            read_timeout,
            timer: None,
            on_done: Some(on_done),
            member,
        }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(done) = self.on_done.take() {
            done(self.conn.take(), complete);
        }
    }

    fn fail(&mut self, why: String) -> Poll<Option<io::Result<Frame>>> {
        tracing::debug!(member = %self.member.addr, error = %why, "member body failed");
        if let Some(conn) = self.conn.as_mut() {
            conn.reusable = false;
        }
        self.finish(false);
        Poll::Ready(Some(Err(io::Error::other(why))))
    }
}

impl Drop for ConnBody {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl FrameSource for ConnBody {
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            // What the buffer already holds.
            match &mut this.remaining {
                Remaining::Done | Remaining::Length(0) => {
                    this.remaining = Remaining::Done;
                    this.finish(true);
                    return Poll::Ready(None);
                }
                Remaining::Length(left) => {
                    if !conn.rbuf.is_empty() {
                        let take = usize::try_from(*left)
                            .map_or(conn.rbuf.len(), |l| l.min(conn.rbuf.len()));
                        *left -= take as u64;
                        return Poll::Ready(Some(Ok(Frame::Data(
                            conn.rbuf.split_to(take).freeze(),
                        ))));
                    }
                }
                Remaining::Chunked(decoder) => match decoder.decode(&mut conn.rbuf) {
                    Ok(Decoded::Data(d)) => return Poll::Ready(Some(Ok(Frame::Data(d)))),
                    Ok(Decoded::Done) => {
                        let trailers = decoder.take_trailers();
                        this.remaining = Remaining::Done;
                        if let Some(lines) = trailers {
                            match wire::parse_trailers(&lines) {
                                Ok(t) if !t.is_empty() => {
                                    return Poll::Ready(Some(Ok(Frame::Trailers(t))));
                                }
                                Ok(_) => {}
                                Err(e) => return this.fail(e.to_string()),
                            }
                        }
                        continue;
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return this.fail(format!("member body: {e}")),
                },
                Remaining::Close => {
                    if !conn.rbuf.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::Data(conn.rbuf.split().freeze()))));
                    }
                }
            }
            // Read more: one read of at most STREAM_CHUNK, only once the buffer is used up.
            if conn.rbuf.capacity() - conn.rbuf.len() < 4096 {
                conn.rbuf.reserve(STREAM_CHUNK);
            }
            match poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.rbuf) {
                Poll::Ready(Ok(0)) => {
                    conn.reusable = false;
                    if matches!(this.remaining, Remaining::Close) {
                        this.remaining = Remaining::Done;
                        continue;
                    }
                    return this
                        .fail("the member closed the connection in the middle of its body".into());
                }
                Poll::Ready(Ok(_)) => this.timer = None,
                Poll::Ready(Err(e)) => return this.fail(format!("member body: {e}")),
                Poll::Pending => {
                    let timeout = this.read_timeout;
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if timer.as_mut().poll(cx).is_ready() {
                        if let Some(conn) = this.conn.as_mut() {
                            conn.reusable = false;
                        }
                        this.finish(false);
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "member stopped sending the body",
                        ))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
