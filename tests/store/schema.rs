//! The three migration sets define the same tables, views and columns (with the same nullability;
//! a view's columns count as nullable, as PostgreSQL reports them), the same indexes and unique
//! keys (by table and columns; names may differ), and the same column defaults.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Connection;

use crate::db::{Backend, TestDb};

/// The rows of the statement for `db`'s backend: SQLite's, PostgreSQL's or MySQL's.
async fn query<T>(
    db: &TestDb,
    sqlite: &'static str,
    postgres: &'static str,
    mysql: &'static str,
) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow>
        + Send
        + Unpin,
{
    match db.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query_as(sqlite).fetch_all(&mut c).await.unwrap()
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query_as(postgres).fetch_all(&mut c).await.unwrap()
        }
        Backend::MySql => {
            let mut c = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
            sqlx::query_as(mysql).fetch_all(&mut c).await.unwrap()
        }
    }
}

/// (table, column, nullable) of every table the migrations made.
type Columns = BTreeSet<(String, String, bool)>;

async fn columns(db: &TestDb) -> Columns {
    let rows: Vec<(String, String, String)> = query(
        db,
        "SELECT m.name, p.name, CASE WHEN m.type = 'view' \
         OR (p.\"notnull\" = 0 AND p.pk = 0) THEN 'YES' \
         ELSE 'NO' END FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' \
         AND m.name <> '_sqlx_migrations'",
        "SELECT table_name::text, column_name::text, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = 'public' \
         AND table_name <> '_sqlx_migrations'",
        "SELECT CAST(c.table_name AS CHAR), CAST(c.column_name AS CHAR), \
         CAST(CASE WHEN t.table_type = 'VIEW' THEN 'YES' ELSE c.is_nullable END AS CHAR) \
         FROM information_schema.columns c JOIN information_schema.tables t \
         ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = DATABASE() AND c.table_name <> '_sqlx_migrations'",
    )
    .await;
    rows.into_iter()
        .map(|(t, c, n)| (t, c, n == "YES"))
        .collect()
}

/// (table, columns in key order, unique) of every index of every table, primary keys included.
type Indexes = BTreeSet<(String, String, bool)>;

async fn indexes(db: &TestDb) -> Indexes {
    // (table, index, unique, column, position)
    let rows: Vec<(String, String, bool, String, i64)> = query(
        db,
        "SELECT m.name, il.name, il.\"unique\" <> 0, ii.name, ii.seqno \
         FROM sqlite_master m, pragma_index_list(m.name) il, pragma_index_info(il.name) ii \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
         AND m.name <> '_sqlx_migrations' \
         UNION ALL \
         SELECT m.name, 'primary key', 1, p.name, p.pk FROM sqlite_master m, \
         pragma_table_info(m.name) p WHERE m.type = 'table' AND p.pk > 0 \
         AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'",
        "SELECT t.relname::text, i.relname::text, ix.indisunique, a.attname::text, \
         array_position(ix.indkey::int2[], a.attnum)::int8 \
         FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(ix.indkey) \
         WHERE n.nspname = 'public' AND t.relname <> '_sqlx_migrations'",
        "SELECT CAST(table_name AS CHAR), CAST(index_name AS CHAR), non_unique = 0, \
         CAST(column_name AS CHAR), CAST(seq_in_index AS SIGNED) \
         FROM information_schema.statistics \
         WHERE table_schema = DATABASE() AND table_name <> '_sqlx_migrations'",
    )
    .await;
    let mut by_index: BTreeMap<(String, String, bool), Vec<(i64, String)>> = BTreeMap::new();
    for (table, index, unique, column, position) in rows {
        by_index
            .entry((table, index, unique))
            .or_default()
            .push((position, column));
    }
    by_index
        .into_iter()
        .map(|((table, _, unique), mut cols)| {
            cols.sort();
            let cols: Vec<String> = cols.into_iter().map(|(_, c)| c).collect();
            (table, cols.join(","), unique)
        })
        .collect()
}

/// The default of every table column that has one, normalized: quotes and the dialects' casts
/// and parentheses removed.
type Defaults = BTreeMap<(String, String), String>;

async fn defaults(db: &TestDb) -> Defaults {
    let rows: Vec<(String, String, Option<String>)> = query(
        db,
        "SELECT m.name, p.name, p.dflt_value FROM sqlite_master m, \
         pragma_table_info(m.name) p WHERE m.type = 'table' \
         AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'",
        "SELECT c.table_name::text, c.column_name::text, c.column_default::text \
         FROM information_schema.columns c JOIN information_schema.tables t \
         ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' \
         AND c.table_name <> '_sqlx_migrations'",
        "SELECT CAST(c.table_name AS CHAR), CAST(c.column_name AS CHAR), \
         CAST(c.column_default AS CHAR) \
         FROM information_schema.columns c JOIN information_schema.tables t \
         ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = DATABASE() AND t.table_type = 'BASE TABLE' \
         AND c.table_name <> '_sqlx_migrations'",
    )
    .await;
    rows.into_iter()
        .filter_map(|(t, c, d)| {
            let d = normalize_default(d.as_deref()?);
            // A PostgreSQL serial's sequence is its key, as AUTOINCREMENT and AUTO_INCREMENT are.
            (d != "NULL" && !d.starts_with("nextval(")).then_some(((t, c), d))
        })
        .collect()
}

/// A default that differs: (table, column), then each side's.
type Difference = ((String, String), Option<String>, Option<String>);

/// Every default that differs between two schemas.
fn differing(left: &Defaults, right: &Defaults) -> Vec<Difference> {
    left.keys()
        .chain(right.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| left.get(*k) != right.get(*k))
        .map(|k| (k.clone(), left.get(k).cloned(), right.get(k).cloned()))
        .collect()
}

/// `'pending'::text` (PostgreSQL), `'pending'` (SQLite, MariaDB), `(0)` → `pending`, `0`.
fn normalize_default(d: &str) -> String {
    let mut d = d.trim();
    while let Some(inner) = d.strip_prefix('(').and_then(|d| d.strip_suffix(')')) {
        d = inner.trim();
    }
    let d = d.split("::").next().unwrap_or(d);
    d.trim_matches('\'').to_owned()
}

async fn migrated_columns(backend: Backend) -> Option<Columns> {
    let (db, store) = crate::open(backend).await?;
    store.close().await;
    Some(columns(&db).await)
}

async fn migrated_keys(backend: Backend) -> Option<(Indexes, Defaults)> {
    let (db, store) = crate::open(backend).await?;
    store.close().await;
    Some((indexes(&db).await, defaults(&db).await))
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

#[tokio::test]
async fn every_dialect_migrates_to_the_same_keys_indexes_and_defaults() {
    let (keys, defaults) = migrated_keys(Backend::Sqlite).await.expect("sqlite");
    assert!(keys.contains(&("messages".into(), "id".into(), true)));
    assert!(keys.contains(&("messages".into(), "dir,msgnum".into(), true)));
    assert!(!defaults.is_empty());
    let mut servers = Vec::new();
    for backend in [Backend::Postgres, Backend::MySql] {
        let Some((other_keys, other_defaults)) = migrated_keys(backend).await else {
            continue;
        };
        let missing: Vec<_> = keys.difference(&other_keys).collect();
        let extra: Vec<_> = other_keys.difference(&keys).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}'s indexes differ from sqlite's: missing {missing:?}, extra {extra:?}",
            backend.name()
        );
        // On purpose: the servers give `messages` defaults for the columns Asterisk's INSERT
        // never names (its ODBC storage writes there); SQLite takes no Asterisk writes.
        let differ: Vec<_> = differing(&defaults, &other_defaults)
            .into_iter()
            .filter(|((table, _), ours, _)| !(table == "messages" && ours.is_none()))
            .collect();
        assert!(
            differ.is_empty(),
            "{}'s defaults differ from sqlite's (column, sqlite, {}): {differ:?}",
            backend.name(),
            backend.name()
        );
        servers.push(other_defaults);
    }
    if let [postgres, mysql] = &servers[..] {
        let differ = differing(postgres, mysql);
        assert!(
            differ.is_empty(),
            "defaults differ between postgres and mysql (column, postgres, mysql): {differ:?}"
        );
    }
}
