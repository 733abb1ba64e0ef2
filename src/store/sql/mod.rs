//! One SQL implementation for SQLite, PostgreSQL and MySQL/MariaDB. Queries are written once with
//! `?` placeholders in portable SQL; [`Dialect`] is the one place where the databases differ
//! (placeholders, row locks, session setup, migrations, cross-node wake-ups).

pub mod admin;
pub(crate) mod asterisk;
pub(crate) mod audio;
mod directory;
mod email;
mod events;
mod gc;
pub mod imap;
mod messages;
mod mwi;
mod rows;
mod wake;
mod webhooks;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::query::{Query, QueryAs};
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor, Transaction};

use super::StoreError;

/// The SQL dialect behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

impl Dialect {
    fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split(':').next()?;
        match scheme {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::MySql),
            _ => None,
        }
    }

    /// Rewrites `?` placeholders to `$1, $2…` for PostgreSQL (no query here has `?` in a literal).
    fn rewrite(self, sql: &'static str) -> std::borrow::Cow<'static, str> {
        match self.rewrite_owned(sql) {
            Some(s) => std::borrow::Cow::Owned(s),
            None => std::borrow::Cow::Borrowed(sql),
        }
    }

    /// Statements run on every new connection.
    fn session_setup(self) -> &'static [&'static str] {
        match self {
            // Wait for a writer instead of failing with SQLITE_BUSY; enforce references.
            Self::Sqlite => &["PRAGMA busy_timeout = 10000", "PRAGMA foreign_keys = ON"],
            // Marks voxmail's sessions for the triggers that log changes made by Asterisk's
            // app_voicemail in the shared messages table (migration 0013): ours write their own
            // events.
            Self::Postgres => &["SET voxmail.writer = 'voxmail'"],
            // PostgreSQL's default: each statement sees what committed before it (InnoDB's
            // REPEATABLE READ would keep the snapshot of a transaction's first read, so a writer
            // that waited for a mailbox lock would count stale rows), and no gap locks. Strict
            // mode: a value too long for its column is an error, as on PostgreSQL, not truncated.
            Self::MySql => &[
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_TRANS_TABLES')",
                "SET @voxmail_writer = 'voxmail'",
            ],
        }
    }

    /// A statement, run in every transaction that writes an event, that wakes the other nodes when
    /// it commits (PostgreSQL NOTIFY; MySQL nodes poll instead, SQLite has a single node).
    fn notify_sql(self) -> Option<&'static str> {
        match self {
            Self::Postgres => Some("NOTIFY voxmail_events"),
            Self::Sqlite | Self::MySql => None,
        }
    }

    /// Whether `UPDATE`/`INSERT … RETURNING` reads back what a statement wrote in the same round
    /// trip (SQLite ≥ 3.35, PostgreSQL; MySQL has none, MariaDB none for UPDATE).
    fn returning(self) -> bool {
        matches!(self, Self::Sqlite | Self::Postgres)
    }

    /// Suffix that locks selected rows until the transaction ends (SQLite locks the whole database
    /// for a write transaction instead).
    fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres | Self::MySql => " FOR UPDATE",
        }
    }
}

/// The SQL store: directory (contexts, mailboxes, API keys), messages, greetings and the outbox.
pub struct SqlStore {
    pool: AnyPool,
    /// The database URL (holds credentials: never logged); the PostgreSQL listener connects with it.
    url: String,
    /// SQLite has one writer at a time. Writers of this process queue here, in order, instead of
    /// sleeping and retrying on SQLITE_BUSY (which lets an unlucky writer wait seconds), and
    /// writers queued together share a commit (see `writer.rs`).
    writer: writer::Writer,
    dialect: Dialect,
    spool_dir: String,
    node_id: String,
    /// Whether deposits queue notification emails (`[email] enabled`).
    email_outbox: std::sync::atomic::AtomicBool,
    /// Whether audio lives in the database (`audio.store = "db"`, see `audio.rs`).
    audio_in_db: std::sync::atomic::AtomicBool,
    /// Contexts whose messages are in IMAP: their MWI counts are the last ones observed there
    /// (`imap_counts`), not counts of `messages` rows (see `imap.rs`).
    imap_contexts:
        std::sync::RwLock<std::collections::HashMap<String, crate::config::ImapContextConfig>>,
}

/// A transaction. On SQLite it is this process's writer's part of a shared one (see
/// [`SqlStore::begin`]).
pub(crate) struct Tx {
    inner: TxInner,
}

enum TxInner {
    Own(Transaction<'static, Any>),
    Shared(writer::Member),
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        match &self.inner {
            TxInner::Own(tx) => tx,
            TxInner::Shared(m) => m.conn_ref(),
        }
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        match &mut self.inner {
            TxInner::Own(tx) => tx,
            TxInner::Shared(m) => m.conn(),
        }
    }
}

impl Tx {
    /// `COMMIT`, in a task of its own: once a change decided to commit, the COMMIT runs to its
    /// end even when the caller's future is dropped (its client hung up). Cut off mid-flight,
    /// sqlx queued a ROLLBACK behind the COMMIT the server had already received (PostgreSQL then
    /// logs "there is no transaction in progress"). On SQLite it returns once the shared
    /// transaction holding this one's changes has committed.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self.inner {
            TxInner::Own(tx) => tokio::spawn(tx.commit())
                .await
                .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))?,
            TxInner::Shared(m) => m.commit().await,
        }
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.inner {
            TxInner::Own(tx) => tx.rollback().await,
            TxInner::Shared(m) => m.rollback().await,
        }
    }
}

impl SqlStore {
    /// The store a node runs on, complete when built: connected and migrated as `[database]`
    /// says, queueing e-mail jobs when `[email] enabled`, keeping audio in the rows when
    /// `audio.store = "db"`, and knowing the IMAP contexts of `[imap]`.
    pub async fn open(config: &crate::config::Config) -> Result<Self, StoreError> {
        let store = Self::connect_with(
            &config.database_url(),
            config.database.max_connections,
            Duration::from_millis(config.database.acquire_timeout_ms),
            &config.voicemail.spool_dir,
            &config.node_id(),
        )
        .await?;
        store.set_email_outbox(config.email.enabled);
        store.set_audio_in_db(config.audio.store == crate::config::AudioStore::Db);
        store.set_imap_config(&config.imap);
        Ok(store)
    }

    /// Connects, and applies migrations, with the default acquire timeout (2 s): a store with
    /// the defaults of [`SqlStore::connect_with`] (for tools and tests; a node uses
    /// [`SqlStore::open`]).
    pub async fn connect(
        url: &str,
        max_connections: u32,
        spool_dir: &str,
        node_id: &str,
    ) -> Result<Self, StoreError> {
        let timeout =
            Duration::from_millis(crate::config::DatabaseConfig::default().acquire_timeout_ms);
        Self::connect_with(url, max_connections, timeout, spool_dir, node_id).await
    }

    /// Connects, and applies migrations. A request waits at most `acquire_timeout` for a pooled
    /// connection (`database.acquire_timeout_ms`). The store queues e-mail jobs, keeps audio out
    /// of the rows and knows no IMAP context ([`SqlStore::open`] sets them from a `Config`).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        spool_dir: &str,
        node_id: &str,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(url).ok_or_else(|| {
            StoreError::Database(sqlx::Error::Configuration(
                format!(
                    "unsupported database URL scheme in {}",
                    crate::config::redact_url(url)
                )
                .into(),
            ))
        })?;
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .map(|p| p.split('?').next().unwrap_or(p))
            && let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Database(sqlx::Error::Configuration(
                    format!("cannot create {}: {e}", parent.display()).into(),
                ))
            })?;
        }
        let opts = sqlx::any::AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    for stmt in dialect.session_setup() {
                        conn.execute(*stmt).await?;
                    }
                    Ok(())
                })
            })
            // A COMMIT or statement that fails with SQLITE_FULL (or IOERR) has rolled the
            // transaction back inside SQLite; sqlx's own ROLLBACK then fails ("no transaction is
            // active") and its depth counter stays at 1, so every later BEGIN on that connection
            // fails. Such a connection is closed instead of lent out. Checked before acquire, not
            // after release: the ROLLBACK of a dropped transaction is only flushed by then.
            .before_acquire(|conn, _| {
                Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
            })
            // A database server can drop a pooled connection (a restart, a failover), so one is
            // pinged before it is lent out. An embedded SQLite file cannot, and its ping is a
            // hand-off to the connection's thread and back on every query.
            .test_before_acquire(dialect != Dialect::Sqlite)
            .connect_with(opts)
            .await?;
        if dialect == Dialect::Sqlite {
            // WAL is a property of the database file: readers never block the writer.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        let store = Self {
            pool,
            url: url.to_owned(),
            writer: writer::Writer::new(),
            dialect,
            spool_dir: spool_dir.trim_end_matches('/').to_owned(),
            node_id: node_id.to_owned(),
            email_outbox: std::sync::atomic::AtomicBool::new(true),
            audio_in_db: std::sync::atomic::AtomicBool::new(false),
            imap_contexts: std::sync::RwLock::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.dialect {
            Dialect::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("migrations/postgres"),
            Dialect::MySql => sqlx::migrate!("migrations/mysql"),
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Database(sqlx::Error::Migrate(Box::new(e))))?;
        Ok(())
    }

    /// The dialect behind this store.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Connections the pool holds open, and how many of them are idle.
    pub fn pool_state(&self) -> (u32, u32) {
        (self.pool.size(), self.pool.num_idle() as u32)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Checks that this node can write to the database (for `/readyz`): commits its row of
    /// `node_heartbeats`. On SQLite it also writes and fsyncs a block beside the database file,
    /// since a write-ahead log that reuses its space commits even on a full disk.
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let now = crate::domain::now_ms();
        let beat = self
            .q("UPDATE node_heartbeats SET beat_ms = ? WHERE node_id = ?")
            .bind(now)
            .bind(self.node_id.clone())
            .execute(&mut *tx)
            .await?;
        if beat.rows_affected() == 0 {
            self.q("INSERT INTO node_heartbeats (node_id, beat_ms) VALUES (?, ?)")
                .bind(self.node_id.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if let Some(dir) = self.sqlite_dir() {
            crate::blob::probe_dir(&dir)
                .await
                .map_err(sqlx::Error::Io)?;
        }
        Ok(())
    }

    /// The directory of the SQLite database file (`None` on a server or in memory).
    fn sqlite_dir(&self) -> Option<std::path::PathBuf> {
        let path = self.url.strip_prefix("sqlite://")?;
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path == ":memory:" {
            return None;
        }
        let parent = std::path::Path::new(path).parent()?;
        Some(if parent.as_os_str().is_empty() {
            std::path::PathBuf::from(".")
        } else {
            parent.to_path_buf()
        })
    }

    fn q(&self, sql: &'static str) -> Query<'static, Any, AnyArguments> {
        sqlx::query(AssertSqlSafe(self.dialect.rewrite(sql)))
    }

    fn qa<T>(&self, sql: &'static str) -> QueryAs<'static, Any, T, AnyArguments>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_as(AssertSqlSafe(self.dialect.rewrite(sql)))
    }

    /// Statements whose text is assembled from fixed pieces (e.g. a context filter).
    fn q_owned(&self, sql: String) -> Query<'static, Any, AnyArguments> {
        let sql = self.dialect.rewrite_owned(&sql).unwrap_or(sql);
        sqlx::query(AssertSqlSafe(sql))
    }

    /// Queries whose text is assembled from fixed pieces (e.g. a `FOR UPDATE` suffix).
    fn qa_owned<T>(&self, sql: String) -> QueryAs<'static, Any, T, AnyArguments>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        let sql = match self.dialect.rewrite_owned(&sql) {
            Some(s) => s,
            None => sql,
        };
        sqlx::query_as(AssertSqlSafe(sql))
    }

    /// Begins a write transaction. SQLite takes its write lock up front (`BEGIN IMMEDIATE`) so two
    /// writers queue on busy_timeout instead of failing when a read lock is upgraded.
    /// Writers of this process first queue on a fair lock, so SQLite's busy-wait only ever arbitrates
    /// between processes (the CLI, another server on the same file); writers queued together share
    /// one transaction, each in a savepoint, and one commit (`writer.rs`).
    async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            inner: match self.dialect {
                Dialect::Sqlite => TxInner::Shared(self.writer.begin(&self.pool).await?),
                _ => TxInner::Own(begin_detached(&self.pool, None).await?),
            },
        })
    }

    /// A read-only transaction (a consistent snapshot; takes no write lock).
    async fn begin_read(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            inner: TxInner::Own(begin_detached(&self.pool, None).await?),
        })
    }

    /// Asterisk's spool path for a folder of a mailbox (the ODBC `dir` column).
    fn dir(&self, context: &str, mailbox: &str, folder: &str) -> String {
        format!("{}/voicemail/{context}/{mailbox}/{folder}", self.spool_dir)
    }

    /// Asterisk's `dir` of a mailbox's folder: `<spool_dir>/voicemail/<context>/<mailbox>/<folder>`.
    pub(crate) fn message_dir(
        &self,
        address: &crate::domain::MailboxAddress,
        folder: &str,
    ) -> String {
        self.dir(&address.context, &address.mailbox, folder)
    }
}

/// `BEGIN` (or `statement`) in a task of its own. sqlx 0.9's `begin` is not cancel-safe: a future
/// dropped while its BEGIN is in flight hands the connection back to the pool inside a
/// transaction nobody ends (sqlx issue #4393), so the next borrower's statements run in it and
/// keep their locks. A handler's future is dropped whenever its client disconnects; the task runs
/// to the end instead, and when nobody awaits it any more the `Transaction` it made is dropped as
/// usual, which queues the ROLLBACK. (Found by bench/list_scale.sh: abrupt wrk stops left
/// PostgreSQL sessions idle in transaction.)
async fn begin_detached(
    pool: &AnyPool,
    statement: Option<&'static str>,
) -> Result<sqlx::Transaction<'static, Any>, StoreError> {
    let pool = pool.clone();
    tokio::spawn(async move {
        match statement {
            Some(s) => pool.begin_with(s).await,
            None => pool.begin().await,
        }
    })
    .await
    .map_err(|e| StoreError::Database(sqlx::Error::Io(std::io::Error::other(e))))?
    .map_err(StoreError::from)
}

impl Dialect {
    fn rewrite_owned(self, sql: &str) -> Option<String> {
        if self != Self::Postgres {
            return None;
        }
        let mut out = String::with_capacity(sql.len() + 8);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        Some(out)
    }
}

/// Is this a unique-constraint violation (the one error callers turn into a conflict)?
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || matches!(
                    db.code().as_deref(),
                    Some("2067") | Some("1555") | Some("23505") | Some("1062")
                )
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(
            Dialect::Postgres.rewrite("SELECT a FROM t WHERE b = ? AND c = ?"),
            "SELECT a FROM t WHERE b = $1 AND c = $2"
        );
        assert_eq!(Dialect::Sqlite.rewrite("x = ?"), "x = ?");
    }
}
