//! Every input format of issue 3 (WAV variants, headerless slin/GSM, MP3, FLAC, Ogg Vorbis, Ogg
//! Opus, WebM/Opus) deposits with the duration a decoder no one here wrote reads, and renders; bad
//! ones are refused with the right problem, and nothing of them is stored.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, assert_problem, audio, fixture};
use crate::helpers::{self, id_of};

const MB: &str = "1001@default";

/// True when `name` can run; otherwise panics under CI and skips loudly elsewhere.
fn have(name: &str) -> bool {
    if Command::new(name).arg("-h").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} is required in CI (apt-get install ffmpeg)"
    );
    eprintln!("SKIPPED: {name} is not installed (apt-get install ffmpeg); checks skipped");
    false
}

/// ffmpeg's input options for a headerless fixture.
fn raw_input(content_type: &str) -> &'static [&'static str] {
    match content_type {
        "audio/GSM" => &["-f", "gsm", "-ar", "8000"],
        "audio/x-sln" => &["-f", "s16le", "-ar", "8000", "-ac", "1"],
        "audio/sln16" => &["-f", "s16le", "-ar", "16000", "-ac", "1"],
        "audio/L16; rate=8000" => &["-f", "s16be", "-ar", "8000", "-ac", "1"],
        _ => &[],
    }
}

/// The duration ffprobe reads from a file. For MP3 it counts whole frames, encoder delay and
/// padding included (LAME's gapless header is ignored), so the length ffmpeg decodes is used.
fn reference_secs(path: &Path, input: &[&str], mp3: bool) -> f64 {
    if mp3 {
        return decoded_secs(path, input);
    }
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(input)
        .args(["-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe reads {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("ffprobe duration of {}: {e}", path.display()))
}

/// Seconds of audio ffmpeg decodes, after checking it decodes without an error.
fn decoded_secs(path: &Path, input: &[&str]) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(input)
        .arg("-i")
        .arg(path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg decodes {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout.len() as f64 / 2.0 / 48000.0
}

fn ffprobe_codec(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe reads {}", path.display());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn fetch(app: &TestApp, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let r = app.get(path).send().await.unwrap();
    let (s, h) = (r.status(), r.headers().clone());
    (s, h, r.bytes().await.unwrap().to_vec())
}

/// Each input fixture: file, Content-Type it is sent with, codec and rate the API shows, and the
/// duration (ms) voxmail measures for it.
const INPUTS: &[(&str, &str, &str, u32, u64)] = &[
    ("hello-u8-stereo.wav", "audio/wav", "pcm_s16le", 8000, 3125),
    ("hello-s24.wav", "audio/wav", "pcm_s16le", 8000, 3125),
    ("hello-s32.wav", "audio/wav", "pcm_s16le", 8000, 3125),
    ("hello-float.wav", "audio/wav", "pcm_float", 8000, 3125),
    ("hello-wav49.wav", "audio/x-wav", "gsm_ms", 8000, 3125),
    ("hello.gsm", "audio/GSM", "gsm", 8000, 3140),
    ("hello.sln", "audio/x-sln", "pcm_s16le", 8000, 3125),
    ("hello.sln16", "audio/sln16", "pcm_s16le", 16000, 3125),
    ("hello.l16", "audio/L16; rate=8000", "pcm_s16be", 8000, 3125),
    ("hello-44k-stereo.mp3", "audio/mpeg", "mp3", 44100, 3125),
    (
        "hello-8k.mp3",
        "application/octet-stream",
        "mp3",
        8000,
        3125,
    ),
    ("hello.flac", "audio/flac", "flac", 16000, 3125),
    ("hello-48k-stereo.flac", "audio/x-flac", "flac", 48000, 1000),
    ("hello.ogg", "audio/ogg", "vorbis", 16000, 3125),
    (
        "hello-44k-stereo.ogg",
        "audio/ogg; codecs=vorbis",
        "vorbis",
        44100,
        3125,
    ),
    ("hello.opus", "audio/ogg; codecs=opus", "opus", 48000, 3125),
    ("hello-stereo.opus", "audio/opus", "opus", 48000, 3125),
    ("hello.webm", "audio/webm", "opus", 48000, 3125),
    (
        "hello-live.webm",
        "audio/webm;codecs=opus",
        "opus",
        48000,
        3125,
    ),
];

#[tokio::test]
async fn every_input_fixture_deposits_with_its_duration_and_renders_to_opus_and_wav() {
    let tools = have("ffmpeg") && have("ffprobe");
    let app = TestApp::spawn().await;
    app.create_mailbox(MB, json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    for &(file, ct, codec, rate, ms) in INPUTS {
        let bytes = fixture(file);
        let m = app.deposit_ok(MB, bytes.clone(), ct).await;
        assert_eq!(m["audio"]["codec"], codec, "{file}");
        assert_eq!(m["audio"]["sample_rate"], rate, "{file}");
        assert_eq!(m["audio"]["sha256"], audio::sha256_hex(&bytes), "{file}");
        let got = m["duration_ms"].as_u64().unwrap();
        // WebM's end trim (DiscardPadding) is not applied: up to one 20 ms packet more.
        assert!(
            got >= ms && got <= ms + 20,
            "{file}: {got} ms, expected {ms}"
        );
        let id = id_of(&m);
        let (_, _, original) =
            fetch(&app, &format!("/v1/mailboxes/{MB}/messages/{id}/audio")).await;
        assert!(
            original == bytes,
            "{file}: the original is served byte for byte"
        );
        if !tools {
            continue;
        }
        let src = dir.path().join(file);
        std::fs::write(&src, &bytes).unwrap();
        let input = raw_input(ct);
        let reference = reference_secs(&src, input, codec == "mp3");
        assert!(
            (got as f64 / 1000.0 - reference).abs() <= 0.020,
            "{file}: {got} ms deposited, ffprobe reads {reference} s"
        );
        for (format, expected_codec) in [("opus", "opus"), ("wav", "pcm_s16le")] {
            let (status, _, body) = fetch(
                &app,
                &format!("/v1/mailboxes/{MB}/messages/{id}/audio?format={format}"),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{file} as {format}");
            let out = dir.path().join(format!("{file}.{format}"));
            std::fs::write(&out, &body).unwrap();
            assert_eq!(ffprobe_codec(&out), expected_codec, "{file} as {format}");
            let secs = decoded_secs(&out, &[]);
            // ffmpeg counts Opus pre-skip in a rendition's length only when the container lacks
            // an end granule; ours has one, so the decoded length must match the source's.
            assert!(
                (secs - got as f64 / 1000.0).abs() <= 0.020,
                "{file} as {format}: {secs} s decoded, {got} ms deposited"
            );
        }
    }
    assert_eq!(app.mwi(MB).await["new"], INPUTS.len());
}

#[tokio::test]
async fn greetings_uploaded_as_webm_and_mp3_are_kept_as_uploaded_and_served_as_opus_and_wav() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MB, json!({})).await;
    for (kind, file, ct) in [
        ("unavailable", "hello-live.webm", "audio/webm;codecs=opus"),
        ("busy", "hello-44k-stereo.mp3", "audio/mpeg"),
    ] {
        let bytes = fixture(file);
        let r = app
            .put(&format!("/v1/mailboxes/{MB}/greetings/{kind}"))
            .header("content-type", ct)
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{file}");
        let (s, h, original) = fetch(&app, &format!("/v1/mailboxes/{MB}/greetings/{kind}")).await;
        assert_eq!(s, StatusCode::OK);
        assert!(original == bytes, "{file} is stored as uploaded");
        let expected_type = if file.ends_with(".webm") {
            "audio/webm; codecs=opus"
        } else {
            "audio/mpeg"
        };
        assert_eq!(h["content-type"], expected_type);
        let (s, h, opus) = fetch(&app, &format!("/v1/mailboxes/{MB}/greetings/{kind}.opus")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["content-type"], "audio/ogg; codecs=opus");
        assert_eq!(&opus[..4], b"OggS");
        let (s, _, wav) = fetch(
            &app,
            &format!("/v1/mailboxes/{MB}/greetings/{kind}?format=wav"),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(&wav[..4], b"RIFF");
        // 16-bit mono PCM at the source rate: about 3.1 s.
        let rate = u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]);
        let secs = (wav.len() - 44) as f64 / 2.0 / f64::from(rate);
        assert!((3.1..3.2).contains(&secs), "{file}: {secs} s at {rate} Hz");
        if have("ffmpeg") {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("g.opus");
            std::fs::write(&p, &opus).unwrap();
            let got = decoded_secs(&p, &[]);
            assert!(
                (got - secs).abs() <= 0.020,
                "{file}: opus {got} s, wav {secs} s"
            );
        }
    }
}

/// The refused body leaves no message, no audio file and no temporary file.
async fn nothing_stored(app: &TestApp) {
    assert!(helpers::list(app, MB, "").await.is_empty());
    let stored = helpers::stored_audio(app, "").await;
    assert!(stored.is_empty(), "no audio of refused uploads: {stored:?}");
    let parts = helpers::leftover_parts(app);
    assert!(parts.is_empty(), "temp files left: {parts:?}");
    assert_eq!(app.mwi(MB).await["new"], 0);
}

fn cut(name: &str, keep: f64) -> Vec<u8> {
    let b = fixture(name);
    b[..(b.len() as f64 * keep) as usize].to_vec()
}

#[tokio::test]
async fn damaged_recordings_are_corrupt_audio_and_leave_nothing_stored() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MB, json!({})).await;
    let mut bad_crc = fixture("hello.opus");
    let at = bad_crc.len() / 2;
    bad_crc[at] ^= 0x5A;
    // FLAC's STREAMINFO cannot say 200 channels (3 bits: 1–8). Say 8 for mono frames, then give
    // a frame a reserved channel assignment (0b1011).
    let mut flac_channels = fixture("hello.flac");
    // STREAMINFO starts at 8; its channels field is bits 1–3 of byte 8 + 12.
    flac_channels[20] = (flac_channels[20] & 0xF1) | (7 << 1);
    let mut flac_reserved = fixture("hello.flac");
    // The first frame follows the metadata blocks (1-byte type with the last-block flag, 24-bit
    // length each).
    let mut frame = 4;
    loop {
        let last = flac_reserved[frame] & 0x80 != 0;
        let len = u32::from_be_bytes([
            0,
            flac_reserved[frame + 1],
            flac_reserved[frame + 2],
            flac_reserved[frame + 3],
        ]);
        frame += 4 + len as usize;
        if last {
            break;
        }
    }
    assert_eq!(&flac_reserved[frame..frame + 2], &[0xFF, 0xF8]);
    flac_reserved[frame + 3] = (flac_reserved[frame + 3] & 0x0F) | 0xB0;
    let mut wav49 = fixture("hello-wav49.wav");
    wav49.truncate(wav49.len() - 30);
    let mut wav49_declared = fixture("hello-wav49.wav");
    // The header declares a data length that ends inside a block.
    let data_at = wav49_declared
        .windows(4)
        .position(|w| w == b"data")
        .unwrap();
    let declared = u32::from_le_bytes(wav49_declared[data_at + 4..data_at + 8].try_into().unwrap());
    wav49_declared[data_at + 4..data_at + 8].copy_from_slice(&(declared - 40).to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "half an MP3",
            cut("hello-44k-stereo.mp3", 0.5),
            "audio/mpeg",
        ),
        ("half a FLAC", cut("hello.flac", 0.5), "audio/flac"),
        ("half an Ogg Vorbis", cut("hello.ogg", 0.5), "audio/ogg"),
        ("half an Ogg Opus", cut("hello.opus", 0.5), "audio/ogg"),
        ("an Ogg page with a bad CRC", bad_crc, "audio/ogg"),
        (
            "a FLAC claiming 8 channels of mono frames",
            flac_channels,
            "audio/flac",
        ),
        (
            "a FLAC frame with a reserved channel assignment",
            flac_reserved,
            "audio/flac",
        ),
        ("a WAV49 cut inside a block", wav49, "audio/wav"),
        (
            "a WAV49 declaring a partial block",
            wav49_declared,
            "audio/wav",
        ),
        (
            "a WebM cut inside its header",
            cut("hello-live.webm", 0.02),
            "audio/webm",
        ),
        (
            "a raw GSM frame without its magic",
            {
                let mut g = fixture("hello.gsm");
                g[33 * 40] = 0x00;
                g
            },
            "audio/GSM",
        ),
        (
            "half a slin sample",
            cut("hello.sln", 0.5)[..1001].to_vec(),
            "audio/x-sln",
        ),
    ];
    for (what, body, ct) in cases {
        let r = app.deposit(MB, body, ct, "").await;
        let status = r.status();
        let p: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {p}");
        assert_eq!(p["type"], "/problems/corrupt-audio", "{what}: {p}");
    }
    nothing_stored(&app).await;
}

/// 6 KB whose Vorbis setup would unpack to gigabytes of codebooks (fixtures/README.md): refused
/// from its headers, before any decoder unpacks them, and the node decodes the next upload.
#[tokio::test]
async fn a_vorbis_setup_that_would_unpack_to_gigabytes_is_refused_from_its_headers() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MB, json!({})).await;
    let r = app
        .deposit(MB, fixture("vorbis-codebook-bomb.ogg"), "audio/ogg", "")
        .await;
    let status = r.status();
    let p: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{p}");
    assert_eq!(p["type"], "/problems/unsupported-audio", "{p}");
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("decoder memory"), "{detail}");
    nothing_stored(&app).await;
    let r = app.deposit(MB, fixture("hello.ogg"), "audio/ogg", "").await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn empty_and_random_bodies_get_the_problem_their_type_implies() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MB, json!({})).await;
    // Deterministic noise that starts with no magic and no MP3 frame sync.
    let random: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_ne!(random[0], 0xFF);
    for ct in [
        "audio/wav",
        "audio/PCMU",
        "audio/PCMA",
        "audio/GSM",
        "audio/x-sln",
        "audio/L16; rate=16000",
        "audio/mpeg",
        "audio/flac",
        "audio/ogg",
        "audio/webm",
        "application/octet-stream",
    ] {
        let r = app.deposit(MB, Vec::new(), ct, "").await;
        assert_problem(r, 422, "corrupt-audio").await;
        let r = app.deposit(MB, random.clone(), ct, "").await;
        let status = r.status();
        let p: Value = r.json().await.unwrap();
        let expected = match ct {
            // Any even number of bytes is headerless G.711 or slin: nothing can tell noise from
            // audio there, so it is stored (and removed again below).
            "audio/PCMU" | "audio/PCMA" | "audio/x-sln" | "audio/L16; rate=16000" => {
                assert_eq!(status, StatusCode::CREATED, "{ct}: {p}");
                let r = app
                    .delete(&format!("/v1/mailboxes/{MB}/messages/{}", id_of(&p)))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::NO_CONTENT);
                continue;
            }
            "application/octet-stream" => (415, "unsupported-audio"),
            _ => (422, "corrupt-audio"),
        };
        assert_eq!(status.as_u16(), expected.0, "{ct}: {p}");
        assert_eq!(p["type"], format!("/problems/{}", expected.1), "{ct}: {p}");
    }
    nothing_stored(&app).await;
}

#[tokio::test]
async fn a_ten_minute_flac_over_maxsecs_is_too_long_before_it_is_all_sent() {
    if !have("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.flac");
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg("anoisesrc=d=600:r=16000:a=0.3:seed=7")
        .args(["-c:a", "flac"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success());
    let flac = std::fs::read(&path).unwrap();
    let total = flac.len() as u64;
    assert!(total > 8_000_000, "10 min of noise is large: {total}");
    let app = TestApp::spawn().await;
    app.create_mailbox(MB, json!({"maxsecs": 30})).await;
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let chunks: Vec<Vec<u8>> = flac.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
    let body = futures_util::stream::iter(chunks.into_iter().map(move |c| {
        counter.fetch_add(c.len() as u64, Ordering::Relaxed);
        Ok::<_, std::io::Error>(c)
    }));
    let started = std::time::Instant::now();
    let r = app
        .post(&format!("/v1/mailboxes/{MB}/messages"))
        .header("content-type", "audio/flac")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_problem(r, 422, "too-long").await;
    let pulled = sent.load(Ordering::Relaxed);
    assert!(
        pulled < total / 2,
        "the upload was cut off early: {pulled} of {total} bytes sent"
    );
    assert!(elapsed.as_secs() < 20, "refused quickly: {elapsed:?}");
    nothing_stored(&app).await;
}
