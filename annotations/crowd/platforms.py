"""Which provider speaks for a platform: the one place that knows every platform module."""

from __future__ import annotations

from annotations.crowd.mturk import MTurkProvider
from annotations.crowd.prolific import ProlificProvider
from annotations.crowd.providers import CrowdPlatformError, CrowdProvider, ManualProvider


def provider_for(platform: str) -> CrowdProvider:
    if platform == "mturk":
        return MTurkProvider()
    if platform == "prolific":
        return ProlificProvider()
    if platform == "manual":
        return ManualProvider()
    raise CrowdPlatformError(f"unknown crowd platform {platform!r}")
