//! End-to-end tests of the HTTP API against the real server on an ephemeral port.

#[path = "../common/mod.rs"]
mod common;

mod audio_store_db;
mod auth;
mod bad_input;
mod cli;
mod concurrency;
mod connection;
mod deposit;
mod email;
mod events;
mod fixtures;
mod greetings;
mod helpers;
mod inputs;
mod limits;
mod mailboxes;
mod messages;
mod metrics;
mod mwi_push;
mod openapi;
mod orphans;
mod outages;
mod pin;
mod renditions;
mod restart;
mod webhooks;
