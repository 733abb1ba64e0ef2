//! Wake-ups across nodes. Every node's outbox consumers (hub, dispatchers) wait on a local watch
//! channel; a commit on this node bumps it directly. Commits on other nodes reach it here:
//! PostgreSQL sends a NOTIFY with each committing event transaction (`Dialect::notify_sql`), which a
//! listener per node turns into a bump; MySQL/MariaDB have no notifications, so a node polls the
//! newest outbox seq. SQLite serves one node, so nothing runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Dialect, SqlStore};

/// The PostgreSQL channel that event transactions notify.
pub(super) const CHANNEL: &str = "voxmail_events";

fn bump(wake: &watch::Sender<u64>) {
    wake.send_modify(|n| *n = n.wrapping_add(1));
}

impl SqlStore {
    /// Bumps `wake` when another node commits events: a LISTEN task on PostgreSQL, a poll of the
    /// newest seq every `poll` on MySQL/MariaDB, nothing on SQLite. Stops with `shutdown`.
    pub fn watch_other_nodes(
        self: &Arc<Self>,
        wake: Arc<watch::Sender<u64>>,
        poll: Duration,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        match self.dialect {
            Dialect::Sqlite => {}
            Dialect::Postgres => {
                let url = self.url.clone();
                tracker.spawn(listen(url, wake, shutdown));
            }
            Dialect::MySql => {
                let store = self.clone();
                tracker.spawn(async move { store.poll_outbox(wake, poll, shutdown).await });
            }
        }
    }

    async fn poll_outbox(
        &self,
        wake: Arc<watch::Sender<u64>>,
        poll: Duration,
        shutdown: CancellationToken,
    ) {
        let mut last = None;
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.last_event_seq().await {
                Ok(seq) => {
                    // The first read wakes the consumers too, as the listener's connect does:
                    // whatever committed before it was not seen by this watcher.
                    if last != Some(seq) {
                        bump(&wake);
                    }
                    last = Some(seq);
                }
                Err(e) => tracing::debug!(error = %e, "outbox poll failed"),
            }
        }
    }
}

/// Listens for NOTIFYs and bumps `wake` for each; after a lost connection it reconnects and bumps
/// once, so consumers catch up on whatever was committed meanwhile.
async fn listen(url: String, wake: Arc<watch::Sender<u64>>, shutdown: CancellationToken) {
    loop {
        let listener = async {
            let mut l = sqlx::postgres::PgListener::connect(&url).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            () = shutdown.cancelled() => return,
            l = listener => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN for other nodes' events; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        bump(&wake);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                n = listener.try_recv() => match n {
                    Ok(Some(_)) => bump(&wake),
                    // The connection dropped; the next call reconnects and re-listens.
                    Ok(None) => {
                        tracing::info!("event listener reconnecting");
                        bump(&wake);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener failed; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}
