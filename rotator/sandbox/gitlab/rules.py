"""GitLab's model validations for CI/CD variables, with GitLab's own error messages.

The result is Rails' ``errors.messages`` shape (``{field: [message, ...]}``), which the API returns
as ``400 {"message": {...}}``. Sources: app/models/concerns/ci/has_variable.rb, ci/maskable.rb,
ci/hidable_variable.rb, lib/gitlab/regex.rb, app/models/concerns/limitable.rb.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rotator.sandbox.gitlab.model import CiVariable, VariableOwnerKind

Errors = dict[str, list[str]]

VARIABLE_TYPES = ("env_var", "file")
KEY_MAX_LENGTH = 255
DESCRIPTION_MAX_LENGTH = 255
INSTANCE_VALUE_MAX_LENGTH = 10_000

# Python's \Z is Ruby's \z. re.ASCII keeps \S to ASCII whitespace, as in Ruby.
KEY_PATTERN = re.compile(r"\A[a-zA-Z0-9_]+\Z")
MASKABLE_PATTERN = re.compile(r"\A[a-zA-Z0-9_+=/@:.~-]{8,}\Z")
MASKABLE_RAW_PATTERN = re.compile(r"\A\S{8,}\Z", re.ASCII)
SCOPE_PATTERN = re.compile(r"\A[a-zA-Z0-9_/${}. *-]+\Z")

KEY_FORMAT_MESSAGE = "can contain only letters, digits and '_'."
SCOPE_FORMAT_MESSAGE = "can contain only letters, digits, '-', '_', '/', '$', '{', '}', '.', '*' and spaces"
BLANK_MESSAGE = "can't be blank"
INSTANCE_VALUE_TOO_LONG = f"The value of the provided variable exceeds the {INSTANCE_VALUE_MAX_LENGTH} character limit"
HIDDEN_CHANGED = "Only new variables can be set as masked and hidden."
MASKED_CHANGED_ON_HIDDEN = "The visibility setting cannot be changed for masked and hidden variables."
MASKED_REQUIRED_FOR_HIDDEN = "should be true when variable is hidden"


def too_long(maximum: int) -> str:
    return f"is too long (maximum is {maximum} characters)"


# The plan limit each model names (`self.limit_name`), as Limitable#check_plan_limit_not_exceeded
# prints it: `limit_name.humanize(capitalize: false)`. Ci::InstanceVariable uses the global
# `ci_instance_level_variables` limit (default 25, db/structure.sql).
LIMIT_NAMES = {
    VariableOwnerKind.PROJECT: "project ci variables",
    VariableOwnerKind.GROUP: "group ci variables",
    VariableOwnerKind.INSTANCE: "ci instance level variables",
}


def limit_exceeded(kind: VariableOwnerKind, limit: int) -> str:
    return f"Maximum number of {LIMIT_NAMES[kind]} ({limit}) exceeded"


def is_maskable(value: str, *, raw: bool) -> bool:
    pattern = MASKABLE_RAW_PATTERN if raw else MASKABLE_PATTERN
    return pattern.match(value) is not None


def variable_errors(
    candidate: CiVariable,
    *,
    kind: VariableOwnerKind,
    siblings: Iterable[CiVariable],
    original: CiVariable | None,
    limit: int | None,
) -> Errors:
    """Every validation error of ``candidate``; empty when it may be saved.

    ``siblings`` are the other variables of the same owner (``candidate`` itself may be among them).
    ``original`` is the stored version on update, None on create.
    """
    errors: Errors = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if not candidate.key:
        add("key", BLANK_MESSAGE)
    if len(candidate.key) > KEY_MAX_LENGTH:
        add("key", too_long(KEY_MAX_LENGTH))
    if not KEY_PATTERN.match(candidate.key):
        add("key", KEY_FORMAT_MESSAGE)

    if candidate.masked and not is_maskable(candidate.value, raw=candidate.raw):
        add("value", "is invalid")
    if kind is VariableOwnerKind.INSTANCE and len(candidate.value) > INSTANCE_VALUE_MAX_LENGTH:
        add("value", INSTANCE_VALUE_TOO_LONG)

    if kind is not VariableOwnerKind.INSTANCE:
        if not candidate.environment_scope:
            add("environment_scope", BLANK_MESSAGE)
        if not SCOPE_PATTERN.match(candidate.environment_scope):
            add("environment_scope", SCOPE_FORMAT_MESSAGE)

    if candidate.description is not None and len(candidate.description) > DESCRIPTION_MAX_LENGTH:
        add("description", too_long(DESCRIPTION_MAX_LENGTH))

    sibling_list = list(siblings)
    if candidate.key and any(_same_slot(other, candidate, kind) for other in sibling_list):
        add("key", f"({candidate.key}) has already been taken")

    if original is None:
        if candidate.hidden and not candidate.masked:
            add("masked", MASKED_REQUIRED_FOR_HIDDEN)
        others = [v for v in sibling_list if v.id != candidate.id]
        if limit is not None and limit > 0 and len(others) >= limit:
            add("base", limit_exceeded(kind, limit))
    else:
        hidden_rule = _hidden_update_error(original, candidate)
        if hidden_rule:
            add("base", hidden_rule)
    return errors


def _same_slot(other: CiVariable, candidate: CiVariable, kind: VariableOwnerKind) -> bool:
    if other.id == candidate.id or other.key != candidate.key:
        return False
    return kind is VariableOwnerKind.INSTANCE or other.environment_scope == candidate.environment_scope


def _hidden_update_error(original: CiVariable, candidate: CiVariable) -> str | None:
    masked_changed = original.masked != candidate.masked
    hidden_changed = original.hidden != candidate.hidden
    if not masked_changed and not hidden_changed:
        return None
    if not candidate.hidden and not hidden_changed:
        return None
    return HIDDEN_CHANGED if hidden_changed else MASKED_CHANGED_ON_HIDDEN
