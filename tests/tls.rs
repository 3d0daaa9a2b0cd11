//! HTTPS end to end: `ossmount serve --tls-cert/--tls-key` with a private CA made at test
//! time (rcgen), and the client trusting it through `--ca-bundle` or `AWS_CA_BUNDLE`: a real
//! mount read with `cmp`, `ossmount download`, `ossmount ls`, and `curl --cacert` as a
//! witness nobody here wrote. Refusals: no CA given (unknown issuer), a certificate for
//! another name, a CA bundle that does not exist. Proxies: `HTTPS_PROXY` through a small
//! CONNECT proxy in this file (it counts the tunnels it opened), `NO_PROXY` skipping it,
//! and `HTTP_PROXY` carrying plain `http://` requests.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::mount::{same_file, Env, BUCKET};
use common::{bin, write_pattern_file, Serve, AK, SK};

const PROXY_VARS: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// A CA and server certificates signed by it, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    dir: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ossmount test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        Pki {
            ca,
            dir: dir.to_path_buf(),
            ca_cert,
            ca_key,
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses): (cert, key) files.
    fn server(&self, label: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        let (c, k) = (
            self.dir.join(format!("{label}.crt")),
            self.dir.join(format!("{label}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

fn https_serve(data: &Path, cert: &Path, key: &Path) -> Serve {
    let serve = Serve::start_with(
        data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(serve.scheme, "https");
    serve
}

/// `ossmount ARGS --endpoint E --region cn-hangzhou` with the test keys and no proxy.
fn cli(endpoint: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .args(["--endpoint", endpoint, "--region", "cn-hangzhou"])
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .env_remove("RUST_LOG");
    for v in PROXY_VARS {
        c.env_remove(v);
    }
    c
}

fn output(c: &mut Command) -> Output {
    let out = c.output().unwrap();
    eprintln!(
        "{c:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Data dir with bucket [`BUCKET`] holding `big.bin` (3 MiB + 5 bytes) and `a/small.txt`.
fn data(tmp: &Path) -> PathBuf {
    let data = tmp.join("data");
    let b = data.join(BUCKET);
    write_pattern_file(&b.join("big.bin"), (3 << 20) + 5, 7);
    std::fs::create_dir_all(b.join("a")).unwrap();
    std::fs::write(b.join("a/small.txt"), "hello over TLS\n").unwrap();
    data
}

#[test]
fn mount_download_and_ls_over_https_with_a_private_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let (cert, key) = pki.server("server", &["127.0.0.1", "localhost"]);
    let data = data(tmp.path());
    let serve = https_serve(&data, &cert, &key);
    let ep = serve.endpoint();
    let ca = pki.ca.to_str().unwrap().to_string();

    // A client nobody here wrote agrees the server speaks proper TLS with that certificate.
    let out = output(Command::new("curl").args([
        "-sf",
        "--cacert",
        &ca,
        &format!("{ep}/_ossmount/stats"),
    ]));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"requests\""));

    // ls
    let out = output(&mut cli(&ep, &["ls", "oss://bkt/", "--ca-bundle", &ca]));
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("big.bin") && listing.contains("a/"),
        "{listing}"
    );

    // download
    let local = tmp.path().join("downloaded.bin");
    let out = output(
        cli(
            &ep,
            &["download", "-q", "oss://bkt/big.bin", "--ca-bundle", &ca],
        )
        .arg(&local),
    );
    assert!(out.status.success());
    same_file(&local, &data.join(BUCKET).join("big.bin"));

    // mount, read with cp and cmp
    let env = Env {
        serve,
        cache: tmp.path().join("cache"),
        tmp,
    };
    let m = env.mount_fg("mnt", &["--ca-bundle", &ca]);
    same_file(&m.dir.join("big.bin"), &env.object("big.bin"));
    assert_eq!(
        std::fs::read_to_string(m.dir.join("a/small.txt")).unwrap(),
        "hello over TLS\n"
    );
    drop(m);
}

#[test]
fn aws_ca_bundle_is_trusted_and_a_missing_one_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let (cert, key) = pki.server("server", &["127.0.0.1"]);
    let serve = https_serve(&data(tmp.path()), &cert, &key);
    let ep = serve.endpoint();

    let out = output(cli(&ep, &["ls", "oss://bkt/"]).env("AWS_CA_BUNDLE", &pki.ca));
    assert!(out.status.success());

    let t = std::time::Instant::now();
    let out = output(cli(&ep, &["ls", "oss://bkt/"]).env("AWS_CA_BUNDLE", "/nonexistent/ca.pem"));
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("/nonexistent/ca.pem") && e.contains("AWS_CA_BUNDLE"),
        "unclear error: {e}"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(10));

    // --ca-bundle with a file that holds no certificate.
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "nothing to see\n").unwrap();
    let out = output(&mut cli(
        &ep,
        &["ls", "oss://bkt/", "--ca-bundle", junk.to_str().unwrap()],
    ));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--ca-bundle"), "{}", stderr(&out));
}

#[test]
fn untrusted_or_misnamed_certificates_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let data = data(tmp.path());
    let ca = pki.ca.to_str().unwrap().to_string();

    // Trusted CA, but the certificate is for another name.
    let (cert, key) = pki.server("other", &["other.example"]);
    let serve = https_serve(&data, &cert, &key);
    let out = output(&mut cli(
        &serve.endpoint(),
        &["ls", "oss://bkt/", "--ca-bundle", &ca],
    ));
    assert!(!out.status.success());
    let e = stderr(&out).to_lowercase();
    assert!(
        e.contains("certificate") && e.contains("name"),
        "the refusal should say the certificate is for another name: {e}"
    );
    drop(serve);

    // Right name, but nobody told the client about the CA.
    let (cert, key) = pki.server("server", &["127.0.0.1"]);
    let serve = https_serve(&data, &cert, &key);
    let out = output(&mut cli(&serve.endpoint(), &["ls", "oss://bkt/"]));
    assert!(!out.status.success());
    let e = stderr(&out).to_lowercase();
    assert!(
        e.contains("certificate") && (e.contains("unknown") || e.contains("issuer")),
        "the refusal should say the issuer is unknown: {e}"
    );
}

/// An HTTP proxy on a free port (CONNECT, and absolute-form requests for `http://`);
/// counts the upstream connections it opened and records their targets.
struct Proxy {
    addr: String,
    tunnels: Arc<AtomicUsize>,
    targets: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let tunnels = Arc::new(AtomicUsize::new(0));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let (t, g) = (tunnels.clone(), targets.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let (t, g) = (t.clone(), g.clone());
                std::thread::spawn(move || tunnel(client, &t, &g));
            }
        });
        Proxy {
            addr,
            tunnels,
            targets,
        }
    }
}

/// One proxy connection: CONNECT opens a tunnel; a request in absolute form
/// (`GET http://host:port/path`, what clients send to an HTTP proxy for `http://` URLs) is
/// passed on as is to that host, which accepts the absolute form. Either way the bytes are
/// then relayed both ways until one side closes.
fn tunnel(client: TcpStream, tunnels: &AtomicUsize, targets: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut head = line.clone();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            break;
        }
        head.push_str(&h);
        if h.trim().is_empty() {
            break;
        }
    }
    let mut client_w = client;
    let (authority, forward) = if method == "CONNECT" {
        (target.to_string(), None)
    } else if let Some(rest) = target.strip_prefix("http://") {
        (rest.split('/').next().unwrap_or("").to_string(), Some(head))
    } else {
        let _ = client_w.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let Ok(upstream) = TcpStream::connect(&authority) else {
        let _ = client_w.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    tunnels.fetch_add(1, Ordering::SeqCst);
    targets.lock().unwrap().push(authority);
    let mut up_w = upstream.try_clone().unwrap();
    match forward {
        None => client_w
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .unwrap(),
        Some(head) => up_w.write_all(head.as_bytes()).unwrap(),
    }
    // Bytes the reader already buffered past the head.
    let pending = reader.buffer().to_vec();
    up_w.write_all(&pending).unwrap();
    let mut up_r = upstream;
    let mut client_r = reader.into_inner();
    let a = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_r, &mut up_w);
        let _ = up_w.shutdown(std::net::Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match up_r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client_w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = client_w.shutdown(std::net::Shutdown::Write);
    let _ = a.join();
}

#[test]
fn http_proxy_carries_plain_http_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&data(tmp.path()));
    let proxy = Proxy::start();
    let out = output(
        cli(&serve.endpoint(), &["ls", "oss://bkt/"])
            .env("HTTP_PROXY", format!("http://{}", proxy.addr)),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("big.bin"));
    assert!(
        proxy.tunnels.load(Ordering::SeqCst) >= 1,
        "the proxy saw no request"
    );
    assert!(proxy
        .targets
        .lock()
        .unwrap()
        .iter()
        .all(|t| *t == serve.addr));
}

#[test]
fn https_proxy_is_used_unless_no_proxy_names_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let (cert, key) = pki.server("server", &["127.0.0.1"]);
    let serve = https_serve(&data(tmp.path()), &cert, &key);
    let ep = serve.endpoint();
    let ca = pki.ca.to_str().unwrap().to_string();
    let proxy = Proxy::start();
    let proxy_url = format!("http://{}", proxy.addr);

    let out =
        output(cli(&ep, &["ls", "oss://bkt/", "--ca-bundle", &ca]).env("HTTPS_PROXY", &proxy_url));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("big.bin"));
    assert!(
        proxy.tunnels.load(Ordering::SeqCst) >= 1,
        "the proxy saw no CONNECT"
    );
    assert!(
        proxy
            .targets
            .lock()
            .unwrap()
            .iter()
            .all(|t| *t == serve.addr),
        "tunnels to {:?}, expected {}",
        proxy.targets.lock().unwrap(),
        serve.addr
    );

    let before = proxy.tunnels.load(Ordering::SeqCst);
    let out = output(
        cli(&ep, &["ls", "oss://bkt/", "--ca-bundle", &ca])
            .env("HTTPS_PROXY", &proxy_url)
            .env("NO_PROXY", "127.0.0.1"),
    );
    assert!(out.status.success());
    assert_eq!(
        proxy.tunnels.load(Ordering::SeqCst),
        before,
        "NO_PROXY=127.0.0.1 should bypass the proxy"
    );
}

/// `ossmount serve` over HTTPS with the credential aids: STS on `https://` (serve's
/// certificate), the metadata service on plain `http://`.
struct AidServe {
    child: std::process::Child,
    /// `https://ADDR`, `http://ADDR`, `https://ADDR`.
    endpoint: String,
    metadata: String,
    sts: String,
}

impl Drop for AidServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AidServe {
    fn start(data: &Path, cert: &Path, key: &Path) -> Self {
        let mut child = Command::new(bin())
            .arg("serve")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--testing-aids"])
            .args(["--metadata-listen", "127.0.0.1:0"])
            .args(["--sts-listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env("OSS_ACCESS_KEY_ID", AK)
            .env("OSS_ACCESS_KEY_SECRET", SK)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = |what: &str| {
            let line = lines.next().unwrap().unwrap();
            assert!(line.contains(what), "expected {what:?} in {line:?}");
            line.rsplit(' ').next().unwrap().to_string()
        };
        let endpoint = next("listening on https://");
        let metadata = next("metadata service on http://");
        let sts = next("sts on https://");
        AidServe {
            child,
            endpoint,
            metadata,
            sts,
        }
    }

    /// `ossmount ls URL` with no keys of the test process, no CA from its environment,
    /// HOME in `tmp`.
    fn keyless_ls(&self, url: &str, tmp: &Path, extra: &[&str]) -> Command {
        let mut c = cli(&self.endpoint, &["ls", url]);
        c.args(extra).env("HOME", tmp);
        for v in [
            "OSS_ACCESS_KEY_ID",
            "OSS_ACCESS_KEY_SECRET",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_CA_BUNDLE",
            "SSL_CERT_FILE",
        ] {
            c.env_remove(v);
        }
        c
    }

    /// `ossmount ls oss://bkt/` with RRSA variables pointing at the fake STS, and no keys.
    fn rrsa_ls(&self, tmp: &Path, extra: &[&str]) -> Command {
        let token = tmp.join("oidc-token");
        std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.test.token\n").unwrap();
        let mut c = self.keyless_ls("oss://bkt/", tmp, extra);
        c.env("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/reader")
            .env(
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1:oidc-provider/ack-rrsa-test",
            )
            .env("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &token)
            .env("OSSMOUNT_STS_ENDPOINT", &self.sts);
        c
    }

    /// `ossmount ls s3://bkt/` with EKS's web identity variables, STS found through the
    /// SDKs' `AWS_ENDPOINT_URL_STS`, and no keys.
    fn web_identity_ls(&self, tmp: &Path, extra: &[&str]) -> Command {
        let token = tmp.join("web-identity-token");
        std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eks.token\n").unwrap();
        let mut c = self.keyless_ls("s3://bkt/", tmp, extra);
        c.env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
            .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/reader")
            .env("AWS_ENDPOINT_URL_STS", &self.sts)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }

    /// The aids' counters, fetched with curl over HTTPS from the STS address.
    fn counters(&self, ca: &str) -> serde_json::Value {
        let out = output(Command::new("curl").args([
            "-sf",
            "--cacert",
            ca,
            &format!("{}/_ossmount/credentials", self.sts),
        ]));
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// Issue 13: the credential clients trust what the object client trusts. A private
/// cloud's STS over HTTPS with a private CA works with `--ca-bundle` or `AWS_CA_BUNDLE`,
/// fails without it with a certificate error naming STS; `HTTPS_PROXY` carries STS calls
/// but never the metadata service.
#[test]
fn sts_over_https_trusts_the_ca_bundle_and_honours_proxies() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let (cert, key) = pki.server("server", &["127.0.0.1"]);
    let serve = AidServe::start(&data(tmp.path()), &cert, &key);
    let ca = pki.ca.to_str().unwrap().to_string();

    // Without the CA: the first thing refused is STS, and the error says so and how to fix it.
    let out = output(&mut serve.rrsa_ls(tmp.path(), &[]));
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("AssumeRoleWithOIDC")
            && e.contains(serve.sts.as_str())
            && e.to_lowercase().contains("certificate")
            && e.contains("--ca-bundle"),
        "unclear STS certificate error: {e}"
    );
    assert_eq!(serve.counters(&ca)["assume_role_oidc"], 0);

    // --ca-bundle: STS and the object listener are both trusted.
    let out = output(&mut serve.rrsa_ls(tmp.path(), &["--ca-bundle", &ca]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("big.bin"));
    assert_eq!(serve.counters(&ca)["assume_role_oidc"], 1);
    // AWS_CA_BUNDLE works the same for the STS client.
    let out = output(serve.rrsa_ls(tmp.path(), &[]).env("AWS_CA_BUNDLE", &ca));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(serve.counters(&ca)["assume_role_oidc"], 2);

    // Through a proxy: STS is tunnelled (TLS end to end, so the CA still matters).
    let proxy = Proxy::start();
    let proxy_url = format!("http://{}", proxy.addr);
    let out = output(
        serve
            .rrsa_ls(tmp.path(), &["--ca-bundle", &ca])
            .env("HTTPS_PROXY", &proxy_url),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(serve.counters(&ca)["assume_role_oidc"], 3);
    let targets = proxy.targets.lock().unwrap().clone();
    assert!(
        targets.contains(&serve.sts.trim_start_matches("https://").to_string()),
        "STS was not asked through the proxy: {targets:?}"
    );

    // The metadata service is never asked through a proxy, whatever the variables say.
    let before = proxy.targets.lock().unwrap().len();
    let mut c = cli(&serve.endpoint, &["ls", "oss://bkt/", "--ca-bundle", &ca]);
    c.env_remove("OSS_ACCESS_KEY_ID")
        .env_remove("OSS_ACCESS_KEY_SECRET")
        .env("HOME", tmp.path())
        .env("HTTP_PROXY", &proxy_url)
        .env("HTTPS_PROXY", &proxy_url)
        .env("ALL_PROXY", &proxy_url)
        .env("NO_PROXY", "127.0.0.1")
        .args(["--ram-role", "ossmount-serve-role"])
        .args(["--metadata-endpoint", &serve.metadata]);
    let out = output(&mut c);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        serve.counters(&ca)["metadata_credentials"]
            .as_u64()
            .unwrap()
            >= 1
    );
    // NO_PROXY kept the object requests direct, so nothing new reached the proxy; without
    // NO_PROXY (next) only the object endpoint may appear there, never the metadata address.
    assert_eq!(proxy.targets.lock().unwrap().len(), before);
    let out = output(c.env_remove("NO_PROXY"));
    assert!(out.status.success(), "{}", stderr(&out));
    let targets = proxy.targets.lock().unwrap().clone();
    assert!(
        targets.len() > before
            && !targets.contains(&serve.metadata.trim_start_matches("http://").to_string()),
        "the metadata service went through the proxy: {targets:?}"
    );
}

/// The same for `s3://`: AWS STS (AssumeRoleWithWebIdentity) over HTTPS is trusted through
/// `--ca-bundle` alone, refused without it with an error naming STS and the fix, and
/// tunnelled through `HTTPS_PROXY` unless `NO_PROXY` names its host.
#[test]
fn s3_web_identity_sts_over_https_trusts_the_ca_bundle_and_honours_proxies() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let (cert, key) = pki.server("server", &["127.0.0.1"]);
    let serve = AidServe::start(&data(tmp.path()), &cert, &key);
    let ca = pki.ca.to_str().unwrap().to_string();
    let calls = || serve.counters(&ca)["aws_assume_role_web_identity"].clone();

    let out = output(&mut serve.web_identity_ls(tmp.path(), &[]));
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("AssumeRoleWithWebIdentity")
            && e.contains(serve.sts.as_str())
            && e.to_lowercase().contains("certificate")
            && e.contains("--ca-bundle"),
        "unclear STS certificate error: {e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    assert_eq!(calls(), 0);

    let out = output(&mut serve.web_identity_ls(tmp.path(), &["--ca-bundle", &ca]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("big.bin"));
    assert_eq!(calls(), 1);

    let proxy = Proxy::start();
    let proxy_url = format!("http://{}", proxy.addr);
    let sts_host = serve.sts.trim_start_matches("https://").to_string();
    let out = output(
        serve
            .web_identity_ls(tmp.path(), &["--ca-bundle", &ca])
            .env("HTTPS_PROXY", &proxy_url)
            .env("NO_PROXY", "example.invalid"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(calls(), 2);
    let targets = proxy.targets.lock().unwrap().clone();
    assert!(
        targets.contains(&sts_host),
        "STS was not asked through the proxy: {targets:?}"
    );
    // NO_PROXY naming STS's host: a direct call, nothing new at the proxy.
    let before = proxy.targets.lock().unwrap().len();
    let out = output(
        serve
            .web_identity_ls(tmp.path(), &["--ca-bundle", &ca])
            .env("HTTPS_PROXY", &proxy_url)
            .env("NO_PROXY", "127.0.0.1"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(calls(), 3);
    assert_eq!(proxy.targets.lock().unwrap().len(), before);
}
