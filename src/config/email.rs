//! Voicemail-to-email (`[email]`): SMTP, retries and the global Asterisk template defaults.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Voicemail-to-email settings. The template settings are Asterisk's `voicemail.conf` options and
/// are the global defaults; a context may override them (`PUT /v1/contexts/{name}/email`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// Send notification emails at all. When off, deposits queue no email jobs.
    pub enabled: bool,
    /// SMTP server host name.
    pub host: String,
    /// SMTP server port.
    pub port: u16,
    /// `none` (plain, for a local relay), `starttls` or `implicit`.
    pub tls: SmtpTls,
    /// SMTP AUTH user name; empty = no AUTH.
    pub username: String,
    /// SMTP AUTH password (never logged). AUTH over `tls = "none"` is refused at start unless
    /// `host` is a loopback address, so a password never crosses a network in clear.
    pub password: String,
    /// PEM file of CA certificates trusted for the SMTP server's certificate, besides the public
    /// (webpki) roots: for a relay with a private CA. Empty = public roots only.
    pub tls_ca_file: PathBuf,
    /// Accept any server certificate (expired, self-signed, wrong name). For lab relays only: it
    /// gives up TLS's protection against impostors, and voxmail logs a warning at start.
    pub tls_accept_invalid_certs: bool,
    /// Seconds one SMTP conversation may take.
    pub timeout_secs: u64,
    /// How long an email is retried after transient failures before it is marked failed (24 h).
    pub max_age_secs: u64,
    /// Delay before the first retry, in ms; it doubles per attempt, with ±50 % jitter.
    pub retry_base_ms: u64,
    /// Longest delay between retries, in ms.
    pub retry_max_ms: u64,
    /// Emails sent at the same time.
    pub concurrency: u32,
    /// Largest attachment, in bytes; a larger one is sent as Opus (the compact format), and if
    /// that is still too large the mail goes without it and says so in the body.
    pub attachment_max_bytes: u64,
    /// Seconds a sent or failed email job is kept (its state shows on the message) before the
    /// worker removes it (7 days). 0 = keep them forever.
    pub keep_finished_secs: u64,
    /// Envelope and From address (Asterisk `serveremail`); without '@' the host name is added.
    pub serveremail: String,
    /// Display name of the From address (Asterisk `fromstring`); empty = "Asterisk PBX".
    pub fromstring: String,
    /// Subject template (Asterisk `emailsubject`); empty = Asterisk's built-in subject.
    pub emailsubject: String,
    /// Body template (Asterisk `emailbody`); empty = Asterisk's built-in body.
    pub emailbody: String,
    /// Pager subject template (Asterisk `pagersubject`); empty = Asterisk's built-in one.
    pub pagersubject: String,
    /// Pager body template (Asterisk `pagerbody`); empty = Asterisk's built-in one.
    pub pagerbody: String,
    /// strftime format of `${VM_DATE}` (Asterisk `emaildateformat`).
    pub emaildateformat: String,
    /// Display name of the pager notice's From address (Asterisk `pagerfromstring`); empty =
    /// "Asterisk PBX".
    pub pagerfromstring: String,
    /// strftime format of `${VM_DATE}` in pager notices (Asterisk `pagerdateformat`).
    pub pagerdateformat: String,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            host: "localhost".into(),
            port: 25,
            tls: SmtpTls::None,
            username: String::new(),
            password: String::new(),
            tls_ca_file: PathBuf::new(),
            tls_accept_invalid_certs: false,
            timeout_secs: 30,
            max_age_secs: 24 * 3600,
            retry_base_ms: 5000,
            retry_max_ms: 600_000,
            concurrency: 4,
            attachment_max_bytes: 10 * 1024 * 1024,
            keep_finished_secs: 7 * 24 * 3600,
            serveremail: "asterisk".into(),
            fromstring: String::new(),
            emailsubject: String::new(),
            emailbody: String::new(),
            pagersubject: String::new(),
            pagerbody: String::new(),
            emaildateformat: "%A, %B %d, %Y at %r".into(),
            pagerfromstring: String::new(),
            pagerdateformat: "%A, %B %d, %Y at %r".into(),
        }
    }
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("enabled", &self.enabled)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_accept_invalid_certs", &self.tls_accept_invalid_certs)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_age_secs", &self.max_age_secs)
            .field("keep_finished_secs", &self.keep_finished_secs)
            .field("serveremail", &self.serveremail)
            .finish_non_exhaustive()
    }
}

impl EmailConfig {
    /// Refuses SMTP AUTH over plain SMTP to anything but this host: the password would cross the
    /// network in clear. A loopback relay (`localhost`, 127.0.0.0/8, ::1) is allowed.
    pub fn check_transport(&self) -> Result<(), String> {
        if self.tls == SmtpTls::None && !self.username.is_empty() && !is_loopback(&self.host) {
            return Err(format!(
                "email.username is set with email.tls = \"none\" and host {:?} is not loopback: \
                 the password would be sent in clear; use tls = \"starttls\" or \"implicit\"",
                self.host
            ));
        }
        Ok(())
    }

    /// Checks the templates and date formats (against `mail`'s parsers) and, when e-mail is on,
    /// the transport ([`EmailConfig::check_transport`]).
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (name, t) in [
            ("fromstring", &self.fromstring),
            ("emailsubject", &self.emailsubject),
            ("emailbody", &self.emailbody),
            ("pagersubject", &self.pagersubject),
            ("pagerbody", &self.pagerbody),
            ("pagerfromstring", &self.pagerfromstring),
        ] {
            crate::mail::template::validate(t)
                .map_err(|e| ConfigError::Value(format!("email.{name}: {e}")))?;
        }
        for (name, f) in [
            ("emaildateformat", &self.emaildateformat),
            ("pagerdateformat", &self.pagerdateformat),
        ] {
            if !crate::mail::compose::date_format_is_valid(f) {
                return Err(ConfigError::Value(format!(
                    "email.{name} is not a valid strftime format"
                )));
            }
        }
        if self.enabled {
            self.check_transport().map_err(ConfigError::Value)?;
        }
        Ok(())
    }
}

/// Whether `host` names this machine: `localhost` (or `*.localhost`) or a loopback address.
fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let lower = h.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (a local relay).
    None,
    /// STARTTLS is required after EHLO (submission, port 587).
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn smtp_auth_in_clear_is_refused_unless_the_relay_is_loopback() {
        let mut c = Config::default();
        c.email.username = "vm".into();
        c.email.password = "secret".into();
        for host in [
            "localhost",
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "[::1]",
            "relay.localhost",
        ] {
            c.email.host = host.into();
            assert!(c.validate().is_ok(), "{host} is loopback");
        }
        c.email.host = "smtp.example.org".into();
        let err = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("in clear"), "{err}");
        c.email.tls = SmtpTls::Starttls;
        assert!(c.validate().is_ok());
        c.email.tls = SmtpTls::None;
        c.email.username.clear();
        assert!(c.validate().is_ok(), "no AUTH, nothing to leak");
    }

    #[test]
    fn pager_templates_and_dates_are_validated() {
        let mut c = Config::default();
        c.email.pagerdateformat = "%Q".into();
        assert!(c.validate().is_err());
        c.email.pagerdateformat = "%H:%M".into();
        c.email.pagerfromstring = "VM ${VM_NAME".into();
        assert!(c.validate().is_err());
    }
}
