//! End-to-end tests of the HTTP API against the real server on an ephemeral port.

#[path = "../common/mod.rs"]
mod common;

mod deposit;
mod events;
mod webhooks;
