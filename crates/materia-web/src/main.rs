//! `materia-web`: the coffee market dashboard and its JSON API, read-only on the serving file.
//!
//! `main` parses arguments, takes the listening socket (systemd's, or its own), builds the
//! runtime and hands over to [`server::serve`]. Exit codes: 0 after a clean shutdown (SIGTERM,
//! SIGINT), 1 when serving fails (the address is taken), 2 on usage or configuration errors.

mod answer;
mod api;
mod app;
mod assets;
mod data;
mod format;
mod html;
mod limits;
mod pages;
mod params;
mod releases;
mod render;
mod reply;
mod routes;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use step_runtime::env_vars;
use step_runtime::exit::{EXIT_FAILURE, EXIT_USAGE};

/// Serve the coffee market dashboard and its JSON API from the serving file
///
/// Reads the serving file that export-serving publishes (read-only; each new generation is
/// picked up as it is published) and the state DB (read-only, for /status). Pages: /,
/// /commodity/CODE, /commodity/CODE/country/CC, /revisions, /status. API: /api/v1/...
/// (OpenAPI document at /api/v1/openapi.json). Health: /healthz. Under systemd socket
/// activation (LISTEN_FDS) it serves the socket it is given and ignores --listen.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address and port to listen on
    #[arg(long, env = env_vars::MATERIA_WEB_LISTEN, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// The serving DuckDB file that export-serving publishes
    #[arg(long, env = env_vars::SERVING_DUCKDB_PATH, value_name = "PATH", default_value = "data/analytics.duckdb")]
    serving: PathBuf,

    /// The state DB, shown on /status [default: $LANDING_DIR/.state.sqlite]
    #[arg(long, env = env_vars::STATE_DB, value_name = "PATH")]
    state_db: Option<PathBuf>,

    /// Landing directory, only to find the default state DB
    #[arg(long, env = env_vars::LANDING_DIR, value_name = "DIR", default_value = "data/landing")]
    landing_dir: PathBuf,

    /// /healthz answers 503 "stale" when the pipeline last confirmed upstream longer ago (30m, 6h, 45d)
    ///
    /// Confirmed: the state DB's newest extract run that ended success or unchanged (a 304 or
    /// an unchanged download counts), so an unchanged serving file is not stale; without such
    /// a run in a readable state DB, the serving file's export time is used.
    #[arg(long, env = env_vars::MATERIA_WEB_MAX_SERVING_AGE, value_name = "DURATION", default_value = "45d", value_parser = parse_duration)]
    max_serving_age: Duration,

    /// Connections served at once; more are answered 503 with Retry-After
    #[arg(long, env = env_vars::MATERIA_WEB_MAX_CONNECTIONS, value_name = "N", default_value_t = limits::CONNECTIONS_MAX, value_parser = parse_connections)]
    max_connections: usize,
}

fn parse_connections(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=65_536).contains(n))
        .ok_or_else(|| format!("{s:?} is not a number of connections from 1 to 65536"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration (30m, 6h, 45d): {e}"))
}

fn main() -> ExitCode {
    // Socket activation first, while the process has one thread: listenfd clears LISTEN_FDS
    // and LISTEN_PID from the environment.
    let mut passed = listenfd::ListenFd::from_env();
    let args: Args = match step_runtime::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    step_runtime::logging::init("materia-web");
    if let Err(e) = lakehouse::check_library() {
        log::error!("{e}");
        return ExitCode::from(EXIT_USAGE);
    }
    // A socket systemd passed that cannot be used is configuration (2); an address that cannot
    // be bound is operational (1).
    let from_systemd = passed.len() > 0;
    let listener = match server::take_listener(&mut passed, args.listen) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e:#}");
            return ExitCode::from(if from_systemd {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            });
        }
    };
    let state_db = args
        .state_db
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| args.landing_dir.join(".state.sqlite"));
    let config = app::Config {
        serving: args.serving.clone(),
        state_db,
        landing_dir: args.landing_dir.clone(),
        max_serving_age: args.max_serving_age,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .max_blocking_threads(limits::BLOCKING_THREADS_MAX)
        .thread_name("materia-web")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log::error!("cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let outcome = runtime.block_on(async move {
        let app = Arc::new(app::App::new(config));
        server::serve(
            app,
            listener.listener,
            &listener.origin,
            args.max_connections,
        )
        .await
    });
    // Blocking reads still running (a slow state DB) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(1, limits::WORKER_THREADS_MAX)
}
