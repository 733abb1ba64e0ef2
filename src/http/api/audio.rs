//! Serving audio with ETag, If-None-Match and single byte ranges: the original bytes, or a
//! rendition chosen by `?format=`, an extension (`audio.opus`) or `Accept`.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::audio::{OutputFormat, Rendition};
use crate::config::AudioConfig;
use crate::domain::AudioFormat;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::service::{AudioStream, Original};

/// Output format of a recording; without one the original bytes are sent.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct AudioQuery {
    /// `wav`, `wav-ulaw`, `wav-alaw`, `ulaw`, `alaw`, `sln`, `sln16`, `gsm`, `wav49` or `opus`.
    pub format: Option<String>,
    /// Output rate of `wav`: 8000, 16000 or 48000 (default: the recording's rate).
    pub rate: Option<String>,
    /// Opus bitrate in bit/s: 8000, 12000, 16000, 24000, 32000, 48000 or 64000.
    pub bitrate: Option<String>,
}

fn unsupported(detail: impl Into<String>) -> ApiError {
    ApiError::new("unsupported-format", detail)
}

fn number(name: &str, v: Option<&str>) -> Result<Option<u32>, ApiError> {
    v.filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| unsupported(format!("{name} must be a whole number, not {v:?}")))
        })
        .transpose()
}

/// The rendition a request asks for, or `None` for the original. `ext` is the extension of an
/// `audio.<ext>` path; `?format=` wins over it, and both win over `Accept`.
pub fn choose(
    q: &AudioQuery,
    ext: Option<&str>,
    headers: &HeaderMap,
    original: AudioFormat,
    audio: &AudioConfig,
) -> Result<Option<Rendition>, ApiError> {
    let named = match (q.format.as_deref().filter(|f| !f.is_empty()), ext) {
        (Some(f), _) => Some(OutputFormat::parse(f).ok_or_else(|| {
            unsupported(format!(
                "format {f:?} is not offered: use wav, wav-ulaw, wav-alaw, ulaw, alaw, sln, sln16, \
                 gsm, wav49 or opus"
            ))
        })?),
        (None, Some(e)) => Some(OutputFormat::from_extension(e).ok_or_else(|| {
            unsupported(format!(
                "audio.{e} is not offered: use .wav, .ulaw, .alaw, .sln, .sln16, .gsm, .wav49 or .opus"
            ))
        })?),
        (None, None) => None,
    };
    let rate = number("rate", q.rate.as_deref())?;
    let bitrate = number("bitrate", q.bitrate.as_deref())?;
    let format = match named {
        Some(f) => f,
        None => match negotiate(headers, original) {
            Some(f) => f,
            None if rate.is_some() || bitrate.is_some() => {
                return Err(unsupported("rate and bitrate need a format"));
            }
            None => return Ok(None),
        },
    };
    Rendition::new(
        format,
        rate,
        bitrate,
        audio.opus_bitrate,
        audio.opus_complexity,
    )
    .map(Some)
    .map_err(unsupported)
}

/// Picks a rendition from `Accept` when the original's type is not acceptable but another offered
/// type is; the original wins ties (`*/*`, `audio/*`, or its own type).
fn negotiate(headers: &HeaderMap, original: AudioFormat) -> Option<OutputFormat> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    let mut ranges: Vec<(f32, String, Option<String>)> = accept
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let essence = parts.next()?.trim().to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut rate = None;
            for p in parts {
                if let Some((k, v)) = p.split_once('=') {
                    match k.trim().to_ascii_lowercase().as_str() {
                        "q" => q = v.trim().parse().unwrap_or(0.0),
                        "rate" => rate = Some(v.trim().to_owned()),
                        _ => {}
                    }
                }
            }
            (q > 0.0 && !essence.is_empty()).then_some((q, essence, rate))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    let own = original
        .content_type()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    for (_, essence, rate) in ranges {
        let is_original = essence == "*/*"
            || essence == "audio/*"
            || essence == own
            || (own == "audio/wav"
                && OutputFormat::from_media_type(&essence, None) == Some(OutputFormat::Wav));
        if is_original {
            return None;
        }
        if let Some(f) = OutputFormat::from_media_type(&essence, rate.as_deref()) {
            return Some(f);
        }
    }
    None
}

/// Answers a GET of a recording (`stem` names the download) in the chosen rendition.
pub async fn serve(
    s: &AppState,
    headers: &HeaderMap,
    original: (&str, AudioFormat, u64, &str),
    rendition: Option<Rendition>,
    stem: &str,
) -> Result<Response, ApiError> {
    let (key, format, size, sha) = original;
    let Some(r) = rendition else {
        let etag = format!("\"{sha}\"");
        let range = match want(headers, size, &etag) {
            Want::NotModified => return Ok(not_modified(&etag)),
            Want::Unsatisfiable => return Ok(unsatisfiable(size)),
            Want::Full => None,
            Want::Range(a, b) => Some((a, b)),
        };
        let audio = s.vm.open_blob(key, size, range).await?;
        let filename = format!("{stem}.{}", format.extension());
        return Ok(send(audio, format.content_type(), &etag, &filename));
    };
    // Renditions are deterministic functions of the original and the rendition's name (which
    // carries an encoder version), so the tag is known before anything is transcoded.
    let etag = format!("\"{sha}-{}\"", r.suffix());
    if let Want::NotModified = want(headers, u64::MAX, &etag) {
        return Ok(not_modified(&etag));
    }
    // Without a Range the size decides nothing: a cached rendition is opened at once.
    if !headers.contains_key(header::RANGE)
        && let Some(audio) =
            s.vm.open_cached_rendition(Original { key, format }, &r)
                .await?
    {
        let filename = format!("{stem}.{}", r.format.extension());
        return Ok(send(audio, r.format.content_type(), &etag, &filename));
    }
    let (rkey, rsize) = s.vm.rendition(Original { key, format }, &r).await?;
    let range = match want(headers, rsize, &etag) {
        Want::NotModified => return Ok(not_modified(&etag)),
        Want::Unsatisfiable => return Ok(unsatisfiable(rsize)),
        Want::Full => None,
        Want::Range(a, b) => Some((a, b)),
    };
    let audio = s.vm.open_blob(rkey.as_str(), rsize, range).await?;
    let filename = format!("{stem}.{}", r.format.extension());
    Ok(send(audio, r.format.content_type(), &etag, &filename))
}

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
    set(header::VARY, "Accept".into());
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
