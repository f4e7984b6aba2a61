//! Requests to answers: the route table, one handler per route, and the one place answers of
//! a generation are cached and rendered. No request text ever reaches SQL: answers come from
//! the prepared generation, looked up by code in maps.
//!
//! A handler checks its parameters (400 for malformed, 404 for unknown), looks up what it
//! answers about once, and returns a [`Plan`]. An answer of a generation is taken from the
//! generation's cache or rendered, with its gzip form, on the render pool's
//! [`limits::RENDERS_MAX`] threads, so the async workers stay free for `/healthz` and cached
//! answers however heavy the uncached requests are.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::answer::{self, Answer};
use crate::api::{self, Format};
use crate::app::{App, Generation, Health};
use crate::data::{Commodity, Data};
use crate::limits;
use crate::pages;
use crate::params::{Query, code, segments, truncate};
use crate::releases;
use crate::reply::{Body, Embedded, Problem, Reply, kind_of, problem, send};

pub use crate::reply::saturated;

/// Renders an answer from the generation's data; runs on the blocking pool.
type Render = Box<dyn FnOnce(&Data) -> Answer + Send>;

/// What a handler decided.
enum Plan {
    Reply(Reply),
    /// The answer under this cache key, rendered when not cached yet.
    Cached(Generation, String, Render),
    /// `/status`: a read of the state DB.
    Status,
}

/// What a handler is given: the app, the path's parameters (the `*` segments, in order) and
/// the query.
struct Ctx<'a> {
    app: &'a Arc<App>,
    params: Vec<&'a str>,
    query: Query,
}

type Handler = fn(&Ctx<'_>) -> Result<Plan, Problem>;

/// Every route: its path segments (`*` takes any one segment) and its handler.
const ROUTES: &[(&[&str], Handler)] = &[
    (&[""], front_page),
    (&["commodity"], commodity_form),
    (&["commodity", "*"], commodity_page),
    (&["commodity", "*", "country"], country_form),
    (&["commodity", "*", "country", "*"], country_page),
    (&["revisions"], revisions_page),
    (&["status"], status_page),
    (&["healthz"], health),
    (&["api", "v1", "commodities"], api_commodities),
    (&["api", "v1", "global-balance"], api_global_balance),
    (&["api", "v1", "commodity-balance"], api_commodity_balance),
    (&["api", "v1", "revisions"], api_revisions),
    (&["api", "v1", "releases"], api_releases),
    (&["api", "v1", "release-changes"], api_release_changes),
    (&["api", "v1", "openapi.json"], openapi),
    (&["static", "*"], static_file),
];

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

async fn route(app: &Arc<App>, req: &Request<hyper::body::Incoming>) -> Result<Reply, Problem> {
    let path = req.uri().path();
    let segments = segments(path)?;
    let query = Query::parse(req.uri().query())?;
    let (handler, params) = ROUTES
        .iter()
        .find_map(|(pattern, handler)| {
            let params = matches(pattern, &segments)?;
            Some((*handler, params))
        })
        .ok_or_else(|| Problem::not_found(format!("no page at {}", truncate(path))))?;
    let ctx = Ctx { app, params, query };
    match handler(&ctx)? {
        Plan::Reply(reply) => Ok(reply),
        Plan::Cached(g, key, render) => cached(app, g, key, render).await,
        Plan::Status => status(app).await,
    }
}

/// The `*` segments of `segments` when they match `pattern`.
fn matches<'a>(pattern: &[&str], segments: &'a [String]) -> Option<Vec<&'a str>> {
    if pattern.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (p, s) in pattern.iter().zip(segments) {
        match *p {
            "*" => params.push(s.as_str()),
            literal if literal == s => {}
            _ => return None,
        }
    }
    Some(params)
}

/// The answer under `key` in the generation's cache, or rendered (with its gzip form) on the
/// render pool and kept. A request that times out leaves its render running (a queued one is
/// skipped); the pool's fixed threads bound how many run.
async fn cached(
    app: &Arc<App>,
    g: Generation,
    key: String,
    render: Render,
) -> Result<Reply, Problem> {
    if let Some(found) = g.data.answers.get(&key) {
        return Ok(Reply::Generation(g, found));
    }
    let g2 = g.clone();
    let answer = app
        .renders
        .run(move || {
            // Rendered meanwhile by a request queued before this one.
            if let Some(found) = g2.data.answers.get(&key) {
                return found;
            }
            let answer = render(&g2.data);
            let _ = answer.gzip();
            g2.data.answers.insert(&key, answer)
        })
        .await
        .ok_or_else(|| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the answer failed",
            )
        })?;
    Ok(Reply::Generation(g, answer))
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

/// The commodity named by `text`, with its position in [`Data::commodities`].
fn commodity<'a>(data: &'a Data, text: &str) -> Result<(usize, &'a Commodity), Problem> {
    let text = code("commodity", text)?;
    data.commodity_index(text)
        .map(|i| (i, &data.commodities[i]))
        .ok_or_else(|| Problem::not_found(format!("unknown commodity {text:?}")))
}

/// The country `text` of commodity `c`: its position in [`Commodity::countries`].
fn country(c: &Commodity, text: &str) -> Result<usize, Problem> {
    let text = code("country", text)?;
    c.country_index(text).ok_or_else(|| {
        Problem::not_found(format!(
            "commodity {} ({}) has no country {text:?}",
            c.code, c.name
        ))
    })
}

/// An optional code parameter, checked.
fn optional_code<'q>(query: &'q Query, name: &str, what: &str) -> Result<Option<&'q str>, Problem> {
    query.non_empty(name).map(|t| code(what, t)).transpose()
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

fn front_page(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let unit = ctx.query.unit()?;
    let g = generation(ctx.app)?;
    let at = g.data.commodity_index(pages::COFFEE);
    let app = ctx.app.clone();
    Ok(Plan::Cached(
        g,
        format!("page//{}", unit.name()),
        Box::new(move |d| match at {
            Some(i) => html(pages::commodity(
                &app.assets,
                d,
                &d.commodities[i],
                true,
                unit,
            )),
            None => html(pages::no_coffee(&app.assets, d)),
        }),
    ))
}

fn commodity_form(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let code = code("code", ctx.query.required("code")?)?;
    Ok(Plan::Reply(Reply::Redirect(format!("/commodity/{code}"))))
}

fn commodity_page(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let unit = ctx.query.unit()?;
    let g = generation(ctx.app)?;
    let (ci, c) = commodity(&g.data, ctx.params[0])?;
    let key = format!("page/commodity/{}/{}", c.code, unit.name());
    let app = ctx.app.clone();
    Ok(Plan::Cached(
        g,
        key,
        Box::new(move |d| {
            html(pages::commodity(
                &app.assets,
                d,
                &d.commodities[ci],
                false,
                unit,
            ))
        }),
    ))
}

fn country_form(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let c = code("commodity", ctx.params[0])?;
    let cc = code("cc", ctx.query.required("cc")?)?;
    Ok(Plan::Reply(Reply::Redirect(format!(
        "/commodity/{c}/country/{cc}"
    ))))
}

fn country_page(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let unit = ctx.query.unit()?;
    let g = generation(ctx.app)?;
    let (ci, c) = commodity(&g.data, ctx.params[0])?;
    let ki = country(c, ctx.params[1])?;
    let key = format!(
        "page/country/{}/{}/{}",
        c.code,
        c.countries[ki].code,
        unit.name()
    );
    let app = ctx.app.clone();
    Ok(Plan::Cached(
        g,
        key,
        Box::new(move |d| {
            let c = &d.commodities[ci];
            html(pages::country(&app.assets, d, c, &c.countries[ki], unit))
        }),
    ))
}

fn revisions_page(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let limit = ctx.query.limit()?;
    let commodity_text = optional_code(&ctx.query, "commodity", "commodity")?;
    let country_text = optional_code(&ctx.query, "country", "country")?;
    let g = generation(ctx.app)?;
    let d = &g.data;
    let c = commodity_text.map(|t| commodity(d, t)).transpose()?;
    let k = match (c, country_text) {
        (Some((_, c)), Some(cc)) => Some(country(c, cc)?),
        (None, Some(cc)) if d.country_name(cc).is_none() => {
            return Err(Problem::not_found(format!("unknown country {cc:?}")));
        }
        _ => None,
    };
    let key = format!(
        "page/revisions/{}/{}/{limit}",
        c.map_or("*", |(_, c)| c.code.as_str()),
        country_text.unwrap_or("*")
    );
    let ci = c.map(|(i, _)| i);
    let cc = country_text.map(str::to_owned);
    let app = ctx.app.clone();
    let render = move |d: &Data| {
        let c = ci.map(|i| &d.commodities[i]);
        let rows: Box<dyn Iterator<Item = &crate::data::Revision>> = match (c, k, &cc) {
            (Some(c), Some(k), _) => Box::new(by_index(d, &c.countries[k].revisions)),
            (Some(c), None, _) => Box::new(by_index(d, &c.revisions)),
            (None, _, Some(cc)) => Box::new(
                d.revisions
                    .iter()
                    .filter(move |r| d.places[r.place as usize].code == *cc),
            ),
            (None, _, None) => Box::new(d.revisions.iter()),
        };
        html(pages::revisions(
            &app.assets,
            d,
            c,
            cc.as_deref(),
            limit,
            rows,
        ))
    };
    Ok(Plan::Cached(g, key, Box::new(render)))
}

/// Revisions by their indices into [`Data::revisions`].
fn by_index<'a>(
    d: &'a Data,
    indices: &'a [u32],
) -> impl Iterator<Item = &'a crate::data::Revision> {
    indices.iter().map(|&i| &d.revisions[i as usize])
}

fn status_page(_ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    Ok(Plan::Status)
}

fn health(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let (status, body) = match ctx.app.health() {
        Health::Ok {
            exported_at,
            age_secs,
            confirmed_at,
            confirmed_age_secs,
        } => (
            StatusCode::OK,
            api::health_ok(
                &exported_at,
                age_secs,
                confirmed_at.as_deref(),
                confirmed_age_secs,
            ),
        ),
        Health::Unavailable(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            api::health_problem("unavailable", &reason),
        ),
        Health::Stale(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            api::health_problem("stale", &reason),
        ),
    };
    Ok(Plan::Reply(Reply::Fresh(
        status,
        Answer::new(answer::JSON, body),
    )))
}

fn api_commodities(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let format = ctx.query.format()?;
    let g = generation(ctx.app)?;
    let key = format!("api/commodities/{}", format.name());
    Ok(Plan::Cached(
        g,
        key,
        Box::new(move |d| api_answer(format, api::commodities(d, format))),
    ))
}

fn api_global_balance(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let format = ctx.query.format()?;
    let unit = ctx.query.unit()?;
    let text = code("commodity", ctx.query.required("commodity")?)?;
    let g = generation(ctx.app)?;
    let (ci, c) = commodity(&g.data, text)?;
    let key = format!("api/global/{}/{}/{}", c.code, format.name(), unit.name());
    Ok(Plan::Cached(
        g,
        key,
        Box::new(move |d| {
            api_answer(
                format,
                api::global_balance(&d.commodities[ci], format, unit),
            )
        }),
    ))
}

fn api_commodity_balance(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let format = ctx.query.format()?;
    let unit = ctx.query.unit()?;
    let text = code("commodity", ctx.query.required("commodity")?)?;
    let cc = ctx
        .query
        .get("country")
        .map(|t| code("country", t))
        .transpose()?;
    let year = ctx.query.market_year()?;
    if cc.is_none() && year.is_none() {
        return Err(Problem::bad(
            "commodity-balance needs country=CC (one country's history) or market_year=Y (every country of a year)",
        ));
    }
    let g = generation(ctx.app)?;
    let (ci, c) = commodity(&g.data, text)?;
    let (key, render): (String, Render) = match (cc, year) {
        (Some(cc), _) => {
            let ki = country(c, cc)?;
            let key = format!(
                "api/country/{}/{}/{}/{}/{}",
                c.code,
                c.countries[ki].code,
                year.map_or_else(|| "*".to_owned(), |y| y.to_string()),
                format.name(),
                unit.name()
            );
            let render = move |d: &Data| {
                let c = &d.commodities[ci];
                let body = api::country_balance(c, &c.countries[ki], year, format, unit);
                api_answer(format, body)
            };
            (key, Box::new(render))
        }
        (None, Some(year)) => {
            let key = format!(
                "api/year/{}/{year}/{}/{}",
                c.code,
                format.name(),
                unit.name()
            );
            let render = move |d: &Data| {
                api_answer(
                    format,
                    api::year_balance(&d.commodities[ci], year, format, unit),
                )
            };
            (key, Box::new(render))
        }
        (None, None) => unreachable!("refused above"),
    };
    Ok(Plan::Cached(g, key, render))
}

fn api_revisions(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let format = ctx.query.format()?;
    let limit = ctx.query.limit()?;
    let text = code("commodity", ctx.query.required("commodity")?)?;
    let cc = ctx
        .query
        .get("country")
        .map(|t| code("country", t))
        .transpose()?;
    let g = generation(ctx.app)?;
    let (ci, c) = commodity(&g.data, text)?;
    let k = cc.map(|cc| country(c, cc)).transpose()?;
    let key = format!(
        "api/revisions/{}/{}/{limit}/{}",
        c.code,
        k.map_or("*", |k| c.countries[k].code.as_str()),
        format.name()
    );
    let render = move |d: &Data| {
        let c = &d.commodities[ci];
        let indices = match k {
            Some(k) => &c.countries[k].revisions,
            None => &c.revisions,
        };
        api_answer(
            format,
            api::revisions(d, by_index(d, indices), limit, format),
        )
    };
    Ok(Plan::Cached(g, key, Box::new(render)))
}

fn api_releases(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let format = ctx.query.format()?;
    let g = generation(ctx.app)?;
    let key = format!("api/releases/{}", format.name());
    Ok(Plan::Cached(
        g,
        key,
        Box::new(move |d| api_answer(format, releases::releases_body(d, format))),
    ))
}

fn api_release_changes(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let format = ctx.query.format()?;
    let text = code("commodity", ctx.query.required("commodity")?)?;
    let asked = ctx.query.release("release")?;
    let g = generation(ctx.app)?;
    let (ci, c) = commodity(&g.data, text)?;
    let release = match asked {
        Some(r) if releases::known_release(&g.data, r) => Some(r.to_owned()),
        Some(r) => {
            return Err(Problem::not_found(format!(
                "no release {r:?} revised any value"
            )));
        }
        None => releases::latest_release(&g.data, c).map(str::to_owned),
    };
    let key = format!(
        "api/release-changes/{}/{}/{}",
        c.code,
        release.as_deref().unwrap_or("*"),
        format.name()
    );
    let render = move |d: &Data| {
        let body = releases::changes_body(d, &d.commodities[ci], release.as_deref(), format);
        api_answer(format, body)
    };
    Ok(Plan::Cached(g, key, Box::new(render)))
}

fn openapi(_ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    Ok(Plan::Reply(Reply::Asset(
        Embedded::OpenApi,
        format!("\"openapi-{}\"", crate::assets::build_id()),
        false,
    )))
}

fn static_file(ctx: &Ctx<'_>) -> Result<Plan, Problem> {
    let name = ctx.params[0];
    match ctx.app.assets.get(name) {
        Some(asset) => Ok(Plan::Reply(Reply::Asset(
            Embedded::Static(asset.name.clone()),
            format!("\"{}\"", asset.name),
            true,
        ))),
        None => Err(Problem::not_found(format!(
            "no file /static/{}",
            truncate(name)
        ))),
    }
}

/// `/status`: the state DB is read on the blocking pool, at most
/// [`limits::STATUS_READS_MAX`] reads at once. The permit moves into the read: a request that
/// times out leaves its read running, and counted, until it ends.
async fn status(app: &Arc<App>) -> Result<Reply, Problem> {
    let generation = app.generation();
    let health = app.health();
    let permit = app
        .status_reads
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Problem::unavailable("the server is shutting down", 1))?;
    let state_db = app.config.state_db.clone();
    let landing_dir = app.config.landing_dir.clone();
    let report = tokio::task::spawn_blocking(move || {
        let _permit = permit;
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
        generation: generation.as_ref(),
        health,
        fallback: app.fallback().map(|f| f.file_name),
    };
    Ok(Reply::Fresh(
        StatusCode::OK,
        html(pages::status(&app.assets, &report, &view)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_matches_its_own_pattern_only() {
        let seg = |p: &str| segments(p).unwrap();
        for (path, params) in [
            ("/", vec![]),
            ("/commodity/0711100", vec!["0711100"]),
            ("/commodity/0711100/country/BR", vec!["0711100", "BR"]),
            ("/static/app.css", vec!["app.css"]),
        ] {
            let s = seg(path);
            let found: Vec<_> = ROUTES.iter().filter_map(|(p, _)| matches(p, &s)).collect();
            assert_eq!(found.len(), 1, "{path}");
            assert_eq!(found[0], params, "{path}");
        }
        assert!(
            ROUTES
                .iter()
                .all(|(p, _)| matches(p, &seg("/nope/x")).is_none())
        );
    }
}
