//! The admin web UI: sign-in rules and security headers over plain HTTP, and the whole flow in a
//! real browser (`tests/ui/e2e.mjs`: playwright-core driving Debian's chromium).
//!
//! The browser test needs `node`, chromium (`TEST_CHROMIUM`, default /usr/bin/chromium) and
//! playwright-core (`TEST_PLAYWRIGHT_DIR`: a directory with `node_modules/playwright-core`, as
//! .ci/run installs from tests/ui/package-lock.json). Without them it is skipped loudly, unless
//! `TEST_REQUIRE_BROWSER=1`, which makes it fail. Screenshots go to
//! `$CARGO_TARGET_DIR/ui-screenshots` (or `target/ui-screenshots`).

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use common::TestApp;
use reqwest::redirect::Policy;
use voxmail::service::{AdminClient, LoginOutcome};

const PASSWORD: &str = "correct horse battery";

/// A client that keeps cookies and does not follow redirects.
fn browserish() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The sign-in form's double-submit token from a `GET /ui/login`.
async fn login_token(app: &TestApp, c: &reqwest::Client) -> (String, String) {
    let r = c.get(app.url("/ui/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("vxm_login="))
        .expect("login cookie")
        .to_owned();
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("vxm_login=")
        .to_owned();
    let body = r.text().await.unwrap();
    assert!(body.contains(&format!("value=\"{value}\"")), "hidden field");
    (value, cookie)
}

#[tokio::test]
async fn ui_pages_carry_security_headers_and_strict_cookies() {
    let app = TestApp::spawn().await;
    let vm = app.services().await;
    vm.create_admin("Root@Example.org", Some(PASSWORD), &[])
        .await
        .unwrap();
    let c = browserish();

    // `/` leads to the UI; without a session the UI leads to sign-in.
    let r = c.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.headers()["location"], "/ui/");
    let r = c.get(app.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/login");

    let r = c.get(app.url("/ui/login")).send().await.unwrap();
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");

    // Sign-in without the double-submit token is refused.
    let r = c
        .post(app.url("/ui/login"))
        .form(&[("email", "root@example.org"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Over TLS (as the proxy says) the session cookie is Secure; always HttpOnly, Strict, /ui.
    let (token, cookie) = login_token(&app, &c).await;
    let r = c
        .post(app.url("/ui/login"))
        .header("cookie", cookie.split(';').next().unwrap())
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "198.51.100.7, 203.0.113.9")
        .form(&[
            ("csrf", token.as_str()),
            ("email", "ROOT@example.org"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "signed in");
    // The audit log records the address the nearest proxy saw, not the client's own claim.
    let root = voxmail::service::Admin {
        id: String::new(),
        email: "root@example.org".into(),
        contexts: vec![],
    };
    let log = vm.admin_audit_log(&root, None, 10).await.unwrap();
    let login = log.iter().find(|e| e.action == "login").unwrap();
    assert!(login.ip.starts_with("203.0.113.9"), "{:?}", login.ip);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("vxm_session="))
        .expect("session cookie")
        .to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Secure"] {
        assert!(session.contains(part), "{session} lacks {part}");
    }
    let pair = session.split(';').next().unwrap().to_owned();
    let r = c
        .get(app.url("/ui/"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("Dashboard") && body.contains("root@example.org"));
    assert!(!body.contains("<script>"), "no inline script");

    // A POST of the session without its CSRF token is a 403 page.
    let r = c
        .post(app.url("/ui/contexts"))
        .header("cookie", &pair)
        .form(&[("name", "evil")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("CSRF"));

    // The JSON behind the chart: 30 days.
    let r = c
        .get(app.url("/ui/api/stats?tzoff=-60"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    let stats: serde_json::Value = r.json().await.unwrap();
    assert_eq!(stats["deposits"].as_array().unwrap().len(), 30);
}

#[tokio::test]
async fn repeated_failed_sign_ins_lock_the_account() {
    let app = TestApp::spawn_with(|c| c.ui.login_max_failures = 3).await;
    let vm = app.services().await;
    vm.create_admin("ops@example.org", Some(PASSWORD), &[])
        .await
        .unwrap();
    let who = AdminClient::default();
    for _ in 0..2 {
        let r = vm
            .admin_login("ops@example.org", "wrong password", &who)
            .await
            .unwrap();
        assert!(matches!(r, LoginOutcome::Rejected));
    }
    let r = vm
        .admin_login("ops@example.org", "wrong password", &who)
        .await
        .unwrap();
    assert!(
        matches!(r, LoginOutcome::Locked { .. }),
        "third failure locks"
    );
    let r = vm
        .admin_login("ops@example.org", PASSWORD, &who)
        .await
        .unwrap();
    assert!(
        matches!(r, LoginOutcome::Locked { retry_after } if retry_after > 800),
        "even the right password waits"
    );
    // Unknown admins are refused like wrong passwords.
    let r = vm
        .admin_login("nobody@example.org", PASSWORD, &who)
        .await
        .unwrap();
    assert!(matches!(r, LoginOutcome::Rejected));
    // A short password is refused at creation; a limit names existing contexts only.
    assert!(
        vm.create_admin("a@example.org", Some("short"), &[])
            .await
            .is_err()
    );
    assert!(
        vm.create_admin("b@example.org", None, &["missing".into()])
            .await
            .is_err()
    );
}

/// Signs `email` in over HTTP; returns the session cookie pair (`vxm_session=…`).
async fn sign_in(app: &TestApp, c: &reqwest::Client, email: &str) -> String {
    let (token, cookie) = login_token(app, c).await;
    let r = c
        .post(app.url("/ui/login"))
        .header("cookie", cookie.split(';').next().unwrap())
        .form(&[
            ("csrf", token.as_str()),
            ("email", email),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "signed in");
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("vxm_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let pat = "name=\"csrf\" value=\"";
    let at = page.find(pat).expect("a form") + pat.len();
    page[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn messages_and_greetings_over_http() {
    let app = TestApp::spawn().await;
    let vm = app.services().await;
    vm.create_admin("root@example.org", Some(PASSWORD), &[])
        .await
        .unwrap();
    app.create_context("acme").await;
    app.create_mailbox("1001@acme", serde_json::json!({})).await;
    let m = app
        .deposit_ok("1001@acme", common::fixture("hello-pcm16.wav"), "audio/wav")
        .await;
    let id = m["id"].as_str().unwrap();
    let c = browserish();
    let pair = sign_in(&app, &c, "root@example.org").await;
    let get = |path: String| c.get(app.url(&path)).header("cookie", &pair).send();

    // The waveform's peaks: a few hundred values, not silence.
    let base = "/ui/contexts/acme/mailboxes/1001";
    let r = get(format!("{base}/messages/{id}/peaks")).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let peaks = v["peaks"].as_array().unwrap();
    assert!((16..=240).contains(&peaks.len()), "{} peaks", peaks.len());
    assert!(peaks.iter().any(|p| p.as_f64().unwrap() > 0.1), "{v}");
    assert_eq!(v["duration_ms"], m["duration_ms"]);

    // The folder counts behind the live tabs: from the counts query, every standard folder.
    let r = get(format!("{base}/messages/counts")).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let v: serde_json::Value = r.json().await.unwrap();
    let inbox = v
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["folder"] == "INBOX")
        .unwrap();
    assert_eq!(
        (inbox["total"].as_u64(), inbox["unread"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v.as_array().unwrap().len(), 7, "{v}");

    // The Opus rendition with a byte range; without a session, sign-in.
    let r = c
        .get(app.url(&format!("{base}/messages/{id}/audio?format=opus")))
        .header("cookie", &pair)
        .header("range", "bytes=4-13")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(
        r.headers()["content-range"]
            .to_str()
            .unwrap()
            .starts_with("bytes 4-13/")
    );
    assert_eq!(r.bytes().await.unwrap().len(), 10);
    let r = c
        .get(app.url(&format!("{base}/messages/{id}/audio?format=opus")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);

    // A greeting upload larger than the 1 MB form limit (50 s of 16 kHz PCM), the token first.
    let page = get(format!("{base}/greetings"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let samples: Vec<i16> = (0..16_000 * 50)
        .map(|i| ((i % 64) * 200 - 6400) as i16)
        .collect();
    let wav = voxmail::audio::wav::pcm16_wav(&samples, 16_000, 1);
    assert!(wav.len() > 1_500_000);
    let upload = |token: Option<&str>| {
        let mut form = reqwest::multipart::Form::new();
        if let Some(t) = token {
            form = form.text("csrf", t.to_owned());
        }
        let part = reqwest::multipart::Part::bytes(wav.clone())
            .file_name("greeting.wav")
            .mime_str("audio/wav")
            .unwrap();
        c.post(app.url(&format!("{base}/greetings/busy")))
            .header("cookie", &pair)
            .multipart(form.part("audio", part))
            .send()
    };
    let r = upload(None).await.unwrap();
    assert_eq!(r.status(), 403, "no token");
    let r = upload(Some("wrong")).await.unwrap();
    assert_eq!(r.status(), 403, "wrong token");
    let r = upload(Some(&csrf)).await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("notice=saved")
    );
    let g: serde_json::Value = app
        .get("/v1/mailboxes/1001@acme/greetings/busy")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(g["duration_ms"], 50_000, "{g}");

    // Forwarding to a mailbox that does not exist says so.
    let r = c
        .post(app.url(&format!("{base}/messages/{id}")))
        .header("cookie", &pair)
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "forward"),
            ("to", "9999"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no mailbox 9999@acme"));
}

/// The first `…/{kind}/{id}/test` form action of a page: the id.
fn test_action_id(page: &str, kind: &str) -> String {
    let pat = format!("/{kind}/");
    page.match_indices(&pat)
        .map(|(at, _)| &page[at + pat.len()..])
        .find_map(|rest| {
            let id = rest.split('/').next()?;
            rest[id.len()..].starts_with("/test").then(|| id.to_owned())
        })
        .expect("a test-send form")
}

#[tokio::test]
async fn test_sends_to_an_unreachable_receiver_show_the_failure() {
    let app = TestApp::spawn().await;
    let vm = app.services().await;
    vm.create_admin("root@example.org", Some(PASSWORD), &[])
        .await
        .unwrap();
    app.create_context("acme").await;
    app.create_mailbox("1001@acme", serde_json::json!({})).await;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = browserish();
    let pair = sign_in(&app, &c, "root@example.org").await;
    let page = |path: String| {
        let c = c.clone();
        let pair = pair.clone();
        let url = app.url(&path);
        async move {
            let r = c.get(url).header("cookie", pair).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.text().await.unwrap()
        }
    };
    let csrf = csrf_of(&page("/ui/contexts/acme/webhooks".into()).await);
    let post = |path: String, form: Vec<(&'static str, String)>| {
        c.post(app.url(&path))
            .header("cookie", &pair)
            .form(&form)
            .send()
    };

    // A webhook: the test is tried once, fails, and is not retried.
    let r = post(
        "/ui/contexts/acme/webhooks".into(),
        vec![
            ("csrf", csrf.clone()),
            ("url", format!("http://127.0.0.1:{closed}/hook")),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let created = r.text().await.unwrap();
    assert!(created.contains("whsec_"), "the secret is shown once");
    let hook = test_action_id(&created, "webhooks");
    let r = post(
        format!("/ui/contexts/acme/webhooks/{hook}/test"),
        vec![("csrf", csrf.clone())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let shown = page(r.headers()["location"].to_str().unwrap().to_owned()).await;
    assert!(shown.contains("Test failed: connection failed"), "{shown}");
    assert!(shown.contains(r#"data-status="dead""#), "{shown}");

    // An MWI target: the failure and the retry are shown per mailbox.
    let r = post(
        "/ui/contexts/acme/mwi-targets".into(),
        vec![
            ("csrf", csrf.clone()),
            ("kind", "ari".into()),
            ("url", format!("http://127.0.0.1:{closed}")),
            ("active", "on".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let target_page = page(r.headers()["location"].to_str().unwrap().to_owned()).await;
    let target = test_action_id(&target_page, "mwi-targets");
    let r = post(
        format!("/ui/contexts/acme/mwi-targets/{target}/test"),
        vec![("csrf", csrf.clone())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let shown = page(r.headers()["location"].to_str().unwrap().to_owned()).await;
    assert!(
        shown.contains("0 of 1 mailbox pushed; 1 failing"),
        "{shown}"
    );
    assert!(
        shown.contains(r#"data-push="1001@acme" data-state="Failing""#),
        "{shown}"
    );

    // Without the token, nothing is sent.
    let r = post(
        format!("/ui/contexts/acme/mwi-targets/{target}/test"),
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);

    // The dashboard offers to retry the queues that failed; a retry makes the given-up webhook
    // delivery due now, says so, and is in the audit log.
    let dash = page("/ui/".into()).await;
    assert!(
        dash.contains(r#"action="/ui/queues/webhook/retry""#),
        "{dash}"
    );
    assert!(
        !dash.contains(r#"action="/ui/queues/email/retry""#),
        "nothing failed there"
    );
    let r = post("/ui/queues/webhook/retry".into(), vec![])
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "not without the token");
    let r = post(
        "/ui/queues/webhook/retry".into(),
        vec![("csrf", csrf.clone())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let back = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(back, "/ui/?retried=webhook&due=1");
    let dash = page(back).await;
    assert!(
        dash.contains("1 failing or given-up job of the webhook queue will be tried again now."),
        "{dash}"
    );
    let audit = page("/ui/audit".into()).await;
    assert!(audit.contains("queue.retry"), "{audit}");
}

fn playwright_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("TEST_PLAYWRIGHT_DIR").map(PathBuf::from),
        std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("voxmail-ui-node")),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("node_modules/playwright-core/package.json").exists())
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("ui-screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_ui_works_in_a_real_browser() {
    let require = std::env::var("TEST_REQUIRE_BROWSER").as_deref() == Ok("1");
    let chromium = std::env::var("TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let pw = playwright_dir();
    let missing: Vec<&str> = [
        (!node_ok).then_some("node"),
        (!Path::new(&chromium).exists()).then_some("chromium (TEST_CHROMIUM)"),
        pw.is_none()
            .then_some("playwright-core (TEST_PLAYWRIGHT_DIR)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        assert!(
            !require,
            "TEST_REQUIRE_BROWSER=1 but {} missing",
            missing.join(", ")
        );
        eprintln!(
            "SKIPPED the browser test of the admin UI: {} missing (see tests/ui/main.rs)",
            missing.join(", ")
        );
        return;
    }
    let Some(pw) = pw else { return };

    let app = TestApp::spawn().await;
    let vm = app.services().await;
    vm.create_admin("root@example.org", Some(PASSWORD), &[])
        .await
        .unwrap();
    let p = voxmail::domain::Principal::local_admin();
    vm.create_context(&p, "tenant-b", "Another tenant")
        .await
        .unwrap();
    vm.create_admin("limited@example.org", Some(PASSWORD), &["tenant-b".into()])
        .await
        .unwrap();
    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/e2e.mjs");
    let audio = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hello-pcm16.wav");

    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("TEST_CHROMIUM", &chromium)
        .env("TEST_PLAYWRIGHT_DIR", &pw)
        .env("UI_BASE", &app.base)
        .env("UI_ADMIN_EMAIL", "root@example.org")
        .env("UI_LIMITED_EMAIL", "limited@example.org")
        .env("UI_PASSWORD", PASSWORD)
        .env("UI_API_KEY", &app.admin)
        .env("UI_AUDIO", &audio)
        .env("UI_SCREENSHOTS", &shots)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(180), out)
        .await
        .expect("the browser test finishes within 3 minutes")
        .expect("node runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "e2e.mjs failed: {}", out.status);
}
