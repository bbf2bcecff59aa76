"""Admin API under /api/ (JWT). ``setup(app, services)`` mounts its routes; the server calls it."""
from __future__ import annotations

from typing import Any

__all__ = ["setup"]


def setup(app: Any, services: Any) -> None:
    """Mount admin routes on ``app``. Filled in by the tenancy/admin work."""
    return None
