"""The three CI/CD variable APIs: project (lib/api/ci/variables.rb), group (lib/api/group_variables.rb)
and instance (lib/api/admin/ci/variables.rb).

Each handler runs GitLab's steps in GitLab's order: authenticate → resolve the owner (404) →
permission (403) → parameter validation (400 ``error``) → lookup (404 / 409) → model validation
(400 ``message``). What differs between releases is asked of versions.py.
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from werkzeug.wrappers import Response

from rotator.sandbox.gitlab.access import can_admin_group_variables, can_admin_project
from rotator.sandbox.gitlab.model import CiVariable, VariableOwnerKind
from rotator.sandbox.gitlab.pagination import page_request
from rotator.sandbox.gitlab.params import Param, declared, environment_scope_filter, require_hash_filter
from rotator.sandbox.gitlab.resolve import resolve_group, resolve_project
from rotator.sandbox.gitlab.responses import (
    api_json,
    conflict,
    forbidden,
    message_error,
    no_content,
    not_found,
    validation_error,
)
from rotator.sandbox.gitlab.routing import Call, Router
from rotator.sandbox.gitlab.rules import VARIABLE_TYPES
from rotator.sandbox.gitlab.store import (
    AmbiguousVariable,
    Lookup,
    PreconditionFailed,
    VariableInvalid,
    VariableNotFound,
    VariableStore,
)
from rotator.sandbox.gitlab.versions import Feature, GitLabVersion, has

T = TypeVar("T")

AMBIGUOUS_MESSAGE = "There are multiple variables with provided parameters. Please use 'filter[environment_scope]'"

_COMMON = (
    Param("protected", bool),
    Param("masked", bool),
    Param("raw", bool),
    Param("variable_type", str, values=VARIABLE_TYPES),
    Param("description", str),
)
_SCOPED = (Param("environment_scope", str),)
_KEY_VALUE = (Param("key", str, required=True), Param("value", str, required=True))
# `masked_and_hidden` is declared from 17.4; before it Grape's declared_params drops it, so the
# variable is created with whatever `masked` says, and visible.
CREATE_PARAMS = (*_KEY_VALUE, *_COMMON, *_SCOPED)
HIDDEN_CREATE_PARAMS = (*CREATE_PARAMS, Param("masked_and_hidden", bool))
UPDATE_PARAMS = (Param("value", str), *_COMMON, *_SCOPED)
INSTANCE_CREATE_PARAMS = (*_KEY_VALUE, *_COMMON)
INSTANCE_UPDATE_PARAMS = (Param("value", str), *_COMMON)


def render(variable: CiVariable, kind: VariableOwnerKind, version: GitLabVersion) -> dict[str, Any]:
    """Entities::Ci::Variable: no id, no timestamps; a hidden variable's value is always null
    (Ci::VariableValue). ``hidden`` is exposed from 17.4, and never for instance variables."""
    body: dict[str, Any] = {
        "variable_type": variable.variable_type,
        "key": variable.key,
        "value": None if variable.hidden else variable.value,
    }
    if kind is not VariableOwnerKind.INSTANCE and has(version, Feature.HIDDEN_VARIABLES):
        body["hidden"] = variable.hidden
    body.update(protected=variable.protected, masked=variable.masked, raw=variable.raw)
    if kind is not VariableOwnerKind.INSTANCE:
        body["environment_scope"] = variable.environment_scope
    body["description"] = variable.description
    return body


def _guarded(missing: str, action: Callable[[], T]) -> T:
    try:
        return action()
    except VariableNotFound:
        raise not_found(missing) from None
    except AmbiguousVariable:
        raise conflict(AMBIGUOUS_MESSAGE) from None
    except VariableInvalid as invalid:
        raise validation_error(invalid.errors) from None
    except PreconditionFailed:
        raise message_error(412, "412 Precondition Failed") from None


def _new_fields(values: dict[str, Any]) -> dict[str, Any]:
    fields = dict(values)
    fields["key"] = fields["key"].strip()  # Ci::HasVariable#key= strips
    if fields.pop("masked_and_hidden", False):
        fields["masked"] = fields["hidden"] = True
    return fields


def _create_params(call: Call) -> tuple[Param, ...]:
    return HIDDEN_CREATE_PARAMS if has(call.state.version, Feature.HIDDEN_VARIABLES) else CREATE_PARAMS


def _shown(call: Call, store: VariableStore, variable: CiVariable, status: int = 200) -> Response:
    return api_json(render(variable, store.kind, call.state.version), status)


def _list(call: Call, store: VariableStore) -> Response:
    request = page_request(call.params)
    page, headers = call.offset_page(store.snapshot(), request)
    return api_json([render(v, store.kind, call.state.version) for v in page], headers=headers)


def _created(call: Call, store: VariableStore, missing: str, fields: dict[str, Any]) -> Response:
    variable = _guarded(missing, lambda: store.create(fields))
    return _shown(call, store, variable, 201)


# ---- project --------------------------------------------------------------------------------------


def _project_store(call: Call) -> VariableStore:
    call.current_user()
    project = resolve_project(call)
    if not can_admin_project(call.state, call.identity, project):
        raise forbidden()
    return call.state.variable_store(VariableOwnerKind.PROJECT, project.id)


def list_project_variables(call: Call) -> Response:
    return _list(call, _project_store(call))


def get_project_variable(call: Call) -> Response:
    store = _project_store(call)
    require_hash_filter(call.params)
    scope = environment_scope_filter(call.params)
    variable = _guarded("Variable", lambda: store.find(call.path_params["key"], scope))
    return _shown(call, store, variable)


def create_project_variable(call: Call) -> Response:
    store = _project_store(call)
    return _created(call, store, "Variable", _new_fields(declared(call.params, _create_params(call))))


def update_project_variable(call: Call) -> Response:
    store = _project_store(call)
    require_hash_filter(call.params)
    changes = declared(call.params, UPDATE_PARAMS)
    scope = environment_scope_filter(call.params)
    variable = _guarded("Variable", lambda: store.update(call.path_params["key"], scope, changes))
    return _shown(call, store, variable)


def delete_project_variable(call: Call) -> Response:
    store = _project_store(call)
    require_hash_filter(call.params)
    scope = environment_scope_filter(call.params)
    _guarded("Variable", lambda: store.delete(call.path_params["key"], scope))
    return no_content()


# ---- group ----------------------------------------------------------------------------------------


def _group_store(call: Call) -> VariableStore:
    call.current_user()
    group = resolve_group(call)
    if not can_admin_group_variables(call.state, call.identity, group):
        raise forbidden()
    return call.state.variable_store(VariableOwnerKind.GROUP, group.id)


def _tiered(call: Call, values: dict[str, Any]) -> dict[str, Any]:
    # Scoped group variables are a paid feature: on Free the scope is dropped, so it stays "*".
    if call.state.tier == "free":
        values.pop("environment_scope", None)
    return values


def list_group_variables(call: Call) -> Response:
    return _list(call, _group_store(call))


def get_group_variable(call: Call) -> Response:
    # find_variable(user_group, params) in every release played: the filter (read from the raw
    # params, declared or not) narrows the scope, several matches are a 409.
    store = _group_store(call)
    scope = environment_scope_filter(call.params)
    variable = _guarded("GroupVariable", lambda: store.find(call.path_params["key"], scope))
    return _shown(call, store, variable)


def create_group_variable(call: Call) -> Response:
    store = _group_store(call)
    fields = _tiered(call, _new_fields(declared(call.params, _create_params(call))))
    return _created(call, store, "GroupVariable", fields)


def update_group_variable(call: Call) -> Response:
    store = _group_store(call)
    changes = _tiered(call, declared(call.params, UPDATE_PARAMS))
    key = call.path_params["key"]
    scope, lookup = None, Lookup.FIRST_WITH_KEY
    if has(call.state.version, Feature.GROUP_VARIABLE_PUT_FILTER) and "filter" in call.params:
        # `if params.key?('filter')`: find_variable, then Ci::ChangeVariableService's fallback
        # `params[:variable] || find_variable` = find_by!(key) when the filter matched nothing, so a
        # filter naming a missing scope updates a same-key variable of another scope.
        scope, lookup = environment_scope_filter(call.params), Lookup.UNIQUE_ELSE_FIRST_WITH_KEY
    # Otherwise (no filter, or before 16.9 whatever was sent): ChangeVariableService's
    # find_by!(key), the first same-key variable in any scope, never a 409 (kept for backwards
    # compatibility, MR 136475).
    variable = _guarded("GroupVariable", lambda: store.update(key, scope, changes, lookup))
    return _shown(call, store, variable)


def delete_group_variable(call: Call) -> Response:
    store = _group_store(call)
    scope = environment_scope_filter(call.params)
    since = _if_unmodified_since(call)
    _guarded("GroupVariable", lambda: store.delete(call.path_params["key"], scope, unmodified_since=since))
    return no_content()


def _if_unmodified_since(call: Call) -> float | None:
    header = call.request.headers.get("If-Unmodified-Since")
    if not header:
        return None
    try:
        return parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return None  # GitLab ignores a header it cannot parse


# ---- instance -------------------------------------------------------------------------------------


def _instance_store(call: Call) -> VariableStore:
    # `before { authenticated_as_admin! }`: administrator powers, so 403 without admin mode when
    # the instance enables it.
    call.current_user()
    if not call.identity.admin:
        raise forbidden()
    return call.state.instance_variables


def list_instance_variables(call: Call) -> Response:
    return _list(call, _instance_store(call))


def get_instance_variable(call: Call) -> Response:
    store = _instance_store(call)
    variable = _guarded("InstanceVariable", lambda: store.find(call.path_params["key"], None))
    return _shown(call, store, variable)


def create_instance_variable(call: Call) -> Response:
    store = _instance_store(call)
    return _created(call, store, "InstanceVariable", _new_fields(declared(call.params, INSTANCE_CREATE_PARAMS)))


def update_instance_variable(call: Call) -> Response:
    store = _instance_store(call)
    changes = declared(call.params, INSTANCE_UPDATE_PARAMS)
    variable = _guarded("InstanceVariable", lambda: store.update(call.path_params["key"], None, changes))
    return _shown(call, store, variable)


def delete_instance_variable(call: Call) -> Response:
    store = _instance_store(call)
    _guarded("InstanceVariable", lambda: store.delete(call.path_params["key"], None))
    return no_content()


def register(router: Router) -> None:
    for prefix, handlers in (
        ("/projects/:id/variables", (list_project_variables, get_project_variable, create_project_variable,
                                     update_project_variable, delete_project_variable)),
        ("/groups/:id/variables", (list_group_variables, get_group_variable, create_group_variable,
                                   update_group_variable, delete_group_variable)),
        ("/admin/ci/variables", (list_instance_variables, get_instance_variable, create_instance_variable,
                                 update_instance_variable, delete_instance_variable)),
    ):
        list_handler, get_handler, create_handler, update_handler, delete_handler = handlers
        router.add("GET", prefix, list_handler)
        router.add("POST", prefix, create_handler)
        router.add("GET", f"{prefix}/:key", get_handler)
        router.add("PUT", f"{prefix}/:key", update_handler)
        router.add("DELETE", f"{prefix}/:key", delete_handler)
