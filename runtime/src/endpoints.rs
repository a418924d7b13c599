//! HTTP endpoints for operators, on `[runtime] http_listen`:
//!
//! - `GET /metrics`: every metric weir emits (names in [`crate::telemetry`]), Prometheus text;
//! - `GET /healthz`: 200 while the process serves requests (liveness);
//! - `GET /readyz`: 200 while every source is connected and subscribed, 503 before that,
//!   while a source has lost its broker, and while shutting down (readiness: route traffic or
//!   alerts on it).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Serve the endpoints until `stop` is cancelled. The Prometheus recorder is installed once
/// per process: a second pipeline in the same process (tests) serves health without metrics.
pub async fn serve(listen: &str, ready: watch::Receiver<bool>, stop: CancellationToken) -> anyhow::Result<()> {
    let addr: SocketAddr = listen.parse().map_err(|err| anyhow::anyhow!("runtime.http_listen `{listen}` is not an address like 127.0.0.1:9464: {err}"))?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("runtime.http_listen: cannot listen on {addr} (in use by another process?)"))?;
    let metrics = match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(err) => {
            warn!(%err, "a metrics recorder is already installed in this process; /metrics stays empty");
            None
        }
    };
    if let Some(handle) = metrics.clone() {
        // Histograms and summaries need their upkeep when the exporter's own listener is not used.
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            while tokio::select! { _ = every.tick() => true, () = stop.cancelled() => false } {
                handle.run_upkeep();
            }
        });
    }
    info!(%addr, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        warn!(%err, "http endpoint: accept failed");
                        continue;
                    }
                },
                () = stop.cancelled() => break,
            };
            let (metrics, ready) = (metrics.clone(), ready.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| respond(request, metrics.clone(), ready.clone()));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(())
}

async fn respond(request: Request<Incoming>, metrics: Option<PrometheusHandle>, ready: watch::Receiver<bool>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match request.uri().path() {
        "/metrics" => (StatusCode::OK, metrics.map(|handle| handle.render()).unwrap_or_default()),
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if *ready.borrow() => (StatusCode::OK, "ready\n".to_owned()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready: a source is connecting or lost its broker, or weir is shutting down\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "weir serves /metrics, /healthz and /readyz\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    Ok(response)
}
