//! PINs: argon2 hashes (or, in contexts shared with Asterisk's realtime users, the PIN itself),
//! checked off the async executor, with a lockout against brute force.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::{Result, ServiceError, Voicemail};
use crate::domain::{MailboxAddress, PinStorage, Principal, now_secs};
use crate::store::{PinAttempt, PinPolicy};

/// Compares without an early exit, so the time taken says nothing about where a guess differs.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(a.len() ^ b.len(), |d, (x, y)| d | usize::from(x ^ y));
    diff == 0
}

fn valid_pin(pin: &str) -> bool {
    (1..=20).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit())
}

impl Voicemail {
    fn pin_policy(&self) -> PinPolicy {
        PinPolicy {
            max_failures: self.config.pin.max_failures,
            window_secs: self.config.pin.window_secs as i64,
            lockout_secs: self.config.pin.lockout_secs as i64,
        }
    }

    /// The `password` value of a PIN in `context`: its argon2 hash, or the PIN itself where the
    /// context keeps PINs as Asterisk's realtime users need them (`pins = plain`).
    pub(crate) async fn stored_pin(&self, context: &str, pin: String) -> Result<String> {
        match self.sql.context_pin_storage(context).await? {
            PinStorage::Hashed => self.hash_pin(pin).await,
            PinStorage::Plain if valid_pin(&pin) => Ok(pin),
            PinStorage::Plain => Err(ServiceError::Invalid("pin must be 1-20 digits".into())),
        }
    }

    /// Hashes a PIN (1-20 digits, as a phone keypad can enter it).
    pub(crate) async fn hash_pin(&self, pin: String) -> Result<String> {
        if !valid_pin(&pin) {
            return Err(ServiceError::Invalid("pin must be 1-20 digits".into()));
        }
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| ServiceError::Unavailable("shutting down".into()))?;
        // argon2 is deliberately slow CPU work: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(pin.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| ServiceError::Unavailable(format!("hashing failed: {e}")))
        })
        .await
        .map_err(|e| ServiceError::Unavailable(format!("hashing task failed: {e}")))?
    }

    /// Checks a mailbox PIN. After `max_failures` failures within the window the mailbox refuses
    /// attempts (even correct ones) until the lockout ends.
    pub async fn verify_pin(
        &self,
        p: &Principal,
        address: &MailboxAddress,
        pin: &str,
    ) -> Result<()> {
        let mailbox = self.visible_mailbox(p, address).await?;
        let policy = self.pin_policy();
        let hash = match self.sql.begin_pin_attempt(&mailbox, policy).await? {
            PinAttempt::Locked { until } => {
                return Err(ServiceError::Locked {
                    retry_after: (until - now_secs()).max(1) as u64,
                });
            }
            PinAttempt::Allowed { pin_hash } => pin_hash,
        };
        let ok = if hash.is_empty() || pin.len() > 64 {
            false
        } else if !hash.starts_with("$argon2") {
            // Kept as plain text (`pins = plain`, or changed by Asterisk in VoiceMailMain).
            constant_time_eq(hash.as_bytes(), pin.as_bytes())
        } else {
            let pin = pin.to_owned();
            let _permit = self
                .hashing
                .acquire()
                .await
                .map_err(|_| ServiceError::Unavailable("shutting down".into()))?;
            // argon2 verification is CPU work; its comparison is constant-time.
            tokio::task::spawn_blocking(move || {
                PasswordHash::new(&hash)
                    .map(|h| {
                        Argon2::default()
                            .verify_password(pin.as_bytes(), &h)
                            .is_ok()
                    })
                    .unwrap_or(false)
            })
            .await
            .map_err(|e| ServiceError::Unavailable(format!("PIN check failed: {e}")))?
        };
        self.sql.finish_pin_attempt(&mailbox, ok, policy).await?;
        if ok {
            Ok(())
        } else {
            Err(ServiceError::PinMismatch)
        }
    }
}
