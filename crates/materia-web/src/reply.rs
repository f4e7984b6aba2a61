//! What a route answers, made into an HTTP response: conditional requests (`ETag`,
//! `Last-Modified`, 304), gzip when the client takes it, error answers (JSON on the API, a page
//! elsewhere), and the headers every answer carries.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::answer::{self, Answer};
use crate::api;
use crate::app::{App, Generation};
use crate::limits;
use crate::pages;

pub type Body = Full<Bytes>;

/// Pages may load only from this origin; nothing inline runs.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";
const NOT_CACHED: &str = "no-store";
const REVALIDATE: &str = "no-cache";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The generation an answer came from, for clients and tests that follow publications.
pub const EXPORTED_AT_HEADER: &str = "x-materia-exported-at";

/// Whether errors are JSON (API, health) or pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Json,
    Html,
}

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    message: String,
    retry_after_secs: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Problem {
        Problem {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn bad(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> Problem {
        Problem {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            retry_after_secs: Some(retry_after_secs),
        }
    }
}

/// What a route answers before headers are added.
pub enum Reply {
    /// From a generation: validators and `X-Materia-Exported-At` from it.
    Generation(Generation, Arc<Answer>),
    /// An embedded file, its strong validator, and whether its name carries its digest.
    Asset(Embedded, String, bool),
    /// Computed now, never cached (status, health).
    Fresh(StatusCode, Answer),
    Redirect(String),
}

/// Which embedded file.
pub enum Embedded {
    OpenApi,
    Static(String),
}

pub fn kind_of(path: &str) -> Kind {
    if path.starts_with("/api/") || path == "/healthz" {
        Kind::Json
    } else {
        Kind::Html
    }
}

/// True when the client takes gzip (`Accept-Encoding`, q-values honoured).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut star = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
                })
                .unwrap_or(1.0);
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(q > 0.0),
                "*" => star = Some(q > 0.0),
                _ => {}
            }
        }
    }
    gzip.or(star).unwrap_or(false)
}

/// `If-None-Match` (weak comparison) or, without it, `If-Modified-Since`.
fn not_modified(headers: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        let Ok(text) = value.to_str() else {
            return false;
        };
        return text
            .split(',')
            .any(|t| t.trim() == "*" || opaque(t) == opaque(etag));
    }
    if let (Some(value), Some(modified)) = (headers.get(header::IF_MODIFIED_SINCE), modified) {
        let since = value
            .to_str()
            .ok()
            .and_then(|t| httpdate::parse_http_date(t).ok());
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs()
        };
        return since.is_some_and(|s| secs(modified) <= secs(s));
    }
    false
}

pub fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn respond_with(status: StatusCode, answer: &Answer, gzip: bool) -> Response<Body> {
    let (body, encoded) = match answer.gzip() {
        Some(packed) if gzip => (packed.clone(), true),
        _ => (answer.body.clone(), false),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(answer.content_type),
    );
    if encoded {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if answer.body.len() >= limits::COMPRESS_BYTES_MIN {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if answer.content_type == answer::HTML {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    r
}

fn not_modified_response(etag: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    r.headers_mut().insert(header::ETAG, header_value(etag));
    r
}

pub fn send(app: &Arc<App>, headers: &HeaderMap, reply: Reply) -> Response<Body> {
    let gzip = accepts_gzip(headers);
    match reply {
        Reply::Generation(g, answer) => {
            let d = &g.data;
            let mut r = if not_modified(headers, &d.etag, Some(d.exported_at)) {
                not_modified_response(&d.etag)
            } else {
                let mut r = respond_with(StatusCode::OK, &answer, gzip);
                r.headers_mut().insert(header::ETAG, header_value(&d.etag));
                r
            };
            let h = r.headers_mut();
            h.insert(header::LAST_MODIFIED, header_value(&d.last_modified));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
            h.insert(EXPORTED_AT_HEADER, header_value(&d.exported_at_iso));
            r
        }
        Reply::Asset(which, etag, immutable) => {
            let cache = if immutable { IMMUTABLE } else { REVALIDATE };
            let mut r = if not_modified(headers, &etag, None) {
                not_modified_response(&etag)
            } else {
                let answer = match &which {
                    Embedded::OpenApi => &app.assets.openapi,
                    Embedded::Static(name) => &app.assets.get(name).expect("found by route").answer,
                };
                let mut r = respond_with(StatusCode::OK, answer, gzip);
                r.headers_mut().insert(header::ETAG, header_value(&etag));
                r
            };
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            r
        }
        Reply::Fresh(status, answer) => {
            let mut r = respond_with(status, &answer, gzip);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(NOT_CACHED));
            r
        }
        Reply::Redirect(to) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::SEE_OTHER;
            r.headers_mut().insert(header::LOCATION, header_value(&to));
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(NOT_CACHED));
            r
        }
    }
}

/// An error answer: `{"error": ...}` on the API, a page elsewhere.
pub fn problem(app: &Arc<App>, kind: Kind, p: &Problem) -> Response<Body> {
    let title = p.status.canonical_reason().unwrap_or("Error");
    let answer = match kind {
        Kind::Json => Answer::new(answer::JSON, api::error(&p.message)),
        Kind::Html => Answer::new(
            answer::HTML,
            pages::problem(&app.assets, p.status.as_u16(), title, &p.message),
        ),
    };
    let mut r = respond_with(p.status, &answer, false);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(NOT_CACHED));
    if let Some(secs) = p.retry_after_secs {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header_value(&secs.to_string()));
    }
    r
}

/// The answer to a connection the server has no room for: 503 with `Retry-After`, and close.
pub fn saturated(app: &Arc<App>, path: &str) -> Response<Body> {
    let mut r = problem(
        app,
        kind_of(path),
        &Problem::unavailable(
            "the server is at its connection limit; try again shortly",
            limits::SATURATED_RETRY_AFTER_SECS,
        ),
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn gzip_is_sent_only_when_accepted() {
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "gzip, deflate, br"
        )])));
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "br;q=1.0, gzip;q=0.5"
        )])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "gzip;q=0")])));
        assert!(accepts_gzip(&headers(&[("accept-encoding", "*")])));
        assert!(!accepts_gzip(&headers(&[(
            "accept-encoding",
            "*, gzip;q=0"
        )])));
        assert!(!accepts_gzip(&headers(&[])));
    }

    #[test]
    fn conditional_requests_match_weakly_and_by_date() {
        let etag = "W/\"abc\"";
        assert!(not_modified(
            &headers(&[("if-none-match", "W/\"abc\"")]),
            etag,
            None
        ));
        assert!(not_modified(
            &headers(&[("if-none-match", "\"x\", \"abc\"")]),
            etag,
            None
        ));
        assert!(not_modified(
            &headers(&[("if-none-match", "*")]),
            etag,
            None
        ));
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"x\"")]),
            etag,
            None
        ));
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let date = httpdate::fmt_http_date(t);
        assert!(not_modified(
            &headers(&[("if-modified-since", &date)]),
            etag,
            Some(t + Duration::from_millis(400))
        ));
        assert!(!not_modified(
            &headers(&[("if-modified-since", &date)]),
            etag,
            Some(t + Duration::from_secs(1))
        ));
        // If-None-Match wins over the date.
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"x\""), ("if-modified-since", &date)]),
            etag,
            Some(t)
        ));
    }
}
