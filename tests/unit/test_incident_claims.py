"""Every line about an incident says only what was done and checked, on the fake world: how a follow-up closes
an incident it cannot fully cover, what the thread hears when the audit fails, which policies count as a deny,
sessions nobody can name, the interrupt line, dry runs of temporary keys, what the containment message
promises, and what `rotator incidents` says T0 is."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner

from rotator.domain import Incident
from rotator.errors import AwsThrottled, ExitCode, RotatorError
from rotator.incident.audit.run import AuditedKey, AuditReport, run_audit
from rotator.incident.followup import FollowUpOptions, SessionSink, follow_up
from rotator.incident.reaudit import reaudit
from rotator.incident.report import headline, incident_json
from rotator.incident.sessions import CutStatus
from rotator.incident.steps import SESSION_DENY_POLICY, SESSION_DENY_SID, StepStatus, t0_of_document
from tests.unit.incident_fakes import ACCOUNT, FakeCloudTrail, record
from tests.unit.worlds import SECURITY, World, incident_world, step

FOREIGN = "333333333333"
ROLE_FOREIGN = f"arn:aws:iam::{FOREIGN}:role/audit"
S_FOREIGN = "ASIA3333333333333333"
S_UNKNOWN = "ASIA5555555555555555"
TEMPORARY = "ASIAABCDEFGHIJKLMNOP"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def past_every_follow_up(world: World) -> None:
    world.clock.advance(timedelta(hours=2))


# --- a follow-up closes only saying what is left ---------------------------------------------------------------


def test_a_follow_up_that_closes_with_gaps_names_each_of_them() -> None:
    world = incident_world()
    world.trail.add(record("AssumeRole", key_id=world.key_id, role_arn=ROLE_FOREIGN, minted=S_FOREIGN,
                           at="2026-01-01T11:03:00Z"))
    outcome = world.revoke()
    past_every_follow_up(world)
    done = reaudit(world.root().incident.reaudit_ports(holder="audit/test"), outcome.incident_id or "")
    # An account rotator cannot reach stays unreachable however often it is retried: it closes, saying so.
    assert done.closed and done.exit_code == ExitCode.CONTAINED_FOLLOW_UP_FAILED
    closing = done.lines()[-1]
    assert "an audit has covered T0 plus the delivery delay" in closing
    assert "closed: an audit has covered" not in closing  # never the unqualified claim
    assert "closed with" in closing and f"NOT covered: {S_FOREIGN}" in closing and FOREIGN in closing
    assert "NOT cut: sessions of role audit" in closing
    saved = world.store.incident_rows[done.incident.incident_id]
    assert saved.status == "closed, sessions NOT cut, coverage incomplete"
    document = json.loads(saved.report_json or "{}")
    assert document["gaps_left"] and any("audit" in line for line in document["not_cut"])
    assert world.notifier.posted[-1].lines[-1] == closing


def test_a_follow_up_whose_region_listing_failed_stays_open_to_retry_it() -> None:
    world = incident_world()
    outcome = world.revoke()
    past_every_follow_up(world)
    trail = FakeCloudTrail(world.trail.regions, clock=world.clock)
    trail.list_error = AwsThrottled("Rate exceeded", code="ThrottlingException")
    ports = world.root().incident.reaudit_ports(holder="audit/test")

    def audit(incident: Incident, seeds: Sequence[AuditedKey], start: datetime, sink: SessionSink) -> AuditReport:
        # As in an account with no [aws] audit_regions: the enabled regions are listed, and that fails.
        now = world.clock.now()
        return run_audit(trail, incident.key_id, start=start, end=now, account_id=ACCOUNT, seeds=seeds,
                         on_session=sink, now=now, cover_until=incident.t0)

    done = reaudit(replace(ports, audit=audit), outcome.incident_id or "")
    assert done.report is not None and done.report.retriable
    assert not done.closed and done.incident.follow_up_at is not None
    assert any("stays open" in line for line in done.lines())


# --- what the thread hears when the audit fails, and about late sessions -----------------------------------------


def test_a_failed_follow_up_audit_is_posted_and_claims_nothing_found() -> None:
    world = incident_world()
    outcome = world.revoke()
    world.clock.advance(timedelta(minutes=20))
    ports = world.root().incident.reaudit_ports(holder="audit/test")

    def audit(incident: Incident, seeds: Sequence[AuditedKey], start: datetime, sink: SessionSink) -> AuditReport:
        raise RotatorError("sts:AssumeRole into the audited account was refused")

    done = reaudit(replace(ports, audit=audit), outcome.incident_id or "")
    posted = world.notifier.posted[-1]
    assert posted.thread == "1.000" and posted.lines == done.lines()
    assert "no session found since the last audit" not in posted.lines
    assert any(line.startswith("the audit failed, so this follow-up covered nothing") for line in posted.lines)
    assert "the audit failed: sts:AssumeRole into the audited account was refused" in posted.lines
    assert not done.closed and done.exit_code == ExitCode.CONTAINED_FOLLOW_UP_FAILED


def test_a_late_session_that_no_deny_covers_is_said_to_be_not_cut() -> None:
    world = incident_world()
    outcome = world.revoke()
    late_at = outcome.containment.t0 + timedelta(seconds=30)  # after the deactivation: IAM had not caught up
    world.trail.add(record("AssumeRole", key_id=world.key_id, role_arn=ROLE_FOREIGN, minted=S_FOREIGN,
                           at=iso(late_at)))
    world.clock.advance(timedelta(minutes=20))
    done = reaudit(world.root().incident.reaudit_ports(holder="audit/test"), outcome.incident_id or "",
                   by_hand=True)
    [late] = [line for line in done.lines() if "minted after the key was verified Inactive" in line]
    assert "listed above with the deny that covers it" not in late
    assert "it is NOT cut" in late and "sessions of role audit" in late


# --- what counts as rotator's deny ---------------------------------------------------------------------------


def deny(**changes: object) -> str:
    statement: dict[str, object] = {"Sid": SESSION_DENY_SID, "Effect": "Deny", "Action": "*", "Resource": "*",
                                    "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2026-01-02T00:00:00Z"}}}
    statement.update(changes)
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.mark.parametrize("document", [
    deny(Effect="Allow"),
    deny(Action="s3:GetObject"),
    deny(Resource="arn:aws:s3:::bucket/*"),
    deny(Condition={"DateLessThan": {"aws:TokenIssueTime": "2026-01-02T00:00:00Z"},
                    "IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}),
    deny(Condition={"DateGreaterThan": {"aws:TokenIssueTime": "2026-01-02T00:00:00Z"}}),
    deny(Condition={"DateLessThan": {"aws:TokenIssueTime": "next tuesday"}}),
    deny(NotAction="iam:*"),
])
def test_a_statement_with_rotators_sid_that_does_not_deny_every_older_session_is_no_deny(document: str) -> None:
    assert t0_of_document(document) is None


def test_rotators_own_statement_is_read_back() -> None:
    assert t0_of_document(deny()) == "2026-01-02T00:00:00Z"
    assert t0_of_document(deny(Action=["*"], Resource=["*"])) == "2026-01-02T00:00:00Z"


def test_an_edited_policy_with_a_later_t0_is_not_taken_as_already_denying() -> None:
    world = incident_world()
    world.iam.user_policies[("ci-payments", SESSION_DENY_POLICY)] = deny(
        Effect="Allow", Condition={"DateLessThan": {"aws:TokenIssueTime": "2099-01-01T00:00:00Z"}})
    result = world.contain()
    assert step(result, "deny sessions") is StepStatus.DONE  # written anew and read back, not "already"
    assert "in place already" not in result.cuts[0].line()
    assert json.loads(world.iam.user_policies[("ci-payments", SESSION_DENY_POLICY)])["Statement"][0]["Effect"] == \
        "Deny"


def test_a_deny_read_back_with_an_unreadable_t0_is_not_verified() -> None:
    world = incident_world()

    def garbled(user_name: str, policy_name: str, document: str) -> None:
        world.iam._call("PutUserPolicy")
        world.iam.user_policies[(user_name, policy_name)] = document.replace(
            json.loads(document)["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"], "garbled")

    world.iam.put_user_policy = garbled  # type: ignore[method-assign]
    result = world.contain()
    assert result.cuts[0].status is CutStatus.UNVERIFIED
    assert step(result, "deny sessions") is StepStatus.FAILED and "read back" not in result.cuts[0].line()


# --- a session whose principal nobody can name -------------------------------------------------------------


def test_a_session_of_unknown_principal_is_a_named_gap_not_cut() -> None:
    world = incident_world()
    # An AssumeRole record that names neither the role nor the assumed-role ARN.
    world.trail.add(record("AssumeRole", key_id=world.key_id, minted=S_UNKNOWN, at="2026-01-01T11:05:00Z"))
    outcome = world.revoke()
    assert outcome.exit_code == ExitCode.CONTAINED_FOLLOW_UP_FAILED
    assert outcome.audit is not None and outcome.audit.unattributed == (S_UNKNOWN,)
    gap = next(g for g in outcome.audit.gaps if S_UNKNOWN in g)
    assert f"session {S_UNKNOWN}" in gap and "principal unknown" in gap and "NOT cut" in gap
    assert f"rotator revoke --key {S_UNKNOWN} --role NAME" in gap
    document = incident_json(outcome.view("responder", ""))
    assert document["contained"] is False and gap in document["not_cut"] and gap in document["session_lines"]
    said = headline(outcome.containment, outcome.cuts, outcome.audit.unattributed)
    assert "1 session(s) of unknown principal are NOT cut" in said and "is contained" not in said
    sessions_reply = next(p for p in world.notifier.posted if p.title.startswith("rotator: sessions of"))
    assert gap in sessions_reply.lines and "unknown principal NOT cut" in sessions_reply.title


def test_a_read_only_audit_reports_no_uncut_session() -> None:
    trail = FakeCloudTrail(["us-east-1"])
    trail.add(record("AssumeRole", key_id="AKIAAAAAAAAAAAAAAAAA", minted=S_UNKNOWN, at="2026-01-01T11:05:00Z"))
    now = datetime.fromisoformat("2026-01-02T00:00:00+00:00")
    report = run_audit(trail, "AKIAAAAAAAAAAAAAAAAA", start=now - timedelta(days=2), end=now, regions=["us-east-1"])
    # Nothing is cut by `rotator audit --key`: the session is audited, and no "NOT cut" is claimed about it.
    assert report.unattributed == () and not any("NOT cut" in gap for gap in report.gaps)


# --- the interrupt line, dry runs of temporary keys -----------------------------------------------------------


def test_the_interrupt_line_of_a_temporary_key_says_its_session_is_cut(capsys: pytest.CaptureFixture[str]) -> None:
    from rotator.cli.revoke_cmd import _say_interrupted

    world = incident_world()
    world.iam.add_role("ci-deployer")
    _say_interrupted(world.contain(TEMPORARY, role="ci-deployer"), "SIGTERM", "before the follow-up")
    err = capsys.readouterr().err
    assert f"the session of temporary key {TEMPORARY} is cut" in err and "Inactive" not in err
    _say_interrupted(world.contain(), "SIGTERM", "before the follow-up")
    assert f"{world.key_id} is contained (Inactive, verified)" in capsys.readouterr().err


def test_a_dry_run_of_a_temporary_key_never_reports_contained() -> None:
    world = incident_world()
    world.iam.add_role("ci-deployer")
    outcome = world.revoke(TEMPORARY, role="ci-deployer", dry_run=True)
    assert not outcome.containment.contained
    assert incident_json(outcome.view("responder", ""))["contained"] is False
    assert headline(outcome.containment) == f"dry run for {TEMPORARY}: nothing was changed"
    assert world.iam.role_policies == {}


# --- what the containment message promises ----------------------------------------------------------------------


def test_with_no_audit_the_containment_message_promises_no_audit() -> None:
    world = incident_world()
    world.revoke(audit=False)
    [message] = [p for p in world.notifier.posted if p.channel == SECURITY]
    assert not any("CloudTrail audit" in line and "follow" in line for line in message.lines)
    assert any(line.startswith("nothing follows in this thread from this run (--no-audit)") for line in message.lines)


def test_a_failed_audit_is_posted_in_the_thread_it_was_promised_in() -> None:
    world = incident_world()
    containment = world.contain()

    def audit(*_: object) -> AuditReport:
        raise RotatorError("cloudtrail:LookupEvents is not allowed")

    ports = replace(world.follow_up_ports(), audit=audit)
    outcome = follow_up(containment, ports, FollowUpOptions())
    thread = [p for p in world.notifier.posted if p.channel == SECURITY]
    assert any("the CloudTrail audit" in line for line in thread[0].lines)
    failure = next(p for p in thread if p.title == f"rotator: CloudTrail audit of {world.key_id}: FAILED")
    assert failure.thread == "1.000" and "the audit failed: cloudtrail:LookupEvents is not allowed" in failure.lines
    assert step(outcome, "audit") is StepStatus.FAILED


def test_replies_follow_a_containment_message_kept_for_later() -> None:
    world = incident_world()
    world.notifier.unreachable = True  # Slack does not answer: the outbox keeps the message
    outcome = world.revoke()
    assert step(outcome, "notify") is StepStatus.FAILED
    world.notifier.unreachable = False
    sender = world.root().outbox_sender
    assert sender is not None
    sender.send_queued()
    titles = [p.title for p in world.notifier.posted if p.channel == SECURITY]
    assert titles[0].startswith("rotator: ") and "contained" in titles[0]
    assert any(t.startswith("rotator: sessions of") for t in titles)  # the promised replies came after it
    assert f"rotator: CloudTrail audit of {world.key_id}" in titles


# --- `rotator incidents` --------------------------------------------------------------------------------------


def test_incidents_help_says_what_t0_is() -> None:
    from rotator.cli.incidents_cmd import incidents

    text = " ".join(CliRunner().invoke(incidents, ["--help"]).output.split())
    assert "when the key was verified Inactive" not in text
    assert "the verified deactivation plus [revoke] consistency_margin" in text
