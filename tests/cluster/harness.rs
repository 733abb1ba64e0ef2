//! A cluster of real `voxmail serve` processes on one SQL database and one audio store.
//!
//! Each [`Node`] has its own data directory, TOML configuration and log file (printed when a test
//! fails), listens on a free port of 127.0.0.1 and can be killed with SIGKILL and started again.
//! The audio store is a prefix of the shared s3rver bucket (tests/common/s3.rs); without
//! `TEST_S3RVER` (and without `TEST_REQUIRE_S3=1`) the nodes share an `fs` directory instead, as
//! nodes sharing an NFS mount would, so the cluster logic is still tested.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use voxmail::config::S3Config;

use crate::common::db::{Backend, TestDb};
use crate::common::s3::{self, TestS3};
use crate::common::serve::{self, ServeProcess, free_port};

/// How long a node may take to answer `/readyz` after its start.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Tests of this binary run one at a time: each starts three servers, and the machines that run
/// them may have two cores.
static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Where the nodes keep audio.
pub enum Storage {
    /// A key prefix of the shared s3rver bucket.
    S3 {
        server: &'static TestS3,
        config: S3Config,
    },
    /// One directory every node uses (`audio.dir`).
    SharedFs { dir: PathBuf },
}

impl Storage {
    fn toml(&self) -> String {
        match self {
            Storage::S3 { config: c, .. } => format!(
                "store = \"s3\"\n\n[audio.s3]\nendpoint = {}\nregion = {}\nbucket = {}\nprefix = {}\n\
                 path_style = {}\nallow_http = {}\naccess_key_id = {}\nsecret_access_key = {}\n",
                q(&c.endpoint),
                q(&c.region),
                q(&c.bucket),
                q(&c.prefix),
                c.path_style,
                c.allow_http,
                q(&c.access_key_id),
                q(&c.secret_access_key),
            ),
            Storage::SharedFs { dir } => {
                format!("store = \"fs\"\ndir = {}\n", q(&dir.display().to_string()))
            }
        }
    }

    /// Every stored audio object (key relative to the store), read without voxmail's code: the
    /// bucket through the S3 API, the directory from the file system (less `tmp/`).
    pub async fn keys(&self) -> Vec<String> {
        let mut keys = match self {
            Storage::S3 { server, config } => server
                .list_keys(&config.prefix)
                .await
                .into_iter()
                .map(|k| k[config.prefix.len()..].to_owned())
                .collect(),
            Storage::SharedFs { dir } => {
                let mut out = Vec::new();
                walk(dir, dir, &mut out);
                out
            }
        };
        keys.sort();
        keys
    }

    /// Stores `body` under `key` behind voxmail's back (an object a crashed node left).
    pub async fn plant(&self, key: &str, body: Vec<u8>) {
        match self {
            Storage::S3 { server, config } => {
                server
                    .put_object(&format!("{}{key}", config.prefix), body)
                    .await
            }
            Storage::SharedFs { dir } => {
                let p = dir.join(key);
                std::fs::create_dir_all(p.parent().expect("key has a directory")).expect("mkdir");
                std::fs::write(&p, body).expect("plant file");
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Storage::S3 { .. } => "s3",
            Storage::SharedFs { .. } => "shared fs",
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let rel = p
            .strip_prefix(root)
            .expect("below root")
            .to_string_lossy()
            .into_owned();
        if rel == "tmp" {
            continue;
        }
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(rel);
        }
    }
}

/// A TOML basic string (JSON's escapes are TOML's).
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// The orphan collector's settings of a node (`audio.orphan_grace_secs`, `orphan_sweep_secs`).
#[derive(Debug, Clone, Copy)]
pub struct Collector {
    pub grace_secs: u64,
    pub sweep_secs: u64,
}

impl Collector {
    /// Off (grace 0): nothing a test did behind its back disappears.
    pub const OFF: Collector = Collector {
        grace_secs: 0,
        sweep_secs: 3600,
    };
}

/// One `voxmail serve` process.
pub struct Node {
    pub name: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub collector: Collector,
    dir: PathBuf,
    log: PathBuf,
    process: Option<ServeProcess>,
    starts: u32,
}

impl Node {
    fn config_path(&self) -> PathBuf {
        self.dir.join("voxmail.toml")
    }

    fn write_config(&self, db_url: &str, storage: &Storage, port: u16) {
        let toml = format!(
            "data_dir = {data}\nnode_id = {name}\n\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_secs = 2\n\n\
             [database]\nurl = {url}\nmax_connections = 10\npoll_interval_ms = 100\n\n\
             [events]\nheartbeat_secs = 5\n\n\
             [log]\nfilter = \"info,sqlx=warn\"\n\n\
             [audio]\norphan_grace_secs = {grace}\norphan_sweep_secs = {sweep}\n{store}",
            data = q(&self.dir.join("data").display().to_string()),
            name = q(&self.name),
            url = q(db_url),
            grace = self.collector.grace_secs,
            sweep = self.collector.sweep_secs,
            store = storage.toml(),
        );
        std::fs::write(self.config_path(), toml).expect("write config");
    }

    /// The binary on this node's configuration.
    fn command(&self) -> std::process::Command {
        let mut cmd = serve::voxmail();
        cmd.arg("--config").arg(self.config_path());
        cmd
    }

    /// Starts the process (again) and waits until `/readyz` answers 200.
    pub async fn start(&mut self, db_url: &str, storage: &Storage) {
        assert!(self.process.is_none(), "{} is running", self.name);
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            self.write_config(db_url, storage, port);
            self.starts += 1;
            let marker = format!("===== start #{} on port {port} =====\n", self.starts);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .and_then(|mut log| std::io::Write::write_all(&mut log, marker.as_bytes()))
                .expect("log");
            let mut cmd = self.command();
            cmd.arg("serve");
            self.base = format!("http://127.0.0.1:{port}");
            let ready = self.url("/readyz");
            let process = self.process.insert(ServeProcess::spawn(cmd, &self.log));
            match process.wait_ok(&ready, READY_WITHIN).await {
                Ok(()) => return,
                Err(e) => {
                    last = e;
                    self.kill().await;
                }
            }
        }
        panic!("{} did not start: {last}\n{}", self.name, self.log_tail(60));
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// The last `n` lines of the node's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Nodes A, B, C… on one fresh database and one audio store.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub storage: Storage,
    /// An admin API key (made with `voxmail apikey create` against node A's configuration).
    pub admin: String,
    pub client: Client,
    pub db: TestDb,
    _turn: tokio::sync::SemaphorePermit<'static>,
    _dir: TempDir,
}

impl Cluster {
    /// Starts `n` nodes on a fresh `backend` database; `None` (after a loud message) when the
    /// database server is not configured (see tests/common/db.rs).
    pub async fn start(backend: Backend, n: usize) -> Option<Cluster> {
        Self::start_with(backend, n, |_| Collector::OFF).await
    }

    /// As [`Cluster::start`], with each node's orphan collector settings (by index).
    pub async fn start_with(
        backend: Backend,
        n: usize,
        collector: impl Fn(usize) -> Collector,
    ) -> Option<Cluster> {
        let turn = ONE_AT_A_TIME.acquire().await.expect("semaphore");
        let db = TestDb::create(backend).await?;
        let dir = tempfile::Builder::new()
            .prefix("voxmail-cluster-")
            .tempdir()
            .expect("temp dir");
        let storage = match s3::shared() {
            Some(server) => Storage::S3 {
                server,
                config: server.config(),
            },
            None => {
                let d = dir.path().join("shared-audio");
                std::fs::create_dir_all(&d).expect("shared audio dir");
                Storage::SharedFs { dir: d }
            }
        };
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("node-{}", (b'a' + i as u8) as char);
            let ndir = dir.path().join(&name);
            std::fs::create_dir_all(ndir.join("data")).expect("node dir");
            nodes.push(Node {
                log: ndir.join("voxmail.log"),
                dir: ndir,
                name,
                base: String::new(),
                collector: collector(i),
                process: None,
                starts: 0,
            });
        }
        let mut cluster = Cluster {
            nodes,
            storage,
            admin: String::new(),
            client: Client::new(),
            db,
            _turn: turn,
            _dir: dir,
        };
        cluster.admin = cluster.create_admin_key().await;
        let (url, storage) = (&cluster.db.url, &cluster.storage);
        futures_util::future::join_all(cluster.nodes.iter_mut().map(|n| n.start(url, storage)))
            .await;
        Some(cluster)
    }

    /// `voxmail apikey create --role admin` on node A's configuration (this also migrates the
    /// fresh database before the servers start).
    async fn create_admin_key(&self) -> String {
        let a = &self.nodes[0];
        a.write_config(&self.db.url, &self.storage, free_port());
        let out = tokio::process::Command::from(a.command())
            .args([
                "apikey",
                "create",
                "--name",
                "cluster-admin",
                "--role",
                "admin",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .expect("run voxmail apikey create");
        assert!(
            out.status.success(),
            "voxmail apikey create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("token is text")
            .trim()
            .to_owned()
    }

    /// Node `i` (0 = A).
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// SIGKILLs node `i`.
    pub async fn kill(&mut self, i: usize) {
        self.nodes[i].kill().await;
    }

    /// Starts node `i` again (after [`Cluster::kill`]), with its current settings.
    pub async fn restart(&mut self, i: usize) {
        let (url, storage) = (&self.db.url, &self.storage);
        let node = &mut self.nodes[i];
        node.kill().await;
        node.start(url, storage).await;
    }

    pub fn get(&self, node: usize, path: &str) -> RequestBuilder {
        self.client
            .get(self.nodes[node].url(path))
            .bearer_auth(&self.admin)
    }

    pub fn post(&self, node: usize, path: &str) -> RequestBuilder {
        self.client
            .post(self.nodes[node].url(path))
            .bearer_auth(&self.admin)
    }

    /// Creates `mailbox@context` (and its context) through node `node`.
    pub async fn create_mailbox(&self, node: usize, address: &str, extra: Value) {
        let (mbx, ctx) = address.split_once('@').expect("mailbox@context");
        let r = self
            .post(node, "/v1/contexts")
            .json(&json!({"name": ctx}))
            .send()
            .await
            .expect("create context");
        assert!(
            r.status() == StatusCode::CREATED || r.status() == StatusCode::CONFLICT,
            "create context {ctx}: {}",
            r.status()
        );
        let mut body = json!({"mailbox": mbx, "context": ctx});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        let r = self
            .post(node, "/v1/mailboxes")
            .json(&body)
            .send()
            .await
            .expect("create mailbox");
        let status = r.status();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "create mailbox {address}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Every message of a mailbox, through node `node`.
    pub async fn list(&self, node: usize, address: &str) -> Vec<Value> {
        let r = self
            .get(node, &format!("/v1/mailboxes/{address}/messages?limit=500"))
            .send()
            .await
            .expect("list");
        assert_eq!(r.status(), StatusCode::OK, "list {address}");
        let body: Value = r.json().await.expect("list JSON");
        assert!(body["next_cursor"].is_null(), "one page holds everything");
        body["items"].as_array().expect("items").clone()
    }

    /// A message's audio (`query` e.g. `?format=opus`) through node `node`: content type, bytes.
    pub async fn audio(
        &self,
        node: usize,
        address: &str,
        id: &str,
        query: &str,
    ) -> (String, Vec<u8>) {
        let r = self
            .get(
                node,
                &format!("/v1/mailboxes/{address}/messages/{id}/audio{query}"),
            )
            .send()
            .await
            .expect("audio");
        assert_eq!(r.status(), StatusCode::OK, "audio{query} of {id}");
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (ct, r.bytes().await.expect("audio body").to_vec())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("audio store: {}", self.storage.name());
            for n in &self.nodes {
                eprintln!(
                    "----- log of {} (last 80 lines) -----\n{}",
                    n.name,
                    n.log_tail(80)
                );
            }
            if let Storage::S3 { server, .. } = &self.storage {
                let log = server.log();
                let lines: Vec<&str> = log.lines().collect();
                eprintln!(
                    "----- s3rver stderr (last 30 lines) -----\n{}",
                    lines[lines.len().saturating_sub(30)..].join("\n")
                );
            }
        }
        // The fields drop next: `kill_on_drop` SIGKILLs the nodes, then the database is dropped
        // (TestDb ends the connections still open on it).
    }
}
