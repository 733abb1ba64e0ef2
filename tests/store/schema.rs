//! The three migration sets define the same tables, views and columns (with the same nullability;
//! a view's columns count as nullable, as PostgreSQL reports them).

use std::collections::BTreeSet;

use sqlx::Connection;

use crate::db::{Backend, TestDb};

/// (table, column, nullable) of every table the migrations made.
type Columns = BTreeSet<(String, String, bool)>;

async fn columns(db: &TestDb) -> Columns {
    let rows: Vec<(String, String, String)> = match db.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query_as(
                "SELECT m.name, p.name, CASE WHEN m.type = 'view' \
                 OR (p.\"notnull\" = 0 AND p.pk = 0) THEN 'YES' \
                 ELSE 'NO' END FROM sqlite_master m, pragma_table_info(m.name) p \
                 WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' \
                 AND m.name <> '_sqlx_migrations'",
            )
            .fetch_all(&mut c)
            .await
            .unwrap()
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query_as(
                "SELECT table_name::text, column_name::text, is_nullable::text \
                 FROM information_schema.columns WHERE table_schema = 'public' \
                 AND table_name <> '_sqlx_migrations'",
            )
            .fetch_all(&mut c)
            .await
            .unwrap()
        }
        Backend::MySql => {
            let mut c = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
            sqlx::query_as(
                "SELECT CAST(c.table_name AS CHAR), CAST(c.column_name AS CHAR), \
                 CAST(CASE WHEN t.table_type = 'VIEW' THEN 'YES' ELSE c.is_nullable END AS CHAR) \
                 FROM information_schema.columns c JOIN information_schema.tables t \
                 ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                 WHERE c.table_schema = DATABASE() AND c.table_name <> '_sqlx_migrations'",
            )
            .fetch_all(&mut c)
            .await
            .unwrap()
        }
    };
    rows.into_iter()
        .map(|(t, c, n)| (t, c, n == "YES"))
        .collect()
}

async fn migrated_columns(backend: Backend) -> Option<Columns> {
    let (db, store) = crate::open(backend).await?;
    store.close().await;
    Some(columns(&db).await)
}

#[tokio::test]
async fn every_dialect_migrates_to_the_same_tables_and_columns() {
    let sqlite = migrated_columns(Backend::Sqlite).await.expect("sqlite");
    assert!(
        sqlite
            .iter()
            .any(|(t, c, _)| t == "messages" && c == "msgnum")
    );
    assert!(sqlite.iter().any(|(t, _, _)| t == "outbox_counter"));
    for backend in [Backend::Postgres, Backend::MySql] {
        let Some(other) = migrated_columns(backend).await else {
            continue;
        };
        let missing: Vec<_> = sqlite.difference(&other).collect();
        let extra: Vec<_> = other.difference(&sqlite).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{} differs from sqlite: missing {missing:?}, extra {extra:?}",
            backend.name()
        );
    }
}
