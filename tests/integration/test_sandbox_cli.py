"""``rotator sandbox --json`` as a user runs it: a subprocess, its JSON line, and real clients against it."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path

import boto3
import gitlab
import pytest
from botocore.config import Config
from slack_sdk import WebClient

ROTATOR = Path(sys.executable).with_name("rotator")
EXPECTED_KEYS = {"aws_endpoint_url", "gitlab_url", "gitlab_token", "slack_api_url", "slack_token",
                 "aws_health_event_url", "aws_quarantine_url"}


def first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The first stdout line, or an AssertionError naming stderr if none comes within ``timeout``."""
    lines: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines or not lines[0]:
        process.kill()
        _, stderr = process.communicate(timeout=10)
        raise AssertionError(f"no JSON line from `rotator sandbox --json`; stderr:\n{stderr}")
    return lines[0]


@pytest.mark.skipif(importlib.util.find_spec("rotator.sandbox.gitlab") is None,
                    reason="rotator.sandbox.gitlab (the GitLab emulator) is not in this checkout yet")
def test_sandbox_json_serves_all_three_until_sigterm() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen([str(ROTATOR), "sandbox", "--json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        urls = json.loads(first_line(process, timeout=30))
        assert set(urls) == EXPECTED_KEYS
        assert urls["slack_api_url"].endswith("/api/")

        # AWS: create a key pair, prove IAM accepts it, keep it in a GitLab variable.
        aws = {"endpoint_url": urls["aws_endpoint_url"], "region_name": "us-east-1",
               "config": Config(retries={"total_max_attempts": 1})}
        iam = boto3.client("iam", aws_access_key_id="testing", aws_secret_access_key="testing", **aws)
        user = f"ci-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        sts = boto3.client("sts", aws_access_key_id=key["AccessKeyId"],
                           aws_secret_access_key=key["SecretAccessKey"], **aws)
        assert sts.get_caller_identity()["Arn"].endswith(f":user/{user}")

        # SQS behind the same front, and the Health event injection the JSON line points to.
        sqs = boto3.client("sqs", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                           **aws)
        queue = sqs.create_queue(QueueName=f"health-{user}")["QueueUrl"]
        injection = urllib.request.Request(urls["aws_health_event_url"], method="POST", data=json.dumps(
            {"queue_url": queue, "access_key_ids": [key["AccessKeyId"]]}).encode())
        with urllib.request.urlopen(injection) as response:
            assert response.status == 201
        [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2)["Messages"]
        event = json.loads(message["Body"])
        assert event["detail"]["affectedEntities"] == [{"entityValue": key["AccessKeyId"]}]
        quarantine = urllib.request.Request(urls["aws_quarantine_url"], method="POST",
                                            data=json.dumps({"user_name": user, "version": "V3"}).encode())
        with urllib.request.urlopen(quarantine) as response:
            assert response.status == 201
        attached = iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]
        assert [p["PolicyName"] for p in attached] == ["AWSCompromisedKeyQuarantineV3"]

        gl = gitlab.Gitlab(urls["gitlab_url"], private_token=urls["gitlab_token"])
        gl.auth()
        assert gl.user is not None
        project = gl.projects.create({"name": f"deploy-{user}"})
        project.variables.create({"key": "AWS_ACCESS_KEY_ID", "value": key["AccessKeyId"]})
        assert project.variables.get("AWS_ACCESS_KEY_ID").value == key["AccessKeyId"]

        slack = WebClient(token=urls["slack_token"], base_url=urls["slack_api_url"])
        assert slack.chat_postMessage(channel="#security-incidents", text="sandbox is up")["ok"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, stderr
    assert key["SecretAccessKey"] not in stderr


def free_port_base() -> int:
    """A port N with N, N+1 and N+2 free right now."""
    import socket

    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + 2 > 65535:
            continue
        try:
            with socket.socket() as one, socket.socket() as two, socket.socket() as three:
                one.bind(("127.0.0.1", base))
                two.bind(("127.0.0.1", base + 1))
                three.bind(("127.0.0.1", base + 2))
        except OSError:
            continue
        return base
    raise AssertionError("no three consecutive free ports")


@pytest.mark.skipif(importlib.util.find_spec("rotator.sandbox.gitlab") is None,
                    reason="rotator.sandbox.gitlab (the GitLab emulator) is not in this checkout yet")
def test_human_output_on_fixed_ports_and_sigint() -> None:
    base = free_port_base()
    process = subprocess.Popen([str(ROTATOR), "sandbox", "--port-base", str(base)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert "emulators are running" in first_line(process, timeout=30)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    assert process.stdout is not None
    assert process.stderr is not None
    # The rest of the block through the same buffered reader (communicate() would bypass its buffer).
    stdout, stderr = process.stdout.read(), process.stderr.read()
    assert process.returncode == 0, stderr
    assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{base}" in stdout
    assert f"http://127.0.0.1:{base + 1}" in stdout
    assert f"http://127.0.0.1:{base + 2}/api/" in stdout


def test_help_explains_with_an_example() -> None:
    shown = subprocess.run([str(ROTATOR), "sandbox", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--json" in shown
    assert "--port-base" in shown
    assert "rotator sandbox --json" in shown
    assert "--cloudtrail-delay" in shown and "AWS_RISK_CREDENTIALS_EXPOSED" in shown
    assert "aws_health_event_url" in shown and "AWSCompromisedKeyQuarantineV3" in shown


@pytest.mark.skipif(importlib.util.find_spec("rotator.sandbox.gitlab") is None,
                    reason="rotator.sandbox.gitlab (the GitLab emulator) is not in this checkout yet")
def test_cloudtrail_delay_option_holds_records_back() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen([str(ROTATOR), "sandbox", "--json", "--cloudtrail-delay", "3600"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        urls = json.loads(first_line(process, timeout=30))
        aws = {"endpoint_url": urls["aws_endpoint_url"], "region_name": "us-east-1",
               "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        boto3.client("iam", **aws).create_user(UserName="held-back")
        events = boto3.client("cloudtrail", **aws).lookup_events(
            LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateUser"}])["Events"]
        assert events == []
        deliver = urllib.request.Request(urls["aws_endpoint_url"] + "/_sandbox/cloudtrail/deliver", method="POST",
                                         data=b"{}")
        with urllib.request.urlopen(deliver) as response:
            assert json.loads(response.read())["delivered"] >= 1
        events = boto3.client("cloudtrail", **aws).lookup_events(
            LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateUser"}])["Events"]
        assert [e["EventName"] for e in events] == ["CreateUser"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    assert process.returncode == 0
