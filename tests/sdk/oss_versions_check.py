#!/usr/bin/env python3
"""Cross-check `ossmount serve`'s versioning emulation with the official OSS Python SDK
(alibabacloud-oss-v2): the SDK's own `version_id` (query `versionId`, V4-signed) and its
reading of `x-oss-version-id`.

Usage: oss_versions_check.py ENDPOINT BUCKET LOCAL_BUCKET_DIR
LOCAL_BUCKET_DIR is the folder served as BUCKET; its `.ossmount-versions/KEY/ID` files are
the older versions of KEY. Every older version and the latest are read with version_id
(head, whole GET, ranged GET, the SDK's resumable downloader) and compared with the
files; an unknown version must be 404 NoSuchVersion; listings must not show the
versions directory. Exit 0 when everything matches.
"""
import hashlib
import os
import sys
import tempfile

try:
    import alibabacloud_oss_v2 as oss
    from alibabacloud_oss_v2.crc import Crc64
except ImportError:
    print("missing module: pip install alibabacloud-oss-v2", file=sys.stderr)
    sys.exit(3)

VERSIONS_DIR = ".ossmount-versions"


def client(endpoint):
    cfg = oss.config.load_default()
    cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(
        os.environ["OSS_ACCESS_KEY_ID"], os.environ["OSS_ACCESS_KEY_SECRET"])
    cfg.region = "cn-hangzhou"
    cfg.endpoint = endpoint
    cfg.use_path_style = True
    cfg.retry_max_attempts = 1
    return oss.Client(cfg)


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


def check_version(c, bucket, key, version_id, data):
    """`version_id` of `key` reads as `data`, with its own ETag and CRC-64."""
    h = c.head_object(oss.HeadObjectRequest(bucket=bucket, key=key, version_id=version_id))
    assert h.version_id == version_id, (key, h.version_id, version_id)
    assert h.content_length == len(data), (key, version_id)
    assert h.etag == '"%s"' % hashlib.md5(data).hexdigest().upper(), (key, version_id)
    assert int(h.hash_crc64) == crc64(data), (key, version_id)
    g = c.get_object(oss.GetObjectRequest(bucket=bucket, key=key, version_id=version_id))
    assert g.version_id == version_id, (key, g.version_id)
    assert g.body.read() == data, (key, version_id)
    g = c.get_object(oss.GetObjectRequest(
        bucket=bucket, key=key, version_id=version_id, range_header="bytes=100-199",
        range_behavior="standard"))
    assert g.status_code == 206 and g.body.read() == data[100:200], (key, version_id)
    # The SDK's resumable downloader: HEAD and parallel ranged GETs, all with versionId,
    # and its CRC-64 check at the end.
    with tempfile.TemporaryDirectory() as tmp:
        dest = os.path.join(tmp, "download")
        c.downloader(part_size=100 * 1024, parallel_num=3).download_file(
            oss.GetObjectRequest(bucket=bucket, key=key, version_id=version_id),
            filepath=dest)
        assert open(dest, "rb").read() == data, (key, version_id)


def main():
    endpoint, bucket, root = sys.argv[1:4]
    c = client(endpoint)
    vroot = os.path.join(root, VERSIONS_DIR)
    older = []
    for d, _, files in os.walk(vroot):
        for f in files:
            key = os.path.relpath(d, vroot).replace(os.sep, "/")
            older.append((key, f, os.path.join(d, f)))
    assert older, f"no older versions under {vroot}"

    listed = [o.key for page in c.list_objects_v2_paginator().iter_page(
        oss.ListObjectsV2Request(bucket=bucket)) for o in (page.contents or [])]
    assert listed and not any(k.startswith(VERSIONS_DIR) for k in listed), listed

    keys = sorted({k for k, _, _ in older})
    for key, version_id, path in older:
        check_version(c, bucket, key, version_id, open(path, "rb").read())
    for key in keys:
        data = open(os.path.join(root, key), "rb").read()
        # The latest: its id is in every answer, and asking for it by id gets it.
        h = c.head_object(oss.HeadObjectRequest(bucket=bucket, key=key))
        assert h.version_id, (key, "the latest has no x-oss-version-id")
        g = c.get_object(oss.GetObjectRequest(bucket=bucket, key=key))
        assert g.version_id == h.version_id and g.body.read() == data, key
        check_version(c, bucket, key, h.version_id, data)
        expect_error(lambda: c.get_object(oss.GetObjectRequest(
            bucket=bucket, key=key, version_id="no-such-version")), 404, "NoSuchVersion")
        expect_error(lambda: c.head_object(oss.HeadObjectRequest(
            bucket=bucket, key=key, version_id="no-such-version")), 404, "NoSuchVersion")
    # The versions directory is no key.
    key, version_id, _ = older[0]
    expect_error(lambda: c.get_object(oss.GetObjectRequest(
        bucket=bucket, key=f"{VERSIONS_DIR}/{key}/{version_id}")), 404, "NoSuchKey")
    print(f"oss versions check: {len(older)} older versions of {len(keys)} keys, all good")


if __name__ == "__main__":
    main()
