//! A minimal Asterisk Manager Interface client: log in once, keep the connection, send
//! `MWIUpdate`, reconnect on failure.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::domain::{MailboxAddress, MwiCounts};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A logged-in manager connection.
pub struct AmiConnection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
}

fn field_ok(v: &str) -> bool {
    !v.contains('\r') && !v.contains('\n')
}

impl AmiConnection {
    /// Connects to `host:port`, reads the banner and logs in (with events off).
    pub async fn connect(addr: &str, username: &str, secret: &str) -> Result<Self, String> {
        if !field_ok(username) || !field_ok(secret) {
            return Err("AMI credentials must not contain line breaks".into());
        }
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to AMI at {addr} timed out"))?
            .map_err(|e| format!("cannot connect to AMI at {addr}: {e}"))?;
        let (r, w) = stream.into_split();
        let mut conn = Self {
            reader: BufReader::new(r),
            writer: w,
            next_id: 1,
        };
        let mut banner = String::new();
        tokio::time::timeout(TIMEOUT, conn.reader.read_line(&mut banner))
            .await
            .map_err(|_| "no AMI banner".to_owned())?
            .map_err(|e| e.to_string())?;
        if !banner.starts_with("Asterisk Call Manager") {
            return Err(format!("not an AMI server (banner {:?})", banner.trim()));
        }
        conn.action(&[
            ("Action", "Login"),
            ("Username", username),
            ("Secret", secret),
            ("Events", "off"),
        ])
        .await
        .map_err(|e| format!("AMI login failed: {e}"))?;
        Ok(conn)
    }

    /// Sends an action and waits for its response; Ok when `Response: Success`.
    async fn action(&mut self, fields: &[(&str, &str)]) -> Result<(), String> {
        let id = self.next_id.to_string();
        self.next_id += 1;
        let mut msg = String::new();
        for (k, v) in fields {
            msg.push_str(k);
            msg.push_str(": ");
            msg.push_str(v);
            msg.push_str("\r\n");
        }
        msg.push_str("ActionID: ");
        msg.push_str(&id);
        msg.push_str("\r\n\r\n");
        tokio::time::timeout(TIMEOUT, self.writer.write_all(msg.as_bytes()))
            .await
            .map_err(|_| "AMI write timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        loop {
            let block = self.read_block().await?;
            let get = |name: &str| {
                block
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            };
            // Skip events and answers to other actions.
            if get("ActionID") != Some(id.as_str()) || get("Response").is_none() {
                continue;
            }
            return match get("Response") {
                Some(r) if r.eq_ignore_ascii_case("success") => Ok(()),
                _ => Err(get("Message").unwrap_or("AMI error").to_owned()),
            };
        }
    }

    async fn read_block(&mut self) -> Result<Vec<(String, String)>, String> {
        let mut block = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(TIMEOUT, self.reader.read_line(&mut line))
                .await
                .map_err(|_| "AMI read timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("AMI closed the connection".into());
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if block.is_empty() {
                    continue;
                }
                return Ok(block);
            }
            if let Some((k, v)) = line.split_once(':') {
                block.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
    }

    /// `Action: MWIUpdate` for a mailbox (res_mwi_external_ami).
    pub async fn mwi_update(
        &mut self,
        address: &MailboxAddress,
        counts: &MwiCounts,
    ) -> Result<(), String> {
        let mailbox = address.to_string();
        let old = counts.old.to_string();
        let new = counts.new.to_string();
        self.action(&[
            ("Action", "MWIUpdate"),
            ("Mailbox", &mailbox),
            ("OldMessages", &old),
            ("NewMessages", &new),
        ])
        .await
    }
}
