"""Dashboard sessions: a random id in the browser's cookie, its SHA-256 here, an expiry.

The cookie never holds the API token: a stolen cookie dies with its session (logout, expiry,
or the token's revocation), and the token itself never sits in a browser.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from scheduler.models import ApiToken, DashboardSession, utcnow
from scheduler.tokens import TokenInfo, hash_token


def create_session(
    session: Session, token_id: int, lifetime_s: float, now: datetime | None = None
) -> str:
    """Store a session of ``token_id`` and return its raw id (for the cookie only)."""
    now = now or utcnow()
    # Expired sessions are swept here: logins are rare, so this costs nothing noticeable.
    session.execute(delete(DashboardSession).where(DashboardSession.expires_at < now))
    raw = secrets.token_urlsafe(32)
    session.add(
        DashboardSession(
            session_hash=hash_token(raw), token_id=token_id, created_at=now,
            expires_at=now + timedelta(seconds=lifetime_s),
        )
    )
    session.flush()
    return raw


def find_session(session: Session, raw: str, now: datetime | None = None) -> TokenInfo | None:
    """The token behind a live session: not expired, not ended, its token not revoked."""
    now = now or utcnow()
    row = session.execute(
        select(ApiToken.id, ApiToken.name, ApiToken.role)
        .join(DashboardSession, DashboardSession.token_id == ApiToken.id)
        .where(
            DashboardSession.session_hash == hash_token(raw),
            DashboardSession.expires_at > now,
            ApiToken.revoked_at.is_(None),
        )
    ).first()
    return TokenInfo(id=row.id, name=row.name, role=row.role) if row else None


def end_session(session: Session, raw: str) -> None:
    ended = DashboardSession.session_hash == hash_token(raw)
    session.execute(delete(DashboardSession).where(ended))
