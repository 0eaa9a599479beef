//! Bodies on the member side for the connections hyper drives (HTTP/2, upgrades): the request
//! body sent to a member (an `http_body::Body` over our message body) and the member's response
//! body as a [`FrameSource`] for the session. HTTP/1.1 bodies of our own client are in
//! [`super::client`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, SizeHint};
use hyper::body::Incoming;

use crate::message::{BodyStream, Frame, FrameSource};

use super::client::MemberConn;
use super::upstream::MemberState;

/// A request body on its way to a member.
#[derive(Debug)]
pub enum UpBody {
    Empty,
    Full(Option<Bytes>),
    /// A streamed body, and the flag set if it fails: the client's failure (cut off, or longer
    /// than the location allows), which the proxy must not count against the member whatever
    /// error hyper then reports for the exchange.
    Stream(BodyStream, Arc<AtomicBool>),
}

impl HttpBody for UpBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            UpBody::Empty => Poll::Ready(None),
            UpBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(http_body::Frame::data(b)))),
            UpBody::Stream(s, failed) => s.poll_frame(cx).map(|f| {
                f.map(|f| {
                    f.map(|f| match f {
                        Frame::Data(d) => http_body::Frame::data(d),
                        Frame::Trailers(t) => http_body::Frame::trailers(t),
                    })
                    .inspect_err(|_| failed.store(true, Ordering::Relaxed))
                })
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Empty => true,
            UpBody::Full(b) => b.is_none(),
            UpBody::Stream(..) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Empty => SizeHint::with_exact(0),
            UpBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            UpBody::Stream(s, _) => match s.len() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
        }
    }
}

/// What to do with the member connection once its response body has been read to the end.
pub type OnDone = Box<dyn FnOnce(Option<MemberConn>, bool) + Send>;

/// A response body from a connection hyper drives (HTTP/2, or an HTTP/1.1 upgrade the member
/// declined), read as the client takes it. Each wait for the member is bounded by
/// `read_timeout`. At the end (or when dropped early), `on_done` is told whether the body
/// completed.
pub struct MemberBody {
    pub incoming: Incoming,
    pub read_timeout: Duration,
    pub timer: Option<Pin<Box<tokio::time::Sleep>>>,
    pub on_done: Option<OnDone>,
    pub member: Arc<MemberState>,
}

impl std::fmt::Debug for MemberBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberBody")
            .field("member", &self.member.addr)
            .finish_non_exhaustive()
    }
}

impl MemberBody {
    fn finish(&mut self, complete: bool) {
        if let Some(done) = self.on_done.take() {
            done(None, complete);
        }
    }
}

impl Drop for MemberBody {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl FrameSource for MemberBody {
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame>>> {
        let this = self.get_mut();
        if this.on_done.is_none() {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.incoming).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.timer = None;
                    match frame.into_data() {
                        Ok(data) if data.is_empty() => continue,
                        Ok(data) => return Poll::Ready(Some(Ok(Frame::Data(data)))),
                        Err(frame) => match frame.into_trailers() {
                            Ok(t) => return Poll::Ready(Some(Ok(Frame::Trailers(t)))),
                            Err(_) => continue,
                        },
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(member = %this.member.addr, error = %e, "member body failed");
                    this.finish(false);
                    return Poll::Ready(Some(Err(io::Error::other(e))));
                }
                Poll::Ready(None) => {
                    this.finish(true);
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    let timeout = this.read_timeout;
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if timer.as_mut().poll(cx).is_ready() {
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

/// A body already in memory, given as frames (a small body with trailers).
#[derive(Debug)]
pub struct Frames(pub std::collections::VecDeque<Frame>);

impl FrameSource for Frames {
    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(Ok))
    }
}

use std::future::Future;
