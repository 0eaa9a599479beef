//! The files service (stub, being written).
