//! `GET /metrics`: the node's numbers in Prometheus' text exposition format (0.0.4).

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::events::queue::Outcome;
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::Auth;
use crate::service::{NodeMetrics, QueueHealth};

/// The media type Prometheus asks for and parses.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metrics for Prometheus (admin keys; a key limited to a context sees that context's numbers).
/// Totals, storage and queue backlogs are the cluster's (from the database, reused for up to
/// 5 s); delivery tries, audio workers and database connections are this node's.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, body = String, content_type = "text/plain"),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn metrics(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<impl IntoResponse, ApiError> {
    let m = s.vm.metrics(&p).await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&m)))
}

/// One metric family: its `# HELP` and `# TYPE` lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Self { out }
    }

    /// A sample of `name` with `labels` (name, value) pairs.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value as the format writes it: backslash, double quote and line feed escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Reads one number of a queue's backlog.
type Reading = fn(&QueueHealth) -> i64;

/// The exposition of `m`.
fn render(m: &NodeMetrics) -> String {
    let mut out = String::with_capacity(4096);
    let o = &mut out;
    let gauge = |o: &mut String, name: &str, help: &str, value: i64| {
        Family::new(o, name, "gauge", help).sample(name, &[], value);
    };
    Family::new(
        o,
        "voxmail_build_info",
        "gauge",
        "The running version (always 1).",
    )
    .sample(
        "voxmail_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );

    let t = &m.dashboard.totals;
    gauge(o, "voxmail_contexts", "Contexts (tenants).", t.contexts);
    gauge(o, "voxmail_mailboxes", "Mailboxes.", t.mailboxes);
    gauge(
        o,
        "voxmail_messages",
        "Messages in every folder.",
        t.messages,
    );
    let help = "Unread messages in INBOX and Urgent (what the lamps count).";
    gauge(o, "voxmail_messages_new", help, t.new_messages);
    gauge(
        o,
        "voxmail_audio_bytes",
        "Bytes of the messages' recordings.",
        t.bytes,
    );

    let name = "voxmail_context_messages";
    let mut f = Family::new(o, name, "gauge", "Messages per context.");
    for u in &m.dashboard.usage {
        f.sample(name, &[("context", &u.context)], u.messages);
    }
    let name = "voxmail_context_audio_bytes";
    let mut f = Family::new(o, name, "gauge", "Bytes of recordings per context.");
    for u in &m.dashboard.usage {
        f.sample(name, &[("context", &u.context)], u.bytes);
    }

    let h = &m.dashboard.health;
    let queues: [(&str, &QueueHealth); 4] = [
        ("email", &h.email),
        ("webhook", &h.webhooks),
        ("mwi", &h.mwi),
        ("asterisk", &h.asterisk),
    ];
    let backlog: [(&str, &str, Reading); 3] = [
        (
            "voxmail_queue_pending",
            "Jobs waiting to be delivered (asterisk: rows Asterisk wrote, waiting to be taken in).",
            |q| q.pending,
        ),
        (
            "voxmail_queue_failing",
            "Pending jobs that failed at least once (asterisk: waiting for over a minute).",
            |q| q.failing,
        ),
        (
            "voxmail_queue_dead",
            "Jobs given up on (asterisk: rows refused).",
            |q| q.dead,
        ),
    ];
    for (name, help, value) in backlog {
        let mut f = Family::new(o, name, "gauge", help);
        for (queue, q) in queues {
            f.sample(name, &[("queue", queue)], value(q));
        }
    }

    let name = "voxmail_queue_tries_total";
    let help = "Delivery tries this node made since it started, by how they ended.";
    let mut f = Family::new(o, name, "counter", help);
    for q in &m.tries {
        for (outcome, n) in Outcome::ALL.iter().zip(q.outcomes) {
            f.sample(
                name,
                &[("queue", q.queue), ("outcome", outcome.as_str())],
                n,
            );
        }
    }
    let name = "voxmail_queue_tries_in_flight";
    let mut f = Family::new(o, name, "gauge", "Delivery tries running on this node now.");
    for q in &m.tries {
        f.sample(name, &[("queue", q.queue)], q.in_flight);
    }

    let pools = [("decoders", m.decoders), ("transcoders", m.transcoders)];
    let name = "voxmail_audio_workers_running";
    let help = "Audio jobs running on this node (decoders: compressed uploads; transcoders: renditions, waveforms, attachments).";
    let mut f = Family::new(o, name, "gauge", help);
    for (pool, load) in pools {
        f.sample(name, &[("pool", pool)], load.running);
    }
    let name = "voxmail_audio_workers_waiting";
    let mut f = Family::new(
        o,
        name,
        "gauge",
        "Audio jobs waiting for a worker on this node.",
    );
    for (pool, load) in pools {
        f.sample(name, &[("pool", pool)], load.waiting);
    }

    let name = "voxmail_db_connections";
    let help = "Database connections this node holds, by state.";
    let mut f = Family::new(o, name, "gauge", help);
    f.sample(name, &[("state", "idle")], m.db_idle);
    f.sample(
        name,
        &[("state", "busy")],
        m.db_open.saturating_sub(m.db_idle),
    );
    let help = "Database connections this node may open (database.max_connections).";
    gauge(o, "voxmail_db_connections_max", help, i64::from(m.db_max));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }
}
