//! Unsolicited SIP NOTIFY with an RFC 3842 message-summary body, over UDP (RFC 3261 non-INVITE
//! retransmission until a final response) or TCP. The message is small and fixed in shape, so it is
//! written here rather than through a SIP stack; a real SIP peer (sipp) checks it in the tests.

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket, lookup_host};

use crate::domain::{MailboxAddress, MwiCounts};

/// RFC 3261 timers: T1, T2 and the non-INVITE transaction timeout (Timer F = 64·T1).
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMER_F: Duration = Duration::from_secs(32);

/// Transport of a SIP target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A parsed `sip:[user@]host[:port][;transport=udp|tcp]` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub transport: Transport,
}

impl SipUri {
    /// Parses a target URI; the user part defaults to `asterisk`'s endpoint-less form (empty).
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("sip:").ok_or_else(|| {
            "a SIP target is written sip:[user@]host[:port][;transport=udp|tcp]".to_owned()
        })?;
        let (addr, params) = rest.split_once(';').unwrap_or((rest, ""));
        let mut transport = Transport::Udp;
        for p in params.split(';').filter(|p| !p.is_empty()) {
            match p.to_ascii_lowercase().as_str() {
                "transport=udp" => transport = Transport::Udp,
                "transport=tcp" => transport = Transport::Tcp,
                other => return Err(format!("unsupported SIP URI parameter {other:?}")),
            }
        }
        let (user, hostport) = match addr.split_once('@') {
            Some((u, h)) => (u.to_owned(), h),
            None => (String::new(), addr),
        };
        let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
            let (h, after) = stripped
                .split_once(']')
                .ok_or_else(|| "unterminated IPv6 address".to_owned())?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
                None => 5060,
            };
            (h.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| format!("bad port {p:?}"))?,
                ),
                None => (hostport.to_owned(), 5060),
            }
        };
        let valid_user = user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(c));
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
            || !valid_user
        {
            return Err(format!("bad SIP target {s:?}"));
        }
        Ok(Self {
            user,
            host,
            port,
            transport,
        })
    }

    fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn request_uri(&self) -> String {
        if self.user.is_empty() {
            format!("sip:{}", self.host_port())
        } else {
            format!("sip:{}@{}", self.user, self.host_port())
        }
    }
}

fn token() -> String {
    let n: u64 = rand::thread_rng().r#gen();
    format!("{n:016x}")
}

/// The RFC 3842 body: `Messages-Waiting`, `Message-Account`, `Voice-Message: N/O (UN/UO)`.
pub fn message_summary(account: &str, counts: &MwiCounts) -> String {
    format!(
        "Messages-Waiting: {}\r\nMessage-Account: {account}\r\nVoice-Message: {}\r\n",
        if counts.messages_waiting() {
            "yes"
        } else {
            "no"
        },
        counts.voice_message()
    )
}

/// Builds the NOTIFY request.
pub fn build_notify(
    target: &SipUri,
    local: SocketAddr,
    from_user: &str,
    address: &MailboxAddress,
    counts: &MwiCounts,
    call_id: &str,
    branch: &str,
) -> String {
    let transport = match target.transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    };
    let from_user = if from_user.is_empty() {
        "voxmail"
    } else {
        from_user
    };
    let account = format!("sip:{}@{}", address.mailbox, address.context);
    let body = message_summary(&account, counts);
    let to = target.request_uri();
    format!(
        "NOTIFY {to} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{from_user}@{local_ip}>;tag={tag}\r\n\
         To: <{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 NOTIFY\r\n\
         Contact: <sip:{from_user}@{local}>\r\n\
         Event: message-summary\r\n\
         Subscription-State: active\r\n\
         User-Agent: voxmail/{version}\r\n\
         Content-Type: application/simple-message-summary\r\n\
         Content-Length: {len}\r\n\
         \r\n\
         {body}",
        local = local,
        local_ip = local.ip(),
        tag = token(),
        version = env!("CARGO_PKG_VERSION"),
        len = body.len(),
    )
}

/// The status code of a SIP response to our request, if `msg` is one.
fn response_status(msg: &str, call_id: &str) -> Option<u16> {
    let first = msg.lines().next()?;
    let code = first.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
    let ours = msg.lines().any(|l| {
        let l = l.trim();
        let (name, value) = match l.split_once(':') {
            Some(kv) => kv,
            None => return false,
        };
        let name = name.trim().to_ascii_lowercase();
        (name == "call-id" || name == "i") && value.trim() == call_id
    });
    ours.then_some(code)
}

/// Sends a NOTIFY and waits for the final response. Ok = 2xx.
pub async fn notify(
    target: &SipUri,
    from_user: &str,
    address: &MailboxAddress,
    counts: &MwiCounts,
) -> Result<u16, String> {
    let remote = lookup_host(target.host_port())
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", target.host))?;
    let call_id = format!("{}@voxmail", token());
    let branch = token();
    match target.transport {
        Transport::Udp => {
            notify_udp(
                target, remote, from_user, address, counts, &call_id, &branch,
            )
            .await
        }
        Transport::Tcp => {
            notify_tcp(
                target, remote, from_user, address, counts, &call_id, &branch,
            )
            .await
        }
    }
}

fn final_status(code: u16) -> Result<u16, String> {
    if (200..300).contains(&code) {
        Ok(code)
    } else {
        Err(format!("the SIP peer answered {code}"))
    }
}

async fn notify_udp(
    target: &SipUri,
    remote: SocketAddr,
    from_user: &str,
    address: &MailboxAddress,
    counts: &MwiCounts,
    call_id: &str,
    branch: &str,
) -> Result<u16, String> {
    let bind: SocketAddr = if remote.is_ipv4() {
        "0.0.0.0:0".parse().expect("a literal address")
    } else {
        "[::]:0".parse().expect("a literal address")
    };
    let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    sock.connect(remote).await.map_err(|e| e.to_string())?;
    let local = sock.local_addr().map_err(|e| e.to_string())?;
    let msg = build_notify(target, local, from_user, address, counts, call_id, branch);
    let started = tokio::time::Instant::now();
    let mut interval = T1;
    let mut buf = vec![0u8; 8192];
    loop {
        sock.send(msg.as_bytes()).await.map_err(|e| e.to_string())?;
        let deadline = (tokio::time::Instant::now() + interval).min(started + TIMER_F);
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    match response_status(&text, call_id) {
                        // A provisional answer stops retransmission at T1 pace (RFC 3261 17.1.2.2).
                        Some(code) if code < 200 => interval = T2,
                        Some(code) => return final_status(code),
                        None => {}
                    }
                }
                Ok(Err(e)) => return Err(format!("SIP peer unreachable: {e}")),
                Err(_) => break,
            }
        }
        if started.elapsed() >= TIMER_F {
            return Err("no answer from the SIP peer (timer F)".into());
        }
        interval = (interval * 2).min(T2);
    }
}

async fn notify_tcp(
    target: &SipUri,
    remote: SocketAddr,
    from_user: &str,
    address: &MailboxAddress,
    counts: &MwiCounts,
    call_id: &str,
    branch: &str,
) -> Result<u16, String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(remote))
        .await
        .map_err(|_| "connecting to the SIP peer timed out".to_owned())?
        .map_err(|e| format!("cannot connect to the SIP peer: {e}"))?;
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let msg = build_notify(target, local, from_user, address, counts, call_id, branch);
    stream
        .write_all(msg.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + TIMER_F;
    loop {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .map_err(|_| "no answer from the SIP peer (timer F)".to_owned())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the SIP peer closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let body_len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    let k = k.trim().to_ascii_lowercase();
                    (k == "content-length" || k == "l").then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            buf.drain(..body_len.min(buf.len()));
            if let Some(code) = response_status(&head, call_id)
                && code >= 200
            {
                return final_status(code);
            }
        }
        if buf.len() > 64 * 1024 {
            return Err("oversized answer from the SIP peer".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sip_targets() {
        let u = SipUri::parse("sip:pbx1@127.0.0.1:5070;transport=tcp").unwrap();
        assert_eq!(u.user, "pbx1");
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 5070);
        assert_eq!(u.transport, Transport::Tcp);
        let u = SipUri::parse("sip:pbx.example.com").unwrap();
        assert_eq!((u.port, u.transport), (5060, Transport::Udp));
        assert!(SipUri::parse("http://x").is_err());
        assert!(SipUri::parse("sip:a b@host").is_err());
    }

    #[test]
    fn body_is_rfc_3842() {
        let c = MwiCounts {
            new: 2,
            old: 8,
            urgent_new: 0,
            urgent_old: 2,
            version: 1,
        };
        assert_eq!(
            message_summary("sip:1001@default", &c),
            "Messages-Waiting: yes\r\nMessage-Account: sip:1001@default\r\nVoice-Message: 2/8 (0/2)\r\n"
        );
    }

    #[test]
    fn recognises_our_final_response() {
        let r = "SIP/2.0 200 OK\r\nCall-ID: abc@voxmail\r\nCSeq: 1 NOTIFY\r\n\r\n";
        assert_eq!(response_status(r, "abc@voxmail"), Some(200));
        assert_eq!(response_status(r, "other"), None);
    }
}
