"""The store's S3 endpoint driven by boto3, a client people already use.

Usage: python3 s3_boto3.py ENDPOINT ACCESS_KEY_ID SECRET_ACCESS_KEY
Exits non-zero with the failing check on stderr.
"""

import base64
import hashlib
import os
import sys
import urllib.error
import urllib.request
import zlib

import boto3
import botocore.config
import botocore.exceptions


def client(endpoint, key, secret, **config):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=botocore.config.Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config
        ),
    )


def error_code(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("expected an error")


def main():
    endpoint, key, secret = sys.argv[1:4]
    s3 = client(endpoint, key, secret)

    s3.create_bucket(Bucket="photos")
    assert error_code(lambda: s3.create_bucket(Bucket="photos")) == "BucketAlreadyOwnedByYou"
    # A name S3 does not allow is refused, and the message says why.
    try:
        s3.create_bucket(Bucket="b")
        raise AssertionError("a one-letter bucket was made")
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidBucketName", e.response
        assert "3 to 63" in e.response["Error"]["Message"], e.response
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["photos"]
    s3.head_bucket(Bucket="photos")
    assert error_code(lambda: s3.head_bucket(Bucket="nope")) in ("404", "NoSuchBucket")

    body = bytes(range(256)) * 4000  # 1,024,000 bytes: one chunk and a bit
    put = s3.put_object(
        Bucket="photos", Key="2026/beach.jpg", Body=body,
        ContentType="image/jpeg", Metadata={"camera": "x100"},
    )
    assert put["ETag"].strip('"') == hashlib.md5(body).hexdigest(), put["ETag"]
    head = s3.head_object(Bucket="photos", Key="2026/beach.jpg")
    assert head["ContentLength"] == len(body)
    assert head["ContentType"] == "image/jpeg", head
    assert head["Metadata"] == {"camera": "x100"}, head["Metadata"]
    got = s3.get_object(Bucket="photos", Key="2026/beach.jpg")
    assert got["Body"].read() == body
    part = s3.get_object(Bucket="photos", Key="2026/beach.jpg", Range="bytes=1000-1999")
    assert part["Body"].read() == body[1000:2000]
    assert part["ContentRange"] == f"bytes 1000-1999/{len(body)}", part["ContentRange"]
    tail = s3.get_object(Bucket="photos", Key="2026/beach.jpg", Range="bytes=-10")
    assert tail["Body"].read() == body[-10:]
    assert error_code(lambda: s3.get_object(
        Bucket="photos", Key="2026/beach.jpg", Range=f"bytes={len(body) + 5}-")) == "InvalidRange"

    # A body that does not match its Content-MD5 is refused whole.
    assert error_code(lambda: s3.put_object(
        Bucket="photos", Key="2026/beach.jpg", Body=b"hello",
        ContentMD5="XrY7u+Ae7tCTyyK7j1rNww==")) == "BadDigest"
    assert error_code(lambda: s3.put_object(
        Bucket="photos", Key="md5", Body=b"hello", ContentMD5="bm90IGFuIG1kNQ==")) \
        == "InvalidDigest"
    assert s3.get_object(Bucket="photos", Key="2026/beach.jpg")["Body"].read() == body
    assert error_code(lambda: s3.head_object(Bucket="photos", Key="md5")) in ("404", "NoSuchKey")
    s3.put_object(Bucket="photos", Key="md5", Body=b"hello",
                  ContentMD5="XUFAKrxLKna5cZ2REBfFkg==")
    s3.delete_object(Bucket="photos", Key="md5")

    # Conditional requests.
    etag = put["ETag"]
    assert error_code(lambda: s3.get_object(
        Bucket="photos", Key="2026/beach.jpg", IfNoneMatch=etag)) in ("304", "NotModified")
    assert error_code(lambda: s3.get_object(
        Bucket="photos", Key="2026/beach.jpg", IfMatch='"0000"')) in ("412", "PreconditionFailed")
    s3.get_object(Bucket="photos", Key="2026/beach.jpg", IfMatch=etag)

    # Conditional writes: create-only and compare-and-swap.
    assert error_code(lambda: s3.put_object(
        Bucket="photos", Key="2026/beach.jpg", Body=b"clobber", IfNoneMatch="*")) \
        in ("412", "PreconditionFailed")
    assert error_code(lambda: s3.put_object(
        Bucket="photos", Key="2026/beach.jpg", Body=b"clobber", IfMatch='"0000"')) \
        in ("412", "PreconditionFailed")
    assert error_code(lambda: s3.put_object(
        Bucket="photos", Key="absent", Body=b"x", IfMatch=etag)) in ("404", "NoSuchKey")
    assert s3.get_object(Bucket="photos", Key="2026/beach.jpg")["Body"].read() == body, \
        "a refused write changed nothing"
    s3.put_object(Bucket="photos", Key="lock", Body=b"mine", IfNoneMatch="*")
    swapped = s3.put_object(Bucket="photos", Key="lock", Body=b"next",
                            IfMatch=s3.head_object(Bucket="photos", Key="lock")["ETag"])
    assert s3.get_object(Bucket="photos", Key="lock")["Body"].read() == b"next"
    assert swapped["ETag"].strip('"') == hashlib.md5(b"next").hexdigest()
    s3.delete_object(Bucket="photos", Key="lock")

    # Listing: prefix, delimiter, pages.
    for name in ["2026/a.txt", "2026/b.txt", "2025/old.txt", "readme.txt", "2026/sub/c.txt"]:
        s3.put_object(Bucket="photos", Key=name, Body=name.encode())
    listed = s3.list_objects_v2(Bucket="photos", Delimiter="/")
    assert [c["Prefix"] for c in listed["CommonPrefixes"]] == ["2025/", "2026/"], listed
    assert [o["Key"] for o in listed["Contents"]] == ["readme.txt"]
    listed = s3.list_objects_v2(Bucket="photos", Prefix="2026/", Delimiter="/")
    assert [o["Key"] for o in listed["Contents"]] == ["2026/a.txt", "2026/b.txt", "2026/beach.jpg"]
    assert [c["Prefix"] for c in listed["CommonPrefixes"]] == ["2026/sub/"]
    keys, token = [], None
    while True:
        kwargs = {"Bucket": "photos", "MaxKeys": 2}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_objects_v2(**kwargs)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert keys == sorted(["2026/a.txt", "2026/b.txt", "2025/old.txt", "readme.txt",
                           "2026/sub/c.txt", "2026/beach.jpg"]), keys
    paginated = [o["Key"] for p in s3.get_paginator("list_objects").paginate(
        Bucket="photos", PaginationConfig={"PageSize": 4}) for o in p.get("Contents", [])]
    assert paginated == keys, paginated

    # Copy keeps the metadata; multi-delete.
    s3.copy_object(Bucket="photos", Key="copy.jpg",
                   CopySource={"Bucket": "photos", "Key": "2026/beach.jpg"})
    copied = s3.get_object(Bucket="photos", Key="copy.jpg")
    assert copied["Body"].read() == body and copied["Metadata"] == {"camera": "x100"}
    assert error_code(lambda: s3.copy_object(
        Bucket="photos", Key="copy2.jpg", CopySourceIfMatch='"0000"',
        CopySource={"Bucket": "photos", "Key": "2026/beach.jpg"})) in ("412", "PreconditionFailed")
    assert error_code(lambda: s3.copy_object(
        Bucket="photos", Key="copy2.jpg", CopySourceIfNoneMatch=etag,
        CopySource={"Bucket": "photos", "Key": "2026/beach.jpg"})) in ("412", "PreconditionFailed")
    assert error_code(lambda: s3.head_object(Bucket="photos", Key="copy2.jpg")) in ("404", "NoSuchKey")
    assert error_code(lambda: s3.delete_bucket(Bucket="photos")) == "BucketNotEmpty"
    assert error_code(lambda: s3.get_object(Bucket="photos", Key="missing")) == "NoSuchKey"
    assert error_code(lambda: s3.get_object(Bucket="nope", Key="x")) == "NoSuchBucket"

    # Presigned GET works without credentials in the request.
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "photos", "Key": "readme.txt"}, ExpiresIn=300)
    with urllib.request.urlopen(url) as r:
        assert r.read() == b"readme.txt"
    # Presigned PUT (SigV4, as `aws s3 presign` makes them; the GET above
    # was boto3's default SigV2): a plain HTTP client uploads with the URL.
    v4 = client(endpoint, key, secret, signature_version="s3v4")
    put_url = v4.generate_presigned_url(
        "put_object", Params={"Bucket": "photos", "Key": "shared/drop.txt"}, ExpiresIn=300)
    req = urllib.request.Request(put_url, data=b"dropped off", method="PUT")
    with urllib.request.urlopen(req) as r:
        assert r.status == 200, r.status
    assert s3.get_object(Bucket="photos", Key="shared/drop.txt")["Body"].read() == b"dropped off"
    # The URL is for that key only: used for another, the signature fails.
    other = put_url.replace("shared/drop.txt", "shared/other.txt")
    try:
        urllib.request.urlopen(urllib.request.Request(other, data=b"x", method="PUT"))
        raise AssertionError("a presigned URL wrote another key")
    except urllib.error.HTTPError as e:
        assert e.code == 403, e.code
    assert error_code(lambda: s3.head_object(Bucket="photos", Key="shared/other.txt")) \
        in ("404", "NoSuchKey")
    s3.delete_object(Bucket="photos", Key="shared/drop.txt")
    # SigV2 in the Authorization header (`AWS KEY:SIGNATURE`), as the AWS
    # CLI v1 and older SDKs sign.
    v2 = client(endpoint, key, secret, signature_version="s3")
    v2.put_object(Bucket="photos", Key="shared/v2.txt", Body=b"signed the old way")
    assert v2.get_object(Bucket="photos", Key="shared/v2.txt")["Body"].read() == b"signed the old way"
    assert "shared/v2.txt" in [o["Key"] for o in v2.list_objects(Bucket="photos")["Contents"]]
    v2.delete_object(Bucket="photos", Key="shared/v2.txt")
    # Anonymous and badly signed requests are refused.
    try:
        urllib.request.urlopen(f"{endpoint}/photos/readme.txt")
        raise AssertionError("an anonymous request was served")
    except urllib.error.HTTPError as e:
        assert e.code == 403, e.code
    bad = client(endpoint, key, "not-the-secret-" + "x" * 25)
    assert error_code(lambda: bad.list_buckets()) == "SignatureDoesNotMatch"
    stranger = client(endpoint, "CSKNOSUCHKEY000000000", "x" * 40)
    assert error_code(lambda: stranger.list_buckets()) == "InvalidAccessKeyId"

    # Multipart, by hand: three parts, ETag md5-of-md5s with the count.
    part_bodies = [bytes([1]) * (5 << 20), bytes([2]) * (5 << 20), b"tail" * 1000]
    up = s3.create_multipart_upload(Bucket="photos", Key="big.bin", ContentType="application/x-test")
    uid = up["UploadId"]
    etags = []
    for n, b in enumerate(part_bodies, 1):
        r = s3.upload_part(Bucket="photos", Key="big.bin", UploadId=uid, PartNumber=n, Body=b)
        etags.append(r["ETag"])
        assert r["ETag"].strip('"') == hashlib.md5(b).hexdigest()
    parts = s3.list_parts(Bucket="photos", Key="big.bin", UploadId=uid)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2, 3]
    listed_uploads = s3.list_multipart_uploads(Bucket="photos")["Uploads"]
    assert [u["UploadId"] for u in listed_uploads] == [uid]
    assert error_code(lambda: s3.get_object(Bucket="photos", Key="big.bin")) == "NoSuchKey", \
        "an incomplete upload is not visible"
    done = s3.complete_multipart_upload(
        Bucket="photos", Key="big.bin", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    expected = hashlib.md5(b"".join(hashlib.md5(b).digest() for b in part_bodies)).hexdigest() + "-3"
    assert done["ETag"].strip('"') == expected, (done["ETag"], expected)
    whole = s3.get_object(Bucket="photos", Key="big.bin")
    assert whole["Body"].read() == b"".join(part_bodies)
    assert whole["ContentType"] == "application/x-test"
    assert s3.list_multipart_uploads(Bucket="photos").get("Uploads", []) == []
    # Too small a part, then abort: nothing left.
    up = s3.create_multipart_upload(Bucket="photos", Key="small.bin")
    small = [s3.upload_part(Bucket="photos", Key="small.bin", UploadId=up["UploadId"],
                            PartNumber=n, Body=b"x" * 1000)["ETag"] for n in (1, 2)]
    assert error_code(lambda: s3.complete_multipart_upload(
        Bucket="photos", Key="small.bin", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(small, 1)]})) == "EntityTooSmall"
    s3.abort_multipart_upload(Bucket="photos", Key="small.bin", UploadId=up["UploadId"])
    assert error_code(lambda: s3.list_parts(
        Bucket="photos", Key="small.bin", UploadId=up["UploadId"])) == "NoSuchUpload"
    # A part sent again after a later one finished, and two sends of one
    # part at once: the send recorded (its ETag in ListParts) is the one
    # read, never a mix.
    import threading
    up = s3.create_multipart_upload(Bucket="photos", Key="resent.bin")["UploadId"]
    s3.upload_part(Bucket="photos", Key="resent.bin", UploadId=up, PartNumber=1,
                   Body=b"a" * (5 << 20))
    tail_etag = s3.upload_part(Bucket="photos", Key="resent.bin", UploadId=up, PartNumber=2,
                               Body=b"tail")["ETag"]
    sends = [b"x" * (5 << 20), b"y" * (5 << 20)]
    threads = [threading.Thread(target=lambda b=b: s3.upload_part(
        Bucket="photos", Key="resent.bin", UploadId=up, PartNumber=1, Body=b)) for b in sends]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorded = s3.list_parts(Bucket="photos", Key="resent.bin", UploadId=up)["Parts"]
    assert [p["PartNumber"] for p in recorded] == [1, 2], recorded
    first = [b for b in sends if hashlib.md5(b).hexdigest() == recorded[0]["ETag"].strip('"')]
    assert len(first) == 1, recorded
    s3.complete_multipart_upload(Bucket="photos", Key="resent.bin", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": recorded[0]["ETag"]}, {"PartNumber": 2, "ETag": tail_etag}]})
    got = s3.get_object(Bucket="photos", Key="resent.bin")["Body"].read()
    assert got == first[0] + b"tail", (len(got), got[:2], got[-6:], recorded)
    s3.delete_object(Bucket="photos", Key="resent.bin")

    # boto3's own transfer manager, multipart above 8 MiB.
    import boto3.s3.transfer as transfer
    import io
    data = bytes(range(251)) * (80_000)  # 20,080,000 bytes
    s3.upload_fileobj(io.BytesIO(data), "photos", "managed.bin", Config=transfer.TransferConfig(
        multipart_threshold=8 << 20, multipart_chunksize=5 << 20))
    assert s3.head_object(Bucket="photos", Key="managed.bin")["ETag"].endswith('-4"')
    out = io.BytesIO()
    s3.download_fileobj("photos", "managed.bin", out, Config=transfer.TransferConfig(
        multipart_threshold=8 << 20, multipart_chunksize=5 << 20))
    assert out.getvalue() == data
    # boto3's managed copy above the threshold copies in parts
    # (UploadPartCopy with ranges), as `aws s3 cp s3://... s3://...` does.
    s3.copy({"Bucket": "photos", "Key": "managed.bin"}, "photos", "managed-copy.bin",
            Config=transfer.TransferConfig(multipart_threshold=8 << 20,
                                           multipart_chunksize=5 << 20))
    assert s3.head_object(Bucket="photos", Key="managed-copy.bin")["ETag"].endswith('-4"')
    assert s3.get_object(Bucket="photos", Key="managed-copy.bin")["Body"].read() == data
    up = s3.create_multipart_upload(Bucket="photos", Key="ranged.bin")["UploadId"]
    for bad in ("bytes=5-2", "5-9", f"bytes=0-{len(data)}"):
        assert error_code(lambda: s3.upload_part_copy(
            Bucket="photos", Key="ranged.bin", UploadId=up, PartNumber=1,
            CopySource="photos/managed.bin", CopySourceRange=bad)) == "InvalidArgument", bad
    s3.abort_multipart_upload(Bucket="photos", Key="ranged.bin", UploadId=up)
    keys += ["big.bin", "managed.bin", "managed-copy.bin"]

    # The standard headers are kept and returned; an object stored without
    # a content type is binary/octet-stream, as S3 says.
    import datetime
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    s3.put_object(Bucket="photos", Key="page.html.gz", Body=b"x",
                  ContentType="text/html", CacheControl="max-age=60",
                  ContentDisposition='attachment; filename="page.html"',
                  ContentEncoding="gzip", ContentLanguage="en", Expires=expires)
    for got in (s3.head_object(Bucket="photos", Key="page.html.gz"),
                s3.get_object(Bucket="photos", Key="page.html.gz")):
        assert got["CacheControl"] == "max-age=60", got
        assert got["ContentDisposition"] == 'attachment; filename="page.html"', got
        assert got["ContentEncoding"] == "gzip", got
        assert got["ContentLanguage"] == "en", got
        assert got["Expires"] == expires, got
    s3.copy_object(Bucket="photos", Key="page-copy", CopySource="photos/page.html.gz")
    assert s3.head_object(Bucket="photos", Key="page-copy")["CacheControl"] == "max-age=60"
    s3.copy_object(Bucket="photos", Key="page-copy", CopySource="photos/page.html.gz",
                   MetadataDirective="REPLACE", CacheControl="no-store")
    replaced = s3.head_object(Bucket="photos", Key="page-copy")
    assert replaced["CacheControl"] == "no-store" and "ContentEncoding" not in replaced, replaced
    assert replaced["ContentType"] == "binary/octet-stream", replaced
    s3.put_object(Bucket="photos", Key="untyped", Body=b"?")
    assert s3.head_object(Bucket="photos", Key="untyped")["ContentType"] == "binary/octet-stream"
    keys += ["page.html.gz", "page-copy", "untyped"]

    # Listing details: keys that need URL encoding (boto3 asks for
    # EncodingType=url and decodes), v1's Marker, FetchOwner, an empty
    # delimiter not echoed.
    odd = "odd/a b+c%d&e.txt"
    s3.put_object(Bucket="photos", Key=odd, Body=b"odd")
    keys.append(odd)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="photos", Prefix="odd/")["Contents"]] == [odd]
    v1 = s3.list_objects(Bucket="photos", Prefix="odd/")
    assert [o["Key"] for o in v1["Contents"]] == [odd] and v1["Marker"] == "", v1
    assert "Owner" in v1["Contents"][0], v1
    owned = s3.list_objects_v2(Bucket="photos", Prefix="odd/", FetchOwner=True)
    assert "Owner" in owned["Contents"][0], owned
    assert "Owner" not in s3.list_objects_v2(Bucket="photos", Prefix="odd/")["Contents"][0]
    assert "Delimiter" not in s3.list_objects_v2(Bucket="photos", Prefix="odd/", Delimiter="")

    # Additional checksums: computed as the bytes come in, checked against
    # what the client sent (boto3 sends a CRC32 trailer by default), kept,
    # and returned when asked.
    def b64(raw):
        return base64.b64encode(raw).decode()

    def crc32(data):
        return b64(zlib.crc32(data).to_bytes(4, "big"))
    data = b"checksummed bytes"
    put = s3.put_object(Bucket="photos", Key="sums", Body=data, ChecksumAlgorithm="SHA256")
    assert put["ChecksumSHA256"] == b64(hashlib.sha256(data).digest()), put
    head = s3.head_object(Bucket="photos", Key="sums", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == put["ChecksumSHA256"] and head["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket="photos", Key="sums", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == put["ChecksumSHA256"] and got["Body"].read() == data
    assert "ChecksumSHA256" not in s3.head_object(Bucket="photos", Key="sums")
    assert "ChecksumSHA256" not in s3.get_object(
        Bucket="photos", Key="sums", Range="bytes=0-3", ChecksumMode="ENABLED")
    s3.put_object(Bucket="photos", Key="sums", Body=data)
    assert s3.head_object(Bucket="photos", Key="sums", ChecksumMode="ENABLED")["ChecksumCRC32"] \
        == crc32(data)
    assert error_code(lambda: s3.put_object(
        Bucket="photos", Key="bad-sum", Body=data, ChecksumCRC32=crc32(b"other"))) == "BadDigest"
    assert error_code(lambda: s3.head_object(Bucket="photos", Key="bad-sum")) in ("404", "NoSuchKey")
    assert error_code(lambda: s3.put_object(
        Bucket="photos", Key="bad-sum", Body=data, ChecksumSHA1=b64(hashlib.sha1(b"x").digest()))) \
        == "BadDigest"
    # Multipart: COMPOSITE (the checksum of the parts' checksums, -N) and
    # FULL_OBJECT (the CRC of the whole, combined from the parts').
    first, last = os.urandom(5 << 20), b"tail"
    for kind in ["COMPOSITE", "FULL_OBJECT"]:
        up = s3.create_multipart_upload(Bucket="photos", Key="mp-sum", ChecksumAlgorithm="CRC32",
                                        ChecksumType=kind)["UploadId"]
        parts = []
        for n, body in [(1, first), (2, last)]:
            r = s3.upload_part(Bucket="photos", Key="mp-sum", UploadId=up, PartNumber=n,
                               Body=body, ChecksumAlgorithm="CRC32")
            assert r["ChecksumCRC32"] == crc32(body), r
            parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
        done = s3.complete_multipart_upload(Bucket="photos", Key="mp-sum", UploadId=up,
                                            MultipartUpload={"Parts": parts})
        if kind == "COMPOSITE":
            want = b64(zlib.crc32(zlib.crc32(first).to_bytes(4, "big")
                                  + zlib.crc32(last).to_bytes(4, "big")).to_bytes(4, "big")) + "-2"
        else:
            want = crc32(first + last)
        assert done["ChecksumCRC32"] == want, (kind, done)
        head = s3.head_object(Bucket="photos", Key="mp-sum", ChecksumMode="ENABLED")
        assert (head["ChecksumCRC32"], head["ChecksumType"]) == (want, kind), head
    up = s3.create_multipart_upload(Bucket="photos", Key="mp-sum", ChecksumAlgorithm="CRC32")["UploadId"]
    r = s3.upload_part(Bucket="photos", Key="mp-sum", UploadId=up, PartNumber=1, Body=last,
                       ChecksumAlgorithm="CRC32")
    assert error_code(lambda: s3.complete_multipart_upload(
        Bucket="photos", Key="mp-sum", UploadId=up, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": r["ETag"], "ChecksumCRC32": crc32(b"not it")}]})) \
        == "InvalidPart"
    assert error_code(lambda: s3.upload_part(
        Bucket="photos", Key="mp-sum", UploadId=up, PartNumber=2, Body=last,
        ChecksumAlgorithm="SHA256")) == "InvalidRequest"
    s3.abort_multipart_upload(Bucket="photos", Key="mp-sum", UploadId=up)
    assert error_code(lambda: s3.create_multipart_upload(
        Bucket="photos", Key="x", ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT")) \
        == "InvalidRequest"
    s3.delete_objects(Bucket="photos", Delete={"Objects": [{"Key": "sums"}, {"Key": "mp-sum"}]})

    # Answers with what S3 sends alongside: a 304 names the ETag, a 416 the
    # length; a copy onto itself that changes nothing is refused; a
    # multi-delete names at most 1,000 keys.
    def failure(call):
        try:
            call()
        except botocore.exceptions.ClientError as e:
            return e.response
        raise AssertionError("expected an error")
    r = failure(lambda: s3.get_object(Bucket="photos", Key="untyped", IfNoneMatch=s3.head_object(
        Bucket="photos", Key="untyped")["ETag"]))
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 304, r
    assert r["ResponseMetadata"]["HTTPHeaders"].get("etag", "").strip('"') == hashlib.md5(b"?").hexdigest(), r
    r = failure(lambda: s3.get_object(Bucket="photos", Key="untyped", Range="bytes=5-9"))
    assert r["Error"]["Code"] == "InvalidRange", r
    assert r["ResponseMetadata"]["HTTPHeaders"].get("content-range") == "bytes */1", r
    assert error_code(lambda: s3.copy_object(
        Bucket="photos", Key="untyped", CopySource="photos/untyped")) == "InvalidRequest"
    s3.copy_object(Bucket="photos", Key="untyped", CopySource="photos/untyped",
                   MetadataDirective="REPLACE", ContentType="text/plain")
    assert s3.head_object(Bucket="photos", Key="untyped")["ContentType"] == "text/plain"
    assert error_code(lambda: s3.delete_objects(Bucket="photos", Delete={
        "Objects": [{"Key": f"k{i}"} for i in range(1001)]})) == "MalformedXML"

    # Presigned URLs live at most a week, and an expired one is denied.
    import time
    week = v4.generate_presigned_url(
        "get_object", Params={"Bucket": "photos", "Key": "readme.txt"}, ExpiresIn=8 * 86400)
    try:
        urllib.request.urlopen(week)
        raise AssertionError("an eight-day presigned URL was served")
    except urllib.error.HTTPError as e:
        assert e.code == 400 and b"AuthorizationQueryParametersError" in e.read(), e.code
    for signer in (s3, v4):
        brief = signer.generate_presigned_url(
            "get_object", Params={"Bucket": "photos", "Key": "readme.txt"}, ExpiresIn=1)
        time.sleep(2.5)
        try:
            urllib.request.urlopen(brief)
            raise AssertionError("an expired presigned URL was served")
        except urllib.error.HTTPError as e:
            body = e.read()
            assert e.code == 403 and b"AccessDenied" in body and b"expired" in body, (e.code, body)

    # Settings the endpoint does not keep are answered as S3 answers a
    # bucket without them (404 with S3's code), not 501; ACLs start private.
    for call, code in [
        (lambda: s3.get_bucket_cors(Bucket="photos"), "NoSuchCORSConfiguration"),
        (lambda: s3.get_bucket_policy(Bucket="photos"), "NoSuchBucketPolicy"),
        (lambda: s3.get_bucket_policy_status(Bucket="photos"), "NoSuchBucketPolicy"),
        (lambda: s3.get_public_access_block(Bucket="photos"),
         "NoSuchPublicAccessBlockConfiguration"),
        (lambda: s3.get_bucket_ownership_controls(Bucket="photos"),
         "OwnershipControlsNotFoundError"),
        (lambda: s3.get_object_lock_configuration(Bucket="photos"),
         "ObjectLockConfigurationNotFoundError"),
        (lambda: s3.get_bucket_tagging(Bucket="photos"), "NoSuchTagSet"),
        (lambda: s3.get_bucket_lifecycle_configuration(Bucket="photos"),
         "NoSuchLifecycleConfiguration"),
        (lambda: s3.get_bucket_website(Bucket="photos"), "NoSuchWebsiteConfiguration"),
        (lambda: s3.get_bucket_cors(Bucket="nope"), "NoSuchBucket"),
    ]:
        r = failure(call)
        assert (r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]) == (code, 404), r
    acl = s3.get_bucket_acl(Bucket="photos")
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"], acl
    assert acl["Grants"][0]["Grantee"]["ID"] == acl["Owner"]["ID"], acl
    assert s3.get_object_acl(Bucket="photos", Key="untyped")["Grants"][0]["Permission"] \
        == "FULL_CONTROL"
    s3.put_bucket_acl(Bucket="photos", ACL="private")
    s3.put_object_acl(Bucket="photos", Key="untyped", ACL="private")
    assert error_code(lambda: s3.get_object_acl(Bucket="photos", Key="missing")) == "NoSuchKey"
    assert s3.get_object_tagging(Bucket="photos", Key="untyped")["TagSet"] == []
    # Tags, kept with objects (at most 10) and buckets (at most 50).
    tags = [{"Key": "project", "Value": "x y"}, {"Key": "n", "Value": "1"}]
    s3.put_object_tagging(Bucket="photos", Key="untyped", Tagging={"TagSet": tags})
    assert s3.get_object_tagging(Bucket="photos", Key="untyped")["TagSet"] == tags
    assert s3.get_object(Bucket="photos", Key="untyped")["TagCount"] == 2
    s3.put_object(Bucket="photos", Key="tagged", Body=b"t", Tagging="a=1&b%20c=2")
    assert s3.get_object_tagging(Bucket="photos", Key="tagged")["TagSet"] == [
        {"Key": "a", "Value": "1"}, {"Key": "b c", "Value": "2"}]
    s3.copy_object(Bucket="photos", Key="tagged2", CopySource="photos/tagged")
    assert len(s3.get_object_tagging(Bucket="photos", Key="tagged2")["TagSet"]) == 2
    s3.delete_objects(Bucket="photos", Delete={"Objects": [{"Key": "tagged"}, {"Key": "tagged2"}]})
    s3.delete_object_tagging(Bucket="photos", Key="untyped")
    assert s3.get_object_tagging(Bucket="photos", Key="untyped")["TagSet"] == []
    eleven = [{"Key": f"k{i}", "Value": "v"} for i in range(11)]
    assert error_code(lambda: s3.put_object_tagging(
        Bucket="photos", Key="untyped", Tagging={"TagSet": eleven})) == "InvalidTag"
    s3.put_bucket_tagging(Bucket="photos", Tagging={"TagSet": eleven})
    assert len(s3.get_bucket_tagging(Bucket="photos")["TagSet"]) == 11
    s3.delete_bucket_tagging(Bucket="photos")
    assert error_code(lambda: s3.get_bucket_tagging(Bucket="photos")) == "NoSuchTagSet"
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket="photos")
    assert s3.get_bucket_request_payment(Bucket="photos")["Payer"] == "BucketOwner"

    # Versioning: each write a version, the one it replaces kept; delete
    # markers; reads, copies and deletes by version id; the null version;
    # paged version listings; suspension.
    vb = "versions"
    s3.create_bucket(Bucket=vb)
    assert "Status" not in s3.get_bucket_versioning(Bucket=vb)
    s3.put_object(Bucket=vb, Key="k", Body=b"from before versioning")
    s3.put_bucket_versioning(Bucket=vb, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=vb)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=vb, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=vb, Key="k", Body=b"two")["VersionId"]
    assert len({v1, v2, "null"}) == 3, (v1, v2)
    assert s3.get_object(Bucket=vb, Key="k")["Body"].read() == b"two"
    got = s3.get_object(Bucket=vb, Key="k", VersionId=v1)
    assert (got["Body"].read(), got["VersionId"]) == (b"one", v1)
    assert s3.get_object(Bucket=vb, Key="k", VersionId="null")["Body"].read() \
        == b"from before versioning"
    assert s3.head_object(Bucket=vb, Key="k", VersionId=v1)["ContentLength"] == 3
    assert error_code(lambda: s3.get_object(Bucket=vb, Key="k", VersionId="0" * 32)) \
        == "NoSuchVersion"
    listed = s3.list_object_versions(Bucket=vb)
    assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] \
        == [(v2, True), (v1, False), ("null", False)], listed["Versions"]
    gone = s3.delete_object(Bucket=vb, Key="k")
    assert gone["DeleteMarker"] is True, gone
    marker = gone["VersionId"]
    assert error_code(lambda: s3.get_object(Bucket=vb, Key="k")) == "NoSuchKey"
    assert "Contents" not in s3.list_objects_v2(Bucket=vb)
    listed = s3.list_object_versions(Bucket=vb)
    assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [(marker, True)]
    assert [v["IsLatest"] for v in listed["Versions"]] == [False, False, False]
    assert error_code(lambda: s3.get_object(Bucket=vb, Key="k", VersionId=marker)) \
        == "MethodNotAllowed"
    s3.copy_object(Bucket=vb, Key="copy", CopySource={"Bucket": vb, "Key": "k", "VersionId": v1})
    assert s3.get_object(Bucket=vb, Key="copy")["Body"].read() == b"one"
    s3.delete_object(Bucket=vb, Key="k", VersionId=marker)
    assert s3.get_object(Bucket=vb, Key="k")["Body"].read() == b"two"
    s3.delete_object(Bucket=vb, Key="k", VersionId=v2)
    assert s3.get_object(Bucket=vb, Key="k")["Body"].read() == b"one"
    for i in range(4):
        s3.put_object(Bucket=vb, Key=f"page/{i % 2}", Body=str(i).encode())
    every = [(v["Key"], v["VersionId"]) for v in s3.list_object_versions(Bucket=vb)["Versions"]]
    seen, kwargs = [], {}
    while True:
        page = s3.list_object_versions(Bucket=vb, MaxKeys=2, **kwargs)
        seen += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
        seen += [(m["Key"], m["VersionId"]) for m in page.get("DeleteMarkers", [])]
        if not page["IsTruncated"]:
            break
        kwargs = {"KeyMarker": page["NextKeyMarker"]}
        if page.get("NextVersionIdMarker"):
            kwargs["VersionIdMarker"] = page["NextVersionIdMarker"]
    assert sorted(seen) == sorted(every) and len(seen) == len(set(seen)), (seen, every)
    # Suspended: writes are the null version, which replaces the null one.
    s3.put_bucket_versioning(Bucket=vb, VersioningConfiguration={"Status": "Suspended"})
    assert s3.put_object(Bucket=vb, Key="k", Body=b"s1")["VersionId"] == "null"
    s3.put_object(Bucket=vb, Key="k", Body=b"s2")
    ids = [v["VersionId"] for v in s3.list_object_versions(Bucket=vb, Prefix="k")["Versions"]]
    assert ids == ["null", v1], ids
    assert s3.get_object(Bucket=vb, Key="k", VersionId="null")["Body"].read() == b"s2"
    assert error_code(lambda: s3.delete_bucket(Bucket=vb)) == "BucketNotEmpty"
    listed = s3.list_object_versions(Bucket=vb)
    for v in listed.get("Versions", []) + listed.get("DeleteMarkers", []):
        s3.delete_object(Bucket=vb, Key=v["Key"], VersionId=v["VersionId"])
    assert "Versions" not in s3.list_object_versions(Bucket=vb)
    s3.delete_bucket(Bucket=vb)

    # ListObjectVersions on an unversioned bucket: every object is its one
    # "null" version (cleanup tools and conformance suites call it first).
    versions, marker = [], None
    while True:
        kwargs = {"Bucket": "photos", "MaxKeys": 3}
        if marker:
            kwargs["KeyMarker"] = marker
        page = s3.list_object_versions(**kwargs)
        for v in page.get("Versions", []):
            assert v["VersionId"] == "null" and v["IsLatest"], v
            versions.append(v["Key"])
        assert page.get("DeleteMarkers", []) == [], page
        if not page["IsTruncated"]:
            break
        marker = page["NextKeyMarker"]
    assert versions == sorted(keys + ["copy.jpg"]), (versions, sorted(keys + ["copy.jpg"]))

    everything = [{"Key": k} for k in keys + ["copy.jpg"]]
    deleted = s3.delete_objects(Bucket="photos", Delete={"Objects": everything})
    assert len(deleted["Deleted"]) == len(everything), deleted
    assert s3.list_objects_v2(Bucket="photos")["KeyCount"] == 0
    s3.delete_bucket(Bucket="photos")
    assert s3.list_buckets()["Buckets"] == []
    print("boto3: ok")


if __name__ == "__main__":
    main()
