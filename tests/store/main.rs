//! Store conformance: one story over every store operation the service uses, the concurrency
//! cases, and the migration sets compared, run against SQLite always and against PostgreSQL and
//! MySQL/MariaDB when `TEST_POSTGRES_URL` / `TEST_MYSQL_URL` are set (see tests/common/db.rs).

#[path = "../common/db.rs"]
mod db;

mod blob;
mod concurrency;
mod gc;
mod imap;
mod schema;
mod story;

use std::sync::Arc;

use db::{Backend, TestDb};
use voxmail::domain::{AudioFormat, Flag, Folder, MessageId};
use voxmail::store::{NewMessage, SqlStore};

/// A store on a fresh database; `None` when the back end is skipped.
pub async fn open(backend: Backend) -> Option<(TestDb, Arc<SqlStore>)> {
    let db = TestDb::create(backend).await?;
    let store = connect(&db, "node-a").await;
    Some((db, store))
}

/// Another node's store on the same database.
pub async fn connect(db: &TestDb, node: &str) -> Arc<SqlStore> {
    let store = SqlStore::connect(&db.url, 24, "/var/spool/asterisk", node)
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", db.backend.name()));
    Arc::new(store)
}

/// A message to deposit.
pub fn new_message(folder: Folder) -> NewMessage {
    let id = MessageId::new();
    NewMessage {
        id,
        folder,
        flag: Flag::None,
        category: String::new(),
        context: "default".into(),
        callerid: "\"Alice\" <5551234>".into(),
        caller_id_num: "5551234".into(),
        caller_id_name: "Alice".into(),
        origtime: 1_700_000_000,
        duration_ms: 4_200,
        origmailbox: String::new(),
        exten: "100".into(),
        rdnis: String::new(),
        priority: 1,
        callerchan: "PJSIP/alice-0001".into(),
        msg_id: format!("1700000000-{:08x}", rand::random::<u32>()),
        audio_key: format!("messages/{id}.wav"),
        audio_format: AudioFormat::WavUlaw,
        sample_rate: 8000,
        channels: 1,
        byte_size: 33_658,
        sha256: "ab".repeat(32),
        forwarded_from: None,
        asterisk_recording: None,
    }
}

/// One test per back end for each scenario: `on_every_backend!(name)` runs `name(store, db)`.
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use crate::db::Backend;

                async fn run(backend: Backend) {
                    let Some((db, store)) = crate::open(backend).await else { return };
                    super::$scenario(store.clone(), &db).await;
                    store.close().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn on_sqlite() {
                    run(Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn on_postgres() {
                    run(Backend::Postgres).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn on_mysql() {
                    run(Backend::MySql).await;
                }
            }
        )*
    };
}
pub(crate) use on_every_backend;
