//! The seam between the reverse proxy and the response cache: locations with `cache = true`
//! are answered by [`CacheLayer::handle`], which calls the proxy (in the request's own task,
//! no mailbox hop) only when it has to go upstream.
//!
//! [`to_forwarded`] turns the proxy's [`Response`] into what the cache consumes: a body that
//! ends within `max_object_size` is read whole ([`Forwarded::Complete`]); a larger one (known
//! from `Content-Length`, or found while reading a body of unknown length) goes to the client
//! as a stream ([`Forwarded::Passthrough`]) with the part already read put back in front; an
//! answer the proxy made itself because no member could be reached is [`Forwarded::Failed`]
//! (so `stale-if-error` may answer instead).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, header};

use crate::cache::{CacheLayer, Forwarded, UpstreamResponse};
use crate::message::{Body, BodyStream, Frame, FrameSource, Request, Response};
use crate::proxy::{ProxyRoute, ProxyService};

/// Answer `req` for a cached proxy location: from the cache, or through `proxy` to `route`'s
/// pool. A stale-while-revalidate refresh is spawned on the current worker.
pub async fn serve(
    layer: &CacheLayer,
    proxy: Arc<ProxyService>,
    route: Arc<ProxyRoute>,
    req: Request,
) -> Response {
    let max = layer.max_object_size();
    let served = layer
        .handle(req, move |up_req| {
            let (proxy, route) = (proxy.clone(), route.clone());
            async move { to_forwarded(proxy.forward(&route, up_req).await, max).await }
        })
        .await;
    if let Some(refresh) = served.refresh {
        actix_rt::spawn(refresh);
    }
    served.response
}

/// What the cache gets from a proxied response (see the module docs).
pub async fn to_forwarded(mut response: Response, max: u64) -> Forwarded {
    if made_by_proxy(&response) {
        return Forwarded::Failed(response);
    }
    let headers = response.take_headers();
    let Response { status, body, .. } = response;
    let complete = |headers, body| {
        Forwarded::Complete(UpstreamResponse {
            status,
            headers,
            body,
        })
    };
    match body {
        Body::Empty => complete(headers, Bytes::new()),
        Body::Bytes(bytes) if bytes.len() as u64 <= max => complete(headers, bytes),
        Body::Stream(stream) if stream.len().is_none_or(|n| n <= max) => {
            match read_within(stream, max).await {
                Read::Whole(bytes) => complete(headers, bytes),
                Read::Larger(stream) => Forwarded::Passthrough(Response {
                    status,
                    headers,
                    shared: None,
                    body: Body::Stream(stream),
                }),
                Read::Failed(e) => Forwarded::Failed(member_failed(e)),
            }
        }
        body => Forwarded::Passthrough(Response {
            status,
            headers,
            shared: None,
            body,
        }),
    }
}

/// The proxy's own error answers (no member reachable, all down, timeouts, a caught panic)
/// carry nothing but their `Content-Type` (and `Retry-After`); a member's answers always have
/// more (at least the `Via` or `Date` it sent, or none of these statuses).
fn made_by_proxy(response: &Response) -> bool {
    matches!(response.status.as_u16(), 500 | 502 | 503 | 504)
        && matches!(response.body, Body::Bytes(_))
        // A member's answer carries its fields as a shared set; the proxy's own never does.
        && response.shared.is_none()
        && response
            .headers
            .keys()
            .all(|k| k == header::CONTENT_TYPE || k == header::RETRY_AFTER)
}

fn member_failed(e: io::Error) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Response {
        status: StatusCode::BAD_GATEWAY,
        headers,
        shared: None,
        body: Body::Bytes(Bytes::from(format!(
            "502 Bad Gateway: the member's response body failed: {e}\n"
        ))),
    }
}

enum Read {
    Whole(Bytes),
    /// Longer than `max`, or with trailers: the frames read so far, then the rest.
    Larger(BodyStream),
    Failed(io::Error),
}

/// Read `stream` whole if it ends within `max` bytes without trailers.
async fn read_within(mut stream: BodyStream, max: u64) -> Read {
    let len = stream.len();
    let mut whole = BytesMut::new();
    let mut read: VecDeque<Frame> = VecDeque::new();
    loop {
        match stream.frame().await {
            None => {
                return Read::Whole(if read.len() == 1 {
                    match read.pop_front() {
                        Some(Frame::Data(d)) => d,
                        _ => whole.freeze(),
                    }
                } else {
                    whole.freeze()
                });
            }
            Some(Err(e)) => return Read::Failed(e),
            Some(Ok(Frame::Data(data))) => {
                let over = (whole.len() + data.len()) as u64 > max;
                if read.is_empty() && !over {
                    whole.extend_from_slice(&data);
                    read.push_back(Frame::Data(data));
                    continue;
                }
                read.push_back(Frame::Data(data.clone()));
                if over {
                    return Read::Larger(prefixed(read, stream, len));
                }
                whole.extend_from_slice(&data);
            }
            Some(Ok(trailers @ Frame::Trailers(_))) => {
                read.push_back(trailers);
                return Read::Larger(prefixed(read, stream, len));
            }
        }
    }
}

fn prefixed(read: VecDeque<Frame>, rest: BodyStream, len: Option<u64>) -> BodyStream {
    BodyStream::new(
        Prefixed {
            read,
            rest: Some(rest),
        },
        len,
    )
}

/// Frames already read, then the rest of the stream.
struct Prefixed {
    read: VecDeque<Frame>,
    rest: Option<BodyStream>,
}

impl FrameSource for Prefixed {
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame>>> {
        let this = self.get_mut();
        if let Some(frame) = this.read.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match &mut this.rest {
            Some(rest) => {
                let next = std::task::ready!(rest.poll_frame(cx));
                if next.is_none() {
                    this.rest = None;
                }
                Poll::Ready(next)
            }
            None => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(chunks: &[&'static str], len: Option<u64>) -> Body {
        let frames: Vec<Frame> = chunks
            .iter()
            .map(|c| Frame::Data(Bytes::from_static(c.as_bytes())))
            .collect();
        Body::Stream(BodyStream::new(
            crate::proxy::body::Frames(frames.into()),
            len,
        ))
    }

    fn member(status: u16, body: Body) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(header::DATE, http::HeaderValue::from_static("x"));
        Response {
            status: StatusCode::from_u16(status).expect("status"),
            headers,
            shared: None,
            body,
        }
    }

    async fn drain(body: Body) -> Vec<u8> {
        let Body::Stream(mut s) = body else {
            panic!("not a stream: {body:?}")
        };
        let mut out = Vec::new();
        while let Some(frame) = s.frame().await {
            if let Frame::Data(d) = frame.expect("frame") {
                out.extend_from_slice(&d);
            }
        }
        out
    }

    #[actix_rt::test]
    async fn bodies_within_the_limit_are_read_whole_and_larger_ones_pass_through_intact() {
        let whole = |f: Forwarded| match f {
            Forwarded::Complete(up) => up.body,
            other => panic!("not complete: {other:?}"),
        };
        assert_eq!(
            whole(to_forwarded(member(200, streamed(&["ab", "cd"], Some(4))), 4).await),
            "abcd"
        );
        assert_eq!(
            whole(to_forwarded(member(200, streamed(&["ab", "cd"], None)), 4).await),
            "abcd"
        );
        assert_eq!(whole(to_forwarded(member(404, Body::Empty), 4).await), "");
        // Known to be larger: not read at all.
        match to_forwarded(member(200, streamed(&["abcde"], Some(5))), 4).await {
            Forwarded::Passthrough(r) => assert_eq!(drain(r.body).await, b"abcde"),
            other => panic!("{other:?}"),
        }
        // Unknown length, found larger while reading: the prefix is put back.
        match to_forwarded(member(200, streamed(&["ab", "cd", "ef", "gh"], None)), 5).await {
            Forwarded::Passthrough(r) => assert_eq!(drain(r.body).await, b"abcdefgh"),
            other => panic!("{other:?}"),
        }
    }

    #[actix_rt::test]
    async fn the_proxys_own_errors_are_failures_and_members_5xx_are_answers() {
        let mut own = Response::text(StatusCode::BAD_GATEWAY, "502 Bad Gateway: down\n");
        own.headers
            .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        assert!(matches!(to_forwarded(own, 100).await, Forwarded::Failed(_)));
        let from_member = member(503, Body::Bytes(Bytes::from_static(b"busy")));
        assert!(matches!(
            to_forwarded(from_member, 100).await,
            Forwarded::Complete(_)
        ));
    }
}
