//! Audio store conformance: one story over the `BlobStore` trait, with the answers every store
//! must give, run against the directory store always and against the S3 store on s3rver when
//! `TEST_S3RVER` is set (tests/common/s3.rs; `TEST_REQUIRE_S3=1` turns a missing server into a
//! failure). A new store joins with one `#[tokio::test]` that opens it and calls [`story`].

#[path = "../common/peer.rs"]
mod peer;
#[path = "../common/s3.rs"]
mod s3;

use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use voxmail::blob::{BlobError, BlobKey, BlobRead, BlobStore, FsBlobStore, S3BlobStore};

fn key(s: &str) -> BlobKey {
    BlobKey::from_stored(s).unwrap_or_else(|| panic!("bad test key {s}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Deterministic bytes that differ at every offset of interest (no repeating 256-byte pattern).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn collect(read: BlobRead) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = read.stream;
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("read chunk"));
    }
    out
}

async fn read(store: &dyn BlobStore, k: &BlobKey, range: Option<(u64, u64)>) -> (u64, Vec<u8>) {
    let r = store
        .open(k, range)
        .await
        .unwrap_or_else(|e| panic!("open {} {range:?}: {e}", k.as_str()));
    let total = r.total;
    (total, collect(r).await)
}

/// Writes `data` in chunks of varying size (1 byte to ~64 KiB) and commits.
async fn put(store: &dyn BlobStore, k: &BlobKey, data: &[u8]) {
    let mut w = store.writer(k).await.expect("writer");
    write_chunks(w.as_mut(), data).await;
    w.commit()
        .await
        .unwrap_or_else(|e| panic!("commit {}: {e}", k.as_str()));
}

async fn write_chunks(w: &mut dyn voxmail::blob::BlobWriter, data: &[u8]) {
    let sizes = [1usize, 7, 4096, 65_521, 333, 65_536, 12_000];
    let (mut at, mut i) = (0, 0);
    while at < data.len() {
        let n = sizes[i % sizes.len()].min(data.len() - at);
        w.write(&data[at..at + n]).await.expect("write");
        at += n;
        i += 1;
    }
}

fn assert_not_found<T>(r: Result<T, BlobError>, what: &str) {
    match r {
        Err(BlobError::NotFound(_)) => {}
        Err(e) => panic!("{what}: expected NotFound, got {e}"),
        Ok(_) => panic!("{what}: expected NotFound, got a value"),
    }
}

fn assert_unsatisfiable<T>(r: Result<T, BlobError>, what: &str) {
    match r {
        Err(BlobError::RangeNotSatisfiable) => {}
        Err(e) => panic!("{what}: expected RangeNotSatisfiable, got {e}"),
        Ok(_) => panic!("{what}: expected RangeNotSatisfiable, got a value"),
    }
}

/// Every listed blob under `prefix`, as sorted (key, size), checking `modified_ms` on the way.
async fn listed(store: &dyn BlobStore, prefix: &str, since_ms: i64) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut s = store.list(prefix);
    while let Some(item) = s.next().await {
        let m = item.unwrap_or_else(|e| panic!("list {prefix:?}: {e}"));
        // S3 keeps LastModified to the second: allow that, and a little clock skew.
        assert!(
            m.modified_ms >= since_ms - 2_000 && m.modified_ms <= now_ms() + 2_000,
            "{}: modified_ms {} not within this test ({since_ms}..now)",
            m.key.as_str(),
            m.modified_ms
        );
        out.push((m.key.as_str().to_owned(), m.size));
    }
    out.sort();
    out
}

/// Sizes of the big blob: over two 5 MiB parts, so an S3 store with `part_size_bytes` = 5 MiB
/// sends a multipart upload of three parts.
const BIG: usize = 12 * 1024 * 1024 + 123;
/// Over one 5 MiB part: an S3 writer has started a multipart upload by then.
const OVER_ONE_PART: usize = 6 * 1024 * 1024;

/// The story every store must pass. Expects an empty store.
pub async fn story(store: &dyn BlobStore) {
    let t0 = now_ms();
    store.check().await.expect("check");
    assert_eq!(
        listed(store, "", t0).await,
        vec![],
        "a new store lists nothing"
    );

    // Written in many chunks; nothing visible before commit.
    let a = key("messages/m1/a.wav");
    let data = bytes(200_003, 1);
    let mut w = store.writer(&a).await.expect("writer");
    write_chunks(w.as_mut(), &data).await;
    assert_not_found(store.open(&a, None).await, "open before commit");
    assert_not_found(store.size(&a).await, "size before commit");
    assert_eq!(
        listed(store, "", t0).await,
        vec![],
        "nothing listed before commit"
    );
    w.commit().await.expect("commit");
    let (total, got) = read(store, &a, None).await;
    assert_eq!(total, data.len() as u64);
    assert!(got == data, "read back differs from what was written");
    assert_eq!(store.size(&a).await.expect("size"), data.len() as u64);

    // Abort and drop without commit leave nothing; the same for a writer that already sent a
    // part (S3: a multipart upload was started and must be aborted).
    for (name, len) in [("small", 10_000), ("big", OVER_ONE_PART)] {
        let k = key(&format!("messages/m1/aborted-{name}.wav"));
        let mut w = store.writer(&k).await.expect("writer");
        write_chunks(w.as_mut(), &bytes(len, 2)).await;
        w.abort().await;
        assert_not_found(store.open(&k, None).await, "open after abort");

        let k = key(&format!("messages/m1/dropped-{name}.wav"));
        let mut w = store.writer(&k).await.expect("writer");
        write_chunks(w.as_mut(), &bytes(len, 3)).await;
        drop(w);
        assert_not_found(store.open(&k, None).await, "open after drop");
    }

    // Ranges are inclusive; the total is always the whole blob's size. (The first byte alone,
    // `0-0`, is in `first_byte`: s3rver gets it wrong.)
    let len = data.len() as u64;
    for (start, end) in [
        (0, 1),
        (1, 1),
        (10, 99),
        (len / 2, len / 2 + 70_000),
        (len - 1, len - 1),
        (0, len - 1),
    ] {
        let (total, got) = read(store, &a, Some((start, end))).await;
        assert_eq!(total, len, "total of range {start}-{end}");
        assert!(
            got == data[start as usize..=end as usize],
            "range {start}-{end}: {} bytes differ from the blob's",
            got.len()
        );
    }
    for (start, end) in [
        (len - 1, len),
        (0, len),
        (len, len),
        (len + 10, len + 20),
        (5, 4),
    ] {
        assert_unsatisfiable(
            store.open(&a, Some((start, end))).await,
            &format!("range {start}-{end}"),
        );
    }
    assert_not_found(
        store.open(&key("messages/m1/none.wav"), None).await,
        "open missing",
    );
    assert_not_found(
        store.open(&key("messages/m1/none.wav"), Some((0, 0))).await,
        "range of missing",
    );
    assert_not_found(
        store.size(&key("messages/m1/none.wav")).await,
        "size missing",
    );

    // An empty blob is a blob.
    let empty = key("messages/m1/empty.gsm");
    put(store, &empty, &[]).await;
    assert_eq!(store.size(&empty).await.expect("size"), 0);
    assert_eq!(read(store, &empty, None).await, (0, vec![]));
    assert_unsatisfiable(
        store.open(&empty, Some((0, 0))).await,
        "range of an empty blob",
    );

    // A big blob (S3: multipart, three parts), read whole and across a part boundary.
    let big = key("messages/m12/big.wav");
    let big_data = bytes(BIG, 4);
    put(store, &big, &big_data).await;
    assert_eq!(store.size(&big).await.expect("size"), BIG as u64);
    let (total, got) = read(store, &big, None).await;
    assert_eq!(total, BIG as u64);
    assert!(got == big_data, "big blob read back differs");
    let edge = 5 * 1024 * 1024;
    let (_, got) = read(store, &big, Some((edge as u64 - 3, edge as u64 + 2))).await;
    assert_eq!(got, big_data[edge - 3..=edge + 2]);

    // A copy outlives its source.
    let copy = key("greetings/m1/unavail-c.wav");
    store.copy(&a, &copy).await.expect("copy");
    store.remove(&a).await.expect("remove");
    assert_not_found(store.open(&a, None).await, "open removed");
    let (total, got) = read(store, &copy, None).await;
    assert_eq!(total, len);
    assert!(got == data, "copy differs");
    assert_not_found(
        store.copy(&a, &key("greetings/m1/x.wav")).await,
        "copy of missing",
    );

    // Removing a missing blob is fine.
    store.remove(&a).await.expect("remove again");
    store
        .remove(&key("messages/nobody/none.wav"))
        .await
        .expect("remove missing");

    // A rendition next to its original, and a sibling whose name extends another's.
    let rendition = BlobKey::rendition(&copy, "opus16k");
    put(store, &rendition, b"OggS").await;
    let b = key("messages/m1/ab.wav");
    put(store, &b, b"ab").await;

    // Listing: exactly the committed blobs, with their sizes; prefixes are plain string
    // prefixes, not path segments.
    let all = vec![
        ("greetings/m1/unavail-c.wav".to_owned(), len),
        ("greetings/m1/unavail-c.wav.opus16k".to_owned(), 4),
        ("messages/m1/ab.wav".to_owned(), 2),
        ("messages/m1/empty.gsm".to_owned(), 0),
        ("messages/m12/big.wav".to_owned(), BIG as u64),
    ];
    assert_eq!(listed(store, "", t0).await, all);
    let only = |pred: &dyn Fn(&str) -> bool| -> Vec<(String, u64)> {
        all.iter().filter(|(k, _)| pred(k)).cloned().collect()
    };
    assert_eq!(
        listed(store, "messages/", t0).await,
        only(&|k| k.starts_with("messages/"))
    );
    assert_eq!(
        listed(store, "messages/m1", t0).await,
        only(&|k| k.starts_with("messages/m1"))
    );
    assert_eq!(
        listed(store, "messages/m1/", t0).await,
        only(&|k| k.starts_with("messages/m1/"))
    );
    assert_eq!(
        listed(store, "messages/m1/a", t0).await,
        only(&|k| k.starts_with("messages/m1/a"))
    );
    assert_eq!(
        listed(store, "greetings/m1/unavail-c.wav", t0).await,
        only(&|k| k.starts_with("greetings/"))
    );
    assert_eq!(listed(store, "nothing/", t0).await, vec![]);

    // Listing is a stream: dropping it early is fine.
    let mut s = store.list("");
    assert!(s.next().await.is_some());
    drop(s);

    store.check().await.expect("check after");
    assert_eq!(
        listed(store, "", t0).await,
        all,
        "check leaves nothing listed"
    );
}

/// The range of the first byte alone. Not in [`story`] because s3rver 3.7.1 answers
/// `Range: bytes=0-0` with the whole object (its `end || Infinity` reads 0 as "no end"), which
/// object_store rightly refuses as the wrong range; AWS S3 and MinIO answer one byte.
pub async fn first_byte(store: &dyn BlobStore) {
    let k = key("messages/first/byte.wav");
    put(store, &k, b"RIFF").await;
    assert_eq!(read(store, &k, Some((0, 0))).await, (4, b"R".to_vec()));
    store.remove(&k).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_fs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsBlobStore::open(dir.path()).await.expect("open");
    story(&store).await;
    first_byte(&store).await;
    // Files that are not keys we make are not listed.
    std::fs::write(dir.path().join("messages/m1/bad name.wav"), b"x").expect("write");
    let keys = listed(&store, "", 0).await;
    assert!(keys.iter().all(|(k, _)| !k.contains(' ')), "{keys:?}");
}

#[tokio::test]
async fn on_fs_opening_removes_partial_writes_a_killed_process_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir");
    let aged = |name: &str, age_secs: u64| {
        let path = tmp.join(name);
        let f = std::fs::File::create(&path).expect("create");
        f.set_modified(SystemTime::now() - std::time::Duration::from_secs(age_secs))
            .expect("set mtime");
        path
    };
    let killed = aged("0190f0aa-0000-7000-8000-000000000001.part", 2 * 3600);
    let in_flight = aged("0190f0aa-0000-7000-8000-000000000002.part", 60);
    let not_ours = aged("rendition-scratch.wav", 2 * 3600);
    FsBlobStore::open(dir.path()).await.expect("open");
    assert!(!killed.exists(), "an hour-old partial write is removed");
    assert!(
        in_flight.exists(),
        "a recent one may be another process's upload"
    );
    assert!(not_ours.exists(), "only .part files are partial writes");
}

/// A store on the shared s3rver, under a fresh prefix, with 5 MiB parts; `None` when skipped.
fn s3_store() -> Option<(&'static s3::TestS3, voxmail::config::S3Config, S3BlobStore)> {
    let server = s3::shared()?;
    let cfg = voxmail::config::S3Config {
        part_size_bytes: 5 * 1024 * 1024,
        ..server.config()
    };
    let store = S3BlobStore::open(&cfg).expect("open the S3 store");
    Some((server, cfg, store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3() {
    let Some((server, cfg, store)) = s3_store() else {
        return;
    };
    story(&store).await;

    // What the bucket itself holds under the prefix (read with the plain S3 API): exactly the
    // listed blobs, so no aborted or dropped upload became an object.
    let raw = server.list_keys(&cfg.prefix).await;
    let mut raw: Vec<_> = raw
        .iter()
        .map(|k| k.strip_prefix(&cfg.prefix).unwrap_or(k).to_owned())
        .collect();
    raw.sort();
    let listed: Vec<_> = listed(&store, "", 0)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(raw, listed, "objects in the bucket vs listed blobs");

    // Objects that are not keys we make, and leftovers under tmp/, are not listed.
    server
        .put_object(
            &format!("{}messages/m1/bad%20name.wav", cfg.prefix),
            b"x".to_vec(),
        )
        .await;
    server
        .put_object(&format!("{}tmp/readyz-leftover", cfg.prefix), b"x".to_vec())
        .await;
    assert_eq!(
        server.list_keys(&cfg.prefix).await.len(),
        listed.len() + 2,
        "the foreign objects are in the bucket"
    );
    let again: Vec<_> = listed_keys(&store).await;
    assert_eq!(again, listed, "foreign objects are not listed");

    // Another prefix in the same bucket sees none of it.
    let other = S3BlobStore::open(&server.config()).expect("open");
    assert!(listed_keys(&other).await.is_empty());
}

async fn listed_keys(store: &dyn BlobStore) -> Vec<String> {
    listed(store, "", 0)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// An unreachable bucket is a storage failure (not "not found"), reported within the timeout and
/// retry budget, and the message names no secret.
#[tokio::test]
async fn s3_unreachable_is_a_storage_error() {
    let cfg = voxmail::config::S3Config {
        endpoint: "http://127.0.0.1:9".into(),
        bucket: "voxmail".into(),
        path_style: true,
        allow_http: true,
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "very-secret-key-0123456789".into(),
        timeout_secs: 1,
        ..Default::default()
    };
    let store = S3BlobStore::open(&cfg).expect("open sends no request");
    let started = std::time::Instant::now();
    let err = match store.check().await {
        Err(e @ BlobError::Io(_)) => e,
        other => panic!("expected a storage error, got {other:?}"),
    };
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(!msg.contains("very-secret"), "{msg}");
    assert!(msg.contains("readyz"), "names the object: {msg}");
    match store.open(&key("messages/m1/a.wav"), None).await {
        Err(BlobError::Io(_)) => {}
        Err(e) => panic!("expected a storage error, got {e}"),
        Ok(_) => panic!("expected a storage error"),
    }
}

/// Settings that cannot work are refused when the store is opened.
#[test]
fn s3_bad_settings_are_refused() {
    let ok = voxmail::config::S3Config {
        bucket: "voxmail".into(),
        endpoint: "https://s3.example.net".into(),
        ..Default::default()
    };
    assert!(S3BlobStore::open(&ok).is_ok());
    for bad in [
        voxmail::config::S3Config {
            part_size_bytes: 1024,
            ..ok.clone()
        },
        voxmail::config::S3Config {
            prefix: "a b/".into(),
            ..ok.clone()
        },
        voxmail::config::S3Config {
            access_key_id: "AKID".into(),
            ..ok.clone()
        },
    ] {
        match S3BlobStore::open(&bad) {
            Err(BlobError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}"),
            Err(e) => panic!("{bad:?}: {e}"),
            Ok(_) => panic!("{bad:?} was accepted"),
        }
    }
}

/// The database store (`audio.store = "db"`) on a fresh database of `backend` (nothing when that
/// back end is skipped): the story over `audio_blobs`, no file left in its scratch directory, and
/// on MySQL/MariaDB a blob over `max_allowed_packet` refused with an error naming the setting.
async fn on_db(backend: crate::db::Backend) {
    let Some((db, sql)) = crate::open(backend).await else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let store = voxmail::blob::DbBlobStore::open(sql.clone(), scratch.path())
        .await
        .expect("open the database store");
    story(&store).await;
    first_byte(&store).await;
    let left: Vec<_> = std::fs::read_dir(scratch.path())
        .expect("scratch")
        .collect();
    assert!(
        left.is_empty(),
        "uploads spool to anonymous files: {left:?}"
    );
    if backend == crate::db::Backend::MySql {
        use sqlx::Connection;
        let mut c = sqlx::MySqlConnection::connect(&db.url)
            .await
            .expect("connect");
        let (max,): (i64,) = sqlx::query_as("SELECT CAST(@@max_allowed_packet AS SIGNED)")
            .fetch_one(&mut c)
            .await
            .expect("max_allowed_packet");
        let k = key("messages/m1/huge.wav");
        let mut w = store.writer(&k).await.expect("writer");
        let chunk = vec![0u8; 1024 * 1024];
        let mut err = None;
        for _ in 0..=(max as usize / chunk.len()) {
            if let Err(e) = w.write(&chunk).await {
                err = Some(e);
                break;
            }
        }
        let err = match err {
            Some(e) => e,
            None => w
                .commit()
                .await
                .expect_err("a blob over max_allowed_packet"),
        };
        assert!(err.to_string().contains("max_allowed_packet"), "{err}");
        assert_not_found(store.open(&k, None).await, "open the refused blob");
    }
    sql.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_db_sqlite() {
    on_db(crate::db::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_db_postgres() {
    on_db(crate::db::Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_db_mysql() {
    on_db(crate::db::Backend::MySql).await;
}

/// A reader slower than `timeout_secs` (each GET may last that long, body included) still gets
/// every byte: the read is resumed with ranged GETs, past object_store's own retry budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_a_slow_reader_gets_every_byte() {
    let Some((_server, cfg, _)) = s3_store() else {
        return;
    };
    let cfg = voxmail::config::S3Config {
        timeout_secs: 1,
        ..cfg
    };
    let store = S3BlobStore::open(&cfg).expect("open");
    let k = key("messages/slow/reader.wav");
    let data = bytes(3 * 1024 * 1024, 5);
    put(&store, &k, &data).await;
    let r = store
        .open(&k, Some((1, data.len() as u64 - 1)))
        .await
        .expect("open");
    let mut s = r.stream;
    let mut got = Vec::new();
    let mut pauses = 0;
    while let Some(chunk) = s.next().await {
        got.extend_from_slice(&chunk.expect("chunk"));
        // Four pauses of 1.3 s: each outlives a request, together object_store's budget (3 s).
        if got.len() >= pauses * 700_000 && pauses < 4 {
            pauses += 1;
            tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
        }
    }
    assert_eq!(pauses, 4);
    assert!(got == data[1..], "{} bytes read, differing", got.len());
}
