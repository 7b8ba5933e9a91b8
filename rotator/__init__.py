"""rotator: short-lived AWS access keys for GitLab CI, and a playbook for leaked ones."""

__version__ = "0.1.0"
