"""Authentication and SMART scope checks of the gateway (placeholder interface)."""

from __future__ import annotations

from collections.abc import Iterable


def require_scopes(read: Iterable[str] = (), write: Iterable[str] = ()) -> None:
    """Raise ``FhirError`` 403 unless the caller's scopes cover reading ``read`` and writing
    ``write`` resource types. A no-op while authentication is off."""
    return None
