//! The `/metrics` endpoint: HTTP/1.1 on the address of `--metrics-addr`, serving
//! [`super::render`] as `text/plain; version=0.0.4`. Anything else is a 404.
//!
//! Off unless asked for. The address is the user's to choose; one that is not loopback
//! gets a warning, because the metrics name the bucket, the mountpoint and the traffic of
//! the mount to whoever can reach the port (there is no authentication, as with
//! node_exporter and ossfs's metrics port: put a proxy or a firewall in front).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

/// The Content-Type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bind `addr` and serve `/metrics` on the current tokio runtime until it shuts down.
/// Returns the bound address (port 0 picks one).
pub async fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "metrics are served on a non-loopback address without authentication: they \
             name the bucket, the mountpoint and its traffic to anyone who can connect"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!("metrics on http://{local}/metrics");
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("metrics accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let service =
                    hyper::service::service_fn(
                        |req| async move { Ok::<_, Infallible>(answer(&req)) },
                    );
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!("metrics connection from {peer}: {e}");
                }
            });
        }
    });
    Ok(local)
}

fn answer<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET" | "HEAD", "/metrics") => (StatusCode::OK, CONTENT_TYPE, super::render()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: metrics are at /metrics\n".to_string(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}
