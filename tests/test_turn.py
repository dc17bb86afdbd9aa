"""TURN REST credentials (coturn ``use-auth-secret``): the format, and a real coturn accepting or refusing them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from servers import TURNSERVER, TurnServer, start_turn
from support import require

from flask_lpcall.config import Settings
from flask_lpcall.core.ice import ice_config, turn_credentials
from flask_lpcall.errors import ConfigError

SECRET = "lpcall-test-secret"


# -- the credential format (coturn's TURN REST API rules) ------------------------------------
def test_username_is_expiry_colon_id_and_password_is_base64_hmac_sha1() -> None:
    username, password = turn_credentials(SECRET, "consumer-42", ttl=600, now=1_700_000_000.7)
    assert username == "1700000600:consumer-42"
    expected = base64.b64encode(hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()).decode()
    assert password == expected
    assert len(base64.b64decode(password)) == 20  # a SHA-1 digest


def test_password_matches_openssl() -> None:
    """An independent implementation (openssl) computes the same password from the same username."""
    require("openssl", bool(shutil.which("openssl")), "apt-get install openssl")
    username, password = turn_credentials(SECRET, "agent:bob", ttl=3600, now=1_000_000)
    digest = subprocess.run(["openssl", "dgst", "-binary", "-sha1", "-hmac", SECRET], input=username.encode(),
                            capture_output=True, check=True).stdout
    assert password == base64.b64encode(digest).decode()
    assert username.split(":", 1)[0] == "1003600", "coturn reads the timestamp before the first ':'"


def test_expiry_follows_the_clock_and_ttl() -> None:
    before = int(time.time())
    username, _ = turn_credentials(SECRET, "x", ttl=120)
    assert before + 120 <= int(username.split(":")[0]) <= int(time.time()) + 120


def _settings(**overrides: Any) -> Settings:
    config: dict[str, Any] = {"SECRET_KEY": "k", **overrides}
    return Settings.from_config(config)


def test_ice_config_adds_turn_with_credentials_and_relay_policy() -> None:
    settings = _settings(LPCALL_ICE_SERVERS=[{"urls": ["stun:stun.example.com:3478"]}],
                         LPCALL_TURN_URLS=["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"],
                         LPCALL_TURN_SECRET=SECRET, LPCALL_TURN_TTL=900, LPCALL_FORCE_RELAY=True)
    cfg = ice_config(settings, "c-1", now=2_000_000_000)
    assert cfg["iceTransportPolicy"] == "relay"
    assert cfg["iceServers"][0] == {"urls": ["stun:stun.example.com:3478"]}
    turn = cfg["iceServers"][1]
    assert turn["urls"] == ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"]
    assert turn["username"] == "2000000900:c-1"
    assert turn["credential"] == turn_credentials(SECRET, "c-1", 900, now=2_000_000_000)[1]


def test_ice_config_without_turn() -> None:
    cfg = ice_config(_settings(), "c-1")
    assert cfg == {"iceServers": [], "iceTransportPolicy": "all"}


def test_turn_config_is_validated() -> None:
    with pytest.raises(ConfigError) as info:
        _settings(LPCALL_TURN_URLS=["turn:t.example.com"])
    assert info.value.field == "LPCALL_TURN_SECRET"
    with pytest.raises(ConfigError) as info:
        _settings(LPCALL_TURN_URLS=["http://t.example.com"], LPCALL_TURN_SECRET=SECRET)
    assert "LPCALL_TURN_URLS" in str(info.value)
    with pytest.raises(ConfigError) as info:
        _settings(LPCALL_FORCE_RELAY=True)
    assert info.value.field == "LPCALL_FORCE_RELAY"


# -- a real coturn --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def turn() -> Iterator[TurnServer]:
    require("turnserver", bool(shutil.which("turnserver")) or bool(TURNSERVER), "apt-get install coturn")
    server = start_turn(secret=SECRET)
    yield server
    server.stop()


GATHER_RELAY_JS = """
async ({iceServers}) => {
  const pc = new RTCPeerConnection({iceServers, iceTransportPolicy: 'relay'});
  const candidates = [];
  const errors = [];
  pc.onicecandidate = e => { if (e.candidate) candidates.push(e.candidate.candidate); };
  pc.onicecandidateerror = e => errors.push({code: e.errorCode, text: e.errorText, url: e.url});
  pc.createDataChannel('probe');
  await pc.setLocalDescription();
  await new Promise(resolve => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
  });
  pc.close();
  return {relay: candidates.filter(c => / typ relay /.test(c)), errors};
}
"""


def _gather(browser: Any, server: TurnServer, secret: str, now: float | None = None, ttl: int = 600) -> dict[str, Any]:
    settings = _settings(LPCALL_TURN_URLS=server.urls, LPCALL_TURN_SECRET=secret, LPCALL_TURN_TTL=ttl,
                         LPCALL_FORCE_RELAY=True)
    cfg = ice_config(settings, "consumer-1", now=now)
    page = browser.new_page()
    try:
        return page.evaluate(GATHER_RELAY_JS, {"iceServers": cfg["iceServers"]})  # type: ignore[no-any-return]
    finally:
        page.close()


def test_coturn_accepts_a_fresh_credential(browser: Any, turn: TurnServer) -> None:
    result = _gather(browser, turn, SECRET)
    assert result["relay"], f"no relay candidate: {result['errors']}"
    assert all("127.0.0.1" in c for c in result["relay"])


def test_coturn_refuses_an_expired_credential(browser: Any, turn: TurnServer) -> None:
    result = _gather(browser, turn, SECRET, now=time.time() - 3600, ttl=600)  # expired 50 minutes ago
    assert result["relay"] == []
    assert any(e["code"] == 401 for e in result["errors"]), result["errors"]


def test_coturn_refuses_a_credential_made_with_another_secret(browser: Any, turn: TurnServer) -> None:
    result = _gather(browser, turn, "not-the-coturn-secret")
    assert result["relay"] == []
    assert any(e["code"] == 401 for e in result["errors"]), result["errors"]
