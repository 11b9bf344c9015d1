"""Concurrent writers, readers and deleters on a few names, through the JSON
API and the S3 endpoint at once; every operation's start, end and outcome
is recorded, then the history is checked.

Usage: python3 linearizability.py API_URL S3_ENDPOINT ACCESS_KEY SECRET
           [--seconds N] [--out HISTORY.jsonl] [--seed S]

Each write stores a value no other write stores: a 24-byte tag (writer,
sequence number) and pseudo-random bytes from it, of a random size that
often sits on a chunk boundary (1 MiB chunks). Some readers read slowly,
so they are mid-stream while the name is overwritten or deleted; some S3
writes are two-part multipart uploads. The checker then requires, for
every successful read:

- the body is one whole value, exactly as written, with a Content-Length
  equal to its size and an ETag that names that value (S3: its MD5; the
  JSON API: one ETag per value, the same every time);
- that value's write began before the read ended (no reads from the future);
- no other acknowledged write or delete of the name both began after that
  value's write ended and ended before the read began (no stale reads);
- of two reads one after the other, the later never sees a value whose
  write ended before the earlier one's value was written (no going back);

and, at the end, that each name holds what its last acknowledged write left
(no acknowledged write lost). A 404 is a read of "absent", which a delete
(or the start) writes. Exits 1 with the violations on stderr; prints a
summary as JSON on stdout.
"""

import argparse
import hashlib
import http.client
import json
import multiprocessing
import os
import random
import sys
import time
import urllib.parse

import boto3
import botocore.config
import botocore.exceptions

CHUNK = 1 << 20
TAG = 24
PART = 5 << 20
BUCKET = "lin"
API_NAMES = ["lin/a", "lin/b"]
S3_KEYS = ["a", "b"]


def value(writer, seq, size):
    """The bytes write (writer, seq) stores."""
    tag = f"{writer:04d}:{seq:010d}:".encode().ljust(TAG, b".")
    rng = random.Random(writer * 1_000_003 + seq)
    return (tag + rng.randbytes(max(0, size - TAG)))[:size]


def identify(body):
    """(writer, seq) of a body that is a whole value, else None."""
    if len(body) < TAG:
        return None
    try:
        writer, seq, _ = body[:TAG].decode().split(":", 2)
        writer, seq = int(writer), int(seq)
    except (UnicodeDecodeError, ValueError):
        return None
    return (writer, seq) if value(writer, seq, len(body)) == body else None


def pick_size(rng):
    if rng.random() < 0.4:
        base = CHUNK * rng.randint(1, 2)
        return max(TAG, base + rng.choice([-1, 0, 1]))
    return rng.randint(TAG, int(2.3 * CHUNK))


def s3_client(endpoint, key, secret):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=botocore.config.Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            read_timeout=120,
        ),
    )


class Recorder:
    def __init__(self, path):
        self.f = open(path, "w")

    def op(self, **fields):
        self.f.write(json.dumps(fields) + "\n")


def api_conn(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=120)


def api_writer(args, me, path, stop_at):
    rng = random.Random(args.seed * 100 + me)
    rec = Recorder(path)
    conn = api_conn(args.api)
    seq = 0
    while time.monotonic() < stop_at:
        name = rng.choice(API_NAMES)
        start = time.monotonic()
        if rng.random() < 0.05:
            try:
                conn.request("DELETE", f"/api/files/{name}")
                r = conn.getresponse()
                r.read()
                ok = r.status in (204, 404)
            except OSError:
                conn = api_conn(args.api)
                ok = None
            rec.op(kind="delete", name=name, start=start, end=time.monotonic(), ok=ok,
                   writer=me, seq=seq)
        else:
            size = pick_size(rng)
            body = value(me, seq, size)
            try:
                conn.request("PUT", f"/api/files/{name}", body=body,
                             headers={"Content-Length": str(size)})
                r = conn.getresponse()
                r.read()
                ok = r.status == 201
            except OSError:
                conn = api_conn(args.api)
                ok = None
            rec.op(kind="put", name=name, start=start, end=time.monotonic(), ok=ok,
                   writer=me, seq=seq, size=size, md5=hashlib.md5(body).hexdigest())
        seq += 1


def drain(stream, slow, parts):
    """Reads a body to its end into `parts` (so a reader cut off knows how
    much it got); a slow reader takes 64 KiB every 20 ms, and so is still
    reading while the name is overwritten or deleted."""
    while True:
        piece = stream.read(64 << 10 if slow else 1 << 20)
        if not piece:
            return b"".join(parts)
        parts.append(piece)
        if slow:
            time.sleep(0.02)


def api_reader(args, me, path, stop_at, slow, names):
    rng = random.Random(args.seed * 100 + me)
    rec = Recorder(path)
    conn = api_conn(args.api)
    while time.monotonic() < stop_at:
        name = rng.choice(names)
        start = time.monotonic()
        entry = dict(kind="get", api="json", name=name, start=start, slow=slow)
        parts = []
        try:
            conn.request("GET", "/api/files/" + urllib.parse.quote(name))
            r = conn.getresponse()
            entry["status"] = r.status
            if r.status == 200:
                entry["length"] = int(r.getheader("Content-Length", "-1"))
                entry["etag"] = r.getheader("ETag")
                body = drain(r, slow, parts)
                entry["got"] = len(body)
                entry["value"] = identify(body)
            else:
                r.read()
        except (OSError, http.client.HTTPException) as e:
            entry["error"] = repr(e)
            entry["got"] = sum(len(p) for p in parts)
            conn = api_conn(args.api)
        entry["end"] = time.monotonic()
        rec.op(**entry)


def s3_name(key):
    return f"s3/{BUCKET}/{key}"


def s3_writer(args, me, path, stop_at):
    rng = random.Random(args.seed * 100 + me)
    rec = Recorder(path)
    s3 = s3_client(args.s3, args.key, args.secret)
    seq = 0
    while time.monotonic() < stop_at:
        key = rng.choice(S3_KEYS)
        start = time.monotonic()
        roll = rng.random()
        try:
            if roll < 0.05:
                s3.delete_object(Bucket=BUCKET, Key=key)
                rec.op(kind="delete", name=s3_name(key), start=start, end=time.monotonic(),
                       ok=True, writer=me, seq=seq)
            elif roll < 0.15:
                # Two parts: a multipart object is a file made of its parts.
                size = PART + rng.randint(TAG, CHUNK)
                body = value(me, seq, size)
                up = s3.create_multipart_upload(Bucket=BUCKET, Key=key)
                etags = []
                for n, piece in enumerate([body[:PART], body[PART:]], start=1):
                    etags.append(s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up["UploadId"],
                                                PartNumber=n, Body=piece)["ETag"])
                done = s3.complete_multipart_upload(
                    Bucket=BUCKET, Key=key, UploadId=up["UploadId"],
                    MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e}
                                               for i, e in enumerate(etags)]})
                rec.op(kind="put", name=s3_name(key), start=start, end=time.monotonic(), ok=True,
                       writer=me, seq=seq, size=size, etag=done["ETag"].strip('"'))
            else:
                size = pick_size(rng)
                body = value(me, seq, size)
                s3.put_object(Bucket=BUCKET, Key=key, Body=body)
                rec.op(kind="put", name=s3_name(key), start=start, end=time.monotonic(), ok=True,
                       writer=me, seq=seq, size=size, etag=hashlib.md5(body).hexdigest())
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            rec.op(kind="put" if roll >= 0.05 else "delete", name=s3_name(key), start=start,
                   end=time.monotonic(), ok=None, writer=me, seq=seq, error=repr(e))
        seq += 1


def s3_reader(args, me, path, stop_at, slow):
    rng = random.Random(args.seed * 100 + me)
    rec = Recorder(path)
    s3 = s3_client(args.s3, args.key, args.secret)
    while time.monotonic() < stop_at:
        key = rng.choice(S3_KEYS)
        start = time.monotonic()
        entry = dict(kind="get", api="s3", name=s3_name(key), start=start, slow=slow)
        parts = []
        try:
            r = s3.get_object(Bucket=BUCKET, Key=key)
            entry["status"] = 200
            entry["length"] = r["ContentLength"]
            entry["etag"] = r["ETag"].strip('"')
            body = drain(r["Body"], slow, parts)
            entry["got"] = len(body)
            entry["md5"] = hashlib.md5(body).hexdigest()
            entry["value"] = identify(body)
        except botocore.exceptions.ClientError as e:
            code = e.response["Error"]["Code"]
            if code in ("NoSuchKey", "404"):
                entry["status"] = 404
            else:
                entry["error"] = code
        except (botocore.exceptions.BotoCoreError, OSError) as e:
            entry["error"] = repr(e)
            entry["got"] = sum(len(p) for p in parts)
        entry["end"] = time.monotonic()
        rec.op(**entry)


def final_reads(args, rec):
    """One last read of every name, after everything else ended."""
    conn = api_conn(args.api)
    for name in API_NAMES + [s3_name(k) for k in S3_KEYS]:
        start = time.monotonic()
        conn.request("GET", "/api/files/" + urllib.parse.quote(name))
        r = conn.getresponse()
        body = r.read()
        entry = dict(kind="get", api="json", name=name, start=start, status=r.status,
                     final=True, slow=False)
        if r.status == 200:
            entry.update(length=int(r.getheader("Content-Length", "-1")), got=len(body),
                         etag=r.getheader("ETag"), value=identify(body))
        entry["end"] = time.monotonic()
        rec.op(**entry)


INF = float("inf")


def check(history):
    """Violations of the rules in the module's doc, as strings."""
    bad = []
    by_name = {}
    for op in history:
        by_name.setdefault(op["name"], []).append(op)
    for name, ops in by_name.items():
        # Writes of values: (writer, seq) -> op; deletes write "absent".
        writes = {}
        absents = [dict(kind="delete", start=-INF, end=-INF, ok=True, id=("start",))]
        for op in ops:
            if op["kind"] == "put":
                writes[(op["writer"], op["seq"])] = op
            elif op["kind"] == "delete":
                absents.append(op)
        # An unacknowledged write may have happened at any time after it began.
        def end_of(w):
            return w["end"] if w.get("ok") else INF
        acked = [w for w in list(writes.values()) + absents if w.get("ok")]
        acked.sort(key=lambda w: w["start"])
        json_etags = {}

        def stale(w, r):
            """An acknowledged write that came wholly between w and r."""
            we = end_of(w)
            for o in acked:
                if o is w:
                    continue
                if o["start"] > r["start"]:
                    break
                if o["start"] > we and o["end"] < r["start"]:
                    return o
            return None

        reads = [op for op in ops if op["kind"] == "get" and op.get("status") in (200, 404)]
        observed = []  # (read, write it saw)
        for r in reads:
            if r["status"] == 200 and r.get("error"):
                bad.append(f"{name}: a 200 body cut short after {r.get('got', 0)} of"
                           f" {r.get('length')} bytes ({r['api']}): {r['error']}")
                continue
            if r["status"] == 200:
                v = r.get("value")
                if v is None:
                    bad.append(f"{name}: a 200 body that is no whole value ({r['got']} bytes,"
                               f" Content-Length {r['length']}, {r['api']})")
                    continue
                v = tuple(v)
                w = writes.get(v)
                if w is None:
                    bad.append(f"{name}: read {v}, which was never written to it")
                    continue
                if r["got"] != w["size"] or r["length"] != w["size"]:
                    bad.append(f"{name}: read {v} with {r['got']} bytes, Content-Length"
                               f" {r['length']}, written {w['size']}")
                if r["api"] == "s3" and r["etag"] != w.get("etag"):
                    bad.append(f"{name}: read {v} with ETag {r['etag']}, written {w.get('etag')}")
                if r["api"] == "s3" and "-" not in r["etag"] and r["md5"] != r["etag"]:
                    bad.append(f"{name}: ETag {r['etag']} is not the body's MD5 {r['md5']}")
                if r["api"] == "json" and r.get("etag"):
                    if json_etags.setdefault(r["etag"], v) != v:
                        bad.append(f"{name}: ETag {r['etag']} named two values")
                if w["start"] > r["end"]:
                    bad.append(f"{name}: read {v} before it was written")
                o = stale(w, r)
                if o is not None:
                    bad.append(f"{name}: stale read of {v} ({r['api']}): a {o['kind']} came"
                               f" wholly between its write and the read")
                observed.append((r, w))
            else:
                # Absent: some delete (or the start) must explain it.
                options = [d for d in absents if d["start"] < r["end"]]
                if not any(stale(d, r) is None for d in options):
                    bad.append(f"{name}: 404 at {r['start']:.3f} though a write was acknowledged"
                               f" since every delete before it")
                    continue
                best = max((d for d in options if stale(d, r) is None),
                           key=lambda d: d["start"])
                observed.append((r, best))
        # No going back: a later read never sees what was overwritten before
        # an earlier read's value was written.
        observed.sort(key=lambda p: p[0]["end"])
        latest_end = -INF
        latest = None
        by_start = sorted(observed, key=lambda p: p[0]["start"])
        i = 0
        for r, w in by_start:
            while i < len(observed) and observed[i][0]["end"] < r["start"]:
                if observed[i][1]["start"] > latest_end:
                    latest_end = observed[i][1]["start"]
                    latest = observed[i]
                i += 1
            if latest is not None and end_of(w) < latest_end:
                bad.append(f"{name}: a read went back to an older value than a read before it"
                           f" saw")
    return bad


def self_test():
    """The checker catches each kind of violation it claims to."""
    def put(w, s, start, end, size=100, name="n"):
        return dict(kind="put", name=name, writer=w, seq=s, start=start, end=end, ok=True,
                    size=size, etag=f"e{w}{s}")

    def get(v, start, end, size=100, api="s3", status=200, etag=None):
        r = dict(kind="get", name="n", api=api, start=start, end=end, status=status)
        if status == 200:
            r.update(value=v, got=size, length=size,
                     etag=etag or (f"e{v[0]}{v[1]}" if v else "x"),
                     md5=etag or (f"e{v[0]}{v[1]}" if v else "x"))
        return r

    a, b = put(1, 0, 0, 1), put(2, 0, 2, 3)
    cases = {
        "fine": ([a, b, get((1, 0), 0.5, 2.5), get((2, 0), 4, 5)], 0),
        "stale": ([a, b, get((1, 0), 4, 5)], 1),
        "future": ([a, b, get((2, 0), 0.1, 0.2)], 1),
        "torn": ([a, b, get(None, 4, 5)], 1),
        "short": ([a, b, get((2, 0), 4, 5, size=50)], 1),
        "wrong etag": ([a, b, get((2, 0), 4, 5, etag="e10")], 1),
        "back": ([a, put(2, 0, 1.2, 10), get((2, 0), 2, 3), get((1, 0), 4, 5)], 1),
        "lost": ([a, get(None, 4, 5, status=404)], 1),
        "deleted": ([a, dict(kind="delete", name="n", start=2, end=3, ok=True),
                     get(None, 4, 5, status=404)], 0),
    }
    failed = []
    for what, (history, want) in cases.items():
        got = len(check(history))
        if (got > 0) != (want > 0):
            failed.append(f"{what}: {got} violations, expected {want}")
    for f in failed:
        print("self-test:", f, file=sys.stderr)
    return 1 if failed else 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    p = argparse.ArgumentParser()
    p.add_argument("api")
    p.add_argument("s3")
    p.add_argument("key")
    p.add_argument("secret")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--out", default=None)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    s3 = s3_client(args.s3, args.key, args.secret)
    try:
        s3.create_bucket(Bucket=BUCKET)
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    out = args.out or f"/tmp/linearizability-{os.getpid()}.jsonl"
    parts = out + ".d"
    os.makedirs(parts, exist_ok=True)
    stop_at = time.monotonic() + args.seconds
    s3_names = [s3_name(k) for k in S3_KEYS]
    roles = [
        (api_writer, ()), (api_writer, ()),
        (api_reader, (False, API_NAMES)), (api_reader, (False, API_NAMES)),
        (api_reader, (True, API_NAMES)),
        (s3_writer, ()), (s3_writer, ()),
        (s3_reader, (False,)), (s3_reader, (False,)), (s3_reader, (True,)),
        # The same objects read through the JSON API.
        (api_reader, (False, s3_names)),
    ]
    ctx = multiprocessing.get_context("fork")
    procs = []
    for me, (role, extra) in enumerate(roles):
        path = os.path.join(parts, f"{me}.jsonl")
        pr = ctx.Process(target=role, args=(args, me, path, stop_at, *extra))
        pr.start()
        procs.append(pr)
    for pr in procs:
        pr.join()
        if pr.exitcode != 0:
            print(f"a client process failed ({pr.exitcode})", file=sys.stderr)
            return 2
    final_path = os.path.join(parts, "final.jsonl")
    final = Recorder(final_path)
    final_reads(args, final)
    final.f.close()
    history = []
    for f in sorted(os.listdir(parts)):
        with open(os.path.join(parts, f)) as fh:
            history.extend(json.loads(line) for line in fh if line.strip())
    with open(out, "w") as fh:
        for op in history:
            fh.write(json.dumps(op) + "\n")
    bad = check(history)
    gets = [op for op in history if op["kind"] == "get"]
    summary = {
        "ops": len(history),
        "puts": sum(1 for op in history if op["kind"] == "put" and op.get("ok")),
        "deletes": sum(1 for op in history if op["kind"] == "delete" and op.get("ok")),
        "gets": len(gets),
        "gets_200": sum(1 for op in gets if op.get("status") == 200),
        "gets_404": sum(1 for op in gets if op.get("status") == 404),
        "gets_s3": sum(1 for op in gets if op.get("api") == "s3"),
        "gets_slow": sum(1 for op in gets if op.get("slow")),
        "wrong": sum(1 for op in gets if op.get("status") == 200 and op.get("value") is None),
        "truncated": sum(1 for op in gets if op.get("status") == 200
                         and op.get("got") != op.get("length")),
        "read_errors": sum(1 for op in gets if op.get("error")),
        "errors": [op.get("error") for op in history if op.get("error")][:5],
        "failed_ops": sum(1 for op in history if op.get("error") or op.get("ok") is None
                          and op["kind"] != "get"),
        "violations": len(bad),
        "history": out,
    }
    print(json.dumps(summary))
    for b in bad[:50]:
        print("violation:", b, file=sys.stderr)
    if summary["failed_ops"]:
        print(f"{summary['failed_ops']} operations failed: {summary['errors']}", file=sys.stderr)
    return 1 if bad or summary["failed_ops"] else 0


if __name__ == "__main__":
    sys.exit(main())
