//! How many uploads (deposits, greetings) one API key or one client address may have in flight:
//! a bound on what a single caller can hold of the node (sockets, audio writers, decoders), so
//! one PBX gone wild or one stolen key cannot crowd out the others.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Who an upload counts against.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Holder {
    /// A hash of the credential (API key or UI session): the limiter keeps no secret.
    Key(u64),
    Source(IpAddr),
}

/// The uploads in flight per key and per client address.
#[derive(Clone)]
pub struct Uploads(Arc<Inner>);

struct Inner {
    per_key: u32,
    per_source: u32,
    hasher: RandomState,
    counts: Mutex<HashMap<Holder, u32>>,
}

impl Uploads {
    /// Limits of `per_key` and `per_source` uploads at once (0 = no limit).
    pub fn new(per_key: u32, per_source: u32) -> Self {
        Self(Arc::new(Inner {
            per_key,
            per_source,
            hasher: RandomState::new(),
            counts: Mutex::new(HashMap::new()),
        }))
    }

    /// Counts one more upload for `holders` (with their limits), or says which limit it is over.
    fn admit(&self, holders: &[(Holder, u32)]) -> Result<Admitted, &'static str> {
        let mut counts = self
            .0
            .counts
            .lock()
            .map_err(|_| "upload limiter poisoned")?;
        for (h, limit) in holders {
            if *limit > 0 && counts.get(h).copied().unwrap_or(0) >= *limit {
                return Err(match h {
                    Holder::Key(_) => "this API key",
                    Holder::Source(_) => "this client address",
                });
            }
        }
        for (h, _) in holders {
            *counts.entry(*h).or_insert(0) += 1;
        }
        Ok(Admitted {
            uploads: self.clone(),
            holders: holders.iter().map(|(h, _)| *h).collect(),
        })
    }
}

/// An admitted upload; uncounted when dropped.
struct Admitted {
    uploads: Uploads,
    holders: Vec<Holder>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.uploads.0.counts.lock() {
            for h in &self.holders {
                if let Some(n) = counts.get_mut(h) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(h);
                    }
                }
            }
        }
    }
}

/// Middleware of the upload routes: 429 `too-many-uploads` over a limit, before the body is read.
pub async fn limit(State(u): State<Uploads>, req: Request, next: Next) -> Response {
    let inner = &u.0;
    let mut holders = Vec::with_capacity(2);
    let credential = req
        .headers()
        .get(header::AUTHORIZATION)
        .or_else(|| req.headers().get(header::COOKIE));
    if let Some(c) = credential {
        holders.push((
            Holder::Key(inner.hasher.hash_one(c.as_bytes())),
            inner.per_key,
        ));
    }
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        holders.push((Holder::Source(addr.ip()), inner.per_source));
    }
    match u.admit(&holders) {
        Ok(admitted) => {
            let resp = next.run(req).await;
            drop(admitted);
            resp
        }
        Err(who) => {
            tracing::info!(holder = who, "upload refused: too many in flight");
            ApiError::new(
                "too-many-uploads",
                format!("{who} has the most uploads in flight it may have; retry later"),
            )
            .with_header(header::RETRY_AFTER, "1")
            .into_response()
        }
    }
}
