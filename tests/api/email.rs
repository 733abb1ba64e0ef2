//! Voicemail-to-email against a real SMTP server (aiosmtpd, in clear, with STARTTLS or implicit
//! TLS, with or without AUTH), read back with Python's `email` package and ffmpeg.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use voxmail::config::{Config, SmtpTls};

use crate::common::smtp::{ServerTls, SmtpOptions, SmtpServer, TestCa, audio_duration};
use crate::common::{TestApp, audio};
use crate::helpers::{self, get_message, id_of};

const WAIT: Duration = Duration::from_secs(20);

async fn app_for(smtp: &SmtpServer) -> TestApp {
    app_with(smtp, |_| {}).await
}

/// A server sending to `smtp` (fast retries), after `tweak` adjusts the configuration.
async fn app_with(smtp: &SmtpServer, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let port = smtp.port;
    TestApp::spawn_with(move |c| {
        c.email.host = "127.0.0.1".into();
        c.email.port = port;
        c.email.timeout_secs = 5;
        c.email.retry_base_ms = 100;
        c.email.retry_max_ms = 400;
        c.email.serveremail = "vm@pbx.example.org".into();
        tweak(c);
    })
    .await
}

/// A text part's content; lines end in CRLF in a mail, as RFC 5322 wants.
fn text(part: &Value) -> String {
    part["text"].as_str().unwrap().replace("\r\n", "\n")
}

/// Polls a message until its email state satisfies `done`.
async fn wait_email(
    app: &TestApp,
    address: &str,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let m = get_message(app, address, id).await;
        if done(&m["email"]) || start.elapsed() > WAIT {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn email_arrives_rendered_from_asterisk_templates_with_a_playable_attachment() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let app = app_for(&smtp).await;
    app.create_context("sales").await;
    let r = app
        .put("/v1/contexts/sales/email")
        .json(&json!({
            "fromstring": "Voicemail of ${VM_NAME}",
            "emailsubject": "VM ${VM_MSGNUM} for ${VM_MAILBOX}@${VM_CONTEXT} from ${VM_CALLERID} ${VM_TYPO}",
            "emailbody": "Dear ${VM_NAME}:\\n\\tyou have a ${VM_DUR} long message (number ${VM_MSGNUM}) from ${VM_CIDNAME} <${VM_CIDNUM}>, on ${VM_DATE} [${VM_CATEGORY}]",
            "emaildateformat": "%Y-%m-%d %H:%M"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let saved: Value = r.json().await.unwrap();
    assert_eq!(saved["unknown_variables"], json!(["VM_TYPO"]));
    let got = helpers::get_json(&app, "/v1/contexts/sales/email").await;
    assert_eq!(got["emaildateformat"], "%Y-%m-%d %H:%M");
    let bad = app
        .put("/v1/contexts/sales/email")
        .json(&json!({"emailbody": "Dear ${VM_NAME"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "an unclosed ${{ is refused on save");

    app.create_mailbox(
        "1001@sales",
        json!({"fullname": "Alice Example", "email": "alice@example.org|boss@example.org",
               "attach": true, "attachfmt": "wav", "tz": "Europe/Paris"}),
    )
    .await;
    let r = app
        .deposit(
            "1001@sales",
            audio::wav_ulaw(2.0),
            "audio/wav",
            "?caller_id_num=5551234&caller_id_name=Bob%20Caller&orig_time=1709305445&category=sales",
        )
        .await;
    assert_eq!(r.status(), 201);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["email"]["status"], "pending", "queued with the deposit");

    let mails = smtp.wait_for(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    let mut rcpts = mails[0].rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["alice@example.org", "boss@example.org"]);
    assert_eq!(mails[0].mail_from, "vm@pbx.example.org");
    let p = smtp.parse(&mails[0]);
    assert_eq!(p["defects"], json!([]), "well-formed MIME: {p}");
    let h = &p["headers"];
    assert_eq!(
        h["subject"],
        "VM 1 for 1001@sales from \"Bob Caller\" <5551234> ${VM_TYPO}"
    );
    assert_eq!(h["from"], "Voicemail of Alice Example <vm@pbx.example.org>");
    assert!(h["to"].as_str().unwrap().contains("alice@example.org"));
    assert!(h["to"].as_str().unwrap().contains("boss@example.org"));
    assert!(
        h["date"].as_str().unwrap().ends_with("+0100"),
        "Date in the mailbox zone: {h}"
    );
    assert!(
        h["message-id"]
            .as_str()
            .unwrap()
            .starts_with("<Asterisk-1-")
    );
    assert_eq!(h["x-asterisk-vm-message-num"], "1");
    assert_eq!(h["x-asterisk-vm-context"], "sales");
    assert_eq!(h["x-asterisk-vm-extension"], "1001");
    assert_eq!(h["x-asterisk-vm-caller-id-num"], "5551234");
    assert_eq!(h["x-asterisk-vm-caller-id-name"], "Bob Caller");
    assert_eq!(h["x-asterisk-vm-duration"], "2");
    assert_eq!(h["x-asterisk-vm-orig-time"], "1709305445");
    assert_eq!(h["x-asterisk-vm-message-id"], m["msg_id"]);
    assert_eq!(h["mime-version"], "1.0");
    assert_eq!(p["content_type"], "multipart/mixed");
    let parts = p["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert_eq!(
        text(&parts[0]).trim_end(),
        "Dear Alice Example:\n\tyou have a 0:02 long message (number 1) from Bob Caller <5551234>, \
         on 2024-03-01 16:04 [sales]"
    );
    assert_eq!(parts[1]["content_type"], "audio/x-wav");
    assert_eq!(parts[1]["filename"], "msg0000.wav");
    assert_eq!(parts[1]["disposition"], "attachment");
    assert_eq!(parts[1]["description"], "Voicemail sound attachment.");
    let secs = audio_duration(std::path::Path::new(parts[1]["path"].as_str().unwrap()));
    assert!((secs - 2.0).abs() < 0.05, "attachment lasts {secs} s");

    let m = wait_email(&app, "1001@sales", &id_of(&m), |e| e["status"] == "sent").await;
    assert_eq!(m["email"]["status"], "sent");
    assert_eq!(m["email"]["attempts"], 1);
    let list = helpers::get_json(&app, "/v1/mailboxes/1001@sales/messages").await;
    assert_eq!(list["items"][0]["email"]["status"], "sent");
}

#[tokio::test]
async fn defaults_are_asterisks_and_the_pager_notice_has_no_attachment() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let app = app_for(&smtp).await;
    app.create_mailbox(
        "1002@default",
        json!({"fullname": "Carol", "email": "carol@example.org", "pager": "carol-sms@example.org",
               "attach": true, "tz": "UTC"}),
    )
    .await;
    app.deposit(
        "1002@default",
        audio::raw_ulaw(65.0),
        "audio/PCMU",
        "?caller_id_num=200&urgent=true&orig_time=1709305445",
    )
    .await;
    let mails = smtp.wait_for(2, WAIT).await;
    assert_eq!(mails.len(), 2);
    let (email, pager) = if mails[0].rcpt_tos[0] == "carol@example.org" {
        (&mails[0], &mails[1])
    } else {
        (&mails[1], &mails[0])
    };
    let e = smtp.parse(email);
    assert_eq!(e["defects"], json!([]));
    assert_eq!(
        e["headers"]["subject"],
        "[PBX]: New Urgent message 1 in mailbox 1002"
    );
    assert_eq!(e["headers"]["from"], "Asterisk PBX <vm@pbx.example.org>");
    assert_eq!(e["headers"]["x-asterisk-vm-flag"], "Urgent");
    let body = text(&e["parts"][0]);
    assert_eq!(
        body,
        "Dear Carol:\n\n\tJust wanted to let you know you were just left a 1:05 long message \
         (number 1)\nin mailbox 1002 from 200, on Friday, March 01, 2024 at 03:04:05 PM so you \
         might\nwant to check it when you get a chance.  Thanks!\n\n\t\t\t\t--Asterisk\n\n"
    );
    assert_eq!(e["parts"][1]["filename"], "msg0000.wav");
    let secs = audio_duration(std::path::Path::new(
        e["parts"][1]["path"].as_str().unwrap(),
    ));
    assert!(
        (secs - 65.0).abs() < 0.05,
        "G.711 decoded to {secs} s of PCM"
    );

    let pg = smtp.parse(pager);
    assert_eq!(pg["defects"], json!([]));
    assert_eq!(
        pg["content_type"], "text/plain",
        "a pager notice is one text part"
    );
    assert_eq!(pg["parts"].as_array().unwrap().len(), 1);
    assert_eq!(pg["headers"]["subject"], "New Urgent VM");
    assert_eq!(
        text(&pg["parts"][0]).trim_end(),
        "New 1:05 long Urgent msg in box 1002\nfrom 200, on Friday, March 01, 2024 at 03:04:05 PM"
    );
}

#[tokio::test]
async fn deletevoicemail_deletes_only_after_the_server_accepted_the_mail() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    smtp.refuse_with(Some(451));
    let app = app_for(&smtp).await;
    app.create_mailbox(
        "1003@default",
        json!({"email": "dave@example.org", "deletevoicemail": true}),
    )
    .await;
    let m = app
        .deposit_ok("1003@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let id = id_of(&m);
    let seen = wait_email(&app, "1003@default", &id, |e| {
        e["attempts"].as_i64() >= Some(2)
    })
    .await;
    assert_eq!(seen["email"]["status"], "pending");
    assert!(
        seen["email"]["last_error"]
            .as_str()
            .unwrap()
            .contains("451")
    );
    assert_eq!(
        app.mwi("1003@default").await["new"],
        1,
        "kept while the mail is refused"
    );

    smtp.refuse_with(None);
    assert_eq!(smtp.wait_for(1, WAIT).await.len(), 1);
    let start = Instant::now();
    loop {
        let r = app
            .get(&format!("/v1/mailboxes/1003@default/messages/{id}"))
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "message deleted after the mail was accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.mwi("1003@default").await["new"], 0, "and MWI changed");
}

#[tokio::test]
async fn twenty_mails_queued_while_the_server_is_down_arrive_once_each() {
    let Some(mut smtp) = SmtpServer::start().await else {
        return;
    };
    smtp.down().await;
    let app = app_for(&smtp).await;
    app.create_mailbox("1004@default", json!({"email": "erin@example.org"}))
        .await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(id_of(
            &app.deposit_ok("1004@default", audio::wav_ulaw(0.5), "audio/wav")
                .await,
        ));
    }
    let m = wait_email(&app, "1004@default", &ids[19], |e| {
        e["attempts"].as_i64() >= Some(1)
    })
    .await;
    assert_eq!(
        m["email"]["status"], "pending",
        "connection refused is transient"
    );

    smtp.up().await;
    let mails = smtp.wait_for(20, WAIT).await;
    assert_eq!(mails.len(), 20);
    // Once every job is recorded as sent, no try of any of them is left to arrive.
    for id in &ids {
        let m = wait_email(&app, "1004@default", id, |e| e["status"] == "sent").await;
        assert_eq!(m["email"]["status"], "sent");
    }
    let mails = smtp.mails();
    assert_eq!(mails.len(), 20, "none twice");
    let msg_ids: HashSet<String> = mails
        .iter()
        .map(|m| {
            smtp.parse(m)["headers"]["x-asterisk-vm-message-id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(msg_ids.len(), 20, "one mail per message");
}

#[tokio::test]
async fn a_permanent_550_marks_the_email_failed_with_the_reason() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    smtp.refuse_with(Some(550));
    let app = app_for(&smtp).await;
    app.create_mailbox(
        "1005@default",
        json!({"email": "nobody@example.org", "deletevoicemail": true}),
    )
    .await;
    let m = app
        .deposit_ok("1005@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let m = wait_email(&app, "1005@default", &id_of(&m), |e| {
        e["status"] == "failed"
    })
    .await;
    assert_eq!(m["email"]["status"], "failed");
    assert_eq!(m["email"]["attempts"], 1, "not retried");
    let err = m["email"]["last_error"].as_str().unwrap();
    assert!(err.contains("550") && err.contains("User unknown"), "{err}");
    assert_eq!(
        app.mwi("1005@default").await["new"],
        1,
        "not deleted: never accepted"
    );
}

#[tokio::test]
async fn a_restart_in_the_middle_of_retries_loses_nothing() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    smtp.refuse_with(Some(451));
    let mut app = app_for(&smtp).await;
    app.create_mailbox("1006@default", json!({"email": "frank@example.org"}))
        .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(id_of(
            &app.deposit_ok("1006@default", audio::wav_ulaw(0.5), "audio/wav")
                .await,
        ));
    }
    for id in &ids {
        wait_email(&app, "1006@default", id, |e| {
            e["attempts"].as_i64() >= Some(1)
        })
        .await;
    }
    app.stop().await;
    smtp.refuse_with(None);
    app.restart().await;
    let mails = smtp.wait_for(3, WAIT).await;
    assert_eq!(mails.len(), 3);
    for id in &ids {
        let m = wait_email(&app, "1006@default", id, |e| e["status"] == "sent").await;
        assert_eq!(m["email"]["status"], "sent");
    }
    assert_eq!(smtp.mails().len(), 3, "none twice");
}

/// Deposits a short message into a mailbox with `email`, waits for its mail and returns it with
/// the message's final email state.
async fn deposit_and_wait(
    app: &TestApp,
    smtp: &SmtpServer,
    address: &str,
) -> (crate::common::smtp::Mail, Value) {
    let m = app
        .deposit_ok(address, audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let mails = smtp.wait_for(1, WAIT).await;
    assert_eq!(mails.len(), 1, "one mail arrives");
    let m = wait_email(app, address, &id_of(&m), |e| e["status"] == "sent").await;
    assert_eq!(m["email"]["status"], "sent", "{m}");
    (mails[0].clone(), m)
}

#[tokio::test]
async fn starttls_with_a_private_ca_and_auth_plain_sends_encrypted_and_authenticated() {
    let ca = TestCa::new();
    let Some(smtp) = SmtpServer::start_with(SmtpOptions {
        tls: Some((ServerTls::Starttls, &ca)),
        auth: Some(("vm", "s3cret pass")),
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let app = app_with(&smtp, |c| {
        c.email.tls = SmtpTls::Starttls;
        c.email.tls_ca_file = ca.ca_pem();
        c.email.username = "vm".into();
        c.email.password = "s3cret pass".into();
    })
    .await;
    app.create_mailbox(
        "1101@default",
        json!({"email": "gina@example.org", "attach": true}),
    )
    .await;
    let (mail, _) = deposit_and_wait(&app, &smtp, "1101@default").await;
    assert!(
        mail.tls.as_deref().is_some_and(|v| v.starts_with("TLSv1.")),
        "sent after STARTTLS: {mail:?}"
    );
    assert_eq!(mail.auth_user.as_deref(), Some("vm"));
    assert_eq!(mail.auth_mechanism.as_deref(), Some("PLAIN"));
    let p = smtp.parse(&mail);
    assert_eq!(p["defects"], json!([]));
    assert_eq!(p["parts"][1]["filename"], "msg0000.wav");
}

#[tokio::test]
async fn implicit_tls_with_auth_login_sends_encrypted_and_authenticated() {
    let ca = TestCa::new();
    let Some(smtp) = SmtpServer::start_with(SmtpOptions {
        tls: Some((ServerTls::Implicit, &ca)),
        auth: Some(("vm", "s3cret")),
        auth_mechanisms: Some("LOGIN"),
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let app = app_with(&smtp, |c| {
        c.email.tls = SmtpTls::Implicit;
        c.email.tls_ca_file = ca.ca_pem();
        c.email.username = "vm".into();
        c.email.password = "s3cret".into();
    })
    .await;
    app.create_mailbox("1102@default", json!({"email": "hal@example.org"}))
        .await;
    let (mail, _) = deposit_and_wait(&app, &smtp, "1102@default").await;
    assert!(mail.tls.is_some(), "SMTPS: {mail:?}");
    assert_eq!(mail.auth_user.as_deref(), Some("vm"));
    assert_eq!(mail.auth_mechanism.as_deref(), Some("LOGIN"));
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_unless_invalid_certs_are_accepted() {
    let ca = TestCa::new();
    let Some(smtp) = SmtpServer::start_with(SmtpOptions {
        tls: Some((ServerTls::Starttls, &ca)),
        ..Default::default()
    })
    .await
    else {
        return;
    };
    // Public roots only: the private CA is unknown.
    let mut app = app_with(&smtp, |c| c.email.tls = SmtpTls::Starttls).await;
    app.create_mailbox("1103@default", json!({"email": "ivy@example.org"}))
        .await;
    let m = app
        .deposit_ok("1103@default", audio::wav_ulaw(0.5), "audio/wav")
        .await;
    let id = id_of(&m);
    let m = wait_email(&app, "1103@default", &id, |e| {
        e["attempts"].as_i64() >= Some(2)
    })
    .await;
    assert_eq!(m["email"]["status"], "pending", "retried: fixable settings");
    let err = m["email"]["last_error"].as_str().unwrap();
    assert!(err.contains("TLS") && err.contains("certificate"), "{err}");
    assert!(smtp.mails().is_empty(), "nothing sent in clear instead");

    app.stop().await;
    app.config.email.tls_accept_invalid_certs = true;
    app.restart().await;
    let mails = smtp.wait_for(1, WAIT).await;
    assert_eq!(mails.len(), 1, "the queued mail goes out after the change");
    assert!(mails[0].tls.is_some());
    let m = wait_email(&app, "1103@default", &id, |e| e["status"] == "sent").await;
    assert_eq!(m["email"]["status"], "sent");
}

#[tokio::test]
async fn starttls_is_never_skipped_when_the_server_does_not_offer_it() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let app = app_with(&smtp, |c| c.email.tls = SmtpTls::Starttls).await;
    app.create_mailbox("1104@default", json!({"email": "jay@example.org"}))
        .await;
    let m = app
        .deposit_ok("1104@default", audio::wav_ulaw(0.5), "audio/wav")
        .await;
    let m = wait_email(&app, "1104@default", &id_of(&m), |e| {
        e["attempts"].as_i64() >= Some(2)
    })
    .await;
    assert_eq!(m["email"]["status"], "pending");
    let err = m["email"]["last_error"].as_str().unwrap();
    assert!(err.contains("STARTTLS"), "{err}");
    assert!(smtp.mails().is_empty(), "never sent in clear");
}

#[tokio::test]
async fn a_refused_login_keeps_mail_pending_until_the_password_is_fixed() {
    let ca = TestCa::new();
    let Some(smtp) = SmtpServer::start_with(SmtpOptions {
        tls: Some((ServerTls::Starttls, &ca)),
        auth: Some(("vm", "right")),
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let mut app = app_with(&smtp, |c| {
        c.email.tls = SmtpTls::Starttls;
        c.email.tls_ca_file = ca.ca_pem();
        c.email.username = "vm".into();
        c.email.password = "wrong".into();
    })
    .await;
    app.create_mailbox("1105@default", json!({"email": "kim@example.org"}))
        .await;
    let m = app
        .deposit_ok("1105@default", audio::wav_ulaw(0.5), "audio/wav")
        .await;
    let id = id_of(&m);
    let m = wait_email(&app, "1105@default", &id, |e| {
        e["attempts"].as_i64() >= Some(2)
    })
    .await;
    assert_eq!(m["email"]["status"], "pending", "{m}");
    let err = m["email"]["last_error"].as_str().unwrap();
    assert!(
        err.contains("535") && err.contains("email.password"),
        "the reason names the fix: {err}"
    );
    assert!(!err.contains("wrong"), "the password is never shown: {err}");
    assert!(smtp.mails().is_empty());

    app.stop().await;
    app.config.email.password = "right".into();
    app.restart().await;
    assert_eq!(
        smtp.wait_for(1, WAIT).await.len(),
        1,
        "the backlog goes out"
    );
    let m = wait_email(&app, "1105@default", &id, |e| e["status"] == "sent").await;
    assert_eq!(m["email"]["status"], "sent");
}

#[tokio::test]
async fn retries_that_run_out_fail_the_email_with_the_last_reason() {
    let ca = TestCa::new();
    let Some(smtp) = SmtpServer::start_with(SmtpOptions {
        tls: Some((ServerTls::Implicit, &ca)),
        auth: Some(("vm", "right")),
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let app = app_with(&smtp, |c| {
        c.email.tls = SmtpTls::Implicit;
        c.email.tls_ca_file = ca.ca_pem();
        c.email.username = "vm".into();
        c.email.password = "wrong".into();
        c.email.max_age_secs = 1;
    })
    .await;
    app.create_mailbox("1106@default", json!({"email": "lou@example.org"}))
        .await;
    let m = app
        .deposit_ok("1106@default", audio::wav_ulaw(0.5), "audio/wav")
        .await;
    let m = wait_email(&app, "1106@default", &id_of(&m), |e| {
        e["status"] == "failed"
    })
    .await;
    assert_eq!(m["email"]["status"], "failed", "{m}");
    let err = m["email"]["last_error"].as_str().unwrap();
    assert!(
        err.contains("gave up after") && err.contains("535"),
        "{err}"
    );
}

#[tokio::test]
async fn smtp_auth_in_clear_goes_only_to_a_loopback_relay() {
    let Some(smtp) = SmtpServer::start_with(SmtpOptions {
        auth: Some(("vm", "local")),
        auth_in_clear: true,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let app = app_with(&smtp, |c| {
        c.email.username = "vm".into();
        c.email.password = "local".into();
    })
    .await;
    app.create_mailbox("1107@default", json!({"email": "max@example.org"}))
        .await;
    let (mail, _) = deposit_and_wait(&app, &smtp, "1107@default").await;
    assert_eq!(mail.tls, None);
    assert_eq!(mail.auth_user.as_deref(), Some("vm"));

    // The same settings towards a remote relay would send the password in clear: refused at start.
    let mut remote = app.config.clone();
    remote.email.host = "smtp.example.org".into();
    let vm = voxmail::app::build(remote).await.expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = match voxmail::app::start(vm, listener).await {
        Ok(r) => {
            r.shutdown();
            r.wait().await;
            panic!("started with AUTH in clear to a remote host");
        }
        Err(e) => e.to_string(),
    };
    assert!(err.contains("in clear"), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_the_email_is_retried() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts connections and says nothing.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let app = TestApp::spawn_with(move |c| {
        c.email.host = "127.0.0.1".into();
        c.email.port = port;
        c.email.timeout_secs = 1;
        c.email.retry_base_ms = 100;
        c.email.retry_max_ms = 400;
        c.email.serveremail = "vm@pbx.example.org".into();
    })
    .await;
    app.create_mailbox("1108@default", json!({"email": "ned@example.org"}))
        .await;
    let m = app
        .deposit_ok("1108@default", audio::wav_ulaw(0.5), "audio/wav")
        .await;
    let m = wait_email(&app, "1108@default", &id_of(&m), |e| {
        e["attempts"].as_i64() >= Some(2)
    })
    .await;
    assert_eq!(
        m["email"]["status"], "pending",
        "a timeout is transient: {m}"
    );
    let err = m["email"]["last_error"].as_str().unwrap().to_lowercase();
    assert!(
        err.contains("timed out") || err.contains("timeout"),
        "{err}"
    );
    silent.abort();
}

#[tokio::test]
async fn a_forwarded_message_is_mailed_with_the_forwarder_and_the_original_caller() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let app = app_for(&smtp).await;
    app.create_context("fwd").await;
    let r = app
        .put("/v1/contexts/fwd/email")
        .json(&json!({
            "emailsubject": "VM ${VM_MSGNUM} für ${VM_NAME}: ${ORIG_VM_CIDNAME} <${ORIG_VM_CIDNUM}> via ${VM_CIDNUM}",
            "emailbody": "from ${VM_CALLERID} on ${VM_DATE}\\noriginally ${ORIG_VM_CALLERID} (${ORIG_VM_CIDNAME}/${ORIG_VM_CIDNUM}) on ${ORIG_VM_DATE}",
            "emaildateformat": "%Y-%m-%d %H:%M"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let saved: Value = r.json().await.unwrap();
    assert_eq!(saved["unknown_variables"], json!([]));
    app.create_mailbox("2001@default", json!({"fullname": "Bob Forwarder"}))
        .await;
    app.create_mailbox(
        "2002@fwd",
        json!({"fullname": "Zoë Ünal", "email": "zoe@example.org", "attach": true, "tz": "UTC"}),
    )
    .await;
    app.create_mailbox(
        "2003@default",
        json!({"fullname": "Yan", "email": "yan@example.org", "tz": "UTC"}),
    )
    .await;
    let src: Value = app
        .deposit(
            "2001@default",
            audio::wav_ulaw(2.0),
            "audio/wav",
            "?caller_id_num=5551234&caller_id_name=Carol%20Caller&orig_time=1709305445",
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(smtp.mails().is_empty(), "the source mailbox has no email");
    let r = app
        .post(&format!(
            "/v1/mailboxes/2001@default/messages/{}/forward",
            id_of(&src)
        ))
        .json(&json!({"to": ["2002@fwd", "2003@default"], "keep": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let copies: Value = r.json().await.unwrap();
    let forwarded_at = chrono::Utc::now();
    let mails = smtp.wait_for(2, WAIT).await;
    assert_eq!(mails.len(), 2, "every target with an email is notified");
    let by_rcpt = |to: &str| {
        let m = mails.iter().find(|m| m.rcpt_tos == [to]).unwrap();
        smtp.parse(m)
    };

    let z = by_rcpt("zoe@example.org");
    assert_eq!(z["defects"], json!([]));
    assert_eq!(
        z["headers"]["subject"], "VM 1 für Zoë Ünal: Carol Caller <5551234> via 2001",
        "UTF-8 survives the subject"
    );
    assert!(z["headers"]["to"].as_str().unwrap().contains("Zoë Ünal"));
    let body = text(&z["parts"][0]);
    let (first, second) = body.trim_end().split_once('\n').unwrap();
    let date = first
        .strip_prefix("from \"Bob Forwarder\" <2001> on ")
        .unwrap_or_else(|| panic!("VM_* name the forwarder: {first}"));
    let then = chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%d %H:%M").unwrap();
    let lag = (forwarded_at.naive_utc() - then).num_seconds();
    assert!(
        (0..=120).contains(&lag),
        "VM_DATE is the forward's time: {date}"
    );
    assert_eq!(
        second,
        "originally \"Carol Caller\" <5551234> (Carol Caller/5551234) on 2024-03-01 15:04"
    );
    assert_eq!(z["headers"]["x-asterisk-vm-orig-date"], "2024-03-01 15:04");
    assert_eq!(z["parts"][1]["filename"], "msg0000.wav");
    let secs = audio_duration(std::path::Path::new(
        z["parts"][1]["path"].as_str().unwrap(),
    ));
    assert!((secs - 2.0).abs() < 0.05, "the copy's recording: {secs} s");

    let y = by_rcpt("yan@example.org");
    let body = text(&y["parts"][0]);
    assert!(
        body.contains("you were just forwarded a 0:02 long message (number 1)\nin mailbox 2003 from Bob Forwarder, on "),
        "Asterisk's forwarded body: {body}"
    );
    assert!(
        body.contains("(originally sent by \"Carol Caller\" <5551234> on Friday, March 01, 2024 at 03:04:05 PM)"),
        "{body}"
    );
    for c in copies["items"].as_array().unwrap() {
        let address = c["mailbox"].as_str().unwrap();
        let m = wait_email(&app, address, &id_of(c), |e| e["status"] == "sent").await;
        assert_eq!(m["email"]["status"], "sent", "{address}");
    }

    // A message left directly: ORIG_VM_* are its own caller and time, as in Asterisk.
    app.deposit(
        "2002@fwd",
        audio::wav_ulaw(1.0),
        "audio/wav",
        "?caller_id_num=777&caller_id_name=Dan&orig_time=1709305445",
    )
    .await;
    let mails = smtp.wait_for(3, WAIT).await;
    let direct = smtp.parse(&mails[2]);
    assert_eq!(
        direct["headers"]["subject"],
        "VM 2 für Zoë Ünal: Dan <777> via 777"
    );
    assert_eq!(
        text(&direct["parts"][0]).trim_end(),
        "from \"Dan\" <777> on 2024-03-01 15:04\noriginally \"Dan\" <777> (Dan/777) on 2024-03-01 15:04"
    );
}

#[tokio::test]
async fn pagerfromstring_and_pagerdateformat_shape_the_pager_notice_only() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let app = app_with(&smtp, |c| {
        c.email.pagerfromstring = "Pager of ${VM_NAME}".into();
        c.email.pagerdateformat = "%H:%M".into();
    })
    .await;
    app.create_context("night").await;
    let bad = app
        .put("/v1/contexts/night/email")
        .json(&json!({"pagerdateformat": "%Q"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "an invalid pagerdateformat is refused");
    let r = app
        .put("/v1/contexts/night/email")
        .json(&json!({"pagerdateformat": "%d/%m %Hh", "pagerfromstring": "Night desk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = helpers::get_json(&app, "/v1/contexts/night/email").await;
    assert_eq!(got["pagerdateformat"], "%d/%m %Hh");
    assert_eq!(got["pagerfromstring"], "Night desk");
    app.create_mailbox(
        "3001@default",
        json!({"fullname": "Ann", "email": "ann@example.org", "pager": "ann-sms@example.org", "tz": "UTC"}),
    )
    .await;
    app.create_mailbox(
        "3002@night",
        json!({"fullname": "Ben", "pager": "ben-sms@example.org", "tz": "UTC"}),
    )
    .await;
    for address in ["3001@default", "3002@night"] {
        app.deposit(
            address,
            audio::wav_ulaw(1.0),
            "audio/wav",
            "?caller_id_num=200&orig_time=1709305445",
        )
        .await;
    }
    let mails = smtp.wait_for(3, WAIT).await;
    assert_eq!(mails.len(), 3);
    let by_rcpt = |to: &str| smtp.parse(mails.iter().find(|m| m.rcpt_tos == [to]).unwrap());
    let ann_pager = by_rcpt("ann-sms@example.org");
    assert_eq!(
        ann_pager["headers"]["from"],
        "Pager of Ann <vm@pbx.example.org>"
    );
    assert_eq!(
        text(&ann_pager["parts"][0]).trim_end(),
        "New 0:01 long  msg in box 3001\nfrom 200, on 15:04"
    );
    let ann_email = by_rcpt("ann@example.org");
    assert_eq!(
        ann_email["headers"]["from"], "Asterisk PBX <vm@pbx.example.org>",
        "emails keep fromstring"
    );
    assert!(
        text(&ann_email["parts"][0]).contains("on Friday, March 01, 2024 at 03:04:05 PM"),
        "emails keep emaildateformat"
    );
    let ben = by_rcpt("ben-sms@example.org");
    assert_eq!(ben["headers"]["from"], "Night desk <vm@pbx.example.org>");
    assert_eq!(
        text(&ben["parts"][0]).trim_end(),
        "New 0:01 long  msg in box 3002\nfrom 200, on 01/03 15h"
    );
}

#[tokio::test]
async fn finished_email_jobs_are_removed_after_keep_finished_secs() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    smtp.refuse_with(Some(451));
    let app = app_with(&smtp, |c| c.email.keep_finished_secs = 1).await;
    app.create_mailbox("4001@default", json!({"email": "olga@example.org"}))
        .await;
    let m = app
        .deposit_ok("4001@default", audio::wav_ulaw(0.5), "audio/wav")
        .await;
    let id = id_of(&m);
    wait_email(&app, "4001@default", &id, |e| {
        e["attempts"].as_i64() >= Some(1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let m = get_message(&app, "4001@default", &id).await;
    assert_eq!(
        m["email"]["status"], "pending",
        "a pending job is never swept"
    );

    smtp.refuse_with(None);
    let m = wait_email(&app, "4001@default", &id, |e| e["status"] == "sent").await;
    assert_eq!(m["email"]["status"], "sent");
    let m = wait_email(&app, "4001@default", &id, |e| e["status"] == "none").await;
    assert_eq!(
        m["email"]["status"], "none",
        "the sent job is removed a second later"
    );
    assert_eq!(smtp.mails().len(), 1, "and nothing is sent again");
}

#[tokio::test]
async fn an_attachment_over_the_limit_goes_as_opus_or_is_left_out_with_a_note() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let app = app_with(&smtp, |c| c.email.attachment_max_bytes = 20_000).await;
    app.create_mailbox(
        "5001@default",
        json!({"email": "pat@example.org", "attach": true, "attachfmt": "wav"}),
    )
    .await;
    // 2 s: 32 KB as WAV, about 4 KB as 16 kbit/s Opus.
    app.deposit_ok("5001@default", audio::wav_ulaw(2.0), "audio/wav")
        .await;
    let mails = smtp.wait_for(1, WAIT).await;
    let p = smtp.parse(&mails[0]);
    assert_eq!(p["defects"], json!([]));
    let parts = p["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[1]["filename"], "msg0000.opus");
    assert_eq!(parts[1]["content_type"], "audio/ogg");
    assert!(parts[1]["size"].as_u64().unwrap() <= 20_000);
    let secs = audio_duration(std::path::Path::new(parts[1]["path"].as_str().unwrap()));
    assert!(
        (secs - 2.0).abs() < 0.05,
        "the Opus fallback lasts {secs} s"
    );

    // 30 s: about 60 KB even as Opus.
    app.deposit_ok("5001@default", audio::wav_ulaw(30.0), "audio/wav")
        .await;
    let mails = smtp.wait_for(2, WAIT).await;
    let p = smtp.parse(&mails[1]);
    assert_eq!(p["defects"], json!([]));
    assert_eq!(p["content_type"], "text/plain", "no attachment");
    let body = text(&p["parts"][0]);
    assert!(
        body.contains("not attached") && body.contains("20000-byte attachment limit"),
        "the body says why: {body}"
    );
}
