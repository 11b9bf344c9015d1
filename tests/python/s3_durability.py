"""S3 objects through a killed daemon and a recovery, driven by boto3.

Usage: python3 s3_durability.py ENDPOINT ACCESS_KEY_ID SECRET STEP [STATE_FILE]

Steps:
  fill      bucket "keep": a small object with metadata, a 2-part multipart
            object, and an upload left open with one part; writes STATE_FILE
  slow-put  a 64 MiB PUT of "interrupted.bin" sent slowly (the test kills
            the daemon during it)
  check     after the kill: the objects are intact, "interrupted.bin" is not
            visible, the open upload is still there and completes
  verify    after recovery: the three objects read back with their ETags
Exits non-zero with the failing check on stderr.
"""

import hashlib
import http.client
import json
import sys
import time
import urllib.parse

import boto3
import botocore.config
import botocore.exceptions

PART = 5 << 20


def client(endpoint, key, secret):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=botocore.config.Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1},
            read_timeout=120,
        ),
    )


def body(n, seed):
    return hashlib.shake_256(seed.encode()).digest(n)


SINGLE = body(300_000, "single")
MULTI = [body(PART, "m1"), body(1000, "m2")]
LATER = [body(PART, "l1"), body(2000, "l2")]


def missing(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"] in ("404", "NoSuchKey")
    return False


def slow_put(s3):
    """A 64 MiB PUT through a presigned URL, sent at about 4 MiB/s: the
    URL's unsigned payload lets the bytes go out as they are made (boto3
    would read a body whole, twice, to hash it before sending a byte)."""
    url = urllib.parse.urlsplit(s3.generate_presigned_url(
        "put_object", Params={"Bucket": "keep", "Key": "interrupted.bin"}, ExpiresIn=600))
    conn = http.client.HTTPConnection(url.netloc, timeout=120)
    size = 64 << 20
    conn.putrequest("PUT", f"{url.path}?{url.query}")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    for _ in range(size >> 20):
        conn.send(b"\x07" * (1 << 20))
        time.sleep(0.25)
    conn.getresponse()


def fill(s3, state_file):
    s3.create_bucket(Bucket="keep")
    s3.put_object(Bucket="keep", Key="docs/single.txt", Body=SINGLE,
                  ContentType="text/plain", Metadata={"owner": "ana"})
    up = s3.create_multipart_upload(Bucket="keep", Key="multi.bin")
    etags = [s3.upload_part(Bucket="keep", Key="multi.bin", UploadId=up["UploadId"],
                            PartNumber=n, Body=b)["ETag"] for n, b in enumerate(MULTI, 1)]
    s3.complete_multipart_upload(
        Bucket="keep", Key="multi.bin", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    later = s3.create_multipart_upload(Bucket="keep", Key="later.bin")
    first = s3.upload_part(Bucket="keep", Key="later.bin", UploadId=later["UploadId"],
                           PartNumber=1, Body=LATER[0])["ETag"]
    heads = {k: s3.head_object(Bucket="keep", Key=k)["ETag"]
             for k in ("docs/single.txt", "multi.bin")}
    with open(state_file, "w") as f:
        json.dump({"upload": later["UploadId"], "first": first, "etags": heads}, f)


def check(s3, state_file):
    with open(state_file) as f:
        state = json.load(f)
    assert missing(lambda: s3.head_object(Bucket="keep", Key="interrupted.bin")), \
        "a PUT cut short by the daemon's death is visible"
    got = s3.get_object(Bucket="keep", Key="docs/single.txt")
    assert got["Body"].read() == SINGLE
    assert got["Metadata"] == {"owner": "ana"} and got["ContentType"] == "text/plain"
    assert s3.get_object(Bucket="keep", Key="multi.bin")["Body"].read() == b"".join(MULTI)
    uploads = s3.list_multipart_uploads(Bucket="keep").get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [state["upload"]], uploads
    second = s3.upload_part(Bucket="keep", Key="later.bin", UploadId=state["upload"],
                            PartNumber=2, Body=LATER[1])["ETag"]
    done = s3.complete_multipart_upload(
        Bucket="keep", Key="later.bin", UploadId=state["upload"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": state["first"]},
                                   {"PartNumber": 2, "ETag": second}]})
    state["etags"]["later.bin"] = done["ETag"]
    with open(state_file, "w") as f:
        json.dump(state, f)
    verify(s3, state_file)


def verify(s3, state_file):
    with open(state_file) as f:
        state = json.load(f)
    expected = {"docs/single.txt": SINGLE, "multi.bin": b"".join(MULTI),
                "later.bin": b"".join(LATER)}
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="keep")["Contents"]]
    assert listed == sorted(expected), listed
    for key, data in expected.items():
        got = s3.get_object(Bucket="keep", Key=key)
        assert got["Body"].read() == data, key
        assert got["ETag"] == state["etags"][key], (key, got["ETag"], state["etags"][key])
    assert s3.head_object(Bucket="keep", Key="docs/single.txt")["Metadata"] == {"owner": "ana"}


def main():
    endpoint, key, secret, step = sys.argv[1:5]
    state_file = sys.argv[5] if len(sys.argv) > 5 else None
    s3 = client(endpoint, key, secret)
    if step == "fill":
        fill(s3, state_file)
    elif step == "slow-put":
        slow_put(s3)
    elif step == "check":
        check(s3, state_file)
    elif step == "verify":
        verify(s3, state_file)
    else:
        raise SystemExit(f"unknown step {step}")
    print(f"{step}: ok")


if __name__ == "__main__":
    main()
