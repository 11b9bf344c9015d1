"""Every access rule of the S3 endpoint, between two users and nobody.

Usage: s3_access.py ENDPOINT ALICE_KEY ALICE_SECRET BOB_KEY BOB_SECRET

alice and bob are keys made with `cloudshell store keys create --user`.
Each rule is tried from the side it must refuse as well as the side it
must allow: bob against alice's private bucket, then through a bucket
ACL, an object ACL and a bucket policy; an anonymous client (boto3
unsigned, and plain HTTP with no header at all) through public-read ACLs
and a public policy; the public access block's four switches; object
ownership (ObjectWriter by default, BucketOwnerEnforced on request).
"""

import json
import sys
import urllib.error
import urllib.request

import boto3
import botocore
from botocore.config import Config


def client(endpoint, key=None, secret=None):
    if key is None:
        config = Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1})
        return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id="x", aws_secret_access_key="x", config=config)
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


def code(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return "ok"


def status(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"]
    return 200


def denied(call, what):
    got = code(call)
    # A HEAD's answer has no body: botocore reports its status.
    assert got in ("AccessDenied", "403"), f"{what}: expected AccessDenied, got {got}"


def allowed(call, what):
    try:
        return call()
    except botocore.exceptions.ClientError as e:
        raise AssertionError(f"{what}: expected success, got {e.response['Error']}") from e


def plain_get(endpoint, bucket, key):
    """A GET with no signature at all, as a browser or curl sends it."""
    try:
        with urllib.request.urlopen(f"{endpoint}/{bucket}/{key}") as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main():
    endpoint, ak, asec, bk, bsec = sys.argv[1:6]
    alice, bob, nobody = client(endpoint, ak, asec), client(endpoint, bk, bsec), client(endpoint)
    alice_id = alice.list_buckets()["Owner"]["ID"]
    bob_id = bob.list_buckets()["Owner"]["ID"]
    assert alice_id != bob_id

    # Private by default: bob and nobody can do nothing with alice's bucket.
    b = "alice-private"
    alice.create_bucket(Bucket=b)
    alice.put_object(Bucket=b, Key="secret", Body=b"alice's secret")
    bob.create_bucket(Bucket="bob-bucket")
    assert [x["Name"] for x in bob.list_buckets()["Buckets"]] == ["bob-bucket"]
    assert [x["Name"] for x in alice.list_buckets()["Buckets"]] == [b]
    assert code(lambda: bob.create_bucket(Bucket=b)) == "BucketAlreadyExists"
    assert code(lambda: alice.create_bucket(Bucket=b)) == "BucketAlreadyOwnedByYou"
    denied(lambda: bob.get_object(Bucket=b, Key="secret"), "bob reads alice's object")
    denied(lambda: bob.head_object(Bucket=b, Key="secret"), "bob heads alice's object")
    denied(lambda: bob.copy_object(Bucket="bob-bucket", Key="stolen",
                                   CopySource={"Bucket": b, "Key": "secret"}),
           "bob copies out of alice's bucket")
    denied(lambda: bob.list_objects_v2(Bucket=b), "bob lists alice's bucket")
    denied(lambda: bob.put_object(Bucket=b, Key="x", Body=b"x"), "bob writes into it")
    denied(lambda: bob.delete_object(Bucket=b, Key="secret"), "bob deletes from it")
    denied(lambda: bob.get_bucket_acl(Bucket=b), "bob reads its ACL")
    denied(lambda: bob.put_bucket_acl(Bucket=b, ACL="public-read"), "bob makes it public")
    denied(lambda: bob.delete_bucket(Bucket=b), "bob deletes the bucket")
    denied(lambda: bob.put_bucket_policy(Bucket=b, Policy="{}"), "bob sets its policy")
    denied(lambda: bob.get_object_tagging(Bucket=b, Key="secret"), "bob reads its tags")
    denied(lambda: nobody.get_object(Bucket=b, Key="secret"), "nobody reads it")
    denied(lambda: nobody.list_buckets(), "nobody lists buckets")
    denied(lambda: nobody.create_bucket(Bucket="anon"), "nobody makes a bucket")
    assert plain_get(endpoint, b, "secret")[0] == 403
    # What bob may not see, he may not learn exists either.
    denied(lambda: bob.get_object(Bucket=b, Key="missing"), "bob probes a missing key")
    assert code(lambda: alice.get_object(Bucket=b, Key="missing")) == "NoSuchKey"

    # An object ACL: public-read lets everyone read that object only.
    alice.put_object(Bucket=b, Key="pub", Body=b"for all", ACL="public-read")
    assert nobody.get_object(Bucket=b, Key="pub")["Body"].read() == b"for all"
    assert plain_get(endpoint, b, "pub") == (200, b"for all")
    assert bob.get_object(Bucket=b, Key="pub")["Body"].read() == b"for all"
    denied(lambda: bob.put_object(Bucket=b, Key="pub", Body=b"mine"), "bob overwrites pub")
    grants = alice.get_object_acl(Bucket=b, Key="pub")["Grants"]
    assert {"READ", "FULL_CONTROL"} == {g["Permission"] for g in grants}, grants
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") for g in grants), grants
    alice.put_object_acl(Bucket=b, Key="pub", ACL="private")
    denied(lambda: nobody.get_object(Bucket=b, Key="pub"), "nobody after the ACL went private")
    alice.put_object_acl(Bucket=b, Key="pub", ACL="authenticated-read")
    assert bob.get_object(Bucket=b, Key="pub")["Body"].read() == b"for all"
    denied(lambda: nobody.get_object(Bucket=b, Key="pub"), "nobody, authenticated-read")

    # A bucket ACL: READ lets bob list, WRITE lets him write; the objects
    # he writes are his (ObjectWriter), so alice reads them only if he
    # grants it.
    alice.put_bucket_acl(Bucket=b, GrantFullControl=f'id="{alice_id}"',
                         GrantRead=f'id="{bob_id}"', GrantWrite=f'id="{bob_id}"')
    keys = [o["Key"] for o in bob.list_objects_v2(Bucket=b)["Contents"]]
    assert keys == ["pub", "secret"], keys
    denied(lambda: bob.get_object(Bucket=b, Key="secret"), "listing is not reading")
    assert code(lambda: bob.get_object(Bucket=b, Key="missing")) == "NoSuchKey"
    bob.put_object(Bucket=b, Key="from-bob", Body=b"bob's")
    denied(lambda: alice.get_object(Bucket=b, Key="from-bob"), "alice reads bob's object")
    owners = {o["Key"]: o["Owner"]["ID"] for o in alice.list_objects(Bucket=b)["Contents"]}
    assert owners["from-bob"] == bob_id and owners["secret"] == alice_id, owners
    bob.put_object(Bucket=b, Key="from-bob", Body=b"bob's", ACL="bucket-owner-full-control")
    assert alice.get_object(Bucket=b, Key="from-bob")["Body"].read() == b"bob's"
    bob.delete_object(Bucket=b, Key="from-bob")
    acl = alice.get_bucket_acl(Bucket=b)
    assert {(g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"]} == {
        (alice_id, "FULL_CONTROL"), (bob_id, "READ"), (bob_id, "WRITE")}, acl
    denied(lambda: bob.put_bucket_acl(Bucket=b, ACL="public-read"), "READ/WRITE is not WRITE_ACP")
    assert code(lambda: alice.put_bucket_acl(
        Bucket=b, GrantRead='emailAddress="bob@example.com"')) != "ok"
    assert code(lambda: alice.put_bucket_acl(Bucket=b, ACL="public")) == "InvalidArgument"
    alice.put_bucket_acl(Bucket=b, ACL="private")
    denied(lambda: bob.list_objects_v2(Bucket=b), "bob lists after the ACL went private")

    # A bucket policy: statements for bob and for everyone, a Deny that
    # beats an Allow, conditions, and what cannot be enforced refused.
    arn = "arn:aws:s3:::" + b
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/bob"},
         "Action": "s3:GetObject", "Resource": arn + "/shared/*"},
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/bob"},
         "Action": "s3:ListBucket", "Resource": arn,
         "Condition": {"StringLike": {"s3:prefix": "shared/*"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": arn + "/shared/closed/*"},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": arn + "/public/*"},
    ]}
    for k in ["shared/a", "shared/closed/b", "public/c"]:
        alice.put_object(Bucket=b, Key=k, Body=k.encode())
    alice.put_bucket_policy(Bucket=b, Policy=json.dumps(policy))
    assert json.loads(alice.get_bucket_policy(Bucket=b)["Policy"]) == policy
    assert alice.get_bucket_policy_status(Bucket=b)["PolicyStatus"]["IsPublic"] is True
    assert bob.get_object(Bucket=b, Key="shared/a")["Body"].read() == b"shared/a"
    denied(lambda: bob.get_object(Bucket=b, Key="secret"), "outside the policy's resource")
    denied(lambda: bob.get_object(Bucket=b, Key="shared/closed/b"), "an explicit Deny")
    denied(lambda: alice.get_object(Bucket=b, Key="shared/closed/b"), "Deny binds the owner too")
    assert [o["Key"] for o in bob.list_objects_v2(Bucket=b, Prefix="shared/")["Contents"]] \
        == ["shared/a", "shared/closed/b"]
    denied(lambda: bob.list_objects_v2(Bucket=b), "a listing outside the condition")
    denied(lambda: bob.put_object(Bucket=b, Key="shared/x", Body=b"x"), "not an allowed action")
    assert plain_get(endpoint, b, "public/c") == (200, b"public/c")
    denied(lambda: nobody.get_object(Bucket=b, Key="shared/a"), "nobody outside public/")
    for bad, says in [
        ({"Statement": [{"Effect": "Allow", "NotPrincipal": "*", "Action": "s3:GetObject",
                         "Resource": arn + "/*"}]}, "NotPrincipal"),
        ({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                         "Resource": "arn:aws:s3:::other/*"}]}, "invalid resource"),
        ({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                         "Resource": arn + "/*",
                         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]},
         "IpAddress"),
    ]:
        try:
            alice.put_bucket_policy(Bucket=b, Policy=json.dumps(bad))
            raise AssertionError(f"accepted {bad}")
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "MalformedPolicy", e.response
            assert says in e.response["Error"]["Message"], e.response
    assert json.loads(alice.get_bucket_policy(Bucket=b)["Policy"]) == policy, "a refusal keeps the old"

    # The public access block, one switch at a time.
    def block(**switches):
        conf = {"BlockPublicAcls": False, "IgnorePublicAcls": False,
                "BlockPublicPolicy": False, "RestrictPublicBuckets": False}
        conf.update(switches)
        alice.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=conf)
    alice.put_object(Bucket=b, Key="pub", Body=b"for all", ACL="public-read")
    block(BlockPublicAcls=True)
    denied(lambda: alice.put_object(Bucket=b, Key="pub2", Body=b"x", ACL="public-read"),
           "BlockPublicAcls on a put")
    denied(lambda: alice.put_object_acl(Bucket=b, Key="pub", ACL="public-read-write"),
           "BlockPublicAcls on an ACL")
    assert plain_get(endpoint, b, "pub")[0] == 200, "existing public ACLs still count"
    block(IgnorePublicAcls=True)
    assert plain_get(endpoint, b, "pub")[0] == 403
    assert plain_get(endpoint, b, "public/c")[0] == 200, "policies are not ACLs"
    block(RestrictPublicBuckets=True)
    assert plain_get(endpoint, b, "public/c")[0] == 403
    assert bob.get_object(Bucket=b, Key="shared/a")["Body"].read() == b"shared/a", \
        "a statement naming bob is not public"
    block(BlockPublicPolicy=True)
    denied(lambda: alice.put_bucket_policy(Bucket=b, Policy=json.dumps(policy)),
           "BlockPublicPolicy")
    got = alice.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"]
    assert got["BlockPublicPolicy"] and not got["IgnorePublicAcls"], got
    alice.delete_public_access_block(Bucket=b)
    assert plain_get(endpoint, b, "pub")[0] == 200 and plain_get(endpoint, b, "public/c")[0] == 200
    alice.delete_bucket_policy(Bucket=b)
    assert plain_get(endpoint, b, "public/c")[0] == 403
    assert code(lambda: alice.get_bucket_policy(Bucket=b)) == "NoSuchBucketPolicy"

    # Object ownership: BucketOwnerEnforced turns object ACLs off and makes
    # every object the bucket owner's.
    alice.put_bucket_ownership_controls(Bucket=b, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    assert alice.get_bucket_ownership_controls(Bucket=b)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]
    assert code(lambda: alice.put_object(Bucket=b, Key="y", Body=b"y", ACL="public-read")) \
        == "AccessControlListNotSupported"
    assert status(lambda: alice.put_object_acl(Bucket=b, Key="pub", ACL="public-read")) == 400
    assert code(lambda: alice.create_bucket(
        Bucket="enforced", ObjectOwnership="BucketOwnerEnforced", ACL="public-read")) \
        == "InvalidBucketAclWithObjectOwnership"
    assert plain_get(endpoint, b, "pub")[0] == 403, "object ACLs no longer count"
    alice.delete_bucket_ownership_controls(Bucket=b)
    assert plain_get(endpoint, b, "pub")[0] == 200

    # Versions are their own actions: s3:GetObject reads the current one,
    # s3:GetObjectVersion any by its id.
    vb = "alice-versions"
    alice.create_bucket(Bucket=vb)
    alice.put_bucket_versioning(Bucket=vb, VersioningConfiguration={"Status": "Enabled"})
    old = alice.put_object(Bucket=vb, Key="doc", Body=b"draft")["VersionId"]
    alice.put_object(Bucket=vb, Key="doc", Body=b"final")
    bob_arn = "arn:aws:iam::000000000000:user/bob"

    def allow(*actions):
        alice.put_bucket_policy(Bucket=vb, Policy=json.dumps({"Statement": [{
            "Effect": "Allow", "Principal": {"AWS": bob_arn}, "Action": list(actions),
            "Resource": f"arn:aws:s3:::{vb}/*"}]}))
    allow("s3:GetObject")
    assert bob.get_object(Bucket=vb, Key="doc")["Body"].read() == b"final"
    denied(lambda: bob.get_object(Bucket=vb, Key="doc", VersionId=old), "an old version, unallowed")
    allow("s3:GetObject", "s3:GetObjectVersion")
    assert bob.get_object(Bucket=vb, Key="doc", VersionId=old)["Body"].read() == b"draft"
    denied(lambda: bob.delete_object(Bucket=vb, Key="doc", VersionId=old), "deleting a version")
    denied(lambda: bob.list_object_versions(Bucket=vb), "listing versions")
    alice.delete_bucket_policy(Bucket=vb)
    for v in alice.list_object_versions(Bucket=vb)["Versions"]:
        alice.delete_object(Bucket=vb, Key=v["Key"], VersionId=v["VersionId"])
    alice.delete_bucket(Bucket=vb)

    # Cleanup, by the owners.
    for k in ["secret", "pub", "shared/a", "shared/closed/b", "public/c"]:
        alice.delete_object(Bucket=b, Key=k)
    alice.delete_bucket(Bucket=b)
    bob.delete_bucket(Bucket="bob-bucket")
    print("access: ok")


if __name__ == "__main__":
    main()
