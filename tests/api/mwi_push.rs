//! MWI pushes to Asterisk: ARI against a real HTTP listener, AMI against a TCP listener speaking the
//! manager protocol, SIP NOTIFY answered by sipp (a real SIP peer) and by a bare UDP socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

use crate::common::receiver::Receiver;
use crate::common::{TestApp, assert_problem, audio};

const WAIT: Duration = Duration::from_secs(10);

async fn fast_app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.mwi.retry_base_ms = 100;
        c.mwi.retry_max_ms = 300;
    })
    .await
}

async fn add_target(app: &TestApp, body: Value) -> Value {
    let r = app
        .post("/v1/mwi-targets")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    v
}

fn query(r: &crate::common::receiver::Received) -> HashMap<String, String> {
    r.uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn ari_target_gets_put_mailboxes_with_counts_and_basic_auth() {
    let app = fast_app().await;
    let ari = Receiver::start().await;
    app.create_mailbox("1001@default", json!({})).await;
    let m = app
        .deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let target = add_target(
        &app,
        json!({"context": "default", "kind": "ari", "url": ari.url, "username": "voxmail", "secret": "ari-pw"}),
    )
    .await;
    assert_eq!(target["has_secret"], true);
    assert!(target.get("secret").is_none(), "the secret is write-only");

    // Adding the target pushes the current counts at once.
    let got = ari.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "PUT");
    assert_eq!(got[0].uri.path(), "/ari/mailboxes/1001@default");
    let q = query(&got[0]);
    assert_eq!(q["newMessages"], "1");
    assert_eq!(q["oldMessages"], "0");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("voxmail:ari-pw")
    );
    assert_eq!(got[0].headers["authorization"], expected.as_str());

    // Reading the message moves the lamp.
    let path = format!(
        "/v1/mailboxes/1001@default/messages/{}",
        m["id"].as_str().unwrap()
    );
    app.patch(&path)
        .json(&json!({"read": true}))
        .send()
        .await
        .unwrap();
    let got = ari.wait_for(2, WAIT).await;
    let q = query(&got[1]);
    assert_eq!(
        (q["newMessages"].as_str(), q["oldMessages"].as_str()),
        ("0", "1")
    );

    // The push is recorded right after the target answered.
    let pushes = all_in_sync(&app, &target, 1).await;
    assert_eq!(pushes[0]["mailbox"], "1001@default");
}

/// Waits until a socket of this machine is bound to 127.0.0.1:`port` (UDP) or listens there
/// (TCP), as the kernel lists them; probing by binding the port could take it from sipp.
async fn until_bound(port: u16, transport: &str) {
    let (table, listening) = match transport {
        "tcp" => ("/proc/net/tcp", Some("0A")),
        _ => ("/proc/net/udp", None),
    };
    let local = format!("0100007F:{port:04X}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let sockets = std::fs::read_to_string(table).unwrap();
        let bound = sockets.lines().skip(1).any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1) == Some(&local.as_str())
                && listening.is_none_or(|s| cols.get(3) == Some(&s))
        });
        if bound {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing bound to 127.0.0.1:{port}/{transport}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The target's push states once there are `n` and each is recorded as pushed (a push is
/// recorded after the target answered it, so none is in flight then).
async fn all_in_sync(app: &TestApp, target: &Value, n: usize) -> Vec<Value> {
    let path = format!("/v1/mwi-targets/{}/pushes", target["id"].as_str().unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pushes: Value = app.get(&path).send().await.unwrap().json().await.unwrap();
        let items = pushes["items"].as_array().unwrap();
        if items.len() == n && items.iter().all(|p| p["in_sync"] == true) {
            return items.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never in sync: {pushes}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_target_that_was_down_gets_the_latest_counts_once_it_answers() {
    let app = fast_app().await;
    let ari = Receiver::start().await;
    ari.fail_next(3);
    app.create_mailbox("1001@default", json!({})).await;
    add_target(
        &app,
        json!({"context": "default", "kind": "ari", "url": ari.url}),
    )
    .await;
    for _ in 0..3 {
        app.deposit_ok("1001@default", audio::raw_ulaw(0.2), "audio/PCMU")
            .await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = ari.received().await;
        if got.last().is_some_and(|r| query(r)["newMessages"] == "3") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never converged: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ari.seen() >= 4, "the failures were retried");
}

/// The (path, newMessages) pairs pushed after the first `skip` requests, sorted and deduplicated.
async fn pushed_after(ari: &Receiver, skip: usize, want: usize) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = ari.received().await;
        let mut seen: Vec<(String, String)> = got
            .iter()
            .skip(skip)
            .map(|r| (r.uri.path().to_owned(), query(r)["newMessages"].clone()))
            .collect();
        seen.sort();
        seen.dedup();
        if seen.len() >= want || tokio::time::Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn restart_resyncs_every_lamp() {
    let mut app = fast_app().await;
    let ari = Receiver::start().await;
    app.create_mailbox("1001@default", json!({})).await;
    app.create_mailbox("1002@default", json!({})).await;
    app.deposit_ok("1002@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let target = add_target(
        &app,
        json!({"context": "default", "kind": "ari", "url": ari.url}),
    )
    .await;
    let expected = vec![
        ("/ari/mailboxes/1001@default".to_owned(), "0".to_owned()),
        ("/ari/mailboxes/1002@default".to_owned(), "1".to_owned()),
    ];
    assert_eq!(pushed_after(&ari, 0, 2).await, expected);
    // No push is in flight before the restart.
    all_in_sync(&app, &target, 2).await;
    let before = ari.received().await.len();
    app.restart().await;
    assert_eq!(
        pushed_after(&ari, before, 2).await,
        expected,
        "both mailboxes pushed again after the restart"
    );
    all_in_sync(&app, &target, 2).await;
    // And on demand.
    let before = ari.received().await.len();
    let r = app
        .post("/v1/mwi/resync")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["queued"], 2);
    assert_eq!(pushed_after(&ari, before, 2).await, expected);
}

/// A TCP server speaking the Asterisk Manager protocol: banner, Login, MWIUpdate.
struct AmiServer {
    addr: String,
    logins: Arc<Mutex<usize>>,
    updates: Arc<Mutex<Vec<HashMap<String, String>>>>,
    /// Close the connection after this many MWIUpdates (to test reconnection).
    close_after: Arc<Mutex<Option<usize>>>,
}

impl AmiServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let logins = Arc::new(Mutex::new(0));
        let updates = Arc::new(Mutex::new(Vec::new()));
        let close_after = Arc::new(Mutex::new(None));
        let (l, u, c) = (logins.clone(), updates.clone(), close_after.clone());
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                let (l, u, c) = (l.clone(), u.clone(), c.clone());
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut r = BufReader::new(r);
                    w.write_all(b"Asterisk Call Manager/7.0.3\r\n")
                        .await
                        .unwrap();
                    let mut block: HashMap<String, String> = HashMap::new();
                    let mut handled = 0;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if !line.is_empty() {
                            if let Some((k, v)) = line.split_once(':') {
                                block.insert(k.trim().to_owned(), v.trim().to_owned());
                            }
                            continue;
                        }
                        let id = block.get("ActionID").cloned().unwrap_or_default();
                        let ok = match block.get("Action").map(String::as_str) {
                            Some("Login") => {
                                let good = block.get("Username").map(String::as_str) == Some("mgr")
                                    && block.get("Secret").map(String::as_str) == Some("mgr-pw");
                                if good {
                                    *l.lock().await += 1;
                                }
                                good
                            }
                            Some("MWIUpdate") => {
                                u.lock().await.push(block.clone());
                                handled += 1;
                                true
                            }
                            _ => false,
                        };
                        // An unsolicited event first: the client must skip it.
                        w.write_all(b"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n")
                            .await
                            .unwrap();
                        let resp = if ok {
                            format!("Response: Success\r\nActionID: {id}\r\nMessage: ok\r\n\r\n")
                        } else {
                            format!("Response: Error\r\nActionID: {id}\r\nMessage: denied\r\n\r\n")
                        };
                        w.write_all(resp.as_bytes()).await.unwrap();
                        block.clear();
                        if c.lock().await.is_some_and(|n| handled >= n) {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            logins,
            updates,
            close_after,
        }
    }

    async fn wait_updates(&self, n: usize) -> Vec<HashMap<String, String>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let u = self.updates.lock().await.clone();
            if u.len() >= n || tokio::time::Instant::now() >= deadline {
                return u;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn ami_target_logs_in_once_and_sends_mwiupdate_reconnecting_when_dropped() {
    let app = fast_app().await;
    let ami = AmiServer::start().await;
    app.create_mailbox("1001@default", json!({})).await;
    add_target(
        &app,
        json!({"context": "default", "kind": "ami", "url": ami.addr, "username": "mgr", "secret": "mgr-pw"}),
    )
    .await;
    let u = ami.wait_updates(1).await;
    assert_eq!(u[0]["Mailbox"], "1001@default");
    assert_eq!(
        (u[0]["NewMessages"].as_str(), u[0]["OldMessages"].as_str()),
        ("0", "0")
    );
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let u = ami.wait_updates(2).await;
    assert_eq!(u[1]["NewMessages"], "1");
    assert_eq!(*ami.logins.lock().await, 1, "one login, connection kept");

    // Asterisk drops the connection: the next push logs in again.
    *ami.close_after.lock().await = Some(1);
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let u = ami.wait_updates(3).await;
    assert_eq!(u[2]["NewMessages"], "2");
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let u = ami.wait_updates(4).await;
    assert_eq!(u.len(), 4);
    assert_eq!(u[3]["NewMessages"], "3");
    assert!(*ami.logins.lock().await >= 2);
}

fn sipp_scenario(voice_message: &str) -> String {
    let vm = voice_message.replace('(', "\\(").replace(')', "\\)");
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="voxmail MWI NOTIFY UAS">
  <recv request="NOTIFY" crlf="true">
    <action>
      <ereg regexp="message-summary" search_in="hdr" header="Event:" check_it="true" assign_to="ev"/>
      <ereg regexp="application/simple-message-summary" search_in="hdr" header="Content-Type:" check_it="true" assign_to="ct"/>
      <ereg regexp="sip:1001@127.0.0.1" search_in="hdr" header="To:" check_it="true" assign_to="to"/>
      <ereg regexp="Messages-Waiting: yes" search_in="body" check_it="true" assign_to="mw"/>
      <ereg regexp="Message-Account: sip:1001@default" search_in="body" check_it="true" assign_to="acct"/>
      <ereg regexp="Voice-Message: {vm}" search_in="body" check_it="true" assign_to="vm"/>
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <Reference variables="ev,ct,to,mw,acct,vm"/>
</scenario>
"#
    )
}

fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let t = std::net::TcpListener::bind(("127.0.0.1", s.local_addr().unwrap().port()));
    match t {
        Ok(t) => t.local_addr().unwrap().port(),
        Err(_) => free_port(),
    }
}

/// sipp from Debian's sip-tester; CI installs it, so there it must exist.
fn sipp_available() -> bool {
    let found = std::process::Command::new("sipp")
        .arg("-v")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "sipp is not installed but CI is set: .ci/run must install sip-tester"
        );
        eprintln!(
            "SKIPPED: sipp (Debian package sip-tester) is not installed; SIP NOTIFY is untested here"
        );
    }
    found
}

async fn sip_notify_is_accepted_by_sipp(transport: &str) {
    if !sipp_available() {
        return;
    }
    let app = fast_app().await;
    app.create_mailbox("1001@default", json!({})).await;
    app.deposit_ok("1001@default", audio::raw_ulaw(0.5), "audio/PCMU")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let scen = dir.path().join("uas.xml");
    std::fs::write(&scen, sipp_scenario("1/0 (0/0)")).unwrap();
    let port = free_port();
    let mut cmd = tokio::process::Command::new("sipp");
    cmd.arg("-sf")
        .arg(&scen)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1"])
        .args([
            "-timeout",
            "20s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if transport == "tcp" {
        cmd.args(["-t", "t1"]);
    }
    let child = cmd.spawn().expect("start sipp");
    until_bound(port, transport).await;
    add_target(
        &app,
        json!({"context": "default", "kind": "sip", "mailbox": "1001",
               "url": format!("sip:1001@127.0.0.1:{port};transport={transport}")}),
    )
    .await;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("sipp finished")
        .unwrap();
    let errors = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        out.status.success(),
        "sipp rejected the NOTIFY ({:?}): {}\n{errors}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn sip_notify_over_udp_is_accepted_by_a_real_sip_peer() {
    sip_notify_is_accepted_by_sipp("udp").await;
}

#[tokio::test]
async fn sip_notify_over_tcp_is_accepted_by_a_real_sip_peer() {
    sip_notify_is_accepted_by_sipp("tcp").await;
}

#[tokio::test]
async fn sip_notify_over_udp_is_retransmitted_until_answered() {
    let app = fast_app().await;
    app.create_mailbox("1001@default", json!({})).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    add_target(
        &app,
        json!({"context": "default", "kind": "sip", "url": format!("sip:pbx@127.0.0.1:{port}")}),
    )
    .await;
    let mut buf = vec![0u8; 8192];
    // Ignore the first transmission; answer the retransmission.
    let (n1, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n1]).into_owned();
    assert!(first.starts_with("NOTIFY sip:pbx@127.0.0.1:"), "{first}");
    let started = tokio::time::Instant::now();
    let (n2, from) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let second = String::from_utf8_lossy(&buf[..n2]).into_owned();
    assert_eq!(first, second, "a retransmission is the same request");
    assert!(started.elapsed() >= Duration::from_millis(400), "after T1");
    let header = |name: &str| {
        second
            .lines()
            .find(|l| {
                l.to_ascii_lowercase()
                    .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            })
            .unwrap()
            .to_owned()
    };
    let resp = format!(
        "SIP/2.0 200 OK\r\n{}\r\n{}\r\n{};tag=x\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
        header("Via"),
        header("From"),
        header("To"),
        header("Call-ID"),
        header("CSeq")
    );
    sock.send_to(resp.as_bytes(), from).await.unwrap();
    assert!(second.contains("Voice-Message: 0/0 (0/0)\r\n"));
    assert!(second.contains("Messages-Waiting: no\r\n"));
    // Answered: no more retransmissions of that request for 1.5 s (past its next timer). Another
    // NOTIFY (a later push of the same counts, which a slow machine may deliver now) is not one.
    let quiet_until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(got) = tokio::time::timeout_at(quiet_until, sock.recv_from(&mut buf)).await {
        let (n, _) = got.unwrap();
        let again = String::from_utf8_lossy(&buf[..n]);
        assert_ne!(again, second, "retransmission stopped after the 200");
    }
}

#[tokio::test]
async fn targets_are_validated_and_scoped() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@alpha", json!({})).await;
    app.create_context("beta").await;
    for bad in [
        json!({"context": "alpha", "kind": "fax", "url": "x"}),
        json!({"context": "alpha", "kind": "ari", "url": "pbx1:8088"}),
        json!({"context": "alpha", "kind": "ami", "url": "http://pbx1:5038"}),
        json!({"context": "alpha", "kind": "sip", "url": "pbx1"}),
    ] {
        let r = app.post("/v1/mwi-targets").json(&bad).send().await.unwrap();
        assert_problem(r, 400, "invalid-request").await;
    }
    let vm = app.services().await;
    let alpha = vm
        .create_api_key("a", voxmail::domain::Role::Admin, Some("alpha"))
        .await
        .unwrap()
        .token;
    let beta_target = add_target(
        &app,
        json!({"context": "beta", "kind": "ami", "url": "127.0.0.1:1"}),
    )
    .await;
    let r = app
        .client
        .get(app.url(&format!(
            "/v1/mwi-targets/{}",
            beta_target["id"].as_str().unwrap()
        )))
        .bearer_auth(&alpha)
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
    let list: Value = app
        .client
        .get(app.url("/v1/mwi-targets"))
        .bearer_auth(&alpha)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let r = app
        .delete(&format!(
            "/v1/mwi-targets/{}",
            beta_target["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn mwi_resync_command_queues_pushes_that_the_running_server_sends() {
    let app = fast_app().await;
    let ari = Receiver::start().await;
    app.create_mailbox("1001@default", json!({})).await;
    add_target(
        &app,
        json!({"context": "default", "kind": "ari", "url": ari.url}),
    )
    .await;
    // The new target gets the mailbox's counts; when the mailbox's own
    // creation event is dispatched after the target exists, it may get them
    // twice, which is harmless. Wait until it is quiet before the resync.
    assert!(!ari.wait_for(1, WAIT).await.is_empty());
    let settled = ari.settle(Duration::from_millis(500)).await;
    assert!(
        settled
            .iter()
            .all(|r| r.uri.path() == "/ari/mailboxes/1001@default"),
        "only 1001@default was pushed"
    );
    let before = settled.len();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxmail"))
        .arg("--data-dir")
        .arg(app.data_dir())
        .arg("--database-url")
        .arg(app.config.database_url())
        .args(["mwi", "resync", "--context", "default"])
        .env_remove("VOXMAIL_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("queued 1 MWI pushes"));
    let got = ari.wait_for(before + 1, WAIT).await;
    assert_eq!(
        got.len(),
        before + 1,
        "the server sent the resync another process queued"
    );
    assert_eq!(got[before].uri.path(), "/ari/mailboxes/1001@default");
}
