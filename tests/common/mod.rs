//! Test harness: the real server, in-process, on 127.0.0.1:0 with a temporary data directory.
#![allow(dead_code)]

pub mod asterisk;
pub mod audio;
pub mod db;
pub mod disk;
pub mod dovecot;
pub mod peer;
pub mod proxy;
pub mod receiver;
pub mod s3;
pub mod serve;
pub mod smtp;
pub mod sse;

use std::path::{Path, PathBuf};

use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use voxmail::config::Config;
use voxmail::domain::Role;

/// A running voxmail on an ephemeral port.
pub struct TestApp {
    pub base: String,
    pub admin: String,
    pub client: Client,
    pub config: Config,
    running: Option<voxmail::app::Running>,
    /// The running server's services (shared state: its decoders, its hub…).
    vm: Option<voxmail::service::Voicemail>,
    /// The server database when `TEST_APP_DATABASE` names one (dropped after the server stops).
    db: Option<db::TestDb>,
    // Kept last so the directory outlives the server.
    dir: Option<TempDir>,
    data_dir: PathBuf,
}

/// Loads a fixture by name from `fixtures/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

pub fn test_config(data_dir: &Path) -> Config {
    let mut c = Config {
        data_dir: data_dir.to_path_buf(),
        node_id: "test-node".into(),
        ..Config::default()
    };
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    c.http.shutdown_grace_secs = 5;
    c
}

/// `TEST_APP_DATABASE=postgres|mysql` runs the API tests on a fresh database of that server
/// (`TEST_POSTGRES_URL` / `TEST_MYSQL_URL`) instead of SQLite. Tests that open the SQLite file
/// or run the CLI on the data directory assume SQLite.
async fn app_database() -> Option<db::TestDb> {
    let backend = match std::env::var("TEST_APP_DATABASE").as_deref() {
        Ok("postgres") => db::Backend::Postgres,
        Ok("mysql") => db::Backend::MySql,
        _ => return None,
    };
    Some(
        db::TestDb::create(backend)
            .await
            .expect("TEST_APP_DATABASE names a server that is not configured"),
    )
}

impl TestApp {
    /// Starts a server with default settings and an unscoped admin key.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusts the configuration.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let db = app_database().await;
        Self::spawn_with_db(db, tweak).await
    }

    /// Starts a server on a fresh database of `backend` after `tweak`; `None` when that server
    /// is not configured (skipped loudly, or a failure under `TEST_REQUIRE_SQL_SERVERS=1`).
    pub async fn spawn_on(backend: db::Backend, tweak: impl FnOnce(&mut Config)) -> Option<Self> {
        let db = db::TestDb::create(backend).await?;
        Some(Self::spawn_with_db(Some(db), tweak).await)
    }

    pub async fn spawn_with_db(db: Option<db::TestDb>, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        if let Some(db) = &db {
            config.database.url = db.url.clone();
        }
        // `TEST_APP_AUDIO_STORE=s3|db` runs the API tests with the audio in a bucket (one s3rver
        // per test process, a fresh key prefix per app) or in the database.
        match std::env::var("TEST_APP_AUDIO_STORE").as_deref() {
            Ok("s3") => {
                let s3 = s3::shared()
                    .expect("TEST_APP_AUDIO_STORE=s3 but no S3 server (set TEST_S3RVER)");
                config.audio.store = voxmail::config::AudioStore::S3;
                config.audio.s3 = s3.config();
            }
            Ok("db") => config.audio.store = voxmail::config::AudioStore::Db,
            _ => {}
        }
        tweak(&mut config);
        let data_dir = dir.path().to_path_buf();
        let mut app = Self {
            base: String::new(),
            admin: String::new(),
            client: Client::new(),
            config,
            running: None,
            vm: None,
            db,
            dir: Some(dir),
            data_dir,
        };
        app.start().await;
        let vm = voxmail::app::build(app.config.clone())
            .await
            .expect("build");
        app.admin = vm
            .create_api_key("test admin", Role::Admin, None)
            .await
            .expect("admin key")
            .token;
        app
    }

    async fn start(&mut self) {
        let vm = voxmail::app::build(self.config.clone())
            .await
            .expect("build");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.vm = Some(vm.clone());
        let running = voxmail::app::start(vm, listener).await.expect("start");
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
    }

    /// Stops the server (gracefully) and starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            r.wait().await;
        }
    }

    /// The running server's own services (not a second instance, as `services` builds).
    pub fn running_services(&self) -> &voxmail::service::Voicemail {
        self.vm.as_ref().expect("the server is running")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Builds services on the same data (as the CLI does), e.g. to create scoped keys.
    pub async fn services(&self) -> voxmail::service::Voicemail {
        voxmail::app::build(self.config.clone())
            .await
            .expect("build")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&self.admin)
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(&self.admin)
    }

    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.client.patch(self.url(path)).bearer_auth(&self.admin)
    }

    pub fn put(&self, path: &str) -> RequestBuilder {
        self.client.put(self.url(path)).bearer_auth(&self.admin)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.client.delete(self.url(path)).bearer_auth(&self.admin)
    }

    pub async fn create_context(&self, name: &str) {
        let r = self
            .post("/v1/contexts")
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "create context {name}");
    }

    /// Creates `mailbox@context` (and the context if needed) with extra JSON settings.
    pub async fn create_mailbox(&self, address: &str, extra: Value) {
        let (mbx, ctx) = address.split_once('@').unwrap();
        let exists = self
            .get("/v1/contexts?limit=500")
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == ctx);
        if !exists {
            self.create_context(ctx).await;
        }
        let mut body = json!({"mailbox": mbx, "context": ctx});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let r = self.post("/v1/mailboxes").json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "create mailbox {address}");
    }

    /// Deposits `audio` into `address` with the given Content-Type and query string.
    pub async fn deposit(
        &self,
        address: &str,
        audio: Vec<u8>,
        content_type: &str,
        query: &str,
    ) -> Response {
        self.post(&format!("/v1/mailboxes/{address}/messages{query}"))
            .header("content-type", content_type)
            .body(audio)
            .send()
            .await
            .unwrap()
    }

    /// Deposits and asserts 201; returns the message JSON.
    pub async fn deposit_ok(&self, address: &str, audio: Vec<u8>, content_type: &str) -> Value {
        let r = self.deposit(address, audio, content_type, "").await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "deposit: {body}");
        body
    }

    pub async fn mwi(&self, address: &str) -> Value {
        self.get(&format!("/v1/mailboxes/{address}/mwi"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown();
        }
    }
}

/// Asserts a problem+json answer with this status and type slug; returns its body.
pub async fn assert_problem(r: Response, status: u16, slug: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status for {slug}");
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(ct, "application/problem+json", "content type for {slug}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["type"],
        format!("/problems/{slug}"),
        "problem body {body}"
    );
    assert_eq!(body["status"], status);
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}
