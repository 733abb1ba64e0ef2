//! A real IMAP server for tests: Dovecot (Debian `dovecot-imapd`, installed by .ci/run), run from
//! `TEST_DOVECOT` (the path of the `dovecot` binary) on 127.0.0.1 with a free high port and a
//! generated configuration in a temporary directory: passwd-file users with maildirs in that
//! directory, a master user for `user*master` logins, plaintext LOGIN allowed (no TLS), IDLE,
//! UIDPLUS and MOVE as Dovecot has them. No system configuration is read. Each [`TestDovecot`] is
//! its own server, stopped when dropped.
//!
//! Without `TEST_DOVECOT` the IMAP cases are skipped with a loud message; with
//! `TEST_REQUIRE_DOVECOT=1` (CI) a missing variable or a server that does not start fails the
//! test. (Not `VOXMAIL_*`: the configuration loader reads those and refuses unknown keys.)
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The path of the `dovecot` binary (e.g. `/usr/sbin/dovecot`).
pub const BIN_VAR: &str = "TEST_DOVECOT";
/// Set to 1 to fail instead of skipping when no Dovecot can be started.
pub const REQUIRE_VAR: &str = "TEST_REQUIRE_DOVECOT";

/// The users of every server: (name, password).
pub const USERS: &[(&str, &str)] = &[
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("carol", "carol-pw"),
    ("dave", "dave-pw"),
    ("erin", "erin-pw"),
    ("frank", "frank-pw"),
    ("grace", "grace-pw"),
    ("heidi", "heidi-pw"),
];
/// The master user: `alice*master` with [`MASTER_PASSWORD`] logs in as alice.
pub const MASTER_USER: &str = "master";
/// The master user's password.
pub const MASTER_PASSWORD: &str = "master-pw";

/// The uid/gid the mail processes run as (Dovecot refuses root): nobody.
const MAIL_UID: u32 = 65534;

/// A running Dovecot.
pub struct TestDovecot {
    /// 127.0.0.1.
    pub host: String,
    /// The IMAP port.
    pub port: u16,
    child: Child,
    conf: PathBuf,
    dir: tempfile::TempDir,
}

/// Whether a missing server fails the test (`REQUIRE_VAR=1`).
pub fn required() -> bool {
    super::peer::required(REQUIRE_VAR)
}

impl TestDovecot {
    /// Starts a server; `None` (after a loud message) when `TEST_DOVECOT` is not set. Panics when
    /// it is required but not set, or set but the server does not start.
    pub fn start() -> Option<TestDovecot> {
        let bin = super::peer::bin(
            BIN_VAR,
            REQUIRE_VAR,
            "IMAP (Dovecot)",
            "Install Debian dovecot-imapd and set\n!!! TEST_DOVECOT=/usr/sbin/dovecot to run them.",
        )?;
        Some(super::peer::start_with_retries(
            BIN_VAR,
            &bin,
            "Dovecot",
            Self::try_start,
        ))
    }

    fn try_start(bin: &Path) -> Result<TestDovecot, String> {
        let dir = tempfile::Builder::new()
            .prefix("voxmail-dovecot-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let d = dir.path();
        set_mode(d, 0o755)?;
        let mail = d.join("mail");
        std::fs::create_dir_all(&mail).map_err(|e| format!("mail dir: {e}"))?;
        let mut users = String::new();
        for (name, pw) in USERS {
            let home = mail.join(name);
            std::fs::create_dir_all(&home).map_err(|e| format!("home: {e}"))?;
            chown_nobody(&home)?;
            users.push_str(&format!(
                "{name}:{{PLAIN}}{pw}:{MAIL_UID}:{MAIL_UID}::{}::\n",
                home.display()
            ));
        }
        chown_nobody(&mail)?;
        std::fs::write(d.join("users"), users).map_err(|e| format!("users: {e}"))?;
        std::fs::write(
            d.join("masters"),
            format!("{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}\n"),
        )
        .map_err(|e| format!("masters: {e}"))?;
        let port = super::serve::free_port();
        let conf = d.join("dovecot.conf");
        std::fs::write(&conf, config(d, port)).map_err(|e| format!("conf: {e}"))?;
        let log = std::fs::File::create(d.join("stdout.log")).map_err(|e| format!("log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let child = Command::new(bin)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut server = TestDovecot {
            host: "127.0.0.1".into(),
            port,
            child,
            conf,
            dir,
        };
        // Wait for the greeting.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("dovecot exited ({status}): {}", server.logs()));
            }
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("* OK") {
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no IMAP greeting on port {port}: {}",
                    server.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log (for failure messages).
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["dovecot.log", "stdout.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.path().join(f)) {
                s.push_str(&t);
            }
        }
        s
    }

    /// The password of a test user.
    pub fn password(user: &str) -> &'static str {
        USERS
            .iter()
            .find(|(n, _)| *n == user)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no test user {user}"))
    }

    /// The IMAP sessions open now, by user (a master login `bob*master` counts as bob), as
    /// the server itself reports them (`doveadm who -1`; `TEST_DOVEADM` or `doveadm` on PATH).
    pub fn sessions(&self) -> std::collections::BTreeMap<String, usize> {
        let bin = std::env::var("TEST_DOVEADM").unwrap_or_else(|_| "doveadm".into());
        let out = Command::new(&bin)
            .arg("-c")
            .arg(&self.conf)
            .args(["who", "-1"])
            .output()
            .unwrap_or_else(|e| panic!("{bin} who: {e}"));
        assert!(
            out.status.success(),
            "doveadm who: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut by_user = std::collections::BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
            let mut cols = line.split_whitespace();
            if let (Some(user), Some("imap")) = (cols.next(), cols.next()) {
                *by_user.entry(user.to_owned()).or_insert(0) += 1;
            }
        }
        by_user
    }

    /// An account for `user` on this server: plain TCP, short timeouts.
    pub fn account(&self, user: &str) -> voxmail::imap::ImapAccount {
        let mut a = voxmail::imap::ImapAccount::new(&self.host, user, Self::password(user));
        a.port = self.port;
        a.tls = voxmail::imap::ImapTls::None;
        a.timeout = Duration::from_secs(10);
        a.poll_interval = Duration::from_millis(200);
        a
    }
}

/// The processes below `pid` (from /proc), deepest last.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            // /proc/PID/stat: "pid (comm) state ppid ..."; comm may contain spaces.
            if let Ok(stat) = std::fs::read_to_string(e.path().join("stat"))
                && let Some((_, rest)) = stat.rsplit_once(')')
                && let Some(ppid) = rest.split_whitespace().nth(1).and_then(|x| x.parse().ok())
            {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = vec![];
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parents {
            if pp == p {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

impl Drop for TestDovecot {
    fn drop(&mut self) {
        self.halt();
    }
}

impl TestDovecot {
    /// Stops the server (mid-test): the port stops answering, open connections are cut.
    pub fn stop(&mut self) {
        self.halt();
    }

    /// Starts the stopped server again on the same port, maildirs and users.
    pub fn restart(&mut self) {
        let bin = std::env::var_os(BIN_VAR).expect("TEST_DOVECOT");
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("stdout.log"))
            .expect("log");
        let log2 = log.try_clone().expect("log");
        self.child = Command::new(bin)
            .arg("-F")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("restart dovecot");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect((self.host.as_str(), self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "dovecot did not come back: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn halt(&mut self) {
        // Dovecot's imap processes may outlive the master for a while; a stopped server must not
        // answer on open connections, so they are ended too (by pid: only this server's).
        let children = descendants(self.child.id());
        let _ = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in children {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

fn chown_nobody(p: &Path) -> Result<(), String> {
    // As root (CI) the mail processes run as nobody and must own the maildirs; as another user
    // Dovecot runs everything as that user and the chown is neither possible nor needed.
    match std::os::unix::fs::chown(p, Some(MAIL_UID), Some(MAIL_UID)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => set_mode(p, 0o777),
        Err(e) => Err(format!("chown {}: {e}", p.display())),
    }
}

fn config(d: &Path, port: u16) -> String {
    let d = d.display();
    format!(
        r#"# Generated by tests/common/dovecot.rs: a private Dovecot on 127.0.0.1:{port}.
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
instance_name = voxmail-test-{port}
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
mail_location = maildir:~/Maildir
mail_privileged_group =
first_valid_uid = 1
mail_max_userip_connections = 100
# Tests wait for IDLE wake-ups: keep the fall-back check short.
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = passwd-file
  master = yes
  args = scheme=PLAIN username_format=%u {d}/masters
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"#
    )
}
