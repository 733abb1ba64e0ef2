//! Untrusted deposits through the real router: the query-string metadata, the multipart parser
//! and its `metadata` JSON part, the Content-Type hints and the streaming audio path, on a
//! server built once (SQLite and an audio directory in a temporary directory). The input is one
//! byte choosing the Content-Type, a query string up to the first newline, then the body. A crash
//! is a panic (libfuzzer-sys's hook fires even inside the router's panic catcher) or a 500.
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const CONTENT_TYPES: [Option<&str>; 8] = [
    Some("multipart/form-data; boundary=vxb"),
    Some("audio/wav"),
    Some("audio/ogg"),
    Some("audio/PCMU"),
    Some("audio/L16;rate=8000"),
    Some("application/octet-stream"),
    Some("audio/mpeg"),
    None,
];

struct Server {
    rt: tokio::runtime::Runtime,
    router: Router,
    token: String,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Kept for the whole run: the process ends without cleaning it, as a fuzzer does.
        let dir = Box::leak(Box::new(tempfile::tempdir().expect("temp dir")));
        let mut config = voxmail::config::Config {
            data_dir: dir.path().to_path_buf(),
            node_id: "fuzz".into(),
            ..Default::default()
        };
        config.http.max_body_bytes = 256 * 1024;
        let (router, token) = rt.block_on(async {
            let vm = voxmail::app::build(config).await.expect("build");
            let token = vm
                .create_api_key("fuzz", voxmail::domain::Role::Admin, None)
                .await
                .expect("key")
                .token;
            let router = voxmail::http::router(vm);
            for (path, body) in [
                ("/v1/contexts", r#"{"name":"default"}"#),
                (
                    "/v1/mailboxes",
                    r#"{"mailbox":"1001","context":"default","maxmsg":9999}"#,
                ),
            ] {
                let setup = Request::post(path)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .expect("request");
                let r = router.clone().oneshot(setup).await.expect("infallible");
                let status = r.status();
                let text = r.into_body().collect().await.map(|b| b.to_bytes());
                assert_eq!(status, StatusCode::CREATED, "POST {path}: {text:?}");
            }
            (router, token)
        });
        Server { rt, router, token }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (query, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    // Only what a client could put on a request line.
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    if query.bytes().any(|b| !b.is_ascii_graphic()) || query.contains('#') {
        return;
    }
    let s = server();
    let mut req = Request::post(format!("/v1/mailboxes/1001@default/messages?{query}"))
        .header(header::AUTHORIZATION, format!("Bearer {}", s.token));
    if let Some(ct) = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()] {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let Ok(req) = req.body(Body::from(body.to_vec())) else {
        return;
    };
    s.rt.block_on(async {
        let resp = s.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let text = resp.into_body().collect().await.map(|b| b.to_bytes());
        assert!(
            status != StatusCode::INTERNAL_SERVER_ERROR,
            "500 for a deposit: {text:?}"
        );
    });
});
