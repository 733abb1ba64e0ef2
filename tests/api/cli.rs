//! The real `voxmail` binary: admin commands on a data directory, then `serve` on the same data,
//! configuration precedence, and graceful shutdown on SIGTERM/SIGINT.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::serve::{self, ServeProcess, free_port};
use crate::common::{assert_problem, audio};
use crate::helpers;

/// How long a test waits for the server to act.
const WAIT: Duration = Duration::from_secs(10);

/// A scratch area: `cwd` is where the commands run (so a stray `./data` or `./voxmail.toml` would
/// show), `data` the data directory given with `--data-dir` (not created beforehand).
struct Scratch {
    _dir: tempfile::TempDir,
    cwd: PathBuf,
    data: PathBuf,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let data = dir.path().join("data-dir");
    Scratch {
        cwd,
        data,
        _dir: dir,
    }
}

/// The binary (no `VOXMAIL_*` inherited), run in `cwd`.
fn voxmail(cwd: &Path) -> Command {
    let mut c = serve::voxmail();
    c.current_dir(cwd);
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run voxmail")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs and asserts success; returns stdout.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): stdout {} stderr {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs and asserts failure; returns stderr.
fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} should fail: stdout {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

/// Waits until `server` answers `/healthz` on `port`; panics with its log otherwise.
async fn healthy(server: &mut ServeProcess, port: u16) {
    let url = format!("http://127.0.0.1:{port}/healthz");
    if let Err(e) = server.wait_ok(&url, Duration::from_secs(20)).await {
        panic!("{e}: {}", server.log());
    }
}

fn serve(cwd: &Path, data: &Path, port: u16, log: PathBuf) -> ServeProcess {
    let mut cmd = voxmail(cwd);
    cmd.args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    ServeProcess::spawn(cmd, &log)
}

#[test]
fn config_print_default_prints_the_commented_example() {
    let s = scratch();
    let out = ok(voxmail(&s.cwd).args(["config", "print-default"]));
    for section in ["[database]", "[http]", "[pin]"] {
        assert!(out.contains(section), "{section} in {out}");
    }
    assert!(out.contains("listen = \"127.0.0.1:8080\""), "{out}");
    assert!(out.lines().any(|l| l.starts_with('#')), "commented");
    assert!(!s.cwd.join("data").exists(), "printing touches no data");
}

#[test]
fn admin_commands_work_on_the_data_dir_with_options_before_or_after_the_subcommand() {
    let s = scratch();
    let d = s.data.to_str().unwrap();
    let out = ok(voxmail(&s.cwd).args(["--data-dir", d, "context", "create", "default"]));
    assert!(out.contains("default"), "{out}");
    assert!(
        s.data.join("voxmail.db").exists(),
        "the database is in the data dir"
    );
    assert!(!s.cwd.join("data").exists(), "nothing under ./data");

    let err = fails(voxmail(&s.cwd).args(["context", "create", "default", "--data-dir", d]));
    assert!(err.contains("default"), "duplicate context: {err}");

    let out = ok(voxmail(&s.cwd).args([
        "mailbox",
        "create",
        "1001@default",
        "--name",
        "Alice",
        "--email",
        "a@example.com",
        "--pin",
        "1234",
        "--data-dir",
        d,
    ]));
    assert!(out.contains("1001@default"), "{out}");
    ok(voxmail(&s.cwd).args(["--data-dir", d, "context", "create", "other"]));
    ok(voxmail(&s.cwd).args(["--data-dir", d, "mailbox", "create", "2001@other"]));

    for args in [
        vec!["mailbox", "list", "--context", "default", "--data-dir", d],
        vec!["--data-dir", d, "mailbox", "list", "--context", "default"],
    ] {
        let out = ok(voxmail(&s.cwd).args(&args));
        assert!(
            out.lines()
                .any(|l| l == "1001@default\tAlice\ta@example.com"),
            "{args:?}: {out}"
        );
        assert!(!out.contains("2001@other"), "filtered by context: {out}");
    }
    let out = ok(voxmail(&s.cwd).args(["mailbox", "list", "--data-dir", d]));
    assert!(
        out.contains("1001@default") && out.contains("2001@other"),
        "{out}"
    );

    for bad in [
        vec!["mailbox", "create", "1001", "--data-dir", d],
        vec!["mailbox", "create", "1001@nowhere", "--data-dir", d],
        vec!["mailbox", "create", "1001@default", "--data-dir", d],
        vec![
            "mailbox",
            "create",
            "1002@default",
            "--pin",
            "12ab",
            "--data-dir",
            d,
        ],
        vec!["context", "create", "bad name", "--data-dir", d],
    ] {
        fails(voxmail(&s.cwd).args(&bad));
    }
    let out = ok(voxmail(&s.cwd).args(["mailbox", "list", "--data-dir", d]));
    assert_eq!(
        out.lines().count(),
        2,
        "no mailbox was added by a failure: {out}"
    );
}

#[test]
fn apikey_create_prints_the_token_once_and_list_and_revoke_manage_it() {
    let s = scratch();
    let d = s.data.to_str().unwrap();
    ok(voxmail(&s.cwd).args(["--data-dir", d, "context", "create", "default"]));
    let out = run(voxmail(&s.cwd).args([
        "apikey",
        "create",
        "--name",
        "pbx-1",
        "--role",
        "pbx",
        "--context",
        "default",
        "--data-dir",
        d,
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let token = stdout.trim();
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout is only the token: {stdout:?}"
    );
    assert!(token.starts_with("vxm_"), "{token}");
    assert!(token.len() >= 40, "a long random token: {token}");

    let out2 = ok(voxmail(&s.cwd).args([
        "apikey",
        "create",
        "--name",
        "admin-1",
        "--role",
        "admin",
        "--data-dir",
        d,
    ]));
    let token2 = out2.trim().to_owned();
    assert_ne!(token, token2);

    let list = ok(voxmail(&s.cwd).args(["apikey", "list", "--data-dir", d]));
    assert!(!list.contains(token), "the token is never listed: {list}");
    assert!(!list.contains(&token2), "the token is never listed: {list}");
    let line = list
        .lines()
        .find(|l| l.contains("pbx-1"))
        .unwrap_or_else(|| panic!("pbx-1 listed: {list}"));
    let prefix = &token[..12];
    assert!(line.contains(prefix), "{line}");
    assert!(line.contains("pbx") && line.contains("default"), "{line}");
    assert!(line.contains("active"), "{line}");
    // Only a hash is stored: the token is nowhere in the database file.
    let db = std::fs::read(s.data.join("voxmail.db")).unwrap();
    let wal = std::fs::read(s.data.join("voxmail.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token is stored in clear"
        );
    }

    let out = ok(voxmail(&s.cwd).args(["apikey", "revoke", prefix, "--data-dir", d]));
    assert!(out.contains("pbx-1"), "{out}");
    let list = ok(voxmail(&s.cwd).args(["apikey", "list", "--data-dir", d]));
    let pbx = list.lines().find(|l| l.contains("pbx-1")).unwrap();
    assert!(pbx.contains("revoked"), "{list}");
    let admin = list.lines().find(|l| l.contains("admin-1")).unwrap();
    assert!(admin.contains("active"), "{list}");

    fails(voxmail(&s.cwd).args(["apikey", "revoke", prefix, "--data-dir", d]));
    fails(voxmail(&s.cwd).args(["apikey", "revoke", "vxm_nothing", "--data-dir", d]));
}

#[test]
fn apikey_create_with_an_invalid_role_or_context_fails_and_creates_nothing() {
    let s = scratch();
    let d = s.data.to_str().unwrap();
    ok(voxmail(&s.cwd).args(["--data-dir", d, "context", "create", "default"]));
    for args in [
        vec![
            "apikey",
            "create",
            "--name",
            "n",
            "--role",
            "root",
            "--data-dir",
            d,
        ],
        vec![
            "apikey",
            "create",
            "--name",
            "n",
            "--role",
            "",
            "--data-dir",
            d,
        ],
        vec!["apikey", "create", "--name", "n", "--data-dir", d],
        vec![
            "apikey",
            "create",
            "--name",
            "n",
            "--role",
            "pbx",
            "--context",
            "nowhere",
            "--data-dir",
            d,
        ],
    ] {
        let out = run(voxmail(&s.cwd).args(&args));
        assert!(!out.status.success(), "{args:?}");
        assert!(
            !text(&out.stdout).contains("vxm_"),
            "no token printed for {args:?}"
        );
    }
    let list = ok(voxmail(&s.cwd).args(["apikey", "list", "--data-dir", d]));
    assert_eq!(list.lines().count(), 1, "only the header: {list}");
}

#[test]
fn a_missing_config_file_is_an_error() {
    let s = scratch();
    let err = fails(voxmail(&s.cwd).args(["--config", "no-such.toml", "mailbox", "list"]));
    assert!(err.contains("no-such.toml"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_with_the_cli_token_and_stops_cleanly_on_sigterm() {
    let s = scratch();
    let d = s.data.to_str().unwrap();
    ok(voxmail(&s.cwd).args(["context", "create", "default", "--data-dir", d]));
    ok(voxmail(&s.cwd).args([
        "mailbox",
        "create",
        "1001@default",
        "--name",
        "Alice",
        "--email",
        "a@example.com",
        "--pin",
        "1234",
        "--data-dir",
        d,
    ]));
    let token = ok(voxmail(&s.cwd).args([
        "apikey",
        "create",
        "--name",
        "pbx",
        "--role",
        "pbx",
        "--context",
        "default",
        "--data-dir",
        d,
    ]))
    .trim()
    .to_owned();

    let port = free_port();
    let mut server = serve(&s.cwd, &s.data, port, s.data.join("serve.log"));
    healthy(&mut server, port).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let r = client
        .get(format!("{base}/v1/mailboxes/1001@default"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["fullname"], "Alice");
    assert_eq!(m["email"], "a@example.com");
    assert_eq!(m["has_pin"], true);

    // The PIN the CLI set is the one the API checks.
    let r = client
        .post(format!("{base}/v1/mailboxes/1001@default/pin/verify"))
        .bearer_auth(&token)
        .json(&json!({"pin": "1234"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // A key revoked by the CLI while the server runs stops working.
    let other = ok(voxmail(&s.cwd).args([
        "apikey",
        "create",
        "--name",
        "temp",
        "--role",
        "pbx",
        "--data-dir",
        d,
    ]))
    .trim()
    .to_owned();
    let url = format!("{base}/v1/mailboxes/1001@default");
    let r = client.get(&url).bearer_auth(&other).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    ok(voxmail(&s.cwd).args(["apikey", "revoke", &other[..12], "--data-dir", d]));
    let r = client.get(&url).bearer_auth(&other).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;

    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit {status}: {}", server.log());
    assert!(
        client
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_err(),
        "nothing listens after shutdown"
    );
    assert!(!s.cwd.join("data").exists(), "nothing under ./data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_deposit_finish() {
    let s = scratch();
    let d = s.data.to_str().unwrap();
    ok(voxmail(&s.cwd).args(["context", "create", "default", "--data-dir", d]));
    ok(voxmail(&s.cwd).args(["mailbox", "create", "1001@default", "--data-dir", d]));
    let token = ok(voxmail(&s.cwd).args([
        "apikey",
        "create",
        "--name",
        "pbx",
        "--role",
        "pbx",
        "--data-dir",
        d,
    ]))
    .trim()
    .to_owned();
    let port = free_port();
    let mut server = serve(&s.cwd, &s.data, port, s.data.join("serve.log"));
    healthy(&mut server, port).await;

    let wav = audio::wav_ulaw(2.0);
    let (first, rest) = wav.split_at(wav.len() / 2);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let url = format!("http://127.0.0.1:{port}/v1/mailboxes/1001@default/messages");
    let req = reqwest::Client::new()
        .post(url)
        .bearer_auth(&token)
        .header("content-type", "audio/wav")
        .header("content-length", wav.len().to_string())
        .body(body)
        .send();
    let pending = tokio::spawn(req);
    tx.send(Ok(first.to_vec())).await.unwrap();
    // The upload is in flight once its file is open in the store's tmp/.
    let tmp = s.data.join("audio").join("tmp");
    helpers::until_within("the upload's .part file", WAIT, async || {
        std::fs::read_dir(&tmp).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "part"))
        })
    })
    .await;

    server.signal("TERM");
    helpers::until_within("the server to take the signal", WAIT, async || {
        server.log().contains("shutdown signal received")
    })
    .await;
    // Draining: the rest of the body is still taken, and the deposit answered and stored.
    tx.send(Ok(rest.to_vec())).await.unwrap();
    drop(tx);
    let r = pending.await.unwrap().expect("the deposit gets an answer");
    assert_eq!(r.status(), StatusCode::CREATED);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["audio"]["sha256"], audio::sha256_hex(&wav));

    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit {status}: {}", server.log());

    // It was really stored: a new server on the same data serves the same bytes.
    let port = free_port();
    let mut server = serve(&s.cwd, &s.data, port, s.data.join("serve2.log"));
    healthy(&mut server, port).await;
    let r = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{port}/v1/mailboxes/1001@default/messages/{}/audio",
            m["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), wav);
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "exit on SIGINT {status}: {}",
        server.log()
    );
}

/// A `Stream` over an mpsc receiver (without pulling in tokio-stream).
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_comes_from_the_file_then_env_then_the_flag() {
    let s = scratch();
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let config = s.cwd.join("custom.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{file_port}\"\n",
            s.data.display()
        ),
    )
    .unwrap();

    async fn answers(port: u16) -> bool {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok()
    }

    // The file alone.
    let mut cmd = voxmail(&s.cwd);
    cmd.args(["serve", "--config"]).arg(&config);
    let mut server = ServeProcess::spawn(cmd, &s.cwd.join("1.log"));
    healthy(&mut server, file_port).await;
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).await.success());

    // The environment wins over the file.
    let mut cmd = voxmail(&s.cwd);
    cmd.args(["serve", "--config"])
        .arg(&config)
        .env("VOXMAIL_HTTP__LISTEN", format!("127.0.0.1:{env_port}"));
    let mut server = ServeProcess::spawn(cmd, &s.cwd.join("2.log"));
    healthy(&mut server, env_port).await;
    assert!(!answers(file_port).await, "the file's port is not bound");
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).await.success());

    // The flag wins over the environment (and the file).
    let mut cmd = voxmail(&s.cwd);
    cmd.args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{flag_port}")])
        .env("VOXMAIL_HTTP__LISTEN", format!("127.0.0.1:{env_port}"));
    let mut server = ServeProcess::spawn(cmd, &s.cwd.join("3.log"));
    healthy(&mut server, flag_port).await;
    assert!(!answers(env_port).await, "the env's port is not bound");
    assert!(!answers(file_port).await, "the file's port is not bound");
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).await.success());
}

#[test]
fn data_dir_comes_from_the_env_unless_the_flag_is_given() {
    let s = scratch();
    let env_dir = s.cwd.join("from-env");
    let flag_dir = s.cwd.join("from-flag");
    ok(voxmail(&s.cwd)
        .env("VOXMAIL_DATA_DIR", &env_dir)
        .args(["context", "create", "envctx"]));
    assert!(env_dir.join("voxmail.db").exists());
    ok(voxmail(&s.cwd)
        .env("VOXMAIL_DATA_DIR", &env_dir)
        .args(["context", "create", "flagctx", "--data-dir"])
        .arg(&flag_dir));
    assert!(flag_dir.join("voxmail.db").exists());
    let in_flag = ok(voxmail(&s.cwd)
        .args(["context", "list", "--data-dir"])
        .arg(&flag_dir));
    assert!(
        in_flag.contains("flagctx") && !in_flag.contains("envctx"),
        "{in_flag}"
    );
    let in_env = ok(voxmail(&s.cwd)
        .env("VOXMAIL_DATA_DIR", &env_dir)
        .args(["context", "list"]));
    assert!(
        in_env.contains("envctx") && !in_env.contains("flagctx"),
        "{in_env}"
    );
    assert!(
        !s.cwd.join("data").exists(),
        "the default ./data is not used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_nothing_configured_keeps_its_data_under_dot_data_in_wal_mode() {
    let s = scratch();
    let port = free_port();
    let mut cmd = voxmail(&s.cwd);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    let mut server = ServeProcess::spawn(cmd, &s.cwd.join("serve.log"));
    healthy(&mut server, port).await;
    let r = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let data = s.cwd.join("data");
    assert!(data.join("voxmail.db").is_file(), "./data/voxmail.db");
    assert!(
        data.join("voxmail.db-wal").is_file(),
        "SQLite runs in WAL mode"
    );
    assert!(data.join("audio").is_dir(), "./data/audio");
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).await.success());

    // The admin commands find the same database with nothing configured either.
    ok(voxmail(&s.cwd).args(["context", "create", "default"]));
    let out = ok(voxmail(&s.cwd).args(["context", "list"]));
    assert!(out.contains("default"), "{out}");
}

/// True when `tool` runs; in CI (`CI` set) a missing tool fails the test instead.
fn have(tool: &str) -> bool {
    if Command::new(tool).arg("-version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{tool} is required in CI (apt-get install ffmpeg)"
    );
    eprintln!("skipped: {tool} is not installed");
    false
}

/// `codec,rate,channels` of the first stream, as ffprobe reads it.
fn ffprobe_stream(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .args(["stream=codec_name,sample_rate,channels", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe reads {}", path.display());
    text(&out.stdout).trim().to_owned()
}

/// Seconds of audio ffmpeg decodes from `path` (at 48 kHz, so Opus pre-skip is trimmed).
fn decoded_secs(path: &Path) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg decodes {}: {}",
        path.display(),
        text(&out.stderr)
    );
    out.stdout.len() as f64 / 2.0 / 48000.0
}

#[test]
fn transcode_writes_renditions_that_ffmpeg_reads_at_the_source_duration() {
    if !have("ffprobe") || !have("ffmpeg") {
        return;
    }
    let s = scratch();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    // Every source below holds the same 25,005 samples at 8 kHz.
    let source_secs = 25_005.0 / 8000.0;

    // The format comes from the extension, or from --format; headerless input from its extension.
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("hello-ulaw.wav", "a.opus", &[], "opus,48000,1"),
        (
            "hello-ulaw.wav",
            "b.ogg",
            &["--bitrate", "24000"],
            "opus,48000,1",
        ),
        ("hello.ulaw", "c.wav", &[], "pcm_s16le,8000,1"),
        (
            "hello-ulaw.wav",
            "d.bin",
            &["--format", "wav", "--rate", "16000"],
            "pcm_s16le,16000,1",
        ),
        (
            "hello-pcm16.wav",
            "e.wav",
            &["-f", "wav-alaw"],
            "pcm_alaw,8000,1",
        ),
    ];
    for (input, output, flags, stream) in cases {
        let out = s.cwd.join(output);
        let stdout = ok(voxmail(&s.cwd)
            .arg("transcode")
            .arg(fixtures.join(input))
            .arg(&out)
            .args(*flags));
        assert!(stdout.is_empty(), "nothing on stdout: {stdout}");
        assert_eq!(
            ffprobe_stream(&out),
            *stream,
            "{input} -> {output} {flags:?}"
        );
        let secs = decoded_secs(&out);
        assert!(
            (secs - source_secs).abs() <= 0.020,
            "{output}: {secs} s decoded, the source has {source_secs} s"
        );
    }
    // Same rendition code as the HTTP endpoint: µ-law to µ-law WAV copies the coded bytes.
    let w = s.cwd.join("same.wav");
    ok(voxmail(&s.cwd)
        .arg("transcode")
        .arg(fixtures.join("hello.ulaw"))
        .arg(&w)
        .args(["--format", "wav-ulaw"]));
    let bytes = std::fs::read(&w).unwrap();
    let ulaw = std::fs::read(fixtures.join("hello.ulaw")).unwrap();
    let data = bytes.windows(4).position(|c| c == b"data").unwrap() + 8;
    assert_eq!(
        &bytes[data..data + ulaw.len()],
        &ulaw[..],
        "the µ-law bytes are copied"
    );
    assert!(!s.cwd.join("data").exists(), "no data directory is made");
}

#[test]
fn transcode_refuses_bad_input_with_one_line_and_exit_code_2() {
    let s = scratch();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let out = s.cwd.join("out.opus");
    let cases: &[(PathBuf, &[&str], &str)] = &[
        (fixtures.join("garbage.bin"), &[], "garbage.bin"),
        (fixtures.join("truncated.wav"), &[], "truncated"),
        (s.cwd.join("missing.wav"), &[], "cannot read"),
        (
            fixtures.join("hello-ulaw.wav"),
            &["--format", "mp4"],
            "--format",
        ),
        (
            fixtures.join("hello-ulaw.wav"),
            &["--bitrate", "17"],
            "bitrate",
        ),
        (fixtures.join("hello-ulaw.wav"), &["--rate", "8000"], "rate"),
        (
            fixtures.join("hello-ulaw.wav"),
            &["--content-type", "text/plain"],
            "text/plain",
        ),
    ];
    for (input, flags, says) in cases {
        let r = run(voxmail(&s.cwd)
            .arg("transcode")
            .arg(input)
            .arg(&out)
            .args(*flags));
        let err = text(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{input:?} {flags:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(says), "{says:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "no output for {input:?} {flags:?}");
    }
    // An output whose extension names no format needs --format.
    let r = run(voxmail(&s.cwd)
        .arg("transcode")
        .arg(fixtures.join("hello-ulaw.wav"))
        .arg(s.cwd.join("out.xyz")));
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r.stderr).contains("--format"), "{}", text(&r.stderr));
}

#[test]
fn audio_gc_removes_an_old_orphan_file_and_keeps_young_ones() {
    let s = scratch();
    let d = s.data.to_str().unwrap();
    ok(voxmail(&s.cwd).args(["--data-dir", d, "context", "create", "default"]));
    let audio = s.data.join("audio").join("messages").join("0190abcd-mb");
    std::fs::create_dir_all(&audio).unwrap();
    let old = audio.join("0190abcd-0000-7000-8000-000000000001.audio");
    let young = audio.join("0190abcd-0000-7000-8000-000000000002.audio");
    std::fs::write(&old, b"RIFF lost").unwrap();
    std::fs::write(&young, b"RIFF lost too").unwrap();
    // Both are younger than the 2 s grace period; then only `old` ages past it (`young` is
    // rewritten just before each pass).
    let out = ok(voxmail(&s.cwd)
        .env("VOXMAIL_AUDIO__ORPHAN_GRACE_SECS", "2")
        .args(["--data-dir", d, "audio", "gc", "--dry-run"]));
    assert!(out.contains("would remove 0"), "{out}");
    std::thread::sleep(Duration::from_millis(2100));
    std::fs::write(&young, b"RIFF lost, rewritten").unwrap();
    let out = ok(voxmail(&s.cwd)
        .env("VOXMAIL_AUDIO__ORPHAN_GRACE_SECS", "2")
        .args(["--data-dir", d, "audio", "gc", "--dry-run"]));
    assert!(out.contains("would remove 1 (9 bytes)"), "{out}");
    assert!(old.exists());
    std::fs::write(&young, b"RIFF lost, again").unwrap();
    let out = ok(voxmail(&s.cwd)
        .env("VOXMAIL_AUDIO__ORPHAN_GRACE_SECS", "2")
        .args(["--data-dir", d, "audio", "gc"]));
    assert!(out.contains("removed 1 (9 bytes)"), "{out}");
    assert!(!old.exists());
    assert!(young.exists(), "younger than the grace period");

    let err = fails(
        voxmail(&s.cwd)
            .env("VOXMAIL_AUDIO__ORPHAN_GRACE_SECS", "0")
            .args(["--data-dir", d, "audio", "gc"]),
    );
    assert!(err.contains("collector is off"), "{err}");
}

/// What the default log of `serve` says about routine refusals: a full mailbox (507) and
/// refused uploads (413/415/422) are INFO lines naming the mailbox and the problem, never
/// WARN or ERROR; dependencies' routine INFO (symphonia opening an Ogg stream) stays out, while
/// voxmail's own INFO lines stay in.
#[tokio::test]
async fn routine_refusals_are_info_lines_and_dependencies_stay_quiet() {
    let s = scratch();
    let d = s.data.to_str().unwrap();
    ok(voxmail(&s.cwd).args(["--data-dir", d, "context", "create", "default"]));
    ok(voxmail(&s.cwd).args(["--data-dir", d, "mailbox", "create", "1001@default"]));
    let token = ok(voxmail(&s.cwd).args([
        "--data-dir",
        d,
        "apikey",
        "create",
        "--name",
        "t",
        "--role",
        "admin",
    ]));
    let token = token.trim().to_owned();
    let port = free_port();
    let log = s.cwd.join("serve.log");
    let mut server = serve(&s.cwd, &s.data, port, log);
    healthy(&mut server, port).await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/v1/mailboxes/1001@default");
    let r = client
        .patch(&base)
        .bearer_auth(&token)
        .json(&json!({"maxmsg": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let deposit = |body: Vec<u8>, ct: &'static str| {
        client
            .post(format!("{base}/messages"))
            .bearer_auth(&token)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let r = deposit(crate::common::fixture("hello.ogg"), "audio/ogg")
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "Ogg Vorbis through symphonia"
    );
    let r = deposit(audio::wav_ulaw(0.5), "audio/wav").await.unwrap();
    assert_problem(r, 507, "mailbox-full").await;
    let r = deposit(
        crate::common::fixture("garbage.bin"),
        "application/octet-stream",
    )
    .await
    .unwrap();
    assert_problem(r, 415, "unsupported-audio").await;
    let r = deposit(crate::common::fixture("truncated.wav"), "audio/wav")
        .await
        .unwrap();
    assert_problem(r, 422, "corrupt-audio").await;

    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(30)).await.success());
    let log = server.log();
    for bad in [" WARN ", " ERROR "] {
        assert!(!log.contains(bad), "no {bad:?} line in {log}");
    }
    assert!(
        !log.contains("physical stream"),
        "symphonia's INFO is filtered: {log}"
    );
    assert!(
        log.contains("voxmail listening"),
        "voxmail's own INFO stays: {log}"
    );
    let line = |problem: &str| {
        log.lines()
            .find(|l| l.contains(&format!("problem=\"{problem}\"")))
            .unwrap_or_else(|| panic!("a line for {problem} in {log}"))
            .to_owned()
    };
    assert!(line("mailbox-full").contains(" INFO "));
    for problem in ["unsupported-audio", "corrupt-audio"] {
        let l = line(problem);
        assert!(
            l.contains(" INFO ") && l.contains("deposit refused") && l.contains("1001@default"),
            "{l}"
        );
    }
}

/// A data directory this process cannot write (owned by another user) stops `serve` at once
/// with one error naming the path, its owner and mode and the process's uid — not a "readonly
/// database" on every write. As root (CI) the binary runs as another uid through setpriv.
#[test]
fn a_data_dir_owned_by_another_user_fails_at_start_naming_path_owner_and_uid() {
    use std::os::unix::fs::PermissionsExt;
    let s = scratch();
    let d = s.data.to_str().unwrap();
    ok(voxmail(&s.cwd).args(["--data-dir", d, "context", "create", "default"]));
    let root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").unwrap().uid() == 0
    };
    let (mut cmd, uid, owner, mode) = if root {
        // The scratch area must be reachable by the other uid; only the data dir is not its own.
        for p in [s.data.parent().unwrap(), s.cwd.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let st = Command::new("chown")
            .args(["-R", "65534:65534", d])
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::set_permissions(&s.data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65533", "--regid=65533", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_voxmail"))
            .current_dir(&s.cwd)
            .env_remove("RUST_LOG");
        (c, "65533".to_owned(), "65534", "0755")
    } else {
        std::fs::set_permissions(&s.data, std::fs::Permissions::from_mode(0o555)).unwrap();
        let uid = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").unwrap().uid()
        };
        (voxmail(&s.cwd), uid.to_string(), "", "0555")
    };
    let port = free_port().to_string();
    let out = run(cmd
        .args(["serve", "--data-dir", d, "--listen"])
        .arg(format!("127.0.0.1:{port}")));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "serve must not start: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("cannot write"))
        .unwrap_or_else(|| panic!("one clear error: {err}"));
    assert!(line.contains(d), "names the path: {line}");
    assert!(
        line.contains(&format!("mode {mode}")),
        "names the mode: {line}"
    );
    assert!(
        line.contains(&format!("owner uid {owner}")),
        "names the owner: {line}"
    );
    assert!(
        line.contains(&format!("runs as uid {uid}")),
        "names our uid: {line}"
    );
    assert!(!err.contains("readonly database"), "{err}");
    if root {
        let st = Command::new("chown")
            .args(["-R", "0:0", d])
            .status()
            .unwrap();
        assert!(st.success(), "the scratch area can be removed");
    }
}
