"""Admin users, failed-login bookkeeping (lockout) and the JWT ``jti`` denylist.

Password hashing lives in ``gateway/admin/passwords.py``; this file only stores the hash.
"""
from __future__ import annotations

from typing import Any

from .base import Repository, new_id, repository

ROLES = ("admin", "member")
_PUBLIC = "id, org_id, email, role, disabled, created_at, last_login_at"


@repository("users")
class UserRepo(Repository):
    async def create(self, *, org_id: str, email: str, password_hash: str, role: str) -> dict[str, Any]:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        user = {
            "id": new_id("usr_"), "org_id": org_id, "email": email.strip().lower(), "password_hash": password_hash,
            "role": role, "created_at": self.store.clock(),
        }
        await self.store.execute(
            "INSERT INTO users (id, org_id, email, password_hash, role, created_at) "
            "VALUES (:id, :org_id, :email, :password_hash, :role, :created_at)", user,
        )
        return await self.get(user["id"])  # type: ignore[return-value]

    async def get(self, user_id: str, org_id: str | None = None) -> dict[str, Any] | None:
        if org_id is None:
            row = await self.store.fetchone(f"SELECT {_PUBLIC} FROM users WHERE id = ?", (user_id,))
        else:
            row = await self.store.fetchone(f"SELECT {_PUBLIC} FROM users WHERE id = ? AND org_id = ?", (user_id, org_id))
        return dict(row) if row else None

    async def credentials(self, email: str) -> dict[str, Any] | None:
        """The user row including ``password_hash`` (login only)."""
        row = await self.store.fetchone("SELECT * FROM users WHERE email = ?", (email.strip().lower(),))
        return dict(row) if row else None

    async def count(self) -> int:
        row = await self.store.fetchone("SELECT COUNT(*) FROM users")
        return int(row[0]) if row else 0

    async def list(self, org_id: str, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        rows = await self.store.fetchall(
            f"SELECT {_PUBLIC} FROM users WHERE org_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?", (org_id, limit, offset)
        )
        total = await self.store.fetchone("SELECT COUNT(*) FROM users WHERE org_id = ?", (org_id,))
        return [dict(r) for r in rows], int(total[0]) if total else 0

    async def delete(self, user_id: str, org_id: str) -> bool:
        return await self.store.execute("DELETE FROM users WHERE id = ? AND org_id = ?", (user_id, org_id)) > 0

    async def set_password(self, user_id: str, password_hash: str) -> None:
        await self.store.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))

    async def touch_login(self, user_id: str, when: float) -> None:
        await self.store.execute("UPDATE users SET last_login_at = ? WHERE id = ?", (when, user_id))

    # lockout --------------------------------------------------------------------
    async def locked_until(self, email: str) -> float | None:
        row = await self.store.fetchone("SELECT locked_until FROM login_failures WHERE email = ?", (email.strip().lower(),))
        return None if row is None or row[0] is None else float(row[0])

    async def record_failure(self, email: str, now: float, *, window: float, max_failures: int, lock_for: float) -> float | None:
        """Count a failed login; returns ``locked_until`` when this failure locks the account."""
        email = email.strip().lower()
        async with self.store.tx() as db:
            async with db.execute("SELECT failures, first_at FROM login_failures WHERE email = ?", (email,)) as cur:
                row = await cur.fetchone()
            if row is None or now - float(row[1]) > window:
                failures, first_at = 1, now
            else:
                failures, first_at = int(row[0]) + 1, float(row[1])
            locked = now + lock_for if failures >= max_failures else None
            await db.execute(
                "INSERT INTO login_failures (email, failures, first_at, locked_until) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(email) DO UPDATE SET failures = excluded.failures, first_at = excluded.first_at, "
                "locked_until = excluded.locked_until",
                (email, 0 if locked else failures, now if locked else first_at, locked),
            )
        return locked

    async def clear_failures(self, email: str) -> None:
        await self.store.execute("DELETE FROM login_failures WHERE email = ?", (email.strip().lower(),))

    # JWT denylist -----------------------------------------------------------------
    async def revoke_token(self, jti: str, expires_at: float) -> None:
        await self.store.execute("INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)", (jti, expires_at))

    async def is_token_revoked(self, jti: str) -> bool:
        return await self.store.fetchone("SELECT 1 FROM revoked_tokens WHERE jti = ?", (jti,)) is not None

    async def purge_revoked(self, now: float) -> int:
        return await self.store.execute("DELETE FROM revoked_tokens WHERE expires_at < ?", (now,))
