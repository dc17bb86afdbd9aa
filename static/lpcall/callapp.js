// The consumer call app (PROTOCOL §8): listens to the seed's lpCoBrowse events (with replay,
// so a late load still sees them), accepts or declines through the call API, renders the call
// into the first `.lp_cobrowse_callscreen_container` (replacing its loading indicator once
// connected) and fires `cobrowse` `sessionError` {msg, id} / `sessionResume`, plus `lpCall`
// `callConnected` / `callEnded` for analytics.
//
// sessionStorage["lpcall.call"] (per tab) keeps what a reload needs to resume:
// {serviceId, mode, agentName, visitorName, muted, cameraOff, payload}.

import {CallEngine, supportProblem, ERRORS} from './engine.js';
import {makeT, mountCallUI} from './callui.js';
import {holdCall, resumeCheck} from './resume.js';
import {mountHandoff, mountNoCameraOffer} from './handoff.js';

const STORE_KEY = 'lpcall.call';
const CONTAINER = '.lp_cobrowse_callscreen_container';
const MANDATORY = ['serviceId', 'agentId', 'visitorName', 'mode', 'ssid', 'svid'];
const MODES = ['VOICE_CALL', 'VIDEO_CALL'];
// NO_CAMERA_ACCESS with the phone offered: how long the call waits for the visitor's choice
const NO_CAMERA_HOLD_MS = 5 * 60 * 1000;

function bus() {
  return (window.lpTag && window.lpTag.events) || null;
}

function log(msg) {
  const tag = window.lpTag && window.lpTag.lpcall;
  if (tag && tag.log) tag.log('DEBUG', 'lpCall', msg);
}

export function validPayload(data) {
  if (!data || typeof data !== 'object') return false;
  for (const k of MANDATORY) if (typeof data[k] !== 'string' || !data[k]) return false;
  return MODES.includes(data.mode);
}

function readStored() {
  try { return JSON.parse(sessionStorage.getItem(STORE_KEY) || 'null'); } catch (e) { return null; }
}

function writeStored(value) {
  try {
    if (value) sessionStorage.setItem(STORE_KEY, JSON.stringify(value));
    else sessionStorage.removeItem(STORE_KEY);
  } catch (e) { /* storage unavailable: no resume */ }
}

function waitForContainer(timeoutMs = 15000) {
  const found = document.querySelector(CONTAINER);
  if (found) return Promise.resolve(found);
  return new Promise((resolve) => {
    const obs = new MutationObserver(() => {
      const c = document.querySelector(CONTAINER);
      if (c) { obs.disconnect(); clearTimeout(timer); resolve(c); }
    });
    obs.observe(document.documentElement, {childList: true, subtree: true});
    const timer = setTimeout(() => { obs.disconnect(); resolve(null); }, timeoutMs);
  });
}

// Calls need the visitor's identity, the one the messaging client stored (README "Messaging-Window
// protocol"), never a new one: what is wrong with it, or null.
function identityProblem(id, serviceId, base) {
  const owner = typeof serviceId === 'string' && serviceId.includes('#') ? serviceId.split('#')[0] : null;
  if (!id || typeof id.token !== 'string') {
    return `no consumer identity for call ${serviceId}: a messaging client must store `
      + 'localStorage["lpcall.consumer"] = JSON.stringify({consumerId, token}), the answer of '
      + `POST ${base}/api/consumer/session whose token it sends as the InitConnection jwt `
      + '(README, "Messaging-Window protocol")';
  }
  if (owner && id.consumerId && id.consumerId !== owner) {
    return `localStorage["lpcall.consumer"] holds consumer ${id.consumerId}, but call ${serviceId} is for consumer `
      + `${owner}: store the identity whose token the messaging client sends as the InitConnection jwt `
      + '(README, "Messaging-Window protocol")';
  }
  return null;
}

// Empties the container (removes it if the built-in window made it) when it still shows `node`:
// a newer call may use it by now. Tells the page (a DOM event) so it can put the focus back.
function clearScreen(container, node) {
  if (!container || !node || !container.contains(node)) return;
  const hadFocus = container.contains(document.activeElement);
  if (container.hasAttribute('data-lpcall-owned')) container.remove();
  else container.replaceChildren();
  document.dispatchEvent(new CustomEvent('lpcall:callscreenclosed', {detail: {hadFocus}}));
}

// An outcome in the container (the call UI never showed): with a labelled close button.
function showMessage(t, container, msg, cls, closeAfter = 0) {
  if (!container) return null;
  const node = document.createElement('div');
  node.className = cls;
  const text = document.createElement('p');
  text.setAttribute('role', cls === 'lpcall-call-error' ? 'alert' : 'status');
  text.textContent = msg;
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'lpcall-close';
  close.textContent = t('call.close');
  close.setAttribute('aria-label', t('call.close_label'));
  node.append(text, close);
  let timer = null;
  const fire = () => { clearTimeout(timer); clearScreen(container, node); };
  close.addEventListener('click', fire);
  if (closeAfter > 0) timer = setTimeout(fire, closeAfter * 1000);
  const hadFocus = container.contains(document.activeElement) || document.activeElement === document.body;
  container.replaceChildren(node);
  if (hadFocus) close.focus();
  return node;
}

function publish(app, name, data) {
  const b = bus();
  if (b) b.publish(app, name, data);
}

const gaveUp = (call) => Boolean(call.held && call.held.gaveUp);

// One page's call app: the calls it runs (one at a time: `current`), the listener while an invitation
// is shown (`early`), the call a reload can resume (`pendingResume`).
class CallApp {
  constructor({base, config, identity}) {
    this.base = base;
    this.config = config;
    this.identity = identity;
    this.t = makeT(config.texts || {});
    this.current = null;  // {serviceId, engine, ui, container, mode, ...}
    this.early = null;    // {serviceId, engine, ready: Promise<{join, engine} | null>}
    this.pendingResume = null;
    this.seen = new Set();  // lpCoBrowse event ids handled
    this.explained = new Set();  // serviceIds whose identity problem was told on the console
  }

  sessionError(id) {
    const msg = this.t(`error.${id}`);
    publish('cobrowse', 'sessionError', {msg, id});
    return msg;
  }

  // The visitor's identity for the call `serviceId` (`<consumerId>#…`). Missing or another consumer's:
  // an error whose message says what to store (UNABLE_TO_CONNECT for the visitor), and no request.
  async callIdentity(serviceId, explain = true) {
    const id = await this.identity({create: false});
    const problem = identityProblem(id, serviceId, this.base);
    if (!problem) return id;
    if (!explain) log(problem);  // a resume of a call stored by another visitor: refused quietly
    else if (!this.explained.has(serviceId)) {
      this.explained.add(serviceId);
      console.error(`lpcall: ${problem}`);
    }
    const err = new Error(problem);
    err.code = ERRORS.UNABLE_TO_CONNECT;
    err.status = 403;  // refused here, as the server would: not this identity's call (no request sent)
    throw err;
  }

  async api(path, body) {
    const id = await this.callIdentity(body && body.serviceId, path !== 'resume');
    const resp = await fetch(`${this.base}/api/call/${path}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: {'Content-Type': 'application/json', Authorization: `Bearer ${id.token}`},
      body: JSON.stringify(body),
    });
    const json = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const err = new Error((json.error && json.error.message) || `HTTP ${resp.status}`);
      err.code = json.error && json.error.code;
      err.status = resp.status;
      throw err;
    }
    return json;
  }

  // Seconds an ended call stays on screen before its room goes back to the page (0: until closed).
  endedSeconds() {
    const n = Number(this.config.callEndedSeconds);
    return Number.isFinite(n) && n >= 0 ? n : 5;
  }

  showEndMessage(call) {
    const [msg, cls] = call.endMessage;
    call.endNode = showMessage(this.t, call.container, msg, cls, cls === 'lpcall-call-ended' ? this.endedSeconds() : 0);
  }

  // This tab no longer holds `call` (ended, refused, gone to another device).
  forget(call) {
    if (this.current === call) this.current = null;
    writeStored(null);
    holdCall(null);
  }

  finish(call, info) {
    if (call.finished) {
      // the container appeared only after the end: show the outcome there
      if (!call.attached && call.container && call.endMessage && !gaveUp(call)) this.showEndMessage(call);
      return;
    }
    call.finished = true;
    if (call.held) clearTimeout(call.held.timer);
    call.closedInfo = info;
    if (call.handoff) call.handoff.destroy();
    this.forget(call);
    const duration = call.connectedAt ? Math.round((Date.now() - call.connectedAt) / 1000) : 0;
    publish('lpCall', 'callEnded', {
      serviceId: call.serviceId, mode: call.mode, reason: info.reason || null, errorId: info.errorId || null, durationSeconds: duration,
    });
    const msg = this.endError(call, info);
    const failed = Boolean(msg || call.errorMsg);
    if (call.ui) {
      // a plain end gives the room back after a few seconds; an error stays until closed
      const ui = call.ui;
      ui.showEnded({
        onClose: () => { ui.destroy(); clearScreen(call.container, ui.root); },
        closeAfter: failed ? 0 : this.endedSeconds(),
      });
      if (failed) ui.showError(msg || call.errorMsg);
    }
    call.endMessage = [msg || call.errorMsg || this.t('call.ended'), failed ? 'lpcall-call-error' : 'lpcall-call-ended'];
    if (!call.attached && !gaveUp(call)) this.showEndMessage(call);
  }

  // The sessionError an end fires (and its message), or null.
  endError(call, info) {
    if (info.errorId === ERRORS.AGENT_DISCONNECTED) return this.sessionError(ERRORS.AGENT_DISCONNECTED);
    // `state_lost`: the server lost the call (its store restarted empty); the visitor may try again
    if ((info.reason === 'error' || info.reason === 'state_lost') && info.by !== 'consumer' && !call.errorFired) {
      return this.sessionError(ERRORS.UNABLE_TO_CONNECT);
    }
    return null;
  }

  // NO_CAMERA_ACCESS (issue 18): when this window can offer "continue on my phone", the call is held
  // instead of failed: the sessionError fires, the error view offers the phone (handoff.js), this tab
  // stays in the call without media (it tells the agent: muted, camera off) so the phone can take it
  // over like a resume. The failure goes out (as before) when the visitor ends the call here, or
  // after NO_CAMERA_HOLD_MS. Resolves never: the engine waits for media that do not come.
  holdForPhone(call, err) {
    return new Promise((resolve, reject) => {
      if (call.finished || !call.engine) { reject(err); return; }
      call.errorFired = true;
      const message = this.sessionError(ERRORS.NO_CAMERA_ACCESS);
      if (call.handoff) call.handoff.destroy();
      call.handoff = null;
      call.held = {message, view: null, gaveUp: false, fail: () => reject(err)};
      call.held.timer = setTimeout(() => { call.errorMsg = message; call.held.fail(); }, NO_CAMERA_HOLD_MS);
      call.engine.setMuted(true);
      call.engine.setCameraOff(true);
      this.showHeld(call);
    });
  }

  showHeld(call) {
    const held = call.held;
    if (!held || held.view || !call.container || call.finished) return;
    held.view = mountNoCameraOffer({
      container: call.container, message: held.message, base: this.base, serviceId: call.serviceId, t: this.t,
      token: () => this.callIdentity(call.serviceId).then((id) => id.token),
      release: (text) => this.release(call, text),
      giveUp: (node) => {
        held.gaveUp = true;
        clearTimeout(held.timer);
        clearScreen(call.container, node);
        held.fail();
      },
    });
    call.handoff = held.view;
  }

  // The call went on on another device (handoff.js): this tab leaves it without hanging up (the
  // agent keeps its side; the other device resumes it), forgets it and says where it went.
  release(call, text) {
    if (call.finished) return;
    call.finished = true;
    if (call.held) {
      // the phone's engine restores this side's state from the server (recovery.js): it has media
      clearTimeout(call.held.timer);
      call.engine.setMuted(false);
      call.engine.setCameraOff(false);
    }
    this.forget(call);
    call.engine.destroy();
    if (call.handoff) call.handoff.destroy();
    if (call.ui) call.ui.destroy();
    call.endMessage = [text, 'lpcall-call-moved'];
    if (call.container) showMessage(this.t, call.container, text, 'lpcall-call-moved');
  }

  newEngine(join, keep = {}) {
    return new CallEngine({
      base: this.base, serviceId: join.serviceId, token: join.token, mode: join.mode, role: 'consumer',
      iceServers: join.iceServers, iceTransportPolicy: join.iceTransportPolicy, connectTimeout: join.connectTimeout,
      cameraOff: keep.cameraOff ?? Boolean(join.cameraOffAtStart), muted: Boolean(keep.muted), sessionState: join.sessionState,
      // a lost socket rejoins with a fresh token (recovery.js)
      refreshToken: () => this.api('resume', {serviceId: join.serviceId}).then((j) => j.token),
    });
  }

  // run(join, payload): the call after the Accept. `listened`: the engine that listened since the
  // invitation was shown (it sends the Accept on its socket); otherwise the accept API answered.
  async run(join, payload, {resumed = false, media = null, listened = null} = {}) {
    const stored = readStored();
    const keep = resumed && stored && stored.serviceId === join.serviceId ? stored : {};
    const call = {
      serviceId: join.serviceId, mode: join.mode, engine: null, ui: null, container: null,
      attached: false, finished: false, errorFired: false, errorMsg: null, connectedAt: null, resumed,
    };
    this.current = call;
    writeStored({
      serviceId: join.serviceId, mode: join.mode, agentName: join.agentName || '', visitorName: join.visitorName || '',
      muted: Boolean(keep.muted), cameraOff: keep.cameraOff ?? Boolean(join.cameraOffAtStart), payload,
    });
    const engine = call.engine = listened || this.newEngine(join, keep);
    const startOpts = {media: this.offeredMedia(call, media), accept: listened ? payload : null};
    holdCall(join.serviceId);
    if (resumed && join.connectedTs) engine.startedAt = join.connectedTs;  // the timer goes on
    // a supported browser joins the signaling now, before the UI is built (the engine's events
    // all come later, from its socket and media); an unsupported one fails below, with listeners
    const starting = supportProblem() ? null : engine.start(startOpts);
    if (starting) starting.catch(() => {});
    this.mountUI(call, join);
    this.placeCall(call);
    this.listen(call);
    try {
      await (starting || engine.start(startOpts));
    } catch (err) {
      this.startFailed(call, err);
    }
    return call;
  }

  // No camera or microphone: the call waits for the phone where this window offers it (holdForPhone);
  // not on a phone already (handoff.css hides the offer there): the error as before.
  offeredMedia(call, media) {
    const phone = typeof matchMedia === 'function' && matchMedia('(hover: none) and (pointer: coarse)').matches;
    return media && this.config.handoff !== false && !phone ? media.catch((err) => this.holdForPhone(call, err)) : media;
  }

  mountUI(call, join) {
    call.ui = mountCallUI({engine: call.engine, mode: join.mode, peerName: join.agentName || '', texts: this.config.texts || {}, role: 'consumer'});
    // "Continue on my phone" (handoff.js, issue 18); the standalone call page sets config.handoff = false
    if (this.config.handoff !== false) {
      call.handoff = mountHandoff({
        base: this.base, serviceId: join.serviceId, ui: call.ui, t: this.t,
        token: () => this.callIdentity(join.serviceId).then((id) => id.token),
        release: (text) => this.release(call, text),
      });
    }
  }

  // The call UI replaces the container's loading indicator once connected.
  attach(call) {
    if (call.attached || call.finished || !call.container || call.held) return;
    call.attached = true;
    // the focus waits in the container since the Accept: it goes on to the call's controls
    const focusHere = call.container.contains(document.activeElement) || document.activeElement === document.body;
    call.container.replaceChildren(call.ui.root);  // the loading indicator goes now
    if (focusHere) call.ui.focus();
  }

  // The page creates the container at the latest right after accepting: connect meanwhile.
  placeCall(call) {
    const found = document.querySelector(CONTAINER);
    if (found) {
      call.container = found;
      return;
    }
    waitForContainer().then((c) => {
      call.container = c;
      if (!c) return log('no .lp_cobrowse_callscreen_container on this page');
      if (call.finished) this.finish(call, call.closedInfo || {});
      else if (call.held) this.showHeld(call);
      else if (call.engine.connectedOnce) this.attach(call);
    });
  }

  // The engine's events: shown, stored, told to the page.
  listen(call) {
    const engine = call.engine;
    engine.addEventListener('connected', (e) => {
      this.attach(call);
      if (e.detail.first && !call.connectedAt) {
        call.connectedAt = Date.now();
        publish('lpCall', 'callConnected', {serviceId: call.serviceId, mode: call.mode});
      }
    });
    // a resumed call whose agent is away shows so at once ("Bob is reconnecting…"), not a spinner
    engine.addEventListener('peer', (e) => { if (call.resumed && !e.detail.present) this.attach(call); });
    engine.addEventListener('localstate', (e) => {
      const s = readStored();
      if (s && s.serviceId === call.serviceId) writeStored({...s, muted: e.detail.muted, cameraOff: e.detail.cameraOff});
    });
    engine.addEventListener('error', (e) => {
      if (call.errorFired) return;
      call.errorFired = true;
      call.errorMsg = this.sessionError(e.detail.code);
      if (call.ui) call.ui.showError(call.errorMsg);
    });
    engine.addEventListener('closed', (e) => this.finish(call, e.detail));
  }

  startFailed(call, err) {
    if (call.resumed && ['CALL_ENDED', 'CALL_IN_OTHER_TAB', 'TOKEN_INVALID'].includes(err.code)) {
      // ended meanwhile, or held by another tab: refused quietly, the page keeps working
      log(`resume of ${call.serviceId} refused: ${err.code}`);
      call.finished = true;
      this.forget(call);
      call.engine.destroy();
      if (call.ui) call.ui.destroy();
      if (call.container) call.container.replaceChildren();
      return;
    }
    if (!call.errorFired) {
      call.errorFired = true;
      call.errorMsg = this.sessionError(Object.values(ERRORS).includes(err.code) ? err.code : ERRORS.UNABLE_TO_CONNECT);
    }
    this.finish(call, {reason: 'error', errorId: err.code, by: 'consumer'});
  }

  // -- while the invitation is shown: listen on the call's signaling (PROTOCOL §5) -----------
  // The agent's offer arrives before the visitor decides, so the Accept only has to answer it.
  // Nothing is sent and no camera starts before the Accept; a Decline or another tab's Accept
  // ends the listener.
  dropEarly() {
    const e = this.early;
    this.early = null;
    if (e && e.engine) e.engine.destroy();
  }

  onOffered(data) {
    if (!validPayload(data)) return log('cobrowseOffered: invalid payload ignored');
    log(`call offered: ${data.serviceId}`);
    if (supportProblem() || typeof WebSocket !== 'function') return;
    const {current, early} = this;
    if ((current && current.serviceId === data.serviceId) || (early && early.serviceId === data.serviceId)) return;
    this.dropEarly();
    const entry = {serviceId: data.serviceId, engine: null, ready: null};
    this.early = entry;
    entry.ready = (async () => {
      const join = await this.api('prepare', data);
      if (this.early !== entry) return null;
      const engine = this.newEngine(join);
      entry.engine = engine;
      engine.addEventListener('destroyed', () => { if (this.early === entry) this.early = null; });
      await engine.listen();
      return {join, engine};
    })().catch((err) => {
      log(`listening before the Accept failed: ${err.message}`);
      if (entry.engine) entry.engine.destroy();
      if (this.early === entry) this.early = null;
      return null;
    });
  }

  async onAccepted(data) {
    if (!validPayload(data)) return log('cobrowseAccepted: invalid payload ignored');
    if (this.current && this.current.serviceId === data.serviceId) return;
    // the camera starts while the server accepts (the consent is the Accept itself)
    const media = supportProblem() ? null
      : navigator.mediaDevices.getUserMedia({audio: true, video: data.mode === 'VIDEO_CALL'});
    if (media) media.catch(() => {});
    const pre = this.early && this.early.serviceId === data.serviceId ? this.early : null;
    if (pre) this.early = null;
    else this.dropEarly();
    const listened = pre ? await pre.ready : null;
    if (listened && !listened.engine._destroyed && !listened.engine.closedInfo) {
      await this.run(listened.join, data, {media, listened: listened.engine});
      return;
    }
    let join;
    try {
      join = await this.api('accept', data);
    } catch (err) {
      log(`accept failed: ${err.message}`);
      if (media) media.then((s) => s.getTracks().forEach((t) => t.stop()), () => {});
      const container = await waitForContainer(2000);
      showMessage(this.t, container, this.sessionError(ERRORS.UNABLE_TO_CONNECT), 'lpcall-call-error');
      return;
    }
    await this.run(join, data, {media});
  }

  async onDeclined(data) {
    if (!validPayload(data)) return log('cobrowseDeclined: invalid payload ignored');
    try { await this.api('decline', data); } catch (err) { log(`decline failed: ${err.message}`); }
    if (this.early && this.early.serviceId === data.serviceId) this.dropEarly();
  }

  // -- resume after reload / navigation (seed 003; issue 5 hardens it) --------------------
  async checkResume() {
    const stored = readStored();
    if (!stored || !stored.serviceId) return;
    // still open on the server for this visitor, and this tab is not a duplicate (resume.js)
    const {join, forget} = await resumeCheck({api: (path, body) => this.api(path, body), stored, log});
    if (!join) {
      if (forget) writeStored(null);
      return;
    }
    this.pendingResume = {join, payload: stored.payload};
    publish('cobrowse', 'sessionResume', {serviceId: join.serviceId, mode: join.mode});
  }

  onSliderOpened() {
    if (!this.pendingResume) return log('sliderOpened without a call to resume');
    const {join, payload} = this.pendingResume;
    this.pendingResume = null;
    this.run(join, payload, {resumed: true});
  }

  onEvent(data, info) {
    const name = info && info.eventName;
    const id = info && info.eventId;
    if (id) {
      if (this.seen.has(id)) return;
      this.seen.add(id);
    }
    if (name === 'cobrowseOffered') this.onOffered(data);
    else if (name === 'cobrowseAccepted') this.onAccepted(data);
    else if (name === 'cobrowseDeclined') this.onDeclined(data);
    else if (name === 'sliderOpened') this.onSliderOpened();
  }
}

export function startCallApp({base = '/lpcall', config = {}, identity}) {
  if (window.__lpcallCallApp) return window.__lpcallCallApp;
  const calls = new CallApp({base, config, identity});
  const events = bus();
  if (events) events.bind({appName: 'lpCoBrowse', eventName: '*', func: (data, info) => calls.onEvent(data, info), replay: true});
  const app = {
    get current() { return calls.current; },
    hangup: () => (calls.current ? calls.current.engine.hangup() : Promise.resolve(null)),
    supportProblem,
  };
  window.__lpcallCallApp = app;
  calls.checkResume();
  return app;
}

export const start = startCallApp;
