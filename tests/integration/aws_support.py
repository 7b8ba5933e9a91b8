"""Helpers for the AWS front's conformance tests: real boto3 clients over HTTP against an AwsSandbox."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Mapping
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from rotator.sandbox.aws import AwsSandbox

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
DUMMY = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
DEFAULT_ACCOUNT = "123456789012"


def client(aws: AwsSandbox, service: str, region: str = "us-east-1", **credentials: str) -> Any:
    creds = credentials or DUMMY
    return boto3.client(service, endpoint_url=aws.url, region_name=region, config=NO_RETRIES, **creds)  # type: ignore[call-overload]


def creds_of(minted: Mapping[str, Any]) -> dict[str, str]:
    """boto3 credentials from an AccessKey or Credentials structure (with its session token, if any)."""
    found = {"aws_access_key_id": str(minted["AccessKeyId"]), "aws_secret_access_key": str(minted["SecretAccessKey"])}
    if minted.get("SessionToken"):
        found["aws_session_token"] = str(minted["SessionToken"])
    return found


def new_user_with_key(aws: AwsSandbox, **credentials: str) -> tuple[str, dict[str, str]]:
    """A fresh IAM user with one access key, created by ``credentials`` (default: the ambient root)."""
    name = f"ci-{uuid.uuid4().hex[:8]}"
    iam = client(aws, "iam", **credentials)
    iam.create_user(UserName=name)
    return name, creds_of(iam.create_access_key(UserName=name)["AccessKey"])


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def lookup_all(aws: AwsSandbox, region: str, key: str, value: str, **credentials: str) -> list[dict[str, Any]]:
    trail = client(aws, "cloudtrail", region, **credentials)
    pages = trail.get_paginator("lookup_events").paginate(
        LookupAttributes=[{"AttributeKey": key, "AttributeValue": value}])
    return [event for page in pages for event in page["Events"]]


def control(aws: AwsSandbox, route: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{aws.url}/_sandbox/{route}", data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())
