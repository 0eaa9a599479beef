//! HTTP/2 (RFC 9113), server side, sans-IO: [`frame`] for the layout of frames, [`conn`] for
//! a connection's state: streams, flow control, header blocks (through [`crate::hpack`]), and
//! the protections of RFC 9113 §10.5; [`out`] for what it has to write.

pub mod conn;
pub mod frame;
pub mod out;

pub use crate::hpack::Known;
pub use conn::{Conn, ConnError, Ended, Event, FieldWriter, Recv, Settings};
pub use frame::Reason;
pub use out::Output;
