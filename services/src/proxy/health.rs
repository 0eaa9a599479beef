//! The health actor: active checks, idle-connection sweeping and periodic re-resolution of
//! member host names, for every pool. One per process.
//!
//! It writes each member's `healthy` flag; the proxy path reads it with a plain load. A check is
//! one request on a fresh connection (never a pooled one, so a check measures the member, not
//! our pool), bounded by the check's timeout. `rise` consecutive passes bring a member back,
//! `fall` consecutive failures take it out; every change is logged. A check that panics is
//! caught and counted as a failure: the actor keeps running.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, Message, SpawnHandle};
use http_body::Body as _;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::TokioExecutor;
use switchyard_conf::HealthCheck;

use super::ProxyService;
use super::upstream::{MemberState, UpstreamState};

/// How often idle connections are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct HealthActor {
    proxy: Arc<ProxyService>,
    timers: Vec<SpawnHandle>,
}

impl HealthActor {
    pub fn new(proxy: Arc<ProxyService>) -> HealthActor {
        HealthActor {
            proxy,
            timers: Vec::new(),
        }
    }
}

/// The pools were reloaded: check the current ones.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PoolsChanged;

impl Handler<PoolsChanged> for HealthActor {
    type Result = ();

    fn handle(&mut self, _: PoolsChanged, ctx: &mut Context<Self>) {
        for timer in self.timers.drain(..) {
            ctx.cancel_future(timer);
        }
        self.schedule(ctx);
    }
}

impl Actor for HealthActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.schedule(ctx);
    }
}

impl HealthActor {
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        for up in self.proxy.upstreams() {
            if let Some(check) = up.conf.health.clone() {
                let up = up.clone();
                let timer = ctx.run_interval(check.interval, move |_, _| {
                    let set = up.set.load_full();
                    for member in &set.members {
                        let (up, member, check) = (up.clone(), member.clone(), check.clone());
                        actix_rt::spawn(async move {
                            let started = Instant::now();
                            let result = super::CatchUnwind(Box::pin(probe(&up, &member, &check)))
                                .await
                                .unwrap_or_else(|panic| Err(format!("check panicked: {panic}")));
                            record(&up, &member, &check, result, started.elapsed());
                        });
                    }
                });
                self.timers.push(timer);
            }
            let sweep = up.clone();
            let timer = ctx.run_interval(SWEEP_EVERY, move |_, _| {
                for member in &sweep.set.load().members {
                    member.sweep_idle(sweep.conf.idle_timeout);
                }
            });
            self.timers.push(timer);
            let resolve = up.clone();
            let timer = ctx.run_interval(up.conf.resolve_interval, move |_, _| {
                let up = resolve.clone();
                // getaddrinfo blocks: run it off the actor's thread.
                std::thread::spawn(move || up.re_resolve());
            });
            self.timers.push(timer);
        }
    }
}

/// One check of one member: `Ok(())` when it answered as expected within the timeout.
async fn probe(
    up: &UpstreamState,
    member: &MemberState,
    check: &HealthCheck,
) -> Result<(), String> {
    let work = async {
        let io = up
            .connect_for_check(member)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut request = http::Request::new(super::body::UpBody::Empty);
        *request.method_mut() =
            http::Method::from_bytes(check.method.as_bytes()).map_err(|e| e.to_string())?;
        let response = if up.speaks_h2(member) {
            let (mut send, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            actix_rt::spawn(async move {
                let _ = conn.await;
            });
            let scheme = if member.tls { "https" } else { "http" };
            *request.uri_mut() = format!("{scheme}://{}{}", member.authority, check.path)
                .parse()
                .map_err(|e: http::uri::InvalidUri| e.to_string())?;
            *request.version_mut() = http::Version::HTTP_2;
            send.send_request(request)
                .await
                .map_err(|e| e.to_string())?
        } else {
            let (mut send, conn) = http1::handshake(io).await.map_err(|e| e.to_string())?;
            actix_rt::spawn(async move {
                let _ = conn.await;
            });
            *request.uri_mut() = check
                .path
                .parse()
                .map_err(|e: http::uri::InvalidUri| e.to_string())?;
            request.headers_mut().insert(
                http::header::HOST,
                http::HeaderValue::from_str(&member.authority).map_err(|e| e.to_string())?,
            );
            request.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            send.send_request(request)
                .await
                .map_err(|e| e.to_string())?
        };
        let status = response.status();
        // Read (and drop) the body so the member is not reset mid-answer.
        let mut body = response.into_body();
        while let Some(frame) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            frame.map_err(|e| e.to_string())?;
        }
        let ok = match check.expect {
            Some(want) => status.as_u16() == want,
            None => status.is_success() || status.is_redirection(),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    };
    match tokio::time::timeout(check.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {:?}", check.timeout)),
    }
}

fn record(
    up: &UpstreamState,
    member: &MemberState,
    check: &HealthCheck,
    result: Result<(), String>,
    took: Duration,
) {
    let healthy = member.healthy.load(Ordering::Relaxed);
    match result {
        Ok(()) => {
            member.check_fail.store(0, Ordering::Relaxed);
            let passes = member.check_ok.fetch_add(1, Ordering::Relaxed) + 1;
            if !healthy && passes >= check.rise {
                member.healthy.store(true, Ordering::Relaxed);
                member.down_until.store(0, Ordering::Relaxed);
                tracing::info!(upstream = %up.conf.name, member = %member.addr, passes, "member is healthy again");
            }
        }
        Err(why) => {
            member.check_ok.store(0, Ordering::Relaxed);
            let fails = member.check_fail.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::debug!(upstream = %up.conf.name, member = %member.addr, error = %why, ?took, "health check failed");
            if healthy && fails >= check.fall {
                member.healthy.store(false, Ordering::Relaxed);
                tracing::warn!(upstream = %up.conf.name, member = %member.addr, fails, error = %why, "member is unhealthy: out of rotation");
            }
        }
    }
}
