// Keeping a call alive (issue 5), attached to every CallEngine (engine.js calls the hooks):
//
// * heartbeats: a `ping` every `heartbeat` seconds (from the `joined` frame); a socket that shows
//   no sign of life for 2.5 heartbeats is dead and replaced;
// * a lost signaling socket is reopened with backoff, with a fresh token when the engine has a
//   `refreshToken()` (consumer: /api/call/resume, agent: call.Active), until the call is closed;
//   the server keeps the call for LPCALL_RECONNECT_GRACE meanwhile and says `closed` if not;
// * ICE restart: when ICE disconnects (for a moment) or fails, or the network changes, the peer
//   connection restarts ICE (`restartIce()`: a new offer with fresh ICE credentials, perfect
//   negotiation handles glare), up to `iceRestartAttempts` times; UNABLE_TO_CONNECT only after that;
// * while the other participant is away (reload, lost socket), nothing fails: its return
//   brings a fresh peer connection, its absence past the grace period a `closed` frame.

import {tabId} from './resume.js';

const DISCONNECT_WAIT_MS = 1500;
const BACKOFF_MS = [0, 250, 500, 1000, 2000, 3000];

export class Recovery {
  constructor(engine, opts = {}) {
    this.engine = engine;
    this.tab = opts.tab || tabId();
    this.refreshToken = typeof opts.refreshToken === 'function' ? opts.refreshToken : null;
    const attempts = Number(opts.iceRestartAttempts);
    this.maxRestarts = Number.isFinite(attempts) && attempts >= 0 ? attempts : 3;
    this.heartbeatMs = 10000;
    this.iceRestarts = 0;     // total ICE restarts of this call on this page (tests read it)
    this.attempts = 0;        // restarts since ICE was last connected
    this.networkRestarts = 0; // restarts because the network changed
    this.socketRetries = 0;
    this.lastSeen = Date.now();
    this._beat = null;
    this._pingSince = null;   // when the oldest unanswered ping went out
    this._iceTimer = null;
    this._reconnecting = false;
    this._stopped = false;
    this._selfRestored = false;
    this._onNetwork = () => this.networkChanged();
    window.addEventListener('online', this._onNetwork);
    const conn = navigator.connection;
    if (conn && conn.addEventListener) conn.addEventListener('change', this._onNetwork);
    engine.addEventListener('peer', (e) => {
      if (!e.detail.present) {  // the other side is away: no connect timeout, no restarts
        engine._clearConnectTimer();
        this._clearIce();
      }
    });
    engine.addEventListener('closed', () => this.stop());
    engine.addEventListener('destroyed', () => this.stop());
  }

  query() {
    return `&tab=${encodeURIComponent(this.tab)}`;
  }

  // -- signaling socket ---------------------------------------------------------------------
  seen() {
    this.lastSeen = Date.now();
    this._pingSince = null;  // any frame answers the outstanding ping
  }

  joined(frame) {
    this.seen();
    this.socketRetries = 0;
    this._reconnecting = false;
    if (Number(frame.heartbeat) > 0) this.heartbeatMs = Math.max(200, Number(frame.heartbeat) * 1000);
    if (Number.isInteger(frame.iceRestartAttempts) && frame.iceRestartAttempts >= 0) this.maxRestarts = frame.iceRestartAttempts;
    if (frame.selfState && !this._selfRestored) {  // e.g. an agent's reload: mute / camera as before
      this._selfRestored = true;
      const e = this.engine;
      if (Boolean(frame.selfState.muted) !== e.muted) e.setMuted(frame.selfState.muted);
      if (e.mode === 'VIDEO_CALL' && Boolean(frame.selfState.cameraOff) !== e.cameraOff) e.setCameraOff(frame.selfState.cameraOff);
    }
    this._selfRestored = true;
    this._startHeartbeat();
  }

  _startHeartbeat() {
    clearInterval(this._beat);
    this._pingSince = null;
    this._beat = setInterval(() => {
      const e = this.engine;
      if (this._stopped || !e.ws) return;
      // dead: a ping went out 2.5 heartbeats ago and nothing came back since (measured from the
      // ping, not the last frame: a background tab's timers may run only once a minute)
      if (this._pingSince !== null && Date.now() - this._pingSince > 2.5 * this.heartbeatMs) {
        const ws = e.ws;
        e.ws = null;
        ws.onclose = null;
        try { ws.close(); } catch (err) { /* already gone */ }
        this.socketLost();
        return;
      }
      if (this._pingSince === null) this._pingSince = Date.now();
      e._send({type: 'ping'});
    }, this.heartbeatMs);
  }

  async socketLost(ev) {
    const e = this.engine;
    if (this._stopped || e.closedInfo || e._destroyed || this._reconnecting) return;
    if (ev && ev.reason === 'replaced') {
      // a newer socket of this very tab id took the role: a duplicated tab; it keeps the call,
      // this one stops (reconnecting would take it back and start a tug of war)
      e._onClosed({type: 'closed', reason: null, errorId: 'CALL_IN_OTHER_TAB', local: true});
      return;
    }
    this._reconnecting = true;
    clearInterval(this._beat);
    e._setStatus('reconnecting');
    while (!this._stopped && !e.closedInfo && !e._destroyed) {
      const wait = BACKOFF_MS[Math.min(this.socketRetries, BACKOFF_MS.length - 1)];
      this.socketRetries += 1;
      if (wait) await new Promise((r) => setTimeout(r, wait));
      if (this._stopped || e.closedInfo || e._destroyed) break;
      let token = e.token;
      try {
        if (this.refreshToken) token = (await this.refreshToken()) || token;
      } catch (err) {
        if (err && err.status >= 400 && err.status < 500) {  // the server no longer has the call
          e._onClosed({type: 'closed', reason: null, local: true});
          break;
        }
        continue;  // the server is unreachable: try again
      }
      try {
        e.token = token;
        await e._openSocket(token);
        this._reconnecting = false;
        return;
      } catch (err) {
        if (err && (err.code === 'CALL_ENDED' || err.code === 'CALL_IN_OTHER_TAB')) {
          e._onClosed({type: 'closed', reason: null, local: true});
          break;
        }
      }
    }
    this._reconnecting = false;
  }

  // -- ICE ------------------------------------------------------------------------------------
  iceConnected(pc) {
    if (pc !== this.engine.pc) return;
    this._clearIce();
    this.attempts = 0;
  }

  iceTrouble(pc, state) {
    const e = this.engine;
    if (pc !== e.pc || this._stopped) return;
    e._setStatus('reconnecting');
    e._clearConnectTimer();
    if (!e.peerPresent) return;  // the other side is away: the server's grace decides
    if (state === 'failed') {
      this._restart(pc);
    } else if (!this._iceTimer) {  // disconnected: often back by itself within a moment
      // the impolite side restarts first; the polite one only if that did not happen (less glare)
      this._iceTimer = setTimeout(() => {
        this._iceTimer = null;
        if (pc === e.pc && pc.connectionState !== 'connected') this._restart(pc);
      }, e.polite ? 2 * DISCONNECT_WAIT_MS : DISCONNECT_WAIT_MS);
    }
  }

  networkChanged() {
    const e = this.engine;
    const pc = e.pc;
    if (!pc || this._stopped || !e.peerPresent || pc.connectionState === 'closed') return;
    this.networkRestarts += 1;
    try { pc.restartIce(); } catch (err) { /* old browser: the failure path restarts */ }
  }

  _restart(pc) {
    const e = this.engine;
    if (pc !== e.pc || this._stopped) return;
    if (this.attempts >= this.maxRestarts) {
      this._clearIce();
      e._fail('UNABLE_TO_CONNECT');
      return;
    }
    this.attempts += 1;
    this.iceRestarts += 1;
    try {
      pc.restartIce();
    } catch (err) {
      console.warn('lpcall: restartIce failed', err);
    }
    clearTimeout(this._iceTimer);
    const perAttempt = Math.min(10000, Math.max(3000, e.connectTimeoutMs / (this.maxRestarts + 1)));
    this._iceTimer = setTimeout(() => {
      this._iceTimer = null;
      if (pc === e.pc && pc.connectionState !== 'connected' && e.peerPresent) this._restart(pc);
    }, perAttempt);
  }

  _clearIce() {
    clearTimeout(this._iceTimer);
    this._iceTimer = null;
  }

  stop() {
    if (this._stopped) return;
    this._stopped = true;
    clearInterval(this._beat);
    this._clearIce();
    window.removeEventListener('online', this._onNetwork);
    const conn = navigator.connection;
    if (conn && conn.removeEventListener) conn.removeEventListener('change', this._onNetwork);
  }
}
