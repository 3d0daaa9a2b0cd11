//! Testing aid: the listeners of `--metadata-listen` and `--sts-listen`, each answering
//!
//! - the ECS instance metadata service as credentials-go and ossfs ask it:
//!   `PUT /latest/api/token` (needs `X-aliyun-ecs-metadata-token-ttl-seconds`, 1..=21600),
//!   `GET /latest/meta-data/ram/security-credentials/` (the role name) and
//!   `GET /latest/meta-data/ram/security-credentials/<role>` (JSON `AccessKeyId`,
//!   `AccessKeySecret`, `Expiration`, `SecurityToken`, `LastUpdated`, `Code: "Success"`),
//!   with `X-aliyun-ecs-metadata-token` (a wrong one is 401; none is accepted unless
//!   `--metadata-require-token`);
//! - STS (`POST /?Action=AssumeRole|AssumeRoleWithOIDC&...`, see [`super::sts`]);
//! - a credentials URI (`ALIBABA_CLOUD_CREDENTIALS_URI`, credentials-go's
//!   `URLCredentialsProvider`): `GET /credentials-uri` answers the metadata service's
//!   credentials document, no token needed;
//! - their own control endpoints: `GET /_ossmount/credentials` (counters, JSON),
//!   `POST /_ossmount/credentials/revoke` (every issued token becomes invalid: the next
//!   object request signed with one is refused), `PUT /_ossmount/credentials/faults`
//!   (`{"status": 500}` fails every metadata and STS request, `{"malformed": true}` answers
//!   credential documents that are not JSON; `{}` clears).
//!
//! Both listeners serve the same routes (one service, two addresses, as real deployments
//! have two hosts). They are unauthenticated by design: bind them to loopback.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use parking_lot::Mutex;

use super::auth::Keys;
use super::resolve::decode_query;
use super::sts::{answer, AidFaults, Sessions};
use super::{aws_metadata, aws_sts};
use crate::store::credentials::format_time;

/// Shared by both aid listeners.
pub struct Aids {
    pub sessions: Arc<Sessions>,
    /// serve's key pairs: the source keys `AssumeRole` calls are signed with.
    pub keys: Keys,
    tokens: Mutex<HashSet<String>>,
    /// IMDSv2 session tokens handed out ([`super::aws_metadata`]).
    pub imds_tokens: Mutex<HashSet<String>>,
}

impl Aids {
    pub fn new(sessions: Arc<Sessions>, keys: Keys) -> Self {
        Aids {
            sessions,
            keys,
            tokens: Mutex::new(HashSet::new()),
            imds_tokens: Mutex::new(HashSet::new()),
        }
    }
}

type Resp = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("server", "ossmount")
        .body(Full::new(body.into()))
        .expect("valid response")
}

fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    reply(status, "text/plain", body.into())
}

/// Serve `listener` until the process ends; over TLS when `tls` is given (serve's
/// `--tls-cert`, for the STS listener: real STS is HTTPS, the metadata service plain HTTP).
pub async fn run(
    listener: tokio::net::TcpListener,
    aids: Arc<Aids>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("credential aids: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let aids = aids.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let aids = aids.clone();
                async move { Ok::<_, Infallible>(handle(&aids, req, peer).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            let served = match tls {
                None => {
                    http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await
                }
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        super::tls::HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await;
                    match handshake {
                        Ok(Ok(tls)) => {
                            http.serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!("credential aids: TLS handshake with {peer}: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("credential aids: TLS handshake with {peer} timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!("credential aids: connection from {peer}: {e}");
            }
        });
    }
}

async fn handle(aids: &Aids, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let resp = route(aids, req).await;
    tracing::debug!(
        "credential aids: {peer} {method} {path} -> {}",
        resp.status()
    );
    resp
}

/// Where the aids answer as a credentials URI.
pub const CREDENTIALS_URI_PATH: &str = "/credentials-uri";

/// A freshly issued credential as the metadata service (and a credentials URI) answers it:
/// `Code`, `AccessKeyId`, `AccessKeySecret`, `Expiration`, `SecurityToken`, `LastUpdated`;
/// not JSON under the `malformed` fault.
fn credentials_document(sessions: &Sessions) -> Resp {
    if sessions.faults.lock().malformed {
        return reply(
            StatusCode::OK,
            "text/plain",
            "{\"Code\": \"Success\", \"AccessKeyId\": ",
        );
    }
    let now = SystemTime::now();
    let g = sessions.issue(now);
    let doc = serde_json::json!({
        "AccessKeyId": g.id,
        "AccessKeySecret": g.secret,
        "Expiration": format_time(g.expires),
        "SecurityToken": g.token,
        "LastUpdated": format_time(now),
        "Code": "Success",
    });
    reply(StatusCode::OK, "text/plain", doc.to_string())
}

async fn route(aids: &Aids, req: Request<Incoming>) -> Resp {
    let sessions = &aids.sessions;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
    };
    let ttl = header("x-aliyun-ecs-metadata-token-ttl-seconds");
    let token = header("x-aliyun-ecs-metadata-token");
    let aws_ttl = header("x-aws-ec2-metadata-token-ttl-seconds");
    let aws_token = header("x-aws-ec2-metadata-token");
    let authorization = header("authorization");
    let content_type = header("content-type").unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };

    // Control endpoints: never faulted.
    match (&method, path.as_str()) {
        (&Method::GET, "/_ossmount/credentials") => {
            let json = serde_json::to_string(&sessions.snapshot()).expect("plain struct");
            return reply(StatusCode::OK, "application/json", json);
        }
        (&Method::POST, "/_ossmount/credentials/revoke") => {
            let n = sessions.revoke_all();
            tracing::info!("revoked {n} issued credential(s)");
            return reply(
                StatusCode::OK,
                "application/json",
                format!("{{\"revoked\":{n}}}"),
            );
        }
        (&Method::PUT, "/_ossmount/credentials/faults") => {
            let parsed = if body.iter().all(u8::is_ascii_whitespace) {
                Ok(AidFaults::default())
            } else {
                serde_json::from_slice::<AidFaults>(&body)
            };
            return match parsed {
                Ok(f) => {
                    tracing::info!("credential aid faults set: {f:?}");
                    *sessions.faults.lock() = f.clone();
                    reply(
                        StatusCode::OK,
                        "application/json",
                        serde_json::to_string(&f).expect("plain struct"),
                    )
                }
                Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
            };
        }
        _ => {}
    }

    if let Some(status) = sessions.faults.lock().status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if path.starts_with("/latest/")
            || path == CREDENTIALS_URI_PATH
            || aws_metadata::is_container_path(&path)
        {
            return text(status, "fault injected by ossmount serve");
        }
    }

    // A credentials URI (ALIBABA_CLOUD_CREDENTIALS_URI): the same document, no token.
    if path == CREDENTIALS_URI_PATH {
        if method != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        }
        sessions.stats.credentials_uri.fetch_add(1, Relaxed);
        return credentials_document(sessions);
    }

    // The AWS endpoints: IMDSv2 and the container endpoint.
    let aws = if path == "/latest/api/token" && aws_ttl.is_some() {
        Some(aws_metadata::imds_token(
            aids,
            &method,
            aws_ttl.as_deref().unwrap_or(""),
        ))
    } else if let Some(rest) = path.strip_prefix("/latest/meta-data/iam/security-credentials/") {
        let role = percent_encoding::percent_decode_str(rest).decode_utf8_lossy();
        Some(aws_metadata::imds_credentials(
            aids,
            &method,
            aws_token.as_deref(),
            &role,
        ))
    } else if aws_metadata::is_container_path(&path) {
        Some(aws_metadata::container_credentials(
            aids,
            &method,
            authorization.as_deref(),
        ))
    } else {
        None
    };
    if let Some((status, content_type, body)) = aws {
        return reply(status, content_type, body);
    }

    // The metadata service.
    if path == "/latest/api/token" {
        if method != Method::PUT {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use PUT");
        }
        let ok = ttl
            .as_deref()
            .and_then(|t| t.parse::<u32>().ok())
            .is_some_and(|t| (1..=21600).contains(&t));
        if !ok {
            return text(
                StatusCode::BAD_REQUEST,
                "X-aliyun-ecs-metadata-token-ttl-seconds must be 1..21600",
            );
        }
        let t = super::sts::Grant::token_text();
        aids.tokens.lock().insert(t.clone());
        sessions.stats.metadata_tokens.fetch_add(1, Relaxed);
        return text(StatusCode::OK, t);
    }
    if let Some(rest) = path.strip_prefix("/latest/meta-data/ram/security-credentials/") {
        if method != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        }
        match &token {
            Some(t) if !aids.tokens.lock().contains(t) => {
                return text(StatusCode::UNAUTHORIZED, "invalid metadata token")
            }
            Some(_) => {}
            None if sessions.cfg.require_token => {
                return text(StatusCode::UNAUTHORIZED, "a metadata token is required")
            }
            None => {
                sessions.stats.metadata_v1.fetch_add(1, Relaxed);
            }
        }
        let role = percent_encoding::percent_decode_str(rest)
            .decode_utf8_lossy()
            .into_owned();
        if role.is_empty() {
            return text(StatusCode::OK, sessions.cfg.role.clone());
        }
        if role != sessions.cfg.role {
            return text(StatusCode::NOT_FOUND, "Not Found");
        }
        sessions.stats.metadata_credentials.fetch_add(1, Relaxed);
        return credentials_document(sessions);
    }
    if path.starts_with("/latest/") {
        return text(StatusCode::NOT_FOUND, "Not Found");
    }

    // STS: parameters in the query and, for POST, the form body.
    let mut params = match decode_query(query.as_deref()) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.message),
    };
    if method == Method::POST && !body.is_empty() {
        if !content_type.starts_with("application/x-www-form-urlencoded") {
            return text(
                StatusCode::BAD_REQUEST,
                "STS takes an application/x-www-form-urlencoded body",
            );
        }
        match decode_query(Some(&String::from_utf8_lossy(&body))) {
            Ok(p) => params.extend(p),
            Err(e) => return text(StatusCode::BAD_REQUEST, e.message),
        }
    }
    if !params.iter().any(|(k, _)| k == "Action") {
        return text(StatusCode::NOT_FOUND, "Not Found");
    }
    let secret_for = |id: &str| aids.keys.secret(id);
    if params
        .iter()
        .any(|(k, v)| k == "Version" && v == aws_sts::VERSION)
    {
        let query_params = decode_query(query.as_deref()).unwrap_or_default();
        let call = aws_sts::Call {
            method: method.as_str(),
            path: &percent_encoding::percent_decode_str(&path).decode_utf8_lossy(),
            params: &params,
            query: &query_params,
            headers: &headers,
            body: &body,
        };
        let r = aws_sts::answer(sessions, &call, &secret_for, SystemTime::now());
        return reply(r.status, "text/xml", r.body);
    }
    let r = answer(
        sessions,
        method.as_str(),
        &params,
        &secret_for,
        SystemTime::now(),
    );
    reply(r.status, "application/json;charset=utf-8", r.body)
}
