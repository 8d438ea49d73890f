"""Dashboard logins and API tokens in the market database: hashes only, never secrets.

What ``dashboard.auth`` and ``api.security`` keep in their JSON files, kept here
for deployments that run on the market database (several web processes share
it). The records are the files' own (a scrypt hash; a token's SHA-256), so
``stallwatch accounts import`` copies a file's records as they are and nobody
needs a new password or token. Adding, replacing and removing one is audited
(never with its hash).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from marketdb._exceptions import Conflict
from marketdb.changes import Clock, record_audit, utc_now
from marketdb.models import ApiTokenRow, UserRow


@dataclass(frozen=True, slots=True)
class StoredUser:
    name: str
    scrypt: str
    role: str
    created: datetime


@dataclass(frozen=True, slots=True)
class StoredToken:
    name: str
    sha256: str
    role: str
    market: str | None
    vendor: str | None
    created: datetime


def find_user(session: Session, name: str) -> StoredUser | None:
    row = session.get(UserRow, name)
    return None if row is None else StoredUser(row.name, row.scrypt, row.role, row.created)


def list_users(session: Session) -> list[StoredUser]:
    rows = session.scalars(select(UserRow).order_by(UserRow.name))
    return [StoredUser(r.name, r.scrypt, r.role, r.created) for r in rows]


def put_user(session: Session, user: StoredUser, *, actor: str, clock: Clock = utc_now) -> None:
    """Add the user, or give an existing one this password hash and role."""
    row = session.get(UserRow, user.name)
    before = None if row is None else {"role": row.role, "password": "(set)"}
    if row is None:
        row = UserRow(name=user.name)
        session.add(row)
    row.scrypt, row.role, row.created = user.scrypt, user.role, user.created
    session.flush()
    after = {"role": user.role, "password": "(new)"}
    _audit(session, "user", user.name, before, after, actor=actor, clock=clock)


def remove_user(session: Session, name: str, *, actor: str, clock: Clock = utc_now) -> bool:
    row = session.get(UserRow, name)
    if row is None:
        return False
    session.delete(row)
    _audit(session, "user", name, {"role": row.role}, None, actor=actor, clock=clock)
    return True


def token_by_digest(session: Session, sha256: str) -> StoredToken | None:
    row = session.scalars(select(ApiTokenRow).where(ApiTokenRow.sha256 == sha256)).one_or_none()
    return None if row is None else _token(row)


def list_tokens(session: Session) -> list[StoredToken]:
    return [_token(r) for r in session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.name))]


def add_token(session: Session, token: StoredToken, *, actor: str, clock: Clock = utc_now) -> None:
    if session.get(ApiTokenRow, token.name) is not None:
        raise Conflict(f"a token named {token.name!r} exists; revoke it first")
    session.add(
        ApiTokenRow(
            name=token.name,
            sha256=token.sha256,
            role=token.role,
            market_id=token.market,
            vendor_id=token.vendor,
            created=token.created,
        )
    )
    session.flush()
    after = {"role": token.role, "market": token.market, "vendor": token.vendor}
    _audit(session, "token", token.name, None, after, actor=actor, clock=clock)


def revoke_token(session: Session, name: str, *, actor: str, clock: Clock = utc_now) -> bool:
    row = session.get(ApiTokenRow, name)
    if row is None:
        return False
    session.delete(row)
    _audit(session, "token", name, {"role": row.role}, None, actor=actor, clock=clock)
    return True


def _token(row: ApiTokenRow) -> StoredToken:
    return StoredToken(row.name, row.sha256, row.role, row.market_id, row.vendor_id, row.created)


def _audit(
    session: Session,
    entity: str,
    name: str,
    before: Mapping[str, object] | None,
    after: Mapping[str, object] | None,
    *,
    actor: str,
    clock: Clock,
) -> None:
    action = "remove" if after is None else ("create" if before is None else "update")
    record_audit(
        session,
        actor=actor,
        action=action,
        entity=entity,
        entity_id=name,
        market_id=None,
        before=None if before is None else dict(before),
        after=None if after is None else dict(after),
        clock=clock,
    )
