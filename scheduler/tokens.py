"""Bearer tokens: minted once, stored as a SHA-256 hash, looked up by hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.errors import InvalidInput
from scheduler.models import ApiToken

ROLES: tuple[str, ...] = ("admin", "submitter", "worker")
TOKEN_PREFIX = "tl_"


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    role: str


def hash_token(raw: str) -> str:
    # Tokens are 256 random bits, so a plain hash (no salt, no stretching) is enough.
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(session: Session, role: str, name: str) -> str:
    """Store a new token of ``role`` and return the raw token (the only time it is known)."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    if not name.strip():
        raise InvalidInput("token name must not be empty")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, role=role, token_hash=hash_token(raw)))
    session.flush()
    return raw


def find_token(session: Session, raw: str) -> TokenInfo | None:
    row = session.execute(
        select(ApiToken.id, ApiToken.name, ApiToken.role).where(
            ApiToken.token_hash == hash_token(raw)
        )
    ).first()
    return TokenInfo(id=row.id, name=row.name, role=row.role) if row else None
