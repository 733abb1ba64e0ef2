//! A bounded pool of IMAP connections for one server (one IMAP-backed context).
//!
//! A connection acts for one voicemail box (its login and [`Owner`]), so idle connections are
//! kept per (server, login, owner) and reused by the next operation on that box. Every open
//! connection — in use or idle — holds one of `max` permits: a node never has more than `max`
//! sockets to the server for API work, however many mailboxes it serves. When all permits are
//! held and one is needed for another box, the oldest idle connection is closed to free one;
//! when all are in use, the caller waits up to the account's timeout and then gets
//! [`ImapError::Timeout`] (a 503 with `Retry-After` to the API client). Idle connections are
//! closed after `idle_timeout` ([`ImapPool::reap`]); one idle for more than a few seconds is
//! checked with `NOOP` before it is handed out, so a server restart costs a reconnect, not an
//! error.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::client::{ImapAccount, ImapClient, ImapError, Owner};

/// How long a connection may sit idle before it is checked with `NOOP` on reuse.
const CHECK_AFTER: Duration = Duration::from_secs(5);

struct Idle {
    key: String,
    client: ImapClient,
    since: Instant,
    permit: OwnedSemaphorePermit,
}

struct Inner {
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
    idle_timeout: Duration,
}

impl Inner {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bounded pool of IMAP connections. Cheap to clone.
#[derive(Clone)]
pub struct ImapPool {
    inner: Arc<Inner>,
}

/// A connection borrowed from the pool; it goes back when dropped, unless it broke.
pub struct Lease {
    client: Option<ImapClient>,
    key: String,
    permit: Option<OwnedSemaphorePermit>,
    pool: Arc<Inner>,
}

impl Lease {
    /// The connection.
    pub fn client(&mut self) -> Result<&mut ImapClient, ImapError> {
        self.client.as_mut().ok_or(ImapError::Broken)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let (Some(client), Some(permit)) = (self.client.take(), self.permit.take()) else {
            return;
        };
        if client.is_broken() {
            return; // the socket goes; its permit with it
        }
        self.pool.idle().push(Idle {
            key: std::mem::take(&mut self.key),
            client,
            since: Instant::now(),
            permit,
        });
    }
}

/// Logs a connection out in the background (when there is a runtime to do it on).
fn close(client: ImapClient) {
    if !client.is_broken()
        && let Ok(rt) = tokio::runtime::Handle::try_current()
    {
        rt.spawn(client.logout());
    }
}

impl ImapPool {
    /// A pool of at most `max` connections (at least 1); idle ones close after `idle_timeout`.
    pub fn new(max: usize, idle_timeout: Duration) -> Self {
        let max = max.max(1);
        Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(max)),
                idle: Mutex::new(Vec::new()),
                idle_timeout,
            }),
        }
    }

    fn key(account: &ImapAccount, owner: &Owner) -> String {
        format!(
            "{}:{}\0{}\0{}@{}",
            account.host,
            account.port,
            account.login_name(),
            owner.mailbox,
            owner.context
        )
    }

    /// A connection for `owner`: an idle one of the same box, or a new one once a permit is
    /// free (waiting at most the account's timeout).
    pub async fn get(&self, account: Arc<ImapAccount>, owner: Owner) -> Result<Lease, ImapError> {
        let key = Self::key(&account, &owner);
        let deadline = tokio::time::Instant::now() + account.timeout;
        loop {
            let reused = {
                let mut idle = self.inner.idle();
                idle.iter()
                    .rposition(|c| c.key == key)
                    .map(|i| idle.swap_remove(i))
            };
            if let Some(mut c) = reused {
                if c.since.elapsed() >= self.inner.idle_timeout || c.client.is_broken() {
                    close(c.client);
                    continue;
                }
                if c.since.elapsed() >= CHECK_AFTER && c.client.noop().await.is_err() {
                    continue; // dropped: the permit is free again
                }
                c.client.resync_next();
                return Ok(self.lease(c.client, c.key, c.permit));
            }
            let permit = match self.inner.permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    // Every permit is held: close the oldest idle connection of another box,
                    // or wait for one in use to come back.
                    let oldest = {
                        let mut idle = self.inner.idle();
                        (0..idle.len())
                            .min_by_key(|&i| idle[i].since)
                            .map(|i| idle.swap_remove(i))
                    };
                    if let Some(c) = oldest {
                        close(c.client);
                        continue;
                    }
                    match tokio::time::timeout_at(
                        deadline,
                        self.inner.permits.clone().acquire_owned(),
                    )
                    .await
                    {
                        Ok(Ok(p)) => p,
                        Ok(Err(_)) => return Err(ImapError::Broken),
                        Err(_) => {
                            return Err(ImapError::Timeout {
                                op: "waiting for a free connection",
                                secs: account.timeout.as_secs(),
                            });
                        }
                    }
                }
            };
            let client = ImapClient::connect(account, owner).await?;
            return Ok(self.lease(client, key, permit));
        }
    }

    fn lease(&self, client: ImapClient, key: String, permit: OwnedSemaphorePermit) -> Lease {
        Lease {
            client: Some(client),
            key,
            permit: Some(permit),
            pool: self.inner.clone(),
        }
    }

    /// Closes the connections idle for longer than the idle timeout.
    pub fn reap(&self) {
        let expired: Vec<Idle> = {
            let mut idle = self.inner.idle();
            let (old, keep): (Vec<Idle>, Vec<Idle>) = idle
                .drain(..)
                .partition(|c| c.since.elapsed() >= self.inner.idle_timeout);
            *idle = keep;
            old
        };
        for c in expired {
            close(c.client);
        }
    }
}
