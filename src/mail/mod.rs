//! Voicemail-to-email: Asterisk templates, the MIME message, attachment renditions and SMTP.
//! The outbox rows live in the SQL store; the worker that drains them is in `service::email`.

pub mod attachment;
pub mod compose;
pub mod smtp;
pub mod template;

pub use compose::{AudioAttachment, ComposeError, MailSettings};
pub use smtp::{Mailer, SendError};
