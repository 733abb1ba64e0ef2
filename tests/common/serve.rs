//! `voxmail serve` as a child process, for the tests that need the real binary (signals, the
//! CLI's configuration sources, several nodes on one database). Tests that only need a server
//! use [`super::TestApp`], in-process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

/// A port of 127.0.0.1 free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The binary, with no `VOXMAIL_*` or `RUST_LOG` variable inherited from the test's environment.
pub fn voxmail() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_voxmail"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("VOXMAIL_") {
            c.env_remove(k);
        }
    }
    c.env_remove("RUST_LOG");
    c
}

/// A running `voxmail … serve`, its output appended to a log file; killed if dropped first.
pub struct ServeProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl ServeProcess {
    /// Spawns `cmd` (a `voxmail … serve` command) with stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("spawn voxmail serve");
        Self {
            child: Some(child),
            log: log.to_owned(),
        }
    }

    /// Polls `url` until it answers 200; an error if the process exits first or `within` passes.
    pub async fn wait_ok(&mut self, url: &str, within: Duration) -> Result<(), String> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(format!("voxmail serve exited early ({status})"));
            }
            if let Ok(r) = client.get(url).timeout(Duration::from_secs(2)).send().await
                && r.status() == StatusCode::OK
            {
                return Ok(());
            }
            if started.elapsed() > within {
                return Err(format!("no 200 from {url} within {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its exit status, once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("try_wait")
    }

    /// Sends it `kill -SIG`.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} {pid}");
    }

    /// Waits (bounded) for the process to exit and returns its status.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "voxmail serve did not exit within {within:?}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Everything it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines it logged.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
