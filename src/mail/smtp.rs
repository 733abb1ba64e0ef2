//! SMTP submission with lettre, and the retry classification of its failures.

use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{EmailConfig, SmtpTls};

/// How a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: a 4xx answer, a refused or broken connection, a timeout.
    #[error("{0}")]
    Transient(String),
    /// The server refused this client's setup rather than the mail: AUTH credentials or mechanism
    /// (530, 534, 535, 538), STARTTLS missing, an untrusted certificate. Retried like a transient
    /// failure, because fixing `[email]` and restarting must deliver the backlog; logged as an
    /// error so the operator sees it.
    #[error("{0}")]
    Setup(String),
    /// Retrying cannot help: a 5xx answer (e.g. 550 unknown user) or a message the client refused.
    #[error("{0}")]
    Permanent(String),
}

/// An SMTP client built from `[email]`.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
}

impl Mailer {
    /// Builds the transport (it connects per message). Fails on settings that cannot work: AUTH in
    /// clear to a remote host, an unreadable or invalid `tls_ca_file`.
    pub fn new(c: &EmailConfig) -> Result<Self, String> {
        c.check_transport()?;
        let tls = match c.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters(c)?),
            SmtpTls::Implicit => Tls::Wrapper(tls_parameters(c)?),
        };
        let timeout = Duration::from_secs(c.timeout_secs.max(1));
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host)
            .port(c.port)
            .tls(tls)
            .timeout(Some(timeout));
        if !c.username.is_empty() {
            builder = builder.credentials(Credentials::new(c.username.clone(), c.password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            timeout,
        })
    }

    /// Sends one message; `Ok` means the server accepted it (250 after DATA). The whole
    /// conversation is bounded by `timeout_secs`: lettre's async transport only bounds the TCP
    /// connect, and a server that accepts and then says nothing would hold a worker forever.
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(SendError::Transient(format!(
                "the SMTP conversation timed out after {} s",
                self.timeout.as_secs()
            ))),
        }
    }
}

/// The server's certificate must chain to the public roots or to `tls_ca_file`, and name `host`.
fn tls_parameters(c: &EmailConfig) -> Result<TlsParameters, String> {
    let mut b = TlsParameters::builder(c.host.clone());
    if !c.tls_ca_file.as_os_str().is_empty() {
        let path = c.tls_ca_file.display();
        let pem =
            std::fs::read(&c.tls_ca_file).map_err(|e| format!("email.tls_ca_file {path}: {e}"))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| format!("email.tls_ca_file {path} is not a PEM certificate: {e}"))?;
        b = b.add_root_certificate(cert);
    }
    if c.tls_accept_invalid_certs {
        b = b.dangerous_accept_invalid_certs(true);
    }
    b.build_rustls()
        .map_err(|e| format!("cannot set up TLS for SMTP: {e}"))
}

/// RFC 4954 answers about authentication (and 530 "must issue STARTTLS first").
const SETUP_CODES: &[u16] = &[530, 534, 535, 538];

fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    // The chain, each cause once (lettre's Display already repeats some of its sources).
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        src = inner.source();
    }
    let code = e.status().map(u16::from);
    if code.is_some_and(|c| SETUP_CODES.contains(&c)) {
        SendError::Setup(format!(
            "the SMTP server refused the login ({text}); check email.username, email.password \
             and email.tls"
        ))
    } else if e.is_tls() || text.contains("certificate") {
        // A refused certificate arrives as a connection error carrying rustls's "invalid peer
        // certificate: …".
        SendError::Setup(format!("TLS with the SMTP server failed: {text}"))
    } else if e.is_client() {
        // lettre's own refusals before anything is sent: no shared AUTH mechanism, STARTTLS not
        // offered while `tls = "starttls"` demands it.
        SendError::Setup(text)
    } else if e.is_permanent() {
        SendError::Permanent(text)
    } else {
        // 4xx, timeouts, refused connections and network failures: the server or the path to
        // it may recover.
        SendError::Transient(text)
    }
}
