//! The actor shell of a session whose whole work is one future.
//!
//! The actor owns the future, so the connection (and every task the future owns) lives and
//! dies with the actor, and the actor stops when the future ends. HTTP/2, HTTP/3 and
//! `hq-interop` sessions are each one such future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, WrapFuture};

pub(crate) struct Driven {
    /// What the session is, for `Debug`.
    name: &'static str,
    driver: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

impl Driven {
    /// Start an actor that runs `driver` and stops when it ends.
    pub(crate) fn start(name: &'static str, driver: impl Future<Output = ()> + 'static) {
        Actor::start(Driven {
            name,
            driver: Some(Box::pin(driver)),
        });
    }
}

impl fmt::Debug for Driven {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(self.name)
            .field("running", &self.driver.is_none())
            .finish()
    }
}

impl Actor for Driven {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(driver) = self.driver.take() {
            ctx.spawn(
                driver
                    .into_actor(self)
                    .map(|(), _act, ctx: &mut Context<Self>| ctx.stop()),
            );
        }
    }
}
