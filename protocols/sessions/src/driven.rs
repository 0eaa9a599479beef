//! The actor shell of a session whose whole work is one future.
//!
//! The future runs as a task of the worker's own, beside the actor rather than inside its
//! context: a connection's future is woken for every read and write, and polling it through
//! the actor's context would also poll the actor's mailbox and spawned items each time, which
//! costs as much as the HTTP/1.1 session's own code for a small request. The actor owns the
//! task's abort handle, so the connection (and every task the future owns) still lives and dies
//! with the actor, and the actor stops when the future ends. Every session is one such future.

use std::fmt;
use std::future::Future;

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, WrapFuture};
use tokio::task::{AbortHandle, JoinHandle};

pub(crate) struct Driven {
    /// What the session is, for `Debug`.
    name: &'static str,
    /// The driver's task until `started` waits for it.
    task: Option<JoinHandle<()>>,
    /// Ends the driver's task if the actor stops first (its arbiter shutting down).
    abort: AbortHandle,
}

impl Driven {
    /// Start an actor that runs `driver` on the current worker and stops when it ends.
    pub(crate) fn start(name: &'static str, driver: impl Future<Output = ()> + 'static) {
        let task = tokio::task::spawn_local(driver);
        Actor::start(Driven {
            name,
            abort: task.abort_handle(),
            task: Some(task),
        });
    }
}

impl fmt::Debug for Driven {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(self.name)
            .field("finished", &self.abort.is_finished())
            .finish()
    }
}

impl Actor for Driven {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(task) = self.task.take() {
            // Woken once, when the driver ends (or panics: the task reports it, the worker
            // and every other connection carry on).
            ctx.spawn(
                task.into_actor(self)
                    .map(|_ended, _act, ctx: &mut Context<Self>| ctx.stop()),
            );
        }
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        self.abort.abort();
    }
}
