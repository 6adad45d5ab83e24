"""Registered apps and their access tokens (WeChat's token rules, docs/api.md "Tokens")."""
