//! `ossmount serve DIR`: the command line to a running [`crate::serve`] server, and its
//! failures to a message and an exit code.
//!
//! The server gets its own multi-thread tokio runtime, built here: there is no global one.

use std::sync::Arc;

use crate::cli::{exit, Failure, ServeArgs};
use crate::serve::auth::Keys;
use crate::serve::metadata::Aids;
use crate::serve::resolve::Root;
use crate::serve::stats::Faults;
use crate::serve::sts::{AidConfig, Sessions};
use crate::serve::{link, tls};
use crate::serve::{serve, ServeError, Server};

/// Run the server until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let keys = Keys::from_env();
    if !args.anonymous && keys.is_empty() {
        return Err(Failure::new(
            exit::USAGE,
            "serve: no credentials: set OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) for the keys clients must sign with, or pass --anonymous to accept unsigned requests",
        ));
    }
    let mut faults = Faults {
        reset_after_bytes: args.fault_reset_after,
        rate_503: args.fault_503_rate,
        latency_ms: args.fault_latency.map(|d| d.as_millis() as u64),
        stall_rate: args.fault_stall_rate,
        ..Faults::default()
    };
    faults
        .validate()
        .map_err(|m| Failure::new(exit::USAGE, format!("serve: {m}")))?;
    args.link.apply(&mut faults);
    let faults =
        link::resolve(faults).map_err(|m| Failure::new(exit::USAGE, format!("serve: {m}")))?;
    if !args.testing_aids && faults != Faults::default() {
        return Err(Failure::new(
            exit::USAGE,
            "serve: the --fault-* and --link* flags are testing aids: add --testing-aids",
        ));
    }
    if faults != Faults::default() {
        tracing::info!("faults and link: {faults:?}");
    }
    let loopback = args.listen.ip().is_loopback();
    if args.anonymous && !loopback {
        tracing::warn!(
            "serve: --anonymous on {}, a non-loopback address: anyone who can reach it can \
             read every bucket under {}",
            args.listen,
            args.dir.display()
        );
    }
    if args.testing_aids && !loopback {
        tracing::warn!(
            "serve: --testing-aids on {}, a non-loopback address: anyone who can reach it can \
             change the faults and read the counters without a signature",
            args.listen
        );
    }
    let root = Root::new(&args.dir).map_err(|e| {
        Failure::new(
            exit::LOCAL,
            format!("serve: cannot serve {}: {e}", args.dir.display()),
        )
    })?;
    let aid_args = &args.credential_aids;
    let sessions = Arc::new(Sessions::new(AidConfig {
        lifetime: aid_args.credential_lifetime,
        role: aid_args.metadata_role.clone(),
        require_token: aid_args.metadata_require_token,
        web_identity_token_file: aid_args.web_identity_token_file.clone(),
        container_authorization_file: aid_args.container_authorization_file.clone(),
    }));
    let aids = Arc::new(Aids::new(sessions.clone(), keys.clone()));
    let keys = (!args.anonymous).then(|| keys.with_sessions(sessions));
    let mut server =
        Server::new(root, args.region, keys, faults).with_testing_aids(args.testing_aids);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        server.tls = Some(
            tls::acceptor(cert, key)
                .map_err(|e| Failure::new(exit::USAGE, format!("serve: {e}")))?,
        );
    }
    let server = Arc::new(server);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ossmount-serve")
        .build()
        .map_err(|e| Failure::new(exit::GENERIC, format!("serve: tokio runtime: {e}")))?;
    let listen = args.listen;
    // STS is HTTPS when the server is (as the real one always is); the metadata service
    // stays plain HTTP, as on an ECS instance.
    let aid_addrs = [
        ("metadata service", aid_args.metadata_listen, None),
        ("sts", aid_args.sts_listen, server.tls.clone()),
    ];
    let result = rt.block_on(async move {
        let mut announce = Vec::new();
        for (what, addr, tls) in aid_addrs {
            let Some(addr) = addr else { continue };
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Listen { addr, source })?;
            let local = listener.local_addr().map_err(ServeError::Socket)?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            announce.push(format!("ossmount serve: {what} on {scheme}://{local}"));
            tokio::spawn(crate::serve::metadata::run(listener, aids.clone(), tls));
        }
        serve(server, listen, &announce).await
    });
    // Do not wait for a hashing pass or a reader thread of a dropped connection.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    result.map_err(failure)
}

fn failure(e: ServeError) -> Failure {
    let code = match e {
        ServeError::Listen { .. } | ServeError::Socket(_) => exit::LOCAL,
        ServeError::Signal(_) => exit::GENERIC,
    };
    Failure::new(code, format!("serve: {e}"))
}
