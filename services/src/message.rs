//! The messages sessions and services exchange.
//!
//! A session (HTTP/1.1, HTTP/2, HTTP/3) turns wire bytes into a [`Request`], a service turns it
//! into a [`Response`], and the session writes that back in its own framing. Services never see
//! protocol bytes; sessions never decide what a request means. Framing headers
//! (`Content-Length`, `Transfer-Encoding`, `Connection`) are the session's business: services
//! describe the body with [`Body`] and the session derives the framing from [`Body::len`].

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};

/// One request, as every protocol delivers it.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// The path as received, still percent-encoded, without the query. Always starts with `/`.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    pub version: Version,
    /// The host the client addressed (absolute-form authority, `:authority` or `Host`), as sent.
    pub host: Option<String>,
    /// Header fields as received, minus the framing fields the session consumed.
    pub headers: HeaderMap,
    /// `"http"` or `"https"`: how the client reached us.
    pub scheme: &'static str,
    pub peer: SocketAddr,
    /// The request body, already bounded by `limits.max_body`. Empty when `stream` is set.
    pub body: Bytes,
    /// The request body still arriving, for routes that stream it (proxy locations): read it
    /// as it comes, with backpressure on the client. `None` when the body is in `body`.
    pub stream: Option<BodyStream>,
}

/// One response. The session adds framing, `Date`, `Server` and `Connection` as its protocol
/// requires.
///
/// Its fields are `shared` (when set) followed by `headers`; the two never name the same field.
/// Code that changes a field a shared set may hold calls [`Response::unshare`] first.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Fields this response has in common with many others, made once (a cached file's 200).
    pub shared: Option<Arc<SharedFields>>,
    pub body: Body,
}

/// Header fields many responses carry unchanged — a cached file's validators, type and
/// `Accept-Ranges` — made once and pointed at by each response instead of copied into its
/// map; HTTP/1.1 writes them as one pre-rendered run of field lines.
///
/// Fields that are the session's business (framing, `Connection`, `Server`, `Date`,
/// `Alt-Svc`) are left out when the set is made, so a session can send the lines as they are.
#[derive(Debug)]
pub struct SharedFields {
    /// Made at once from a map, or on first use from the lines (a proxied response's fields,
    /// which an HTTP/1.1 client never needs as a map).
    map: std::sync::OnceLock<HeaderMap>,
    /// `name: value\r\n` for every field of `map`, in its order.
    lines: Box<[u8]>,
}

impl SharedFields {
    pub fn new(mut map: HeaderMap) -> SharedFields {
        use http::header;
        for name in [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
            header::SERVER,
            header::DATE,
            header::ALT_SVC,
        ] {
            map.remove(name);
        }
        let mut lines = Vec::with_capacity(map.len() * 32);
        for (name, value) in &map {
            switchyard_wire::response::put_field(
                &mut lines,
                name.as_str().as_bytes(),
                value.as_bytes(),
            );
        }
        SharedFields {
            map: std::sync::OnceLock::from(map),
            lines: lines.into_boxed_slice(),
        }
    }

    /// A set from field lines as a member sent them (each `name: value\r\n`, checked by the
    /// parser that produced them, holding no field a session writes itself: see
    /// [`switchyard_wire::client::ResponseHead::fields`]).
    pub fn from_lines(lines: Vec<u8>) -> SharedFields {
        SharedFields {
            map: std::sync::OnceLock::new(),
            lines: lines.into_boxed_slice(),
        }
    }

    pub fn map(&self) -> &HeaderMap {
        self.map.get_or_init(|| {
            switchyard_wire::client::parse_field_lines(&self.lines).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "shared field lines do not parse; sending none");
                HeaderMap::new()
            })
        })
    }

    /// The HTTP/1.1 field lines of the set, each ending in CRLF.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }
}

impl Response {
    /// A response with a short `text/plain` explanation, for errors.
    pub fn text(status: StatusCode, text: &'static str) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Response {
            status,
            headers,
            shared: None,
            body: Body::Bytes(Bytes::from_static(text.as_bytes())),
        }
    }

    /// A response with no body (304, 204, redirects carry headers only).
    pub fn empty(status: StatusCode) -> Response {
        Response {
            status,
            headers: HeaderMap::new(),
            shared: None,
            body: Body::Empty,
        }
    }

    /// Moves the shared fields into `headers`, so that the map holds every field and may be
    /// changed freely. Nothing happens when there are none.
    pub fn unshare(&mut self) {
        if let Some(shared) = self.shared.take() {
            let own = std::mem::replace(&mut self.headers, shared.map().clone());
            self.headers.extend(own);
        }
    }

    /// Every field as one map (the shared ones copied): what a session whose protocol library
    /// takes a map sends.
    pub fn take_headers(&mut self) -> HeaderMap {
        self.unshare();
        std::mem::take(&mut self.headers)
    }

    /// The value of field `name`, shared or not.
    pub fn header<K>(&self, name: K) -> Option<&HeaderValue>
    where
        K: http::header::AsHeaderName + Copy,
    {
        self.headers
            .get(name)
            .or_else(|| self.shared.as_ref().and_then(|s| s.map().get(name)))
    }

    /// 500: a service failed (or panicked) while handling the request.
    pub fn internal_error() -> Response {
        Response::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error\n",
        )
    }

    /// 503: the service's mailbox is full or it is not running.
    pub fn overloaded() -> Response {
        let mut r = Response::text(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable\n");
        r.headers
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    }
}

/// A response body. Every variant but [`Body::Stream`] knows its length up front.
#[derive(Debug)]
pub enum Body {
    Empty,
    /// Bytes in memory (small cached files, generated pages, multipart boundaries).
    Bytes(Bytes),
    /// A byte range of an open file: streamed in bounded chunks or by `sendfile`, never read whole.
    File(FileRange),
    /// A sequence of the above (multipart/byteranges).
    Parts(Vec<BodyPart>),
    /// Chunks produced while the response is sent (a proxied member's body), with a known or
    /// unknown length and maybe trailers. Pulled one chunk at a time: a slow client
    /// back-pressures the producer.
    Stream(BodyStream),
    /// `101 Switching Protocols` (WebSocket): after the head, the session hands its connection
    /// to this tunnel, which copies both ways until either side closes.
    Upgrade(Tunnel),
}

/// One piece of a streamed body.
#[derive(Debug)]
pub enum Frame {
    Data(Bytes),
    /// The trailer section (HTTP/2 and chunked HTTP/1.1); always the last frame.
    Trailers(HeaderMap),
}

/// Where a [`BodyStream`]'s frames come from.
pub trait FrameSource: Send + 'static {
    /// The next frame; `Ready(None)` at the end of the body.
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame>>>;
}

/// A body that arrives while it is being sent. Whoever holds it pulls frames with
/// [`BodyStream::frame`]; nothing is buffered beyond what the source holds (a channel of a few
/// chunks, or a connection's read buffer).
pub struct BodyStream {
    source: Pin<Box<dyn FrameSource>>,
    len: Option<u64>,
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyStream")
            .field("len", &self.len)
            .finish()
    }
}

impl BodyStream {
    /// A body pulled from `source`; `len` is its exact length when known in advance.
    pub fn new(source: impl FrameSource, len: Option<u64>) -> BodyStream {
        BodyStream {
            source: Box::pin(source),
            len,
        }
    }

    /// A body fed by a [`BodySender`] through a channel of `capacity` frames: the sender waits
    /// when the reader is that far behind.
    pub fn channel(capacity: usize, len: Option<u64>) -> (BodySender, BodyStream) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        (
            BodySender { tx },
            BodyStream::new(ChannelSource { rx }, len),
        )
    }

    /// The exact length, when known in advance (`Content-Length`).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame>>> {
        self.source.as_mut().poll_frame(cx)
    }

    /// The next frame, `None` at the end.
    pub async fn frame(&mut self) -> Option<io::Result<Frame>> {
        std::future::poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// The same body, with `observer` shown every frame as it passes and `None` at the end
    /// (a cache stores a copy of a response while it is sent).
    pub fn tee(
        self,
        observer: impl FnMut(Option<&io::Result<Frame>>) + Send + 'static,
    ) -> BodyStream {
        let len = self.len;
        BodyStream::new(
            Tee {
                inner: self,
                observer: Box::new(observer),
            },
            len,
        )
    }
}

type Observer = Box<dyn FnMut(Option<&io::Result<Frame>>) + Send>;

struct Tee {
    inner: BodyStream,
    observer: Observer,
}

impl FrameSource for Tee {
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        (this.observer)(frame.as_ref());
        Poll::Ready(frame)
    }
}

/// The writing end of [`BodyStream::channel`].
#[derive(Debug, Clone)]
pub struct BodySender {
    tx: tokio::sync::mpsc::Sender<io::Result<Frame>>,
}

impl BodySender {
    /// Send one frame, waiting while the channel is full. `Err` when the reader is gone.
    pub async fn send(&self, frame: io::Result<Frame>) -> Result<(), BodyGone> {
        self.tx.send(frame).await.map_err(|_| BodyGone)
    }

    /// True once the reading end was dropped: nobody wants the rest of the body.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The reading end of a body channel was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyGone;

struct ChannelSource {
    rx: tokio::sync::mpsc::Receiver<io::Result<Frame>>,
}

impl FrameSource for ChannelSource {
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame>>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

/// A byte stream both ways (an upgraded member connection).
pub trait TunnelIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> TunnelIo for T {}

/// Resolves to the far end of an upgraded connection.
pub type TunnelFuture = Pin<Box<dyn Future<Output = io::Result<Box<dyn TunnelIo>>> + Send>>;

/// The far end of an upgraded connection, resolved after the session has sent the 101.
pub struct Tunnel {
    pub io: TunnelFuture,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tunnel")
    }
}

/// One piece of a [`Body::Parts`].
#[derive(Debug, Clone)]
pub enum BodyPart {
    Bytes(Bytes),
    File(FileRange),
}

/// `len` bytes of `file` starting at `offset`.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
    /// Whether a plain HTTP/1.1 session may send it by `sendfile(2)` (the location's
    /// `sendfile`); otherwise it is read and written in bounded chunks, as on every other
    /// transport.
    pub sendfile: bool,
}

impl Body {
    /// Total length in bytes: 0 for a stream of unknown length (see [`Body::known_len`]).
    pub fn len(&self) -> u64 {
        self.known_len().unwrap_or(0)
    }

    /// The length when known in advance; `None` for a stream of unknown length.
    pub fn known_len(&self) -> Option<u64> {
        Some(match self {
            Body::Stream(s) => return s.len(),
            Body::Upgrade(_) => 0,
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File(f) => f.len,
            Body::Parts(parts) => parts.iter().map(BodyPart::len).sum(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.known_len() == Some(0)
    }
}

impl BodyPart {
    pub fn len(&self) -> u64 {
        match self {
            BodyPart::Bytes(b) => b.len() as u64,
            BodyPart::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{
        ACCEPT_RANGES, ALT_SVC, CONTENT_LENGTH, CONTENT_TYPE, DATE, ETAG, HeaderName, SERVER,
    };

    fn shared() -> Arc<SharedFields> {
        let mut map = HeaderMap::new();
        map.insert(ETAG, HeaderValue::from_static("\"a\""));
        map.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        map.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        // The session's business: never part of a shared set.
        map.insert(CONTENT_LENGTH, HeaderValue::from_static("3"));
        map.insert(DATE, HeaderValue::from_static("yesterday"));
        map.insert(SERVER, HeaderValue::from_static("other"));
        map.insert(ALT_SVC, HeaderValue::from_static("h3=\":1\""));
        Arc::new(SharedFields::new(map))
    }

    #[test]
    fn a_shared_set_renders_its_lines_without_the_sessions_fields() {
        let set = shared();
        assert_eq!(
            set.lines(),
            b"etag: \"a\"\r\ncontent-type: text/plain\r\naccept-ranges: bytes\r\n"
        );
        let names: Vec<&HeaderName> = set.map().keys().collect();
        assert_eq!(names, [&ETAG, &CONTENT_TYPE, &ACCEPT_RANGES]);
    }

    #[test]
    fn a_response_reads_and_merges_its_shared_fields() {
        let mut own = HeaderMap::new();
        own.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        own.insert("x-own", HeaderValue::from_static("1"));
        let response = || Response {
            status: StatusCode::OK,
            headers: own.clone(),
            shared: Some(shared()),
            body: Body::Empty,
        };
        let r = response();
        assert_eq!(
            r.header(&ETAG).map(HeaderValue::as_bytes),
            Some(&b"\"a\""[..])
        );
        assert_eq!(
            r.header("x-own").map(HeaderValue::as_bytes),
            Some(&b"1"[..])
        );
        assert!(r.header("x-none").is_none());

        // Unsharing keeps every field once; the response's own value wins over the shared one.
        let mut r = response();
        let all = r.take_headers();
        assert!(r.shared.is_none() && r.headers.is_empty());
        assert_eq!(all.len(), 4);
        assert_eq!(all[CONTENT_TYPE], "text/html");
        assert_eq!(all.get_all(CONTENT_TYPE).iter().count(), 1);
        assert_eq!(all[ETAG], "\"a\"");
        assert_eq!(all[ACCEPT_RANGES], "bytes");
        assert_eq!(all["x-own"], "1");

        // Without a shared set, the map is the response's own.
        let mut plain = Response::text(StatusCode::NOT_FOUND, "gone\n");
        plain.unshare();
        assert_eq!(plain.headers.len(), 1);
    }
}
