"""boto3 adapter for `rotator check`'s least-privilege probes: rotator.inventory.least_privilege.PrivilegeReads
for one account. Reads only; AccessDenied always raises (a boundary that cannot be read is not "no boundary").

SimulatePrincipalPolicy (IAM API Reference) evaluates the identity policies of a user, group or role, its
permissions boundary and the SCPs, for each action in ActionNames on each ARN in ResourceArns (none: "*"),
with ContextEntries supplying the condition keys; it performs nothing. One call per resource and request
context, so each EvaluationResult answers exactly one (action, resource) pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rotator.adapters.aws import aws_call, caller_identity
from rotator.inventory.least_privilege import Entity, EntityKind, Need

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_sts import STSClient


class BotoPrivilegeReads:
    def __init__(self, iam: IAMClient, sts: STSClient) -> None:
        self._iam = iam
        self._sts = sts

    def caller_arn(self) -> str:
        return caller_identity(self._sts)["arn"]

    def describe(self, kind: EntityKind, name: str) -> Entity:
        # GetUser and GetRole return PermissionsBoundary.PermissionsBoundaryArn when the entity has one (IAM API
        # Reference, User / Role data types); ListUsers and ListRoles do not, so each entity is read on its own.
        answer: Any
        if kind == "user":
            with aws_call("iam:GetUser", name):
                answer = self._iam.get_user(UserName=name)["User"]
        else:
            with aws_call("iam:GetRole", name):
                answer = self._iam.get_role(RoleName=name)["Role"]
        boundary = (answer.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
        return Entity(kind, name, str(answer["Arn"]), str(boundary) if boundary else None)

    def simulate(self, source_arn: str, needs: Sequence[Need]) -> dict[tuple[str, str], str]:
        groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[str]] = {}
        for need in needs:
            actions = groups.setdefault((need.resource, need.context), [])
            if need.action not in actions:
                actions.append(need.action)
        decisions: dict[tuple[str, str], str] = {}
        for (resource, context), actions in groups.items():
            request: dict[str, Any] = {"PolicySourceArn": source_arn, "ActionNames": actions}
            if resource != "*":
                request["ResourceArns"] = [resource]
            if context:
                request["ContextEntries"] = [{"ContextKeyName": key, "ContextKeyValues": [value],
                                              "ContextKeyType": "string"} for key, value in context]
            by_name = {action.lower(): action for action in actions}
            with aws_call("iam:SimulatePrincipalPolicy", source_arn):
                for page in self._iam.get_paginator("simulate_principal_policy").paginate(**request):
                    for result in page["EvaluationResults"]:
                        action = by_name.get(result["EvalActionName"].lower(), result["EvalActionName"])
                        decisions[(action, resource)] = result["EvalDecision"]
        return decisions
