"""Who may open the dashboard: the gateway's master key, or the read-only dashboard key. Pure: the keys and
the time are passed in.

A browser signs in once through the login form and then carries a session cookie. The cookie never holds a
key: it holds ``role.issued_at.mac`` where ``mac = HMAC-SHA256(key of that role, "margin-dashboard-session|role|
issued_at")``. Only someone who knows the key can mint one; it expires after :data:`SESSION_SECONDS`; changing
the key (and restarting the gateway) invalidates every cookie made with the old one. Signing out deletes the
cookie in the browser; a copied cookie stays valid until it expires (there is no server-side session store).

Keys and MACs are compared with :func:`hmac.compare_digest` (constant time), and every configured key is
compared, so the time taken does not reveal which key, if any, nearly matched.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

__all__ = ["SESSION_COOKIE", "SESSION_SECONDS", "DashboardKeys", "Role"]

Role = Literal["master", "dashboard"]
SESSION_COOKIE = "margin_dashboard"
SESSION_SECONDS = 12 * 3600
_CLOCK_SKEW = 60  # seconds a cookie may claim to come from the future (several gateways, clocks drift)


@dataclass(frozen=True, repr=False)
class DashboardKeys:
    """The keys that open the dashboard, and the names of the variables they come from (for error messages).
    ``repr`` is disabled so a key never lands in a log or a traceback."""

    master: str | None
    dashboard: str | None
    master_env: str = "MARGIN_MASTER_KEY"
    dashboard_env: str = "MARGIN_DASHBOARD_KEY"

    def __repr__(self) -> str:
        return (
            f"DashboardKeys(master={'set' if self.master else 'unset'}, "
            f"dashboard={'set' if self.dashboard else 'unset'})"
        )

    @property
    def enabled(self) -> bool:
        return bool(self.master or self.dashboard)

    def disabled_reason(self) -> str:
        return (
            f"the dashboard is disabled: set {self.dashboard_env} to a read-only dashboard key (or "
            f"{self.master_env} to the master key) in the gateway's environment and restart it "
            f"(gateway.dashboard_key_env names the variable)"
        )

    def _keys(self) -> list[tuple[Role, str]]:
        found: list[tuple[Role, str]] = []
        if self.master:
            found.append(("master", self.master))
        if self.dashboard:
            found.append(("dashboard", self.dashboard))
        return found

    def role_of(self, secret: str | None) -> Role | None:
        """The role a presented key grants, or None (a virtual key, a wrong key, no key)."""
        if not secret:
            return None
        given = secret.encode("utf-8")
        granted: Role | None = None
        for role, key in self._keys():
            # No early exit: compare against every key.
            if hmac.compare_digest(given, key.encode("utf-8")) and granted is None:
                granted = role
        return granted

    def session_token(self, role: Role, issued_at: int) -> str:
        """The cookie value for a session of ``role`` started at ``issued_at`` (Unix seconds)."""
        key = dict(self._keys()).get(role)
        if key is None:
            raise ValueError(f"no {role} key is configured")
        return f"{role}.{issued_at}.{_mac(key, role, issued_at)}"

    def role_of_session(self, token: str | None, now: int) -> Role | None:
        """The role of a valid, unexpired session cookie, or None."""
        if not token or token.count(".") != 2:
            return None
        role, issued_text, mac = token.split(".")
        if not issued_text.isdigit():
            return None
        issued_at = int(issued_text)
        if not (now - SESSION_SECONDS < issued_at <= now + _CLOCK_SKEW):
            return None
        key = dict(self._keys()).get(role)  # type: ignore[call-overload]
        if key is None:
            return None
        expected = _mac(key, role, issued_at)
        return role if hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode("ascii")) else None  # type: ignore[return-value]


def _mac(key: str, role: str, issued_at: int) -> str:
    message = f"margin-dashboard-session|{role}|{issued_at}".encode()
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()
