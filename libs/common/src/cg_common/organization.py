"""How organization usage pulled from OpenAI with admin keys is named, for the prober that emits it and the api that
reads it back (billed against computed): one source per admin key, `//openai.com/organization/<key fingerprint>`."""

from __future__ import annotations

from cg_common.subjects import USAGE

ORGANIZATION_SOURCE_PREFIX = "//openai.com/organization/"
ORGANIZATION_SOURCES_LIKE = ORGANIZATION_SOURCE_PREFIX + "%"  # every such source, as an SQL LIKE pattern
ORGANIZATION_USAGE_SUBJECT = f"{USAGE}.openai.organization"


def organization_source(key_fingerprint: str) -> str:
    """The CloudEvents source of one admin key's organization usage and billed costs."""
    return ORGANIZATION_SOURCE_PREFIX + key_fingerprint
