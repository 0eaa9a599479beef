//! The reverse proxy: forward a request to a member of an upstream pool and stream the answer.
//!
//! [`ProxyService`] is shared by every worker and holds no per-request state: the pools'
//! members, counters and keep-alive connections live in [`upstream::UpstreamState`], member
//! health is written by the [`health`] actor and read here with plain atomic loads. A request
//! is forwarded in the session's own task (no mailbox hop): select a member ([`balance`]), take
//! a connection (idle, new, or wait in the pool's bounded queue), send, and hand the response
//! back with its body streaming from the member. Failures move idempotent requests to the next
//! member, up to `max_tries`.
//!
//! [`ProxyService::forward`] is the entry point a cache wraps: it takes a [`Request`] and
//! returns a [`Response`] whose streamed body can be observed with
//! [`crate::message::BodyStream::tee`].

pub mod balance;
pub mod body;
pub mod client;
pub mod headers;
pub mod health;
mod tls;
pub mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use http_body::Body as _;
use hyper::body::Incoming;
use switchyard_conf::{HashKey, ProxyLocation, Upstream};

use crate::message::{Body, BodyStream, Frame, Request, Response, SharedFields, Tunnel, TunnelIo};
use body::{Frames, MemberBody, UpBody};
use headers::PreparedEdits;
use switchyard_wire::client::{RequestFraming, ResponseBody, ResponseHead};
use upstream::{COLLECT_MAX, Conn, MemberState, UpstreamState};

/// A location routed to a pool, prepared once per configuration.
#[derive(Debug)]
pub struct ProxyRoute {
    /// The location's path prefix (for `strip_prefix`).
    pub prefix: String,
    pub location: ProxyLocation,
    pub request_edits: PreparedEdits,
    pub response_edits: PreparedEdits,
}

impl ProxyRoute {
    pub fn new(prefix: &str, location: &ProxyLocation) -> ProxyRoute {
        ProxyRoute {
            prefix: prefix.to_owned(),
            request_edits: PreparedEdits::new(&location.request_headers),
            response_edits: PreparedEdits::new(&location.response_headers),
            location: location.clone(),
        }
    }
}

/// Every configured pool, shared by all workers. A reload swaps the set of pools; a pool whose
/// configuration did not change keeps its connections, counters and health.
#[derive(Debug, Default)]
pub struct ProxyService {
    upstreams: ArcSwap<HashMap<String, Arc<UpstreamState>>>,
}

impl ProxyService {
    /// Resolve the members of every pool. Fails on an unusable TLS set-up (CA file).
    pub fn new(upstreams: &[Upstream]) -> io::Result<ProxyService> {
        let service = ProxyService::default();
        service.reload(upstreams)?;
        Ok(service)
    }

    /// Replace the pools with `upstreams`, keeping the unchanged ones as they are. On error
    /// (a TLS set-up that fails) nothing changes.
    pub fn reload(&self, upstreams: &[Upstream]) -> io::Result<()> {
        let old = self.upstreams.load();
        let mut map = HashMap::new();
        for conf in upstreams {
            let state = match old.get(&conf.name) {
                Some(state) if state.conf == *conf => state.clone(),
                _ => {
                    let state = Arc::new(UpstreamState::new(conf.clone())?);
                    tracing::info!(
                        upstream = %conf.name,
                        members = state.set.load().members.len(),
                        balance = ?conf.balance,
                        "upstream ready"
                    );
                    state
                }
            };
            map.insert(conf.name.clone(), state);
        }
        self.upstreams.store(Arc::new(map));
        Ok(())
    }

    /// The current pools.
    pub fn upstreams(&self) -> Vec<Arc<UpstreamState>> {
        self.upstreams.load().values().cloned().collect()
    }

    pub fn upstream(&self, name: &str) -> Option<Arc<UpstreamState>> {
        self.upstreams.load().get(name).cloned()
    }

    /// Forward `req` to a member of `route`'s pool and return its response, with the body
    /// streaming from the member. Never fails: errors are answered 502/503/504 with a short
    /// explanation. A panic inside is caught and answered 500.
    pub async fn forward(&self, route: &ProxyRoute, req: Request) -> Response {
        let Some(up) = self.upstream(&route.location.upstream) else {
            return error(StatusCode::BAD_GATEWAY, "no such upstream".to_owned());
        };
        self.forward_to(up, route, req).await
    }

    /// Like [`ProxyService::forward`], to a pool that is not among the configured ones (the
    /// pools of routes read from Redis).
    pub async fn forward_to(
        &self,
        up: Arc<UpstreamState>,
        route: &ProxyRoute,
        req: Request,
    ) -> Response {
        let work = CatchUnwind(Box::pin(self.forward_inner(up, route, req)));
        match work.await {
            Ok(response) => response,
            Err(what) => {
                let restarts = crate::actor::SERVICE_RESTARTS.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(service = "proxy", panic = %what, restarts, "proxy panicked; request answered 500");
                Response::internal_error()
            }
        }
    }

    async fn forward_inner(
        &self,
        up: Arc<UpstreamState>,
        route: &ProxyRoute,
        mut req: Request,
    ) -> Response {
        let up = &up;
        let conf = &up.conf;
        if let Some(max) = route.location.max_body {
            let announced = req.stream.as_ref().and_then(|s| s.len());
            if req.body.len() as u64 > max || announced.is_some_and(|n| n > max) {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large".into(),
                );
            }
        }
        let upgrade = req.version == Version::HTTP_11
            && req.method == Method::GET
            && headers::is_upgrade(&req.headers);
        let idempotent = matches!(
            req.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        let is_head = req.method == Method::HEAD;
        let mut hdrs = std::mem::take(&mut req.headers);
        headers::strip_hop_by_hop(&mut hdrs, upgrade);
        // The session already answered `Expect: 100-continue`; the body follows at once.
        hdrs.remove(header::EXPECT);
        if route.location.forwarded {
            headers::add_forwarded(
                &mut hdrs,
                req.peer.ip(),
                req.scheme,
                req.host.as_deref(),
                req.version,
            );
        }
        headers::apply_edits(&mut hdrs, &route.request_edits);
        let path = headers::upstream_path(
            &req.path,
            req.query.as_deref(),
            &route.prefix,
            route.location.strip_prefix,
        );
        let key = self.hash_key(conf, &req, &hdrs);
        let mut stream = req.stream.take();
        let streamed = stream.is_some();
        let full = std::mem::take(&mut req.body);
        let framing = match &stream {
            Some(s) => s
                .len()
                .map_or(RequestFraming::Chunked, RequestFraming::Length),
            None if !full.is_empty() || !matches!(req.method, Method::GET | Method::HEAD) => {
                RequestFraming::Length(full.len() as u64)
            }
            None => RequestFraming::None,
        };
        // The connections hyper drives (HTTP/2, upgrades) take the length from the map.
        if let RequestFraming::Length(n) = framing {
            hdrs.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }

        let mut tries = Tries {
            tried: Vec::new(),
            last_error: String::from("no member was tried"),
        };
        let mut attempts = 0;
        while attempts < conf.max_tries {
            attempts += 1;
            let (index, member) = match self.select(up, &tries.tried, key).await {
                Ok(found) => found,
                Err(response) => {
                    if tries.tried.is_empty() {
                        return response;
                    }
                    break;
                }
            };
            let conn = match up.connection(&member, upgrade).await {
                Ok(Some(conn)) => conn,
                Ok(None) => {
                    // Another request took the last slot between selection and now.
                    attempts -= 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(e) => {
                    // Nothing was sent: any request may go to the next member.
                    let why = format!("{}: connect: {e}", member.addr);
                    tries.failed(self, up, &member, index, why);
                    continue;
                }
            };
            // Nothing of the request was sent yet; from here on a streamed body is consumed.
            let client_body = Arc::new(AtomicBool::new(false));
            let body = match (&mut stream, streamed) {
                (Some(_), _) => {
                    UpBody::Stream(stream.take().expect("checked"), client_body.clone())
                }
                (None, true) => {
                    return error(
                        StatusCode::BAD_GATEWAY,
                        format!("{} (the request body was already sent)", tries.last_error),
                    );
                }
                (None, false) if full.is_empty() => UpBody::Empty,
                (None, false) => UpBody::Full(Some(full.clone())),
            };
            let active = Active::new(&member);
            let replayable = !streamed && idempotent;
            let conn = match conn {
                Conn::H1(mut conn, reused) => {
                    let authority: &str = req.host.as_deref().unwrap_or(&member.authority);
                    let sent = conn
                        .exchange(
                            &req.method,
                            &path,
                            authority,
                            &hdrs,
                            framing,
                            body,
                            conf.send_timeout,
                            conf.read_timeout,
                        )
                        .await;
                    let head = match sent {
                        Ok(head) if head.status != StatusCode::SWITCHING_PROTOCOLS => head,
                        Ok(_) => {
                            let why =
                                format!("{}: switched protocols without being asked", member.addr);
                            tries.failed(self, up, &member, index, why);
                            if !replayable {
                                return tries.answer(StatusCode::BAD_GATEWAY);
                            }
                            continue;
                        }
                        Err(f) if f.client_failed => return client_failed(f.why),
                        Err(f) => {
                            drop(conn);
                            let why = format!("{}: {}", member.addr, f.why);
                            if reused && f.closed_before_answer && !streamed {
                                // The member closed an idle connection as we reused it: nothing
                                // was processed, so any request may go again (not counted as a
                                // try).
                                tries.last_error = why;
                                attempts -= 1;
                                continue;
                            }
                            tries.failed(self, up, &member, index, why);
                            if !replayable {
                                return tries.answer(if f.timed_out {
                                    StatusCode::GATEWAY_TIMEOUT
                                } else {
                                    StatusCode::BAD_GATEWAY
                                });
                            }
                            continue;
                        }
                    };
                    if conf.retry_on.contains(&head.status.as_u16())
                        && replayable
                        && attempts < conf.max_tries
                    {
                        let why = format!("{}: answered {}", member.addr, head.status);
                        tries.failed(self, up, &member, index, why);
                        continue;
                    }
                    member.record_success();
                    let answer = self
                        .respond_h1(up, route, member.clone(), conn, active, head, is_head)
                        .await;
                    match answer {
                        Ok(response) => return response,
                        // The member died between its head and its body (killed, reset).
                        Err(why) => {
                            tries.failed(self, up, &member, index, why);
                            if !replayable {
                                return tries.answer(StatusCode::BAD_GATEWAY);
                            }
                            continue;
                        }
                    }
                }
                other => other,
            };
            let h2 = matches!(conn, Conn::H2(_));
            let mut request = http::Request::new(body);
            *request.method_mut() = req.method.clone();
            *request.headers_mut() = hdrs.clone();
            let authority: &str = req.host.as_deref().unwrap_or(&member.authority);
            if h2 {
                *request.version_mut() = Version::HTTP_2;
                let scheme = if member.tls { "https" } else { "http" };
                match format!("{scheme}://{authority}{path}").parse() {
                    Ok(uri) => *request.uri_mut() = uri,
                    Err(_) => return error(StatusCode::BAD_REQUEST, "invalid target".into()),
                }
                request.headers_mut().remove(header::HOST);
            } else {
                match path.parse() {
                    Ok(uri) => *request.uri_mut() = uri,
                    Err(_) => return error(StatusCode::BAD_REQUEST, "invalid target".into()),
                }
                if !request.headers().contains_key(header::HOST) {
                    if let Ok(v) = HeaderValue::from_str(authority) {
                        request.headers_mut().insert(header::HOST, v);
                    }
                }
            }
            let started = Instant::now();
            let (sent, keep) = match conn {
                Conn::H1(..) => unreachable!("answered by our own client above"),
                Conn::H1Spawned(mut send) => {
                    let r =
                        tokio::time::timeout(conf.read_timeout, send.send_request(request)).await;
                    (r, Keep::Spawned { _send: send })
                }
                Conn::H2(mut send) => {
                    let r =
                        tokio::time::timeout(conf.read_timeout, send.send_request(request)).await;
                    (r, Keep::Nothing)
                }
            };
            match sent {
                Err(_elapsed) => {
                    let why = format!(
                        "{}: no response within {:?}",
                        member.addr, conf.read_timeout
                    );
                    tries.failed(self, up, &member, index, why);
                    if !replayable {
                        return tries.answer(StatusCode::GATEWAY_TIMEOUT);
                    }
                }
                // The request body the client was sending failed (see `client_failed`), however
                // hyper reports it (over HTTP/2 it may be the stream's reset).
                Ok(Err(e)) if client_body.load(Ordering::Relaxed) => {
                    return client_failed(e.to_string());
                }
                Ok(Err(e)) => {
                    drop(keep);
                    tries.failed(self, up, &member, index, format!("{}: {e}", member.addr));
                    if !replayable {
                        return tries.answer(StatusCode::BAD_GATEWAY);
                    }
                }
                Ok(Ok(response)) => {
                    let status = response.status();
                    if conf.retry_on.contains(&status.as_u16())
                        && replayable
                        && attempts < conf.max_tries
                    {
                        let why = format!("{}: answered {status}", member.addr);
                        tries.failed(self, up, &member, index, why);
                        continue;
                    }
                    member.record_success();
                    tracing::trace!(member = %member.addr, %status, elapsed = ?started.elapsed(), "member answered");
                    let answer = self
                        .respond(
                            up,
                            route,
                            member.clone(),
                            keep,
                            active,
                            response,
                            is_head,
                            upgrade,
                        )
                        .await;
                    match answer {
                        Ok(response) => return response,
                        // The member died between its head and its body (killed, reset).
                        Err(why) => {
                            tries.failed(self, up, &member, index, why);
                            if !replayable {
                                return tries.answer(StatusCode::BAD_GATEWAY);
                            }
                        }
                    }
                }
            }
        }
        error(
            StatusCode::BAD_GATEWAY,
            format!(
                "no member of upstream {:?} answered ({} tried; last: {})",
                conf.name,
                tries.tried.len(),
                tries.last_error
            ),
        )
    }

    fn failed(&self, up: &UpstreamState, member: &MemberState, why: &str) {
        tracing::debug!(upstream = %up.conf.name, member = %member.addr, error = why, "member failed");
        let p = &up.conf.passive;
        if member.record_failure(p.failures, p.window, p.cooldown) {
            tracing::warn!(
                upstream = %up.conf.name,
                member = %member.addr,
                cooldown = ?p.cooldown,
                "member marked down after {} failures",
                p.failures
            );
        }
    }

    fn hash_key(&self, conf: &Upstream, req: &Request, hdrs: &HeaderMap) -> u64 {
        use balance::hash_bytes;
        match conf.balance {
            switchyard_conf::Balance::IpHash => match req.peer.ip().to_canonical() {
                std::net::IpAddr::V4(v4) => hash_bytes(&v4.octets()),
                std::net::IpAddr::V6(v6) => hash_bytes(&v6.octets()),
            },
            switchyard_conf::Balance::ConsistentHash => match &conf.hash_key {
                HashKey::Path => hash_bytes(req.path.as_bytes()),
                HashKey::Header(name) => match hdrs.get(name.as_str()) {
                    Some(v) => hash_bytes(v.as_bytes()),
                    None => hash_bytes(req.path.as_bytes()),
                },
                HashKey::Cookie(name) => match headers::cookie(hdrs, name) {
                    Some(v) => hash_bytes(v.as_bytes()),
                    None => hash_bytes(req.peer.ip().to_string().as_bytes()),
                },
            },
            _ => 0,
        }
    }

    /// Pick a member not yet tried. When every usable member is at its connection cap, wait in
    /// the pool's bounded queue (503 when it is full or the wait times out); when none is up,
    /// 502.
    async fn select(
        &self,
        up: &Arc<UpstreamState>,
        tried: &[usize],
        key: u64,
    ) -> Result<(usize, Arc<MemberState>), Response> {
        let deadline = tokio::time::Instant::now() + up.conf.queue_timeout;
        let mut queued: Option<QueueSlot<'_>> = None;
        // The common case first: a member has room, nothing to wait for.
        {
            let set = up.set.load();
            let candidates = set.candidates(tried);
            let random = [balance::random_u64(), balance::random_u64()];
            if let Some(i) = set.balancer.pick(&candidates, key, random) {
                return Ok((i, set.members[i].clone()));
            }
        }
        loop {
            let notified = up.released.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before counting ourselves as queued, and both before looking again:
            // a release either shows in the look or sees the count and wakes us.
            notified.as_mut().enable();
            let set = up.set.load();
            let any_up = set
                .members
                .iter()
                .enumerate()
                .any(|(i, m)| m.up() && !tried.contains(&i));
            if !any_up {
                return Err(error(
                    StatusCode::BAD_GATEWAY,
                    format!("every member of upstream {:?} is down", up.conf.name),
                ));
            }
            if queued.is_none() {
                if up.queued.fetch_add(1, Ordering::SeqCst) >= up.conf.queue {
                    up.queued.fetch_sub(1, Ordering::SeqCst);
                    return Err(overloaded(format!(
                        "upstream {:?}: every member is at its connection limit and the queue is full",
                        up.conf.name
                    )));
                }
                queued = Some(QueueSlot(up));
            }
            let candidates = set.candidates(tried);
            let random = [balance::random_u64(), balance::random_u64()];
            if let Some(i) = set.balancer.pick(&candidates, key, random) {
                return Ok((i, set.members[i].clone()));
            }
            drop(set);
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(overloaded(format!(
                    "upstream {:?}: no connection became free within {:?}",
                    up.conf.name, up.conf.queue_timeout
                )));
            }
        }
    }

    /// Turn the member's answer into ours. `Err` when a small body, read whole before
    /// answering, failed: nothing was sent to the client, so the request may go elsewhere.
    #[allow(clippy::too_many_arguments)]
    async fn respond(
        &self,
        up: &Arc<UpstreamState>,
        route: &ProxyRoute,
        member: Arc<MemberState>,
        keep: Keep,
        active: Active,
        response: hyper::Response<Incoming>,
        is_head: bool,
        upgrade: bool,
    ) -> Result<Response, String> {
        let status = response.status();
        if status == StatusCode::SWITCHING_PROTOCOLS && upgrade {
            let (mut parts, body) = response.into_parts();
            let response = hyper::Response::from_parts(parts.clone(), body);
            headers::strip_hop_by_hop(&mut parts.headers, true);
            let on_upgrade = hyper::upgrade::on(response);
            let io = async move {
                let upgraded = on_upgrade.await.map_err(io::Error::other)?;
                drop(keep);
                drop(active);
                Ok(Box::new(hyper_util::rt::TokioIo::new(upgraded)) as Box<dyn TunnelIo>)
            };
            return Ok(Response {
                status,
                headers: parts.headers,
                shared: None,
                body: Body::Upgrade(Tunnel { io: Box::pin(io) }),
            });
        }
        let (parts, incoming) = response.into_parts();
        let mut hdrs = parts.headers;
        let length = hdrs
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        headers::strip_hop_by_hop(&mut hdrs, false);
        hdrs.remove(header::CONTENT_LENGTH);
        hdrs.remove(header::TE);
        if route.location.forwarded {
            headers::add_via(&mut hdrs, parts.version);
        }
        headers::apply_edits(&mut hdrs, &route.response_edits);
        let bodiless = is_head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if bodiless || incoming.is_end_stream() {
            drop(keep);
            drop(active);
            return Ok(Response {
                status,
                headers: hdrs,
                shared: None,
                body: head_body(is_head, length),
            });
        }
        if length.is_some_and(|n| n <= COLLECT_MAX) {
            return match collect(incoming, up.conf.read_timeout).await {
                Ok(frames) => {
                    drop(keep);
                    drop(active);
                    Ok(Response {
                        status,
                        headers: hdrs,
                        shared: None,
                        body: frames_body(frames),
                    })
                }
                // Nothing of the answer went to the client yet: the caller may try another
                // member.
                Err(e) => Err(format!("{}: response body: {e}", member.addr)),
            };
        }
        let on_done: body::OnDone = Box::new(move |_, _| {
            drop(keep);
            drop(active);
        });
        let source = MemberBody {
            incoming,
            read_timeout: up.conf.read_timeout,
            timer: None,
            on_done: Some(on_done),
            member,
        };
        Ok(Response {
            status,
            headers: hdrs,
            shared: None,
            body: Body::Stream(BodyStream::new(source, length)),
        })
    }

    /// Turn an answer read by our HTTP/1.1 client into ours. A small body is read whole
    /// (usually it came in the same read as the head); `Err` when that failed: nothing was sent
    /// to the client, so the request may go elsewhere. A larger one streams from the
    /// connection, which goes back to the pool once the body is read to its end.
    #[allow(clippy::too_many_arguments)]
    async fn respond_h1(
        &self,
        up: &Arc<UpstreamState>,
        route: &ProxyRoute,
        member: Arc<MemberState>,
        mut conn: client::MemberConn,
        active: Active,
        head: ResponseHead,
        is_head: bool,
    ) -> Result<Response, String> {
        let ResponseHead {
            status,
            version,
            mut fields,
            body,
            content_length,
            ..
        } = head;
        if route.location.forwarded {
            fields.extend_from_slice(b"Via: ");
            fields.extend_from_slice(headers::via_hop(version).as_bytes());
            fields.extend_from_slice(b"\r\n");
        }
        // The member's fields go on as the lines it sent (an HTTP/1.1 client gets them with one
        // copy; other sessions parse them when they need a map). Edits need a map.
        let (hdrs, shared) = if route.response_edits.is_empty() {
            (
                HeaderMap::new(),
                Some(Arc::new(SharedFields::from_lines(fields))),
            )
        } else {
            let mut hdrs = match switchyard_wire::client::parse_field_lines(&fields) {
                Ok(map) => map,
                Err(e) => return Err(format!("{}: {e}", member.addr)),
            };
            headers::apply_edits(&mut hdrs, &route.response_edits);
            (hdrs, None)
        };
        let max_idle = up.conf.max_idle;
        let release = {
            let up = up.clone();
            let member = member.clone();
            move |conn: Option<client::MemberConn>, complete: bool| {
                if let (Some(conn), true) = (conn, complete) {
                    member.put_idle(conn, max_idle);
                    up.wake_queue();
                }
            }
        };
        let small = match body {
            ResponseBody::None => Some(0),
            ResponseBody::Length(n) if n <= COLLECT_MAX => Some(n as usize),
            _ => None,
        };
        if let Some(len) = small {
            let data = match conn.read_body(len, up.conf.read_timeout).await {
                Ok(data) => data,
                Err(f) => return Err(format!("{}: response body: {}", member.addr, f.why)),
            };
            release(Some(conn), true);
            drop(active);
            let body = if body == ResponseBody::None {
                head_body(is_head, content_length)
            } else if data.is_empty() {
                Body::Empty
            } else {
                Body::Bytes(data)
            };
            return Ok(Response {
                status,
                headers: hdrs,
                shared,
                body,
            });
        }
        let on_done: body::OnDone = Box::new(move |conn, complete| {
            release(conn, complete);
            drop(active);
        });
        let length = match body {
            ResponseBody::Length(n) => Some(n),
            _ => None,
        };
        let source = client::ConnBody::new(conn, body, up.conf.read_timeout, on_done, member);
        Ok(Response {
            status,
            headers: hdrs,
            shared,
            body: Body::Stream(BodyStream::new(source, length)),
        })
    }
}

/// The body of an answer that has none on the wire: a HEAD answer keeps announcing the
/// member's length.
fn head_body(is_head: bool, length: Option<u64>) -> Body {
    match length {
        Some(n) if is_head && n > 0 => {
            Body::Stream(BodyStream::new(Frames(Default::default()), Some(n)))
        }
        _ => Body::Empty,
    }
}

/// Read a small body whole (each wait bounded by `read_timeout`).
async fn collect(
    mut incoming: Incoming,
    read_timeout: std::time::Duration,
) -> io::Result<Vec<Frame>> {
    let mut frames = Vec::new();
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_frame(cx));
        match tokio::time::timeout(read_timeout, next).await {
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "member stopped sending",
                ));
            }
            Ok(None) => return Ok(frames),
            Ok(Some(Err(e))) => return Err(io::Error::other(e)),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => frames.push(Frame::Data(data)),
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        frames.push(Frame::Trailers(t));
                    }
                }
            },
        }
    }
}

fn frames_body(frames: Vec<Frame>) -> Body {
    if frames.iter().any(|f| matches!(f, Frame::Trailers(_))) {
        let len = frames
            .iter()
            .map(|f| match f {
                Frame::Data(d) => d.len() as u64,
                Frame::Trailers(_) => 0,
            })
            .sum();
        return Body::Stream(BodyStream::new(Frames(frames.into()), Some(len)));
    }
    let mut data = frames.into_iter().filter_map(|f| match f {
        Frame::Data(d) => Some(d),
        Frame::Trailers(_) => None,
    });
    match (data.next(), data.next()) {
        (None, _) => Body::Empty,
        (Some(one), None) => Body::Bytes(one),
        (Some(a), Some(b)) => {
            let mut all = BytesMut::with_capacity(a.len() + b.len());
            all.extend_from_slice(&a);
            all.extend_from_slice(&b);
            for d in data {
                all.extend_from_slice(&d);
            }
            Body::Bytes(all.freeze())
        }
    }
}

/// The members one request has tried, and why the last try failed.
struct Tries {
    /// Indexes of the members tried (and failed), which selection skips.
    tried: Vec<usize>,
    last_error: String,
}

impl Tries {
    /// Count a failed try of `member` (passive health included) and remember why.
    fn failed(
        &mut self,
        proxy: &ProxyService,
        up: &UpstreamState,
        member: &MemberState,
        index: usize,
        why: String,
    ) {
        proxy.failed(up, member, &why);
        self.last_error = why;
        self.tried.push(index);
    }

    /// The answer when the request cannot go to another member.
    fn answer(self, status: StatusCode) -> Response {
        error(status, self.last_error)
    }
}

/// The client's request body failed while it streamed to a member: cut off, or longer than the
/// location allows. That says nothing of the member, which is neither counted as failed nor
/// tried again; the session answers 413 for a body too long, and closes the connection.
fn client_failed(why: String) -> Response {
    tracing::debug!(error = %why, "request body failed while streaming to a member");
    error(StatusCode::BAD_REQUEST, why)
}

/// An error answered by the proxy itself, with the reason in the body.
fn error(status: StatusCode, why: String) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Response {
        status,
        headers,
        shared: None,
        body: Body::Bytes(Bytes::from(format!(
            "{} {reason}: {why}\n",
            status.as_u16()
        ))),
    }
}

fn overloaded(why: String) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, why);
    r.headers
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// What keeps a member connection alive while its response is in use.
#[derive(Debug)]
enum Keep {
    /// Driven by its own task (an upgrade).
    Spawned {
        _send: hyper::client::conn::http1::SendRequest<UpBody>,
    },
    /// HTTP/2: the shared connection runs on its own.
    Nothing,
}

/// Counts a request in flight to a member until dropped.
#[derive(Debug)]
struct Active(Arc<MemberState>);

impl Active {
    fn new(member: &Arc<MemberState>) -> Active {
        member.active.fetch_add(1, Ordering::Relaxed);
        Active(member.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A place in a pool's wait queue, given back when dropped.
struct QueueSlot<'a>(&'a UpstreamState);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Polls a future, turning a panic into `Err(message)`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned()))),
        }
    }
}
