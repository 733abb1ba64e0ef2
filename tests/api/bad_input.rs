//! Every bad input gets a clear 4xx problem, never a 500, and nothing stored before it is touched.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, assert_problem, audio};
use crate::helpers;

/// A mailbox holding one good message; `check` proves it is untouched.
struct Survivor {
    app: TestApp,
    id: String,
    wav: Vec<u8>,
    before: Value,
}

const MBX: &str = "1001@default";

async fn survivor_with(app: TestApp) -> Survivor {
    app.create_mailbox(MBX, json!({})).await;
    let wav = audio::wav_ulaw(1.0);
    let m = app.deposit_ok(MBX, wav.clone(), "audio/wav").await;
    let id = helpers::id_of(&m);
    let before = helpers::get_message(&app, MBX, &id).await;
    Survivor {
        app,
        id,
        wav,
        before,
    }
}

async fn survivor() -> Survivor {
    survivor_with(TestApp::spawn().await).await
}

impl Survivor {
    /// The list still holds exactly the good message, unchanged, with identical audio, and no
    /// half-written upload is left behind.
    async fn check(&self) {
        let items = helpers::list(&self.app, MBX, "").await;
        assert_eq!(items.len(), 1, "only the good message: {items:?}");
        assert_eq!(items[0], self.before);
        let audio = helpers::audio_of(&self.app, MBX, &self.id).await;
        assert_eq!(audio::sha256_hex(&audio), audio::sha256_hex(&self.wav));
        let mwi = self.app.mwi(MBX).await;
        assert_eq!(
            (mwi["new"].clone(), mwi["old"].clone()),
            (json!(1), json!(0))
        );
        let stored = helpers::stored_audio(&self.app, "messages/").await;
        assert_eq!(stored.len(), 1, "no audio of refused deposits: {stored:?}");
        let parts = helpers::leftover_parts(&self.app);
        assert!(parts.is_empty(), "temp files left: {parts:?}");
    }

    async fn deposit(&self, body: Vec<u8>, ct: &str, query: &str) -> reqwest::Response {
        self.app.deposit(MBX, body, ct, query).await
    }
}

fn le16(v: &mut [u8], at: usize, x: u16) {
    v[at..at + 2].copy_from_slice(&x.to_le_bytes());
}

fn le32(v: &mut [u8], at: usize, x: u32) {
    v[at..at + 4].copy_from_slice(&x.to_le_bytes());
}

// Offsets in the 16-byte-fmt WAVs the harness writes (`wav_pcm16`, `wav_ulaw_fmt16`).
const CHANNELS: usize = 22;
const BLOCK_ALIGN: usize = 32;
const BITS: usize = 34;
const DATA_SIZE: usize = 40;

#[tokio::test]
async fn garbage_truncated_and_empty_wavs_are_corrupt_audio() {
    let s = survivor().await;
    let mut truncated = audio::wav_ulaw(1.0);
    truncated.truncate(truncated.len() / 2);
    let mut header_claims_more = audio::wav_pcm16(0.5, 8000);
    le32(&mut header_claims_more, DATA_SIZE, 1_000_000);
    let header_only = audio::wav_ulaw(1.0)[..30].to_vec();
    let no_samples = audio::wav_ulaw(0.0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage",
            b"definitely not a RIFF file, just some text".repeat(100),
        ),
        (
            "random bytes",
            (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        ("truncated", truncated),
        ("header claims more data", header_claims_more),
        ("header only", header_only),
        ("no samples", no_samples),
        ("empty", Vec::new()),
    ];
    for (what, body) in cases {
        let r = s.deposit(body, "audio/wav", "").await;
        let p = assert_problem(r, 422, "corrupt-audio").await;
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{what}");
    }
    // An empty raw body holds no audio either.
    for ct in ["audio/PCMU", "audio/PCMA"] {
        let r = s.deposit(Vec::new(), ct, "").await;
        assert_problem(r, 422, "corrupt-audio").await;
    }
    s.check().await;
}

#[tokio::test]
async fn a_wav_header_lying_about_its_format_is_corrupt_audio() {
    let s = survivor().await;
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let base = audio::wav_ulaw_fmt16(1.0);
    let mut v = base.clone();
    le16(&mut v, CHANNELS, 0);
    cases.push(("zero channels", v));
    let mut v = base.clone();
    le16(&mut v, CHANNELS, 200);
    cases.push(("200 channels", v));
    let mut v = base.clone();
    le16(&mut v, CHANNELS, 2);
    cases.push(("two channels with a mono block align", v));
    let mut v = base.clone();
    le16(&mut v, BITS, 16);
    cases.push(("16-bit µ-law", v));
    let mut v = base.clone();
    le16(&mut v, BLOCK_ALIGN, 3);
    cases.push(("block align 3", v));
    let mut v = audio::wav_pcm16(1.0, 8000);
    le16(&mut v, BITS, 12);
    cases.push(("12-bit PCM", v));
    let mut v = audio::wav_pcm16(1.0, 8000);
    le16(&mut v, BLOCK_ALIGN, 4);
    cases.push(("stereo block align on mono PCM", v));
    let mut v = base.clone();
    le32(&mut v, 24, 0);
    cases.push(("zero sample rate", v));
    let mut v = base.clone();
    le32(&mut v, 16, 4);
    cases.push(("4-byte fmt chunk", v));
    let mut v = base.clone();
    le32(&mut v, 16, 0xFFFF_FFF0);
    cases.push(("fmt chunk size overflowing", v));
    for (what, body) in cases {
        let r = s.deposit(body, "audio/wav", "").await;
        let status = r.status();
        let p: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {p}");
        assert_eq!(p["type"], "/problems/corrupt-audio", "{what}: {p}");
    }
    s.check().await;
}

#[tokio::test]
async fn a_wav_without_a_fmt_chunk_is_corrupt_audio() {
    let s = survivor().await;
    let samples = audio::raw_ulaw(1.0);
    // RIFF/WAVE straight into the data chunk.
    let mut data_first = Vec::new();
    data_first.extend_from_slice(b"RIFF");
    data_first.extend_from_slice(&(4 + 8 + samples.len() as u32).to_le_bytes());
    data_first.extend_from_slice(b"WAVE");
    data_first.extend_from_slice(b"data");
    data_first.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    data_first.extend_from_slice(&samples);
    // RIFF/WAVE with only a LIST chunk.
    let mut no_chunks = Vec::new();
    no_chunks.extend_from_slice(b"RIFF");
    no_chunks.extend_from_slice(&(4 + 8 + 4u32).to_le_bytes());
    no_chunks.extend_from_slice(b"WAVE");
    no_chunks.extend_from_slice(b"LIST");
    no_chunks.extend_from_slice(&4u32.to_le_bytes());
    no_chunks.extend_from_slice(b"INFO");
    for body in [data_first, no_chunks] {
        let r = s.deposit(body, "audio/wav", "").await;
        assert_problem(r, 422, "corrupt-audio").await;
    }
    s.check().await;
}

#[tokio::test]
async fn non_audio_content_types_are_unsupported_media_type() {
    let s = survivor().await;
    for ct in [
        "text/plain",
        "application/json",
        "image/png",
        "application/x-www-form-urlencoded",
    ] {
        let r = s.deposit(audio::wav_ulaw(1.0), ct, "").await;
        assert_problem(r, 415, "unsupported-media-type").await;
    }
    s.check().await;
}

#[tokio::test]
async fn foreign_containers_and_rates_are_unsupported_audio() {
    let s = survivor().await;
    let mut amr = b"#!AMR\n".to_vec();
    amr.extend(std::iter::repeat_n(0x3Cu8, 4000));
    let mut mp4 = b"\0\0\0\x20ftypM4A \0\0\0\0".to_vec();
    mp4.extend(std::iter::repeat_n(0u8, 4000));
    let mut aiff = b"FORM\0\0\x10\0AIFF".to_vec();
    aiff.extend(std::iter::repeat_n(0u8, 4000));
    for (what, body) in [("amr", amr), ("mp4", mp4), ("aiff", aiff)] {
        for ct in [
            "audio/wav",
            "application/octet-stream",
            "audio/PCMU",
            "audio/mpeg",
        ] {
            let r = s.deposit(body.clone(), ct, "").await;
            let status = r.status();
            let p: Value = r.json().await.unwrap();
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{what} as {ct}: {p}"
            );
            assert_eq!(p["type"], "/problems/unsupported-audio", "{what} as {ct}");
        }
    }
    for ct in [
        "audio/PCMU;rate=16000",
        "audio/PCMA; rate=16000",
        "audio/PCMU;channels=2",
        "audio/L16",
        "audio/L16; rate=44100",
        "audio/x-sln; rate=48000",
        "audio/aac",
    ] {
        let r = s.deposit(audio::raw_ulaw(1.0), ct, "").await;
        assert_problem(r, 415, "unsupported-audio").await;
    }
    // A WAV with a codec not accepted (IMA ADPCM).
    let mut adpcm = audio::wav_pcm16(1.0, 8000);
    le16(&mut adpcm, 20, 0x11);
    let r = s.deposit(adpcm, "audio/wav", "").await;
    assert_problem(r, 415, "unsupported-audio").await;
    s.check().await;
}

#[tokio::test]
async fn recognised_containers_with_broken_contents_are_corrupt_audio() {
    let s = survivor().await;
    let mut ogg = b"OggS\0\x02\0\0\0\0\0\0\0\0".to_vec();
    ogg.extend(std::iter::repeat_n(0x55u8, 4000));
    let mut mp3 = b"ID3\x04\0\0\0\0\0\x21".to_vec();
    mp3.extend(std::iter::repeat_n(0xAAu8, 4000));
    let mut flac = b"fLaC\0\0\0\x22".to_vec();
    flac.extend(std::iter::repeat_n(0x11u8, 4000));
    let mut webm = vec![0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x82, 0x84];
    webm.extend_from_slice(b"webm");
    webm.extend(std::iter::repeat_n(0x42u8, 4000));
    for (what, body) in [("ogg", ogg), ("mp3", mp3), ("flac", flac), ("webm", webm)] {
        // The magic bytes win over any Content-Type; the rest is not a valid stream.
        for ct in [
            "audio/wav",
            "application/octet-stream",
            "audio/PCMU",
            "audio/ogg",
        ] {
            let r = s.deposit(body.clone(), ct, "").await;
            let status = r.status();
            let p: Value = r.json().await.unwrap();
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{what} as {ct}: {p}"
            );
            assert_eq!(p["type"], "/problems/corrupt-audio", "{what} as {ct}");
        }
    }
    // Declared compressed, but nothing of the sort.
    for ct in ["audio/mpeg", "audio/ogg", "audio/flac", "audio/webm"] {
        let r = s.deposit(audio::raw_ulaw(1.0), ct, "").await;
        assert_problem(r, 422, "corrupt-audio").await;
    }
    s.check().await;
}

#[tokio::test]
async fn bad_deposit_metadata_is_400() {
    let s = survivor().await;
    for query in [
        "?priority=high",
        "?priority=1.5",
        "?orig_time=yesterday",
        "?orig_time=99999999999999",
        "?orig_time=-5",
        "?urgent=maybe",
        "?caller_id_num=%07bell",
    ] {
        let r = s.deposit(audio::wav_ulaw(1.0), "audio/wav", query).await;
        assert_problem(r, 400, "invalid-request").await;
    }
    let long_name = format!("?caller_id_name={}", "x".repeat(200));
    let r = s
        .deposit(audio::wav_ulaw(1.0), "audio/wav", &long_name)
        .await;
    assert_problem(r, 400, "invalid-request").await;
    s.check().await;
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_400() {
    let s = survivor().await;
    for key in ["k".repeat(300), "has space".to_owned(), String::new()] {
        let r = s
            .app
            .post(&format!("/v1/mailboxes/{MBX}/messages"))
            .header("content-type", "audio/wav")
            .header("idempotency-key", key.as_str())
            .body(audio::wav_ulaw(1.0))
            .send()
            .await
            .unwrap();
        assert_problem(r, 400, "invalid-request").await;
    }
    s.check().await;
}

#[tokio::test]
async fn bad_json_on_patch_is_400() {
    let s = survivor().await;
    let url = format!("/v1/mailboxes/{MBX}/messages/{}", s.id);
    for body in [
        "{",
        "not json",
        "",
        "[]",
        "{\"read\": \"yes\"}",
        "{\"read\": 1}",
        "{\"folder\": 7}",
        "{\"colour\": \"red\"}",
        "{}",
        "null",
    ] {
        let r = s
            .app
            .patch(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let p = assert_problem(r, 400, "invalid-request").await;
        assert!(p["detail"].is_string(), "{body:?}");
    }
    // Without a JSON content type the body is not JSON.
    let r = s
        .app
        .patch(&url)
        .header("content-type", "text/plain")
        .body("{\"read\": true}")
        .send()
        .await
        .unwrap();
    assert_problem(r, 415, "unsupported-media-type").await;
    s.check().await;
}

#[tokio::test]
async fn an_unknown_folder_is_400_unknown_folder() {
    let s = survivor().await;
    let url = format!("/v1/mailboxes/{MBX}/messages/{}", s.id);
    for folder in [
        "../INBOX",
        "no spaces",
        "",
        "x".repeat(31).as_str(),
        "Ünïcode",
    ] {
        let r = s
            .app
            .patch(&url)
            .json(&json!({"folder": folder}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let p: Value = r.json().await.unwrap();
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "PATCH folder {folder:?}: {p}"
        );
        assert_eq!(
            p["type"], "/problems/unknown-folder",
            "PATCH folder {folder:?}: {p}"
        );
    }
    for folder in ["..%2FINBOX", "no%20spaces", &"x".repeat(31), "a%2Fb"] {
        let r = s
            .app
            .get(&format!("/v1/mailboxes/{MBX}/messages?folder={folder}"))
            .send()
            .await
            .unwrap();
        assert_problem(r, 400, "unknown-folder").await;
    }
    s.check().await;
}

#[tokio::test]
async fn malformed_mailbox_addresses_are_400_on_every_message_endpoint() {
    let s = survivor().await;
    for bad in [
        "1001",
        "1001@",
        "@default",
        "10%2F01@default",
        "1001@..",
        "1001@de%20fault",
    ] {
        let base = format!("/v1/mailboxes/{bad}");
        let msg = format!("{base}/messages/{}", s.id);
        let reqs = vec![
            s.app.get(&format!("{base}/messages")),
            s.app
                .post(&format!("{base}/messages"))
                .header("content-type", "audio/wav")
                .body(audio::wav_ulaw(1.0)),
            s.app.get(&msg),
            s.app.patch(&msg).json(&json!({"read": true})),
            s.app.delete(&msg),
            s.app.get(&format!("{msg}/audio")),
            s.app
                .post(&format!("{msg}/forward"))
                .json(&json!({"to": ["1001@default"]})),
            s.app.get(&format!("{base}/mwi")),
            s.app.get(&format!("{base}/greetings/unavailable")),
        ];
        for req in reqs {
            let r = req.send().await.unwrap();
            let what = format!("{} {}", r.url().path(), r.status());
            let p = assert_problem(r, 400, "invalid-mailbox-address").await;
            assert!(p["detail"].is_string(), "{what}");
        }
    }
    // A forward target that is not an address is refused before anything is copied.
    let r = s
        .app
        .post(&format!("/v1/mailboxes/{MBX}/messages/{}/forward", s.id))
        .json(&json!({"to": ["not-an-address"]}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "invalid-mailbox-address").await;
    s.check().await;
}

#[tokio::test]
async fn a_malformed_or_unknown_message_id_is_404() {
    let s = survivor().await;
    let unknown = "0190a5e4-0000-7000-8000-000000000000";
    for id in ["not-a-uuid", "12345", unknown, "..%2F..%2Fvoxmail.db"] {
        let msg = format!("/v1/mailboxes/{MBX}/messages/{id}");
        let reqs = vec![
            s.app.get(&msg),
            s.app.patch(&msg).json(&json!({"read": true})),
            s.app.delete(&msg),
            s.app.get(&format!("{msg}/audio")),
            s.app
                .post(&format!("{msg}/forward"))
                .json(&json!({"to": ["1001@default"]})),
        ];
        for req in reqs {
            let r = req.send().await.unwrap();
            assert_problem(r, 404, "not-found").await;
        }
    }
    // An unknown mailbox is 404 too.
    let r = s
        .app
        .get("/v1/mailboxes/9999@default/messages")
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
    let r = s
        .app
        .deposit("9999@default", audio::wav_ulaw(1.0), "audio/wav", "")
        .await;
    assert_problem(r, 404, "not-found").await;
    s.check().await;
}

#[tokio::test]
async fn bad_list_parameters_are_400() {
    let s = survivor().await;
    for query in [
        "?cursor=not-a-cursor",
        "?cursor=%00",
        "?limit=0",
        "?limit=-1",
        "?limit=ten",
    ] {
        let r = s
            .app
            .get(&format!("/v1/mailboxes/{MBX}/messages{query}"))
            .send()
            .await
            .unwrap();
        assert_problem(r, 400, "invalid-request").await;
    }
    s.check().await;
}

#[tokio::test]
async fn a_body_larger_than_max_body_bytes_is_413_and_leaves_no_temp_file() {
    let app = TestApp::spawn_with(|c| c.http.max_body_bytes = 100_000).await;
    let s = survivor_with(app).await;
    // 20 s of µ-law is 160 kB: within the mailbox's maxsecs but over the body limit.
    for (body, ct) in [
        (audio::wav_ulaw(20.0), "audio/wav"),
        (audio::raw_ulaw(20.0), "audio/PCMU"),
    ] {
        let r = s.deposit(body, ct, "").await;
        assert_problem(r, 413, "payload-too-large").await;
    }
    let r = s
        .app
        .put(&format!("/v1/mailboxes/{MBX}/greetings/unavailable"))
        .header("content-type", "audio/wav")
        .body(audio::wav_ulaw(20.0))
        .send()
        .await
        .unwrap();
    assert_problem(r, 413, "payload-too-large").await;
    // Just under the limit is fine.
    s.check().await;
    app_deposit_fits(&s).await;
}

async fn app_deposit_fits(s: &Survivor) {
    let r = s.deposit(audio::raw_ulaw(12.0), "audio/PCMU", "").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(helpers::leftover_parts(&s.app).is_empty());
}

#[tokio::test]
async fn bad_forward_and_greeting_requests_are_4xx() {
    let s = survivor().await;
    let fwd = format!("/v1/mailboxes/{MBX}/messages/{}/forward", s.id);
    for body in [
        json!({"to": []}),
        json!({"to": ["1001@default", "1001@default"]}),
        json!({"to": "1001@default"}),
        json!({"keep": true}),
    ] {
        let r = s.app.post(&fwd).json(&body).send().await.unwrap();
        assert_problem(r, 400, "invalid-request").await;
    }
    let g = format!("/v1/mailboxes/{MBX}/greetings/unavailable");
    let r = s
        .app
        .put(&g)
        .header("content-type", "audio/wav")
        .body(b"garbage".to_vec())
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "corrupt-audio").await;
    let r = s
        .app
        .put(&g)
        .header("content-type", "text/plain")
        .body(audio::wav_ulaw(1.0))
        .send()
        .await
        .unwrap();
    assert_problem(r, 415, "unsupported-media-type").await;
    let r = s.app.get(&g).send().await.unwrap();
    assert_problem(r, 404, "not-found").await;
    s.check().await;
}

fn multipart_deposit(
    s: &Survivor,
    form: reqwest::multipart::Form,
    query: &str,
) -> reqwest::RequestBuilder {
    s.app
        .post(&format!("/v1/mailboxes/{MBX}/messages{query}"))
        .multipart(form)
}

fn wav_part(body: Vec<u8>) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(body)
        .file_name("m.wav")
        .mime_str("audio/wav")
        .unwrap()
}

fn json_part(v: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::text(v.to_owned())
        .mime_str("application/json")
        .unwrap()
}

#[tokio::test]
async fn bad_multipart_deposits_are_4xx_and_store_nothing() {
    use reqwest::multipart::Form;
    let s = survivor().await;
    let good = || wav_part(audio::wav_ulaw(1.0));
    let cases: Vec<(&str, Form, &str, u16, &str)> = vec![
        (
            "two audio parts",
            Form::new().part("audio", good()).part("audio", good()),
            "",
            400,
            "invalid-request",
        ),
        (
            "two metadata parts",
            Form::new()
                .part("metadata", json_part("{}"))
                .part("audio", good())
                .part("metadata", json_part("{}")),
            "",
            400,
            "invalid-request",
        ),
        (
            "an unexpected part after the audio",
            Form::new()
                .part("audio", good())
                .part("picture", json_part("{}")),
            "",
            400,
            "invalid-request",
        ),
        (
            "metadata that is not JSON",
            Form::new()
                .part("audio", good())
                .part("metadata", json_part("{oops")),
            "",
            400,
            "invalid-request",
        ),
        (
            "metadata naming a key twice",
            Form::new()
                .part(
                    "metadata",
                    json_part(r#"{"urgent": false, "urgent": true}"#),
                )
                .part("audio", good()),
            "",
            400,
            "invalid-request",
        ),
        (
            "metadata with an unknown field",
            Form::new()
                .part("metadata", json_part(r#"{"caller": "x"}"#))
                .part("audio", good()),
            "",
            400,
            "invalid-request",
        ),
        (
            "metadata with a wrong type",
            Form::new()
                .part("audio", good())
                .part("metadata", json_part(r#"{"urgent": "maybe"}"#)),
            "",
            400,
            "invalid-request",
        ),
        (
            "metadata in the query as well",
            Form::new().part("audio", good()),
            "?caller_id_num=1",
            400,
            "invalid-request",
        ),
        (
            "garbage audio",
            Form::new()
                .part("metadata", json_part("{}"))
                .part("audio", wav_part(b"not a wav".to_vec())),
            "",
            422,
            "corrupt-audio",
        ),
        (
            "an audio part of a non-audio type",
            Form::new().part(
                "audio",
                reqwest::multipart::Part::bytes(audio::wav_ulaw(1.0))
                    .mime_str("text/plain")
                    .unwrap(),
            ),
            "",
            415,
            "unsupported-media-type",
        ),
        (
            "no audio part",
            Form::new().part("metadata", json_part("{}")),
            "",
            422,
            "corrupt-audio",
        ),
    ];
    for (what, form, query, status, slug) in cases {
        let r = multipart_deposit(&s, form, query).send().await.unwrap();
        let got = r.status();
        let p: Value = r.json().await.unwrap();
        assert_eq!(got.as_u16(), status, "{what}: {p}");
        assert_eq!(p["type"], format!("/problems/{slug}"), "{what}: {p}");
    }
    s.check().await;
}

#[tokio::test]
async fn broken_multipart_framing_is_400() {
    let s = survivor().await;
    let url = format!("/v1/mailboxes/{MBX}/messages");
    // No boundary.
    let r = s
        .app
        .post(&url)
        .header("content-type", "multipart/form-data")
        .body(audio::wav_ulaw(1.0))
        .send()
        .await
        .unwrap();
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["status"], 400, "{p}");
    // A boundary that never appears, and a part cut off mid-way.
    let mut cut = b"--xyz\r\nContent-Disposition: form-data; name=\"audio\"\r\n\r\n".to_vec();
    cut.extend_from_slice(&audio::wav_ulaw(1.0)[..3000]);
    for body in [audio::wav_ulaw(1.0), cut] {
        let r = s
            .app
            .post(&url)
            .header("content-type", "multipart/form-data; boundary=xyz")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let p: Value = r.json().await.unwrap();
        assert!(status.is_client_error(), "{status}: {p}");
        assert_eq!(p["status"], status.as_u16());
    }
    s.check().await;
}

#[tokio::test]
async fn an_oversized_metadata_part_is_refused() {
    // The whole body within max_body_bytes: only the metadata part is over its own limit.
    let app = TestApp::spawn_with(|c| c.http.max_body_bytes = 1_000_000).await;
    let s = survivor_with(app).await;
    let huge = format!("{{\"category\": \"{}\"}}", "x".repeat(500_000));
    let form = reqwest::multipart::Form::new()
        .part("metadata", json_part(&huge))
        .part("audio", wav_part(audio::wav_ulaw(1.0)));
    let r = multipart_deposit(&s, form, "").send().await.unwrap();
    let p = assert_problem(r, 400, "invalid-request").await;
    assert!(p["detail"].as_str().unwrap().contains("64 KiB"), "{p}");
    s.check().await;
}

#[tokio::test]
async fn a_deposit_cut_off_by_the_client_leaves_nothing_behind() {
    use tokio::io::AsyncWriteExt;
    let s = survivor().await;
    let addr = s.app.base.trim_start_matches("http://").to_owned();
    let wav = audio::wav_ulaw(5.0);
    for sent in [20, 3000, wav.len() - 1] {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/mailboxes/{MBX}/messages HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {}\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\n\r\n",
            s.app.admin,
            wav.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(&wav[..sent]).await.unwrap();
        conn.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(conn);
    }
    // The server notices the disconnects asynchronously.
    for _ in 0..50 {
        if helpers::leftover_parts(&s.app).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    s.check().await;
}

/// A JSON body naming a key twice is refused on every JSON endpoint, whatever the depth, and
/// changes nothing: serde would silently keep the last value.
#[tokio::test]
async fn a_json_body_with_a_duplicate_key_is_400() {
    let s = survivor().await;
    let app = &s.app;
    let r = app
        .patch(&format!("/v1/mailboxes/{MBX}"))
        .json(&json!({"pin": "1234", "fullname": "Alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let msg = format!("/v1/mailboxes/{MBX}/messages/{}", s.id);
    for (method, path, body) in [
        (
            "POST",
            format!("/v1/mailboxes/{MBX}/pin/verify"),
            r#"{"pin":"1234","pin":"9"}"#,
        ),
        (
            "POST",
            format!("/v1/mailboxes/{MBX}/pin/verify"),
            r#"{"pin":"9","pin":"1234"}"#,
        ),
        (
            "PATCH",
            format!("/v1/mailboxes/{MBX}"),
            r#"{"fullname":"Bob","fullname":"Eve"}"#,
        ),
        ("PATCH", msg.clone(), r#"{"read":true,"read":false}"#),
        (
            "POST",
            "/v1/contexts".to_owned(),
            r#"{"name":"a","name":"b"}"#,
        ),
        (
            "POST",
            "/v1/mailboxes".to_owned(),
            r#"{"mailbox":"1002","context":"default","mailbox":"1003"}"#,
        ),
        (
            "POST",
            format!("{msg}/forward"),
            r#"{"to":["1001@default"],"keep":true,"keep":false}"#,
        ),
        (
            "PUT",
            "/v1/contexts/default/email".to_owned(),
            r#"{"emailsubject":"a","emailsubject":"b"}"#,
        ),
        (
            "POST",
            "/v1/webhooks".to_owned(),
            r#"{"context":"default","url":"http://127.0.0.1:9/h","url":"http://127.0.0.1:9/i"}"#,
        ),
    ] {
        let req = match method {
            "POST" => app.post(&path),
            "PUT" => app.put(&path),
            _ => app.patch(&path),
        };
        let r = req
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let p = assert_problem(r, 400, "invalid-request").await;
        assert!(
            p["detail"].as_str().unwrap().contains("duplicate key"),
            "{method} {path}: {p}"
        );
    }
    s.check().await;
    let m = helpers::get_json(app, &format!("/v1/mailboxes/{MBX}")).await;
    assert_eq!(m["fullname"], "Alice");
    for path in ["/v1/mailboxes/1002@default", "/v1/mailboxes/1003@default"] {
        assert_problem(app.get(path).send().await.unwrap(), 404, "not-found").await;
    }
}
