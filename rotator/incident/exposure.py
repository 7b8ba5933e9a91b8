"""AWS says a key is exposed; rotator acts per ``on_exposed`` before a human wakes up.

Two entry points, one rule:

- ``handle_message``: one SQS message as EventBridge delivers an AWS Health ``AWS_RISK_CREDENTIALS_EXPOSED``
  event (the service's event consumer calls it). A message rotator will not act on is a ``Rejection``.
- ``rotator.incident.quarantine.check_quarantines``: on each tick, the tracked users carrying an AWS quarantine
  policy, one exposure per key their targets hold.

Each reported key goes through ``handle_exposure``, under a per-key lease (two replicas never act on one key
at once): a report already handled is a duplicate, a key already contained (an incident, and IAM shows it
Inactive) is only annotated, otherwise ``on_exposed`` applies: ``contain`` or ``contain_and_replace`` run the
same playbook as ``rotator revoke --key`` with the report as actor; ``notify`` changes nothing in AWS or
GitLab and tells the owners what to run. A report counts as handled only once its incident is read back from
the store (or its notification is sent); until then it is tried again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Protocol

import structlog

from rotator.domain import CredentialSpec, Incident, KeyStatus
from rotator.errors import AwsError, RotatorError
from rotator.incident.containment import Containment, KeyIdentity, NotContained, StepStatus, iso_seconds
from rotator.incident.events import (
    HEALTH,
    QUARANTINE,
    QUARANTINE_POLICY_ARNS,
    SETTLED,
    Decision,
    ExposureRecord,
    HealthExposure,
    Outcome,
    QuarantineState,
    Rejection,
    decide,
    health_signal_id,
    parse_health_message,
    quarantine_is_news,
    quarantine_lines,
    quarantine_signal_id,
)
from rotator.incident.followup import IncidentOutcome
from rotator.incident.ports import IncidentIam, IncidentStore
from rotator.leases import Lease, acquire
from rotator.ports import CiVariables, Clock, Notifier

log = structlog.get_logger("rotator.incident.exposure")

CONTAIN, CONTAIN_AND_REPLACE, NOTIFY = "contain", "contain_and_replace", "notify"


class ExposureLedger(Protocol):
    """What rotator remembers of every exposure report (rotator.incident.events.ExposureRecord)."""

    def get(self, signal_id: str) -> ExposureRecord | None: ...

    def for_key(self, key_id: str) -> list[ExposureRecord]: ...

    def quarantines(self) -> list[ExposureRecord]:
        """Every quarantined-user record."""
        ...

    def save(self, record: ExposureRecord) -> None:
        """Insert or replace by signal_id."""
        ...

    def recent(self, limit: int) -> list[ExposureRecord]:
        """Newest first (by last_seen_at)."""
        ...


# key id, actor, reason, replace, before_follow_up → the playbook's outcome; raises NotContained when the key is
# not contained. ``before_follow_up(containment)`` runs once the key is contained; False stops the playbook there.
RunPlaybook = Callable[[str, str, str, bool, Callable[["Containment"], bool]], IncidentOutcome]


@dataclass(frozen=True)
class ExposurePorts:
    clock: Clock
    holder: str
    lease_ttl: timedelta
    store: Callable[[], IncidentStore]
    ledger: Callable[[], ExposureLedger]
    iam_for: Callable[[str], IncidentIam]  # configured account name → IAM of that account
    variables: Callable[[], CiVariables]
    notifier: Callable[[], Notifier | None]
    security_channel: str | None
    specs: Sequence[CredentialSpec]
    on_exposed: Callable[[str | None], str]  # credential name (None: untracked) → contain | … | notify
    overrides: bool  # some credential sets its own on_exposed: a key's credential decides what to do
    run_playbook: RunPlaybook
    identify: Callable[[str], KeyIdentity]  # read-only: who owns a key (raises NotContained when unknown)
    account_ids: Callable[[], Mapping[str, str]]  # AWS account id → configured account name


@dataclass(frozen=True)
class Exposure:
    """One key reported exposed, by an AWS Health event or a quarantine policy."""

    source: str  # HEALTH or QUARANTINE
    signal_id: str
    actor: str
    key_id: str
    reason: str
    account: str | None = None
    user_name: str | None = None
    note: str = ""  # how the key was chosen, when AWS did not name it


@dataclass(frozen=True)
class ExposureResult:
    key_id: str | None
    outcome: Outcome
    action: str
    detail: str
    incident_id: str | None = None
    source: str = HEALTH

    @property
    def settled(self) -> bool:
        return self.outcome in SETTLED


@dataclass(frozen=True)
class MessageVerdict:
    """What became of one queue message: rejected (→ dead-letter queue), or one result per key."""

    rejection: Rejection | None = None
    event: HealthExposure | None = None
    results: tuple[ExposureResult, ...] = ()
    problem: str | None = None  # could not even be judged (e.g. STS down): tried again

    @property
    def settled(self) -> bool:
        """Every key's report is handled for good: the message may be deleted."""
        return self.rejection is None and self.problem is None and all(r.settled for r in self.results)


# --- AWS Health events -------------------------------------------------------------------------------------


def handle_message(body: str, ports: ExposurePorts) -> MessageVerdict:
    try:
        account_ids = ports.account_ids()
    except RotatorError as exc:
        return MessageVerdict(problem=f"cannot tell which accounts rotator reaches: {exc}")
    parsed = parse_health_message(body, account_ids)
    if isinstance(parsed, Rejection):
        return MessageVerdict(rejection=parsed)
    results = tuple(handle_exposure(Exposure(HEALTH, health_signal_id(parsed.event_arn, key_id), parsed.actor,
                                             key_id, parsed.reason, account=parsed.account), ports)
                    for key_id in parsed.key_ids)
    return MessageVerdict(event=parsed, results=results)


# --- one key -----------------------------------------------------------------------------------------------


def exposure_lease_name(key_id: str) -> str:
    return f"exposure:{key_id}"


def handle_exposure(exposure: Exposure, ports: ExposurePorts) -> ExposureResult:
    """Decide and act for one reported key; see the module docstring.

    Containment comes first and takes no lease (deactivating a key twice is harmless, and no replica may make
    a leaked key wait for another); everything after it (the incident, Slack, the replacement, the audit) runs
    under the key's lease, after checking again that no other replica handled the same report meanwhile."""
    try:
        store = ports.store()
    except RotatorError as exc:
        return _result(exposure, Outcome.FAILED, "-", f"the store is unavailable: {exc}")
    handled = _HandledKey(exposure, ports, store)
    try:
        return handled.run()
    except RotatorError as exc:
        return _result(exposure, Outcome.FAILED, "-", str(exc))
    finally:
        handled.release()


def _result(exposure: Exposure, outcome: Outcome, action: str, detail: str,
            incident_id: str | None = None) -> ExposureResult:
    return ExposureResult(exposure.key_id, outcome, action, detail, incident_id, exposure.source)


BUSY_DETAIL = "another rotator process is handling this key"


@dataclass
class _HandledKey:
    exposure: Exposure
    ports: ExposurePorts
    store: IncidentStore
    incidents: list[Incident] = field(default_factory=list)
    identity: KeyIdentity | None = None
    identified: str = ""  # why the owner is unknown, when it is
    lease: Lease | None = None
    skipped: Outcome | None = None  # why the playbook stopped after containment (BUSY or DUPLICATE)

    def run(self) -> ExposureResult:
        decision, action, credential, earlier = self._decide()
        if decision is Decision.ACT and action != NOTIFY:
            return self._finish(self._contain(action, credential))
        if not self._claim():
            return _result(self.exposure, Outcome.BUSY, action, BUSY_DETAIL)
        decision, action, credential, earlier = self._decide()  # again: another replica may have just finished
        if decision is Decision.DUPLICATE:
            result = _result(self.exposure, Outcome.DUPLICATE, action, "this report was handled before: nothing to do",
                             self.incidents[-1].incident_id if self.incidents else None)
            known = next((r for r in earlier if r.signal_id == self.exposure.signal_id), None)
            if known is not None:  # keep what was done the first time; only say it was seen again
                self.ports.ledger().save(replace(known, last_seen_at=self.ports.clock.now()))
                self._log(result)
                return result
        elif decision is Decision.ANNOTATE:
            result = self._annotate(self.incidents[-1], action)
        elif action == NOTIFY:
            result = self._notify(credential)
        else:
            result = self._contain(action, credential)
        return self._finish(result)

    def _decide(self) -> tuple[Decision, str, str | None, list[ExposureRecord]]:
        """Reads only: what was done before for this key, and what this report therefore does."""
        earlier = self.ports.ledger().for_key(self.exposure.key_id)
        self.incidents = self.store.incidents_for_key(self.exposure.key_id)
        credential = self._credential()
        action = self.ports.on_exposed(credential)
        inactive = self._key_inactive(self.incidents[-1]) if self.incidents else None
        decision = decide(self.exposure.signal_id, earlier, has_incident=bool(self.incidents), key_inactive=inactive,
                          notify_only=action == NOTIFY)
        return decision, action, credential, earlier

    def _finish(self, result: ExposureResult) -> ExposureResult:
        ledger = self.ports.ledger()
        # FAILED and BUSY are tried again; a report another run already handled keeps that run's record.
        if result.outcome not in (Outcome.FAILED, Outcome.BUSY) and not (
                result.outcome is Outcome.DUPLICATE and ledger.get(self.exposure.signal_id) is not None):
            ledger.save(self._record(result))
        self._log(result)
        return result

    def _claim(self) -> bool:
        """The key's lease, for everything after containment (held until ``release``)."""
        if self.lease is None:
            self.lease = acquire(self.store, exposure_lease_name(self.exposure.key_id), self.ports.holder,
                                 self.ports.lease_ttl)
        return self.lease is not None

    def release(self) -> None:
        if self.lease is None:
            return
        try:
            self.lease.release()
        except RotatorError as exc:  # an unreleased lease expires by itself after lease_ttl
            log.warning("exposure lease not released", key_id=self.exposure.key_id, error=str(exc))

    def _before_follow_up(self, containment: Containment) -> bool:
        """Called by the playbook once the key is contained: go on only under the key's lease, and only if no
        other replica handled this very report while we were containing."""
        if not self._claim():
            self.skipped = Outcome.BUSY
            return False
        if any(r.signal_id == self.exposure.signal_id and r.outcome in SETTLED
               for r in self.ports.ledger().for_key(self.exposure.key_id)):
            self.skipped = Outcome.DUPLICATE
            return False
        return True

    def _credential(self) -> str | None:
        """The credential the key belongs to: the store's word, else the configured user it was reported for,
        else (only when it matters: a per-credential on_exposed, or "notify", which names the owner) AWS's,
        asked read-only."""
        owner = self.store.key_owner(self.exposure.key_id)
        if owner is not None:
            return owner.credential
        account, user = self.exposure.account, self.exposure.user_name
        if user is None and (self.ports.overrides or self.ports.on_exposed(None) == NOTIFY):
            if self.identity is None and not self.identified:
                try:
                    self.identity = self.ports.identify(self.exposure.key_id)
                except NotContained as exc:
                    self.identified = str(exc)
            if self.identity is not None:
                account, user = self.identity.account, self.identity.user_name
        return next((s.name for s in self.ports.specs if (s.account, s.iam_user) == (account, user)), None)

    def _key_inactive(self, incident: Incident) -> bool | None:
        """IAM's word on whether the incident's key is still Inactive (ListAccessKeys; None: cannot tell)."""
        if incident.user_name is None or incident.account is None:
            return None
        try:
            keys = self.ports.iam_for(incident.account).list_access_keys(incident.user_name)
        except AwsError as exc:
            log.warning("cannot read the key's status; running the playbook again", key_id=self.exposure.key_id,
                        error=str(exc))
            return None
        key = next((k for k in keys if k.key_id == self.exposure.key_id), None)
        return key is not None and key.status is KeyStatus.INACTIVE

    def _record(self, result: ExposureResult) -> ExposureRecord:
        now = self.ports.clock.now()
        known = self.ports.ledger().get(self.exposure.signal_id)
        incident = self.incidents[-1] if self.incidents else None
        return ExposureRecord(
            signal_id=self.exposure.signal_id, source=self.exposure.source, actor=self.exposure.actor,
            account=self.exposure.account or (incident.account if incident else None),
            user_name=self.exposure.user_name or (incident.user_name if incident else None),
            key_id=self.exposure.key_id, action=result.action, outcome=result.outcome, detail=result.detail,
            first_seen_at=known.first_seen_at if known else now, last_seen_at=now, incident_id=result.incident_id)

    def _log(self, result: ExposureResult) -> None:
        level = log.error if result.outcome is Outcome.FAILED else log.warning
        level("exposure report handled", source=self.exposure.source, actor=self.exposure.actor,
              key_id=self.exposure.key_id, action=result.action, outcome=result.outcome.value,
              incident_id=result.incident_id, detail=result.detail)

    # --- the three answers ------------------------------------------------------------------------------
    def _contain(self, action: str, credential: str | None) -> ExposureResult:
        key_id = self.exposure.key_id
        try:
            outcome = self.ports.run_playbook(key_id, self.exposure.actor, self._reason(),
                                              action == CONTAIN_AND_REPLACE, self._before_follow_up)
        except NotContained as exc:
            tried = "; ".join(exc.tried)
            return _result(self.exposure, Outcome.FAILED, action, f"NOT contained: {exc}"
                           + (f" (tried: {tried})" if tried else ""))
        if self.skipped is not None:
            detail = (f"{key_id} contained (Inactive, verified); its incident is left to " + (
                "the process holding the key" if self.skipped is Outcome.BUSY else "the run that handled this report"))
            return _result(self.exposure, self.skipped, action, detail)
        # Handled only once the incident is in the store: read it back, never trust the step list alone.
        self.incidents = self.store.incidents_for_key(key_id)
        recorded = next((i for i in self.incidents if i.incident_id == outcome.incident_id), None)
        if recorded is None:
            return _result(self.exposure, Outcome.FAILED, action, f"{key_id} is contained, but its incident "
                           "could not be recorded: the report is kept and handled again")
        failed = [f"{s.name}: {s.detail}" for s in outcome.steps if s.failed]
        replaced = next((s for s in outcome.steps if s.name == "replace"), None)
        detail = f"{key_id} contained (Inactive, verified); incident {recorded.incident_id}"
        if replaced is not None:
            detail += f"; replace: {replaced.status.value}"
        if failed:
            detail += f"; follow-ups failed: {'; '.join(failed)}"
        if replaced is not None and replaced.status is StepStatus.DONE:
            self._say_quarantine_remains(recorded, credential)
        if self.exposure.source == HEALTH and recorded.user_name and recorded.account:
            self._expect_quarantine(recorded)
        return _result(self.exposure, Outcome.ACTED, action, detail, recorded.incident_id)

    def _annotate(self, incident: Incident, action: str) -> ExposureResult:
        now = self.ports.clock.now()
        runs = [*(incident.steps.get("runs") or []),
                {"actor": self.exposure.actor, "at": iso_seconds(now),
                 "status": f"reported exposed again ({self._reason()}); already contained: nothing changed"}]
        # follow_up keeps "runs" across re-runs of the playbook: the annotation survives them.
        self.store.save_incident(replace(incident, steps={**incident.steps, "runs": runs}))
        contained = (f"already contained: {self.exposure.key_id} is Inactive (verified with ListAccessKeys); "
                     f"incident {incident.incident_id} opened by {incident.actor}, T0 {iso_seconds(incident.t0)}")
        self._post_in_thread(incident, f"rotator: {self.exposure.key_id} reported exposed again",
                             [self._reason(), contained,
                              "nothing was changed"], "info")
        return _result(self.exposure, Outcome.ANNOTATED, action, contained, incident.incident_id)

    def _notify(self, credential: str | None) -> ExposureResult:
        key_id = self.exposure.key_id
        if self.identity is None and not self.identified:
            try:
                self.identity = self.ports.identify(key_id)
            except NotContained as exc:
                self.identified = str(exc)
        if self.identity is not None:
            whose = f"{key_id} is the key of {self.identity.principal} in account {self.identity.account}" + (
                f" (credential {credential})" if credential else "")
        else:
            whose = f"the owner of {key_id} is unknown: {self.identified}"
        lines = [self._reason(), whose,
                 "on_exposed = \"notify\": rotator changed nothing in AWS or GitLab (it did not deactivate the "
                 "key)",
                 f"contain it and repair the pipelines: rotator revoke --key {key_id} --replace "
                 f"--reason \"{self.exposure.actor}\"",
                 f"or contain it only: rotator revoke --key {key_id}"]
        posted, failed = self._post_new(f"rotator: AWS reports {key_id} exposed: action needed", lines, credential)
        if failed and not posted:
            return _result(self.exposure, Outcome.FAILED, NOTIFY, f"could not tell anyone: {'; '.join(failed)}")
        command = f"`rotator revoke --key {key_id} --replace`"
        told = (f"told {', '.join(posted)} to run {command}" if posted else
                f"{self._nobody_to_tell(credential)}: this log line is the only notice (run {command})")
        return _result(self.exposure, Outcome.NOTIFIED, NOTIFY,
                       f"nothing changed; {told}" + (f"; not told: {'; '.join(failed)}" if failed else ""))

    # --- messages ---------------------------------------------------------------------------------------
    def _reason(self) -> str:
        """Recorded in the incident and said in every message: what AWS reported, and how the key was chosen."""
        return f"{self.exposure.reason}. {self.exposure.note}" if self.exposure.note else self.exposure.reason

    def _owners(self, credential: str | None) -> tuple[str, ...]:
        spec = next((s for s in self.ports.specs if s.name == credential), None)
        return spec.owners if spec else ()

    def _post_new(self, title: str, lines: list[str], credential: str | None) -> tuple[list[str], list[str]]:
        owners = self._owners(credential)
        destinations = list(dict.fromkeys([*([self.ports.security_channel] if self.ports.security_channel else []),
                                           *owners]))
        try:
            notifier = self.ports.notifier()
        except RotatorError as exc:
            return [], [str(exc)]
        if notifier is None or not destinations:
            return [], []
        posted, failed = [], []
        for destination in destinations:
            try:
                notifier.post(destination, title, lines, severity="critical")
                posted.append(destination)
            except RotatorError as exc:
                failed.append(f"{destination}: {exc}")
        return posted, failed

    def _nobody_to_tell(self, credential: str | None) -> str:
        """Why no Slack message went out although nothing failed."""
        if self.ports.notifier() is None:
            return "no [slack] section"
        return (f"no Slack destination ([slack] security_channel unset, and credential {credential} names no "
                "owners)" if credential else "no Slack destination ([slack] security_channel unset, and the key "
                "belongs to no tracked credential)")

    def _post_in_thread(self, incident: Incident, title: str, lines: list[str], severity: str) -> None:
        """A reply in the incident's Slack thread (where the playbook posted it); a failure is logged only."""
        owners = self._owners(incident.credential)
        channel = self.ports.security_channel or (owners[0] if owners else None)
        if channel is None or incident.slack_thread is None:
            return
        try:
            notifier = self.ports.notifier()
            if notifier is not None:
                notifier.post(channel, title, lines, severity=severity, thread=incident.slack_thread)
        except RotatorError as exc:
            log.warning("could not post in the incident's thread", incident_id=incident.incident_id, error=str(exc))

    def _say_quarantine_remains(self, incident: Incident, credential: str | None) -> None:
        """After a replacement: the new key belongs to the same user, whom AWS's quarantine policy still limits."""
        assert incident.account is not None and incident.user_name is not None
        iam = self.ports.iam_for(incident.account)
        try:
            attached = [arn for arn in QUARANTINE_POLICY_ARNS if incident.user_name in iam.users_with_policy(arn)]
        except AwsError as exc:
            self._post_in_thread(incident, "rotator: AWS quarantine policy: unknown", [
                f"could not check whether an AWS quarantine policy is attached to user {incident.user_name}: {exc}"],
                "warning")
            return
        for arn in attached:
            self._post_in_thread(incident, f"rotator: AWS quarantine policy still attached to {incident.user_name}",
                                 quarantine_lines(incident.user_name, arn, self.exposure.key_id), "warning")

    def _expect_quarantine(self, incident: Incident) -> None:
        """AWS usually quarantines the user along with the event: that policy is explained by this incident."""
        assert incident.account is not None and incident.user_name is not None
        ledger = self.ports.ledger()
        signal_id = quarantine_signal_id(incident.account, incident.user_name)
        known = ledger.get(signal_id)
        if known is not None and not quarantine_is_news(known, self.ports.clock.now()):
            return
        now = self.ports.clock.now()
        ledger.save(ExposureRecord(
            signal_id, QUARANTINE, self.exposure.actor, incident.account, incident.user_name, self.exposure.key_id,
            action="-", outcome=Outcome.ACTED, detail=f"expected with incident {incident.incident_id}",
            first_seen_at=now, last_seen_at=now, incident_id=incident.incident_id,
            quarantine=QuarantineState.EXPECTED))
