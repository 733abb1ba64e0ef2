//! Delivering the outbox: the in-process hub that fans events out to live subscribers, and the
//! delivery queue (`queue`) that webhooks, MWI pushes and e-mail run on.

mod ami;
mod hub;
pub mod mwi;
pub mod queue;
pub mod sip;
pub mod webhook;

pub use hub::{Hub, Subscription};
