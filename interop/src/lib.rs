//! Test helpers (stub).
