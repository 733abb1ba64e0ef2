//! A real Asterisk for interop tests: Asterisk 22 with app_voicemail built for ODBC_STORAGE
//! (built and cached by tests/asterisk/build.sh, which .ci/run calls), run from the installed
//! prefix `TEST_ASTERISK_PREFIX` names, one private instance per [`Asterisk`]: every directory
//! (configuration, run dir and control socket, logs, spool, astdb, cache) lives in a temporary
//! work directory with a short path under /tmp, and unixODBC reads the work directory's own
//! `odbc.ini`/`odbcinst.ini` (`ODBCSYSINI`/`ODBCINI` of the Asterisk process; /etc/odbc.ini is
//! never read or written). The test supplies `voicemail.conf`, `extensions.conf` and, for realtime
//! mailboxes, `extconfig.conf`; the harness writes everything else: a res_odbc class named
//! [`ODBC_CLASS`] (`asterisk`, so `odbcstorage=asterisk`) on a DSN derived from the test
//! database's sqlx URL, an explicit module list (`autoload=no`), a full log at verbose 3, and a
//! sounds directory whose `en` is Debian's `asterisk-core-sounds-en-wav` prompts.
//!
//! Without `TEST_ASTERISK_PREFIX` the Asterisk cases are skipped with a loud message; with
//! `TEST_REQUIRE_ASTERISK=1` (CI) a missing variable or an Asterisk that does not start fails the
//! test. (Not `VOXMAIL_*`: the configuration loader reads those and refuses unknown keys.)
//!
//! Calls need no SIP: [`Asterisk::call`] runs `channel originate Local/<exten> extension <target>`
//! and waits until no channel is left — one side of the Local channel plays or sends DTMF, the
//! other runs `VoiceMail()`/`VoiceMailMain()`. Audio runs in real time (a 3 s prompt takes 3 s).
//!
//! The process is stopped when the [`Asterisk`] is dropped (`core stop now`, then SIGKILL), and
//! also when the test process dies: it runs under `setpriv --pdeathsig KILL`, spawned from a
//! thread that lives as long as the process (the death signal follows the spawning *thread*).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The installed prefix of tests/asterisk/build.sh (holds `sbin/asterisk`).
pub const PREFIX_VAR: &str = "TEST_ASTERISK_PREFIX";
/// Set to 1 to fail instead of skipping when no Asterisk can be started.
pub const REQUIRE_VAR: &str = "TEST_REQUIRE_ASTERISK";
/// Set to 1 to keep each work directory after the test (its path is printed).
pub const KEEP_VAR: &str = "TEST_ASTERISK_KEEP";
/// The res_odbc class (`odbcstorage=` in voicemail.conf, `odbc,<class>,<table>` in extconfig.conf).
pub const ODBC_CLASS: &str = "asterisk";
/// The unixODBC data source name the class connects to (defined in the work dir's odbc.ini).
pub const DSN: &str = "voxmail-asterisk";
/// Debian `asterisk-core-sounds-en-wav` installs its prompts here (no `en` directory or link).
pub const PROMPTS_DIR: &str = "/usr/share/asterisk/sounds/en_US_f_Allison";

/// Modules that must load (`require =>`: Asterisk refuses to start without them).
const REQUIRED_MODULES: &[&str] = &[
    "res_odbc",
    "res_adsi",
    "res_smdi",
    "app_voicemail_odbc",
    "pbx_config",
    "res_timing_timerfd",
    "res_clioriginate",
    "format_wav",
    "format_pcm",
    "format_gsm",
    "format_wav_gsm",
    "codec_ulaw",
    "codec_alaw",
    "codec_gsm",
    "app_playback",
    "app_senddtmf",
];
/// Further modules build.sh installs, loaded too (`load =>`).
const OPTIONAL_MODULES: &[&str] = &[
    "res_odbc_transaction",
    "res_config_odbc",
    "res_realtime",
    "res_speech",
    "res_agi",
    "app_record",
    "app_echo",
    "app_system",
    "app_verbose",
    "app_stack",
    "app_dial",
    "app_read",
    "app_exec",
    "app_while",
    "app_originate",
    "bridge_simple",
    "func_callerid",
    "func_strings",
    "func_channel",
    "func_logic",
    "func_vmcount",
    "func_global",
    "func_env",
    "func_shell",
    "func_math",
    "func_cut",
    "func_db",
    "func_realtime",
    "func_timeout",
];

/// WARNING/ERROR lines this set-up always logs, harmless: res_adsi is deprecated (but
/// app_voicemail requires it), and VoiceMailMain offers ADSI to every caller, which a Local
/// channel cannot take.
pub const KNOWN_WARNINGS: &[&str] = &[
    "Module 'res_adsi' has been loaded but may be removed in a future release.",
    "res_adsi.c: Unable to send CAS",
];

/// Which unixODBC driver the DSN uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Odbc {
    /// psqlODBC (Debian `odbc-postgresql`, "PostgreSQL Unicode").
    Postgres,
    /// MariaDB Connector/ODBC (Debian `odbc-mariadb`, "MariaDB Unicode").
    MariaDb,
}

impl Odbc {
    /// The driver for a test database back end (`None` for SQLite: Asterisk has no ODBC there).
    pub fn for_backend(backend: super::db::Backend) -> Option<Odbc> {
        match backend {
            super::db::Backend::Postgres => Some(Odbc::Postgres),
            super::db::Backend::MySql => Some(Odbc::MariaDb),
            super::db::Backend::Sqlite => None,
        }
    }

    /// The test database back end this driver talks to.
    pub fn backend(self) -> super::db::Backend {
        match self {
            Odbc::Postgres => super::db::Backend::Postgres,
            Odbc::MariaDb => super::db::Backend::MySql,
        }
    }

    /// The driver's section name in odbcinst.ini (as Debian names it).
    pub fn driver_name(self) -> &'static str {
        match self {
            Odbc::Postgres => "PostgreSQL Unicode",
            Odbc::MariaDb => "MariaDB Unicode",
        }
    }

    fn driver_file(self) -> &'static str {
        match self {
            Odbc::Postgres => "psqlodbcw.so",
            Odbc::MariaDb => "libmaodbc.so",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Odbc::Postgres => "odbc-postgresql",
            Odbc::MariaDb => "odbc-mariadb",
        }
    }
}

/// What a test decides about one Asterisk.
#[derive(Debug, Clone)]
pub struct AsteriskConfig {
    pub odbc: Odbc,
    /// The sqlx URL of the test database (`postgres://user@host:port/db`,
    /// `mysql://root@host:port/db`); the DSN is derived from it.
    pub db_url: String,
    /// voicemail.conf, written verbatim (the test decides odbcstorage/odbctable/format).
    pub voicemail_conf: String,
    /// extensions.conf, written verbatim.
    pub extensions_conf: String,
    /// extconfig.conf (realtime mappings, e.g. `[settings]\nvoicemail => odbc,asterisk,mailboxes\n`).
    pub extconfig_conf: Option<String>,
}

impl AsteriskConfig {
    /// A configuration for the test database `db` (PostgreSQL or MySQL/MariaDB).
    pub fn for_db(
        db: &super::db::TestDb,
        voicemail_conf: impl Into<String>,
        extensions_conf: impl Into<String>,
    ) -> AsteriskConfig {
        AsteriskConfig {
            odbc: Odbc::for_backend(db.backend).expect("Asterisk ODBC needs PostgreSQL or MySQL"),
            db_url: db.url.clone(),
            voicemail_conf: voicemail_conf.into(),
            extensions_conf: extensions_conf.into(),
            extconfig_conf: None,
        }
    }
}

/// A running Asterisk.
pub struct Asterisk {
    prefix: PathBuf,
    bin: PathBuf,
    child: Child,
    conf: PathBuf,
    odbc_ini: String,
    odbcinst_ini: String,
    res_odbc_conf: String,
    // Kept last so the directory outlives the process.
    dir: tempfile::TempDir,
}

/// Whether a missing Asterisk fails the test (`REQUIRE_VAR=1`).
pub fn required() -> bool {
    super::peer::required(REQUIRE_VAR)
}

impl Asterisk {
    /// Starts an Asterisk; `None` (after a loud message) when `TEST_ASTERISK_PREFIX` is not set.
    /// Panics when it is required but not set, or set but Asterisk does not start (fully booted,
    /// the ODBC class connected).
    pub fn start(cfg: AsteriskConfig) -> Option<Asterisk> {
        let prefix = super::peer::bin(
            PREFIX_VAR,
            REQUIRE_VAR,
            "Asterisk (ODBC voicemail)",
            "Build it with tests/asterisk/build.sh CACHE_ROOT and set\n!!! TEST_ASTERISK_PREFIX to the prefix it prints to run them.",
        )?;
        Some(super::peer::start_with_retries(
            PREFIX_VAR,
            &prefix,
            "Asterisk",
            |p| Self::try_start(p, &cfg),
        ))
    }

    fn try_start(prefix: &Path, cfg: &AsteriskConfig) -> Result<Asterisk, String> {
        let bin = prefix.join("sbin/asterisk");
        if !bin.is_file() {
            return Err(format!("no {}", bin.display()));
        }
        if !Path::new(PROMPTS_DIR).is_dir() {
            return Err(format!(
                "no prompts at {PROMPTS_DIR} (Debian asterisk-core-sounds-en-wav)"
            ));
        }
        // A short path: the control socket (run/asterisk.ctl) must fit a sockaddr_un (108 bytes),
        // so not under a long TMPDIR.
        let dir = tempfile::Builder::new()
            .prefix("vxast-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("temp dir: {e}"))?;
        let w = dir.path();
        for sub in [
            "etc", "odbc", "run", "log", "spool", "lib", "cache", "agi", "data", "keys",
        ] {
            std::fs::create_dir_all(w.join(sub)).map_err(|e| format!("mkdir {sub}: {e}"))?;
        }
        // astdatadir: the installed one (its XML documentation is required at start: "Stasis
        // initialization failed" without it) but with our own sounds/, whose en is the prompts.
        let installed_data = prefix.join("var/lib/asterisk");
        let entries = std::fs::read_dir(&installed_data)
            .map_err(|e| format!("{}: {e}", installed_data.display()))?;
        for e in entries.flatten() {
            if e.file_name() != "sounds" {
                symlink(&e.path(), &w.join("data").join(e.file_name()))?;
            }
        }
        std::fs::create_dir_all(w.join("data/sounds")).map_err(|e| format!("sounds: {e}"))?;
        symlink(Path::new(PROMPTS_DIR), &w.join("data/sounds/en"))?;

        let db = DbUrl::parse(&cfg.db_url)?;
        let driver = driver_path(cfg.odbc)?;
        let odbcinst_ini = odbcinst_ini(cfg.odbc, &driver);
        let odbc_ini = odbc_ini(cfg.odbc, &db);
        let res_odbc_conf = res_odbc_conf(cfg.odbc, &db);
        let etc = w.join("etc");
        let write = |name: &str, text: &str| {
            std::fs::write(etc.join(name), text).map_err(|e| format!("{name}: {e}"))
        };
        write("asterisk.conf", &asterisk_conf(w, prefix))?;
        write("modules.conf", &modules_conf())?;
        write("logger.conf", LOGGER_CONF)?;
        write("res_odbc.conf", &res_odbc_conf)?;
        write("voicemail.conf", &cfg.voicemail_conf)?;
        write("extensions.conf", &cfg.extensions_conf)?;
        if let Some(ext) = &cfg.extconfig_conf {
            write("extconfig.conf", ext)?;
        }
        write("indications.conf", INDICATIONS_CONF)?;
        for (name, text) in QUIET_CONFS {
            write(name, text)?;
        }
        std::fs::write(w.join("odbc/odbcinst.ini"), &odbcinst_ini)
            .map_err(|e| format!("odbcinst.ini: {e}"))?;
        std::fs::write(w.join("odbc/odbc.ini"), &odbc_ini).map_err(|e| format!("odbc.ini: {e}"))?;

        let conf = etc.join("asterisk.conf");
        let stdout = std::fs::File::create(w.join("log/stdout.log"))
            .map_err(|e| format!("stdout.log: {e}"))?;
        let stderr = stdout.try_clone().map_err(|e| format!("stdout.log: {e}"))?;
        let mut cmd = if Path::new(SETPRIV).is_file() {
            let mut c = Command::new(SETPRIV);
            c.args(["--pdeathsig", "KILL", "--"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        // -f: foreground, no console; -n: no colours in the output.
        cmd.arg("-f")
            .arg("-n")
            .arg("-C")
            .arg(&conf)
            .env("ODBCSYSINI", w.join("odbc"))
            .env("ODBCINI", w.join("odbc/odbc.ini"))
            .current_dir(w)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = spawn(cmd).map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut ast = Asterisk {
            prefix: prefix.to_path_buf(),
            bin,
            child,
            conf,
            odbc_ini,
            odbcinst_ini,
            res_odbc_conf,
            dir,
        };
        ast.wait_booted()?;
        Ok(ast)
    }

    fn wait_booted(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("asterisk exited ({status}):\n{}", self.logs()));
            }
            // Fails fast while the control socket does not exist yet; then blocks until booted.
            if let Ok(out) = self.try_rx("core waitfullybooted")
                && out.contains("fully booted")
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("not fully booted in 60 s:\n{}", self.logs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // pre-connect makes res_odbc connect while loading; a class that is not connected now
        // (driver missing, wrong DSN, database unreachable) would only show up as failed calls.
        let odbc = self.rx(&format!("odbc show {ODBC_CLASS}"));
        if !odbc.contains("Number of active connections: 1") {
            return Err(format!(
                "the ODBC class {ODBC_CLASS} is not connected:\n{odbc}\n{}",
                self.logs()
            ));
        }
        Ok(())
    }

    /// Runs a CLI command (`asterisk -C .. -rx cmd`) and returns its output; panics when the
    /// control socket does not answer.
    pub fn rx(&self, cmd: &str) -> String {
        self.try_rx(cmd)
            .unwrap_or_else(|e| panic!("asterisk -rx {cmd:?}: {e}\n{}", self.logs()))
    }

    /// Like [`Asterisk::rx`], an error instead of a panic.
    pub fn try_rx(&self, cmd: &str) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .arg("-C")
            .arg(&self.conf)
            .arg("-rx")
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("spawn: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!(
                "{}: {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(stdout)
    }

    /// The work directory (etc/, odbc/, run/, log/, spool/, lib/, data/ …).
    pub fn work_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The installed prefix this instance runs from.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// astspooldir. Voicemail lives in `<spool>/voicemail/<context>/<mailbox>/<folder>`, which is
    /// also what Asterisk writes into the ODBC `dir` column.
    pub fn spool_dir(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// The ODBC `dir` value of a mailbox folder (`<spool>/voicemail/<context>/<mailbox>/<folder>`).
    pub fn odbc_dir(&self, context: &str, mailbox: &str, folder: &str) -> String {
        self.spool_dir()
            .join("voicemail")
            .join(context)
            .join(mailbox)
            .join(folder)
            .display()
            .to_string()
    }

    /// The full log (notices, warnings, errors, verbose ≤ 3).
    pub fn log(&self) -> String {
        self.log_since(0)
    }

    /// The WARNING and ERROR lines of the full log.
    pub fn warnings(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("WARNING[") || l.contains("ERROR["))
            .map(str::to_owned)
            .collect()
    }

    /// The WARNING and ERROR lines of the full log other than [`KNOWN_WARNINGS`].
    pub fn unexpected_warnings(&self) -> Vec<String> {
        self.warnings()
            .into_iter()
            .filter(|l| !KNOWN_WARNINGS.iter().any(|k| l.contains(k)))
            .collect()
    }

    /// The current length (bytes) of the full log, to look only at lines written after this
    /// point ([`Asterisk::log_since`], [`Asterisk::wait_for_log_since`]).
    pub fn log_mark(&self) -> usize {
        std::fs::metadata(self.dir.path().join("log/full")).map_or(0, |m| m.len() as usize)
    }

    /// The full log from `mark` ([`Asterisk::log_mark`]) on.
    pub fn log_since(&self, mark: usize) -> String {
        let bytes = std::fs::read(self.dir.path().join("log/full")).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(mark..).unwrap_or_default()).into_owned()
    }

    /// Waits until the full log, from `mark` on, contains `needle`; false after `timeout`.
    pub fn wait_for_log_since(&self, mark: usize, needle: &str, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.log_since(mark).contains(needle))
    }

    /// The full log and the process's own output, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["log/full", "log/stdout.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.path().join(f)) {
                let _ = writeln!(s, "--- {f} ---\n{t}");
            }
        }
        s
    }

    /// The odbc.ini written (one DSN, [`DSN`]).
    pub fn odbc_ini(&self) -> String {
        self.odbc_ini.clone()
    }

    /// The odbcinst.ini written (one driver).
    pub fn odbcinst_ini(&self) -> String {
        self.odbcinst_ini.clone()
    }

    /// The res_odbc.conf written (one class, [`ODBC_CLASS`]).
    pub fn res_odbc_conf(&self) -> String {
        self.res_odbc_conf.clone()
    }

    /// `(active channels, calls processed)` from `core show channels count`.
    pub fn channel_counts(&self) -> (u64, u64) {
        let out = self.rx("core show channels count");
        let number = |needle: &str| {
            out.lines()
                .find(|l| l.contains(needle))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {needle:?} in `core show channels count`: {out}"))
        };
        // "1 active channel" / "2 active channels", "5 calls processed".
        (number("active channel"), number("processed"))
    }

    /// Starts a call without waiting: `channel originate Local/<local_exten> extension <target>`
    /// (`local_exten` and `target` are `exten@context`). The Local channel's `;2` side runs
    /// `local_exten`; once it answers, the `;1` side runs `target`.
    pub fn originate(&self, local_exten: &str, target: &str) {
        let out = self.rx(&format!(
            "channel originate Local/{local_exten} extension {target}"
        ));
        assert!(
            out.trim().is_empty(),
            "channel originate Local/{local_exten} extension {target}: {out}"
        );
    }

    /// Runs a call ([`Asterisk::originate`]) and waits until it has ended: the calls-processed
    /// counter moved past its value before the call and no channel is left. Panics (with the log)
    /// when that takes longer than `timeout`.
    pub fn call(&self, local_exten: &str, target: &str, timeout: Duration) {
        let (_, before) = self.channel_counts();
        self.originate(local_exten, target);
        let ended = self.wait_until(timeout, || {
            let (channels, processed) = self.channel_counts();
            processed > before && channels == 0
        });
        assert!(
            ended,
            "the call Local/{local_exten} -> {target} did not end within {timeout:?}\n{}\n{}",
            self.rx("core show channels"),
            self.logs()
        );
    }

    /// Hangs up every channel (`channel request hangup all`), e.g. once the log shows that a
    /// caller heard what it waited for.
    pub fn hangup_all(&self) {
        self.rx("channel request hangup all");
    }

    /// Waits until no channel is left; false after `timeout`.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.channel_counts().0 == 0)
    }

    /// Polls `cond` every 50 ms until it holds (true) or `timeout` passed (false).
    pub fn wait_until(&self, timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `path` exists; false after `timeout`.
    pub fn wait_for_file(&self, path: &Path, timeout: Duration) -> bool {
        self.wait_until(timeout, || path.exists())
    }

    /// Waits until the full log contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.log().contains(needle))
    }

    /// Stops Asterisk (also done on drop): `core stop now`, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.try_rx("core stop now");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Asterisk {
    fn drop(&mut self) {
        self.stop();
        // TEST_ASTERISK_KEEP=1 keeps the work directory (configuration, logs, spool) to look at.
        if std::env::var(KEEP_VAR).is_ok_and(|v| v == "1") {
            self.dir.disable_cleanup(true);
            eprintln!(
                "{KEEP_VAR}=1: Asterisk work dir kept at {}",
                self.dir.path().display()
            );
        }
    }
}

const SETPRIV: &str = "/usr/bin/setpriv";

/// Spawns `cmd` from one thread that lives as long as the test process, so the child's
/// `--pdeathsig` fires when the process ends, not when the spawning test thread (or a tokio
/// blocking thread) ends.
fn spawn(cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);
    let (reply_tx, reply_rx) = mpsc::channel();
    {
        let mut spawner = SPAWNER.lock().unwrap_or_else(|e| e.into_inner());
        let tx = spawner.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("asterisk-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .expect("spawner thread");
            tx
        });
        tx.send((cmd, reply_tx))
            .map_err(|_| std::io::Error::other("spawner thread gone"))?;
    }
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread gone"))?
}

fn symlink(target: &Path, link: &Path) -> Result<(), String> {
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| format!("symlink {} -> {}: {e}", link.display(), target.display()))
}

/// The driver library: Debian puts both under /usr/lib/<multiarch>/odbc/.
fn driver_path(odbc: Odbc) -> Result<PathBuf, String> {
    let mut dirs = vec![PathBuf::from("/usr/lib/odbc"), PathBuf::from("/usr/lib64")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        for e in entries.flatten() {
            dirs.push(e.path().join("odbc"));
        }
    }
    dirs.into_iter()
        .map(|d| d.join(odbc.driver_file()))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no {} (Debian {}) under /usr/lib/*/odbc",
                odbc.driver_file(),
                odbc.package()
            )
        })
}

/// The parts of an sqlx URL the DSN needs.
struct DbUrl {
    user: String,
    password: String,
    host: String,
    port: u16,
    database: String,
}

impl DbUrl {
    /// `scheme://[user[:password]@]host[:port]/database[?options]` (no percent-decoding).
    fn parse(url: &str) -> Result<DbUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("not a URL: {url}"))?;
        let default_port = match scheme {
            "postgres" | "postgresql" => 5432,
            "mysql" | "mariadb" => 3306,
            _ => return Err(format!("not a PostgreSQL or MySQL URL: {url}")),
        };
        let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
        let (authority, database) = rest
            .split_once('/')
            .ok_or_else(|| format!("no database in {url}"))?;
        let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port in {url}"))?),
            None => (hostport, default_port),
        };
        if database.is_empty() {
            return Err(format!("no database in {url}"));
        }
        Ok(DbUrl {
            user: if user.is_empty() { "root" } else { user }.to_owned(),
            password: password.to_owned(),
            host: host.to_owned(),
            port,
            database: database.to_owned(),
        })
    }
}

fn odbcinst_ini(odbc: Odbc, driver: &Path) -> String {
    format!(
        "[{}]\nDescription = {} (Debian {})\nDriver = {}\n",
        odbc.driver_name(),
        odbc.driver_name(),
        odbc.package(),
        driver.display()
    )
}

fn odbc_ini(odbc: Odbc, db: &DbUrl) -> String {
    let mut s = format!("[{DSN}]\nDriver = {}\n", odbc.driver_name());
    match odbc {
        Odbc::Postgres => {
            let _ = write!(
                s,
                "Servername = {}\nPort = {}\nDatabase = {}\nUsername = {}\nPassword = {}\n",
                db.host, db.port, db.database, db.user, db.password
            );
            // app_voicemail binds `recording` as SQL_LONGVARBINARY, which psqlODBC otherwise
            // sends as a large object: `ERROR: type "lo" does not exist`, no row stored.
            s.push_str("ByteaAsLongVarBinary = 1\n");
        }
        Odbc::MariaDb => {
            // Connector/ODBC takes "localhost" for the Unix socket; sqlx connects over TCP.
            let host = if db.host == "localhost" {
                "127.0.0.1"
            } else {
                &db.host
            };
            let _ = write!(
                s,
                "Server = {host}\nPort = {}\nDatabase = {}\nUser = {}\nPassword = {}\n",
                db.port, db.database, db.user, db.password
            );
            // No option needed: LONGBLOB goes in as SQL_LONGVARBINARY and comes back in 64 KiB
            // SQLGetData chunks with the driver's defaults.
        }
    }
    s
}

fn res_odbc_conf(odbc: Odbc, db: &DbUrl) -> String {
    let mut s = format!(
        "[{ODBC_CLASS}]\nenabled => yes\ndsn => {DSN}\nusername => {}\n",
        db.user
    );
    if !db.password.is_empty() {
        let _ = writeln!(s, "password => {}", db.password);
    }
    // Connect while loading, so start() can check the class is connected.
    s.push_str("pre-connect => yes\n");
    // unixODBC 2.3.11 (Debian 12) is safe with several connections; realtime lookups and
    // voicemail storage then do not queue behind each other.
    s.push_str("max_connections => 5\n");
    // A failed connection is retried after 1 s, not the default 300 s.
    s.push_str("negative_connection_cache => 1\n");
    s.push_str("connect_timeout => 5\n");
    // Counts queries for `odbc show`.
    s.push_str("logging => yes\n");
    // res_config_odbc escapes LIKE patterns with backslashes only where the server treats them as
    // escapes: MariaDB does, PostgreSQL (standard_conforming_strings) does not.
    let backslash = match odbc {
        Odbc::Postgres => "no",
        Odbc::MariaDb => "yes",
    };
    let _ = writeln!(s, "backslash_is_escape => {backslash}");
    s
}

fn asterisk_conf(w: &Path, prefix: &Path) -> String {
    let w = w.display();
    let p = prefix.display();
    format!(
        "[directories]
astcachedir => {w}/cache
astetcdir => {w}/etc
astmoddir => {p}/lib/asterisk/modules
astvarlibdir => {w}/lib
astdbdir => {w}/lib
astkeydir => {w}/keys
astdatadir => {w}/data
astagidir => {w}/agi
astspooldir => {w}/spool
astrundir => {w}/run
astlogdir => {w}/log
astsbindir => {p}/sbin

[options]
verbose = 3
debug = 0
documentation_language = en_US
defaultlanguage = en
hideconnect = yes
"
    )
}

fn modules_conf() -> String {
    let mut s = String::from("[modules]\nautoload = no\n");
    for m in REQUIRED_MODULES {
        let _ = writeln!(s, "require => {m}.so");
    }
    for m in OPTIONAL_MODULES {
        let _ = writeln!(s, "load => {m}.so");
    }
    s
}

const LOGGER_CONF: &str = "[general]
dateformat = %F %T.%3q

[logfiles]
full => notice,warning,error,verbose(3)
console => warning,error
";

const INDICATIONS_CONF: &str = "[general]
country = us

[us]
description = United States / North America
ringcadence = 2000,4000
dial = 350+440
busy = 480+620/500,0/500
ring = 440+480/2000,0/4000
congestion = 480+620/250,0/250
callwaiting = 440/300,0/10000
dialrecall = !350+440/100,!0/100,!350+440/100,!0/100,!350+440/100,!0/100,350+440
record = 1400/500,0/15000
info = !950/330,!1400/330,!1800/330,0
stutter = !350+440/100,!0/100,!350+440/100,!0/100,!350+440/100,!0/100,350+440
";

/// Configurations the core reads at start (all off or empty), so the log is free of "could not
/// load" noise.
const QUIET_CONFS: &[(&str, &str)] = &[
    ("cdr.conf", "[general]\nenable = no\n"),
    ("manager.conf", "[general]\nenabled = no\n"),
    ("cel.conf", "[general]\nenable = no\n"),
    ("features.conf", ""),
    ("ccss.conf", ""),
    ("acl.conf", ""),
    ("udptl.conf", ""),
    ("rtp.conf", ""),
];
