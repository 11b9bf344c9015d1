"""Drives every CloudShell operation through boto3 with the shipped model.

Run by the emulator crate's `boto3` integration test, which starts an
emulator and sets AWS_DATA_PATH, AWS_ENDPOINT_URL_CLOUDSHELL and credentials.
A client we did not write thereby checks our SigV4 verification and shapes.
Prints one line per check; exits non-zero on the first failure.
"""

import os
import sys
import time
import uuid

try:
    import boto3
    import botocore.exceptions
except ImportError:
    sys.exit("boto3 is not installed: run `pip install -r tests/python/requirements.txt` "
             "(scripts/test-all sets up a virtualenv with it)")


def expect_error(code, fn, **kwargs):
    try:
        fn(**kwargs)
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}: {e}"
        print(f"ok   {fn.__name__} -> {code}")
        return e
    raise AssertionError(f"{fn.__name__} should have failed with {code}")


def wait_for(c, env_id, status, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = c.get_environment_status(EnvironmentId=env_id)["Status"]
        if s == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"{env_id} did not reach {status}")


def main():
    c = boto3.client("cloudshell")
    ops = sorted(c.meta.service_model.operation_names)
    assert len(ops) == 12, ops
    print("ok   model has 12 operations")

    assert c.describe_environments()["Environments"] == []
    created = c.create_environment(EnvironmentName="boto")
    env_id = created["EnvironmentId"]
    assert created["Status"] == "CREATING", created
    wait_for(c, env_id, "RUNNING")
    print("ok   CreateEnvironment, GetEnvironmentStatus")

    listed = c.describe_environments()["Environments"]
    assert [e["EnvironmentId"] for e in listed] == [env_id], listed
    assert listed[0]["EnvironmentName"] == "boto", listed
    print("ok   DescribeEnvironments")

    c.send_heart_beat(EnvironmentId=env_id)
    print("ok   SendHeartBeat")

    s = c.create_session(EnvironmentId=env_id, SessionType="TMUX", TabId=str(uuid.uuid4()), QCliDisabled=True)
    assert s["StreamUrl"].startswith("ws"), s
    assert s["TokenValue"], s
    c.delete_session(EnvironmentId=env_id, SessionId=s["SessionId"])
    print("ok   CreateSession, DeleteSession")

    up = c.get_file_upload_urls(EnvironmentId=env_id, FileName="a.txt")
    assert up["FileUploadPresignedUrl"] and isinstance(up["FileUploadPresignedFields"], dict), up
    down = c.get_file_download_urls(EnvironmentId=env_id, FileName="a.txt")
    assert down["FileDownloadPresignedUrl"] and down["FileDownloadPresignedKey"], down
    print("ok   GetFileUploadUrls, GetFileDownloadUrls")

    expect_error("TokenDecryptionException", c.put_credentials, EnvironmentId=env_id)

    stopped = c.stop_environment(EnvironmentId=env_id)
    assert stopped["EnvironmentId"] == env_id, stopped
    wait_for(c, env_id, "SUSPENDED")
    expect_error("ValidationException", c.stop_environment, EnvironmentId=env_id)
    c.start_environment(EnvironmentId=env_id)
    wait_for(c, env_id, "RUNNING")
    print("ok   StopEnvironment, StartEnvironment")

    expect_error("ResourceNotFoundException", c.get_environment_status, EnvironmentId="no-such-env")
    expect_error("ServiceQuotaExceededException", c.create_environment)
    expect_error("ValidationException", c.create_session, EnvironmentId=env_id, SessionType="TMUX",
                 TabId="c232ab00-9414-11ec-b3c8-9f6bdeced846")
    vpc = {"VpcId": "vpc-0123456789abcdef0", "SubnetIds": ["subnet-01234567"], "SecurityGroupIds": ["sg-01234567"]}
    c.create_environment(EnvironmentName="v1", VpcConfig=vpc)
    c.create_environment(EnvironmentName="v2", VpcConfig=vpc)
    expect_error("ServiceQuotaExceededException", c.create_environment, EnvironmentName="v3", VpcConfig=vpc)
    # botocore checks only required members and types; the service checks the rest.
    bad = dict(vpc, SecurityGroupIds=[f"sg-0000000{i}" for i in range(6)])
    expect_error("ValidationException", c.create_environment, EnvironmentName="v4", VpcConfig=bad)

    c.delete_environment(EnvironmentId=env_id)
    wait_for(c, env_id, "DELETED")
    print("ok   DeleteEnvironment")


    wrong = boto3.client("cloudshell", aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key="wrong-secret")
    expect_error("InvalidSignatureException", wrong.describe_environments)
    other_region = boto3.client("cloudshell", region_name="xx-nowhere-1")
    e = expect_error("InvalidSignatureException", other_region.describe_environments)
    assert "valid region" in e.response["Error"]["Message"], e
    print("all boto3 checks passed")


if __name__ == "__main__":
    main()
