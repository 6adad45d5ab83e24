"""Registered apps and their access tokens (WeChat's token rules, SPEC §4)."""
