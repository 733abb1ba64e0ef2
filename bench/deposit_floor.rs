//! The durability floor of `bench/deposit_latency.sh` (issue 16): the least an HTTP server can do
//! and still make voxmail's promise for a deposit — 201 only once the audio and its row are
//! durable. Per `POST /v1/mailboxes/{mailbox}/messages`: the whole body written to a new file in
//! `tmp/` and fsynced, renamed into the mailbox's directory, that directory fsynced, then one
//! INSERT into SQLite (WAL, `synchronous = FULL`, through sqlx like voxmail) under one write lock,
//! as voxmail serializes its writes. No authentication, no audio checks, no counts, no events:
//! everything else voxmail does per deposit is what its figures show beyond this one.
//!
//! Given a PostgreSQL URL, the INSERT goes there instead: one autocommitted INSERT per deposit
//! (committed, so durable with PostgreSQL's default `synchronous_commit = on`), from a pool of 16
//! connections as voxmail's, with no lock of its own.
//!
//! ```text
//! cargo bench --bench deposit_floor --no-run    # then run the executable it names:
//! deposit_floor DATA_DIR 127.0.0.1:PORT [postgres://…]
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, SqliteConnection};
use tokio::sync::Mutex;

struct Floor {
    dir: PathBuf,
    db: Db,
}

enum Db {
    Sqlite(Mutex<SqliteConnection>),
    Postgres(sqlx::PgPool),
}

type Answer = (StatusCode, String);

fn failed(e: impl std::fmt::Display) -> Answer {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn deposit(
    State(f): State<Arc<Floor>>,
    Path(mailbox): Path<String>,
    body: Bytes,
) -> Result<Answer, Answer> {
    let id = uuid::Uuid::now_v7().to_string();
    let dir = f.dir.join("audio").join(mailbox.replace('/', "_"));
    let tmp = f.dir.join("tmp").join(format!("{id}.part"));
    let dest = dir.join(format!("{id}.wav"));
    let size = body.len() as i64;
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &dest)?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .map_err(failed)?
    .map_err(failed)?;
    match &f.db {
        Db::Sqlite(db) => {
            let mut db = db.lock().await;
            sqlx::query("INSERT INTO messages (id, mailbox, size) VALUES (?, ?, ?)")
                .bind(&id)
                .bind(&mailbox)
                .bind(size)
                .execute(&mut *db)
                .await
                .map_err(failed)?;
        }
        Db::Postgres(pool) => {
            sqlx::query("INSERT INTO messages (id, mailbox, size) VALUES ($1, $2, $3)")
                .bind(&id)
                .bind(&mailbox)
                .bind(size)
                .execute(pool)
                .await
                .map_err(failed)?;
        }
    }
    Ok((StatusCode::CREATED, format!("{{\"id\":\"{id}\"}}")))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` runs every bench target with `--bench`: nothing to do then.
    if !(3..=4).contains(&args.len()) {
        eprintln!("usage: deposit_floor DATA_DIR 127.0.0.1:PORT [postgres://…]");
        return Ok(());
    }
    let dir = PathBuf::from(&args[1]);
    std::fs::create_dir_all(dir.join("tmp"))?;
    const TABLE: &str = "CREATE TABLE IF NOT EXISTS messages \
         (id TEXT PRIMARY KEY, mailbox TEXT NOT NULL, size BIGINT NOT NULL)";
    let db = match args.get(3) {
        Some(url) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(16)
                .connect(url)
                .await?;
            sqlx::query(TABLE).execute(&pool).await?;
            Db::Postgres(pool)
        }
        None => {
            let mut db = SqliteConnectOptions::new()
                .filename(dir.join("floor.db"))
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .connect()
                .await?;
            sqlx::query(TABLE).execute(&mut db).await?;
            Db::Sqlite(Mutex::new(db))
        }
    };
    let floor = Arc::new(Floor { dir, db });
    let app = Router::new()
        .route("/v1/mailboxes/{mailbox}/messages", post(deposit))
        .route("/healthz", get(|| async { StatusCode::NO_CONTENT }))
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind(&args[2]).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
