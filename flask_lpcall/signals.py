"""Blinker signals a brand can connect to (CRM hooks, reporting).

Each is sent with the Flask app as sender and keyword ``call`` (a dict, see
``CallSession.to_dict``) or ``conversation``. Connect with
``call_ended.connect(fn, app)``.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

conversation_opened = _signals.signal("lpcall.conversation-opened")
message_sent = _signals.signal("lpcall.message-sent")
call_invited = _signals.signal("lpcall.call-invited")
call_accepted = _signals.signal("lpcall.call-accepted")
call_connected = _signals.signal("lpcall.call-connected")
call_ended = _signals.signal("lpcall.call-ended")
