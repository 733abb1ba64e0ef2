//! Fresh databases for tests. SQLite (a temporary file) always; PostgreSQL and MySQL/MariaDB when
//! `TEST_POSTGRES_URL` / `TEST_MYSQL_URL` name a server (an admin URL such as
//! `postgres://postgres@127.0.0.1:5432/test`). Each test gets its own database
//! (`voxmail_t_<random>`), created here and dropped when the [`TestDb`] is dropped — also when the
//! test panics — so runs never see each other's data.
//!
//! Without the variables the server back ends are skipped with a loud message; with
//! `TEST_REQUIRE_SQL_SERVERS=1` (CI) a missing variable or an unreachable server fails the test.
//! (Not `VOXMAIL_*`: the configuration loader reads those and refuses unknown keys.)
#![allow(dead_code)]

use std::time::Duration;

use sqlx::Connection;

/// Set to 1 to fail instead of skipping when a server back end is not configured or reachable.
pub const REQUIRE_VAR: &str = "TEST_REQUIRE_SQL_SERVERS";

/// A database engine the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::MySql];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
        }
    }

    /// The environment variable holding the admin URL of the server.
    pub fn env_var(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("TEST_POSTGRES_URL"),
            Self::MySql => Some("TEST_MYSQL_URL"),
        }
    }
}

/// Says once per back end and process, on the real stderr (the test harness captures `eprintln!`
/// of passing tests), that the server cases were skipped and how to run them.
fn warn_skipped(backend: Backend, var: &str) {
    use std::io::Write;
    static WARNED: std::sync::Mutex<Vec<Backend>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.contains(&backend) {
        return;
    }
    warned.push(backend);
    let example = match backend {
        Backend::Postgres => "postgres://postgres@127.0.0.1:5432/test",
        _ => "mysql://root@127.0.0.1:3306/test",
    };
    let bar = "!".repeat(78);
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\n!!! SKIPPED: the {} store tests. Set {var} (e.g. {example}) to run them.\n{bar}\n",
        backend.name()
    );
}

fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

/// A fresh, empty database (no migrations applied yet: connecting the store applies them).
pub struct TestDb {
    pub backend: Backend,
    /// URL of the fresh database.
    pub url: String,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// Creates a fresh database on `backend`; `None` (after a loud message) when that back end is
    /// not configured. Panics when it is required (`TEST_REQUIRE_SQL_SERVERS=1`) but missing, or
    /// configured but unreachable.
    pub async fn create(backend: Backend) -> Option<TestDb> {
        let Some(var) = backend.env_var() else {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("voxmail.db").display()
            );
            return Some(TestDb {
                backend,
                url,
                admin_url: None,
                name: String::new(),
                _dir: Some(dir),
            });
        };
        let admin_url = match std::env::var(var) {
            Ok(u) if !u.is_empty() => u,
            _ => {
                if required() {
                    panic!("{REQUIRE_VAR}=1 but {var} is not set");
                }
                warn_skipped(backend, var);
                return None;
            }
        };
        let name = format!("voxmail_t_{:016x}", rand::random::<u64>());
        let mut last_err = String::new();
        for _ in 0..5 {
            match admin_exec(backend, &admin_url, &format!("CREATE DATABASE {name}")).await {
                Ok(()) => {
                    return Some(TestDb {
                        backend,
                        url: with_database(&admin_url, &name),
                        admin_url: Some(admin_url),
                        name,
                        _dir: None,
                    });
                }
                Err(e) => last_err = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "{var} is set but {} cannot create a database there: {last_err}",
            backend.name()
        );
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(admin) = self.admin_url.clone() else {
            return;
        };
        let (backend, name) = (self.backend, self.name.clone());
        // Its own thread and runtime: drop may run inside (or after) the test's runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(drop_database(backend, &admin, &name))
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// Drops a test database, first ending the connections still open on it (a server whose runtime
/// is blocked by this drop cannot close them, and MySQL's DROP waits for their metadata locks).
async fn drop_database(backend: Backend, admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    match backend {
        Backend::Postgres => {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            admin_exec(backend, admin_url, &sql).await
        }
        Backend::MySql => {
            let mut c = sqlx::MySqlConnection::connect(admin_url).await?;
            let ids: Vec<(i64,)> = sqlx::query_as(
                "SELECT CAST(id AS SIGNED) FROM information_schema.processlist WHERE db = ?",
            )
            .bind(name)
            .fetch_all(&mut c)
            .await?;
            for (id,) in ids {
                // The connection may have ended meanwhile.
                let _ = c
                    .execute(sqlx::AssertSqlSafe(format!("KILL CONNECTION {id}")))
                    .await;
            }
            c.execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .await?;
            c.close().await
        }
        Backend::Sqlite => Ok(()),
    }
}

async fn admin_exec(backend: Backend, admin_url: &str, sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    match backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(admin_url).await?;
            c.execute(sqlx::AssertSqlSafe(sql.to_owned())).await?;
            c.close().await
        }
        Backend::MySql => {
            let mut c = sqlx::MySqlConnection::connect(admin_url).await?;
            c.execute(sqlx::AssertSqlSafe(sql.to_owned())).await?;
            c.close().await
        }
        Backend::Sqlite => Ok(()),
    }
}

/// `scheme://user@host:port/db?opts` with the database replaced.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    format!("{base}/{db}{query}")
}
