//! Delivering the outbox: the in-process hub that fans events out to live subscribers.

mod hub;
pub mod webhook;

pub use hub::{Hub, Subscription};
