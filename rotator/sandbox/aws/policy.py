"""The part of IAM policy evaluation the sandbox enforces: explicit Deny statements of identity policies.

AWS evaluates every request against all the policies that apply to its principal, and an explicit Deny in
any of them wins over every Allow (IAM user guide, "Policy evaluation logic": "an explicit deny in any of
these policies overrides the allow"). This module decides, for one request context, whether a Deny statement
of the given identity-based policies applies. What it evaluates faithfully:

- ``Effect: Deny`` statements only;
- ``Action`` / ``NotAction`` with IAM's wildcards ``*`` and ``?``, case-insensitively ("IAM JSON policy
  elements: Action": action names are not case sensitive);
- ``Resource: "*"`` (a string or a list holding ``"*"``);
- ``Condition`` blocks: several operators AND, several keys under one operator AND, several values for one
  key OR (NOR for a negated operator) ("Conditions with multiple context keys or values"), with the operators
  ``DateEquals``, ``DateNotEquals``, ``DateLessThan``, ``DateLessThanEquals``, ``DateGreaterThan``,
  ``DateGreaterThanEquals`` (each also with ``IfExists``) and ``Null``, over the context keys the request
  context carries (see :class:`RequestContext`). A key absent from the request context makes a condition
  false, except with ``...IfExists`` (then true) and for a negated operator (then true); ``Null`` tests
  presence ("IAM JSON policy elements: Condition operators").

What it does NOT evaluate (such a statement is skipped: the sandbox then accepts what AWS might refuse):
a ``Resource`` other than ``"*"`` and any ``NotResource`` (the sandbox does not compute resource ARNs), any
other condition operator (String*, Numeric*, Bool, IpAddress, Arn*...), any context key outside
:class:`RequestContext`, ``Principal``/``NotPrincipal`` (not valid in identity policies). Allow statements
are not evaluated at all: moto grants every request, so the implicit deny of a principal with no Allow never
happens here. Resource-based policies, permissions boundaries, session policies and SCPs are not evaluated.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_DATE_OPERATORS = {
    "dateequals": lambda actual, wanted: actual == wanted,
    "datenotequals": lambda actual, wanted: actual != wanted,
    "datelessthan": lambda actual, wanted: actual < wanted,
    "datelessthanequals": lambda actual, wanted: actual <= wanted,
    "dategreaterthan": lambda actual, wanted: actual > wanted,
    "dategreaterthanequals": lambda actual, wanted: actual >= wanted,
}
_NEGATED = {"datenotequals"}


class Unevaluable(Exception):
    """A statement uses something this evaluator does not model; the statement is skipped."""


@dataclass(frozen=True)
class PolicySource:
    """One identity-based policy that applies to the principal, and where it comes from."""

    document: str | Mapping[str, Any]
    description: str  # "inline policy P of role R", for the refusal message
    managed_arn: str | None = None


@dataclass(frozen=True)
class RequestContext:
    """The request facts a condition can test.

    ``dates`` holds the date-valued global keys present in this request, by lower-cased name: always
    ``aws:currenttime`` and ``aws:epochtime``; ``aws:tokenissuetime`` only for temporary credentials ("AWS
    global condition context keys": aws:TokenIssueTime "is included in the request context only when the
    principal uses temporary credentials"). ``absent`` names the modelled keys missing from this request:
    ``aws:tokenissuetime`` for a long-lived key, ``kms:viaservice`` always (no AWS service calls KMS on
    anyone's behalf in the sandbox). Any other key is not modelled, and a statement testing it is skipped.
    """

    action: str  # "iam:ListUsers"
    dates: Mapping[str, dt.datetime]
    absent: frozenset[str] = frozenset({"kms:viaservice"})


@dataclass(frozen=True)
class Denial:
    source: PolicySource
    sid: str | None


def parse_policy_date(value: Any) -> dt.datetime:
    """A policy date: ISO 8601 (``2024-05-07T23:47:00Z``, a date alone, or with an offset) or epoch seconds."""
    if isinstance(value, bool):
        raise Unevaluable(f"not a date: {value!r}")
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(float(value), dt.UTC)
    text = str(value).strip()
    if text.replace(".", "", 1).isdigit():
        return dt.datetime.fromtimestamp(float(text), dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Unevaluable(f"not a date: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _action_matches(patterns: Any, action: str) -> bool:
    return any(isinstance(p, str) and fnmatch.fnmatchcase(action.lower(), p.lower()) for p in _as_list(patterns))


def _condition_holds(operator: str, key: str, values: Any, context: RequestContext) -> bool:
    name = operator.lower()
    if_exists = name.endswith("ifexists")
    base = name[: -len("ifexists")] if if_exists else name
    key = key.lower()
    known = key in context.dates or key in context.absent
    if not known:
        raise Unevaluable(f"context key {key} is not modelled")
    present = key in context.dates
    if base == "null":
        if if_exists:
            raise Unevaluable("NullIfExists is not an operator")
        wanted = [str(v).lower() for v in _as_list(values)]
        return any((v == "true") != present for v in wanted)
    compare = _DATE_OPERATORS.get(base)
    if compare is None:
        raise Unevaluable(f"condition operator {operator} is not modelled")
    if not present:
        return if_exists or base in _NEGATED
    actual = context.dates[key]
    wanted_dates = [parse_policy_date(v) for v in _as_list(values)]
    if base in _NEGATED:
        return all(compare(actual, wanted) for wanted in wanted_dates)
    return any(compare(actual, wanted) for wanted in wanted_dates)


def _statement_denies(statement: Mapping[str, Any], context: RequestContext) -> bool:
    if str(statement.get("Effect", "")) != "Deny":
        return False
    if "Principal" in statement or "NotPrincipal" in statement or "NotResource" in statement:
        raise Unevaluable("Principal, NotPrincipal and NotResource are not modelled")
    if "Action" in statement:
        if not _action_matches(statement["Action"], context.action):
            return False
    elif "NotAction" in statement:
        if _action_matches(statement["NotAction"], context.action):
            return False
    else:
        return False
    if "*" not in _as_list(statement.get("Resource")):
        raise Unevaluable("only Resource \"*\" is modelled")
    conditions = statement.get("Condition") or {}
    if not isinstance(conditions, Mapping):
        raise Unevaluable("Condition is not an object")
    for operator, keys in conditions.items():
        if not isinstance(keys, Mapping):
            raise Unevaluable(f"condition {operator} is not an object")
        for key, values in keys.items():
            if not _condition_holds(str(operator), str(key), values, context):
                return False
    return True


def _statements(document: str | Mapping[str, Any]) -> list[Mapping[str, Any]]:
    try:
        loaded = json.loads(document) if isinstance(document, str) else document
    except ValueError:
        return []
    statements = loaded.get("Statement", []) if isinstance(loaded, Mapping) else []
    return [s for s in _as_list(statements) if isinstance(s, Mapping)]


def explicit_deny(policies: Iterable[PolicySource], context: RequestContext) -> Denial | None:
    """The first Deny statement among ``policies`` that applies to ``context``, or None."""
    for source in policies:
        for statement in _statements(source.document):
            try:
                if _statement_denies(statement, context):
                    sid = statement.get("Sid")
                    return Denial(source, str(sid) if sid is not None else None)
            except Unevaluable:
                continue
    return None
