"""Which secret variable goes with a key-id variable: the one rule `revoke --replace` and `discover` share."""

from __future__ import annotations

import pytest

from rotator.domain import ScopeKind, TargetSpec
from rotator.incident.replace import scan_for_key
from rotator.inventory.rules import partner_name
from tests.unit.fakes import FakeCiVariables

KEY = "AKIAIOSFODNN7EXAMPLE"


@pytest.mark.parametrize("key_var, secret_var", [
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ("DEPLOY_ACCESS_KEY_ID", "DEPLOY_SECRET_ACCESS_KEY"),
    ("AWS_ACCESS_KEY_ID_PROD", "AWS_SECRET_ACCESS_KEY_PROD"),  # a suffix after the marker is kept
])
def test_replace_finds_the_partner_that_sits_next_to_the_key_id(key_var: str, secret_var: str) -> None:
    """`revoke --replace` rotates a found target only when its secret variable exists beside the key id."""
    variables = FakeCiVariables()
    variables.seed(ScopeKind.PROJECT, "a/b", key_var, KEY)
    variables.seed(ScopeKind.PROJECT, "a/b", secret_var, "x" * 40)
    scan = scan_for_key(variables, [(ScopeKind.PROJECT, "a/b")], KEY, [])
    assert [(t.access_key_id_var, t.secret_access_key_var) for t in scan.found] == [(key_var, secret_var)]
    assert scan.problems == ()


def test_replace_refuses_a_key_id_whose_partner_is_missing() -> None:
    variables = FakeCiVariables()
    variables.seed(ScopeKind.PROJECT, "a/b", "AWS_ACCESS_KEY_ID", KEY)
    scan = scan_for_key(variables, [(ScopeKind.PROJECT, "a/b")], KEY, [])
    assert scan.found == ()
    assert scan.problems == ("project a/b variable AWS_ACCESS_KEY_ID [environment_scope=*] holds the key, but no "
                             "matching secret variable was found: replace it by hand",)


def test_replace_prefers_the_configured_partner_over_the_convention() -> None:
    variables = FakeCiVariables()
    variables.seed(ScopeKind.PROJECT, "a/b", "KEY_ONE", KEY)
    target = TargetSpec(ScopeKind.PROJECT, "a/b", access_key_id_var="KEY_ONE", secret_access_key_var="SECRET_ONE")
    scan = scan_for_key(variables, [(ScopeKind.PROJECT, "a/b")], KEY, [target])
    assert [(t.access_key_id_var, t.secret_access_key_var) for t in scan.found] == [("KEY_ONE", "SECRET_ONE")]


@pytest.mark.parametrize("key_var, secret_var", [
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ("AWS_ACCESS_KEY_ID_PROD", "AWS_SECRET_ACCESS_KEY_PROD"),
    ("LEGACY_ACCESS_KEY", "LEGACY_SECRET_KEY"),
    ("AWS_REGION", None),
])
def test_discover_and_replace_name_the_same_partner(key_var: str, secret_var: str | None) -> None:
    assert partner_name(key_var) == secret_var
