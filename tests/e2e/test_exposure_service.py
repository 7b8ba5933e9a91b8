"""AWS says a key is exposed, and the real service (`rotator run` in a child process) acts with no command typed.

Against the sandbox: AWS Health events are put into an SQS queue exactly as an EventBridge rule delivers them,
and AWS's quarantine policy is attached to a user as AWS does (rotator.sandbox.aws). Outcomes are checked
through the real parties: key statuses in IAM, every GitLab target's pair through STS at the AWS front, the
Slack fake's messages, the SQS queues, the store.

One service serves the module, with three credentials: ``events`` (on_exposed = contain_and_replace, the
default), ``told`` (on_exposed = "notify") and ``quarantined``.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from rotator.adapters.db.exposures import SqlExposureLedger
from rotator.adapters.db.store import SqlStore, upgrade_to_head
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import CredentialSeed, aws_client, config_toml
from tests.sandbox_support import (
    ROTATOR,
    every_target_works,
    running_sandbox,
    seed_one,
    target_pair,
    unique,
    user_keys,
)
from tests.service_support import ServiceProcess, service_env

pytestmark = pytest.mark.slow

SECURITY = "#security-incidents"
MALFORMED = [
    "not json", "[1, 2, 3]", "{}", json.dumps({"source": "aws.health", "detail-type": "AWS Health Event"}),
    json.dumps({"version": "0", "source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
                "detail": {"state": "running"}}),
]


@dataclass
class Running:
    sandbox: Sandbox
    service: ServiceProcess
    store: SqlStore
    ledger: SqlExposureLedger
    queue_url: str
    dead_letter_url: str
    seeds: dict[str, CredentialSeed]
    config: Path
    env: dict[str, str]

    @property
    def sqs(self) -> Any:
        return aws_client(self.sandbox.urls(), "sqs")

    def queue_depth(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def ticks(self) -> int:
        return len(self.service.events("tick"))

    def threads_about(self, key_id: str) -> list[dict[str, Any]]:
        """Root messages (not replies) in the security channel that announce ``key_id``'s containment."""
        return [m for m in self.sandbox.slack.messages() if m["channel"] == SECURITY and m["thread_ts"] is None
                and key_id in (m["text"] or "") and "contained" in (m["text"] or "")]


def make_queues(sandbox: Sandbox) -> tuple[str, str]:
    sqs = aws_client(sandbox.urls(), "sqs")
    name = unique("exposures")
    dead = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dead_arn, "maxReceiveCount": "3"})})["QueueUrl"]
    return queue, dead


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("exposures")
    with running_sandbox() as sandbox:
        seeds = {name: seed_one(sandbox, name=unique(name), owners=(f"#team-{name}",))
                 for name in ("events", "told", "quarantined")}
        queue_url, dead_letter_url = make_queues(sandbox)
        database = f"sqlite:///{workdir / 'rotator.db'}"
        upgrade_to_head(database)
        text = config_toml(sandbox.urls(), list(seeds.values()), database_url=database, security_channel=SECURITY,
                           extra_service={"tick": "2s", "listen": "127.0.0.1:0", "stop_timeout": "20s"})
        told = seeds["told"].name
        text = text.replace(f'name = "{told}"\n', f'name = "{told}"\non_exposed = "notify"\n')
        text += f'\n[events]\nqueue_url = "{queue_url}"\nwait_seconds = 1\nvisibility_timeout = "2m"\n'
        config = workdir / "rotator.toml"
        config.write_text(text)
        env = service_env(sandbox, Fernet.generate_key().decode())
        env["ROTATOR_LOG_LEVEL"] = "info"
        service = ServiceProcess(config, env, log_path=workdir / "service.log")
        store = SqlStore.from_url(database)
        try:
            service.listen_url()
            service.wait_for(lambda: len(service.events("tick")) >= 1, 30, "the first tick")
            yield Running(sandbox, service, store, SqlExposureLedger(store.engine), queue_url, dead_letter_url,
                          seeds, config, env)
            service.signal(signal.SIGTERM)
            assert service.wait(40) == 0
        finally:
            service.kill()
            store.close()


def test_a_health_event_contains_and_repairs_within_two_ticks_with_one_thread_one_incident(running: Running) -> None:
    seed = running.seeds["events"]
    leaked = seed.key_id
    ticks_before = running.ticks()
    delivered = running.sandbox.aws.inject_health_event(running.queue_url, leaked)
    arn = delivered.event["detail"]["eventArn"]
    running.service.wait_for(lambda: running.sandbox.aws.key_status(leaked) == "Inactive", 30, "the key Inactive")
    assert running.ticks() - ticks_before <= 2
    running.service.wait_for(lambda: running.queue_depth(running.queue_url) == 0, 60, "the message deleted")
    assert every_target_works(running.sandbox, seed) == []
    held = {target_pair(running.sandbox, target)[0] for target in seed.targets}
    assert leaked not in held and len(held) == 1
    assert user_keys(running.sandbox, seed.iam_user)[leaked] == "Inactive"  # kept as evidence
    [incident] = running.store.incidents_for_key(leaked)
    assert incident.actor == f"aws-health:{arn}"
    assert len(running.threads_about(leaked)) == 1
    assert [m for m in running.sandbox.slack.messages() if m["channel"] == seed.owners[0]]
    assert running.queue_depth(running.dead_letter_url) == 0


def test_the_same_event_twice_and_the_key_in_another_event_still_make_one_incident(running: Running) -> None:
    from rotator.sandbox.aws import health

    leaked = running.seeds["events"].key_id
    [first] = [r for r in running.ledger.for_key(leaked) if r.source == "aws-health"]
    event_arn = first.actor.removeprefix("aws-health:")
    again = health.exposed_key_event([leaked], "123456789012")
    again["detail"]["eventArn"] = event_arn  # the very same event, delivered once more (at least once)
    health.deliver(running.queue_url, again)
    running.sandbox.aws.inject_health_event(running.queue_url, leaked)  # a second event naming the same key
    def reports() -> list[str]:
        return sorted(r.outcome.value for r in running.ledger.for_key(leaked) if r.source == "aws-health")

    running.service.wait_for(lambda: len(reports()) == 2 and running.queue_depth(running.queue_url) == 0, 60,
                             "both messages handled and deleted")
    assert len(running.store.incidents_for_key(leaked)) == 1
    assert reports() == ["acted", "annotated"]  # the redelivery changed nothing, not even the record
    assert len(running.threads_about(leaked)) == 1
    status = json.loads(subprocess.run(
        [ROTATOR, "status", "--json", "--config", str(running.config)], env=running.env, text=True,
        capture_output=True, check=True).stdout)
    reported = [row for row in status["exposures"] if row["key_id"] == leaked and row["source"] == "aws-health"]
    assert {row["incident_id"] for row in reported} == {running.store.incidents_for_key(leaked)[0].incident_id}


def test_ten_bad_messages_are_dead_lettered_with_their_reason_and_nothing_is_contained(running: Running) -> None:
    before = {name: user_keys(running.sandbox, seed.iam_user) for name, seed in running.seeds.items()}
    incidents_before = sum(len(running.store.incidents_for_key(k)) for s in before.values() for k in s)
    ticks_before = running.ticks()
    sent = {running.sqs.send_message(QueueUrl=running.queue_url, MessageBody=body)["MessageId"]
            for body in (MALFORMED * 2)}
    assert len(sent) == 10
    running.service.wait_for(lambda: running.queue_depth(running.dead_letter_url) == 10, 90,
                             "ten messages in the dead-letter queue")
    rejected = running.service.events("exposure message rejected: left for the dead-letter queue")
    assert {line["message_id"] for line in rejected} == sent
    assert all(line["reason"] for line in rejected)
    running.service.wait_for(lambda: running.ticks() >= ticks_before + 2, 30, "the service to keep ticking")
    after = {name: user_keys(running.sandbox, seed.iam_user) for name, seed in running.seeds.items()}
    assert after == before
    assert sum(len(running.store.incidents_for_key(k)) for s in after.values() for k in s) == incidents_before


def test_notify_changes_nothing_in_aws_or_gitlab_and_tells_the_owners_what_to_run(running: Running) -> None:
    seed = running.seeds["told"]
    pairs = [target_pair(running.sandbox, target) for target in seed.targets]
    running.sandbox.aws.inject_health_event(running.queue_url, seed.key_id)
    running.service.wait_for(lambda: running.queue_depth(running.queue_url) == 0
                             and bool(running.ledger.for_key(seed.key_id)), 60, "the notification")
    [report] = [r for r in running.ledger.for_key(seed.key_id) if r.source == "aws-health"]
    assert (report.action, report.outcome.value) == ("notify", "notified")
    assert user_keys(running.sandbox, seed.iam_user) == {seed.key_id: "Active"}
    assert [target_pair(running.sandbox, target) for target in seed.targets] == pairs
    assert running.store.incidents_for_key(seed.key_id) == []
    told = [m for m in running.sandbox.slack.messages() if m["channel"] == seed.owners[0]]
    assert any(f"rotator revoke --key {seed.key_id} --replace" in (m["text"] or "") for m in told)


def test_a_quarantine_policy_with_no_event_has_the_next_tick_run_the_playbook(running: Running) -> None:
    seed = running.seeds["quarantined"]
    leaked = seed.key_id
    policy_arn = running.sandbox.aws.quarantine_user(seed.iam_user)
    running.service.wait_for(lambda: running.sandbox.aws.key_status(leaked) == "Inactive", 30,
                             "the next tick to contain the held key")
    running.service.wait_for(lambda: every_target_works(running.sandbox, seed) == [], 60, "the targets repaired")
    [incident] = running.store.incidents_for_key(leaked)
    assert incident.actor.startswith("aws-quarantine:") and "AWS names no key id" in incident.reason
    [root] = running.threads_about(leaked)

    def notes() -> list[dict[str, Any]]:
        return [m for m in running.sandbox.slack.messages() if m["thread_ts"] == root["ts"]
                and "detach-user-policy" in (m["text"] or "")]

    # After the replacement (and the audit) the thread says the policy is still attached and how it goes.
    running.service.wait_for(lambda: bool(notes()), 30, "the quarantine note in the incident's thread")
    assert policy_arn in notes()[0]["text"] and "never detaches" in notes()[0]["text"]
    iam = aws_client(running.sandbox.urls(), "iam")
    attached = iam.list_attached_user_policies(UserName=seed.iam_user)["AttachedPolicies"]
    assert policy_arn in [p["PolicyArn"] for p in attached]  # never detached by rotator
    new_key = target_pair(running.sandbox, seed.targets[0])[0]
    ticks = running.ticks()
    running.service.wait_for(lambda: running.ticks() >= ticks + 2, 30, "two more ticks")
    assert running.sandbox.aws.key_status(str(new_key)) == "Active"  # the policy still there is not news
    assert len(running.store.incidents_for_key(leaked)) == 1


def test_check_probes_the_exposure_queue_and_its_dead_letter_queue(running: Running) -> None:
    """`rotator check` reads the queue `rotator run` long-polls, and says where rejected messages go."""
    done = subprocess.run([ROTATOR, "check", "--json", "--config", str(running.config)], env=running.env,
                          capture_output=True, text=True, timeout=120, check=False)
    probes = {p["name"]: p for p in json.loads(done.stdout)["probes"]}
    queue = probes["aws sqs:GetQueueAttributes (exposure events)"]
    dead_arn = running.sqs.get_queue_attributes(QueueUrl=running.dead_letter_url,
                                                AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert queue["ok"] and f"dead-letter queue {dead_arn} after 3 receive(s)" in queue["detail"], queue
