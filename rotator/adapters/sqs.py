"""The exposure event queue (rotator.service.ports.EventQueue) on boto3's SQS client.

Facts relied on (Amazon SQS Developer Guide and API Reference):
- long polling: ReceiveMessage with WaitTimeSeconds between 1 and 20 returns as soon as a message is available,
  and the HTTP read timeout must be longer than the wait (RETRY_CONFIG reads for 30 s);
- a received message stays invisible for VisibilityTimeout and comes back unless DeleteMessage removes it;
  ChangeMessageVisibility sets when it comes back (0: at once);
- ApproximateReceiveCount counts the receives; once it exceeds the RedrivePolicy's maxReceiveCount, SQS moves
  the message to the dead-letter queue (deadLetterTargetArn) instead of delivering it again.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rotator.adapters.aws import RETRY_CONFIG, aws_call
from rotator.service.ports import QueueInfo, QueueMessage

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

# https://sqs.<region>.amazonaws.com/<account>/<name>; the legacy https://<region>.queue.amazonaws.com/…
_REGION_IN_URL = re.compile(r"^https?://(?:sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?|([a-z0-9-]+)\.queue\."
                            r"amazonaws\.com(?:\.cn)?)/")


def queue_region(queue_url: str, default: str) -> str:
    """The region of an AWS queue URL; ``default`` for any other URL (an endpoint override, a test double)."""
    match = _REGION_IN_URL.match(queue_url)
    return (match.group(1) or match.group(2)) if match else default


class SqsQueue:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._sqs = client
        self._url = queue_url

    @classmethod
    def for_session(cls, session: boto3.Session, queue_url: str, default_region: str) -> SqsQueue:
        client = session.client("sqs", region_name=queue_region(queue_url, default_region), config=RETRY_CONFIG)
        return cls(client, queue_url)

    @property
    def url(self) -> str:
        return self._url

    def describe(self) -> QueueInfo:
        with aws_call("sqs:GetQueueAttributes", self._url):
            attributes = self._sqs.get_queue_attributes(QueueUrl=self._url,
                                                        AttributeNames=["QueueArn", "RedrivePolicy"])["Attributes"]
        redrive: dict[str, Any] = {}
        try:
            redrive = json.loads(attributes.get("RedrivePolicy") or "{}")
        except ValueError:
            redrive = {}
        count = redrive.get("maxReceiveCount")
        return QueueInfo(arn=str(attributes.get("QueueArn", "")),
                         dead_letter_arn=redrive.get("deadLetterTargetArn"),
                         max_receive_count=int(count) if count is not None else None)

    def receive(self, *, max_messages: int, wait_seconds: int, visibility_timeout: int) -> list[QueueMessage]:
        with aws_call("sqs:ReceiveMessage", self._url):
            answer = self._sqs.receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=visibility_timeout,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"])
        return [_message(raw) for raw in answer.get("Messages", [])]

    def delete(self, message: QueueMessage) -> None:
        with aws_call("sqs:DeleteMessage", message.message_id):
            self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message.receipt_handle)

    def make_visible_in(self, message: QueueMessage, seconds: int) -> None:
        with aws_call("sqs:ChangeMessageVisibility", message.message_id):
            self._sqs.change_message_visibility(QueueUrl=self._url, ReceiptHandle=message.receipt_handle,
                                                VisibilityTimeout=seconds)


def _message(raw: MessageTypeDef) -> QueueMessage:
    attributes = raw.get("Attributes") or {}
    sent = attributes.get("SentTimestamp")
    return QueueMessage(
        message_id=str(raw.get("MessageId", "")), receipt_handle=str(raw.get("ReceiptHandle", "")),
        body=str(raw.get("Body", "")), receive_count=int(attributes.get("ApproximateReceiveCount") or 1),
        sent_at=datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None)
