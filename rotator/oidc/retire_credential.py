"""`rotator retire-credential`: after a pipeline succeeded with the OIDC role, remove the static key for good.

Order, and why:

1. refuse while a rotation of the credential is unfinished (its journal would point at keys and targets
   this command is about to remove), and take the credential's lease, so that neither the service nor
   another `rotate` starts one meanwhile;
2. check the OIDC role exists and has been assumed at least once (the proof that a pipeline works
   without the key), unless the operator says they checked by other means;
3. delete the GitLab variables, key id and secret, of every target: no target is then left holding a
   key that is about to stop working (every target holds a working pair, vacuously: none is left);
4. deactivate every Active key of the IAM user. Deactivated, not deleted: if a forgotten job still needs
   the key, a human can turn it back on while fixing that job.

Written against ports only. A dry run reads and reports, and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rotator.domain import CredentialSpec, Event, KeyStatus
from rotator.errors import AwsNotFound, LeaseBusy, RotatorError
from rotator.leases import holding, lease_name
from rotator.oidc.ports import OidcIam
from rotator.ports import CiVariables, Clock, Iam, Store
from rotator.rotation.deactivation import READ_BACK_ATTEMPTS, read_back_inactive


class NotProven(RotatorError):
    """The OIDC role is missing or was never used: retiring the key now could break pipelines."""


@dataclass(frozen=True)
class RetirePorts:
    variables: CiVariables
    iam: Iam
    oidc: OidcIam
    store: Store
    clock: Clock
    actor: str = "rotator"


@dataclass
class RetireResult:
    credential: str
    dry_run: bool
    role_last_used: datetime | None = None
    deleted: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)  # read back Inactive
    still_active: list[str] = field(default_factory=list)  # UpdateAccessKey answered, IAM still lists them Active
    steps: list[str] = field(default_factory=list)


def retire_credential(spec: CredentialSpec, ports: RetirePorts, *, role_name: str, holder: str,
                      lease_ttl: timedelta, dry_run: bool = False, skip_role_check: bool = False,
                      on_step: Callable[[str], None] | None = None) -> RetireResult:
    result = RetireResult(spec.name, dry_run)

    def step(line: str) -> None:
        result.steps.append(line)
        if on_step is not None:
            on_step(line)

    journal = ports.store.open_journal(spec.name)
    if journal is not None:
        raise RotatorError(f"credential {spec.name} has an unfinished rotation ({journal.phase.value})",
                           hint=f"finish it first with `rotator rotate {spec.name}`, then retire the credential")
    _check_role(spec, ports, role_name, skip_role_check, result, step)
    if dry_run:
        _delete_variables(spec, ports, dry_run, result, step)
        _deactivate_keys(spec, ports, dry_run, result, step)
        return result
    with holding(ports.store, lease_name(spec.name), holder, lease_ttl) as lease:
        if lease is None:
            raise LeaseBusy(f"another rotator process is working on {spec.name}",
                            hint="wait for it to finish (see `rotator status`), then run this again")
        _delete_variables(spec, ports, dry_run, result, step)
        _deactivate_keys(spec, ports, dry_run, result, step)
        ports.store.append_event(Event(
            at=ports.clock.now(), actor=ports.actor, action="retire_credential", outcome="ok",
            credential=spec.name, key_ids=tuple(result.deactivated),
            detail={"variables_deleted": result.deleted, "role": role_name}))
    return result


def _check_role(spec: CredentialSpec, ports: RetirePorts, role_name: str, skip: bool, result: RetireResult,
                step: Callable[[str], None]) -> None:
    if skip:
        step(f"not checking role {role_name} (--skip-role-check)")
        return
    try:
        result.role_last_used = ports.oidc.role_last_used(role_name)
    except AwsNotFound:
        raise NotProven(f"there is no role {role_name} in account {spec.account!r}",
                        hint=f"run `rotator plan-oidc {spec.name} --apply` and a pipeline with its snippet first "
                             "(or pass --skip-role-check if the role has another name)") from None
    if result.role_last_used is None:
        raise NotProven(f"role {role_name} has never been assumed: no pipeline has proven it works yet",
                        hint="run the pipeline with the generated gitlab-ci.yml snippet on a protected branch, then "
                             "retire the credential (or pass --skip-role-check if you verified it otherwise)")
    step(f"role {role_name} was last assumed at {result.role_last_used.isoformat()}")


def _delete_variables(spec: CredentialSpec, ports: RetirePorts, dry_run: bool, result: RetireResult,
                      step: Callable[[str], None]) -> None:
    for target in spec.targets:
        for key in (target.secret_access_key_var, target.access_key_id_var):
            ref = target.var(key)
            if dry_run:
                exists = ports.variables.get(ref) is not None
                step(f"would delete {ref.label}" if exists else f"{ref.label} does not exist")
                continue
            if ports.variables.delete(ref):
                result.deleted.append(ref.label)
                step(f"deleted {ref.label}")
            else:
                step(f"{ref.label} was already gone")


def _deactivate_keys(spec: CredentialSpec, ports: RetirePorts, dry_run: bool, result: RetireResult,
                     step: Callable[[str], None]) -> None:
    for key in ports.iam.list_access_keys(spec.iam_user):
        if key.status is not KeyStatus.ACTIVE:
            step(f"{key.key_id} of {spec.iam_user} is already Inactive")
            continue
        if dry_run:
            step(f"would deactivate {key.key_id} of {spec.iam_user}")
            continue
        ports.iam.set_access_key_status(spec.iam_user, key.key_id, active=False)
        after = read_back_inactive(ports.iam, spec.iam_user, key.key_id, ports.clock)
        if after is not None and after.status is KeyStatus.ACTIVE:
            result.still_active.append(key.key_id)
            step(f"{key.key_id} of {spec.iam_user} still shows Active after UpdateAccessKey ({READ_BACK_ATTEMPTS} "
                 f"reads of ListAccessKeys): deactivate it by hand")
            continue
        result.deactivated.append(key.key_id)
        step(f"deactivated {key.key_id} of {spec.iam_user}: Inactive (verified with ListAccessKeys), kept until "
             "you delete it")
