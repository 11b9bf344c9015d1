"""The bad-input scenario: wrong keys, broken and oversized requests to the
JSON and S3 APIs, names and keys that try to climb out, and 10,000 idle
connections. Everything goes over real sockets, byte by byte where a
client library would refuse to send it."""

import os
import resource
import secrets
import socket
import subprocess
import time
import urllib.parse

from .harness import MIB, Daemon, check, content, rss_mib, sha256, wait_until

PASSPHRASE_VAR = "FAULTS_PASSPHRASE"


def raw(url, data, read=True, timeout=30):
    """Sends `data` as is to the host of `url`; returns the status line and
    headers and body, or '' when the server closed without answering."""
    u = urllib.parse.urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may stop reading before the end: it is allowed to
        if not read:
            return ""
        out = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
                if b"\r\n\r\n" in out and b"Content-Length: 0" in out:
                    break
        except OSError:
            pass
        return out.decode("latin-1")


def status_of(answer):
    parts = answer.split(" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def cut_upload(url, path, declared, sent, host="127.0.0.1", chunked=False):
    """An upload that stops early and hangs up."""
    u = urllib.parse.urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        head = f"PUT {path} HTTP/1.1\r\nHost: {host}\r\n"
        if chunked:
            head += "Transfer-Encoding: chunked\r\n\r\n"
            s.sendall(head.encode())
            block = content(7, 256 * 1024)
            for _ in range(sent // len(block)):
                s.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
        else:
            head += f"Content-Length: {declared}\r\n\r\n"
            s.sendall(head.encode() + content(8, sent))
        time.sleep(0.5)


def wait_disk_matches_index(d, what, timeout=30):
    """Waits until the nodes hold exactly the shards the index names: what
    an interrupted write stored has been taken away."""
    def counts():
        on_disk, in_index = d.shard_counts()
        return (on_disk, in_index) if on_disk == in_index else None
    wait_until(counts, timeout,
               lambda _: f"{what}: {d.shard_counts()[0]} shards on disk, "
               f"{d.shard_counts()[1]} in the index")


def keys_and_passphrases(cli, work, figures):
    data = os.path.join(work, "store")
    right = dict(os.environ, **{PASSPHRASE_VAR: "correct horse battery staple"})
    d = Daemon(cli, data, extra=["--passphrase-env", PASSPHRASE_VAR], env=right)
    d.start()
    files = {f"k/{i}.bin": content(100 + i, i * 300_000) for i in range(5)}
    try:
        for name, body in files.items():
            check(d.put(name, body)[0] == 201, f"PUT {name}")
        # Stopped cleanly: a killed daemon's index is tidied by the next
        # open, which would change its bytes whatever the key.
        d.stop()
    finally:
        d.kill()
    key_file = os.path.join(work, "other.key")
    with open(key_file, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    os.chmod(key_file, 0o600)
    bad_key = os.path.join(work, "bad.key")
    with open(bad_key, "w") as f:
        f.write("hello\n")
    os.chmod(bad_key, 0o600)
    wrong = dict(os.environ, **{PASSPHRASE_VAR: "Tr0ub4dor&3"})
    said = []
    for what, extra, env in [
        ("wrong passphrase", ["--passphrase-env", PASSPHRASE_VAR], wrong),
        ("another store's key file", ["--key-file", key_file], None),
        ("a key file that is not a key", ["--key-file", bad_key], None),
        ("no key at all", ["--passphrase-env", "FAULTS_UNSET"], None),
    ]:
        env = dict(env or os.environ)
        env.pop("FAULTS_UNSET", None)
        r = subprocess.run(
            [cli, "store", "serve", "--emulated", "--data-dir", data, "--listen", "127.0.0.1:0",
             "--s3-listen", "127.0.0.1:0", *extra],
            env=dict(env, AWS_EC2_METADATA_DISABLED="true"), capture_output=True, text=True,
            timeout=300)
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
        check(r.returncode != 0, f"{what}: the daemon started")
        check("key" in last.lower() or "passphrase" in last.lower(),
              f"{what}: the refusal does not say what is wrong: {r.stderr[-400:]}")
        said.append(f"{what}: \"{last[:140]}\"")
    d = Daemon(cli, data, extra=["--passphrase-env", PASSPHRASE_VAR], env=right)
    d.start()
    try:
        for name, body in files.items():
            status, got = d.get(name)
            check(status == 200 and got == body, f"after the refusals, {name}: {status}")
    finally:
        d.kill()
    figures.append(("keys", f"{len(said)} wrong keys refused at start; then the right "
                            f"passphrase opens the store and all {len(files)} files read back"))
    for s in said:
        figures.append(("refused", s))


def json_api(d, figures):
    # Uploads cut short, with a length and chunked.
    cut_upload(d.url, "/api/files/cut/declared.bin", 8 * MIB, 3 * MIB)
    cut_upload(d.url, "/api/files/cut/chunked.bin", 0, 3 * MIB, chunked=True)
    # Once what the cut uploads stored is taken away, they are over.
    wait_disk_matches_index(d, "cut uploads")
    listed = d.files()
    check(not any(n.startswith("cut/") for n in listed), f"a cut upload is visible: {list(listed)}")
    # Oversized and malformed requests.
    big_header = raw(d.url, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                     + b"a" * MIB + b"\r\n\r\n")
    check(status_of(big_header) in (431, 400, None), f"a 1 MiB header: {big_header[:100]}")
    junk = raw(d.url, os.urandom(64 * 1024))
    check(status_of(junk) in (400, None), f"64 KiB of random bytes: {junk[:100]}")
    status, body = d.request("POST", "/api/nodes", body=b'{"region": "eu-',
                             headers={"Content-Type": "application/json"})
    check(status == 400 and b"InvalidBody" in body, f"truncated JSON: {status} {body[:200]!r}")
    big = b'{"region": "' + b"x" * (8 * MIB) + b'"}'
    answer = raw(d.url, b"POST /api/nodes HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                 b"Content-Type: application/json\r\n"
                 + f"Content-Length: {len(big)}\r\n\r\n".encode() + big)
    check(status_of(answer) == 413 and "BodyTooLarge" in answer,
          f"8 MiB of JSON: {answer[:300]!r}")
    status, body = d.request("GET", "/api/files/nothing/here.bin")
    check(status == 404, f"a missing file: {status}")
    check(d.json("GET", "/api/health")["connected"] == 9, "the daemon is not well after all that")
    figures.append(("JSON API", "uploads cut short (with Content-Length, chunked): invisible, "
                                "their shards removed; 1 MiB header: "
                                f"{status_of(big_header) or 'closed'}; 64 KiB of noise: "
                                f"{status_of(junk) or 'closed'}; truncated JSON: 400 InvalidBody; "
                                "8 MiB JSON: 413 BodyTooLarge; the daemon serves on"))


def names(d, figures):
    refused = []
    for name in ["..%2F..%2Fetc%2Fpasswd", "a/../../b", "a/./b", "a//b", "%2Fetc%2Fpasswd",
                 "x" * 1100, "nul%00byte"]:
        status, body = d.request("PUT", "/api/files/" + name, body=b"x")
        check(status == 400 and b"InvalidName" in body, f"PUT {name[:40]}: {status} {body[:200]!r}")
        refused.append(name[:24])
    figures.append(("file names", f"{len(refused)} climbing, empty-segment, absolute, 1100-byte "
                                  "and NUL names refused with 400 InvalidName"))


def s3_api(d, work, figures):
    import boto3
    import botocore.config
    import botocore.exceptions

    key = d.json("POST", "/api/s3/keys")["key"]
    cfg = botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                 signature_version="s3v4")
    s3 = boto3.client("s3", endpoint_url=d.s3, aws_access_key_id=key["access_key_id"],
                      aws_secret_access_key=key["secret_access_key"], region_name="us-east-1",
                      config=cfg)

    def code(call):
        try:
            call()
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"]
        return None

    s3.create_bucket(Bucket="bad")
    s3.create_bucket(Bucket="other")
    # A presigned PUT cut short.
    url = urllib.parse.urlsplit(s3.generate_presigned_url(
        "put_object", Params={"Bucket": "bad", "Key": "cut.bin"}, ExpiresIn=600))
    cut_upload(d.s3, f"{url.path}?{url.query}", 8 * MIB, 3 * MIB, host=url.netloc)
    wait_disk_matches_index(d, "a cut S3 upload")
    check(code(lambda: s3.head_object(Bucket="bad", Key="cut.bin")) in ("404", "NoSuchKey"),
          "a cut S3 upload is visible")
    # A body that does not match its Content-MD5.
    bad_md5 = code(lambda: s3.put_object(Bucket="bad", Key="md5.bin", Body=b"hello",
                                         ContentMD5="XrY7u+Ae7tCTyyK7j1rNww=="))
    check(bad_md5 == "BadDigest", f"a wrong Content-MD5: {bad_md5}")
    check(code(lambda: s3.head_object(Bucket="bad", Key="md5.bin")) in ("404", "NoSuchKey"),
          "an object with a wrong Content-MD5 is visible")
    # A multipart upload completed with a part that is not there.
    up = s3.create_multipart_upload(Bucket="bad", Key="mp.bin")["UploadId"]
    s3.upload_part(Bucket="bad", Key="mp.bin", UploadId=up, PartNumber=1, Body=b"x" * 100)
    bad_part = code(lambda: s3.complete_multipart_upload(
        Bucket="bad", Key="mp.bin", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]}))
    check(bad_part == "InvalidPart", f"completing with a wrong part ETag: {bad_part}")
    s3.abort_multipart_upload(Bucket="bad", Key="mp.bin", UploadId=up)
    # A wrong secret, and no signature at all.
    wrong = boto3.client("s3", endpoint_url=d.s3, aws_access_key_id=key["access_key_id"],
                         aws_secret_access_key="0" * 40, region_name="us-east-1", config=cfg)
    wrong_sig = code(lambda: wrong.list_objects_v2(Bucket="bad"))
    check(wrong_sig == "SignatureDoesNotMatch", f"a wrong secret: {wrong_sig}")
    anon = raw(d.s3, b"GET /bad?list-type=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check(status_of(anon) == 403 and "AccessDenied" in anon, f"an anonymous list: {anon[:200]}")
    big_header = raw(d.s3, b"GET /bad HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MIB + b"\r\n\r\n")
    check(status_of(big_header) in (431, 400, None), f"S3, 1 MiB header: {big_header[:100]}")
    # Keys that look like paths are names in their bucket, nothing more.
    sneaky = ["../../etc/passwd", "a/../../other/x", "/leading", "./dot", "a//b"]
    for k in sneaky:
        s3.put_object(Bucket="bad", Key=k, Body=k.encode())
    for k in sneaky:
        got = s3.get_object(Bucket="bad", Key=k)["Body"].read()
        check(got == k.encode(), f"key {k!r} read back {got!r}")
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket="bad").get("Contents", [])}
    check(set(sneaky) <= listed, f"the bucket lists {sorted(listed)}")
    check(not s3.list_objects_v2(Bucket="other").get("Contents"),
          "a key climbed into another bucket")
    for root, _, fs in os.walk(work):
        check("passwd" not in fs, f"a key became a file: {root}/passwd")
    figures.append(("S3 API", "presigned PUT cut short: invisible; wrong Content-MD5: BadDigest; "
                              "wrong part ETag: InvalidPart; wrong secret: SignatureDoesNotMatch; "
                              "anonymous: 403 AccessDenied; 1 MiB header: "
                              f"{status_of(big_header) or 'closed'}"))
    figures.append(("S3 keys", f"{len(sneaky)} path-like keys ({', '.join(sneaky)}) stored and "
                               "read back as names in their bucket; no other bucket or file "
                               "touched"))


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def idle_connections(d, figures, count=10_000):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, count + 1000) if hard != resource.RLIM_INFINITY else count + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    check(want >= count + 100, f"this shell allows only {hard} open files; raise ulimit -n")
    fds_before, rss_before = fd_count(d.pid), rss_mib(d.pid)
    u = urllib.parse.urlsplit(d.url)
    conns = []
    started = time.monotonic()
    try:
        for i in range(count):
            conns.append(socket.create_connection((u.hostname, u.port), timeout=30))
        opened = time.monotonic() - started
        time.sleep(2)
        fds_during, rss_during = fd_count(d.pid), rss_mib(d.pid)
        t = time.monotonic()
        health = d.json("GET", "/api/health")
        health_s = time.monotonic() - t
        body = content(99, 4 * MIB)
        t = time.monotonic()
        check(d.put("idle/roundtrip.bin", body)[0] == 201, "a PUT among 10,000 idle connections")
        status, got = d.get("idle/roundtrip.bin")
        round_s = time.monotonic() - t
        check(status == 200 and sha256(got) == sha256(body), "a GET among 10,000 idle connections")
        check(health["connected"] == 9, "nodes dropped while the connections were open")
    finally:
        for c in conns:
            c.close()
    time.sleep(3)
    fds_after = fd_count(d.pid)
    check(fds_after < fds_before + 100, f"{fds_after} descriptors held after the clients left "
                                        f"({fds_before} before)")
    figures.append(("idle connections", f"{count} opened in {opened:.1f} s; daemon descriptors "
                                        f"{fds_before} -> {fds_during} -> {fds_after} after; RSS "
                                        f"{rss_before:.0f} -> {rss_during:.0f} MiB; meanwhile "
                                        f"/api/health in {health_s * 1000:.0f} ms, a 4 MiB "
                                        f"PUT + GET in {round_s:.2f} s"))


def bad_input(cli, work, opts):
    """Wrong keys and passphrases are refused at start with a clear message
    and the index untouched; uploads cut short, a 1 MiB header, random
    bytes, truncated and oversized JSON leave nothing visible and the
    daemon serving; S3 requests with a cut body, a wrong MD5, a wrong part,
    a wrong secret or none get S3's errors; names that climb are refused,
    path-like S3 keys stay names in their bucket; 10,000 idle connections
    do not stop the daemon from serving."""
    figures = []
    keys_and_passphrases(cli, work, figures)
    d = Daemon(cli, os.path.join(work, "plain"))
    d.start()
    try:
        d.wait_connected(9)
        json_api(d, figures)
        names(d, figures)
        s3_api(d, work, figures)
        idle_connections(d, figures, 2_000 if opts.quick else 10_000)
    finally:
        d.kill()
    return figures
