//! Publish → Server-Sent-Event latency with N connected subscribers.
//!
//! Opens N `text/event-stream` connections, waits until every one is live (warm-up event seen by
//! all), then publishes events one at a time: send, wait until all N subscribers got it (or the
//! timeout), record each subscriber's latency = "publish request sent" → "chunk carrying the event
//! read from the subscriber's socket". Prints p50/p90/p99/max over all (event, subscriber) pairs,
//! the lost count (pairs not delivered within the timeout) and the publish round-trip alone.
//!
//! Targets:
//! - `voxmail`: publish = `POST <pub-url>` with a µ-law body (a voicemail deposit), matched to the
//!   SSE event by the `message_id` in the deposit's 201 answer; needs `--token`.
//! - `nchan`: publish = `POST <pub-url>` with the body `bench-<k>` to an nchan publisher location,
//!   matched by the event's `data:`.
//!
//! Usage (arguments win over the environment):
//!   sse_latency --target voxmail|nchan --sub-url URL --pub-url URL [--token T] [--subs N]
//!               [--events 200] [--timeout-ms 2000] [--body-bytes 8000] [--connect-timeout-s 30]
//!               [--gap-ms 0]
//! Environment: SSE_TARGET, SSE_SUB_URL, SSE_PUB_URL, SSE_TOKEN, SSE_SUBS, SSE_EVENTS,
//!   SSE_TIMEOUT_MS, SSE_BODY_BYTES, SSE_GAP_MS (pause between events, default 0: back to back).
//! Last line of output: `RESULT target=… subs=… samples=… p50_us=… p90_us=… p99_us=… max_us=…
//!   lost=… late=… pub_p50_us=… pub_p99_us=… pub_max_us=… run_ms=… client_cpu_ms=…` for scripts
//!   (client_cpu_ms: this process's CPU time during the timed events, from /proc).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Voxmail,
    Nchan,
}

struct Opts {
    target: Target,
    sub_url: String,
    pub_url: String,
    token: Option<String>,
    subs: usize,
    events: usize,
    timeout: Duration,
    body_bytes: usize,
    connect_timeout: Duration,
    /// Pause between two events (after the previous one was delivered or timed out).
    gap: Duration,
}

fn usage(msg: &str) -> ! {
    eprintln!("sse_latency: {msg}");
    eprintln!(
        "usage: sse_latency --target voxmail|nchan --sub-url URL --pub-url URL [--token T] \
         [--subs N] [--events 200] [--timeout-ms 2000] [--body-bytes 8000] [--connect-timeout-s 30] \
         [--gap-ms 0]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut kv: HashMap<String, String> = HashMap::new();
    for (env, key) in [
        ("SSE_TARGET", "target"),
        ("SSE_SUB_URL", "sub-url"),
        ("SSE_PUB_URL", "pub-url"),
        ("SSE_TOKEN", "token"),
        ("SSE_SUBS", "subs"),
        ("SSE_EVENTS", "events"),
        ("SSE_TIMEOUT_MS", "timeout-ms"),
        ("SSE_BODY_BYTES", "body-bytes"),
        ("SSE_GAP_MS", "gap-ms"),
    ] {
        if let Ok(v) = std::env::var(env) {
            kv.insert(key.into(), v);
        }
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        // `cargo bench` passes `--bench` to harness-less benches: ignore it.
        if a == "--bench" {
            continue;
        }
        let Some(name) = a.strip_prefix("--") else {
            usage(&format!("unexpected argument {a}"))
        };
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => match args.next() {
                Some(v) => (name.to_owned(), v),
                None => usage(&format!("--{name} needs a value")),
            },
        };
        kv.insert(name, value);
    }
    let num = |k: &str, default: u64| -> u64 {
        kv.get(k).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("--{k} must be a number")))
        })
    };
    let target = match kv.get("target").map(String::as_str) {
        Some("voxmail") => Target::Voxmail,
        Some("nchan") => Target::Nchan,
        _ => usage("--target must be voxmail or nchan"),
    };
    let sub_url = kv
        .get("sub-url")
        .cloned()
        .unwrap_or_else(|| usage("--sub-url is required"));
    let pub_url = kv
        .get("pub-url")
        .cloned()
        .unwrap_or_else(|| usage("--pub-url is required"));
    let token = kv.get("token").cloned().filter(|t| !t.is_empty());
    if target == Target::Voxmail && token.is_none() {
        usage("--token is required for voxmail");
    }
    Opts {
        target,
        sub_url,
        pub_url,
        token,
        subs: num("subs", 1).max(1) as usize,
        events: num("events", 200).max(1) as usize,
        timeout: Duration::from_millis(num("timeout-ms", 2000)),
        body_bytes: num("body-bytes", 8000).max(1) as usize,
        connect_timeout: Duration::from_secs(num("connect-timeout-s", 30)),
        gap: Duration::from_millis(num("gap-ms", 0)),
    }
}

/// One event seen by one subscriber: its key (voxmail: message id; nchan: the data) and the
/// instant the chunk that completed it was read.
struct Arrival {
    sub: usize,
    key: String,
    at: Instant,
}

/// The key of one SSE frame (the text between blank lines), if it carries one.
fn frame_key(target: Target, frame: &str) -> Option<String> {
    let mut data = String::new();
    for line in frame.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    if data.is_empty() {
        return None;
    }
    match target {
        Target::Nchan => Some(data),
        Target::Voxmail => {
            // A substring search is enough and keeps the client cheap with 1,000 streams.
            const K: &str = "\"message_id\":\"";
            let start = data.find(K)? + K.len();
            let end = data[start..].find('"')? + start;
            Some(data[start..end].to_owned())
        }
    }
}

/// Index just past the first blank line (`\n\n` or `\r\n\r\n`) in `buf`, with the frame's end.
fn frame_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some((i, i + 2));
            }
            if buf[i + 1] == b'\r' && i + 2 < buf.len() && buf[i + 2] == b'\n' {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

async fn subscriber(
    idx: usize,
    client: reqwest::Client,
    opts: Arc<Opts>,
    connected: Arc<AtomicUsize>,
    out: mpsc::UnboundedSender<Arrival>,
) {
    let mut req = client
        .get(&opts.sub_url)
        .header("Accept", "text/event-stream");
    if let Some(t) = &opts.token {
        req = req.bearer_auth(t);
    }
    let resp = match req.send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            eprintln!("subscriber {idx}: HTTP {}", r.status());
            return;
        }
        Err(e) => {
            eprintln!("subscriber {idx}: {e}");
            return;
        }
    };
    connected.fetch_add(1, Ordering::SeqCst);
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    while let Some(chunk) = body.next().await {
        let at = Instant::now();
        let Ok(chunk) = chunk else { break };
        buf.extend_from_slice(&chunk);
        let mut consumed = 0;
        while let Some((end, next)) = frame_end(&buf[consumed..]) {
            let frame = String::from_utf8_lossy(&buf[consumed..consumed + end]);
            if let Some(key) = frame_key(opts.target, &frame)
                && out.send(Arrival { sub: idx, key, at }).is_err()
            {
                return;
            }
            consumed += next;
        }
        buf.drain(..consumed);
    }
}

/// Publishes one event; returns its key and the publish round-trip.
async fn publish(
    client: &reqwest::Client,
    opts: &Opts,
    body: &bytes::Bytes,
    n: usize,
) -> Result<(String, Instant, Duration), String> {
    match opts.target {
        Target::Voxmail => {
            let req = client
                .post(&opts.pub_url)
                .bearer_auth(opts.token.as_deref().unwrap_or_default())
                .header("Content-Type", "audio/PCMU")
                .body(body.clone());
            let t0 = Instant::now();
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            let rtt = t0.elapsed();
            if status.as_u16() != 201 {
                return Err(format!("deposit answered {status}: {text}"));
            }
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let id = v
                .get("id")
                .or_else(|| v.get("message_id"))
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("no message id in {text}"))?;
            Ok((id.to_owned(), t0, rtt))
        }
        Target::Nchan => {
            let key = format!("bench-{n}");
            let req = client.post(&opts.pub_url).body(key.clone());
            let t0 = Instant::now();
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let _ = resp.bytes().await;
            let rtt = t0.elapsed();
            if !status.is_success() {
                return Err(format!("publish answered {status}"));
            }
            Ok((key, t0, rtt))
        }
    }
}

/// Result of one published event.
struct Round {
    rtt: Duration,
    /// Latency of each subscriber that got the event in time.
    latencies: Vec<Duration>,
}

/// Publishes one event and collects the arrivals for it until all `subs` subscribers got it or
/// `timeout` has passed since the publish request was sent. Arrivals of other keys (late ones of
/// earlier events) are counted in `late`.
async fn round(
    client: &reqwest::Client,
    opts: &Opts,
    body: &bytes::Bytes,
    n: usize,
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    timeout: Duration,
    late: &mut usize,
) -> Result<Round, String> {
    // Arrivals can come before the publish answer (voxmail's message id is only known then), so
    // buffer them while the request is in flight.
    let mut early: Vec<Arrival> = Vec::new();
    let started = Instant::now();
    let (key, t0, rtt) = {
        let p = publish(client, opts, body, n);
        tokio::pin!(p);
        loop {
            tokio::select! {
                biased;
                r = &mut p => break r?,
                a = rx.recv() => early.push(a.ok_or("all subscribers ended")?),
            }
            if started.elapsed() > timeout * 2 {
                return Err("publish did not answer".into());
            }
        }
    };
    let deadline = t0 + timeout;
    let mut seen = vec![false; opts.subs];
    let mut latencies = Vec::with_capacity(opts.subs);
    let mut take = |a: Arrival, seen: &mut Vec<bool>, latencies: &mut Vec<Duration>| {
        if a.key == key && a.at <= deadline {
            if !seen[a.sub] {
                seen[a.sub] = true;
                latencies.push(a.at.saturating_duration_since(t0));
            }
        } else {
            *late += 1;
        }
    };
    for a in early {
        take(a, &mut seen, &mut latencies);
    }
    while latencies.len() < opts.subs {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match tokio::time::timeout(deadline - now, rx.recv()).await {
            Ok(Some(a)) => take(a, &mut seen, &mut latencies),
            Ok(None) => return Err("all subscribers ended".into()),
            Err(_) => break,
        }
    }
    Ok(Round { rtt, latencies })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CPU time (user + system) this process has used, from /proc (Linux; `None` elsewhere).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let opts = Arc::new(parse_opts());
    let target = match opts.target {
        Target::Voxmail => "voxmail",
        Target::Nchan => "nchan",
    };
    // One client for the subscribers: HTTP/1.1, one connection per stream, no idle limit.
    let sub_client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.subs + 8)
        .tcp_nodelay(true)
        .connect_timeout(opts.connect_timeout)
        .build()
        .expect("http client");
    // A separate client for the publisher, so its keep-alive connection is never a stream.
    let pub_client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(opts.timeout * 2)
        .build()
        .expect("http client");

    let (tx, mut rx) = mpsc::unbounded_channel();
    let connected = Arc::new(AtomicUsize::new(0));
    let t_connect = Instant::now();
    let mut tasks = Vec::with_capacity(opts.subs);
    for i in 0..opts.subs {
        tasks.push(tokio::spawn(subscriber(
            i,
            sub_client.clone(),
            opts.clone(),
            connected.clone(),
            tx.clone(),
        )));
        // Open the streams in small batches so the listen backlogs never overflow.
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    drop(tx);
    while connected.load(Ordering::SeqCst) < opts.subs {
        if t_connect.elapsed() > opts.connect_timeout {
            eprintln!(
                "only {} of {} subscribers connected after {:?}",
                connected.load(Ordering::SeqCst),
                opts.subs,
                opts.connect_timeout
            );
            std::process::exit(1);
        }
        if tasks.iter().all(|t| t.is_finished()) {
            eprintln!("every subscriber ended before connecting");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connect_time = t_connect.elapsed();

    let body = bytes::Bytes::from(vec![0xFFu8; opts.body_bytes]);
    let mut late = 0usize;
    // Warm-up: the 200 header can precede the subscription being registered, so publish until
    // every subscriber has seen one event (up to 5 attempts with a generous timeout).
    let mut warm = false;
    for attempt in 0..5 {
        let r = round(
            &pub_client,
            &opts,
            &body,
            usize::MAX - attempt,
            &mut rx,
            Duration::from_secs(5),
            &mut late,
        )
        .await
        .unwrap_or_else(|e| {
            eprintln!("warm-up publish failed: {e}");
            std::process::exit(1)
        });
        if r.latencies.len() == opts.subs {
            warm = true;
            break;
        }
        eprintln!(
            "warm-up {attempt}: {} of {} subscribers saw the event; retrying",
            r.latencies.len(),
            opts.subs
        );
    }
    if !warm {
        eprintln!("subscribers never all saw a warm-up event");
        std::process::exit(1);
    }
    // Discard anything still trickling in from the warm-up.
    tokio::time::sleep(Duration::from_millis(50)).await;
    while rx.try_recv().is_ok() {}
    late = 0;

    let mut all: Vec<Duration> = Vec::with_capacity(opts.subs * opts.events);
    let mut rtts: Vec<Duration> = Vec::with_capacity(opts.events);
    let mut lost = 0usize;
    let mut worst_rounds: Vec<(Duration, usize)> = Vec::new();
    let t_run = Instant::now();
    let cpu0 = cpu_time();
    for n in 0..opts.events {
        if n > 0 && !opts.gap.is_zero() {
            tokio::time::sleep(opts.gap).await;
        }
        let r = round(
            &pub_client,
            &opts,
            &body,
            n,
            &mut rx,
            opts.timeout,
            &mut late,
        )
        .await
        .unwrap_or_else(|e| {
            eprintln!("event {n}: {e}");
            std::process::exit(1)
        });
        lost += opts.subs - r.latencies.len();
        rtts.push(r.rtt);
        if let Some(m) = r.latencies.iter().max() {
            worst_rounds.push((*m, n));
        }
        all.extend(r.latencies);
    }
    let run_time = t_run.elapsed();
    let client_cpu = match (cpu0, cpu_time()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    // Late arrivals of the last event(s).
    tokio::time::sleep(Duration::from_millis(100)).await;
    while rx.try_recv().is_ok() {
        late += 1;
    }
    for t in &tasks {
        t.abort();
    }

    all.sort_unstable();
    rtts.sort_unstable();
    worst_rounds.sort_unstable_by(|a, b| b.cmp(a));
    let (p50, p90, p99, max) = (
        pct(&all, 50.0),
        pct(&all, 90.0),
        pct(&all, 99.0),
        all.last().copied().unwrap_or_default(),
    );
    println!(
        "{target}: {} subscribers connected in {} ms; {} events in {} ms (client CPU {} ms)",
        opts.subs,
        connect_time.as_millis(),
        opts.events,
        run_time.as_millis(),
        client_cpu.as_millis()
    );
    println!(
        "{target}: publish→event latency over {} deliveries: p50 {} ms, p90 {} ms, p99 {} ms, \
         max {} ms; lost {} (not within {} ms), late {}",
        all.len(),
        ms(p50),
        ms(p90),
        ms(p99),
        ms(max),
        lost,
        opts.timeout.as_millis(),
        late
    );
    println!(
        "{target}: publish round-trip alone: p50 {} ms, p99 {} ms, max {} ms",
        ms(pct(&rtts, 50.0)),
        ms(pct(&rtts, 99.0)),
        ms(rtts.last().copied().unwrap_or_default())
    );
    let worst: Vec<String> = worst_rounds
        .iter()
        .take(5)
        .map(|(d, n)| format!("#{n}:{}", ms(*d)))
        .collect();
    println!(
        "{target}: slowest events (last subscriber, ms): {}",
        worst.join(" ")
    );
    let us = |d: Duration| d.as_micros();
    println!(
        "RESULT target={target} subs={} samples={} p50_us={} p90_us={} p99_us={} max_us={} \
         lost={lost} late={late} pub_p50_us={} pub_p99_us={} pub_max_us={} run_ms={} \
         client_cpu_ms={}",
        opts.subs,
        all.len(),
        us(p50),
        us(p90),
        us(p99),
        us(max),
        us(pct(&rtts, 50.0)),
        us(pct(&rtts, 99.0)),
        us(rtts.last().copied().unwrap_or_default()),
        run_time.as_millis(),
        client_cpu.as_millis(),
    );
}
