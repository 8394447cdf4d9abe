"""Bearer tokens: minted once, stored as a SHA-256 hash, looked up by hash, revoked by marking."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, aliased

from protocol.vocabulary import ROLES
from scheduler.errors import InvalidInput, NotFound
from scheduler.models import ApiToken, DashboardSession, utcnow

TOKEN_PREFIX = "tl_"
# `last_used_at` is written at most this often per token: a lookup is a read, not a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    role: str


@dataclass(frozen=True)
class TokenRecord:
    """What `tenslora token list` and `GET /api/v1/tokens` show: never the token or its hash."""

    id: int
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    created_by: str | None
    revoked_at: datetime | None


def hash_token(raw: str) -> str:
    # Tokens (and session ids) are 256 random bits, so a plain hash (no salt, no stretching)
    # is enough. surrogatepass: a lone surrogate in a header-supplied value must not raise.
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(
    session: Session, role: str, name: str, created_by_id: int | None = None
) -> str:
    """Store a new token of ``role`` and return the raw token (the only time it is known)."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    if not name.strip():
        raise InvalidInput("token name must not be empty")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(name=name, role=role, token_hash=hash_token(raw), created_by_id=created_by_id)
    )
    session.flush()
    return raw


def find_token(session: Session, raw: str) -> TokenInfo | None:
    """The live (not revoked) token whose hash matches ``raw``."""
    row = session.execute(
        select(ApiToken.id, ApiToken.name, ApiToken.role).where(
            ApiToken.token_hash == hash_token(raw), ApiToken.revoked_at.is_(None)
        )
    ).first()
    return TokenInfo(id=row.id, name=row.name, role=row.role) if row else None


def is_live(session: Session, token_id: int) -> bool:
    return session.scalar(
        select(ApiToken.id).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
    ) is not None


def mark_used(session: Session, token_id: int, now: datetime | None = None) -> None:
    """Record a use, unless one was recorded within ``LAST_USED_RESOLUTION``."""
    now = now or utcnow()
    stale = ApiToken.last_used_at.is_(None) | (ApiToken.last_used_at < now - LAST_USED_RESOLUTION)
    session.execute(
        update(ApiToken).where(ApiToken.id == token_id, stale).values(last_used_at=now)
    )


def list_tokens(session: Session, include_revoked: bool = False) -> list[TokenRecord]:
    creator = aliased(ApiToken)
    query = (
        select(ApiToken, creator.name)
        .outerjoin(creator, creator.id == ApiToken.created_by_id)
        .order_by(ApiToken.id)
    )
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return [_record(token, creator_name) for token, creator_name in session.execute(query)]


def _record(token: ApiToken, created_by: str | None) -> TokenRecord:
    return TokenRecord(
        id=token.id, name=token.name, role=token.role, created_at=token.created_at,
        last_used_at=token.last_used_at, created_by=created_by, revoked_at=token.revoked_at,
    )


def resolve_token(session: Session, name_or_id: str) -> int:
    """The id of the one live token with this id or name (``InvalidInput`` when ambiguous)."""
    text = name_or_id.strip()
    if text.isdigit() and session.get(ApiToken, int(text)) is not None:
        return int(text)
    ids = list(
        session.scalars(
            select(ApiToken.id).where(ApiToken.name == text, ApiToken.revoked_at.is_(None))
        )
    )
    if not ids:
        raise NotFound(f"no live token has the id or name {text!r}")
    if len(ids) > 1:
        listed = ", ".join(str(i) for i in ids)
        raise InvalidInput(f"{len(ids)} live tokens are named {text!r} (ids {listed}); give the id")
    return ids[0]


def revoke_token(session: Session, token_id: int, now: datetime | None = None) -> TokenRecord:
    """Mark the token revoked (idempotent); its dashboard sessions end with it."""
    token = session.get(ApiToken, token_id, with_for_update=True)
    if token is None:
        raise NotFound(f"token {token_id} does not exist")
    if token.revoked_at is None:
        token.revoked_at = now or utcnow()
    session.execute(delete(DashboardSession).where(DashboardSession.token_id == token_id))
    session.flush()
    creator = session.get(ApiToken, token.created_by_id) if token.created_by_id else None
    return _record(token, creator.name if creator else None)
