//! Sans-IO wire logic (stub, being written).
