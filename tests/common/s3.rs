//! An S3 server for tests: s3rver (npm, pinned by tests/s3/package.json and installed by .ci/run),
//! run from `TEST_S3RVER` (the path of its `s3rver` command) on 127.0.0.1 with a temporary
//! directory and one bucket, [`BUCKET`]. Tests share a server and each takes its own key prefix
//! ([`TestS3::config`]), so they never see each other's objects.
//!
//! Without `TEST_S3RVER` the S3 cases are skipped with a loud message; with `TEST_REQUIRE_S3=1`
//! (CI) a missing variable or a server that does not start fails the test. (Not `VOXMAIL_*`: the
//! configuration loader reads those and refuses unknown keys.)
//!
//! The server is stopped when the [`TestS3`] is dropped, and also when the test process ends
//! however it ends (a static is never dropped; a killed process drops nothing): tests/s3/preload.js
//! makes node exit as soon as its standard input, a pipe from this process, closes. The same
//! preload fixes two races of s3rver's file-system store that a real S3 does not have (a PUT
//! crashing the server when a DELETE emptied its directory; partial objects visible mid-PUT).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use voxmail::config::S3Config;

/// The path of the `s3rver` command (e.g. `<dir>/node_modules/.bin/s3rver`).
pub const BIN_VAR: &str = "TEST_S3RVER";
/// Set to 1 to fail instead of skipping when no S3 server can be started.
pub const REQUIRE_VAR: &str = "TEST_REQUIRE_S3";
/// The one bucket every server has.
pub const BUCKET: &str = "voxmail";
/// s3rver's fixed credentials.
pub const ACCESS_KEY: &str = "S3RVER";
/// s3rver's fixed credentials.
pub const SECRET_KEY: &str = "S3RVER";

/// Loaded before s3rver: ends node when its stdin (a pipe from the test process) closes, and makes
/// s3rver's file-system store safe under concurrent requests (see the file).
const PRELOAD_JS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3/preload.js");

/// A running s3rver.
pub struct TestS3 {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
    dir: tempfile::TempDir,
}

/// Whether a missing server fails the test (`REQUIRE_VAR=1`).
pub fn required() -> bool {
    super::peer::required(REQUIRE_VAR)
}

/// A fresh random hex string, for prefixes.
fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl TestS3 {
    /// Starts a server; `None` (after a loud message) when `TEST_S3RVER` is not set. Panics when
    /// it is required but not set, or set but the server does not start.
    pub fn start() -> Option<TestS3> {
        let bin = super::peer::bin(
            BIN_VAR,
            REQUIRE_VAR,
            "S3 (s3rver)",
            "Set TEST_S3RVER to the s3rver command\n!!! (npm ci --prefix DIR with tests/s3/package.json; then DIR/node_modules/.bin/s3rver).",
        )?;
        Some(super::peer::start_with_retries(
            BIN_VAR,
            &bin,
            "s3rver",
            Self::try_start,
        ))
    }

    fn try_start(bin: &Path) -> Result<TestS3, String> {
        let dir = tempfile::Builder::new()
            .prefix("voxmail-s3rver-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).map_err(|e| format!("data dir: {e}"))?;
        let log = std::fs::File::create(dir.path().join("s3rver.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let mut child = Command::new("node")
            .arg("--require")
            .arg(PRELOAD_JS)
            .arg(bin)
            .arg("-d")
            .arg(&data)
            .args(["-a", "127.0.0.1", "-p", "0", "--silent"])
            .args(["--configure-bucket", BUCKET])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run node {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the "S3rver listening on ADDR:PORT" line, then keeps draining stdout.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.trim().strip_prefix("S3rver listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let started = Instant::now();
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(dir.path().join("s3rver.log")).unwrap_or_default();
                return Err(format!(
                    "no \"listening\" line after {:?}; its stderr:\n{log}",
                    started.elapsed()
                ));
            }
        };
        let s3 = TestS3 {
            endpoint: format!("http://{addr}"),
            child,
            dir,
        };
        // It answers once it says so; one request proves the bucket exists.
        let url = format!("{}/{BUCKET}?list-type=2&max-keys=1", s3.endpoint);
        let status = std::thread::spawn(move || get_status(&url))
            .join()
            .map_err(|_| "probe thread panicked".to_owned())??;
        if status != 200 {
            return Err(format!("listing the bucket answered {status}"));
        }
        Ok(s3)
    }

    /// A bucket configuration for voxmail with a fresh, unique key prefix (`t<16 hex>/`).
    pub fn config(&self) -> S3Config {
        S3Config {
            endpoint: self.endpoint.clone(),
            region: "us-east-1".into(),
            bucket: BUCKET.into(),
            prefix: format!("t{}/", random_hex()),
            path_style: true,
            allow_http: true,
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
            ..S3Config::default()
        }
    }

    /// The server's own log (stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("s3rver.log")).unwrap_or_default()
    }

    /// Every key in the bucket that starts with `prefix`, read with the plain S3 API
    /// (ListObjectsV2; s3rver serves unsigned requests), not through voxmail's code.
    pub async fn list_keys(&self, prefix: &str) -> Vec<String> {
        let client = reqwest::Client::new();
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type", "2".to_owned()),
                ("prefix", prefix.to_owned()),
                ("max-keys", "1000".to_owned()),
            ];
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let r = client
                .get(format!("{}/{BUCKET}", self.endpoint))
                .query(&query)
                .send()
                .await
                .expect("list the bucket");
            let status = r.status();
            let body = r.text().await.expect("list body");
            assert_eq!(status, 200, "ListObjectsV2: {body}");
            keys.extend(xml_values(&body, "Key"));
            token = xml_values(&body, "NextContinuationToken")
                .into_iter()
                .next();
            let truncated = xml_values(&body, "IsTruncated")
                .first()
                .is_some_and(|v| v == "true");
            if !truncated || token.is_none() {
                return keys;
            }
        }
    }

    /// Stores `body` under `key` with a plain unsigned PUT (not through voxmail's code).
    pub async fn put_object(&self, key: &str, body: Vec<u8>) {
        let r = reqwest::Client::new()
            .put(format!("{}/{BUCKET}/{key}", self.endpoint))
            .body(body)
            .send()
            .await
            .expect("put object");
        assert_eq!(
            r.status(),
            200,
            "PUT {key}: {}",
            r.text().await.unwrap_or_default()
        );
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of every `<tag>…</tag>` in `xml`, unescaped (enough for S3's listing answers).
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(&close) else { break };
        out.push(
            rest[..j]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[j + close.len()..];
    }
    out
}

/// The server shared by every test of this process (started on first use, stopped when the
/// process ends); `None` when S3 tests are skipped (see [`TestS3::start`]).
pub fn shared() -> Option<&'static TestS3> {
    static SHARED: OnceLock<Option<TestS3>> = OnceLock::new();
    SHARED.get_or_init(TestS3::start).as_ref()
}

/// The status of a GET on a runtime of its own (the caller may be inside another runtime, or none).
fn get_status(url: &str) -> Result<u16, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok(r.status().as_u16())
    })
}
