"""DescribeEnvironments through boto3 with the shipped model: what `cloudshell list` does."""

import boto3

for env in boto3.client("cloudshell").describe_environments()["Environments"]:
    print(env["EnvironmentId"], env.get("Status", "-"))
