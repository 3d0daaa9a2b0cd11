#!/usr/bin/env python3
"""Cross-check `ossmount serve` with the official OSS Python SDK (alibabacloud-oss-v2).

Usage: oss_sdk_check.py ENDPOINT BUCKET LOCAL_BUCKET_DIR
Credentials: OSS_ACCESS_KEY_ID / OSS_ACCESS_KEY_SECRET. Region cn-hangzhou, path style,
V4 signatures (the SDK's default). LOCAL_BUCKET_DIR is the folder being served as BUCKET;
every answer is compared with it. Exit 0 when everything matches.
"""
import hashlib
import os
import sys
import tempfile

try:
    import alibabacloud_oss_v2 as oss
    from alibabacloud_oss_v2.crc import Crc64
except ImportError:
    print("missing module: pip install alibabacloud-oss-v2 boto3", file=sys.stderr)
    sys.exit(3)


def client(endpoint, secret):
    cfg = oss.config.load_default()
    cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(
        os.environ["OSS_ACCESS_KEY_ID"], secret)
    cfg.region = "cn-hangzhou"
    cfg.endpoint = endpoint
    cfg.use_path_style = True
    cfg.retry_max_attempts = 1
    return oss.Client(cfg)


def local_objects(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root).replace(os.sep, "/")] = p
    return out


def crc64(data):
    c = Crc64(0)
    c.update(data)
    return c.sum64()


def expect_error(fn, status, code):
    try:
        fn()
    except oss.exceptions.OperationError as e:
        se = e.unwrap()
        assert isinstance(se, oss.exceptions.ServiceError), repr(se)
        assert se.status_code == status and se.code == code, (se.status_code, se.code, se.message)
        return se
    raise AssertionError(f"expected {status} {code}, got success")


def main():
    endpoint, bucket, root = sys.argv[1:4]
    c = client(endpoint, os.environ["OSS_ACCESS_KEY_SECRET"])
    objects = local_objects(root)
    keys = sorted(objects, key=lambda k: k.encode())

    # Listing, 2 per page through the paginator (encoding-type=url, continuation tokens).
    listed = []
    pages = 0
    for page in c.list_objects_v2_paginator().iter_page(
            oss.ListObjectsV2Request(bucket=bucket, max_keys=2)):
        pages += 1
        listed += [(o.key, o.size, o.etag) for o in (page.contents or [])]
    assert [k for k, _, _ in listed] == keys, (listed, keys)
    assert pages == (len(keys) + 1) // 2, pages
    for key, size, etag in listed:
        data = open(objects[key], "rb").read()
        assert size == len(data), key
        assert etag == '"%s"' % hashlib.md5(data).hexdigest().upper(), (key, etag)

    # Delimiter listing: one level.
    top = c.list_objects_v2(oss.ListObjectsV2Request(bucket=bucket, delimiter="/"))
    want_prefixes = sorted({k.split("/")[0] + "/" for k in keys if "/" in k})
    got_prefixes = [p.prefix for p in (top.common_prefixes or [])]
    assert got_prefixes == want_prefixes, (got_prefixes, want_prefixes)
    assert [o.key for o in (top.contents or [])] == [k for k in keys if "/" not in k]

    for key in keys:
        data = open(objects[key], "rb").read()
        h = c.head_object(oss.HeadObjectRequest(bucket=bucket, key=key))
        assert h.content_length == len(data), key
        assert h.etag == '"%s"' % hashlib.md5(data).hexdigest().upper(), key
        assert int(h.hash_crc64) == crc64(data), (key, h.hash_crc64)
        assert h.object_type == "Normal", h.object_type

        # Whole object (the SDK checks the CRC-64 itself).
        g = c.get_object(oss.GetObjectRequest(bucket=bucket, key=key))
        assert g.body.read() == data, key
        if len(data) > 20:
            g = c.get_object(oss.GetObjectRequest(
                bucket=bucket, key=key, range_header="bytes=10-19", range_behavior="standard"))
            assert g.status_code == 206 and g.content_range == f"bytes 10-19/{len(data)}", g.content_range
            assert g.body.read() == data[10:20], key
            g = c.get_object(oss.GetObjectRequest(
                bucket=bucket, key=key, range_header=f"bytes={len(data) - 5}-{len(data) + 100}",
                range_behavior="standard"))
            assert g.status_code == 206 and g.body.read() == data[-5:], key
        expect_error(lambda: c.get_object(oss.GetObjectRequest(
            bucket=bucket, key=key, range_header=f"bytes={len(data)}-",
            range_behavior="standard")), 416, "InvalidRange")
        expect_error(lambda: c.get_object(oss.GetObjectRequest(
            bucket=bucket, key=key, if_match='"0000"')), 412, "PreconditionFailed")

    # The SDK's resumable downloader: parallel ranged GETs, CRC-64 check at the end.
    big = max(keys, key=lambda k: os.path.getsize(objects[k]))
    with tempfile.TemporaryDirectory() as tmp:
        dest = os.path.join(tmp, "download")
        c.downloader(part_size=100 * 1024, parallel_num=3).download_file(
            oss.GetObjectRequest(bucket=bucket, key=big), filepath=dest)
        assert open(dest, "rb").read() == open(objects[big], "rb").read()

    expect_error(lambda: c.head_object(oss.HeadObjectRequest(bucket=bucket, key="no/such/key")),
                 404, "NoSuchKey")
    expect_error(lambda: c.get_object(oss.GetObjectRequest(bucket=bucket, key="no/such/key")),
                 404, "NoSuchKey")

    # A wrong secret is refused, on GET (XML body) and HEAD (x-oss-err header).
    bad = client(endpoint, "not-the-secret")
    se = expect_error(lambda: bad.get_object(oss.GetObjectRequest(bucket=bucket, key=keys[0])),
                      403, "SignatureDoesNotMatch")
    expect_error(lambda: bad.head_object(oss.HeadObjectRequest(bucket=bucket, key=keys[0])),
                 403, "SignatureDoesNotMatch")
    expect_error(lambda: bad.list_objects_v2(oss.ListObjectsV2Request(bucket=bucket)),
                 403, "SignatureDoesNotMatch")
    print(f"oss sdk check: {len(keys)} objects, {pages} list pages, all good ({se.request_id})")


if __name__ == "__main__":
    main()
