"""Webhook credentials: a Bearer token or a configured header, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping

Compare = Callable[[bytes, bytes], bool]


class TokenAuth:
    """Checks one request's headers against the configured token.

    With ``header = "Authorization"`` the value must be ``Bearer <token>``; with any other
    header (RustPBX's ``[rwi_webhook] headers`` can send e.g. ``X-RWI-Token``) the value is
    the token itself, or ``Bearer <token>``. No token configured means no check.
    """

    def __init__(self, token: str | None, header: str = "Authorization",
                 compare: Compare = hmac.compare_digest) -> None:
        self._token = token.encode("utf-8") if token else None
        self._bearer = b"bearer " + self._token if self._token else None
        self.header = header
        self.compare = compare

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def check(self, headers: Mapping[str, str]) -> bool:
        """True when the request carries the token (or when no token is configured)."""
        if self._token is None or self._bearer is None:
            return True
        value = headers.get(self.header)
        if value is None:
            return False
        given = value.strip().encode("utf-8", "surrogateescape")
        # The scheme is case-insensitive; the token is compared byte for byte, in full.
        if given[:7].lower() == b"bearer ":
            return self.compare(b"bearer " + given[7:], self._bearer)
        if self.header.lower() == "authorization":
            self.compare(given, self._bearer)  # same work on the failure path
            return False
        return self.compare(given, self._token)
