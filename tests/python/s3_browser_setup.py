"""Prepares the browser test of the S3 endpoint (tests/web/s3.test.mjs).

Usage: s3_browser_setup.py ENDPOINT KEY SECRET ORIGIN

Makes bucket "web" with a CORS rule for ORIGIN only, and prints as JSON
what a web page needs: the fields of a browser form upload (boto3's
generate_presigned_post, with the conditions sites put in it:
success_action_status 201, a key prefix, a content-type prefix and a
length range), a presigned PUT and a presigned GET.
"""

import json
import sys

import boto3
from botocore.config import Config

endpoint, key, secret, origin = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key, aws_secret_access_key=secret,
                  config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="web")
s3.put_bucket_cors(Bucket="web", CORSConfiguration={"CORSRules": [{
    "AllowedOrigins": [origin],
    "AllowedMethods": ["GET", "PUT", "POST", "HEAD"],
    "AllowedHeaders": ["content-type", "x-amz-meta-*"],
    "ExposeHeaders": ["ETag", "x-amz-meta-from"],
    "MaxAgeSeconds": 60,
}]})
assert s3.get_bucket_cors(Bucket="web")["CORSRules"][0]["AllowedOrigins"] == [origin]
post = s3.generate_presigned_post(
    "web", "uploads/${filename}",
    Fields={"success_action_status": "201", "Content-Type": "text/plain"},
    Conditions=[
        {"success_action_status": "201"},
        ["starts-with", "$key", "uploads/"],
        ["starts-with", "$Content-Type", "text/"],
        ["content-length-range", 1, 1 << 20],
    ],
    ExpiresIn=600,
)
put = s3.generate_presigned_url("put_object", Params={
    "Bucket": "web", "Key": "put/by-browser.txt", "ContentType": "text/plain",
    "Metadata": {"from": "browser"}}, ExpiresIn=600)
get = s3.generate_presigned_url("get_object", Params={
    "Bucket": "web", "Key": "uploads/hello.txt"}, ExpiresIn=600)
get_put = s3.generate_presigned_url("get_object", Params={
    "Bucket": "web", "Key": "put/by-browser.txt"}, ExpiresIn=600)
print(json.dumps({"post": post, "put": put, "get": get, "get_put": get_put}))
