//! A real SMTP server for the tests: Python's aiosmtpd (PyPI) running tests/smtp/server.py, which
//! keeps every accepted mail as a file and can be told to answer 451 or 550, and can speak
//! STARTTLS or implicit TLS with a throwaway CA made by the openssl CLI at test time, and require
//! AUTH. Mails are read back with Python's `email` package (tests/smtp/parse_mail.py).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/smtp")
        .join(name)
}

/// The Python that has aiosmtpd (`AIOSMTPD_PYTHON`, else `python3`; not a `VOXMAIL_*` name, which
/// the server's configuration would refuse as an unknown key), or `None` — which fails
/// the test under CI (CI must install it) and skips it loudly elsewhere.
pub fn python() -> Option<String> {
    let py = std::env::var("AIOSMTPD_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&py)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{py} has no aiosmtpd: CI must install it (.ci/run) and set AIOSMTPD_PYTHON");
    }
    eprintln!(
        "SKIPPED: {py} has no aiosmtpd (pip install aiosmtpd, or set AIOSMTPD_PYTHON); \
         the email test did not run"
    );
    None
}

/// A mail the server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub path: PathBuf,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The TLS version of the session (`TLSv1.3`), `None` in clear.
    pub tls: Option<String>,
    /// The user the session authenticated as, if it did.
    pub auth_user: Option<String>,
    /// The AUTH mechanism used (`PLAIN`, `LOGIN`).
    pub auth_mechanism: Option<String>,
}

/// A throwaway CA and a server certificate it signed for `localhost` and 127.0.0.1, made with
/// the openssl CLI in a temporary directory (never committed).
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Makes the CA and the server certificate (valid two days).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("the openssl CLI is installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]);
        ca.extend(["-subj", "/CN=voxmail test CA"]);
        ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        run(&ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
        csr.extend(["-subj", "/CN=localhost"]);
        run(&csr);
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Self { dir }
    }

    /// The CA certificate (PEM), for `email.tls_ca_file`.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

/// How the test server secures sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTls {
    /// STARTTLS offered, and mail refused (530) until it was used.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

/// Options of the test server; the default is plain SMTP without AUTH.
#[derive(Default)]
pub struct SmtpOptions<'a> {
    /// TLS, with a certificate from this CA.
    pub tls: Option<(ServerTls, &'a TestCa)>,
    /// Require AUTH with these credentials before MAIL.
    pub auth: Option<(&'a str, &'a str)>,
    /// Offer only these mechanisms (`LOGIN`), instead of PLAIN and LOGIN.
    pub auth_mechanisms: Option<&'a str>,
    /// Offer AUTH on a session in clear.
    pub auth_in_clear: bool,
}

/// A running aiosmtpd on 127.0.0.1.
pub struct SmtpServer {
    pub port: u16,
    python: String,
    args: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl SmtpServer {
    /// Starts a plain server on a free port (`None` when aiosmtpd is not available).
    pub async fn start() -> Option<Self> {
        Self::start_with(SmtpOptions::default()).await
    }

    /// Starts a server with TLS and AUTH options (`None` when aiosmtpd is not available).
    pub async fn start_with(o: SmtpOptions<'_>) -> Option<Self> {
        let python = python()?;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut args = Vec::new();
        if let Some((mode, ca)) = o.tls {
            let mode = match mode {
                ServerTls::Starttls => "starttls",
                ServerTls::Implicit => "implicit",
            };
            args.extend(["--tls".into(), mode.into()]);
            args.extend(["--cert".into(), ca.cert().display().to_string()]);
            args.extend(["--key".into(), ca.key().display().to_string()]);
        }
        if let Some((user, password)) = o.auth {
            args.extend(["--auth".into(), format!("{user}:{password}")]);
        }
        if let Some(m) = o.auth_mechanisms {
            args.extend(["--auth-mechanisms".into(), m.into()]);
        }
        if o.auth_in_clear {
            args.push("--auth-in-clear".into());
        }
        let mut s = Self {
            port,
            python,
            args,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        s.up().await;
        Some(s)
    }

    fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    fn control(&self) -> PathBuf {
        self.dir.path().join("control")
    }

    /// (Re)starts the server process on the same port and mail directory.
    pub async fn up(&mut self) {
        let mut child = Command::new(&self.python)
            .arg(script("server.py"))
            .arg("127.0.0.1")
            .arg(self.port.to_string())
            .arg(self.mail_dir())
            .arg(self.control())
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("aiosmtpd starts within 20 s")
            .unwrap();
        assert_eq!(ready.as_deref(), Some("READY"), "aiosmtpd did not start");
        self.child = Some(child);
    }

    /// Stops the server process (connections are then refused).
    pub async fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Makes the server answer RCPT with 451 or 550 (`None` = accept).
    pub fn refuse_with(&self, code: Option<u16>) {
        std::fs::write(
            self.control(),
            code.map(|c| c.to_string()).unwrap_or_default(),
        )
        .unwrap();
    }

    /// Accepted mails, oldest first.
    pub fn mails(&self) -> Vec<Mail> {
        let Ok(rd) = std::fs::read_dir(self.mail_dir()) else {
            return Vec::new();
        };
        let mut names: Vec<PathBuf> = rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|p| {
                let env: Value =
                    serde_json::from_slice(&std::fs::read(p.with_extension("json")).unwrap())
                        .unwrap();
                let text = |k: &str| env[k].as_str().map(str::to_owned);
                Mail {
                    tls: text("tls"),
                    auth_user: text("auth_user"),
                    auth_mechanism: text("auth_mechanism"),
                    mail_from: env["mail_from"].as_str().unwrap().to_owned(),
                    rcpt_tos: env["rcpt_tos"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_owned())
                        .collect(),
                    path: p,
                }
            })
            .collect()
    }

    /// Waits until at least `n` mails arrived (or `timeout` passed); returns them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        let start = Instant::now();
        loop {
            let m = self.mails();
            if m.len() >= n || start.elapsed() > timeout {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Parses a mail with Python's `email` package; attachments are saved beside it.
    pub fn parse(&self, mail: &Mail) -> Value {
        let out_dir = mail.path.with_extension("parts");
        std::fs::create_dir_all(&out_dir).unwrap();
        let out = std::process::Command::new(&self.python)
            .arg(script("parse_mail.py"))
            .arg(&mail.path)
            .arg(&out_dir)
            .output()
            .expect("run parse_mail.py");
        assert!(
            out.status.success(),
            "parse_mail.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.start_kill();
        }
    }
}

/// The duration in seconds ffprobe reads from an audio file, after ffmpeg decoded it fully.
pub fn audio_duration(path: &Path) -> f64 {
    let decode = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg is installed (apt-get install ffmpeg)");
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "ffmpeg decodes {}: {}",
        path.display(),
        String::from_utf8_lossy(&decode.stderr)
    );
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe duration of {}", path.display()))
}
