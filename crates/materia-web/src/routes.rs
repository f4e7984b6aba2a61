//! Requests to answers: routing, parameter checks (400 for malformed, 404 for unknown), the
//! per-generation answer cache, conditional requests (`ETag`, `Last-Modified`, 304), gzip,
//! and the headers every answer carries. No request text ever reaches SQL: answers come from
//! the prepared generation, looked up by code in maps.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::answer::{self, Answer};
use crate::api::{self, Format};
use crate::app::{App, Generation, Health};
use crate::data::Data;
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
enum Kind {
    Json,
    Html,
}

#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    message: String,
    retry_after_secs: Option<u64>,
}

impl Problem {
    fn new(status: StatusCode, message: impl Into<String>) -> Problem {
        Problem {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    fn bad(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Problem {
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
enum Reply {
    /// From a generation: validators and `X-Materia-Exported-At` from it.
    Generation(Generation, Arc<Answer>),
    /// An embedded file, its strong validator, and whether its name carries its digest.
    Asset(Embedded, String, bool),
    /// Computed now, never cached (status, health).
    Fresh(StatusCode, Answer),
    Redirect(String),
}

/// Which embedded file.
enum Embedded {
    OpenApi,
    Static(String),
}

/// Answers one request, within the request time bound.
pub async fn handle(app: Arc<App>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let kind = kind_of(req.uri().path());
    let mut response = match tokio::time::timeout(
        limits::secs(limits::REQUEST_TIMEOUT_SECS),
        respond(&app, &req),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => problem(
            &app,
            kind,
            &Problem::unavailable(
                format!(
                    "the answer took longer than {} s",
                    limits::REQUEST_TIMEOUT_SECS
                ),
                limits::SATURATED_RETRY_AFTER_SECS,
            ),
        ),
    };
    if app.is_closing() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    log::debug!(
        "{} {} {}",
        req.method(),
        req.uri().path(),
        response.status().as_u16()
    );
    response
}

fn kind_of(path: &str) -> Kind {
    if path.starts_with("/api/") || path == "/healthz" {
        Kind::Json
    } else {
        Kind::Html
    }
}

async fn respond(app: &Arc<App>, req: &Request<hyper::body::Incoming>) -> Response<Body> {
    let kind = kind_of(req.uri().path());
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = problem(
            app,
            kind,
            &Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed here: only GET and HEAD", req.method()),
            ),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let target_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > limits::URI_BYTES_MAX {
        return problem(
            app,
            kind,
            &Problem::new(
                StatusCode::URI_TOO_LONG,
                format!(
                    "the request target is {target_len} bytes, more than {}",
                    limits::URI_BYTES_MAX
                ),
            ),
        );
    }
    match route(app, req).await {
        Ok(reply) => send(app, req.headers(), reply),
        Err(p) => problem(app, kind, &p),
    }
}

/// The path's segments, percent-decoded; `/` is one empty segment.
fn segments(path: &str) -> Result<Vec<String>, Problem> {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split('/')
        .map(|s| {
            percent_decode(s)
                .ok_or_else(|| Problem::bad("the path is not valid percent-encoded UTF-8"))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Query parameters; a name given twice is malformed.
struct Query(HashMap<String, String>);

impl Query {
    fn parse(query: Option<&str>) -> Result<Query, Problem> {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let k: Cow<'_, str> = k;
            if map.insert(k.clone().into_owned(), v.into_owned()).is_some() {
                return Err(Problem::bad(format!(
                    "parameter {k} is given more than once"
                )));
            }
        }
        Ok(Query(map))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A parameter that pages submit empty for "all": empty is absent.
    fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    fn format(&self) -> Result<Format, Problem> {
        match self.get("format") {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(Problem::bad(format!(
                "format must be json or csv, not {:?}",
                truncate(other)
            ))),
        }
    }

    fn required(&self, name: &str) -> Result<&str, Problem> {
        self.get(name)
            .ok_or_else(|| Problem::bad(format!("parameter {name} is required")))
    }

    fn limit(&self) -> Result<usize, Problem> {
        match self.get("limit") {
            None => Ok(limits::REVISIONS_LIMIT_DEFAULT),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=limits::REVISIONS_LIMIT_MAX).contains(n))
                .ok_or_else(|| {
                    Problem::bad(format!(
                        "limit must be a whole number from 1 to {}, not {:?}",
                        limits::REVISIONS_LIMIT_MAX,
                        truncate(text)
                    ))
                }),
        }
    }

    fn market_year(&self) -> Result<Option<i32>, Problem> {
        self.get("market_year").map(market_year).transpose()
    }
}

/// At most 40 characters of request text in a message.
fn truncate(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// A commodity or country code: 1 to 16 ASCII letters or digits.
fn code<'a>(what: &str, text: &'a str) -> Result<&'a str, Problem> {
    let ok = !text.is_empty()
        && text.len() <= limits::CODE_CHARS_MAX
        && text.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(text)
    } else {
        Err(Problem::bad(format!(
            "{what} must be a code of 1 to {} letters or digits, not {:?}",
            limits::CODE_CHARS_MAX,
            truncate(text)
        )))
    }
}

fn market_year(text: &str) -> Result<i32, Problem> {
    text.parse::<i32>()
        .ok()
        .filter(|y| (limits::MARKET_YEAR_MIN..=limits::MARKET_YEAR_MAX).contains(y))
        .ok_or_else(|| {
            Problem::bad(format!(
                "market_year must be a year from {} to {}, not {:?}",
                limits::MARKET_YEAR_MIN,
                limits::MARKET_YEAR_MAX,
                truncate(text)
            ))
        })
}

fn generation(app: &Arc<App>) -> Result<Generation, Problem> {
    app.generation().ok_or_else(|| {
        let reason = match app.health() {
            Health::Unavailable(r) | Health::Stale(r) => r,
            Health::Ok { .. } => "the serving file is being read".to_owned(),
        };
        Problem::unavailable(
            format!("no serving data yet: {reason}"),
            limits::UNAVAILABLE_RETRY_AFTER_SECS,
        )
    })
}

fn commodity<'a>(data: &'a Data, text: &str) -> Result<&'a crate::data::Commodity, Problem> {
    let text = code("commodity", text)?;
    data.commodity(text)
        .ok_or_else(|| Problem::not_found(format!("unknown commodity {text:?}")))
}

fn country<'a>(
    c: &'a crate::data::Commodity,
    text: &str,
) -> Result<&'a crate::data::Country, Problem> {
    let text = code("country", text)?;
    c.country(text).ok_or_else(|| {
        Problem::not_found(format!(
            "commodity {} ({}) has no country {text:?}",
            c.code, c.name
        ))
    })
}

/// An answer of the generation, rendered once per key.
fn cached(g: &Generation, key: &str, render: impl FnOnce(&Data) -> Answer) -> Reply {
    let answer = g.data.answers.get_or_render(key, || render(&g.data));
    Reply::Generation(g.clone(), answer)
}

fn html(body: String) -> Answer {
    Answer::new(answer::HTML, body)
}

fn api_answer(format: Format, body: String) -> Answer {
    match format {
        Format::Json => Answer::new(answer::JSON, body),
        Format::Csv => Answer::new(answer::CSV, body),
    }
}

async fn route(app: &Arc<App>, req: &Request<hyper::body::Incoming>) -> Result<Reply, Problem> {
    let segments = segments(req.uri().path())?;
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let query = Query::parse(req.uri().query())?;
    match parts.as_slice() {
        [""] => {
            let g = generation(app)?;
            Ok(cached(&g, "page/", |d| match d.commodity(pages::COFFEE) {
                Some(c) => html(pages::commodity(&app.assets, d, c, true)),
                None => html(pages::no_coffee(&app.assets, d)),
            }))
        }
        ["commodity"] => {
            let code = code("code", query.required("code")?)?;
            Ok(Reply::Redirect(format!("/commodity/{code}")))
        }
        ["commodity", c] => {
            let g = generation(app)?;
            let c = commodity(&g.data, c)?;
            let key = format!("page/commodity/{}", c.code);
            Ok(cached(&g, &key, |d| {
                html(pages::commodity(&app.assets, d, c_of(d, &c.code), false))
            }))
        }
        ["commodity", c, "country"] => {
            let c = code("commodity", c)?;
            let cc = code("cc", query.required("cc")?)?;
            Ok(Reply::Redirect(format!("/commodity/{c}/country/{cc}")))
        }
        ["commodity", c, "country", cc] => {
            let g = generation(app)?;
            let c = commodity(&g.data, c)?;
            let k = country(c, cc)?;
            let key = format!("page/country/{}/{}", c.code, k.code);
            Ok(cached(&g, &key, |d| {
                let c = c_of(d, &c.code);
                html(pages::country(&app.assets, d, c, k_of(c, &k.code)))
            }))
        }
        ["revisions"] => {
            let limit = query.limit()?;
            let commodity_text = query
                .non_empty("commodity")
                .map(|t| code("commodity", t))
                .transpose()?;
            let country_text = query
                .non_empty("country")
                .map(|t| code("country", t))
                .transpose()?;
            let g = generation(app)?;
            let d = &g.data;
            let c = commodity_text.map(|t| commodity(d, t)).transpose()?;
            if let Some(cc) = country_text {
                match c {
                    Some(c) => {
                        country(c, cc)?;
                    }
                    None => {
                        if d.country_name(cc).is_none() {
                            return Err(Problem::not_found(format!("unknown country {cc:?}")));
                        }
                    }
                }
            }
            let key = format!(
                "page/revisions/{}/{}/{limit}",
                c.map_or("*", |c| c.code.as_str()),
                country_text.unwrap_or("*")
            );
            let render = |d: &Data| {
                let c = c.map(|c| c_of(d, &c.code));
                let rows: Box<dyn Iterator<Item = &crate::data::Revision>> = match (c, country_text)
                {
                    (Some(c), Some(cc)) => Box::new(
                        k_of(c, cc)
                            .revisions
                            .iter()
                            .map(|&i| &d.revisions[i as usize]),
                    ),
                    (Some(c), None) => {
                        Box::new(c.revisions.iter().map(|&i| &d.revisions[i as usize]))
                    }
                    (None, Some(cc)) => Box::new(
                        d.revisions
                            .iter()
                            .filter(move |r| d.places[r.place as usize].code == cc),
                    ),
                    (None, None) => Box::new(d.revisions.iter()),
                };
                html(pages::revisions(
                    &app.assets,
                    d,
                    c,
                    country_text,
                    limit,
                    rows,
                ))
            };
            if limit == limits::REVISIONS_LIMIT_DEFAULT {
                Ok(cached(&g, &key, render))
            } else {
                let answer = Arc::new(render(&g.data));
                Ok(Reply::Generation(g.clone(), answer))
            }
        }
        ["status"] => status(app).await,
        ["healthz"] => Ok(health(app)),
        ["api", "v1", "commodities"] => {
            let format = query.format()?;
            let g = generation(app)?;
            Ok(cached(
                &g,
                &format!("api/commodities/{}", format.name()),
                |d| api_answer(format, api::commodities(d, format)),
            ))
        }
        ["api", "v1", "global-balance"] => {
            let format = query.format()?;
            let text = code("commodity", query.required("commodity")?)?;
            let g = generation(app)?;
            let c = commodity(&g.data, text)?;
            let key = format!("api/global/{}/{}", c.code, format.name());
            Ok(cached(&g, &key, |d| {
                api_answer(format, api::global_balance(c_of(d, &c.code), format))
            }))
        }
        ["api", "v1", "commodity-balance"] => {
            let format = query.format()?;
            let text = code("commodity", query.required("commodity")?)?;
            let cc = query
                .get("country")
                .map(|t| code("country", t))
                .transpose()?;
            let year = query.market_year()?;
            if cc.is_none() && year.is_none() {
                return Err(Problem::bad(
                    "commodity-balance needs country=CC (one country's history) or market_year=Y (every country of a year)",
                ));
            }
            let g = generation(app)?;
            let c = commodity(&g.data, text)?;
            match cc {
                Some(cc) => {
                    let k = country(c, cc)?;
                    let key = format!(
                        "api/country/{}/{}/{}/{}",
                        c.code,
                        k.code,
                        year.map_or_else(|| "*".to_owned(), |y| y.to_string()),
                        format.name()
                    );
                    Ok(cached(&g, &key, |d| {
                        let c = c_of(d, &c.code);
                        api_answer(
                            format,
                            api::country_balance(c, k_of(c, &k.code), year, format),
                        )
                    }))
                }
                None => {
                    let year = year.expect("checked above");
                    let key = format!("api/year/{}/{year}/{}", c.code, format.name());
                    Ok(cached(&g, &key, |d| {
                        api_answer(format, api::year_balance(c_of(d, &c.code), year, format))
                    }))
                }
            }
        }
        ["api", "v1", "revisions"] => {
            let format = query.format()?;
            let limit = query.limit()?;
            let text = code("commodity", query.required("commodity")?)?;
            let cc = query
                .get("country")
                .map(|t| code("country", t))
                .transpose()?;
            let g = generation(app)?;
            let c = commodity(&g.data, text)?;
            let k = cc.map(|cc| country(c, cc)).transpose()?;
            let key = format!(
                "api/revisions/{}/{}/{limit}/{}",
                c.code,
                k.map_or("*", |k| k.code.as_str()),
                format.name()
            );
            let render = |d: &Data| {
                let c = c_of(d, &c.code);
                let indices = match k {
                    Some(k) => &k_of(c, &k.code).revisions,
                    None => &c.revisions,
                };
                let rows = indices.iter().map(|&i| &d.revisions[i as usize]);
                api_answer(format, api::revisions(d, rows, limit, format))
            };
            if limit == limits::REVISIONS_LIMIT_DEFAULT {
                Ok(cached(&g, &key, render))
            } else {
                let answer = Arc::new(render(&g.data));
                Ok(Reply::Generation(g.clone(), answer))
            }
        }
        ["api", "v1", "openapi.json"] => Ok(Reply::Asset(
            Embedded::OpenApi,
            format!("\"openapi-{}\"", crate::assets::build_id()),
            false,
        )),
        ["static", name] => match app.assets.get(name) {
            Some(asset) => Ok(Reply::Asset(
                Embedded::Static(asset.name.clone()),
                format!("\"{}\"", asset.name),
                true,
            )),
            None => Err(Problem::not_found(format!(
                "no file /static/{}",
                truncate(name)
            ))),
        },
        _ => Err(Problem::not_found(format!(
            "no page at {}",
            truncate(req.uri().path())
        ))),
    }
}

/// The commodity `code` of `d` (looked up again inside a render closure, which gets the data
/// by reference from the cache).
fn c_of<'a>(d: &'a Data, code: &str) -> &'a crate::data::Commodity {
    d.commodity(code).expect("looked up before rendering")
}

fn k_of<'a>(c: &'a crate::data::Commodity, code: &str) -> &'a crate::data::Country {
    c.country(code).expect("looked up before rendering")
}

fn health(app: &Arc<App>) -> Reply {
    let (status, body) = match app.health() {
        Health::Ok {
            exported_at,
            age_secs,
            confirmed_at,
            confirmed_age_secs,
        } => {
            let mut body = String::from("{\"status\":\"ok\",\"exported_at\":");
            api::json_str(&mut body, &exported_at);
            body.push_str(&format!(",\"age_secs\":{age_secs},\"confirmed_at\":"));
            match &confirmed_at {
                Some(at) => api::json_str(&mut body, at),
                None => body.push_str("null"),
            }
            match confirmed_age_secs {
                Some(a) => body.push_str(&format!(",\"confirmed_age_secs\":{a}}}")),
                None => body.push_str(",\"confirmed_age_secs\":null}"),
            }
            (StatusCode::OK, body)
        }
        Health::Unavailable(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            status_body("unavailable", &reason),
        ),
        Health::Stale(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            status_body("stale", &reason),
        ),
    };
    Reply::Fresh(status, Answer::new(answer::JSON, body))
}

fn status_body(status: &str, reason: &str) -> String {
    let mut body = String::from("{\"status\":");
    api::json_str(&mut body, status);
    body.push_str(",\"reason\":");
    api::json_str(&mut body, reason);
    body.push('}');
    body
}

async fn status(app: &Arc<App>) -> Result<Reply, Problem> {
    let generation = app.generation();
    let health = app.health();
    let _permit = app
        .status_reads
        .acquire()
        .await
        .map_err(|_| Problem::unavailable("the server is shutting down", 1))?;
    let state_db = app.config.state_db.clone();
    let landing_dir = app.config.landing_dir.clone();
    let report = tokio::task::spawn_blocking(move || {
        materia_status::report(&state_db, &landing_dir, &[], &[])
    })
    .await
    .map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the state DB failed: {e}"),
        )
    })?
    .map_err(|e| format!("{e:#}"));
    let view = pages::ServingView {
        path: app.serving_path().display().to_string(),
        generation: generation.as_ref(),
        health,
    };
    Ok(Reply::Fresh(
        StatusCode::OK,
        html(pages::status(&app.assets, &report, &view)),
    ))
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

fn header_value(text: &str) -> HeaderValue {
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

fn send(app: &Arc<App>, headers: &HeaderMap, reply: Reply) -> Response<Body> {
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
fn problem(app: &Arc<App>, kind: Kind, p: &Problem) -> Response<Body> {
    let title = p.status.canonical_reason().unwrap_or("Error");
    let answer = match kind {
        Kind::Json => Answer::new(answer::JSON, api::error(&p.message)),
        Kind::Html => html(pages::problem(
            &app.assets,
            p.status.as_u16(),
            title,
            &p.message,
        )),
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

    #[test]
    fn codes_and_years_are_checked() {
        assert!(code("commodity", "0711100").is_ok());
        assert!(code("country", "NA").is_ok());
        for bad in ["", "07 11", "x'; DROP TABLE", "ä", "12345678901234567"] {
            assert_eq!(
                code("commodity", bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
        assert_eq!(market_year("2024").unwrap(), 2024);
        for bad in ["1899", "2101", "20x4", "", "99999999999"] {
            assert!(market_year(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_percent_decoded_and_bad_encodings_refused() {
        assert_eq!(segments("/").unwrap(), vec![""]);
        assert_eq!(
            segments("/commodity/%30711100").unwrap(),
            vec!["commodity", "0711100"]
        );
        assert!(segments("/x/%zz").is_err());
        assert!(segments("/x/%ff").is_err());
        assert_eq!(
            segments("/static/..%2F..%2Fetc").unwrap(),
            vec!["static", "../../etc"]
        );
    }

    #[test]
    fn a_parameter_given_twice_is_malformed() {
        assert!(Query::parse(Some("commodity=1&commodity=2")).is_err());
        let q = Query::parse(Some("commodity=0711100&country=NA")).unwrap();
        assert_eq!(q.get("country"), Some("NA"));
        assert!(Query::parse(Some("format=xml")).unwrap().format().is_err());
        assert!(Query::parse(Some("limit=0")).unwrap().limit().is_err());
        assert!(Query::parse(Some("limit=10001")).unwrap().limit().is_err());
        assert_eq!(Query::parse(None).unwrap().limit().unwrap(), 100);
    }
}
