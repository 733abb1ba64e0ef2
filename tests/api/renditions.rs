//! Output renditions at fetch time, each checked by a decoder no one here wrote (ffmpeg, ffprobe,
//! opusinfo), cached once, served with Range/ETag, removed with their recording.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::audio::{raw_ulaw, sha256_hex, wav_pcm16, wav_ulaw};
use crate::common::{TestApp, assert_problem, fixture};
use crate::helpers::{audio_named, id_of};

const MB: &str = "1001@default";

/// True when `name` can run; otherwise panics under CI and skips loudly elsewhere.
fn have(name: &str) -> bool {
    if Command::new(name).arg("-h").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} is required in CI (apt-get install ffmpeg opus-tools)"
    );
    eprintln!(
        "SKIPPED: {name} is not installed (apt-get install ffmpeg opus-tools); renditions unchecked"
    );
    false
}

/// Seconds of audio ffmpeg decodes from `bytes` (raw formats need `input` options), after checking
/// that it decodes without a single error or warning.
fn decoded_secs(dir: &Path, name: &str, bytes: &[u8], input: &[&str]) -> f64 {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(input)
        .arg("-i")
        .arg(&path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg decodes {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout.len() as f64 / 2.0 / 48000.0
}

fn ffprobe_stream(dir: &Path, name: &str) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate,channels",
        ])
        .args(["-of", "csv=p=0"])
        .arg(dir.join(name))
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe reads {name}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn setup() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    app.create_mailbox(MB, json!({})).await;
    let m = app.deposit_ok(MB, wav_ulaw(2.0), "audio/wav").await;
    (app, id_of(&m))
}

async fn fetch(app: &TestApp, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let r = app.get(path).send().await.unwrap();
    let (s, h) = (r.status(), r.headers().clone());
    (s, h, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn every_output_format_decodes_with_ffmpeg_to_the_source_duration() {
    if !have("ffmpeg") || !have("ffprobe") || !have("opusinfo") {
        return;
    }
    let (app, id) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("wav", "a.wav", &[], "pcm_s16le,8000,1"),
        ("wav&rate=16000", "b.wav", &[], "pcm_s16le,16000,1"),
        ("wav&rate=48000", "c.wav", &[], "pcm_s16le,48000,1"),
        ("wav-ulaw", "d.wav", &[], "pcm_mulaw,8000,1"),
        ("wav-alaw", "e.wav", &[], "pcm_alaw,8000,1"),
        (
            "ulaw",
            "f.ulaw",
            &["-f", "mulaw", "-ar", "8000", "-ac", "1"],
            "",
        ),
        (
            "alaw",
            "g.alaw",
            &["-f", "alaw", "-ar", "8000", "-ac", "1"],
            "",
        ),
        (
            "sln",
            "h.sln",
            &["-f", "s16le", "-ar", "8000", "-ac", "1"],
            "",
        ),
        (
            "sln16",
            "i.sln16",
            &["-f", "s16le", "-ar", "16000", "-ac", "1"],
            "",
        ),
        ("gsm", "j.gsm", &["-f", "gsm", "-ar", "8000"], ""),
        ("wav49", "k.wav", &[], "gsm_ms,8000,1"),
        ("opus", "l.opus", &[], "opus,48000,1"),
    ];
    for (query, name, input, probe) in cases {
        let (status, h, body) = fetch(
            &app,
            &format!("/v1/mailboxes/{MB}/messages/{id}/audio?format={query}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{query}");
        assert!(h.get("etag").is_some(), "{query} has an ETag");
        let secs = decoded_secs(dir.path(), name, &body, input);
        assert!(
            (secs - 2.0).abs() <= 0.020,
            "{query}: {secs} s decoded from 2 s"
        );
        if !probe.is_empty() {
            assert_eq!(ffprobe_stream(dir.path(), name), *probe, "{query}");
        }
    }
    let info = Command::new("opusinfo")
        .arg(dir.path().join("l.opus"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&info.stdout).to_string() + &String::from_utf8_lossy(&info.stderr);
    assert!(info.status.success(), "opusinfo: {text}");
    assert!(
        !text.contains("WARNING") && !text.contains("ERROR"),
        "opusinfo: {text}"
    );
    assert!(
        text.contains("Playback length: 0m:02.000s"),
        "opusinfo: {text}"
    );
}

#[tokio::test]
async fn speech_renders_to_opus_and_wav_of_the_right_length() {
    if !have("ffmpeg") || !have("opusinfo") {
        return;
    }
    let app = TestApp::spawn().await;
    app.create_mailbox(MB, json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    for (fixture_name, ct) in [
        ("hello-pcm16-16k.wav", "audio/wav"),
        ("hello.alaw", "audio/PCMA"),
    ] {
        let original = fixture(fixture_name);
        let id = id_of(&app.deposit_ok(MB, original.clone(), ct).await);
        let src = if ct == "audio/wav" {
            decoded_secs(dir.path(), "src.wav", &original, &[])
        } else {
            decoded_secs(
                dir.path(),
                "src.alaw",
                &original,
                &["-f", "alaw", "-ar", "8000", "-ac", "1"],
            )
        };
        for ext in ["opus", "wav", "wav49", "sln16"] {
            let (status, h, body) = fetch(
                &app,
                &format!("/v1/mailboxes/{MB}/messages/{id}/audio.{ext}"),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{fixture_name} as {ext}");
            let input: &[&str] = if ext == "sln16" {
                &["-f", "s16le", "-ar", "16000", "-ac", "1"]
            } else {
                &[]
            };
            let secs = decoded_secs(dir.path(), &format!("x.{ext}"), &body, input);
            // GSM pads to whole 40 ms blocks; ffmpeg ignores WAV49's fact chunk.
            let tolerance = if ext == "wav49" { 0.040 } else { 0.020 };
            assert!(
                (secs - src).abs() <= tolerance,
                "{fixture_name} as {ext}: {secs} vs {src}"
            );
            if ext == "opus" {
                assert_eq!(h["content-type"], "audio/ogg; codecs=opus");
                let ok = Command::new("opusinfo")
                    .arg(dir.path().join("x.opus"))
                    .output()
                    .unwrap();
                assert!(ok.status.success());
            }
        }
    }
}

#[tokio::test]
async fn ulaw_to_slin_wav_to_ulaw_is_bit_exact() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MB, json!({})).await;
    app.create_mailbox("1002@default", json!({})).await;
    let ulaw = fixture("hello.ulaw");
    let id = id_of(&app.deposit_ok(MB, ulaw.clone(), "audio/PCMU").await);
    let (_, h, wav) = fetch(&app, &format!("/v1/mailboxes/{MB}/messages/{id}/audio.wav")).await;
    assert_eq!(h["content-type"], "audio/wav");
    assert_eq!(&wav[20..22], &1u16.to_le_bytes(), "PCM");
    assert_eq!(&wav[34..36], &16u16.to_le_bytes(), "16-bit");
    let id2 = id_of(&app.deposit_ok("1002@default", wav, "audio/wav").await);
    let (_, _, back) = fetch(
        &app,
        &format!("/v1/mailboxes/1002@default/messages/{id2}/audio.ulaw"),
    )
    .await;
    assert_eq!(back.len(), ulaw.len());
    assert!(back == ulaw, "µ-law → slin WAV → µ-law changed the bytes");
    // A-law through the query form as well.
    let alaw = fixture("hello.alaw");
    let id3 = id_of(&app.deposit_ok(MB, alaw.clone(), "audio/PCMA").await);
    let (_, _, wav) = fetch(
        &app,
        &format!("/v1/mailboxes/{MB}/messages/{id3}/audio?format=wav"),
    )
    .await;
    let id4 = id_of(&app.deposit_ok("1002@default", wav, "audio/wav").await);
    let (_, _, back) = fetch(
        &app,
        &format!("/v1/mailboxes/1002@default/messages/{id4}/audio?format=alaw"),
    )
    .await;
    assert!(back == alaw, "A-law → slin WAV → A-law changed the bytes");
}

#[tokio::test]
async fn range_and_etag_work_on_a_rendition_and_accept_negotiates_it() {
    let (app, id) = setup().await;
    let path = format!("/v1/mailboxes/{MB}/messages/{id}/audio?format=opus");
    let (status, h, full) = fetch(&app, &path).await;
    assert_eq!(status, StatusCode::OK);
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        h["content-length"].to_str().unwrap(),
        full.len().to_string()
    );
    assert_eq!(h["accept-ranges"], "bytes");
    let r = app
        .get(&path)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = app
        .get(&path)
        .header("range", "bytes=10-109")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes 10-109/{}", full.len())
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &full[10..110]);
    let r = app
        .get(&path)
        .header("range", format!("bytes={}-", full.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    // The extension form and Accept name the same rendition.
    let (_, h2, body2) = fetch(
        &app,
        &format!("/v1/mailboxes/{MB}/messages/{id}/audio.opus"),
    )
    .await;
    assert_eq!(
        (h2["etag"].to_str().unwrap(), &body2),
        (etag.as_str(), &full)
    );
    let r = app
        .get(&format!("/v1/mailboxes/{MB}/messages/{id}/audio"))
        .header("accept", "audio/ogg, audio/wav;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    // The original stays the default and keeps its own tag.
    let (_, h3, orig) = fetch(&app, &format!("/v1/mailboxes/{MB}/messages/{id}/audio")).await;
    assert_eq!(orig, wav_ulaw(2.0));
    assert_eq!(
        h3["etag"].to_str().unwrap(),
        format!("\"{}\"", sha256_hex(&orig))
    );
}

#[tokio::test]
async fn concurrent_fetches_of_one_rendition_store_it_once_and_delete_removes_it() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MB, json!({})).await;
    let id = id_of(
        &app.deposit_ok(MB, wav_pcm16(20.0, 16000), "audio/wav")
            .await,
    );
    let path = format!("/v1/mailboxes/{MB}/messages/{id}/audio?format=opus");
    let (a, b) = tokio::join!(fetch(&app, &path), fetch(&app, &path));
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    assert!(a.2 == b.2);
    assert_eq!(
        audio_named(&app, &id).await.len(),
        2,
        "the original and one rendition"
    );
    let (s, _, _) = fetch(&app, &format!("/v1/mailboxes/{MB}/messages/{id}/audio.gsm")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(audio_named(&app, &id).await.len(), 3);
    let r = app
        .delete(&format!("/v1/mailboxes/{MB}/messages/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(audio_named(&app, &id).await, Vec::<String>::new());
}

#[tokio::test]
async fn unknown_formats_and_parameters_are_400_problems() {
    let (app, id) = setup().await;
    let base = format!("/v1/mailboxes/{MB}/messages/{id}");
    for path in [
        format!("{base}/audio?format=bogus"),
        format!("{base}/audio.mp4"),
        format!("{base}/audio?format=wav&rate=44100"),
        format!("{base}/audio?format=gsm&rate=8000"),
        format!("{base}/audio?format=opus&bitrate=fast"),
    ] {
        let r = app.get(&path).send().await.unwrap();
        assert_problem(r, 400, "unsupported-format").await;
    }
    let r = app.get(&format!("{base}/other.opus")).send().await.unwrap();
    assert_problem(r, 404, "not-found").await;
}

#[tokio::test]
async fn greetings_are_served_in_any_format_and_their_renditions_go_with_them() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MB, json!({})).await;
    let r = app
        .put(&format!("/v1/mailboxes/{MB}/greetings/unavailable"))
        .header("content-type", "audio/PCMU")
        .body(raw_ulaw(1.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (s, h, body) = fetch(
        &app,
        &format!("/v1/mailboxes/{MB}/greetings/unavailable.opus"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "audio/ogg; codecs=opus");
    assert_eq!(&body[..4], b"OggS");
    let (s, h, body) = fetch(
        &app,
        &format!("/v1/mailboxes/{MB}/greetings/unavailable?format=wav49"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .contains("unavail.WAV")
    );
    assert_eq!(u16::from_le_bytes([body[20], body[21]]), 0x31);
    assert_eq!(body.len(), 60 + 25 * 65 + 1);
    let (_, _, same) = fetch(
        &app,
        &format!("/v1/mailboxes/{MB}/greetings/unavailable.ulaw"),
    )
    .await;
    assert!(same == raw_ulaw(1.0));
    let renditions = || async {
        crate::helpers::stored_audio(&app, "greetings/")
            .await
            .into_iter()
            .filter(|k| k.contains(".r1-"))
            .count()
    };
    assert_eq!(renditions().await, 3);
    let r = app
        .delete(&format!("/v1/mailboxes/{MB}/greetings/unavailable"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(renditions().await, 0);
}
