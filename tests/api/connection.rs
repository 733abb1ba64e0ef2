//! The HTTP listener's accepted connections (issue 16): TCP_NODELAY on every one, so the last
//! segment of a response on a kept-alive connection does not wait for the client's delayed ACK.
//!
//! No timing here: the server runs in this process, so its side of the connection is one of this
//! process's file descriptors. The test finds it (the socket whose local address is the server's
//! and whose peer is the test's client) and reads the option off a duplicate of it.

use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::os::fd::{BorrowedFd, RawFd};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::TestApp;
use crate::common::audio::wav_ulaw;
use crate::helpers::id_of;

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
    assert_eq!(
        found.len(),
        1,
        "exactly one server-side socket {server} ← {client} in this process"
    );
    found.pop().unwrap()
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
