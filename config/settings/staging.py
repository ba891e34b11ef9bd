"""Staging: production's rules, with its own hosts and data."""

from .production import *  # noqa: F403
