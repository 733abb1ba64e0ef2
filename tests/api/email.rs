//! Voicemail-to-email against a real SMTP server (aiosmtpd), read back with Python's `email`
//! package and ffmpeg.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::smtp::{SmtpServer, audio_duration};
use crate::common::{TestApp, audio};
use crate::helpers::{get_message, id_of};

const WAIT: Duration = Duration::from_secs(20);

async fn app_for(smtp: &SmtpServer) -> TestApp {
    let port = smtp.port;
    TestApp::spawn_with(move |c| {
        c.email.host = "127.0.0.1".into();
        c.email.port = port;
        c.email.timeout_secs = 5;
        c.email.retry_base_ms = 100;
        c.email.retry_max_ms = 400;
        c.email.serveremail = "vm@pbx.example.org".into();
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
    let got: Value = app
        .get("/v1/contexts/sales/email")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    let list: Value = app
        .get("/v1/mailboxes/1001@sales/messages")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    tokio::time::sleep(Duration::from_secs(1)).await;
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
    for id in &ids {
        let m = wait_email(&app, "1004@default", id, |e| e["status"] == "sent").await;
        assert_eq!(m["email"]["status"], "sent");
    }
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails().len(), 3, "none twice");
    for id in &ids {
        let m = wait_email(&app, "1006@default", id, |e| e["status"] == "sent").await;
        assert_eq!(m["email"]["status"], "sent");
    }
}
