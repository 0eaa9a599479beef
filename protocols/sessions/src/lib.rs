//! Session actors: one per connection, translating wire bytes to service messages and back.
//!
//! A session owns its socket and nothing else. It parses with the sans-IO codecs of
//! `switchyard-wire`, sends each request through the worker's [`Router`] (one mailbox hop) and
//! writes the answer in its protocol's framing. It never decides what a request means.
//!
//! [`Router`]: switchyard_services::router::Router

pub mod access_log;
mod date;
mod deadline;
mod driven;
mod env;
pub mod follow;
pub mod h1;
pub mod h2;
pub mod h3;
mod head;
pub mod hq;
pub mod io;
pub mod peer;
mod spare;
#[cfg(test)]
mod testing;
pub mod tls;

pub use env::{ConnGuard, ConnTracker, Drain, LiveEnv, SessionEnv, Settings, Tunables};
