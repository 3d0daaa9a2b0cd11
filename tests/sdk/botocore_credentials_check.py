#!/usr/bin/env python3
"""Cross-check `ossmount serve`'s AWS credential aids with botocore's own credential
resolver (the default chain of every boto3 session), which nobody here wrote.

Usage: botocore_credentials_check.py ENDPOINT METADATA STS BUCKET KEY LOCAL_FILE
           WEB_TOKEN_FILE CONTAINER_AUTH_FILE AK SK
  ENDPOINT  serve's object listener, METADATA and STS its aid listeners (http://ADDR);
  WEB_TOKEN_FILE / CONTAINER_AUTH_FILE the files serve was started with
  (--web-identity-token-file, --container-authorization-file); AK/SK serve's key pair.

For each source, the environment is set as on the real platform (only the addresses
point at serve, through the variables botocore itself honours) and
botocore.session.Session().get_credentials() resolves the chain:

1. web identity (EKS IRSA): AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, STS at
   AWS_ENDPOINT_URL_STS -> AssumeRoleWithWebIdentity;
2. the container endpoint (EKS Pod Identity): AWS_CONTAINER_CREDENTIALS_FULL_URI +
   AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE;
3. the EC2 instance profile: IMDSv2 at AWS_EC2_METADATA_SERVICE_ENDPOINT, with IMDSv1
   disabled so the token path is the only one;
4. role_arn + source_profile in AWS_CONFIG_FILE: AssumeRole signed by botocore's SigV4
   with serve's key pair, which serve verifies.

Each set of credentials then reads KEY with boto3 (SigV4 with x-amz-security-token) and is
compared with LOCAL_FILE; the method botocore reports names the provider it used. A wrong
web identity token is refused. Exit 0 when everything matches.
"""
import os
import sys
import tempfile

try:
    import boto3
    import boto3.session
    import botocore.config
    import botocore.exceptions
    import botocore.session
except ImportError as e:
    print(f"missing module ({e}): pip install boto3", file=sys.stderr)
    sys.exit(3)


def clean_env(tmp):
    for k in list(os.environ):
        if k.startswith("AWS_"):
            del os.environ[k]
    os.environ["AWS_CONFIG_FILE"] = os.path.join(tmp, "no-config")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(tmp, "no-credentials")
    os.environ["AWS_REGION"] = "cn-hangzhou"
    os.environ["AWS_DEFAULT_REGION"] = "cn-hangzhou"
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def resolve(env):
    os.environ.update(env)
    creds = botocore.session.Session().get_credentials()
    assert creds is not None, f"botocore found no credentials with {sorted(env)}"
    return creds.method, creds.get_frozen_credentials()


def read_with(endpoint, bucket, key, c):
    # A fresh session: boto3's default one keeps the first environment's files.
    s3 = boto3.session.Session(botocore_session=botocore.session.Session()).client(
        "s3",
        endpoint_url=endpoint,
        region_name="cn-hangzhou",
        aws_access_key_id=c.access_key,
        aws_secret_access_key=c.secret_key,
        aws_session_token=c.token,
        config=botocore.config.Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def main():
    (endpoint, metadata, sts, bucket, key, local, web_token, auth_file, ak, sk) = sys.argv[1:11]
    want = open(local, "rb").read()
    tmp = tempfile.mkdtemp()
    cases = [
        ("assume-role-with-web-identity", {
            "AWS_WEB_IDENTITY_TOKEN_FILE": web_token,
            "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/crosscheck",
            "AWS_ROLE_SESSION_NAME": "crosscheck",
            "AWS_ENDPOINT_URL_STS": sts,
        }),
        ("container-role", {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": metadata + "/v1/credentials",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": auth_file,
        }),
        ("iam-role", {
            "AWS_EC2_METADATA_DISABLED": "false",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata + "/",
            "AWS_EC2_METADATA_V1_DISABLED": "true",
        }),
    ]
    config = os.path.join(tmp, "config")
    with open(config, "w") as f:
        f.write(f"[profile src]\naws_access_key_id = {ak}\naws_secret_access_key = {sk}\n"
                "[profile reader]\nrole_arn = arn:aws:iam::123456789012:role/reader\n"
                "source_profile = src\nrole_session_name = crosscheck\nregion = cn-hangzhou\n")
    cases.append(("assume-role", {
        "AWS_CONFIG_FILE": config,
        "AWS_PROFILE": "reader",
        "AWS_ENDPOINT_URL_STS": sts,
    }))
    seen = set()
    for method, env in cases:
        clean_env(tmp)
        got_method, c = resolve(env)
        assert got_method == method, (got_method, method)
        assert c.access_key.startswith("ASIA") and c.token, c.access_key[:4]
        assert c.access_key not in seen
        seen.add(c.access_key)
        assert read_with(endpoint, bucket, key, c) == want, f"{method}: other bytes"
        print(f"{method}: botocore's resolver got credentials that read the object")

    clean_env(tmp)
    bad = os.path.join(tmp, "bad-token")
    with open(bad, "w") as f:
        f.write("not-the-token")
    try:
        resolve({**cases[0][1], "AWS_WEB_IDENTITY_TOKEN_FILE": bad})
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidIdentityToken", e.response["Error"]
        print("a wrong web identity token is refused with InvalidIdentityToken")
    else:
        raise AssertionError("a wrong web identity token was accepted")
    print("ok")


if __name__ == "__main__":
    main()
