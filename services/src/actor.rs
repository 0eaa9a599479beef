//! Service actors and their supervision.
//!
//! actix restarts an actor that stops itself, but a panic inside a handler unwinds through the
//! mailbox and kills the actor for good. So supervision of panics is ours: every handler runs
//! its work through [`supervised`], which catches the unwind at the service boundary, answers the
//! request 500, rebuilds the actor's state and counts the restart. Only the request that
//! panicked fails; every other connection and request carries on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::{Actor, Context, Handler, Message};
use switchyard_conf::Limits;
use tokio::sync::oneshot;

use crate::files::{FileCache, FilesLocation, serve};
use crate::message::{Request, Response};

/// Restarts of service actors after a panic, across all workers (for logs and metrics).
pub static SERVICE_RESTARTS: AtomicU64 = AtomicU64::new(0);

/// Run `work`; if it panics, log it, count a restart, and answer what `recover` returns after
/// rebuilding the state the panic may have left behind (a 500 for a request).
pub fn supervised<T>(
    service: &'static str,
    work: impl FnOnce() -> T,
    recover: impl FnOnce() -> T,
) -> T {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(answer) => answer,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            let restarts = SERVICE_RESTARTS.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(service, panic = %what, restarts, "service panicked; request answered 500, state rebuilt");
            recover()
        }
    }
}

/// A request for the files service, with the location it was routed to.
#[derive(Debug)]
pub struct FilesCall {
    pub req: Request,
    pub cfg: Arc<FilesLocation>,
    /// The limits of the configuration that routed it.
    pub limits: Arc<Limits>,
    pub reply: oneshot::Sender<Response>,
}

impl Message for FilesCall {
    type Result = ();
}

/// The static-files service: one per worker, sharing the small-file cache.
#[derive(Debug)]
pub struct FilesService {
    cache: FileCache,
    /// Fault injection for the supervision test: a request for exactly this path panics.
    /// Set from `SWITCHYARD_FAULT_PANIC_PATH`; `None` in normal operation.
    panic_path: Option<Arc<str>>,
}

impl FilesService {
    pub fn new(cache: FileCache, panic_path: Option<Arc<str>>) -> Self {
        FilesService { cache, panic_path }
    }
}

impl FilesService {
    /// Start the service on the current arbiter with a mailbox of `capacity` requests
    /// (`limits.service_queue`).
    pub fn start_bounded(self, capacity: usize) -> actix::Addr<Self> {
        FilesService::create(move |ctx| {
            ctx.set_mailbox_capacity(capacity);
            self
        })
    }
}

impl Actor for FilesService {
    type Context = Context<Self>;
}

impl Handler<FilesCall> for FilesService {
    type Result = ();

    fn handle(&mut self, call: FilesCall, _ctx: &mut Context<Self>) {
        let FilesCall {
            req,
            cfg,
            limits,
            reply,
        } = call;
        let this = &*self;
        let response = supervised(
            "files",
            || {
                if this.panic_path.as_deref() == Some(req.path.as_str()) {
                    panic!("fault injection: SWITCHYARD_FAULT_PANIC_PATH={}", req.path);
                }
                serve(&req, &cfg, &limits, &this.cache)
            },
            || {
                // The state is the worker's cache; entries are validated by inode, size and
                // times, so dropping them is only a precaution.
                this.cache.clear();
                Response::internal_error()
            },
        );
        // The session may have gone away (client closed); nobody is waiting then.
        let _ = reply.send(response);
    }
}
