//! A TCP proxy between the server under test and one of its peers (a database), with a switch
//! that cuts the link as a network outage would: every open connection is closed, and new ones
//! are refused or left hanging. Restoring it lets new connections through again.
//!
//! Usage: `let proxy = TcpProxy::start(upstream).await;` then point the server at
//! `proxy.addr`; `proxy.cut(Outage::Blackhole)`, `proxy.restore()`.
#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the link fails while cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// New connections are accepted and closed at once (a peer that is down; the client sees
    /// the connection reset or closed before any answer).
    Refuse,
    /// New connections are accepted and never answered (a dead host, a firewall dropping
    /// packets): the client waits for its own timeout.
    Blackhole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Up,
    Cut(Outage),
}

/// A running proxy; stops (and closes everything) when dropped.
pub struct TcpProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: watch::Sender<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts a proxy on 127.0.0.1 (an ephemeral port) to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (state, states) = watch::channel(State::Up);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let mut rx = states.clone();
                tokio::spawn(async move {
                    let now = *rx.borrow_and_update();
                    match now {
                        State::Cut(Outage::Refuse) => drop(client),
                        // Held, silent, until the link changes (or the proxy stops).
                        State::Cut(Outage::Blackhole) => {
                            let _ = rx.changed().await;
                            drop(client);
                        }
                        State::Up => pipe(client, upstream, rx).await,
                    }
                });
            }
        });
        TcpProxy {
            addr,
            state,
            accept,
        }
    }

    /// Cuts the link: open connections are closed, new ones fail as `outage` says.
    pub fn cut(&self, outage: Outage) {
        self.state.send_replace(State::Cut(outage));
    }

    /// Restores the link: new connections go through.
    pub fn restore(&self) {
        self.state.send_replace(State::Up);
    }

    /// `url` with its host and port replaced by the proxy's (`scheme://user:pass@HOST:PORT/…`).
    pub fn url_for(&self, url: &str) -> String {
        let start = url.find("://").expect("URL with a scheme") + 3;
        let end = url[start..]
            .find(['/', '?'])
            .map_or(url.len(), |i| start + i);
        let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
        format!("{}{}{}", &url[..host_start], self.addr, &url[end..])
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut(Outage::Refuse);
    }
}

/// The host:port of a URL, resolved (for [`TcpProxy::start`]).
pub async fn upstream_of(url: &str) -> SocketAddr {
    let start = url.find("://").expect("URL with a scheme") + 3;
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    tokio::net::lookup_host(host_port)
        .await
        .expect("resolve upstream")
        .next()
        .expect("an upstream address")
}

/// Copies both ways until either side closes or the link is cut.
async fn pipe(mut client: TcpStream, upstream: SocketAddr, mut rx: watch::Receiver<State>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = async {
            loop {
                if rx.changed().await.is_err() || *rx.borrow() != State::Up {
                    return;
                }
            }
        } => {}
    }
}
