#!/usr/bin/env python3
"""Cross-check `ossmount serve`'s credential aids with the official Alibaba Cloud
credentials library for Python (alibabacloud-credentials), which nobody here wrote.

Usage: aliyun_credentials_check.py ENDPOINT METADATA STS BUCKET KEY LOCAL_FILE
  ENDPOINT  serve's object listener, METADATA and STS its aid listeners (http://ADDR)

1. EcsRamRoleCredentialsProvider fetches credentials from the fake metadata service (token
   first, then the role name, then the role's credentials), exactly as on an ECS instance;
2. OIDCRoleArnCredentialsProvider exchanges an OIDC token file for credentials with the
   fake STS (AssumeRoleWithOIDC);
3. each set is used by the official OSS SDK (alibabacloud-oss-v2, V4 signatures with
   x-oss-security-token) to read KEY, compared with LOCAL_FILE;
4. a made-up token on a real key id is refused with InvalidAccessKeyId.

The library hard-codes the metadata host (100.100.100.200) and https for STS; the only
changes made here are those two addresses (the metadata host attribute, and the STS
endpoint given with its http:// scheme, which the library's URL builder honours).
Everything else (paths, headers, parameters, parsing) is the library's own code.
Exit 0 when everything matches.
"""
import os
import sys
import tempfile

try:
    import alibabacloud_oss_v2 as oss
    from alibabacloud_credentials.provider.ecs_ram_role import EcsRamRoleCredentialsProvider
    from alibabacloud_credentials.provider.oidc import OIDCRoleArnCredentialsProvider
except ImportError as e:
    print(f"missing module ({e}): pip install alibabacloud-credentials alibabacloud-oss-v2",
          file=sys.stderr)
    sys.exit(3)


def read_with(endpoint, bucket, key, creds):
    cfg = oss.config.load_default()
    cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(
        creds.get_access_key_id(), creds.get_access_key_secret(), creds.get_security_token())
    cfg.region = "cn-hangzhou"
    cfg.endpoint = endpoint
    cfg.use_path_style = True
    cfg.retry_max_attempts = 1
    client = oss.Client(cfg)
    return client.get_object(oss.GetObjectRequest(bucket=bucket, key=key)).body.read()


def main():
    endpoint, metadata, sts, bucket, key, local = sys.argv[1:7]
    want = open(local, "rb").read()

    ecs = EcsRamRoleCredentialsProvider(async_update_enabled=False)
    ecs._EcsRamRoleCredentialsProvider__metadata_service_host = metadata
    c = ecs.get_credentials()
    assert c.get_access_key_id().startswith("STS."), c.get_access_key_id()
    assert c.get_security_token(), "no token"
    assert c.get_provider_name() == "ecs_ram_role", c.get_provider_name()
    assert read_with(endpoint, bucket, key, c) == want, "ECS credentials read other bytes"
    print("ecs_ram_role: credentials from the metadata service read the object")

    with tempfile.NamedTemporaryFile("w", suffix=".token", delete=False) as f:
        f.write("eyJhbGciOiJSUzI1NiJ9.crosscheck.token")
        token_file = f.name
    oidc = OIDCRoleArnCredentialsProvider(
        role_arn="acs:ram::123456:role/crosscheck",
        oidc_provider_arn="acs:ram::123456:oidc-provider/ack-rrsa",
        oidc_token_file_path=token_file,
        role_session_name="crosscheck",
        sts_endpoint=sts,
    )
    c2 = oidc.get_credentials()
    assert c2.get_access_key_id().startswith("STS."), c2.get_access_key_id()
    assert c2.get_access_key_id() != c.get_access_key_id()
    assert read_with(endpoint, bucket, key, c2) == want, "OIDC credentials read other bytes"
    print("oidc_role_arn: credentials from AssumeRoleWithOIDC read the object")

    class Forged:
        def get_access_key_id(self):
            return c2.get_access_key_id()

        def get_access_key_secret(self):
            return c2.get_access_key_secret()

        def get_security_token(self):
            return "CAISforged"

    try:
        read_with(endpoint, bucket, key, Forged())
    except oss.exceptions.OperationError as e:
        se = e.unwrap()
        assert se.status_code == 403 and se.code == "InvalidAccessKeyId", (se.status_code, se.code)
        print("a forged token is refused with 403 InvalidAccessKeyId")
    else:
        raise AssertionError("a forged token was accepted")
    os.unlink(token_file)
    print("ok")


if __name__ == "__main__":
    main()
