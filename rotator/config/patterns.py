"""What both config loaders agree on: where the file is, and the shapes of the values they both check.

Standard library only: the early loader (``rotator.config.early``) that `revoke` uses before containment may
not import pydantic. The full loader (``rotator.config.settings``) checks the same values with the same
patterns, so a file one accepts the other accepts too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

DEFAULT_CONFIG_PATH = "rotator.toml"
CONFIG_PATH_ENV = "ROTATOR_CONFIG"
DEFAULT_DATABASE_URL = "sqlite:///rotator.db"
DEFAULT_REGION = "us-east-1"

# Partitions aws, aws-cn, aws-us-gov; the account id is the first group.
ROLE_ARN = re.compile(r"arn:aws(?:-cn|-us-gov)?:iam::(\d{12}):role/[\w+=,.@/-]+")
# us-east-1, eu-central-2, us-gov-west-1, cn-north-1, us-iso-east-1, ap-southeast-4 ...
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d+")
# Upper case only: a pasted secret (mixed case, '-', '=', '/') fails instead of being named in a later message.
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")


def config_path(cli_path: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """--config, else $ROTATOR_CONFIG, else ./rotator.toml."""
    return Path(cli_path or environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)


def account_id_of_role(role_arn: str) -> str | None:
    """The 12-digit account id in a role ARN, or None when it is not a role ARN."""
    match = ROLE_ARN.fullmatch(role_arn)
    return match.group(1) if match else None
