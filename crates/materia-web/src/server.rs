//! The HTTP/1.1 server: the listening socket (systemd's under socket activation, else its
//! own), the accept loop with its connection bound, each connection's time bounds, and the
//! graceful shutdown on SIGTERM.
//!
//! Shutdown: stop accepting (connections that arrive meanwhile wait in the socket's backlog,
//! which systemd keeps for the next process); answer what is already on the wire with
//! `Connection: close` for [`limits::SHUTDOWN_DRAIN_MILLIS`]; then ask every connection to close
//! once its current response is sent, and wait up to [`limits::SHUTDOWN_GRACE_SECS`] for them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, watch};

use crate::app::App;
use crate::limits;
use crate::routes;

pub struct Listener {
    pub listener: std::net::TcpListener,
    /// Where it came from, for the log.
    pub origin: String,
}

/// The socket systemd passed (`LISTEN_FDS`), or a new one bound to `listen`.
pub fn take_listener(
    passed: &mut listenfd::ListenFd,
    listen: SocketAddr,
) -> anyhow::Result<Listener> {
    if passed.len() > 0 {
        let listener = passed
            .take_tcp_listener(0)
            .context("LISTEN_FDS passes a socket that is not a listening TCP socket")?
            .context("LISTEN_FDS passes no socket")?;
        let origin = match listener.local_addr() {
            Ok(addr) => format!("{addr} (socket passed by systemd)"),
            Err(_) => "the socket passed by systemd".to_owned(),
        };
        return Ok(Listener { listener, origin });
    }
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let origin = listener
        .local_addr()
        .map_or_else(|_| listen.to_string(), |a| a.to_string());
    Ok(Listener { listener, origin })
}

fn http() -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits::secs(limits::HEADER_READ_TIMEOUT_SECS))
        .max_headers(limits::HEADERS_MAX)
        .max_header_size(limits::HEADER_BYTES_MAX)
        .keep_alive(true);
    b
}

/// Serves until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn serve(
    app: Arc<App>,
    listener: std::net::TcpListener,
    origin: &str,
    max_connections: usize,
) -> anyhow::Result<()> {
    listener
        .set_nonblocking(true)
        .context("cannot make the listening socket non-blocking")?;
    let listener = TcpListener::from_std(listener).context("cannot use the listening socket")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    // The first generation before the first answer: a socket-activated start queues requests
    // in the backlog meanwhile instead of answering them 503.
    {
        let app = app.clone();
        tokio::task::spawn_blocking(move || app.refresh_now())
            .await
            .context("the first read of the serving file panicked")?;
    }
    log::info!(
        "listening on {origin}, serving {} (up to {max_connections} connections)",
        app.serving_path().display()
    );
    let poller = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(limits::millis(limits::GENERATION_POLL_MILLIS));
            loop {
                tick.tick().await;
                app.follow();
            }
        })
    };

    let connections = Arc::new(Semaphore::new(max_connections));
    let rejections = Arc::new(Semaphore::new(limits::REJECTIONS_MAX));
    let (stop, stopping) = watch::channel(false);
    let builder = Arc::new(http());
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    match connections.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let app = app.clone();
                            let builder = builder.clone();
                            let stopping = stopping.clone();
                            tokio::spawn(async move {
                                connection(app, &builder, stream, stopping).await;
                                drop(permit);
                            });
                        }
                        Err(_) => reject(&app, &rejections, stream),
                    }
                }
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(limits::millis(limits::ACCEPT_ERROR_PAUSE_MILLIS)).await;
                }
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    drop(listener);
    poller.abort();
    let in_flight = max_connections - connections.available_permits();
    log::info!("shutting down: {in_flight} connections open");
    app.start_closing();
    tokio::time::sleep(limits::millis(limits::SHUTDOWN_DRAIN_MILLIS)).await;
    let _ = stop.send(true);
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let rejected = u32::try_from(limits::REJECTIONS_MAX).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits::secs(limits::SHUTDOWN_GRACE_SECS), async {
        let _a = connections.acquire_many(all).await;
        let _b = rejections.acquire_many(rejected).await;
    })
    .await;
    match drained {
        Ok(()) => log::info!("stopped: every connection closed"),
        Err(_) => log::warn!(
            "stopped after {} s with {} connections still open",
            limits::SHUTDOWN_GRACE_SECS,
            max_connections - connections.available_permits()
        ),
    }
    Ok(())
}

/// One connection, until it ends, its lifetime runs out, or shutdown asks it to close.
async fn connection(
    app: Arc<App>,
    builder: &http1::Builder,
    stream: TcpStream,
    mut stopping: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(routes::handle(app, req).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let deadline = tokio::time::sleep(limits::secs(limits::CONNECTION_LIFETIME_SECS));
    tokio::pin!(deadline);
    let mut asked_to_close = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    log::debug!("connection ended: {e}");
                }
                return;
            }
            _ = stopping.wait_for(|s| *s), if !asked_to_close => {
                conn.as_mut().graceful_shutdown();
                asked_to_close = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + limits::secs(limits::SHUTDOWN_GRACE_SECS));
            }
            () = deadline.as_mut() => {
                if asked_to_close {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                asked_to_close = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + limits::secs(limits::CONNECTION_CLOSE_GRACE_SECS));
            }
        }
    }
}

/// A connection past the limit: answered 503 with `Retry-After` and closed, or closed at once
/// when even the rejections are at their bound.
fn reject(app: &Arc<App>, rejections: &Arc<Semaphore>, stream: TcpStream) {
    let Ok(permit) = rejections.clone().try_acquire_owned() else {
        drop(stream);
        return;
    };
    let app = app.clone();
    tokio::spawn(async move {
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(limits::secs(limits::REJECTION_HEADER_READ_TIMEOUT_SECS))
            .max_headers(limits::HEADERS_MAX)
            .max_header_size(limits::HEADER_BYTES_MAX)
            .keep_alive(false);
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(routes::saturated(&app, req.uri().path())) }
        });
        let conn = b.serve_connection(TokioIo::new(stream), service);
        let _ = tokio::time::timeout(
            limits::secs(limits::REJECTION_HEADER_READ_TIMEOUT_SECS * 2),
            conn,
        )
        .await;
        drop(permit);
    });
}
