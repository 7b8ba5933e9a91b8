"""The RotatorError tree and the exit codes of the operator contract. Imports nothing, so every layer may
raise these.

Every error names what failed and, in ``hint``, the operator's next step.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The operator contract's exit codes, the one table every command uses."""

    OK = 0
    FAILED = 1  # the operation failed (for `revoke`: the key is NOT contained)
    USAGE = 2  # usage or config error, said before any outside call
    # `revoke` or `audit --incident`: the key is contained, but a session found is not cut or a follow-up step
    # (notify, audit coverage, replace, the incident store) failed.
    CONTAINED_FOLLOW_UP_FAILED = 3
    # Stopped by a signal after finishing the current step of every credential in flight (128 + signal number,
    # as a shell reports a process a signal ended).
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM


class RotatorError(Exception):
    """Base of every error rotator raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (next step: {self.hint})" if self.hint else self.message


class UsageError(RotatorError):
    """The command line itself is wrong."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The configuration is unusable: one line naming the file, the key path and the problem."""

    def __init__(self, source: str, key_path: str, problem: str, *, hint: str = "") -> None:
        where = f"{source}: {key_path}" if key_path else source
        super().__init__(f"{where}: {problem}", hint=hint)
        self.source = source
        self.key_path = key_path
        self.problem = problem


class StateKeyError(RotatorError):
    """The key that seals the in-flight secret is missing or does not open the journal."""


# --- outside parties ------------------------------------------------------------------------------


class ExternalError(RotatorError):
    """An outside party (AWS, GitLab, Slack, the database) refused or failed."""

    party = "external"
    transient = False


class AwsError(ExternalError):
    party = "aws"

    def __init__(self, message: str, *, code: str = "", operation: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.operation = operation


class AwsThrottled(AwsError):
    """Throttling survived botocore's own retries. Never to be read as 'key invalid'."""

    transient = True


class AwsUnavailable(AwsError):
    """The endpoint could not be reached or kept answering 5xx."""

    transient = True


class AwsAccessDenied(AwsError):
    pass


class AwsNoCredentials(AwsError):
    """botocore found no credentials at all: nothing was asked of AWS, so no permission is to blame."""


class AwsNotFound(AwsError):
    """NoSuchEntity: the user or key does not exist."""


class AwsLimitExceeded(AwsError):
    """LimitExceeded, e.g. the user already has the maximum number of access keys."""


class AwsInvalidCredentials(AwsError):
    """InvalidClientTokenId / SignatureDoesNotMatch: AWS does not (yet) accept a key pair."""


class GitLabError(ExternalError):
    party = "gitlab"

    def __init__(self, message: str, *, target: str = "", status: int | None = None, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.target = target
        self.status = status


class GitLabUnavailable(GitLabError):
    """429 / 5xx / connection failures that outlasted python-gitlab's retries."""

    transient = True


class GitLabPermanentError(GitLabError):
    """400 / 401 / 403 / 404 / 409: retrying the same request cannot help."""


class GitLabAmbiguousScope(GitLabPermanentError):
    """409: several variables share the key; the environment_scope filter is needed or wrong."""


class GitLabForbidden(GitLabPermanentError):
    pass


class GitLabNotFound(GitLabPermanentError):
    pass


class GitLabPairSplit(GitLabError):
    """The first variable of a pair was written and the second was not: the target holds half a pair.

    ``written`` names the variable that was written; ``failure`` is the second write's own error."""

    def __init__(self, message: str, *, written: str, failure: GitLabError, hint: str = "") -> None:
        super().__init__(message, target=failure.target, status=failure.status, hint=hint or failure.hint)
        self.written = written
        self.failure = failure
        self.transient = failure.transient


class SlackError(ExternalError):
    party = "slack"


class SlackUnavailable(SlackError):
    """Slack could not be reached (connection refused, DNS, timeout) or kept answering 5xx within the retry
    budget. The message can be sent again later; a refusal (bad token, unknown channel) cannot."""

    transient = True


class StoreError(ExternalError):
    party = "database"


class SchemaNotCurrent(StoreError):
    """The database is not migrated to the head revision."""


class LeaseBusy(RotatorError):
    """Another process holds the lease for this credential."""


class LeaseLost(RotatorError):
    """Our lease expired or was taken over while a step was running."""
