//! Session actors (stub).
