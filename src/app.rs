//! Wiring: configuration → stores → services → HTTP and background work; graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::blob::{BlobStore, FsBlobStore, S3BlobStore};
use crate::config::{AudioStore, Config};
use crate::service::Voicemail;
use crate::store::SqlStore;

/// Opens the stores the configuration names and builds the services on them.
pub async fn build(config: Config) -> anyhow::Result<Voicemail> {
    let url = config.database_url();
    let sql = SqlStore::open(&config)
        .await
        .with_context(|| format!("opening database {}", crate::config::redact_url(&url)))?;
    let sql = Arc::new(sql);
    let blobs: Arc<dyn BlobStore> = match config.audio.store {
        // Audio in `messages.recording` / `greetings.recording`, as Asterisk's ODBC storage.
        AudioStore::Db => {
            let scratch = config.scratch_dir();
            Arc::new(
                crate::blob::DbBlobStore::open(sql.clone(), &scratch)
                    .await
                    .with_context(|| {
                        format!(
                            "opening the database audio store (scratch {})",
                            scratch.display()
                        )
                    })?,
            )
        }
        // Objects in an S3-compatible bucket, which every node of a cluster shares.
        AudioStore::S3 => {
            let s3 = &config.audio.s3;
            let store = S3BlobStore::open(s3)
                .with_context(|| format!("opening the S3 audio store (bucket {})", s3.bucket))?;
            tracing::info!(
                audio.store = "s3",
                s3.bucket = %s3.bucket,
                s3.endpoint = %if s3.endpoint.is_empty() {
                    "AWS".to_owned()
                } else {
                    crate::config::redact_url(&s3.endpoint)
                },
                s3.region = %s3.region,
                s3.prefix = %s3.prefix,
                "audio in an S3 bucket"
            );
            Arc::new(store)
        }
        AudioStore::Fs => {
            let audio_dir = config.audio_dir();
            let store = FsBlobStore::open(&audio_dir)
                .await
                .with_context(|| format!("opening audio directory {}", audio_dir.display()))?;
            tracing::info!(audio.store = "fs", audio.dir = %audio_dir.display(), "audio in a directory");
            Arc::new(store)
        }
    };
    Ok(Voicemail::new(sql, blobs, Arc::new(config)))
}

/// A running server.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    vm: Voicemail,
}

impl Running {
    /// Asks the server to stop (as SIGTERM does).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A handle that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server and its workers have stopped, then closes the database.
    pub async fn wait(self) {
        self.tracker.close();
        self.tracker.wait().await;
        self.vm.sql.close().await;
    }
}

/// Starts the HTTP server on `listener` and the background workers.
pub async fn start(vm: Voicemail, listener: TcpListener) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let grace = Duration::from_secs(vm.config().http.shutdown_grace_secs);
    let open_files = crate::http::server::raise_open_file_limit();

    // First, so SMTP settings that cannot work stop the start before anything runs.
    vm.start_email(shutdown.clone(), &tracker)
        .map_err(|e| anyhow::anyhow!("email: {e}"))?;
    let hub = vm.start_hub(shutdown.clone(), &tracker);
    vm.start_cluster_wakeups(shutdown.clone(), &tracker);
    vm.start_webhooks(shutdown.clone(), &tracker);
    vm.start_mwi_pushes(shutdown.clone(), &tracker).await;
    vm.start_orphan_collector(shutdown.clone(), &tracker);
    vm.start_imap_watchers(shutdown.clone(), &tracker);
    vm.start_asterisk_sync(shutdown.clone(), &tracker);
    let vm = vm.with_hub(hub);
    let router = crate::http::router(vm.clone());
    let limits = crate::http::server::Limits::new(&vm.config().http, open_files);
    let stop = shutdown.clone();
    tracker.spawn(async move {
        let serve = crate::http::server::serve(listener, router, limits, stop.clone());
        tokio::pin!(serve);
        tokio::select! {
            () = &mut serve => {}
            () = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("in-flight requests did not finish within the grace period");
            }
        }
    });

    let stop = shutdown.clone();
    let hk = vm.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {
                    match hk.housekeeping().await {
                        Ok(n) if n > 0 => tracing::info!(rows = n, "housekeeping removed expired rows"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
                    }
                }
            }
        }
    });

    tracing::info!(listen = %addr, node.id = %vm.config().node_id(), "voxmail listening");
    Ok(Running {
        addr,
        shutdown,
        tracker,
        vm,
    })
}

/// SIGTERM and SIGINT, caught from the moment [`ShutdownSignals::listen`] returns. Made before the
/// server starts: a handler installed later (when a spawned task first runs) would leave a window
/// in which a SIGTERM kills the process with the default action instead of draining it.
pub struct ShutdownSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Installs the handlers now (needs a running Tokio runtime).
    pub fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for {name}");
                None
            }
        };
        Self {
            term: install(SignalKind::terminate(), "SIGTERM"),
            int: install(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Resolves when SIGTERM or SIGINT arrives.
    pub async fn recv(mut self) {
        async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = one(&mut self.term) => {}
            () = one(&mut self.int) => {}
        }
    }
}
