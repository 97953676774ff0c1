"""Signed annotator tokens: identity travels in the URL, so no cookie is needed inside an MTurk frame."""

from __future__ import annotations

from dataclasses import dataclass

from django.core import signing

ANNOTATOR_SALT = "evalsite.annotations.annotator"
INVITE_SALT = "evalsite.annotations.invite"


class InvalidToken(Exception):
    """A token that was forged, tampered with, or made for another study."""


@dataclass(frozen=True)
class AnnotatorToken:
    study_id: int
    annotator_public_id: str


def annotator_token(*, study_id: int, annotator_public_id: str) -> str:
    return signing.dumps({"s": study_id, "a": str(annotator_public_id)}, salt=ANNOTATOR_SALT, compress=True)


def parse_annotator_token(token: str) -> AnnotatorToken:
    """Check a session token's signature; the caller checks that its study is the one asked for."""
    try:
        payload = signing.loads(token, salt=ANNOTATOR_SALT)
    except signing.BadSignature as exc:
        raise InvalidToken("bad signature") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("s"), int) or not payload.get("a"):
        raise InvalidToken("token is for another study")
    return AnnotatorToken(study_id=payload["s"], annotator_public_id=str(payload["a"]))


def read_annotator_token(token: str, *, study_id: int) -> AnnotatorToken:
    """Check a session token and that it belongs to this study (a token cannot be reused across studies)."""
    parsed = parse_annotator_token(token)
    if parsed.study_id != study_id:
        raise InvalidToken("token is for another study")
    return parsed


def invite_token(*, study_id: int, label: str) -> str:
    """A per-annotator invitation link's token; the label becomes the annotator's external id."""
    return signing.dumps({"s": study_id, "l": label}, salt=INVITE_SALT, compress=True)


def read_invite_token(token: str, *, study_id: int) -> str:
    try:
        payload = signing.loads(token, salt=INVITE_SALT)
    except signing.BadSignature as exc:
        raise InvalidToken("bad signature") from exc
    if not isinstance(payload, dict) or payload.get("s") != study_id or not payload.get("l"):
        raise InvalidToken("invitation is for another study")
    return str(payload["l"])
