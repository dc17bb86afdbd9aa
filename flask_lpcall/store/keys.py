"""Every store key and bus channel of the package, in one place (PROTOCOL §6).

Keys hold state (JSON values, lists, sets) with a TTL; channels carry bus messages
(``store.publish``/``subscribe``). Whoever reads or writes a key names it through here.
"""

from __future__ import annotations

# -- conversations (core/conversations.py) -----------------------------------------------------
#: set of the open conversations' ids
K_OPEN = "convs:open"
#: hash of the available agents' sockets
K_AVAILABLE = "agents:available"
#: channel of every agent socket: conversation metadata, last messages, logouts
CH_AGENTS = "agents"


def k_conv(conv_id: str) -> str:
    return f"conv:{conv_id}"


def k_events(conv_id: str) -> str:
    return f"conv:{conv_id}:events"


def k_last(conv_id: str) -> str:
    return f"conv:{conv_id}:last"


def k_consumer_convs(consumer_id: str) -> str:
    return f"consumer:{consumer_id}:convs"


def k_agent_convs(agent_id: str) -> str:
    return f"agent:{agent_id}:convs"


def k_agent_socket(socket_id: str) -> str:
    return f"agentsock:{socket_id}"


def ch_conv(conv_id: str) -> str:
    """Channel of a conversation's transcript events."""
    return f"conv:{conv_id}"


def ch_consumer(consumer_id: str) -> str:
    """Channel of a consumer's conversation changes."""
    return f"consumer:{consumer_id}"


# -- calls (core/callmanager.py, core/presence.py, sockets/call.py) -----------------------------
#: the lease of the one sweeper of expired invitations and lost participants (issue 20)
SWEEP_LEASE = "lpcall:sweeper"


def call_key(service_id: str) -> str:
    """The call record (PROTOCOL §10)."""
    return f"call:{service_id}"


def presence_key(service_id: str, role: str) -> str:
    """Which socket (and tab) of ``role`` is in the call, refreshed each heartbeat."""
    return f"presence:{service_id}:{role}"


def page_key(consumer_id: str) -> str:
    """The visitor's open pages (an invitation waits while one is open)."""
    return f"page:{consumer_id}"


def call_channel(service_id: str, role: str) -> str:
    """Channel of the frames for one participant of a call."""
    return f"call:{service_id}:{role}"


# -- agents' logins (web/auth.py) ----------------------------------------------------------------
#: prefix of an ended login: ``agent-logout:<sid>`` -> agent id (kept as long as a session cookie lives)
SESSION_KEY_PREFIX = "agent-logout:"


def session_key(sid: str) -> str:
    return SESSION_KEY_PREFIX + sid


# -- the standalone call page (web/callpage.py) ---------------------------------------------------
def calllink_key(jti: str) -> str:
    """A call link's first use (and the claim of the browser that used it)."""
    return f"calllink:{jti}"


def handoff_key(jti: str) -> str:
    """A "continue on my phone" link: ``{"sid", "state": waiting|opened|cancelled}``."""
    return f"handoff:{jti}"


# -- the network check (peer/responder.py) --------------------------------------------------------
def check_key(check_id: str) -> str:
    """A check's server-side measurements, shared by the workers."""
    return f"netcheck:{check_id}"
