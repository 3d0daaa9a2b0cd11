#!/usr/bin/env python3
"""Cross-check `ossmount serve` with boto3 (S3 SigV4, path style).

Usage: boto3_check.py ENDPOINT BUCKET LOCAL_BUCKET_DIR
Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; region cn-hangzhou (the server's
--region). Exit 0 when every answer matches LOCAL_BUCKET_DIR.
"""
import hashlib
import os
import sys

try:
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError:
    print("missing module: pip install alibabacloud-oss-v2 boto3", file=sys.stderr)
    sys.exit(3)


def client(endpoint, secret):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="cn-hangzhou",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret,
        config=botocore.config.Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            # Newer botocore adds CRC32 checksums by default; this server sends none.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def expect_error(fn, status, code):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        got = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
        assert got == (status, code), got
        return e
    raise AssertionError(f"expected {status} {code}, got success")


def main():
    endpoint, bucket, root = sys.argv[1:4]
    s3 = client(endpoint, os.environ["AWS_SECRET_ACCESS_KEY"])
    objects = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            objects[os.path.relpath(p, root).replace(os.sep, "/")] = p
    keys = sorted(objects, key=lambda k: k.encode())

    listed = []
    pages = 0
    for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 2}):
        pages += 1
        listed += [o["Key"] for o in page.get("Contents", [])]
    assert listed == keys, (listed, keys)
    assert pages == (len(keys) + 1) // 2, pages

    # ListObjects V1 (boto3 sends encoding-type=url and pages by NextMarker, else the last Key).
    listed_v1 = []
    for page in s3.get_paginator("list_objects").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 2}):
        listed_v1 += [o["Key"] for o in page.get("Contents", [])]
    assert listed_v1 == keys, (listed_v1, keys)
    top_v1 = []
    for page in s3.get_paginator("list_objects").paginate(
            Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 1}):
        top_v1 += [o["Key"] for o in page.get("Contents", [])]
        top_v1 += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    want_top = sorted({k.split("/")[0] + ("/" if "/" in k else "") for k in keys}, key=str.encode)
    assert sorted(top_v1, key=str.encode) == want_top, (top_v1, want_top)

    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    want = sorted({k.split("/")[0] + "/" for k in keys if "/" in k})
    assert [p["Prefix"] for p in top.get("CommonPrefixes", [])] == want

    for key in keys:
        data = open(objects[key], "rb").read()
        h = s3.head_object(Bucket=bucket, Key=key)
        assert h["ContentLength"] == len(data), key
        assert h["ETag"].strip('"').lower() == hashlib.md5(data).hexdigest(), key
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data, key
        if len(data) > 20:
            g = s3.get_object(Bucket=bucket, Key=key, Range="bytes=10-19")
            assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
            assert g["ContentRange"] == f"bytes 10-19/{len(data)}", g["ContentRange"]
            assert g["Body"].read() == data[10:20]
            g = s3.get_object(Bucket=bucket, Key=key, Range="bytes=-7")
            assert g["Body"].read() == data[-7:]
        expect_error(lambda: s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={len(data)}-"),
                     416, "InvalidRange")
        expect_error(lambda: s3.get_object(Bucket=bucket, Key=key, IfMatch='"0000"'),
                     412, "PreconditionFailed")

    expect_error(lambda: s3.get_object(Bucket=bucket, Key="no/such/key"), 404, "NoSuchKey")
    bad = client(endpoint, "not-the-secret")
    expect_error(lambda: bad.get_object(Bucket=bucket, Key=keys[0]), 403, "SignatureDoesNotMatch")
    expect_error(lambda: bad.list_objects_v2(Bucket=bucket), 403, "SignatureDoesNotMatch")
    print(f"boto3 check: {len(keys)} objects, {pages} list pages, all good")


if __name__ == "__main__":
    main()
