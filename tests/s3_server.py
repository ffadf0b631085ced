"""A real S3-compatible server on loopback for floe's S3 tests: moto's
server (moto[server], pinned in .ci/run) on an ephemeral port, with IAM
authentication enforced so that wrong credentials are refused as S3
refuses them.

It creates a user with full access and one that may only list and read
(for the test that a refused put lands no commit), an access key for
each and the bucket `floe-test`, prints one JSON line (endpoint, region,
access_key, secret_key, reader_key, reader_secret, bucket) and serves
until its stdin closes or it is killed.

    python tests/s3_server.py
"""

import json
import os
import sys

# moto serves these first requests unsigned (the IAM setup below);
# every later request must be signed with a key that exists.
SETUP_REQUESTS = 4
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(SETUP_REQUESTS)

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

BUCKET = "floe-test"
REGION = "us-east-1"


def main():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    anonymous = dict(
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam = boto3.client("iam", **anonymous)
    iam.create_user(UserName="floe")
    policy = iam.create_policy(
        PolicyName="floe-all",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    iam.attach_user_policy(UserName="floe", PolicyArn=policy["Policy"]["Arn"])
    key = iam.create_access_key(UserName="floe")["AccessKey"]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    s3.create_bucket(Bucket=BUCKET)
    reader = reader_key(endpoint, key)
    line = {
        "endpoint": endpoint,
        "region": REGION,
        "access_key": key["AccessKeyId"],
        "secret_key": key["SecretAccessKey"],
        "reader_key": reader["AccessKeyId"],
        "reader_secret": reader["SecretAccessKey"],
        "bucket": BUCKET,
    }
    print(json.dumps(line), flush=True)
    sys.stdin.read()
    server.stop()


def reader_key(endpoint, admin):
    """A user who may list and read the bucket but not write to it."""
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=admin["AccessKeyId"],
        aws_secret_access_key=admin["SecretAccessKey"],
    )
    iam.create_user(UserName="reader")
    policy = iam.create_policy(
        PolicyName="floe-read",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:ListBucket", "s3:GetObject"],
                        "Resource": "*",
                    }
                ],
            }
        ),
    )
    iam.attach_user_policy(UserName="reader", PolicyArn=policy["Policy"]["Arn"])
    return iam.create_access_key(UserName="reader")["AccessKey"]


if __name__ == "__main__":
    main()
