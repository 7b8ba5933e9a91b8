"""Adapters: the only modules that talk to AWS, GitLab, Slack and the database."""
