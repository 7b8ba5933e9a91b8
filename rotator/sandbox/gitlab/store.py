"""The variables of one owner (a project, a group, or the instance), behind their own lock.

Each lookup-and-change happens under one acquisition of the owner's lock, so concurrent writers to
different projects never wait on each other and a lookup can never go stale before its write.
Callers only ever get copies: rendering a response never races a writer.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
from collections.abc import Callable
from typing import Any

from rotator.sandbox.gitlab.model import CiVariable, VariableOwnerKind
from rotator.sandbox.gitlab.rules import Errors, variable_errors

UPDATABLE_FIELDS = frozenset(
    {"value", "variable_type", "protected", "masked", "raw", "hidden", "environment_scope", "description"}
)


class Lookup(enum.Enum):
    """How an endpoint finds the variable it changes."""

    # API::Helpers::VariablesHelpers#find_variable over Ci::VariablesFinder: exact key, then exact
    # scope when `filter[environment_scope]` is given; several matches → 409, none → 404.
    UNIQUE = "unique"
    # Ci::ChangeVariableService#find_variable: `container.variables.find_by!(key:)`, the first
    # same-key row whatever its scope; none → 404. The SQL has no ORDER BY, so which row comes first
    # is PostgreSQL's choice; the fake takes the oldest (lowest id).
    FIRST_WITH_KEY = "first-with-key"
    # Group PUT with a filter (lib/api/group_variables.rb, 16.9+): find_variable, and when it finds
    # nothing the service's `params[:variable] || find_variable` falls back to FIRST_WITH_KEY.
    UNIQUE_ELSE_FIRST_WITH_KEY = "unique-else-first-with-key"


class VariableStoreError(Exception):
    """Why a variable operation was refused; the HTTP layer maps each to GitLab's answer."""


class VariableNotFound(VariableStoreError):
    pass


class AmbiguousVariable(VariableStoreError):
    """Several variables share the key and no environment_scope filter told them apart."""


class VariableInvalid(VariableStoreError):
    def __init__(self, errors: Errors) -> None:
        super().__init__("variable is invalid")
        self.errors = errors


class PreconditionFailed(VariableStoreError):
    """The variable changed after the client's If-Unmodified-Since."""


class VariableStore:
    def __init__(
        self,
        kind: VariableOwnerKind,
        next_id: Callable[[], int],
        limit: Callable[[], int | None],
    ) -> None:
        self.kind = kind
        self._next_id = next_id
        self._limit = limit
        self._lock = threading.Lock()
        self._variables: dict[int, CiVariable] = {}  # insertion order is id order, as GitLab lists them

    def snapshot(self) -> list[CiVariable]:
        with self._lock:
            return [dataclasses.replace(v) for v in self._variables.values()]

    def find(self, key: str, scope: str | None) -> CiVariable:
        with self._lock:
            return dataclasses.replace(self._find_one(key, scope))

    def create(self, fields: dict[str, Any]) -> CiVariable:
        with self._lock:
            candidate = CiVariable(id=0, **fields)
            self._validate(candidate, original=None)
            candidate.id = self._next_id()
            candidate.updated_at = time.time()
            self._variables[candidate.id] = candidate
            return dataclasses.replace(candidate)

    def update(self, key: str, scope: str | None, changes: dict[str, Any],
               lookup: Lookup = Lookup.UNIQUE) -> CiVariable:
        """Change the variable ``key``, found the way ``lookup`` says (``scope`` is the filter, if any).

        The result is the variable as changed: its ``environment_scope`` tells which one it was.
        """
        unknown = set(changes) - UPDATABLE_FIELDS
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        with self._lock:
            original = self._look_up(key, scope, lookup)
            candidate = dataclasses.replace(original, **changes)
            self._validate(candidate, original=original)
            candidate.updated_at = time.time()
            self._variables[candidate.id] = candidate
            return dataclasses.replace(candidate)

    def delete(self, key: str, scope: str | None, *, unmodified_since: float | None = None) -> CiVariable:
        with self._lock:
            variable = self._find_one(key, scope)
            if unmodified_since is not None and variable.updated_at > unmodified_since:
                raise PreconditionFailed(key)
            del self._variables[variable.id]
            return dataclasses.replace(variable)

    def replace(self, fields: dict[str, Any]) -> CiVariable:
        """Seeding helper: create, or overwrite the variable with the same key and scope (validated as new)."""
        with self._lock:
            scope = None if self.kind is VariableOwnerKind.INSTANCE else fields.get("environment_scope", "*")
            for existing in self._matches(fields["key"], scope):
                del self._variables[existing.id]
        return self.create(fields)

    def _validate(self, candidate: CiVariable, *, original: CiVariable | None) -> None:
        errors = variable_errors(candidate, kind=self.kind, siblings=self._variables.values(),
                                 original=original, limit=self._limit())
        if errors:
            raise VariableInvalid(errors)

    def _matches(self, key: str, scope: str | None) -> list[CiVariable]:
        # Exact key, then exact scope when filtered: no wildcard matching (Ci::VariablesFinder).
        return [v for v in self._variables.values()
                if v.key == key and (scope is None or v.environment_scope == scope)]

    def _look_up(self, key: str, scope: str | None, lookup: Lookup) -> CiVariable:
        if lookup is Lookup.FIRST_WITH_KEY:
            return self._first_with_key(key)
        if lookup is Lookup.UNIQUE_ELSE_FIRST_WITH_KEY:
            try:
                return self._find_one(key, scope)
            except VariableNotFound:
                return self._first_with_key(key)
        return self._find_one(key, scope)

    def _first_with_key(self, key: str) -> CiVariable:
        matches = self._matches(key, None)
        if not matches:
            raise VariableNotFound(key)
        return min(matches, key=lambda v: v.id)

    def _find_one(self, key: str, scope: str | None) -> CiVariable:
        matches = self._matches(key, scope)
        if not matches:
            raise VariableNotFound(key)
        if len(matches) > 1:
            raise AmbiguousVariable(key)
        return matches[0]
