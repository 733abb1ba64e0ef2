//! SQLite's one writer, with group commit.
//!
//! SQLite lets one connection write at a time, and every commit in WAL mode with
//! `synchronous = FULL` waits for an fsync of the log. Writers of this process queue on one fair
//! lock (instead of sleeping and retrying on SQLITE_BUSY). When writers are queued behind the one
//! that holds the lock, they share its transaction: each runs inside a savepoint of it, and the
//! transaction commits once for all of them. A writer's [`Member::commit`] returns only when the
//! transaction holding its changes has committed (or with that commit's error), so the promise
//! is the same as one transaction each — only the fsync is shared.
//!
//! Who commits: a writer that finishes while no one is queued commits at once (a lone writer
//! pays nothing for this). One that finishes while others are queued leaves the transaction open
//! and queues a committer task on the same lock; the lock is first-come, first-served, so the
//! committer runs right after the writers that were waiting and commits their work with it.
//! A batch also commits once it holds [`MAX_BATCH`] writers.
//!
//! A writer that fails or is dropped half-way (its client hung up) leaves its savepoint open;
//! whoever takes the lock next rolls it back before anything else, so the others' changes in the
//! batch are kept. If that rollback fails (SQLite rolled the whole transaction back, as it does on
//! SQLITE_FULL), the batch is abandoned and every writer in it gets the error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use super::StoreError;

/// The most writers one transaction holds before it commits.
const MAX_BATCH: usize = 64;

/// The savepoint of the writer in progress.
const SAVEPOINT: &str = "SAVEPOINT voxmail_w";
const RELEASE: &str = "RELEASE voxmail_w";
const ROLLBACK_TO: &str = "ROLLBACK TO voxmail_w";

/// The end of a batch, as its writers see it: `Ok`, or the error (whether it was a full disk,
/// and what the database said).
type Outcome = Option<Result<(), (bool, Arc<str>)>>;

/// The writer of a SQLite database (one per store).
pub(super) struct Writer {
    state: Arc<Mutex<State>>,
    /// Writers waiting for `state`: a finishing writer leaves the transaction open for them.
    queued: Arc<AtomicUsize>,
}

#[derive(Default)]
struct State {
    batch: Option<Batch>,
    /// A committer task is queued on the lock.
    committer: bool,
    /// Transactions committed (for tests).
    commits: u64,
}

struct Batch {
    tx: Transaction<'static, Any>,
    /// Writers whose changes are in the transaction, waiting for its commit.
    members: usize,
    /// A writer's changes are in progress or were abandoned: `Some(true)` inside its savepoint,
    /// `Some(false)` when it was the batch's first writer (no savepoint: the whole transaction is
    /// its own).
    open: Option<bool>,
    done: watch::Sender<Outcome>,
}

impl Writer {
    pub(super) fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            queued: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Takes the lock and opens this writer's part of a transaction (`BEGIN IMMEDIATE` for a new
    /// one, a savepoint in an open one).
    pub(super) async fn begin(&self, pool: &AnyPool) -> Result<Member, StoreError> {
        let mut guard = self.lock().await;
        cleanup(&mut guard).await;
        if guard.batch.is_none() {
            let tx = super::begin_detached(pool, Some("BEGIN IMMEDIATE")).await?;
            guard.batch = Some(Batch {
                tx,
                members: 0,
                open: Some(false),
                done: watch::channel(None).0,
            });
            return Ok(self.member(guard));
        }
        let batch = batch_mut(&mut guard)?;
        // Open before the statement: if this future is dropped while the SAVEPOINT runs, the next
        // holder of the lock rolls back to it (a savepoint that was never made fails that, and
        // abandons the batch, which is safe).
        batch.open = Some(true);
        let mut member = self.member(guard);
        sqlx::query(SAVEPOINT).execute(member.conn()).await?;
        Ok(member)
    }

    /// Takes the lock with no transaction open in this process (for statements that write
    /// outside a transaction, on a connection of their own): an open batch commits first.
    pub(super) async fn exclusive(&self) -> Exclusive {
        let guard = self.lock().await;
        // In a task of its own, so that a commit runs to its end even if the caller goes away.
        let state = self.state.clone();
        let guard = match tokio::spawn(async move {
            let mut guard = guard;
            flush(&mut guard).await;
            guard
        })
        .await
        {
            Ok(guard) => guard,
            // The task panicked, dropping the guard: take the lock afresh.
            Err(_) => state.lock_owned().await,
        };
        Exclusive { _guard: guard }
    }

    async fn lock(&self) -> OwnedMutexGuard<State> {
        struct Queued<'a>(&'a AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        let _queued = Queued(&self.queued);
        self.state.clone().lock_owned().await
    }

    fn member(&self, guard: OwnedMutexGuard<State>) -> Member {
        Member {
            guard: Some(guard),
            queued: self.queued.clone(),
        }
    }
}

/// The lock, held with no transaction open (see [`Writer::exclusive`]).
pub(super) struct Exclusive {
    _guard: OwnedMutexGuard<State>,
}

/// One writer's part of a transaction; it holds the lock until it commits, rolls back or is
/// dropped (which rolls its changes back, see the module docs).
pub(crate) struct Member {
    guard: Option<OwnedMutexGuard<State>>,
    queued: Arc<AtomicUsize>,
}

impl Member {
    /// The transaction's connection.
    pub(super) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        match self.guard.as_mut().and_then(|g| g.batch.as_mut()) {
            Some(b) => &mut b.tx,
            // A member holds the lock, and so its batch, until commit or rollback consumes it.
            None => unreachable!("a writer's batch is open while it holds the lock"),
        }
    }

    pub(super) fn conn_ref(&self) -> &sqlx::AnyConnection {
        match self.guard.as_ref().and_then(|g| g.batch.as_ref()) {
            Some(b) => &b.tx,
            None => unreachable!("a writer's batch is open while it holds the lock"),
        }
    }

    /// Ends this writer's part and waits until the transaction holding it has committed.
    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let Some(mut guard) = self.guard.take() else {
            return Err(into_sqlx(lost()));
        };
        let Some(batch) = guard.batch.as_mut() else {
            return Err(into_sqlx(lost()));
        };
        if batch.open == Some(true)
            && let Err(e) = sqlx::query(RELEASE).execute(&mut *batch.tx).await
        {
            // Left open: the next holder rolls this writer back.
            self.guard = Some(guard);
            return Err(e);
        }
        batch.open = None;
        batch.members += 1;
        let mut done = batch.done.subscribe();
        let full = batch.members >= MAX_BATCH;
        // Others are queued (or a committer already is): they join, and the committer commits.
        if !full && (guard.committer || self.queued.load(Ordering::Relaxed) > 0) {
            leave_to_committer(guard);
        } else {
            // Commit now, in a task of its own: once decided, the COMMIT runs to its end even
            // when this future is dropped, and the lock is released only after it.
            tokio::spawn(async move {
                let mut guard = guard;
                flush(&mut guard).await;
            });
        }
        let outcome = done
            .wait_for(Option::is_some)
            .await
            .map(|o| o.clone())
            .ok()
            .flatten();
        match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err((full, message))) => Err(shared_error(full, &message)),
            None => Err(into_sqlx(lost())),
        }
    }

    /// Rolls this writer's changes back (the others in the transaction keep theirs).
    pub(super) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        let Some(mut guard) = self.guard.take() else {
            return Ok(());
        };
        cleanup(&mut guard).await;
        if guard.batch.is_some() {
            // Others' changes are in it.
            leave_to_committer(guard);
        }
        Ok(())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // Dropped before commit or rollback: the savepoint stays open for the next holder of the
        // lock to roll back, and a committer makes sure there is one.
        if let Some(guard) = self.guard.take() {
            leave_to_committer(guard);
        }
    }
}

/// Releases the lock with the transaction left open, making sure a committer is queued for it.
fn leave_to_committer(mut guard: OwnedMutexGuard<State>) {
    if guard.committer {
        return;
    }
    guard.committer = true;
    let state = OwnedMutexGuard::mutex(&guard).clone();
    drop(guard);
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let mut guard = state.lock_owned().await;
            guard.committer = false;
            flush(&mut guard).await;
        });
    }
}

fn batch_mut(guard: &mut State) -> Result<&mut Batch, StoreError> {
    guard.batch.as_mut().ok_or_else(lost)
}

/// Rolls back the changes of a writer that did not finish, if any.
async fn cleanup(state: &mut State) {
    let Some(batch) = state.batch.as_mut() else {
        return;
    };
    let rolled_back = match batch.open {
        None => return,
        Some(true) => match sqlx::query(ROLLBACK_TO).execute(&mut *batch.tx).await {
            Ok(_) => sqlx::query(RELEASE).execute(&mut *batch.tx).await.map(drop),
            Err(e) => Err(e),
        },
        // The first writer's changes are the whole transaction.
        Some(false) if batch.members == 0 => {
            if let Some(b) = state.batch.take() {
                let _ = b.tx.rollback().await;
            }
            return;
        }
        Some(false) => Err(into_sqlx(lost())),
    };
    match rolled_back {
        Ok(()) => batch.open = None,
        Err(e) => abandon(state, &e).await,
    }
}

/// Commits the open transaction, if any, and tells its writers.
async fn flush(state: &mut State) {
    cleanup(state).await;
    let Some(batch) = state.batch.take() else {
        return;
    };
    state.commits += 1;
    let outcome = match batch.tx.commit().await {
        Ok(()) => Ok(()),
        Err(e) => Err(describe(&e)),
    };
    if let Err((_, message)) = &outcome {
        tracing::warn!(writers = batch.members, error = %message, "SQLite commit failed");
    }
    batch.done.send_replace(Some(outcome));
}

/// Gives up the open transaction: its writers get `e`.
async fn abandon(state: &mut State, e: &sqlx::Error) {
    if let Some(batch) = state.batch.take() {
        tracing::warn!(writers = batch.members, error = %e, "SQLite transaction abandoned");
        let _ = batch.tx.rollback().await;
        batch.done.send_replace(Some(Err(describe(e))));
    }
}

fn describe(e: &sqlx::Error) -> (bool, Arc<str>) {
    let full = match e {
        sqlx::Error::Database(db) => db.code().as_deref() == Some("13"),
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::StorageFull,
        _ => false,
    };
    (full, Arc::from(e.to_string()))
}

/// The error a writer gets for a commit that failed for its whole batch (a full disk stays one).
fn shared_error(full: bool, message: &str) -> sqlx::Error {
    let kind = if full {
        std::io::ErrorKind::StorageFull
    } else {
        std::io::ErrorKind::Other
    };
    sqlx::Error::Io(std::io::Error::new(kind, message.to_owned()))
}

fn lost() -> StoreError {
    StoreError::Database(sqlx::Error::Io(std::io::Error::other(
        "the SQLite write transaction was lost",
    )))
}

fn into_sqlx(e: StoreError) -> sqlx::Error {
    match e {
        StoreError::Database(e) => e,
        other => sqlx::Error::Io(std::io::Error::other(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn table(dir: &std::path::Path) -> AnyPool {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}/w.db?mode=rwc", dir.display());
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        pool
    }

    async fn insert(m: &mut Member, id: i64) {
        sqlx::query("INSERT INTO t (id) VALUES (?)")
            .bind(id)
            .execute(m.conn())
            .await
            .unwrap();
    }

    async fn ids(pool: &AnyPool) -> Vec<i64> {
        let rows: Vec<(i64,)> = sqlx::query_as("SELECT id FROM t ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
        rows.into_iter().map(|(id,)| id).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writers_share_one_commit_and_one_that_gives_up_loses_only_its_own_rows() {
        let dir = tempfile::tempdir().unwrap();
        let pool = table(dir.path()).await;
        let writer = Arc::new(Writer::new());
        let mut first = writer.begin(&pool).await.unwrap();
        insert(&mut first, 0).await;
        // 31 writers queue behind the first; every fourth is dropped half-way, every fourth
        // rolls back, the rest commit.
        let tasks: Vec<_> = (1..32)
            .map(|id| {
                let (writer, pool) = (writer.clone(), pool.clone());
                tokio::spawn(async move {
                    let mut m = writer.begin(&pool).await.unwrap();
                    insert(&mut m, id).await;
                    match id % 4 {
                        0 => {
                            drop(m);
                            false
                        }
                        1 => {
                            m.rollback().await.unwrap();
                            false
                        }
                        _ => {
                            m.commit().await.unwrap();
                            true
                        }
                    }
                })
            })
            .collect();
        while writer.queued.load(Ordering::Relaxed) < 31 {
            tokio::task::yield_now().await;
        }
        first.commit().await.unwrap();
        let mut kept = vec![0];
        for (id, t) in (1..32).zip(tasks) {
            if t.await.unwrap() {
                kept.push(id);
            }
        }
        assert_eq!(ids(&pool).await, kept);
        let commits = writer.state.lock().await.commits;
        assert!(commits <= 2, "32 queued writers took {commits} commits");
        // A lone writer afterwards still commits at once.
        let mut last = writer.begin(&pool).await.unwrap();
        insert(&mut last, 100).await;
        last.commit().await.unwrap();
        assert_eq!(ids(&pool).await.last(), Some(&100));
    }

    #[tokio::test]
    async fn a_first_writer_that_gives_up_leaves_nothing_and_the_lock_free() {
        let dir = tempfile::tempdir().unwrap();
        let pool = table(dir.path()).await;
        let writer = Writer::new();
        let mut m = writer.begin(&pool).await.unwrap();
        insert(&mut m, 1).await;
        drop(m);
        let mut m = writer.begin(&pool).await.unwrap();
        insert(&mut m, 2).await;
        m.commit().await.unwrap();
        assert_eq!(ids(&pool).await, vec![2]);
        // Another connection can write once the lock is given back (no transaction left open).
        let _x = writer.exclusive().await;
        sqlx::query("INSERT INTO t (id) VALUES (3)")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(ids(&pool).await, vec![2, 3]);
    }
}
