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
//   brings a fresh peer connection, its absence past the grace period a `closed` frame;
// * stall detection (issue 19), independent of the ICE states: every STALL_SAMPLE_MS the inbound
//   media is sampled (video frames decoded, audio packets received, the selected candidate pair's
//   bytes received). When none of them moved for STALL_MS while the other side says it sends
//   (present, not muted or camera on), a fresh connection is negotiated beside the stalled one at
//   once (engine.js startStandby, make-before-break: the impolite side; the polite side only if none
//   came) and the signaling socket is probed (a dead one is replaced: the negotiation needs it).
//   Still stopped after SHOW_STALL_MS: the call shows `reconnecting` and ICE restarts on the old
//   connection too, again after STALL_BACKOFF_MS. Media moving again (on either connection) shows
//   `connected`. Stalls never end the call: the ICE states and the connect timeout decide that.
// * a video stall: audio packets arrive but no video packet for VIDEO_STALL_MS while the other side
//   sends video (camera on, no audio fallback on either side): the picture froze on a connection that
//   is otherwise up. Seen with a Firefox receiver after bursts of ICE restarts: Firefox counts its
//   inbound streams from zero after each restart and, now and then, takes no more of the video
//   Chromium keeps sending (audio goes on); Chromium's estimate towards it then sinks for want of
//   feedback, below the audio fallback's line. A fresh connection beside it (startStandby, quietly:
//   the person hears the call throughout) starts both ends and the estimator afresh; at most one per
//   VIDEO_STALL_MS.

import {tabId} from './resume.js';
import {reconnect} from './socket.js';

const DISCONNECT_WAIT_MS = 1500;
const BACKOFF_MS = [0, 250, 500, 1000, 2000, 3000];
const STALL_SAMPLE_MS = 100;
const STALL_MS = 250;               // no frame and no audio packet for this long: a fresh connection is made (quietly)
const SHOW_STALL_MS = 700;          // still nothing: "reconnecting…" and an ICE restart
const STALL_BACKOFF_MS = [2000, 3000, 5000];  // a restart's checks need time: too soon would cancel them
const POLITE_STALL_DELAY_MS = 300;  // the impolite side restarts first; the polite one if that did not come
const SOCKET_PROBE_MS = 1500;       // a socket that does not answer a ping within this is replaced
const RECENT_OFFER_MS = 1000;       // a remote offer this recent is a restart under way
const VIDEO_STALL_MS = 3000;        // audio flowing, no video packet for this long: a fresh connection

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
    this.stallRestarts = 0;   // ICE restarts because inbound media stopped (tests read it)
    this.freshConnections = 0; // switches to a fresh connection made for a stall (tests read it)
    this.stalls = 0;          // stalls noticed
    this.videoStalls = 0;     // video stalls noticed (audio flowing; tests read it)
    this.stalled = false;
    this._watch = null;       // the stall sampler's interval
    this._sample = null;      // {pc, counters, progressAt, flowed}
    this._stallTimer = null;
    this._stallStep = 0;
    this._offerAt = 0;        // when the last remote offer was applied
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
    const gone = () => this._stopped || Boolean(e.closedInfo) || Boolean(e._destroyed);
    // the one back-off loop of the browser code (socket.js); an attempt that ends the call stops it
    await reconnect({delays: BACKOFF_MS, from: this.socketRetries, stopped: gone, attempt: () => this._rejoin()});
    this._reconnecting = false;
  }

  // One attempt to reopen the signaling socket, with a fresh token when the engine can get one.
  async _rejoin() {
    const e = this.engine;
    this.socketRetries += 1;
    let token = e.token;
    try {
      if (this.refreshToken) token = (await this.refreshToken()) || token;
    } catch (err) {
      if (err && err.status >= 400 && err.status < 500) {  // the server no longer has the call
        e._onClosed({type: 'closed', reason: null, local: true});
      }
      return false;  // ended, or the server is unreachable: try again
    }
    try {
      e.token = token;
      await e._openSocket(token);
      return true;
    } catch (err) {
      if (err && (err.code === 'CALL_ENDED' || err.code === 'CALL_IN_OTHER_TAB')) {
        e._onClosed({type: 'closed', reason: null, local: true});
      }
      return false;
    }
  }

  // -- ICE ------------------------------------------------------------------------------------
  iceConnected(pc) {
    if (pc !== this.engine.pc) return;
    this._clearIce();
    this.attempts = 0;
    this._startWatch();
  }

  // -- stall detection (issue 19) --------------------------------------------------------------
  offerApplied() {
    this._offerAt = performance.now();
  }

  _startWatch() {
    if (this._watch || this._stopped) return;
    this._watch = setInterval(() => {
      if (this._checking) return;  // a slow getStats (a busy machine): no overlapping samples
      this._checking = true;
      this._check().catch((err) => this.engine._trace(`stall check failed: ${err}`)).finally(() => { this._checking = false; });
    }, STALL_SAMPLE_MS);
  }

  // the other side says it sends: present, and its microphone or camera on
  _expectMedia() {
    const e = this.engine;
    if (!e.peerPresent || e._waiting || e.closedInfo || e._destroyed) return false;
    const s = e.remoteState || {};
    return !s.muted || (e.mode === 'VIDEO_CALL' && !s.cameraOff);
  }

  async _counters(pc) {
    const out = {frames: 0, packets: 0, bytes: 0, videoPackets: 0};
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        out.frames += r.framesDecoded || 0;
        out.videoPackets += r.packetsReceived || 0;
      }
      if (r.type === 'inbound-rtp' && r.kind === 'audio') out.packets += r.packetsReceived || 0;
      if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
    });
    let pair = pairId && stats.get(pairId);
    if (!pair) stats.forEach((r) => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
    if (pair) {
      out.bytes = pair.bytesReceived || 0;
      const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
      if (local && remote) out.path = [local.address, remote.address].filter(Boolean);
    }
    return out;
  }

  async _check() {
    const e = this.engine;
    const pc = e.pc;
    if (this._stopped || !pc || pc.connectionState === 'closed') return;
    const c = await this._counters(pc);
    if (window.__lpcallTest && window.__lpcallStallDebug) e._trace(`sample ${JSON.stringify(c)} exp ${this._expectMedia()} flowed ${this._sample && this._sample.flowed}`);
    const now = performance.now();
    const last = this._sample;
    if (!last || last.pc !== pc) {  // a new connection: counted from zero
      this._sample = {pc, counters: {frames: 0, packets: 0, bytes: 0, videoPackets: 0}, progressAt: now, flowed: false,
        videoAt: now, videoFlowed: false};
      return this._check();
    }
    if (c.frames < last.counters.frames || c.packets < last.counters.packets || c.bytes < last.counters.bytes
        || c.videoPackets < last.counters.videoPackets) {
      // counters went back (Firefox starts its inbound stats again after an ICE restart): a new
      // baseline, not a stall (compared with the old totals, nothing would move for seconds)
      last.counters = c;
      last.progressAt = now;
      last.videoAt = now;
      return;
    }
    if (c.videoPackets > last.counters.videoPackets) {
      last.videoAt = now;
      last.videoFlowed = true;
    }
    // media moved: frames decoded or audio packets (RTCP alone keeps the pair's bytes moving, so
    // the pair's bytes count only where neither media counter exists, e.g. a receive-only side)
    const media = c.frames > last.counters.frames || c.packets > last.counters.packets;
    const moved = media || (c.bytes > last.counters.bytes && !c.frames && !c.packets);
    last.counters = c;
    if (c.path && !this.stalled) this.lastPath = c.path;  // the path media took: a fresh connection tries others first
    if (moved) {
      last.progressAt = now;
      last.flowed = true;
      if (this.stalled) this._unstall(pc);
      this._checkVideo(pc, last, now);
      return;
    }
    if (!this._expectMedia()) {
      last.progressAt = now;  // nothing is expected: no stall (e.g. muted with the camera off)
      return;
    }
    if (!this.stalled && last.flowed && now - last.progressAt > STALL_MS) this._stall(pc);
  }

  // the other side sends video: camera on, and no audio fallback on either side (quality.js sets
  // engine.audioFallback while video is paused for it)
  _expectVideo() {
    const e = this.engine;
    return e.mode === 'VIDEO_CALL' && this._expectMedia() && !(e.remoteState || {}).cameraOff && !e.audioFallback;
  }

  // audio moves (the caller checked): has the video stopped? (see the header: a video stall)
  _checkVideo(pc, last, now) {
    const e = this.engine;
    if (!last.videoFlowed || !this._expectVideo()) {
      last.videoAt = now;
      return;
    }
    if (now - last.videoAt < VIDEO_STALL_MS || e._standby || this._negotiating(pc)) return;
    last.videoAt = now;  // the next one no sooner than VIDEO_STALL_MS from now
    this.videoStalls += 1;
    e._trace(`video stalled, audio flowing (${this.videoStalls}): a fresh connection`);
    e.startStandby();
  }

  // the engine switched to the fresh connection made for a stall (engine.js _promote)
  switched(pc) {
    this.freshConnections += 1;
    this._sample = null;  // the new connection's counters start from zero
    this.stalled = false;  // it connected: its media is watched from its first frame on
    clearTimeout(this._stallTimer);
    clearTimeout(this._showTimer);
    clearTimeout(this._standbyTimer);
    this.engine._trace(`switched connection (${this.freshConnections})`);
  }

  _stall(pc) {
    const e = this.engine;
    this.stalled = true;
    this._stalledPc = pc;
    this.stalls += 1;
    this._stallStep = 0;
    e._trace(`media stalled (ICE ${pc.iceConnectionState})`);
    this._probeSocket();
    const since = performance.now();
    clearTimeout(this._stallTimer);
    clearTimeout(this._showTimer);
    // make-before-break: a fresh connection beside this one at once (engine.js startStandby); the
    // impolite side makes it, the polite one only if the other side's fresh connection or restart
    // did not come meanwhile (it stalled too: less glare). A short stall stays quiet; a longer one
    // shows `reconnecting` and restarts ICE on this connection too, again with back-off.
    const standby = () => {
      if (!this.stalled || e.pc !== pc) return;
      if (e.polite && (e._standby || this._offerAt > since - RECENT_OFFER_MS)) return;
      if (this._negotiating(pc)) {  // a renegotiation pauses media for a moment: not yet a stall to act on
        this._standbyTimer = setTimeout(standby, STALL_SAMPLE_MS * 3);
        return;
      }
      e.startStandby();
    };
    if (e.polite) this._standbyTimer = setTimeout(standby, POLITE_STALL_DELAY_MS);
    else standby();
    this._showTimer = setTimeout(() => {
      if (!this.stalled || e.pc !== pc) return;
      e._setStatus('reconnecting');
      // a fresh connection under way: its checks first (a restart now would compete for the CPU)
      if (e._standby) this._nextStallRestart();
      else this._stallRestart();
    }, SHOW_STALL_MS - STALL_MS);
  }

  _stallRestart() {
    const e = this.engine;
    const pc = e.pc;
    if (!this.stalled || !pc || this._stopped || !e.peerPresent) return;
    if (!this._negotiating(pc)) e.startStandby();  // none under way (one that did not connect is dropped after a while)
    // the other side's restart just came: its checks run now, a new one of ours would cancel them
    if (performance.now() - this._offerAt < RECENT_OFFER_MS) return this._nextStallRestart();
    this.stallRestarts += 1;
    e._trace(`ICE restart for a stall (${this.stallRestarts})`);
    try { pc.restartIce(); } catch (err) { console.warn('lpcall: restartIce failed', err); }
    this._nextStallRestart();
  }

  // an offer/answer of this connection under way or just done (ours or the other side's)
  _negotiating(pc) {
    const last = Math.max(this._offerAt, this.engine._pendingOfferAt || 0);
    return pc.signalingState !== 'stable' || performance.now() - last < RECENT_OFFER_MS;
  }

  _nextStallRestart() {
    const wait = STALL_BACKOFF_MS[Math.min(this._stallStep, STALL_BACKOFF_MS.length - 1)];
    this._stallStep += 1;
    clearTimeout(this._stallTimer);
    this._stallTimer = setTimeout(() => this._stallRestart(), wait);
  }

  _unstall(pc) {
    const e = this.engine;
    this.stalled = false;
    clearTimeout(this._stallTimer);
    clearTimeout(this._showTimer);
    clearTimeout(this._standbyTimer);
    this._stallTimer = null;
    e._trace('media flowing again');
    if (pc.connectionState === 'connected') e._setStatus('connected');
    // the connection that stalled: the other side's decoder waits for a key frame (a fresh
    // connection's encoders started with one)
    if (pc === this._stalledPc) this._refreshVideo(pc);
  }

  // After a stall the other side's decoder waits for a key frame, and a receiver asks for one only
  // after seconds: our video encoder restarts now (an encoding off and on again), which sends one.
  async _refreshVideo(pc) {
    for (const sender of pc.getSenders()) {
      if (!sender.track || sender.track.kind !== 'video') continue;
      try {
        const params = sender.getParameters();
        if (!params.encodings || !params.encodings.length) continue;
        params.encodings.forEach((x) => { x.active = false; });
        await sender.setParameters(params);
        const again = sender.getParameters();
        again.encodings.forEach((x) => { x.active = true; });
        await sender.setParameters(again);
        this.engine._trace('video encoder refreshed (key frame)');
      } catch (err) {
        this.engine._trace(`video refresh failed: ${err}`);
      }
    }
  }

  // a restart needs the signaling socket: ping it now; no answer within SOCKET_PROBE_MS and it is
  // replaced (socketLost) instead of waiting for the heartbeat
  _probeSocket() {
    const e = this.engine;
    const ws = e.ws;
    if (!ws || this._reconnecting) return;
    const asked = Date.now();
    if (this._pingSince === null) this._pingSince = asked;
    e._send({type: 'ping'});
    setTimeout(() => {
      if (this._stopped || e.ws !== ws || this.lastSeen >= asked) return;
      e._trace('signaling socket silent: replaced');
      e.ws = null;
      ws.onclose = null;
      try { ws.close(); } catch (err) { /* already gone */ }
      this.socketLost();
    }, SOCKET_PROBE_MS);
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
    clearInterval(this._watch);
    clearTimeout(this._stallTimer);
    clearTimeout(this._showTimer);
    clearTimeout(this._standbyTimer);
    this._clearIce();
    window.removeEventListener('online', this._onNetwork);
    const conn = navigator.connection;
    if (conn && conn.removeEventListener) conn.removeEventListener('change', this._onNetwork);
  }
}
