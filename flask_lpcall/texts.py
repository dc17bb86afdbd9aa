"""The catalog of every user-facing text, per locale, overridable with ``LPCALL_TEXTS``.

Texts use ``{name}`` placeholders, filled by :func:`render` on the server and by
the same rule in the browser (``static/lpcall/texts.js``). English is complete;
other locales fall back to English for a key they lack.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

EN: dict[str, str] = {
    # -- engagement window (consumer) -----------------------------------------
    "window.title": "Chat with us",
    "window.open": "Chat with us",
    "window.minimize": "Minimize chat",
    "window.name_label": "Your name",
    "window.start": "Start chat",
    "window.placeholder": "Type a message…",
    "window.send": "Send",
    "window.waiting": "Waiting for an agent…",
    "window.you": "You",
    "window.offline": "Connection lost. Reconnecting…",
    "window.too_long": "This message is too long.",
    # -- invitation (consumer) -------------------------------------------------
    "invite.VOICE_CALL": "{agent} invites you to a voice call",
    "invite.VIDEO_CALL": "{agent} invites you to a video call",
    "invite.accept": "Accept",
    "invite.decline": "Decline",
    # -- call UI (both sides) --------------------------------------------------
    "call.loading": "Starting the call…",
    "call.connecting": "Connecting…",
    "call.reconnecting": "Reconnecting…",
    "call.peer_reconnecting": "{name} is reconnecting…",
    "call.mute": "Mute microphone",
    "call.unmute": "Unmute microphone",
    "call.camera_off": "Turn camera off",
    "call.camera_on": "Turn camera on",
    "call.switch_camera": "Switch camera",
    "call.hangup": "Hang up",
    "call.remote_muted": "{name} is muted",
    "call.remote_camera_off": "{name} turned the camera off",
    "call.timer": "Call duration",
    "call.local_preview": "Your camera",
    "call.remote_media": "{name}",
    "call.ended": "Call ended",
    "call.voice_avatar": "Voice call with {name}",
    # -- sessionError.msg (ids verbatim from seed 003) -------------------------
    "error.UNABLE_TO_CONNECT": "We could not connect the call. Please check your network and try again.",
    "error.BROWSER_NOT_SUPPORTED": "Your browser does not support voice and video calls. Please use a current Chrome, Firefox, Safari or Edge over HTTPS.",
    "error.NO_CAMERA_ACCESS": "We cannot access your camera or microphone. Please allow access and try again.",
    "error.AGENT_DISCONNECTED": "The agent got disconnected.",
    # -- transcript system messages --------------------------------------------
    "mode.VOICE_CALL": "voice call",
    "mode.VIDEO_CALL": "video call",
    "system.agent_joined": "{agent} joined the conversation",
    "system.invited": "{agent} sent a {mode} invitation",
    "system.accepted": "The {mode} invitation was accepted",
    "system.declined": "The {mode} invitation was declined",
    "system.cancelled": "{agent} cancelled the {mode} invitation",
    "system.expired": "The {mode} invitation expired",
    "system.ended": "The {mode} ended after {duration}",
    "system.failed": "The {mode} ended: {error}",
    # -- agent workspace -------------------------------------------------------
    "agent.title": "Agent workspace",
    "agent.login": "Log in",
    "agent.logout": "Log out",
    "agent.username": "User name",
    "agent.password": "Password",
    "agent.bad_login": "Unknown user name or password.",
    "agent.conversations": "Conversations",
    "agent.queue": "Waiting",
    "agent.mine": "Mine",
    "agent.take": "Take",
    "agent.no_conversation": "Select a conversation",
    "agent.voice_call": "Voice call",
    "agent.video_call": "Video call",
    "agent.cancel_invite": "Cancel invitation",
    "agent.no_cobrowse": "The visitor's window does not support calls.",
    "agent.call_in_progress": "A call is already in progress.",
    "agent.reports": "Reports",
    # -- manager dashboard (reporting.py, templates/lpcall/reports.html) --------
    "report.title": "Call reports",
    "report.filters": "Filters",
    "report.since": "From",
    "report.until": "To",
    "report.agent": "Agent",
    "report.all_agents": "All agents",
    "report.mode": "Mode",
    "report.all_modes": "All modes",
    "report.apply": "Apply",
    "report.total": "Calls",
    "report.accept_rate": "Accept rate",
    "report.avg_duration": "Average duration",
    "report.p90_duration": "90th percentile duration",
    "report.outcomes": "Outcomes",
    "report.outcome.completed": "Completed",
    "report.outcome.declined": "Declined",
    "report.outcome.cancelled": "Cancelled",
    "report.outcome.expired": "Expired",
    "report.outcome.error": "Error",
    "report.chart_title": "Calls per day",
    "report.chart_bar": "{day}: {count} calls",
    "report.recent": "Latest calls",
    "report.col.invited": "Invited (UTC)",
    "report.col.duration": "Duration",
    "report.col.ended_by": "Ended by",
    "report.col.participants": "Participants",
    "report.col.outcome": "Outcome",
    "report.by.agent": "Agent",
    "report.by.consumer": "Visitor",
    "report.by.system": "System",
    "report.none": "No calls in this period.",
    "report.bad_filter": "Invalid filter {field}: {problem}",
    "report.export_csv": "Download CSV",
    "report.export_json": "Download JSON",
    "report.back": "Back to the workspace",
    # -- pre-call network check (netcheck.py, static/lpcall/netcheck.js) -------
    "netcheck.title": "Check your connection for calls",
    "netcheck.intro": "This check connects to our call server the way a call does and measures your connection. It takes about ten seconds and does not use your camera or microphone.",
    "netcheck.start": "Start the check",
    "netcheck.again": "Check again",
    "netcheck.running": "Checking your connection…",
    "netcheck.path_label": "Connection path",
    "netcheck.path.host": "Direct (same network)",
    "netcheck.path.srflx": "Direct (through your router)",
    "netcheck.path.relay": "Through a relay server",
    "netcheck.path.none": "No direct path",
    "netcheck.rtt_label": "Round-trip time",
    "netcheck.bitrate_label": "Bitrate reached",
    "netcheck.ms": "{value} ms",
    "netcheck.kbps": "{value} kbit/s",
    "netcheck.needs": "Video calls need {video} kbit/s ({degraded} kbit/s at reduced quality); voice calls need {voice} kbit/s.",
    "netcheck.verdict.video": "Your connection is ready for video calls.",
    "netcheck.verdict.degraded": "Video calls will work, but at reduced quality.",
    "netcheck.verdict.voice": "Your connection is good enough for voice calls, but not for video.",
    "netcheck.verdict.insufficient": "Your connection is too slow for calls right now.",
    "netcheck.verdict.no_path": "Calls cannot connect from this network: there is no direct path to our call server. A firewall may be blocking it; please try another network.",
    "netcheck.short.video": "ready for video",
    "netcheck.short.degraded": "video at reduced quality",
    "netcheck.short.voice": "voice only",
    "netcheck.short.insufficient": "too slow for calls",
    "netcheck.short.no_path": "no direct path",
    "netcheck.high_latency": "The delay is high ({rtt} ms), so you may notice lag.",
    "netcheck.failed": "The check could not run: {error}",
    "netcheck.shared": "Your agent can see this result.",
    "system.netcheck": "Network check: {verdict} ({path}, {rtt} ms, {bitrate} kbit/s)",
    # -- demo agent (demo.py) ----------------------------------------------------
    "demo.greeting": "Hi, I'm {agent}, the demo agent. Type \"call me\" and I'll invite you to a video call.",
    "demo.trigger": "call me",
    "demo.calling": "Calling you now: accept the invitation to see a test pattern with your own picture and voice echoed back.",
    "demo.unavailable": "Sorry, I can't start a call in this conversation: {reason}",
}

DE: dict[str, str] = {
    "window.title": "Chatten Sie mit uns",
    "window.open": "Chatten Sie mit uns",
    "window.minimize": "Chat minimieren",
    "window.name_label": "Ihr Name",
    "window.start": "Chat starten",
    "window.placeholder": "Nachricht eingeben…",
    "window.send": "Senden",
    "window.waiting": "Warten auf einen Mitarbeiter…",
    "window.you": "Sie",
    "window.offline": "Verbindung unterbrochen. Verbinde neu…",
    "window.too_long": "Diese Nachricht ist zu lang.",
    "invite.VOICE_CALL": "{agent} lädt Sie zu einem Sprachanruf ein",
    "invite.VIDEO_CALL": "{agent} lädt Sie zu einem Videoanruf ein",
    "invite.accept": "Annehmen",
    "invite.decline": "Ablehnen",
    "call.loading": "Anruf wird gestartet…",
    "call.connecting": "Verbinde…",
    "call.reconnecting": "Verbindung wird wiederhergestellt…",
    "call.peer_reconnecting": "{name} verbindet sich neu…",
    "call.mute": "Mikrofon stummschalten",
    "call.unmute": "Mikrofon einschalten",
    "call.camera_off": "Kamera ausschalten",
    "call.camera_on": "Kamera einschalten",
    "call.switch_camera": "Kamera wechseln",
    "call.hangup": "Auflegen",
    "call.remote_muted": "{name} ist stummgeschaltet",
    "call.remote_camera_off": "{name} hat die Kamera ausgeschaltet",
    "call.timer": "Gesprächsdauer",
    "call.local_preview": "Ihre Kamera",
    "call.ended": "Anruf beendet",
    "call.voice_avatar": "Sprachanruf mit {name}",
    "error.UNABLE_TO_CONNECT": "Der Anruf konnte nicht verbunden werden. Bitte prüfen Sie Ihre Verbindung und versuchen Sie es erneut.",
    "error.BROWSER_NOT_SUPPORTED": "Ihr Browser unterstützt keine Sprach- und Videoanrufe. Bitte nutzen Sie einen aktuellen Chrome, Firefox, Safari oder Edge über HTTPS.",
    "error.NO_CAMERA_ACCESS": "Wir können nicht auf Ihre Kamera oder Ihr Mikrofon zugreifen. Bitte erlauben Sie den Zugriff und versuchen Sie es erneut.",
    "error.AGENT_DISCONNECTED": "Die Verbindung zum Mitarbeiter wurde getrennt.",
    "mode.VOICE_CALL": "Sprachanruf",
    "mode.VIDEO_CALL": "Videoanruf",
    "system.agent_joined": "{agent} ist dem Gespräch beigetreten",
    "system.invited": "{agent} hat eine Einladung zum {mode} gesendet",
    "system.accepted": "Die Einladung zum {mode} wurde angenommen",
    "system.declined": "Die Einladung zum {mode} wurde abgelehnt",
    "system.cancelled": "{agent} hat die Einladung zum {mode} zurückgezogen",
    "system.expired": "Die Einladung zum {mode} ist abgelaufen",
    "system.ended": "Der {mode} wurde nach {duration} beendet",
    "system.failed": "Der {mode} wurde beendet: {error}",
    "agent.title": "Arbeitsplatz",
    "agent.login": "Anmelden",
    "agent.logout": "Abmelden",
    "agent.username": "Benutzername",
    "agent.password": "Passwort",
    "agent.bad_login": "Unbekannter Benutzername oder falsches Passwort.",
    "agent.conversations": "Gespräche",
    "agent.queue": "Wartend",
    "agent.mine": "Meine",
    "agent.take": "Übernehmen",
    "agent.no_conversation": "Wählen Sie ein Gespräch",
    "agent.voice_call": "Sprachanruf",
    "agent.video_call": "Videoanruf",
    "agent.cancel_invite": "Einladung zurückziehen",
    "agent.no_cobrowse": "Das Fenster des Besuchers unterstützt keine Anrufe.",
    "agent.call_in_progress": "Es läuft bereits ein Anruf.",
    "agent.reports": "Berichte",
    "report.title": "Anrufberichte",
    "report.filters": "Filter",
    "report.since": "Von",
    "report.until": "Bis",
    "report.agent": "Mitarbeiter",
    "report.all_agents": "Alle Mitarbeiter",
    "report.mode": "Art",
    "report.all_modes": "Alle Arten",
    "report.apply": "Anwenden",
    "report.total": "Anrufe",
    "report.accept_rate": "Annahmequote",
    "report.avg_duration": "Durchschnittliche Dauer",
    "report.p90_duration": "Dauer (90. Perzentil)",
    "report.outcomes": "Ergebnisse",
    "report.outcome.completed": "Abgeschlossen",
    "report.outcome.declined": "Abgelehnt",
    "report.outcome.cancelled": "Zurückgezogen",
    "report.outcome.expired": "Abgelaufen",
    "report.outcome.error": "Fehler",
    "report.chart_title": "Anrufe pro Tag",
    "report.chart_bar": "{day}: {count} Anrufe",
    "report.recent": "Letzte Anrufe",
    "report.col.invited": "Eingeladen (UTC)",
    "report.col.duration": "Dauer",
    "report.col.ended_by": "Beendet von",
    "report.col.participants": "Teilnehmer",
    "report.col.outcome": "Ergebnis",
    "report.by.agent": "Mitarbeiter",
    "report.by.consumer": "Besucher",
    "report.by.system": "System",
    "report.none": "Keine Anrufe in diesem Zeitraum.",
    "report.bad_filter": "Ungültiger Filter {field}: {problem}",
    "report.export_csv": "CSV herunterladen",
    "report.export_json": "JSON herunterladen",
    "report.back": "Zurück zum Arbeitsplatz",
    "netcheck.title": "Verbindung für Anrufe prüfen",
    "netcheck.intro": "Diese Prüfung verbindet sich wie ein Anruf mit unserem Anrufserver und misst Ihre Verbindung. Sie dauert etwa zehn Sekunden und nutzt weder Kamera noch Mikrofon.",
    "netcheck.start": "Prüfung starten",
    "netcheck.again": "Erneut prüfen",
    "netcheck.running": "Ihre Verbindung wird geprüft…",
    "netcheck.path_label": "Verbindungsweg",
    "netcheck.path.host": "Direkt (gleiches Netz)",
    "netcheck.path.srflx": "Direkt (über Ihren Router)",
    "netcheck.path.relay": "Über einen Relay-Server",
    "netcheck.path.none": "Kein direkter Weg",
    "netcheck.rtt_label": "Umlaufzeit",
    "netcheck.bitrate_label": "Erreichte Bitrate",
    "netcheck.ms": "{value} ms",
    "netcheck.kbps": "{value} kbit/s",
    "netcheck.needs": "Videoanrufe brauchen {video} kbit/s ({degraded} kbit/s bei reduzierter Qualität), Sprachanrufe {voice} kbit/s.",
    "netcheck.verdict.video": "Ihre Verbindung ist bereit für Videoanrufe.",
    "netcheck.verdict.degraded": "Videoanrufe funktionieren, aber mit reduzierter Qualität.",
    "netcheck.verdict.voice": "Ihre Verbindung reicht für Sprachanrufe, aber nicht für Video.",
    "netcheck.verdict.insufficient": "Ihre Verbindung ist derzeit zu langsam für Anrufe.",
    "netcheck.verdict.no_path": "Aus diesem Netz kann kein Anruf verbunden werden: Es gibt keinen direkten Weg zu unserem Anrufserver. Vielleicht blockiert eine Firewall die Verbindung; bitte versuchen Sie ein anderes Netz.",
    "netcheck.short.video": "bereit für Video",
    "netcheck.short.degraded": "Video mit reduzierter Qualität",
    "netcheck.short.voice": "nur Sprache",
    "netcheck.short.insufficient": "zu langsam für Anrufe",
    "netcheck.short.no_path": "kein direkter Weg",
    "netcheck.high_latency": "Die Verzögerung ist hoch ({rtt} ms), Sie bemerken eventuell Verzögerungen.",
    "netcheck.failed": "Die Prüfung konnte nicht laufen: {error}",
    "netcheck.shared": "Ihr Mitarbeiter sieht dieses Ergebnis.",
    "system.netcheck": "Netzwerkprüfung: {verdict} ({path}, {rtt} ms, {bitrate} kbit/s)",
    "demo.greeting": "Hallo, ich bin {agent}, der Demo-Mitarbeiter. Schreiben Sie \"ruf mich an\" und ich lade Sie zu einem Videoanruf ein.",
    "demo.trigger": "ruf mich an",
    "demo.calling": "Ich rufe Sie jetzt an: Nehmen Sie die Einladung an, um ein Testbild mit Ihrem eigenen Bild und Ihrer Stimme als Echo zu sehen.",
    "demo.unavailable": "Leider kann ich in diesem Gespräch keinen Anruf starten: {reason}",
}

CATALOG: dict[str, dict[str, str]] = {"en": EN, "de": DE}


def build_texts(locale: str, overrides: Mapping[str, Any]) -> dict[str, str]:
    """The effective texts for ``locale`` with ``LPCALL_TEXTS`` applied, or ConfigError."""
    if locale not in CATALOG:
        raise ConfigError("LPCALL_LOCALE", f"must be one of {sorted(CATALOG)} (got {locale!r})")
    texts = {**EN, **CATALOG[locale]}
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in CATALOG and isinstance(value, Mapping):
            if key == locale:
                flat.update(value)
            else:  # overrides for another locale are checked but not applied
                _check(value)
        else:
            flat[key] = value
    _check(flat)
    texts.update(flat)
    return texts


def _check(overrides: Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if key not in EN:
            raise ConfigError("LPCALL_TEXTS", f"has unknown key {key!r}; known keys are listed in flask_lpcall/texts.py")
        if not isinstance(value, str) or not value:
            raise ConfigError("LPCALL_TEXTS", f"[{key!r}] must be a non-empty string (got {value!r})")


def render(texts: Mapping[str, str], key: str, **params: Any) -> str:
    """Fill ``{name}`` placeholders; unknown placeholders are left as they are."""
    text = texts.get(key, key)
    for name, value in params.items():
        text = text.replace("{" + name + "}", str(value))
    return text
