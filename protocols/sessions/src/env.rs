//! What every session of one worker shares: the router, limits, timeouts, the access log and
//! the shutdown signal; what a reload changes of it for the connections accepted after it; and
//! the connection accounting the acceptor and the drain rely on.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use switchyard_conf::{Http2Config, Limits, LogConfig, Timeouts};
use switchyard_services::router::Router;
use switchyard_services::workers::OpenCounter;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

use crate::access_log::AccessLog;
use crate::follow::Follow;

/// One worker's session environment (per listener). Shared by `Rc`: it never leaves the
/// worker's thread.
#[derive(Debug, Clone)]
pub struct SessionEnv {
    pub router: Router,
    pub limits: Arc<Limits>,
    pub timeouts: Arc<Timeouts>,
    pub access_log: Option<AccessLog>,
    /// Started once, when the server begins draining (SIGTERM/SIGINT).
    pub drain: Arc<Drain>,
    /// HTTP/2 settings and protections, for every HTTP/2 connection of this worker.
    pub http2: Arc<switchyard_conf::Http2Config>,
    /// The seeded torrents, tracker and upload slots; `None` when `[torrent]` is disabled.
    pub torrent: Option<Arc<switchyard_services::torrent::TorrentStore>>,
    /// `Alt-Svc: h3=":PORT"; ma=86400` while this listener's port also answers QUIC
    /// (RFC 7838, RFC 9114 §3.1.1). Sent through [`AltSvcOnce`], on TLS only.
    pub alt_svc: Option<http::HeaderValue>,
    /// Where this listener's plain HTTP/1.1 connections move to follow their client's CPU;
    /// `None` with one worker.
    pub follow: Option<Rc<Follow>>,
}

/// The settings a connection keeps for its whole life, from the reload it was accepted under:
/// what it carries when it moves to another worker.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    limits: Arc<Limits>,
    timeouts: Arc<Timeouts>,
    http2: Arc<Http2Config>,
    access_log: Option<AccessLog>,
}

impl Settings {
    fn of(tunables: &Tunables) -> Settings {
        Settings {
            limits: tunables.limits.clone(),
            timeouts: tunables.timeouts.clone(),
            http2: tunables.http2.clone(),
            access_log: tunables.access_log.clone(),
        }
    }

    fn same(&self, env: &SessionEnv) -> bool {
        Arc::ptr_eq(&self.limits, &env.limits)
            && Arc::ptr_eq(&self.timeouts, &env.timeouts)
            && Arc::ptr_eq(&self.http2, &env.http2)
            && match (&self.access_log, &env.access_log) {
                (None, None) => true,
                (Some(a), Some(b)) => a.same(b),
                _ => false,
            }
    }
}

impl SessionEnv {
    /// The settings of this environment's connections.
    pub fn settings(&self) -> Settings {
        Settings {
            limits: self.limits.clone(),
            timeouts: self.timeouts.clone(),
            http2: self.http2.clone(),
            access_log: self.access_log.clone(),
        }
    }

    /// This environment for a connection that keeps `settings` (itself, unless a reload
    /// came between that connection's accept and now).
    pub fn keeping(self: &Rc<Self>, settings: Settings) -> Rc<SessionEnv> {
        if settings.same(self) {
            return Rc::clone(self);
        }
        Rc::new(self.with(settings))
    }

    /// This environment with `settings`.
    fn with(&self, settings: Settings) -> SessionEnv {
        SessionEnv {
            limits: settings.limits,
            timeouts: settings.timeouts,
            http2: settings.http2,
            access_log: settings.access_log,
            ..self.clone()
        }
    }

    /// The Alt-Svc value advertising HTTP/3 on `port`.
    pub fn alt_svc_for(port: u16) -> http::HeaderValue {
        let value = format!("h3=\":{port}\"; ma=86400");
        http::HeaderValue::from_str(&value).unwrap_or(http::HeaderValue::from_static("clear"))
    }

    /// The Alt-Svc value for a response on a connection of `scheme`: HTTP/3 serves `https`
    /// origins only (RFC 9114 §3.1), and clients ignore an alternative learned in clear, so a
    /// cleartext response does not carry one.
    pub fn alt_svc(&self, scheme: &str) -> Option<&http::HeaderValue> {
        self.alt_svc.as_ref().filter(|_| scheme == "https")
    }

    pub fn draining(&self) -> bool {
        self.drain.started()
    }

    /// This environment with the settings of `tunables`.
    fn tuned(&self, tunables: &Tunables) -> SessionEnv {
        self.with(Settings::of(tunables))
    }
}

/// The settings a reload changes for the connections accepted after it, as nginx's new workers
/// do: limits, timeouts, HTTP/2 settings and the access log. A connection keeps the settings it
/// was accepted with for its whole life, so no request sees two configurations.
#[derive(Debug)]
pub struct Tunables {
    pub limits: Arc<Limits>,
    pub timeouts: Arc<Timeouts>,
    pub http2: Arc<Http2Config>,
    pub access_log: Option<AccessLog>,
    /// The `[log]` section `access_log` was opened from: a reload that leaves it alone keeps
    /// the same writer.
    pub log: LogConfig,
}

/// An acceptor's environment, kept in step with the process's current [`Tunables`]: a reload
/// stores new ones, and the next connection accepted sees them. Checking costs one atomic load
/// per connection; the environment is rebuilt once per reload.
#[derive(Debug)]
pub struct LiveEnv {
    tunables: Arc<ArcSwap<Tunables>>,
    /// The tunables `env` was built with.
    applied: Arc<Tunables>,
    env: Rc<SessionEnv>,
}

impl LiveEnv {
    /// `env` with the current tunables, kept current from here on.
    pub fn new(env: SessionEnv, tunables: Arc<ArcSwap<Tunables>>) -> LiveEnv {
        let applied = tunables.load_full();
        let env = Rc::new(env.tuned(&applied));
        LiveEnv {
            tunables,
            applied,
            env,
        }
    }

    /// The environment for a connection accepted now.
    pub fn current(&mut self) -> &Rc<SessionEnv> {
        let now = self.tunables.load();
        if !Arc::ptr_eq(&now, &self.applied) {
            self.env = Rc::new(self.env.tuned(&now));
            self.applied = Arc::clone(&now);
        }
        &self.env
    }
}

/// Alt-Svc goes with the first response of a connection only. The client keeps the alternative
/// for `ma` seconds from the response that carried it (RFC 7838 §3.1), so another copy on the
/// same connection says nothing new, while each one costs: some 40 bytes on HTTP/1.1 and on
/// HTTP/3 (our QPACK has no dynamic table), and a field for the client to decode on HTTP/2.
#[derive(Debug)]
pub struct AltSvcOnce(Cell<bool>);

impl Default for AltSvcOnce {
    fn default() -> Self {
        AltSvcOnce(Cell::new(true))
    }
}

impl AltSvcOnce {
    /// The value the next response carries, if any; later responses carry none.
    pub fn take<'e>(&self, env: &'e SessionEnv, scheme: &str) -> Option<&'e http::HeaderValue> {
        if self.0.replace(false) {
            env.alt_svc(scheme)
        } else {
            None
        }
    }

    /// What [`AltSvcOnce::take`] would give now, without using it up (to size a head).
    pub fn peek<'e>(&self, env: &'e SessionEnv, scheme: &str) -> Option<&'e http::HeaderValue> {
        if self.0.get() {
            env.alt_svc(scheme)
        } else {
            None
        }
    }
}

/// The drain signal, shared by the whole process: set once, never reset.
#[derive(Debug, Default)]
pub struct Drain {
    started: AtomicBool,
    notify: Arc<Notify>,
}

impl Drain {
    /// Begin draining: every [`Drain::watch`] future completes.
    pub fn start(&self) {
        self.started.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// A future that completes when the drain starts. It is registered at once, so a drain
    /// started after this call is never missed; a connection makes one for its whole life and
    /// polls it at every idle wait, which costs nothing more per request.
    /// A watch made after the drain started completes at once too: an acceptor that a loaded
    /// machine starts late must still stop.
    pub fn watch(&self) -> Pin<Box<OwnedNotified>> {
        let mut watch = Box::pin(Arc::clone(&self.notify).notified_owned());
        watch.as_mut().enable();
        if self.started() {
            // `notify_waiters` ran before this waiter was registered (or wakes it anyway: the
            // permit this leaves is harmless once draining).
            self.notify.notify_one();
        }
        watch
    }
}

/// Live connections of the whole process, so a drain can wait for the last one.
#[derive(Debug, Default)]
pub struct ConnTracker {
    live: AtomicUsize,
    none_left: Notify,
}

impl ConnTracker {
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Wait until no connection is left (returns at once if there are none).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.none_left.notified();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Held by a connection from accept to close; counts it for its worker and for the process.
#[derive(Debug)]
pub struct ConnGuard {
    worker: OpenCounter,
    process: Arc<ConnTracker>,
}

impl ConnGuard {
    pub fn new(worker: OpenCounter, process: Arc<ConnTracker>) -> ConnGuard {
        worker.opened();
        process.live.fetch_add(1, Ordering::AcqRel);
        switchyard_services::metrics::opened();
        ConnGuard { worker, process }
    }

    /// Count the connection for another worker from now on (it is moving there).
    pub fn count_for(&mut self, worker: OpenCounter) {
        worker.opened();
        std::mem::replace(&mut self.worker, worker).closed();
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.worker.closed();
        switchyard_services::metrics::closed();
        if self.process.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.process.none_left.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[actix_rt::test]
    async fn connections_accepted_after_a_reload_get_its_settings_and_earlier_ones_keep_theirs() {
        let tunables = |max_body, keepalive| Tunables {
            limits: Arc::new(Limits {
                max_body,
                ..Limits::default()
            }),
            timeouts: Arc::new(Timeouts {
                keepalive: Duration::from_secs(keepalive),
                ..Timeouts::default()
            }),
            http2: Arc::new(Http2Config::default()),
            access_log: None,
            log: LogConfig::default(),
        };
        let slot = Arc::new(ArcSwap::from_pointee(tunables(1, 1)));
        let base = (*crate::testing::env(Limits::default())).clone();
        let mut live = LiveEnv::new(base, slot.clone());
        let before = Rc::clone(live.current());
        assert_eq!(
            before.limits.max_body, 1,
            "the current tunables apply from the start"
        );
        assert!(Rc::ptr_eq(&before, live.current()), "no reload, no rebuild");
        slot.store(Arc::new(tunables(2, 7)));
        let after = Rc::clone(live.current());
        assert_eq!(after.limits.max_body, 2);
        assert_eq!(after.timeouts.keepalive, Duration::from_secs(7));
        assert_eq!(
            before.limits.max_body, 1,
            "an open connection keeps its settings"
        );
        assert!(
            Rc::ptr_eq(&after, live.current()),
            "rebuilt once per reload"
        );
        // A connection accepted before the reload that moves to another worker keeps its
        // settings there; one accepted after it takes that worker's environment as it is.
        let moved = after.keeping(before.settings());
        assert_eq!(moved.limits.max_body, 1);
        assert_eq!(moved.timeouts.keepalive, Duration::from_secs(1));
        assert!(Rc::ptr_eq(&after.keeping(after.settings()), &after));
    }

    #[tokio::test]
    async fn every_watch_completes_whether_made_before_or_after_the_drain_started() {
        let drain = Drain::default();
        let early = drain.watch();
        drain.start();
        let late: Vec<_> = (0..3).map(|_| drain.watch()).collect();
        let all = async {
            early.await;
            for watch in late {
                watch.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .expect("a watch never completed");
    }
}
