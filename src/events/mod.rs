//! Delivering the outbox: the in-process hub that fans events out to live subscribers.

mod ami;
mod hub;
pub mod mwi;
pub mod sip;
pub mod webhook;

pub use hub::{Hub, Subscription};
