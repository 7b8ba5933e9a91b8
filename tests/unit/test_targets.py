"""Reading and writing one target's key pair: missing variables, drift, the write order and the read-back checks.

The fake below follows GitLab's CI/CD variables API as rotator.ports.CiVariables describes it: a hidden
variable's value is never returned (null), a PUT answers with the variable as written and keeps its flags.
It is local to this file: these tests need nothing of the shared fake world.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from rotator.domain import (
    CiVariable,
    GitLabCapabilities,
    NewAccessKey,
    ScopeKind,
    Secret,
    TargetSpec,
    VariableWrite,
    VarRef,
)
from rotator.errors import GitLabPermanentError
from rotator.rotation.targets import (
    DriftError,
    ReadBackMismatch,
    check_drift,
    missing_variable_error,
    read_target,
    write_pair,
)
from tests.unit.fakes import MODERN_GITLAB

OLD = "AKIAOLDOLDOLDOLDOLD1"
NEW = "AKIANEWNEWNEWNEWNEW2"
FOREIGN = "AKIAFOREIGNFOREIGN93"
NEW_SECRET = "new/secret+value0123456789ABCDEFGHIJKLMN"
TARGET = TargetSpec(ScopeKind.PROJECT, "payments/api", environment_scope="production")
LABEL = "project payments/api [environment_scope=production]"
KEY_VAR = "project payments/api variable AWS_ACCESS_KEY_ID [environment_scope=production]"
SECRET_VAR = "project payments/api variable AWS_SECRET_ACCESS_KEY [environment_scope=production]"
CONCURRENT_WRITER = "check for a concurrent writer to this variable"


class TinyCiVariables:
    """CI/CD variables in memory, with a log of every call and two ways to imitate another writer."""

    def __init__(self) -> None:
        self.stored: dict[VarRef, CiVariable] = {}
        self.calls: list[str] = []
        self.overwritten_after_write: dict[str, str | None] = {}  # key → what another writer leaves (None: deleted)
        self.put_answers: dict[str, str] = {}  # key → the value GitLab's PUT response carries instead

    def seed(self, key: str, value: str, *, hidden: bool = False, masked: bool = True) -> CiVariable:
        ref = TARGET.var(key)
        self.stored[ref] = CiVariable(key, value, ref.environment_scope, masked=masked, hidden=hidden,
                                      protected=True)
        return self.stored[ref]

    def capabilities(self) -> GitLabCapabilities:
        return MODERN_GITLAB  # a GitLab with every feature these checks rely on

    def get(self, ref: VarRef) -> CiVariable | None:
        self.calls.append(f"get {ref.key}@{ref.environment_scope}")
        found = self.stored.get(ref)
        return None if found is None else self._as_answered(found)

    def list(self, kind: ScopeKind, path: str | None) -> list[CiVariable]:
        return [self._as_answered(v) for r, v in self.stored.items() if (r.kind, r.path) == (kind, path)]

    def update_value(self, ref: VarRef, value: str | Secret) -> CiVariable:
        self.calls.append(f"update {ref.key}@{ref.environment_scope}")
        written = replace(self.stored[ref], value=_plain(value))
        return self._write(ref, written)

    def create(self, ref: VarRef, value: str | Secret, *, masked: bool, hidden: bool,
               protected: bool) -> CiVariable:
        self.calls.append(f"create {ref.key}@{ref.environment_scope} masked={masked} hidden={hidden} "
                          f"protected={protected}")
        variable = CiVariable(ref.key, _plain(value), ref.environment_scope, masked=masked, hidden=hidden,
                              protected=protected)
        return self._write(ref, variable)

    def write_pair(self, first: VariableWrite, second: VariableWrite, *,
                   accept_first: Callable[[CiVariable], None] | None = None) -> tuple[CiVariable, CiVariable]:
        written = self._one(first)
        self.calls.append("secret written")
        if accept_first is not None:
            accept_first(written)
        return written, self._one(second)

    def _one(self, write: VariableWrite) -> CiVariable:
        if write.create:
            return self.create(write.ref, write.value, masked=write.masked, hidden=write.hidden,
                               protected=write.protected)
        return self.update_value(write.ref, write.value)

    def _write(self, ref: VarRef, variable: CiVariable) -> CiVariable:
        self.stored[ref] = variable
        answer = self._as_answered(variable)
        if ref.key in self.put_answers:
            answer = replace(answer, value=self.put_answers[ref.key])
        if ref.key in self.overwritten_after_write:
            other = self.overwritten_after_write[ref.key]
            if other is None:
                del self.stored[ref]
            else:
                self.stored[ref] = replace(variable, value=other)
        return answer

    @staticmethod
    def _as_answered(variable: CiVariable) -> CiVariable:
        return replace(variable, value=None) if variable.hidden else variable

    def value_of(self, key: str) -> str | None:
        return self.stored[TARGET.var(key)].value


def _plain(value: str | Secret) -> str:
    return value.reveal() if isinstance(value, Secret) else value


def new_key() -> NewAccessKey:
    return NewAccessKey(NEW, Secret(NEW_SECRET), datetime(2026, 1, 1, tzinfo=UTC))


def holding_old_pair(*, secret_hidden: bool = True, key_hidden: bool = False) -> TinyCiVariables:
    variables = TinyCiVariables()
    variables.seed("AWS_ACCESS_KEY_ID", OLD, hidden=key_hidden)
    variables.seed("AWS_SECRET_ACCESS_KEY", "old-secret", hidden=secret_hidden)
    return variables


def publish(variables: TinyCiVariables, target: TargetSpec = TARGET) -> list[str]:
    """Write the new pair; returns the calls, with the moment the secret was reported written."""
    reading = read_target(variables, target)
    variables.calls.clear()
    write_pair(variables, reading, new_key())
    return variables.calls


# --- reading ----------------------------------------------------------------------------------------------------


def test_reading_a_target_reads_both_variables_at_its_environment_scope() -> None:
    variables = holding_old_pair()
    reading = read_target(variables, TARGET)
    assert variables.calls == ["get AWS_ACCESS_KEY_ID@production", "get AWS_SECRET_ACCESS_KEY@production"]
    assert (reading.held_key_id, reading.key_id_unreadable, reading.missing_variables()) == (OLD, False, [])


def test_a_hidden_key_id_variable_is_unreadable_not_missing() -> None:
    reading = read_target(holding_old_pair(key_hidden=True), TARGET)
    assert (reading.held_key_id, reading.key_id_unreadable, reading.missing_variables()) == (None, True, [])


def test_missing_variables_are_named_secret_first() -> None:
    reading = read_target(TinyCiVariables(), TARGET)
    assert (reading.held_key_id, reading.key_id_unreadable) == (None, False)
    assert reading.missing_variables() == ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"]


# --- missing variables ------------------------------------------------------------------------------------------


def test_a_missing_variable_is_a_permanent_error_naming_it_and_the_way_out() -> None:
    variables = TinyCiVariables()
    variables.seed("AWS_ACCESS_KEY_ID", OLD)
    error = missing_variable_error(read_target(variables, TARGET))
    assert isinstance(error, GitLabPermanentError)
    assert (error.message, error.target, error.status) == (
        f"{LABEL}: variable AWS_SECRET_ACCESS_KEY does not exist", LABEL, 404)
    assert error.hint == ("create it in GitLab (masked, protected, hidden for the secret) or set create_missing = "
                          "true on the target")


def test_both_missing_variables_are_named_in_one_error() -> None:
    error = missing_variable_error(read_target(TinyCiVariables(), TARGET))
    assert error is not None
    assert error.message == f"{LABEL}: variable AWS_SECRET_ACCESS_KEY and AWS_ACCESS_KEY_ID does not exist"


def test_nothing_is_missing_when_both_exist_or_the_target_may_create_them() -> None:
    assert missing_variable_error(read_target(holding_old_pair(), TARGET)) is None
    creating = replace(TARGET, create_missing=True)
    assert missing_variable_error(read_target(TinyCiVariables(), creating)) is None


# --- drift ------------------------------------------------------------------------------------------------------


def test_a_single_target_holding_a_key_rotator_did_not_put_there_is_drift() -> None:
    variables = holding_old_pair()
    variables.seed("AWS_ACCESS_KEY_ID", FOREIGN)
    error = check_drift(read_target(variables, TARGET), {OLD, NEW})
    assert isinstance(error, DriftError)
    assert error.message == (f"{LABEL}: AWS_ACCESS_KEY_ID holds {FOREIGN}, which is neither the current key nor "
                             f"the new one ({NEW}, {OLD})")
    assert error.target == LABEL
    assert error.hint == ("find out who changed the variable; put the right key back or remove the target from the "
                          "config, then run `rotator rotate` again")


def test_drift_against_a_user_without_keys_says_none() -> None:
    error = check_drift(read_target(holding_old_pair(), TARGET), set())
    assert error is not None and error.message.endswith("nor the new one (none)")


def test_a_target_holding_an_expected_key_or_an_unreadable_one_is_not_drift() -> None:
    assert check_drift(read_target(holding_old_pair(), TARGET), {OLD}) is None
    assert check_drift(read_target(holding_old_pair(key_hidden=True), TARGET), {NEW}) is None
    assert check_drift(read_target(TinyCiVariables(), TARGET), {NEW}) is None


# --- writing the pair -------------------------------------------------------------------------------------------


def test_the_secret_is_written_first_then_the_key_id_then_both_are_read_back() -> None:
    variables = holding_old_pair(secret_hidden=False)
    calls = publish(variables)
    assert calls == ["update AWS_SECRET_ACCESS_KEY@production", "secret written",
                     "update AWS_ACCESS_KEY_ID@production", "get AWS_ACCESS_KEY_ID@production",
                     "get AWS_SECRET_ACCESS_KEY@production"]
    assert (variables.value_of("AWS_ACCESS_KEY_ID"), variables.value_of("AWS_SECRET_ACCESS_KEY")) == (NEW,
                                                                                                      NEW_SECRET)


def test_a_hidden_secret_is_not_read_back_because_gitlab_never_returns_it() -> None:
    calls = publish(holding_old_pair(secret_hidden=True))
    assert "get AWS_SECRET_ACCESS_KEY@production" not in calls


def test_missing_variables_are_created_secret_hidden_and_key_id_visible_both_masked_and_protected() -> None:
    variables = TinyCiVariables()
    calls = publish(variables, replace(TARGET, create_missing=True))
    assert calls[:3] == [
        "create AWS_SECRET_ACCESS_KEY@production masked=True hidden=True protected=True", "secret written",
        "create AWS_ACCESS_KEY_ID@production masked=True hidden=False protected=True"]
    assert (variables.value_of("AWS_ACCESS_KEY_ID"), variables.value_of("AWS_SECRET_ACCESS_KEY")) == (NEW,
                                                                                                      NEW_SECRET)


def test_an_existing_key_id_variable_is_updated_not_created_when_only_the_secret_is_missing() -> None:
    variables = TinyCiVariables()
    variables.seed("AWS_ACCESS_KEY_ID", OLD)
    calls = publish(variables, replace(TARGET, create_missing=True))
    assert calls[2] == "update AWS_ACCESS_KEY_ID@production"


def test_a_key_id_that_reads_back_another_value_is_a_mismatch() -> None:
    variables = holding_old_pair()
    variables.overwritten_after_write["AWS_ACCESS_KEY_ID"] = FOREIGN
    with pytest.raises(ReadBackMismatch) as caught:
        publish(variables)
    assert (caught.value.message, caught.value.target, caught.value.hint) == (
        f"{KEY_VAR}: reads back {FOREIGN} instead of {NEW}", LABEL, CONCURRENT_WRITER)


def test_a_key_id_variable_gone_after_the_write_is_a_mismatch() -> None:
    variables = holding_old_pair()
    variables.overwritten_after_write["AWS_ACCESS_KEY_ID"] = None
    with pytest.raises(ReadBackMismatch) as caught:
        publish(variables)
    assert caught.value.message == f"{KEY_VAR}: reads back nothing instead of {NEW}"


def test_a_hidden_key_id_cannot_be_read_back_and_is_not_a_mismatch() -> None:
    variables = holding_old_pair(key_hidden=True)
    publish(variables)
    assert variables.value_of("AWS_ACCESS_KEY_ID") == NEW


def test_a_visible_secret_that_reads_back_another_value_is_a_mismatch_that_never_shows_either_value() -> None:
    variables = holding_old_pair(secret_hidden=False)
    variables.overwritten_after_write["AWS_SECRET_ACCESS_KEY"] = "someone-elses-secret"
    with pytest.raises(ReadBackMismatch) as caught:
        publish(variables)
    assert (caught.value.message, caught.value.target, caught.value.hint) == (
        f"{SECRET_VAR}: does not read back the new secret", LABEL, CONCURRENT_WRITER)
    assert NEW_SECRET not in str(caught.value) and "someone-elses-secret" not in str(caught.value)


def test_a_visible_secret_gone_after_the_write_is_a_mismatch() -> None:
    variables = holding_old_pair(secret_hidden=False)
    variables.overwritten_after_write["AWS_SECRET_ACCESS_KEY"] = None
    with pytest.raises(ReadBackMismatch, match="does not read back the new secret"):
        publish(variables)


def test_a_put_answered_with_another_secret_stops_before_the_key_id_but_after_reporting_the_write() -> None:
    variables = holding_old_pair()
    variables.put_answers["AWS_SECRET_ACCESS_KEY"] = "not-what-was-sent"
    with pytest.raises(ReadBackMismatch) as caught:
        publish(variables)
    assert (caught.value.message, caught.value.target, caught.value.hint) == (
        f"{SECRET_VAR}: GitLab returned a different value after the update", LABEL, CONCURRENT_WRITER)
    assert variables.calls == ["update AWS_SECRET_ACCESS_KEY@production", "secret written"]
    assert variables.value_of("AWS_ACCESS_KEY_ID") == OLD

