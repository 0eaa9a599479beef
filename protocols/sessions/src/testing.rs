//! What the sessions' unit tests share.

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use switchyard_conf::{Config, Http2Config, Limits};
use switchyard_services::actor::FilesService;
use switchyard_services::files::FileCache;
use switchyard_services::router::{RouteTable, Router};
use switchyard_services::workers::OpenCounter;

use crate::env::{ConnGuard, ConnTracker, Drain, SessionEnv};

/// The environment of one worker serving the crate directory (the tests' working directory).
/// Call it inside an actix system: it starts the worker's files service.
pub(crate) fn env(limits: Limits) -> Rc<SessionEnv> {
    env_at(Path::new("."), limits)
}

/// The environment of one worker serving `root`.
pub(crate) fn env_at(root: &Path, limits: Limits) -> Rc<SessionEnv> {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    let mut config = Config::serve_dir(root, addr).expect("root is a directory");
    config.limits = limits;
    let cache = FileCache::new(config.limits.file_cache_bytes);
    let files = FilesService::new(cache.clone(), None).start_bounded(config.limits.service_queue);
    let table = Arc::new(Arc::new(RouteTable::new(&config)).into());
    Rc::new(SessionEnv {
        router: Router::new(table, files, cache),
        limits: Arc::new(config.limits.clone()),
        timeouts: Arc::new(config.timeouts.clone()),
        access_log: None,
        drain: Arc::new(Drain::default()),
        http2: Arc::new(Http2Config::default()),
        torrent: None,
        alt_svc: None,
        follow: None,
    })
}

/// A connection guard counting in a worker and a process of its own.
pub(crate) fn guard() -> ConnGuard {
    ConnGuard::new(OpenCounter::default(), Arc::new(ConnTracker::default()))
}
