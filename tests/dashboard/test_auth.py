"""Dashboard keys and session cookies (margin.dashboard._auth)."""

from __future__ import annotations

from margin.dashboard._auth import SESSION_SECONDS, DashboardKeys

KEYS = DashboardKeys(master="mk-master-secret", dashboard="dash-read-only-secret")
NOW = 1_800_000_000


def test_only_the_master_and_dashboard_keys_grant_a_role():
    assert KEYS.role_of("mk-master-secret") == "master"
    assert KEYS.role_of("dash-read-only-secret") == "dashboard"
    for wrong in ("mk-virtual-key", "dash-read-only-secre", "dash-read-only-secret ", "", None):
        assert KEYS.role_of(wrong) is None
    only_dashboard = DashboardKeys(master=None, dashboard="d")
    assert only_dashboard.role_of("d") == "dashboard" and only_dashboard.role_of("mk-master-secret") is None


def test_no_key_configured_disables_the_dashboard_and_says_which_variable_to_set():
    keys = DashboardKeys(master=None, dashboard=None, master_env="MK", dashboard_env="DASH_KEY")
    assert not keys.enabled and keys.role_of("anything") is None
    reason = keys.disabled_reason()
    assert "DASH_KEY" in reason and "MK" in reason and "restart" in reason


def test_session_cookie_round_trip_never_holds_the_key():
    token = KEYS.session_token("dashboard", NOW)
    assert "dash-read-only-secret" not in token and "mk-master-secret" not in token
    assert KEYS.role_of_session(token, NOW) == "dashboard"
    assert KEYS.role_of_session(KEYS.session_token("master", NOW), NOW + 60) == "master"


def test_session_cookie_expires_and_cannot_be_forged():
    token = KEYS.session_token("dashboard", NOW)
    assert KEYS.role_of_session(token, NOW + SESSION_SECONDS - 1) == "dashboard"
    assert KEYS.role_of_session(token, NOW + SESSION_SECONDS) is None  # expired
    assert KEYS.role_of_session(KEYS.session_token("dashboard", NOW + 3600), NOW) is None  # from the future
    role, issued, mac = token.split(".")
    assert KEYS.role_of_session(f"master.{issued}.{mac}", NOW) is None  # a dashboard MAC does not make a master
    assert KEYS.role_of_session(f"{role}.{int(issued) + 1}.{mac}", NOW + 5) is None  # another time, same MAC
    flipped = mac[:-1] + ("1" if mac[-1] == "0" else "0")
    assert KEYS.role_of_session(f"{role}.{issued}.{flipped}", NOW) is None
    assert KEYS.role_of_session(f"{role}.{issued}.{'0' * len(mac)}", NOW) is None
    for junk in ("", "dashboard", "a.b.c", "dashboard.x.y", "dashboard.1.2.3", "dashboard.-5.ab", "☃.1.☃"):
        assert KEYS.role_of_session(junk, NOW) is None
    # Another key (rotated, or another deployment) does not accept the cookie.
    rotated = DashboardKeys(master="mk-master-secret", dashboard="a-new-dashboard-key")
    assert rotated.role_of_session(token, NOW) is None


def test_repr_never_shows_a_key():
    assert "secret" not in repr(KEYS) and "set" in repr(KEYS)
