// The call engine (both sides): local media, the signaling socket (PROTOCOL §5) and one
// RTCPeerConnection driven by the perfect-negotiation pattern (consumer polite, agent
// impolite), trickle ICE, explicit hang-up, mute / camera state frames and a connect timeout.
//
//   const engine = new CallEngine({base, serviceId, token, mode, role, iceServers, ...});
//   engine.addEventListener('status' | 'localstream' | 'remotestream' | 'remotestate' |
//                           'connected' | 'peer' | 'closed' | 'error', handler);
//   await engine.listen();         // consumer, before the Accept: signaling only (offer kept)
//   await engine.start({accept});  // media, then signaling; rejects with a CallError
//   engine.setMuted(true); engine.setCameraOff(true); await engine.switchCamera();
//   await engine.hangup();         // tells the other side, waits for `closed`
//   await engine.rejoin(token);    // a fresh socket (and peer connection) with a new token
//   engine.destroy();              // idempotent
//
// Errors carry a stable `code`: BROWSER_NOT_SUPPORTED, NO_CAMERA_ACCESS, UNABLE_TO_CONNECT
// (the seed's sessionError ids) or SIGNALING_FAILED / CALL_ENDED / TOKEN_INVALID.

import {SESSION_ERRORS} from './protocol.js';
import {Recovery} from './recovery.js';
import {supportProblem} from './support.js';

// the seed's session-error ids, from flask_lpcall/protocol.py (protocol.js is generated from it)
export const ERRORS = SESSION_ERRORS;

export class CallError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = 'CallError';
    this.code = code;
  }
}

export {supportProblem};

export function socketUrl(base, token) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}${base}/ws/call?token=${encodeURIComponent(token)}`;
}

const testing = () => Boolean(window.__lpcallTest);
// test-only: perfect negotiation switched off (no tags, no collision handling), to show what it prevents
const negotiationOff = () => Boolean(window.__lpcallTest && window.__lpcallNoPerfectNegotiation);
const STEP_MS = 5000;               // a signaling step that takes longer is abandoned (_step)
const STANDBY_TIMEOUT_MS = 8000;
const SPARE_DELAY_MS = 2000;
const MAX_REFUSALS = 3;      // descriptions the server refused: the third ends the call (_refused)
const FRESH_GLARE_MS = 1000;  // our own offer out for longer than this does not hold off the other side's fresh connection  // the spare for a stall is made this long after the call connected  // a fresh connection for a stall that did not connect by then is dropped
// A candidate on an address of the stalled connection's path, with the lowest priority: the fresh
// connection checks every other path first (that path may be dead; it stays a last resort).
function lastResort(c, avoid) {
  if (!c || !c.candidate || !avoid || !avoid.size) return c;
  const f = c.candidate.split(' ');
  if (f.length < 8 || !avoid.has(f[4])) return c;
  f[3] = '1';
  return {...c, candidate: f.join(' ')};
}
// The DTLS roles of a connection must never change, and Firefox, as the DTLS server (`a=setup:passive`),
// answers an ICE restart with `a=setup:active`: Chromium then refuses the answer ("Failed to set SSL role
// for the transport") and the negotiation wedges. So a Firefox offer claims the client role on the wire
// (`active`, RFC 4145): the other side answers `passive`, Firefox is the DTLS client from the start and
// its answers' `active` stays true. Our local description keeps `actpass` (the answer decides the role).
function offerForWire(sdp) {
  return /^o=mozilla/m.test(sdp) ? sdp.replace(/^a=setup:actpass(?=\r?$)/gm, 'a=setup:active') : sdp;
}
const newSessionId = () => Math.random().toString(36).slice(2, 10) || 's';

// A frame's negotiation tag (PROTOCOL §5 `gen`): "<session>" or "<session>:<offer number>".
function tagOf(frame) {
  if (negotiationOff() || typeof frame.gen !== 'string' || !frame.gen) return null;
  const [session] = frame.gen.split(':');
  return {gen: frame.gen, session};
}

export class CallEngine extends EventTarget {
  constructor(opts) {
    super();
    this.base = opts.base || '/lpcall';
    this.serviceId = opts.serviceId;
    this.token = opts.token;
    this.mode = opts.mode;
    this.role = opts.role;
    this.polite = this.role === 'consumer';
    this.iceServers = opts.iceServers || [];
    this.iceTransportPolicy = opts.iceTransportPolicy || 'all';
    this.connectTimeoutMs = Math.max(1, Number(opts.connectTimeout) || 30) * 1000;
    this.muted = Boolean(opts.muted);
    this.cameraOff = this.mode === 'VIDEO_CALL' && Boolean(opts.cameraOff ?? opts.cameraOffAtStart);
    this.status = 'idle';
    this.sessionState = opts.sessionState || null;
    this.localStream = null;
    this._pendingMedia = opts.media || null;  // Promise<MediaStream> started by the caller
    this.remoteStream = null;
    this.remoteState = {muted: false, cameraOff: false};
    this.peerPresent = false;
    this.connectedOnce = false;
    this.closedInfo = null;
    this.pc = null;
    this.ws = null;
    this._makingOffer = false;
    this._ignoreOffer = false;
    this._session = null;          // negotiation session of this.pc (PROTOCOL §5 `gen`)
    this._offerNo = 0;             // offers made in this session by this side
    this._pendingOffer = null;     // gen of our offer waiting for its answer
    this._remoteOffer = null;      // gen of the other side's offer we answer
    this._retired = new Set();     // sessions of closed connections: their frames are stale
    this.staleFrames = 0;          // stale/duplicate frames dropped (tests read it)
    this._standby = null;          // a fresh connection negotiated beside a stalled one (make-before-break)
    this._spare = null;            // the next one, offer made and held (_prepareSpare)
    this._connectedPcs = new WeakSet();  // connections that reached `connected`
    this._chain = Promise.resolve();
    this._closeWaiters = [];       // signaling steps waiting, released when a connection closes (_step)
    this._connectTimer = null;
    this._destroyed = false;
    this._closedWaiters = [];
    this._waiting = false;      // listening before the Accept: an offer is kept, not answered
    this._acceptWaiter = null;  // {resolve, reject} of the `accept` frame sent by start()
    this.recovery = new Recovery(this, opts);  // heartbeats, socket and ICE recovery (issue 5)
    this._joined = new Promise((resolve) => { this._resolveJoined = resolve; });
    this.trace = testing() ? [] : null;  // what happened, for test diagnostics
    if (testing()) (window.__lpcallEngines = window.__lpcallEngines || []).push(this);
  }

  _trace(what) {
    if (this.trace) this.trace.push(`${Math.round(performance.now())} ${what}`);
  }

  // -- events --------------------------------------------------------------------------
  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, {detail}));
  }

  _setStatus(status) {
    if (this.status === status || this.status === 'closed') return;
    this.status = status;
    this._emit('status', {status});
  }

  // -- start -----------------------------------------------------------------------------
  // The consumer, while the invitation is shown (PROTOCOL §5 "Before the Accept"): join the
  // signaling without media. The agent's offer and candidates arrive and are applied; nothing
  // is answered or sent until start({accept}), so no media flows before the visitor's consent.
  async listen() {
    const problem = supportProblem();
    if (problem) throw new CallError(problem);
    this._waiting = true;
    await this._openSocket(this.token);
    return this;
  }

  // accept: the cobrowseAccepted payload, for an engine that listen()ed: the Accept goes out on
  // its socket and a kept offer is answered at once, while the camera starts.
  async start({accept = null, media = null} = {}) {
    if (media) this._pendingMedia = media;  // the camera, started by the caller at the Accept
    const problem = supportProblem();
    if (problem) throw await this._failEarly(problem);
    const listened = this._waiting && this.ws;
    const accepted = listened ? this._accept(accept) : null;
    // join the signaling while the camera starts: the other side learns at once that we are
    // here (and, if media fails, why we leave); signals wait for the media (_onSignal)
    this._mediaReady = this._getMedia();
    this._mediaReady.catch(() => {});
    const joining = listened ? accepted : this._openSocket(this.token);
    joining.catch(() => {});
    try {
      await this._mediaReady;
    } catch (err) {
      // the call ended while the camera was starting (e.g. the other side failed at once): not a camera problem
      if (err.code === 'CALL_ENDED' || this._destroyed) throw err.code === 'CALL_ENDED' ? err : new CallError('CALL_ENDED', 'the call ended');
      throw await this._failEarly(ERRORS.NO_CAMERA_ACCESS, err);
    }
    this._attachMedia(this.pc);  // a connection answered before the camera was up gets its tracks
    await joining;
    if (this.peerPresent && !this.pc && !this._destroyed) this._freshPeer();
    else this._prewarm();
    return this;
  }

  async _getMedia() {
    this._setStatus('media');
    const video = this.mode === 'VIDEO_CALL';
    // a caller may have started the camera already (the consumer app does, in parallel with accept)
    const pending = this._pendingMedia;
    this._pendingMedia = null;
    const stream = await (pending || navigator.mediaDevices.getUserMedia({audio: true, video}));
    if (this._destroyed) {
      stream.getTracks().forEach((t) => t.stop());
      throw new CallError('CALL_ENDED', 'the call ended');
    }
    if (video && stream.getVideoTracks().length === 0) throw new CallError(ERRORS.NO_CAMERA_ACCESS, 'no camera');
    this.localStream = stream;
    this._applyTrackState();
    this._emit('localstream', {stream});
  }

  _accept(payload) {
    this._waiting = false;
    this._acceptPayload = payload;
    this.sessionState = 'ACCEPTED';
    const accepted = new Promise((resolve, reject) => { this._acceptWaiter = {resolve, reject}; });
    this._send({type: 'accept', payload});
    this._armConnectTimer();
    const pc = this.pc;
    if (pc) this._chain = this._chain.then(() => this._step(this._answer(pc))).catch((err) => this._trace(`answer failed: ${err}`));
    return accepted;
  }

  // Tell the server (and so the other side) why this side cannot take part, then end.
  async _failEarly(code, cause) {
    const err = new CallError(code, cause && cause.message ? `${code}: ${cause.message}` : code);
    this._emit('error', {code, error: err});
    if (typeof WebSocket === 'function' && this.token && !this._destroyed) {
      try {
        if (this.ws) await Promise.race([this._joined, new Promise((r) => setTimeout(r, 3000))]);
        else await this._openSocket(this.token);
        this._send({type: 'failure', id: code});
        await this._waitClosed(3000);
      } catch (e) { /* the server may already have closed the call */ }
    }
    this.destroy();
    return err;
  }

  // -- signaling -------------------------------------------------------------------------
  _openSocket(token) {
    return new Promise((resolve, reject) => {
      let joined = false;
      const ws = new WebSocket(socketUrl(this.base, token) + this.recovery.query());
      this._trace('socket opening');
      this.ws = ws;
      ws.onmessage = (ev) => {
        if (this.ws === ws) this.recovery.seen();
        let frame;
        try { frame = JSON.parse(ev.data); } catch (e) { return; }
        if (frame.type === 'joined' && !joined) {
          joined = true;
          this._onJoined(frame);
          resolve(frame);
          return;
        }
        if (frame.type === 'error' && !joined) {
          reject(new CallError(frame.code || 'SIGNALING_FAILED', frame.message));
          return;
        }
        this._onFrame(frame);
      };
      ws.onclose = (ev) => {
        const current = this.ws === ws;  // not a socket already replaced
        if (current) this.ws = null;
        if (!joined) reject(new CallError('SIGNALING_FAILED', 'the signaling socket closed'));
        else if (current && !this.closedInfo && !this._destroyed) this._onSocketLost(ev);
      };
    });
  }

  _send(frame) {
    if (this._held && (frame.type === 'description' || frame.type === 'candidate')) {
      this._held.push(frame);  // a prewarmed offer and its candidates wait for the visitor (_prewarm)
      this._trace(`held ${frame.type}${frame.description ? ` ${frame.description.type}` : ''}`);
      return;
    }
    const ws = this.ws;
    this._trace(`send ${frame.type}${frame.description ? ` ${frame.description.type}` : ''}${ws && ws.readyState === WebSocket.OPEN ? '' : ' (dropped)'}`);
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }

  _sendState() {
    this._send({type: 'state', muted: this.muted, cameraOff: this.cameraOff});
  }

  _onJoined(frame) {
    this.recovery.joined(frame);
    this._resolveJoined(frame);
    this.sessionState = frame.sessionState;
    if (this._acceptWaiter && frame.sessionState === 'INVITED') {  // a new socket before the Accept got through
      this._send({type: 'accept', payload: this._acceptPayload});
      this.sessionState = 'ACCEPTED';
    }
    if (Array.isArray(frame.iceServers)) this.iceServers = frame.iceServers;
    if (frame.iceTransportPolicy) this.iceTransportPolicy = frame.iceTransportPolicy;
    if (frame.peerState) this._setRemoteState(frame.peerState);
    this._sendState();
    this._setPeerPresent(Boolean(frame.peerPresent));
    this._setStatus(this.connectedOnce ? 'reconnecting' : 'connecting');
    if (this.peerPresent && this.localStream) this._freshPeer();
    else this._prewarm();
  }

  _onFrame(frame) {
    this._trace(`recv ${frame.type}${frame.description ? ` ${frame.description.type}` : ''}`);
    switch (frame.type) {
      case 'description':
      case 'candidate':
        if (supportProblem()) break;  // a browser without WebRTC only tells why it leaves (_failEarly)
        this._chain = this._chain.then(() => this._step(this._onSignal(frame))).catch((err) => {
          this._trace(`signal failed: ${err}`);
          console.warn('lpcall: signaling step failed', err);
        });
        break;
      case 'state':
        this._setRemoteState(frame);
        break;
      case 'peer-joined':
        this._setPeerPresent(true);
        this._sendState();
        if (this._waiting) this._send({type: 'listening'});  // the agent came after us: it may offer now
        if (frame.accepted) {  // the listening visitor accepted: it has our offer, unless we held it
          if (this._held) this._release();
          else if (!this.pc && this.localStream) this._freshPeer();
        } else if (this.localStream) this._freshPeer();  // a fresh peer: a fresh negotiation
        break;
      case 'quality':  // the other side's connection quality (issue 17, quality.js)
        this._emit('remotequality', frame);
        break;
      case 'peer-left':
        this._setPeerPresent(false, frame.graceUntil);
        break;
      case 'session':
        if (this._waiting && frame.sessionState === 'ACCEPTED') {
          this._trace('accepted in another tab');  // this tab's listener stops, quietly
          this.destroy();
          break;
        }
        this.sessionState = frame.sessionState;
        if (this._acceptWaiter && frame.sessionState === 'ACCEPTED') {
          this._acceptWaiter.resolve(frame);
          this._acceptWaiter = null;
        }
        if (frame.sessionState === 'ACCEPTED' && this.pc && !this._held && this.pc.connectionState !== 'connected') this._armConnectTimer();
        this._emit('session', {sessionState: frame.sessionState});
        break;
      case 'closed':
        this._onClosed(frame);
        break;
      case 'error': {
        // a refused description (it names its `gen`) is not about the Accept: the server sends it
        // straight back, and it may overtake the `session` ACCEPTED frame that comes over the bus
        const refused = typeof frame.gen === 'string' && String(frame.field || '').startsWith('description');
        if (this._acceptWaiter && !refused) {  // the Accept was refused (e.g. the invitation expired)
          this._acceptWaiter.reject(new CallError(frame.code || 'SIGNALING_FAILED', frame.message));
          this._acceptWaiter = null;
        }
        console.warn('lpcall: signaling error', frame.code, frame.message);
        if (refused) this._refused(frame);
        this._emit('signalingerror', frame);
        break;
      }
      default:
        break;
    }
  }

  // One signaling step: the next one waits for it, unless a connection closed meanwhile (a switch to
  // a fresh one, a dropped fresh one, a replaced one): an operation of a closed connection never
  // settles and would hold every later frame. The step itself goes on; STEP_MS bounds it anyway.
  _step(promise) {
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(() => { this._trace('signaling step abandoned (too slow)'); resolve(); }, STEP_MS);
    });
    const closed = new Promise((resolve) => { this._closeWaiters.push(resolve); });
    return Promise.race([promise, late, closed]).finally(() => clearTimeout(timer));
  }

  _closePc(pc) {
    pc.close();
    for (const w of this._closeWaiters.splice(0)) w();
  }

  // The server refused one of our descriptions (PROTOCOL §5: the error names its `gen`): the other
  // side never got that offer or answer and would wait for it forever. The visitor's answer goes
  // again; otherwise a fresh connection negotiates again (the other side follows its new session).
  // A third refusal in the call ends it with UNABLE_TO_CONNECT, a clear error instead of a call
  // that never connects.
  _refused(frame) {
    const session = frame.gen.split(':')[0];
    this._trace(`description refused (${frame.code} ${frame.field}) gen ${frame.gen}`);
    const sb = this._standby;
    if (sb && sb.session === session) return this._dropStandby(sb, 'refused');  // the stall watch makes another
    if (session !== this._session || this._destroyed || this.closedInfo) return;
    this.refusals = (this.refusals || 0) + 1;
    if (this.refusals >= MAX_REFUSALS) return this._fail(ERRORS.UNABLE_TO_CONNECT);
    const pc = this.pc;
    if (this.polite && frame.gen === this._remoteOffer && pc && pc.localDescription && pc.localDescription.type === 'answer') {
      // our answer: the other side's offer is still out and it follows no fresh offer of ours while
      // it waits (glare rule), so the answer goes again
      this._send(this._tagged({type: 'description', description: {type: 'answer', sdp: pc.localDescription.sdp}}, frame.gen));
      return;
    }
    this._chain = this._chain.then(() => {
      if (this._session === session && !this._destroyed && this.peerPresent && this.localStream) this._newPeerConnection();
    });
  }

  _setPeerPresent(present, graceUntil) {
    this.peerPresent = present;
    this._emit('peer', {present, graceUntil: graceUntil || null});
  }

  _setRemoteState(s) {
    this.remoteState = {muted: Boolean(s.muted), cameraOff: Boolean(s.cameraOff)};
    this._emit('remotestate', {...this.remoteState});
  }

  _onSocketLost(ev) {
    this.recovery.socketLost(ev);  // reopen with backoff and a fresh token (recovery.js)
  }

  _onClosed(frame) {
    this._trace(`closed ${JSON.stringify(frame)} ${new Error().stack.split('\n').slice(1, 4).join(' < ')}`);
    if (this.closedInfo) return;
    this.closedInfo = {reason: frame.reason, errorId: frame.errorId || null, by: frame.by || null, confirmed: !frame.local};
    this._setStatus('closed');
    this._emit('closed', this.closedInfo);
    for (const w of this._closedWaiters.splice(0)) w(this.closedInfo);
    this.destroy();
  }

  _waitClosed(ms) {
    if (this.closedInfo) return Promise.resolve(this.closedInfo);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), ms);
      this._closedWaiters.push((info) => { clearTimeout(timer); resolve(info); });
    });
  }

  // -- the peer connection (perfect negotiation) -----------------------------------------
  // The other side (re)joined (first time, reload, lost socket): a fresh peer connection. Only
  // the impolite side makes it and offers at once; the polite side drops its old one and makes
  // the new one when that offer arrives (_onSignal), so a resume never starts with glare.
  _freshPeer() {
    this._dropStandby(this._standby, 'replaced');
    if (!this.polite) {
      if (this.pc && this._held) this._release();
      else this._newPeerConnection();
      return;
    }
    if (this.pc) {
      this.pc.onnegotiationneeded = this.pc.onicecandidate = this.pc.ontrack = null;
      this.pc.onconnectionstatechange = null;
      this._closePc(this.pc);
      this.pc = null;
      this._retireSession();
    }
  }

  _retireSession() {
    this._peerHasSession = false;  // the other side sent candidates of this connection's session
    if (this._session) this._retired.add(this._session);
    this._session = null;
    this._pendingOffer = null;
    this._remoteOffer = null;
    this._offerNo = 0;
  }

  // The agent, waiting for the visitor (invited, nobody there yet): its connection, offer and
  // ICE candidates are made now and held; the visitor's join releases them at once (_release),
  // so the offer leaves without waiting for a connection, an offer and gathering then.
  _prewarm() {
    if (this.polite || this.pc || !this.localStream || !this.ws || this.peerPresent || this._destroyed || this.closedInfo) return;
    this._newPeerConnection(true);
  }

  _release() {
    const frames = this._held || [];
    this._held = null;
    this._trace(`released ${frames.length} held frames`);
    this._pendingOfferAt = performance.now();
    this._armConnectTimer();
    for (const frame of frames) this._send(frame);
  }

  // session: the other side's, when its offer made this connection; else a new one of ours
  _newPeerConnection(hold = false, session = null) {
    this._dropStandby(this._standby, 'replaced');
    if (this.pc) {
      this.pc.onnegotiationneeded = this.pc.onicecandidate = this.pc.ontrack = null;
      this.pc.onconnectionstatechange = null;
      this._closePc(this.pc);
    }
    this._retireSession();
    this._session = session || newSessionId();
    this._trace(`${hold ? 'new peer connection (held)' : 'new peer connection'} session ${this._session}`);
    this._held = hold ? [] : null;
    this._makingOffer = false;
    this._ignoreOffer = false;
    const pc = new RTCPeerConnection({iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy});
    this.pc = pc;
    if (testing()) (window.__lpcallPeers = window.__lpcallPeers || []).push(pc);
    this.remoteStream = new MediaStream();
    if (this.localStream) for (const track of this.localStream.getTracks()) pc.addTrack(track, this.localStream);
    this._wire(pc);
    if (!hold) this._armConnectTimer();  // a held connection waits for the visitor, not for ICE
    return pc;
  }

  // the handlers of the engine's connection (this.pc): a new one, or a fresh one it switched to
  _wire(pc) {
    // renegotiation (tracks, ICE restart) is serialized by the browser: this fires only when stable
    pc.onnegotiationneeded = async () => {
      try {
        this._makingOffer = true;
        await pc.setLocalDescription();
        // a colliding offer may have rolled ours back meanwhile (polite): nothing to send then
        if (this.pc !== pc || pc.signalingState !== 'have-local-offer') return;
        const gen = `${this._session}:${this.role === 'agent' ? 'a' : 'c'}${++this._offerNo}`;
        this._pendingOffer = gen;
        this._pendingOfferAt = performance.now();
        this._send(this._tagged({type: 'description', description: {type: 'offer', sdp: offerForWire(pc.localDescription.sdp)}}, gen));
      } catch (err) {
        if (this.pc === pc) console.warn('lpcall: offer failed', err);
      } finally {
        this._makingOffer = false;
      }
    };
    pc.onicecandidate = ({candidate}) => {
      if (this.pc === pc && candidate) this._send(this._tagged({type: 'candidate', candidate: candidate.toJSON()}, this._session));
    };
    pc.ontrack = ({track}) => {
      if (this.pc !== pc) return;
      this.remoteStream.addTrack(track);
      this._emit('remotestream', {stream: this.remoteStream, track});
    };
    pc.onconnectionstatechange = () => this._onConnectionState(pc);
  }

  // -- make-before-break (issue 19) ------------------------------------------------------
  // Media stalled: a fresh RTCPeerConnection is negotiated beside the stalled one (its own `gen`
  // session, the same tracks), and whichever carries media first is kept: media coming back on the
  // old one drops nothing, the fresh one replaces it the moment it connects (tracks and UI switch,
  // the old one closes). A browser keeps a dead selected pair for seconds, ICE restarts included;
  // a fresh connection's checks take any live path at once. The other side makes its fresh
  // connection for the offer (_acceptStandby) and switches when it connects, as this side does.
  startStandby() {
    if (negotiationOff() || this._standby || !this.pc || !this.localStream || !this.peerPresent) return false;
    if (this._destroyed || this.closedInfo || !this.ws) return false;
    let sb = this._spare;
    this._spare = null;
    if (!sb || !sb.offer || sb.dropped) {
      if (sb) this._closeStandbyPc(sb);
      sb = this._createStandby(newSessionId(), true);
    }
    this._activate(sb);
    this._trace(`fresh connection beside the stalled one, session ${sb.session}${sb.offer ? ' (spare)' : ''}`);
    (sb.offer ? Promise.resolve() : this._makeOffer(sb)).then(() => {
      if (this._standby !== sb) return;
      this._send(this._tagged({type: 'description', description: {type: 'offer', sdp: offerForWire(sb.offer)}}, sb.pendingOffer));
      sb.ready = true;
      for (const f of sb.queued.splice(0)) this._send({...f, candidate: lastResort(f.candidate, sb.avoid)});
    }).catch((err) => {
      this._trace(`fresh connection offer failed: ${err}`);
      this._dropStandby(sb, 'offer failed');
    });
    return true;
  }

  async _makeOffer(sb) {
    await sb.pc.setLocalDescription(await sb.pc.createOffer());
    sb.offerNo += 1;
    sb.pendingOffer = `${sb.session}:${this.role === 'agent' ? 'a' : 'c'}${sb.offerNo}`;
    sb.offer = sb.pc.localDescription.sdp;
  }

  // A spare for the next stall, made a moment after the call connected: a connection with our
  // tracks, its offer made and its candidates gathered, held until a stall (startStandby sends
  // them at once: no connection, offer or gathering to wait for then).
  _prepareSpare() {
    if (negotiationOff() || this._spare || !this.localStream || this._destroyed || this.closedInfo) return;
    const sb = this._createStandby(newSessionId(), true);
    this._spare = sb;
    this._makeOffer(sb).catch((err) => {
      this._trace(`spare offer failed: ${err}`);
      if (this._spare === sb) this._spare = null;
      this._closeStandbyPc(sb);
    });
  }

  // the connection becomes the fresh one under way (this._standby), for STANDBY_TIMEOUT_MS at most;
  // the addresses of the stalled connection's path come last in its checks (_onStandbySignal)
  _activate(sb) {
    this._standby = sb;
    sb.avoid = new Set(this.recovery.lastPath || []);
    sb.timer = setTimeout(() => this._dropStandby(sb, 'did not connect in time'), STANDBY_TIMEOUT_MS);
  }

  _createStandby(session, initiator) {
    const pc = new RTCPeerConnection({iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy});
    const sb = {pc, session, initiator, offerNo: 0, pendingOffer: null, remoteOffer: null, offer: null,
      remoteStream: new MediaStream(), ready: !initiator, queued: [], timer: null, dropped: false, avoid: new Set()};
    if (this.localStream) for (const track of this.localStream.getTracks()) pc.addTrack(track, this.localStream);
    pc.onicecandidate = ({candidate}) => {
      if (sb.dropped || !candidate) return;
      const frame = this._tagged({type: 'candidate', candidate: candidate.toJSON()}, sb.session);
      if (sb.ready) this._send({...frame, candidate: lastResort(frame.candidate, sb.avoid)});
      else sb.queued.push(frame);  // after the offer
    };
    pc.ontrack = ({track}) => { sb.remoteStream.addTrack(track); };
    pc.onconnectionstatechange = () => {
      if (this._standby !== sb) return;
      if (pc.connectionState === 'connected') this._promote(sb);
      else if (pc.connectionState === 'failed') this._dropStandby(sb, 'failed');
    };
    return sb;
  }

  // the other side's fresh connection for a stall: ours follows it, beside the current one
  async _acceptStandby(frame, tag) {
    const old = this._standby;
    if (old && old.initiator && !this.polite) return this._stale(frame, 'colliding fresh connection');
    if (old) this._dropStandby(old, 'the other side made one');
    const sb = this._createStandby(tag.session, false);
    this._activate(sb);
    this._trace(`fresh connection for the other side's, session ${sb.session}`);
    await sb.pc.setRemoteDescription(frame.description);
    if (this._standby !== sb) return;
    sb.remoteOffer = tag.gen;
    this._prepareSenders(sb.pc);
    await sb.pc.setLocalDescription();
    if (this._standby !== sb) return;
    this._send(this._tagged({type: 'description', description: {type: 'answer', sdp: sb.pc.localDescription.sdp}}, tag.gen));
  }

  async _onStandbySignal(sb, frame, tag) {
    const pc = sb.pc;
    if (frame.type === 'candidate') {
      const c = lastResort(frame.candidate, sb.avoid);
      try { await pc.addIceCandidate(c); } catch (err) { this._trace(`fresh connection candidate: ${err}`); }
      return;
    }
    const d = frame.description;
    if (d.type === 'answer') {
      if (pc.signalingState !== 'have-local-offer' || tag.gen !== sb.pendingOffer) return this._stale(frame, 'not for the fresh offer');
      await pc.setRemoteDescription(d);
      sb.pendingOffer = null;
      return;
    }
    if (d.type === 'offer' && pc.signalingState === 'stable') {
      await pc.setRemoteDescription(d);
      if (this._standby !== sb) return;
      sb.remoteOffer = tag.gen;
      this._prepareSenders(pc);
      await pc.setLocalDescription();
      if (this._standby === sb) this._send(this._tagged({type: 'description', description: {type: 'answer', sdp: pc.localDescription.sdp}}, tag.gen));
      return;
    }
    this._stale(frame, `fresh connection ${pc.signalingState}`);
  }

  // the fresh connection connected first: it becomes the call's connection, the old one closes
  _promote(sb) {
    if (this._standby !== sb || this._destroyed) return;
    clearTimeout(sb.timer);
    this._standby = null;
    const old = this.pc;
    if (old) {
      old.onnegotiationneeded = old.onicecandidate = old.ontrack = null;
      old.onconnectionstatechange = null;
      this._closePc(old);
    }
    this._retireSession();
    this._session = sb.session;
    this._offerNo = sb.offerNo;
    this._remoteOffer = sb.remoteOffer;
    this._makingOffer = false;
    this._ignoreOffer = false;
    this.pc = sb.pc;
    if (testing()) (window.__lpcallPeers = window.__lpcallPeers || []).push(sb.pc);
    this.remoteStream = sb.remoteStream;
    this._wire(sb.pc);
    this._trace(`switched to the fresh connection, session ${sb.session}`);
    if (testing() && window.__lpcallStallDebug) sb.pc.getStats().then((st) => {
      const out = [];
      st.forEach((r) => { if (r.type === 'candidate-pair') { const l = st.get(r.localCandidateId), m = st.get(r.remoteCandidateId);
        out.push(`${l && l.address}/${l && l.protocol}>${m && m.address} ${r.state} rq${r.requestsSent} rs${r.responsesReceived} ${r.nominated ? 'N' : ''}`); } });
      this._trace(`pairs ${out.join(', ')}`);
    });
    for (const track of this.remoteStream.getTracks()) this._emit('remotestream', {stream: this.remoteStream, track});
    this.recovery.switched(sb.pc);
    this._onConnectionState(sb.pc);
  }

  _dropStandby(sb, why) {
    if (!sb || this._standby !== sb) return;
    this._standby = null;
    this._retired.add(sb.session);
    this._trace(`fresh connection dropped (${why}; ${sb.pc.connectionState}, ICE ${sb.pc.iceConnectionState}, ${sb.pc.signalingState})`);
    this._closeStandbyPc(sb);
  }

  _closeStandbyPc(sb) {
    clearTimeout(sb.timer);
    sb.dropped = true;
    const pc = sb.pc;
    pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = null;
    this._closePc(pc);
  }

  // A dropped frame: stale (an older connection or offer) or a duplicate. Not a failure: debug only.
  _stale(frame, why) {
    this.staleFrames += 1;
    const what = frame.description ? `${frame.type} ${frame.description.type}` : frame.type;
    this._trace(`dropped stale ${what} (${why}) gen ${frame.gen || '-'}`);
    console.debug('lpcall: dropped a stale signaling frame', what, why);
  }

  _tagged(frame, gen) {
    if (!negotiationOff() && gen) frame.gen = gen;
    return frame;
  }

  async _onSignal(frame) {
    // The polite side (visitor) answers at once, before its camera is up: ICE and DTLS run while
    // getUserMedia does, and its tracks go onto the negotiated senders later (_attachMedia,
    // replaceTrack: no renegotiation). The impolite side waits for its media (it has it early).
    if (!this.localStream && this._mediaReady && !this.polite) {
      try { await this._mediaReady; } catch (e) { return; }
    }
    if (this._destroyed || (!this.localStream && !this.polite)) return;
    const tag = tagOf(frame);
    if (tag && this._retired.has(tag.session)) return this._stale(frame, 'closed connection');
    const sb = this._standby;
    if (tag && sb && tag.session === sb.session) return this._onStandbySignal(sb, frame, tag);
    if (frame.type === 'description') return this._onDescription(frame, tag);
    return this._onCandidate(frame, tag);
  }

  async _onDescription(frame, tag) {
    const description = frame.description;
    const off = negotiationOff();
    if (description.type === 'offer' && tag && tag.session !== this._session) {
      // a fresh connection for a stall while ours is (or was) connected: made beside it
      if (this.pc && this._connectedPcs.has(this.pc) && this.pc.connectionState !== 'closed' && this.peerPresent) return this._acceptStandby(frame, tag);
      // the other side made a new connection (a rejoin, a fresh peer): one of ours follows it;
      // the impolite side keeps its own fresh offer if one is out (the polite side follows that)
      // (not when the other side has our offer, its candidates for it came: it replaces that on purpose,
      // e.g. its answer was refused; nor when our offer is out for long: its answer got lost)
      const mine = this.pc && this._pendingOffer && !this.polite && !this._peerHasSession && performance.now() - this._pendingOfferAt < FRESH_GLARE_MS;
      if (mine) return this._stale(frame, 'colliding new connection');
      this._newPeerConnection(false, tag.session);
    } else if (!this.pc) {
      if (tag || description.type !== 'offer') return this._stale(frame, 'no connection');
      this._newPeerConnection();  // an untagged offer (an older peer)
    }
    const pc = this.pc;
    if (description.type === 'offer') {
      const collision = this._makingOffer || pc.signalingState !== 'stable';
      this._ignoreOffer = !off && !this.polite && collision;
      if (this._ignoreOffer) {
        this._trace('ignored a colliding offer');
        return;
      }
      if (collision && !off) this._trace('rolled back for a colliding offer');
      await pc.setRemoteDescription(description);  // an implicit rollback when polite
      this._pendingOffer = null;
      this._remoteOffer = tag ? tag.gen : null;
      this.recovery.offerApplied();
      if (this._waiting) this._trace('offer kept until the Accept');
      else await this._answer(pc);
      return;
    }
    if (description.type === 'answer' && !off) {
      // only the answer to the offer that is out: a duplicate, a replay or one for an offer that
      // a rollback or a new connection replaced would wedge the negotiation ("wrong state")
      if (pc.signalingState !== 'have-local-offer') return this._stale(frame, `state ${pc.signalingState}`);
      if (tag && tag.gen !== this._pendingOffer) return this._stale(frame, `not for offer ${this._pendingOffer}`);
    }
    await pc.setRemoteDescription(description);
    if (description.type === 'answer') this._pendingOffer = null;
  }

  async _onCandidate(frame, tag) {
    const pc = this.pc;
    if (!pc) return this._stale(frame, 'no connection');
    if (tag && tag.session !== this._session) return this._stale(frame, 'other connection');
    if (tag) this._peerHasSession = true;
    const c = frame.candidate;
    const remote = pc.remoteDescription && pc.remoteDescription.sdp;
    if (c && c.usernameFragment && remote && !negotiationOff() && !remote.includes(`a=ice-ufrag:${c.usernameFragment}`)) {
      // for ICE credentials we do not have (an ignored offer, a replaced restart)
      return this._stale(frame, 'other ICE credentials');
    }
    try {
      await pc.addIceCandidate(c);
    } catch (err) {
      if (!this._ignoreOffer) throw err;
    }
  }

  async _answer(pc) {
    if (this.pc !== pc || pc.signalingState !== 'have-remote-offer' || this._destroyed) return;
    this._prepareSenders(pc);
    await pc.setLocalDescription();
    if (this.pc !== pc) return;
    this._send(this._tagged({type: 'description', description: {type: pc.localDescription.type, sdp: pc.localDescription.sdp}}, this._remoteOffer));
  }

  // Our kinds of media on an offered connection: send as well as receive, with our tracks
  // once we have them (before: the answer still says sendrecv, the tracks follow).
  _prepareSenders(pc) {
    const kinds = this.mode === 'VIDEO_CALL' ? ['audio', 'video'] : ['audio'];
    for (const t of pc.getTransceivers()) {
      const kind = t.receiver && t.receiver.track && t.receiver.track.kind;
      if (!kinds.includes(kind) || t.stopped || t.currentDirection === 'stopped') continue;
      if (t.direction === 'recvonly') t.direction = 'sendrecv';
      else if (t.direction === 'inactive') t.direction = 'sendonly';
    }
    this._attachMedia(pc);
  }

  _attachMedia(pc) {
    if (!pc || !this.localStream) return;
    const used = new Set(pc.getSenders().map((x) => x.track).filter(Boolean));
    for (const t of pc.getTransceivers()) {
      if (t.sender.track || !['sendrecv', 'sendonly'].includes(t.direction)) continue;
      const kind = t.receiver && t.receiver.track && t.receiver.track.kind;
      const track = this.localStream.getTracks().find((x) => x.kind === kind && !used.has(x));
      if (!track) continue;
      used.add(track);
      t.sender.replaceTrack(track).catch((err) => this._trace(`replaceTrack failed: ${err}`));
      this._trace(`attached ${kind}`);
    }
  }

  _onConnectionState(pc) {
    if (this.pc !== pc) return;
    const s = pc.connectionState;
    this._trace(`connection ${s}`);
    if (s === 'connected') {
      this._connectedPcs.add(pc);
      this._clearConnectTimer();
      const first = !this.connectedOnce;
      this.connectedOnce = true;
      this._setStatus('connected');
      this.recovery.iceConnected(pc);
      if (!this._spare) setTimeout(() => { if (this.pc === pc && pc.connectionState === 'connected') this._prepareSpare(); }, SPARE_DELAY_MS);
      this._send({type: 'connected'});
      this._emit('connected', {first});
    } else if (s === 'disconnected' || s === 'failed') {
      this.recovery.iceTrouble(pc, s);  // ICE restarts, UNABLE_TO_CONNECT only after them (recovery.js)
    }
  }

  _armConnectTimer() {
    this._clearConnectTimer();
    if (this._waiting || this.sessionState === 'INVITED') return;  // armed at the Accept
    this._connectTimer = setTimeout(() => {
      if (this.pc && this.pc.connectionState !== 'connected') this._fail(ERRORS.UNABLE_TO_CONNECT);
    }, this.connectTimeoutMs);
  }

  _clearConnectTimer() {
    if (this._connectTimer) clearTimeout(this._connectTimer);
    this._connectTimer = null;
  }

  // A failure during the call: report it, the server closes the call for both sides.
  _fail(code) {
    if (this.closedInfo || this._destroyed || this._failed) return;
    this._failed = true;
    this._emit('error', {code, error: new CallError(code)});
    this._send({type: 'failure', id: code});
    this._waitClosed(3000).then((info) => {
      if (!info) this._onClosed({type: 'closed', reason: 'error', errorId: code, by: this.role, local: true});
    });
  }

  // -- controls --------------------------------------------------------------------------
  _applyTrackState() {
    if (!this.localStream) return;
    for (const t of this.localStream.getAudioTracks()) t.enabled = !this.muted;
    for (const t of this.localStream.getVideoTracks()) t.enabled = !this.cameraOff;
  }

  setMuted(muted) {
    this.muted = Boolean(muted);
    this._applyTrackState();
    this._sendState();
    this._emit('localstate', {muted: this.muted, cameraOff: this.cameraOff});
  }

  setCameraOff(off) {
    if (this.mode !== 'VIDEO_CALL') return;
    this.cameraOff = Boolean(off);
    this._applyTrackState();
    this._sendState();
    this._emit('localstate', {muted: this.muted, cameraOff: this.cameraOff});
  }

  async cameras() {
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      return devices.filter((d) => d.kind === 'videoinput');
    } catch (e) {
      return [];
    }
  }

  async switchCamera() {
    if (this.mode !== 'VIDEO_CALL' || !this.localStream) return false;
    const cams = await this.cameras();
    if (cams.length < 2) return false;
    const current = this.localStream.getVideoTracks()[0];
    const currentId = current && current.getSettings ? current.getSettings().deviceId : null;
    const idx = cams.findIndex((c) => c.deviceId === currentId);
    const next = cams[(idx + 1) % cams.length];
    const stream = await navigator.mediaDevices.getUserMedia({video: {deviceId: {exact: next.deviceId}}});
    const track = stream.getVideoTracks()[0];
    track.enabled = !this.cameraOff;
    if (this.pc) {
      const sender = this.pc.getSenders().find((s) => s.track && s.track.kind === 'video');
      if (sender) await sender.replaceTrack(track);
    }
    for (const sb of [this._standby, this._spare]) {
      const other = sb && sb.pc.getSenders().find((x) => x.track && x.track.kind === 'video');
      if (other) await other.replaceTrack(track).catch(() => {});
    }
    if (current) {
      this.localStream.removeTrack(current);
      current.stop();
    }
    this.localStream.addTrack(track);
    this._emit('localstream', {stream: this.localStream});
    return true;
  }

  async hangup() {
    if (this.closedInfo || this._destroyed) return this.closedInfo;
    // still getting media or joining: the hang-up goes out as soon as the socket has joined
    await Promise.race([this._joined, new Promise((r) => setTimeout(r, 5000))]);
    if (this.closedInfo || this._destroyed) return this.closedInfo;
    this._send({type: 'hangup'});
    const info = await this._waitClosed(3000);
    if (!info) this._onClosed({type: 'closed', reason: this.sessionState === 'INVITED' && this.role === 'agent' ? 'cancelled' : `hangup_${this.role}`, by: this.role, local: true});
    return this.closedInfo;
  }

  // Join again with a fresh token (reload, lost socket): new socket, renegotiation.
  async rejoin(token) {
    this.token = token;
    if (this.ws) {
      const old = this.ws;
      this.ws = null;
      old.onclose = null;
      old.close();
    }
    this._retried = false;
    return this._openSocket(token);
  }

  destroy() {
    if (this._destroyed) return;
    this._destroyed = true;
    this._clearConnectTimer();
    this._dropStandby(this._standby, 'ended');
    if (this._spare) this._closeStandbyPc(this._spare);
    this._spare = null;
    if (this.pc) {
      this.pc.onnegotiationneeded = this.pc.onicecandidate = this.pc.ontrack = null;
      this.pc.onconnectionstatechange = null;
      this._closePc(this.pc);
    }
    if (this.localStream) this.localStream.getTracks().forEach((t) => t.stop());
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      try { ws.close(); } catch (e) { /* already closed */ }
    }
    for (const w of this._closedWaiters.splice(0)) w(this.closedInfo);
    this._emit('destroyed', {});
  }
}
