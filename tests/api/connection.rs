//! The HTTP listener's accepted connections: TCP_NODELAY on every one (issue 16), so the last
//! segment of a response on a kept-alive connection does not wait for the client's delayed ACK;
//! and the limits no client can get past (issue 15): header, keep-alive, body and send timeouts,
//! the connection bound, bodies declared too large, uploads in flight per key and per address.
//!
//! The TCP_NODELAY check reads the option off the server's own socket (the server runs in this
//! process). The timeout tests set timeouts of a second and wait for the server to act (the
//! connection closing, a response arriving), with a bound far above the timeout.

use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::os::fd::{BorrowedFd, RawFd};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use std::time::Duration;

use crate::common::audio::wav_ulaw;
use crate::common::{TestApp, assert_problem};
use crate::helpers::{self, id_of};

const MB: &str = "1001@default";

/// One HTTP/1.1 GET on `conn` (kept alive); returns the status and the body.
async fn get(conn: &mut BufReader<TcpStream>, path: &str, token: &str) -> (u16, Vec<u8>) {
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: voxmail\r\nAuthorization: Bearer {token}\r\n\r\n");
    conn.get_mut().write_all(req.as_bytes()).await.unwrap();
    let mut line = String::new();
    conn.read_line(&mut line).await.unwrap();
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {line:?}"));
    let mut len = None;
    loop {
        line.clear();
        conn.read_line(&mut line).await.unwrap();
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').expect("header line");
        assert!(
            !name.eq_ignore_ascii_case("connection") || !value.trim().eq_ignore_ascii_case("close"),
            "the server closes the connection after {path}"
        );
        if name.eq_ignore_ascii_case("content-length") {
            len = Some(value.trim().parse::<usize>().unwrap());
        }
    }
    let mut body = vec![0; len.expect("Content-Length")];
    conn.read_exact(&mut body).await.unwrap();
    (status, body)
}

/// The server's side of the TCP connection `client` → `server`, as a duplicate of the server's
/// descriptor (its socket options are the server socket's: they live on the socket, not the fd).
fn server_side(server: SocketAddr, client: SocketAddr) -> StdTcpStream {
    let mut found = server_sockets(server, client);
    assert_eq!(
        found.len(),
        1,
        "exactly one server-side socket {server} ← {client} in this process"
    );
    found.pop().unwrap()
}

/// Duplicates of every descriptor of this process that is the server's side of `client` →
/// `server`.
fn server_sockets(server: SocketAddr, client: SocketAddr) -> Vec<StdTcpStream> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue; // closed since the listing
        };
        if !target.to_string_lossy().starts_with("socket:[") {
            continue;
        }
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        // SAFETY: `fd` is only duplicated (fcntl F_DUPFD_CLOEXEC), never closed or read from.
        // Should another task close it between the listing and here, the duplicate fails (EBADF)
        // or names some other open file, which the address check below rejects.
        let Ok(dup) = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned() else {
            continue;
        };
        let sock = StdTcpStream::from(dup);
        if sock.local_addr().ok() == Some(server) && sock.peer_addr().ok() == Some(client) {
            found.push(sock);
        }
    }
    found
}

#[tokio::test]
async fn accepted_connections_have_tcp_nodelay() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MB, json!({})).await;
    let m = app.deposit_ok(MB, wav_ulaw(4.0), "audio/wav").await;
    let id = id_of(&m);
    let server: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();

    // Audio fetches one after another on one kept-alive connection, as a PBX or a browser does.
    let stream = TcpStream::connect(server).await.unwrap();
    let client = stream.local_addr().unwrap();
    let mut conn = BufReader::new(stream);
    let audio = format!("/v1/mailboxes/{MB}/messages/{id}/audio");
    for path in [
        audio.clone(),
        format!("{audio}?format=opus"),
        audio.clone(),
        format!("{audio}?format=opus"),
    ] {
        let (status, body) = get(&mut conn, &path, &app.admin).await;
        assert_eq!(status, 200, "GET {path}");
        assert!(!body.is_empty(), "GET {path}");
    }

    let sock = server_side(server, client);
    assert!(
        sock.nodelay().unwrap(),
        "TCP_NODELAY on the server's side of a kept-alive connection"
    );
    // The connection is still the one the fetches used (kept alive, not reopened).
    let (status, _) = get(&mut conn, "/healthz", &app.admin).await;
    assert_eq!(status, 200);
}

/// How long a test waits for the server to act on a one-second timeout.
const ACT: Duration = Duration::from_secs(20);

fn server_addr(app: &TestApp) -> SocketAddr {
    app.base.trim_start_matches("http://").parse().unwrap()
}

/// Reads until the server closes the connection; the bytes it sent.
async fn until_closed(conn: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    match tokio::time::timeout(ACT, conn.read_to_end(&mut got)).await {
        Ok(Ok(_)) => {}
        // A reset (the server closed with unread bytes) is a close too.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => panic!("reading: {e}"),
        Err(_) => panic!("the server kept the connection open for {ACT:?}"),
    }
    got
}

/// The status of the first response in `raw` and its body.
fn status_of(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no response in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

/// The head of a deposit of `len` declared bytes of µ-law WAV.
fn deposit_head(addr: SocketAddr, token: &str, len: usize, extra: &str) -> String {
    format!(
        "POST /v1/mailboxes/{MB}/messages HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: audio/wav\r\nContent-Length: {len}\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn idle_and_silent_connections_are_closed() {
    let app = TestApp::spawn_with(|c| {
        c.http.header_read_timeout_secs = 1;
        c.http.keep_alive_timeout_secs = 1;
    })
    .await;
    let addr = server_addr(&app);

    // A connection that never sends a byte.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(until_closed(&mut silent).await.is_empty());

    // A kept-alive connection after its request.
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut conn = BufReader::new(stream);
    let (status, _) = get(&mut conn, "/healthz", &app.admin).await;
    assert_eq!(status, 200);
    assert!(until_closed(conn.get_mut()).await.is_empty());

    // The node still serves.
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn trickled_headers_are_cut_off() {
    let app = TestApp::spawn_with(|c| {
        c.http.header_read_timeout_secs = 1;
        c.http.keep_alive_timeout_secs = 60;
    })
    .await;
    let conn = TcpStream::connect(server_addr(&app)).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    // One header line every 200 ms, for far longer than the timeout.
    let trickle = tokio::spawn(async move {
        wr.write_all(b"GET /healthz HTTP/1.1\r\n").await?;
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            wr.write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut got = Vec::new();
    let read = tokio::time::timeout(ACT, rd.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the server waited {ACT:?} for trickled headers"
    );
    assert!(
        !String::from_utf8_lossy(&got).contains(" 200 "),
        "the trickled request was served"
    );
    assert!(!trickle.is_finished() || trickle.await.unwrap().is_err());
}

#[tokio::test]
async fn connections_over_the_limit_get_503_and_idle_ones_make_room() {
    let app = TestApp::spawn_with(|c| c.http.max_connections = 3).await;
    let addr = server_addr(&app);

    // Three connections that have not sent a request hold every slot (accepted in order, so
    // they are counted before the next): the next is refused.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut over = TcpStream::connect(addr).await.unwrap();
    let over = until_closed(&mut over).await;
    let (status, body) = status_of(&over);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("/problems/unavailable"), "{body}");

    // One of them makes a request and is then idle: a new connection takes its place.
    let mut first = BufReader::new(silent.remove(0));
    let (status, _) = get(&mut first, "/healthz", &app.admin).await;
    assert_eq!(status, 200);
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut newer = BufReader::new(stream);
    let (status, _) = get(&mut newer, "/healthz", &app.admin).await;
    assert_eq!(
        status, 200,
        "a new connection once an idle one could be closed"
    );
    assert!(until_closed(first.get_mut()).await.is_empty());

    // When the silent ones go, connections are served again.
    drop(silent);
    drop(newer);
    helpers::until_within(
        "the node serves again after the connections closed",
        ACT,
        async || {
            let r = app.get("/healthz").send().await;
            r.is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
}

#[tokio::test]
async fn a_body_declared_over_the_limit_is_refused_before_it_is_sent() {
    let app = TestApp::spawn_with(|c| c.http.max_body_bytes = 10_000).await;
    app.create_mailbox(MB, json!({})).await;
    let addr = server_addr(&app);

    // Expect: 100-continue is answered 413 at once, not 100.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = deposit_head(addr, &app.admin, 50_000, "Expect: 100-continue\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    let (status, body) = status_of(&until_closed(&mut conn).await);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("/problems/payload-too-large"), "{body}");

    // Without Expect, the answer comes before the body is sent.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = deposit_head(addr, &app.admin, 50_000, "");
    conn.write_all(head.as_bytes()).await.unwrap();
    let (status, _) = status_of(&until_closed(&mut conn).await);
    assert_eq!(status, 413);
    assert_eq!(app.mwi(MB).await["new"], 0);
}

#[tokio::test]
async fn stalled_and_crawling_bodies_end_with_408() {
    let app = TestApp::spawn_with(|c| {
        c.http.body_timeout_secs = 1;
        c.http.min_body_rate_bytes = 2000;
    })
    .await;
    app.create_mailbox(MB, json!({})).await;
    let addr = server_addr(&app);
    let wav = wav_ulaw(4.0);

    // A body that stops.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = deposit_head(addr, &app.admin, wav.len(), "");
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&wav[..2000]).await.unwrap();
    let (status, body) = status_of(&until_closed(&mut conn).await);
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("/problems/request-timeout"), "{body}");

    // A body that keeps coming, 100 bytes every 200 ms: 500 bytes/s, under the minimum.
    let conn = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let head = deposit_head(addr, &app.admin, wav.len(), "");
    let body = wav.clone();
    let crawl = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for piece in body.chunks(100) {
            wr.write_all(piece).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok::<_, std::io::Error>(wr)
    });
    let mut got = Vec::new();
    tokio::time::timeout(ACT, rd.read_to_end(&mut got))
        .await
        .expect("no answer to a crawling body")
        .ok();
    let (status, body) = status_of(&got);
    assert_eq!(status, 408, "{body}");
    crawl.abort();
    assert_eq!(app.mwi(MB).await["new"], 0, "nothing was stored");

    // A body sent at speed is stored.
    app.deposit_ok(MB, wav, "audio/wav").await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    let app = TestApp::spawn_with(|c| c.http.send_timeout_secs = 1).await;
    app.create_mailbox(MB, json!({"maxsecs": 600})).await;
    // 16-bit 16 kHz for 240 s: 7.7 MB, more than the sockets' buffers hold.
    let m = app
        .deposit_ok(
            MB,
            crate::common::audio::wav_pcm16(240.0, 16000),
            "audio/wav",
        )
        .await;
    let id = id_of(&m);
    let addr = server_addr(&app);
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut conn = sock.connect(addr).await.unwrap();
    let req = format!(
        "GET /v1/mailboxes/{MB}/messages/{id}/audio HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\n\r\n",
        app.admin
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    // Not reading: the server's writes block, and after the send timeout it gives up: its side
    // of the connection disappears while most of the audio is still unsent.
    let server = addr;
    let client = conn.local_addr().unwrap();
    helpers::until_within(
        "the server lets go of the stalled download",
        ACT,
        async || !server_side_open(server, client),
    )
    .await;
    drop(conn);
}

/// Whether the server still has its socket of the connection `client` → `server`.
fn server_side_open(server: SocketAddr, client: SocketAddr) -> bool {
    !server_sockets(server, client).is_empty()
}

/// Opens a deposit that sends its headers and part of its body, then holds.
async fn held_upload(addr: SocketAddr, token: &str) -> TcpStream {
    let wav = wav_ulaw(4.0);
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = deposit_head(addr, token, wav.len(), "");
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&wav[..1000]).await.unwrap();
    conn
}

/// A one-second µ-law deposit with `token`.
async fn small_deposit(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/mailboxes/{MB}/messages")))
        .bearer_auth(token)
        .header("content-type", "audio/wav")
        .body(wav_ulaw(1.0))
        .send()
        .await
        .unwrap()
}

/// Deposits until one is not refused 429 (the server has seen a held upload go).
async fn deposit_when_admitted(app: &TestApp, token: &str) {
    helpers::until_within(
        "admitted again after the held upload was dropped",
        ACT,
        async || {
            let r = small_deposit(app, token).await;
            if r.status() == 429 {
                return false;
            }
            assert_eq!(r.status(), 201);
            true
        },
    )
    .await;
}

#[tokio::test]
async fn uploads_in_flight_are_bounded_per_key_and_per_address() {
    let app = TestApp::spawn_with(|c| {
        c.http.max_uploads_per_key = 2;
        c.http.max_uploads_per_source = 3;
    })
    .await;
    app.create_mailbox(MB, json!({})).await;
    let addr = server_addr(&app);
    let other = app
        .services()
        .await
        .create_api_key("second pbx", voxmail::domain::Role::Pbx, None)
        .await
        .unwrap()
        .token;

    // The first upload of a held pair is admitted once the server has read its headers: make
    // sure of it with a third one refused.
    let held_a = held_upload(addr, &app.admin).await;
    let held_b = held_upload(addr, &app.admin).await;
    helpers::until_within("a third upload with the key refused", ACT, async || {
        let r = small_deposit(&app, &app.admin).await;
        if r.status() == 429 {
            assert_problem(r, 429, "too-many-uploads").await;
            return true;
        }
        // The held uploads were not all counted yet; that deposit went through.
        assert_eq!(r.status(), 201);
        false
    })
    .await;
    // Another key from the same address is admitted (the address holds 2 of 3).
    let held_c = held_upload(addr, &other).await;
    // Now the address is at its limit, whatever the key.
    helpers::until_within("the address limit applied", ACT, async || {
        let r = small_deposit(&app, &other).await;
        if r.status() == 429 {
            let p = assert_problem(r, 429, "too-many-uploads").await;
            assert!(p["detail"].as_str().unwrap().contains("address"), "{p}");
            return true;
        }
        assert_eq!(r.status(), 201);
        false
    })
    .await;
    // Listing is not an upload.
    let r = app
        .get(&format!("/v1/mailboxes/{MB}/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // When held uploads go, their holders may upload again.
    drop(held_a);
    drop(held_c);
    deposit_when_admitted(&app, &app.admin).await;
    deposit_when_admitted(&app, &other).await;
    drop(held_b);
}
