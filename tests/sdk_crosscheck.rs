//! Cross-checks of `ossmount serve` with clients nobody here wrote: the official OSS
//! Python SDK (alibabacloud-oss-v2, OSS V4 signatures) and boto3 (S3 SigV4). Each script
//! lists, heads and reads every object of a served folder, compares with the folder, and
//! checks that a wrong secret is refused with SignatureDoesNotMatch; one more reads the
//! versioning emulation's versions with the SDK's `version_id`.
//!
//! Needs `pip install alibabacloud-oss-v2 boto3`; without them these tests fail (CI
//! installs them), they do not skip.

mod common;

use std::path::Path;
use std::process::Command;

use common::{write_pattern_file, Serve, AK, SK};

fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let b = t.path().join("sdkbucket");
    for (k, body) in [
        ("plain.txt", "plain object".to_string()),
        ("a b.txt", "space".to_string()),
        ("a+b.txt", "plus".to_string()),
        ("100%.txt", "percent".to_string()),
        ("文件/ünï x.txt", "unicode".repeat(10)),
        ("dir/one", "one".repeat(100)),
        ("dir/sub/two", "two".repeat(1000)),
        ("empty", String::new()),
    ] {
        let p = b.join(k);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    write_pattern_file(&b.join("big/part.bin"), 1_300_000, 5);
    t
}

fn run_script(script: &str, serve: &Serve, bucket_dir: &Path) {
    let have = Command::new("python3")
        .args(["-c", "import alibabacloud_oss_v2, boto3"])
        .status();
    assert!(
        matches!(have, Ok(s) if s.success()),
        "the SDK cross-checks need python3 with the OSS SDK and boto3: pip install alibabacloud-oss-v2 boto3"
    );
    let script_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let out = Command::new("python3")
        .arg(&script_path)
        .arg(serve.endpoint())
        .arg("sdkbucket")
        .arg(bucket_dir)
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .env("AWS_ACCESS_KEY_ID", AK)
        .env("AWS_SECRET_ACCESS_KEY", SK)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
}

#[test]
fn official_oss_python_sdk() {
    let t = tree();
    let s = Serve::start(t.path());
    run_script("oss_sdk_check.py", &s, &t.path().join("sdkbucket"));
    let st = s.stats();
    assert!(st.auth_failures >= 3, "{st:?}");
    assert!(st.get_requests > 0 && st.head_requests > 0 && st.list_requests > 0);
}

/// serve's versioning emulation read by the official OSS Python SDK's `version_id`: each
/// older version and the latest, by HEAD, GET, ranged GET and the SDK's downloader, with
/// their own ETags and CRC-64s; an unknown version is NoSuchVersion.
#[test]
fn official_oss_python_sdk_reads_versions() {
    let t = tempfile::tempdir().unwrap();
    let b = t.path().join("sdkbucket");
    let v = b.join(".ossmount-versions");
    write_pattern_file(&b.join("doc.txt"), 5_000, 31);
    write_pattern_file(&v.join("doc.txt/v1"), 3_000, 32);
    write_pattern_file(&v.join("doc.txt/v2"), 5_000, 33);
    write_pattern_file(&b.join("dir/big.bin"), 1_300_000, 34);
    write_pattern_file(
        &v.join("dir/big.bin/CAEQNhiBgMDJgZCA0BYiIDc4MGZjZGI2OTBjOTRmNTE5NmU5NmFmZjU5ZjU5"),
        1_100_000,
        35,
    );
    let s = Serve::start(t.path());
    run_script("oss_versions_check.py", &s, &b);
    assert!(s.stats().get_requests > 0);
}

#[test]
fn boto3() {
    let t = tree();
    let s = Serve::start(t.path());
    run_script("boto3_check.py", &s, &t.path().join("sdkbucket"));
    assert!(s.stats().auth_failures >= 2);
}

/// The official Alibaba Cloud credentials library for Python (alibabacloud-credentials)
/// gets credentials from serve's fake metadata service and fake STS (AssumeRoleWithOIDC),
/// and the OSS SDK reads with them: the aids' wire formats are the library's, not ours.
#[test]
fn alibabacloud_credentials_library() {
    use std::io::{BufRead, BufReader};
    let have = Command::new("python3")
        .args(["-c", "import alibabacloud_credentials, alibabacloud_oss_v2"])
        .status();
    assert!(
        matches!(have, Ok(s) if s.success()),
        "this cross-check needs: pip install alibabacloud-credentials alibabacloud-oss-v2"
    );
    let t = tree();
    let mut child = Command::new(common::bin())
        .arg("serve")
        .arg(t.path())
        .args(["--listen", "127.0.0.1:0", "--testing-aids"])
        .args([
            "--metadata-listen",
            "127.0.0.1:0",
            "--sts-listen",
            "127.0.0.1:0",
        ])
        .args(["--credential-lifetime", "1h"])
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = || {
        let l = lines.next().unwrap().unwrap();
        format!("http://{}", l.trim().rsplit("http://").next().unwrap())
    };
    let (endpoint, metadata, sts) = (addr(), addr(), addr());
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/aliyun_credentials_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&endpoint, &metadata, &sts, "sdkbucket", "dir/sub/two"])
        .arg(t.path().join("sdkbucket/dir/sub/two"))
        .env_remove("ALIBABA_CLOUD_ECS_METADATA_DISABLED")
        .output()
        .expect("run python3");
    let fetch = |path: &str| -> serde_json::Value {
        use std::io::{Read, Write};
        let hostport = metadata.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(hostport).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    };
    let stats = fetch("/_ossmount/credentials");
    let _ = child.kill();
    let _ = child.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "aliyun_credentials_check.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}\n{stats}");
    // The library took the hardened path (token first) and called STS once.
    assert!(stats["metadata_tokens"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["metadata_v1"].as_u64().unwrap(), 0, "{stats}");
    assert_eq!(stats["assume_role_oidc"].as_u64().unwrap(), 1, "{stats}");
    assert!(stats["refused_invalid"].as_u64().unwrap() >= 1, "{stats}");
}

/// botocore's own credential resolver (the default chain of every boto3 session) gets
/// credentials from serve's AWS aids: web identity (AssumeRoleWithWebIdentity), the
/// container endpoint, IMDSv2, and a role_arn + source_profile profile (AssumeRole signed
/// by botocore's SigV4, verified by serve); boto3 reads with each set.
#[test]
fn botocore_credential_resolver() {
    use std::io::{BufRead, BufReader, Read, Write};
    let have = Command::new("python3")
        .args(["-c", "import boto3, botocore"])
        .status();
    assert!(
        matches!(have, Ok(s) if s.success()),
        "this cross-check needs: pip install boto3"
    );
    let t = tree();
    let aux = tempfile::tempdir().unwrap();
    let web_token = aux.path().join("web-token");
    std::fs::write(&web_token, "eyJhbGciOiJSUzI1NiJ9.web.identity\n").unwrap();
    let auth = aux.path().join("container-auth");
    // No newline: botocore sends the file as is and refuses a line break.
    std::fs::write(&auth, "container-auth-token-1").unwrap();
    let mut child = Command::new(common::bin())
        .arg("serve")
        .arg(t.path())
        .args(["--listen", "127.0.0.1:0", "--testing-aids"])
        .args([
            "--metadata-listen",
            "127.0.0.1:0",
            "--sts-listen",
            "127.0.0.1:0",
        ])
        .args(["--credential-lifetime", "1h"])
        .arg("--web-identity-token-file")
        .arg(&web_token)
        .arg("--container-authorization-file")
        .arg(&auth)
        .env("AWS_ACCESS_KEY_ID", AK)
        .env("AWS_SECRET_ACCESS_KEY", SK)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = || {
        let l = lines.next().unwrap().unwrap();
        format!("http://{}", l.trim().rsplit("http://").next().unwrap())
    };
    let (endpoint, metadata, sts) = (addr(), addr(), addr());
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/botocore_credentials_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&endpoint, &metadata, &sts, "sdkbucket", "dir/sub/two"])
        .arg(t.path().join("sdkbucket/dir/sub/two"))
        .arg(&web_token)
        .arg(&auth)
        .args([AK, SK])
        .output()
        .expect("run python3");
    let stats: serde_json::Value = {
        let mut s = std::net::TcpStream::connect(metadata.trim_start_matches("http://")).unwrap();
        write!(
            s,
            "GET /_ossmount/credentials HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    };
    let _ = child.kill();
    let _ = child.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "botocore_credentials_check.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}\n{stats}");
    let n = |f: &str| stats[f].as_u64().unwrap_or_else(|| panic!("{f}: {stats}"));
    assert_eq!(n("aws_assume_role_web_identity"), 1, "{stats}");
    assert_eq!(n("aws_assume_role"), 1, "{stats}");
    assert_eq!(n("container_credentials"), 1, "{stats}");
    assert!(
        n("imds_tokens") >= 1 && n("imds_credentials") == 1,
        "{stats}"
    );
    // The refused wrong token is the only STS error.
    assert_eq!(n("sts_errors"), 1, "{stats}");
    assert!(n("accepted") >= 4, "{stats}");
}
