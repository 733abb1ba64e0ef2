//! Serving audio with ETag, If-None-Match and single byte ranges.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;
use crate::service::AudioStream;

/// What the request asks of a recording of `size` bytes with this entity tag.
pub enum Want {
    /// The client's copy is current.
    NotModified,
    /// The whole recording.
    Full,
    /// An inclusive byte range.
    Range(u64, u64),
    /// A range outside the recording.
    Unsatisfiable,
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// Decides from If-None-Match, If-Range and Range. Malformed or multi-part ranges are ignored
/// (the whole recording is sent), as RFC 9110 allows.
pub fn want(headers: &HeaderMap, size: u64, etag: &str) -> Want {
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && etag_matches(inm, etag)
    {
        return Want::NotModified;
    }
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Want::Full;
    };
    if let Some(ir) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && ir.trim() != etag
    {
        return Want::Full;
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Want::Full;
    };
    if spec.contains(',') {
        return Want::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Want::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if size == 0 {
        return Want::Unsatisfiable;
    }
    match (a.is_empty(), b.is_empty()) {
        (true, false) => match b.parse::<u64>() {
            Ok(0) => Want::Unsatisfiable,
            Ok(n) => Want::Range(size.saturating_sub(n), size - 1),
            Err(_) => Want::Full,
        },
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else {
                return Want::Full;
            };
            let end = if b.is_empty() {
                size - 1
            } else {
                match b.parse::<u64>() {
                    Ok(e) if e >= start => e.min(size - 1),
                    _ => return Want::Full,
                }
            };
            if start >= size {
                Want::Unsatisfiable
            } else {
                Want::Range(start, end)
            }
        }
        (true, true) => Want::Full,
    }
}

/// The 304 answer.
pub fn not_modified(etag: &str) -> Response {
    let mut r = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// The 416 answer.
pub fn unsatisfiable(size: u64) -> Response {
    ApiError::new("range-not-satisfiable", "the range lies outside the audio")
        .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
        .into_response()
}

/// A 200 or 206 carrying the audio.
pub fn send(audio: AudioStream, content_type: &str, etag: &str, filename: &str) -> Response {
    let (status, len) = match audio.range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, e - s + 1),
        None => (StatusCode::OK, audio.total),
    };
    let mut r = Response::new(Body::from_stream(audio.stream));
    *r.status_mut() = status;
    let h = r.headers_mut();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, content_type.to_owned());
    set(header::CONTENT_LENGTH, len.to_string());
    set(header::ACCEPT_RANGES, "bytes".into());
    set(header::ETAG, etag.to_owned());
    set(header::CACHE_CONTROL, "private, max-age=3600".into());
    set(
        header::CONTENT_DISPOSITION,
        format!("inline; filename=\"{filename}\""),
    );
    if let Some((s, e)) = audio.range {
        set(
            header::CONTENT_RANGE,
            format!("bytes {s}-{e}/{}", audio.total),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn parses_ranges() {
        let t = "\"x\"";
        assert!(matches!(
            want(&h(&[(header::RANGE, "bytes=0-9")]), 100, t),
            Want::Range(0, 9)
        ));
        assert!(matches!(
            want(&h(&[(header::RANGE, "bytes=90-")]), 100, t),
            Want::Range(90, 99)
        ));
        assert!(matches!(
            want(&h(&[(header::RANGE, "bytes=-10")]), 100, t),
            Want::Range(90, 99)
        ));
        assert!(matches!(
            want(&h(&[(header::RANGE, "bytes=100-")]), 100, t),
            Want::Unsatisfiable
        ));
        assert!(matches!(
            want(&h(&[(header::RANGE, "bytes=0-1,5-6")]), 100, t),
            Want::Full
        ));
        assert!(matches!(
            want(&h(&[(header::IF_NONE_MATCH, "\"x\"")]), 100, t),
            Want::NotModified
        ));
    }
}
