//! Bounded decoders (issue 15): compressed uploads past `audio.max_decoders` and
//! `audio.decoder_queue` get 503 `busy` instead of hanging the node, a WAV deposit beside them is
//! not held up, and the node takes compressed uploads again as soon as the load goes.
//!
//! The tests follow the running server's decoder load (a watch channel), never the clock.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::{Response, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use voxmail::service::cpu_pool::PoolLoad;

use crate::common::{TestApp, assert_problem, audio, fixture};

const MB: &str = "1001@default";
const PATH: &str = "/v1/mailboxes/1001@default/messages";
/// Bounds on what must happen at once; reached only when the test fails.
const PROMPT: Duration = Duration::from_secs(20);

/// An Ogg Opus upload whose head has been sent and whose rest never comes while it lives.
struct SlowUpload {
    request: JoinHandle<reqwest::Result<Response>>,
    _more: mpsc::Sender<std::io::Result<Vec<u8>>>,
}

impl SlowUpload {
    fn start(app: &TestApp) -> Self {
        let (more, mut rx) = mpsc::channel(1);
        let head = fixture("hello.opus")[..1024].to_vec();
        let body = futures_util::stream::once(async move { Ok(head) })
            .chain(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let request = tokio::spawn(
            app.post(PATH)
                .header("content-type", "audio/ogg")
                .body(reqwest::Body::wrap_stream(body))
                .send(),
        );
        Self {
            request,
            _more: more,
        }
    }
}

impl Drop for SlowUpload {
    /// The client goes away mid-upload: its connection closes.
    fn drop(&mut self) {
        self.request.abort();
    }
}

/// A server with 2 decoders and room for 2 waiting uploads, waits as long as the test needs.
async fn two_decoders(wait_ms: u64) -> TestApp {
    let app = TestApp::spawn_with(|c| {
        c.audio.max_decoders = 2;
        c.audio.decoder_queue = 2;
        c.audio.busy_wait_ms = wait_ms;
    })
    .await;
    app.create_mailbox(MB, json!({"maxmsg": 100})).await;
    app
}

/// Waits until the server's decoders reach `want`.
async fn load_reaches(app: &TestApp, want: PoolLoad) {
    let mut load = app.running_services().decoder_load();
    let reached = tokio::time::timeout(PROMPT, load.wait_for(|l| *l == want))
        .await
        .is_ok();
    assert!(
        reached,
        "decoder load stayed {:?}, expected {want:?}",
        *load.borrow()
    );
}

/// Fills both decoders and both places in the queue with slow uploads.
async fn saturate(app: &TestApp) -> Vec<SlowUpload> {
    let mut slow = Vec::new();
    for n in 1..=4 {
        slow.push(SlowUpload::start(app));
        load_reaches(
            app,
            PoolLoad {
                running: n.min(2),
                waiting: n.saturating_sub(2),
            },
        )
        .await;
    }
    slow
}

async fn deposit_opus(app: &TestApp) -> Response {
    app.deposit(MB, fixture("hello.opus"), "audio/ogg", "")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_upload_past_the_decoders_and_their_queue_gets_503_busy_at_once() {
    let app = two_decoders(600_000).await;
    let _slow = saturate(&app).await;
    let r = tokio::time::timeout(PROMPT, deposit_opus(&app))
        .await
        .expect("an answer at once, not a wait for a decoder");
    let retry_after: u64 = r
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert_problem(r, 503, "busy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wav_deposit_does_not_wait_behind_compressed_uploads() {
    let app = two_decoders(600_000).await;
    let _slow = saturate(&app).await;
    let r = tokio::time::timeout(
        PROMPT,
        app.deposit(MB, audio::wav_ulaw(1.0), "audio/wav", ""),
    )
    .await
    .expect("the WAV deposit is answered while every decoder is taken");
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_waits_too_long_for_a_decoder_gets_503_busy() {
    let app = two_decoders(300).await;
    let _slow: Vec<_> = (0..2).map(|_| SlowUpload::start(&app)).collect();
    load_reaches(
        &app,
        PoolLoad {
            running: 2,
            waiting: 0,
        },
    )
    .await;
    // Room in the queue, but no decoder frees within busy_wait_ms.
    let r = tokio::time::timeout(PROMPT, deposit_opus(&app))
        .await
        .expect("an answer once busy_wait_ms is over");
    assert!(r.headers().contains_key("retry-after"));
    assert_problem(r, 503, "busy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_uploads_are_taken_again_as_soon_as_the_slow_ones_go() {
    let app = two_decoders(600_000).await;
    let slow = saturate(&app).await;
    assert_problem(deposit_opus(&app).await, 503, "busy").await;
    drop(slow);
    load_reaches(&app, PoolLoad::default()).await;
    for _ in 0..3 {
        let r = tokio::time::timeout(PROMPT, deposit_opus(&app))
            .await
            .expect("answered at once");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    assert_eq!(app.mwi(MB).await["new"], 3);
}
