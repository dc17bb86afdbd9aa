// The call UI, both sides: VIDEO_CALL shows the remote video large and the local preview
// small; VOICE_CALL shows an avatar and the timer (no camera is ever requested). Controls:
// mute / unmute, camera off / on, switch camera (only with more than one camera), hang up.
// The remote side's muted / camera-off state, the call timer and the connection status are
// shown. Every control is a labelled <button>; every text comes from the catalog.
//
//   const ui = mountCallUI({engine, mode, peerName, texts, onHangup});
//   container.replaceChildren(ui.root);   // the caller decides when (consumer: once connected)
//   ui.showError(msg); ui.showEnded({onClose, closeAfter}); ui.focus(); ui.destroy();
//
// showEnded() with an `onClose` replaces the controls by a labelled close button and calls
// `onClose` when it is pressed or, with `closeAfter` > 0, after that many seconds: the page
// then gives the call's room back (callapp.js, agentcall.js).

import {el, stylesheet} from './dom.js';
import {mountQualityIndicator} from './quality.js';

const CSS_ID = 'lpcall-call-css';

export function ensureCss() {
  stylesheet(CSS_ID, new URL('./call.css', import.meta.url).href);
}

export function makeT(texts) {
  return (key, params = {}) => {
    let text = (texts && texts[key]) || key;
    for (const [name, value] of Object.entries(params)) text = text.split(`{${name}}`).join(String(value));
    return text;
  };
}

export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = h ? String(m).padStart(2, '0') : String(m);
  return `${h ? `${h}:` : ''}${mm}:${String(r).padStart(2, '0')}`;
}

function initials(name) {
  const parts = String(name || '').trim().split(/\s+/).filter(Boolean);
  return (parts.slice(0, 2).map((p) => p[0].toUpperCase()).join('')) || '?';
}

// The stage: remote video (or, in a voice call, audio and an avatar), local preview, status, the
// other side's flags, errors, the quality indicator and the "sound on" button. Adds its nodes to `c`.
function buildStage(c) {
  const {t, name, video, engine} = c;
  c.stage = el('div', {class: 'lpcall-stage'});
  c.remoteVideo = video ? el('video', {class: 'lpcall-remote', autoplay: true, playsinline: true, 'aria-label': t('call.remote_media', {name})}) : null;
  c.remoteAudio = video ? null : el('audio', {class: 'lpcall-remote-audio', autoplay: true});
  const avatar = el('div', {class: 'lpcall-avatar', role: 'img', 'aria-label': t('call.voice_avatar', {name})});
  avatar.append(el('span', {class: 'lpcall-initials', 'aria-hidden': 'true'}, initials(name)), el('span', {class: 'lpcall-peer-name'}, name));
  c.localVideo = video ? el('video', {class: 'lpcall-local', autoplay: true, playsinline: true, muted: true, 'aria-label': t('call.local_preview')}) : null;
  if (c.localVideo) c.localVideo.muted = true;
  c.status = el('div', {class: 'lpcall-call-status', role: 'status', 'aria-live': 'polite'});
  const flags = el('div', {class: 'lpcall-remote-flags', 'aria-live': 'polite'});
  c.remoteMuted = el('span', {class: 'lpcall-remote-muted', hidden: true}, t('call.remote_muted', {name}));
  c.remoteCamOff = el('span', {class: 'lpcall-remote-camera-off', hidden: true}, t('call.remote_camera_off', {name}));
  flags.append(c.remoteMuted, c.remoteCamOff);
  c.error = el('div', {class: 'lpcall-call-error', role: 'alert', hidden: true});
  for (const n of [c.remoteVideo, c.remoteAudio, avatar, c.localVideo, c.status, flags, c.error]) if (n) c.stage.append(n);
  c.quality = mountQualityIndicator({engine, t, name, video});  // issue 17: own and the other side's level
  c.stage.append(c.quality.root);
  // The browser's autoplay policy (Safari's, and any browser after a reload, which has no click)
  // may refuse to play the remote sound: then a button asks for the click that starts it.
  c.soundBtn = el('button', {type: 'button', class: 'lpcall-sound-on', hidden: true}, t('call.sound_on', {name}));
  c.stage.append(c.soundBtn);
}

// The toolbar: timer, mute, camera, switch camera, hang up. Adds its nodes to `c`.
function buildControls(c) {
  const {t, video} = c;
  c.bar = el('div', {class: 'lpcall-controls', role: 'toolbar', 'aria-label': t('call.timer')});
  c.timer = el('span', {class: 'lpcall-timer', role: 'timer', 'aria-label': t('call.timer')}, '0:00');
  c.muteBtn = el('button', {type: 'button', class: 'lpcall-mute', 'aria-pressed': 'false'});
  c.camBtn = video ? el('button', {type: 'button', class: 'lpcall-camera', 'aria-pressed': 'false'}) : null;
  c.switchBtn = video ? el('button', {type: 'button', class: 'lpcall-switch', hidden: true, 'aria-label': t('call.switch_camera')}, t('call.switch_camera')) : null;
  c.hangBtn = el('button', {type: 'button', class: 'lpcall-hangup'});
  c.buttons = [c.muteBtn, c.camBtn, c.switchBtn, c.hangBtn].filter(Boolean);
  for (const n of [c.timer, ...c.buttons]) c.bar.append(n);
}

function setLabel(c, btn, key) {
  btn.textContent = c.t(key);
  btn.setAttribute('aria-label', c.t(key));
}

function renderLocal(c) {
  const {engine, muteBtn, camBtn} = c;
  setLabel(c, muteBtn, engine.muted ? 'call.unmute' : 'call.mute');
  muteBtn.setAttribute('aria-pressed', String(engine.muted));
  if (camBtn) {
    setLabel(c, camBtn, engine.cameraOff ? 'call.camera_on' : 'call.camera_off');
    camBtn.setAttribute('aria-pressed', String(engine.cameraOff));
    c.root.classList.toggle('lpcall-local-camera-off', engine.cameraOff);
  }
  const invited = c.role === 'agent' && engine.sessionState === 'INVITED';
  setLabel(c, c.hangBtn, invited ? 'agent.cancel_invite' : 'call.hangup');
}

function renderRemote(c) {
  const s = c.engine.remoteState;
  c.remoteMuted.hidden = !s.muted;
  c.remoteCamOff.hidden = !(c.video && s.cameraOff);
  c.root.classList.toggle('lpcall-remote-camera-off', Boolean(c.video && s.cameraOff));
}

function statusText(c) {
  const {engine, t, name} = c;
  const st = engine.status;
  const wasConnected = engine.connectedOnce || Boolean(engine.startedAt);  // startedAt: a resumed call
  if (!engine.peerPresent && wasConnected && st !== 'closed') return t('call.peer_reconnecting', {name});
  if (st === 'reconnecting') return t('call.reconnecting');
  if (st === 'connected') return '';
  if (st === 'closed') return t('call.ended');
  if (c.role === 'agent' && engine.sessionState === 'INVITED') return t('call.waiting', {name});
  return t('call.connecting');
}

function renderStatus(c) {
  c.root.dataset.status = c.engine.status;
  const text = statusText(c);
  c.status.textContent = text;
  c.status.hidden = !text;
}

function startTimer(c) {
  if (c.timerStart !== null) return;
  c.timerStart = Math.min(Date.now(), Number(c.engine.startedAt) || Date.now());  // resumed: since the call connected
  c.tick = setInterval(() => { c.timer.textContent = formatDuration((Date.now() - c.timerStart) / 1000); }, 500);
}

function play(c, target) {
  if (!target.play) return;
  target.play().then(() => { c.soundBtn.hidden = true; }, (err) => {
    if (err && err.name === 'NotAllowedError') c.soundBtn.hidden = false;
  });
}

function showRemote(c, stream) {
  const target = c.remoteVideo || c.remoteAudio;
  if (target.srcObject !== stream) target.srcObject = stream;
  play(c, target);
}

// The engine's events update the view; the buttons act on the engine.
function wire(c, onHangup) {
  const {engine} = c;
  const on = (type, fn) => engine.addEventListener(type, fn);
  on('localstream', (e) => { if (c.localVideo) c.localVideo.srcObject = e.detail.stream; });
  on('remotestream', (e) => showRemote(c, e.detail.stream));
  on('remotestate', () => renderRemote(c));
  on('localstate', () => renderLocal(c));
  on('status', () => renderStatus(c));
  on('peer', () => renderStatus(c));
  on('session', () => { renderLocal(c); renderStatus(c); });
  on('connected', () => { startTimer(c); renderStatus(c); });
  c.soundBtn.addEventListener('click', () => play(c, c.remoteVideo || c.remoteAudio));
  c.muteBtn.addEventListener('click', () => engine.setMuted(!engine.muted));
  if (c.camBtn) c.camBtn.addEventListener('click', () => engine.setCameraOff(!engine.cameraOff));
  if (c.switchBtn) {
    c.switchBtn.addEventListener('click', () => engine.switchCamera().catch(() => {}));
    engine.cameras().then((cams) => { c.switchBtn.hidden = cams.length < 2; });
  }
  c.hangBtn.addEventListener('click', () => {
    c.hangBtn.disabled = true;
    (onHangup ? onHangup() : engine.hangup());
  });
}

// The call has ended: controls off; with `onClose`, a close button (and, after `closeAfter` s, by itself).
function showEnded(c, {onClose = null, closeAfter = 0} = {}) {
  const {root, t} = c;
  c.quality.destroy();
  c.quality.root.hidden = true;
  if (c.tick) clearInterval(c.tick);
  c.tick = null;
  root.dataset.status = 'closed';
  c.status.textContent = t('call.ended');
  c.status.hidden = false;
  const hadFocus = root.contains(document.activeElement);
  for (const b of c.buttons) b.disabled = true;
  if (!onClose || root.querySelector('.lpcall-close')) return;
  for (const b of c.buttons) b.hidden = true;
  const close = el('button', {type: 'button', class: 'lpcall-close', 'aria-label': t('call.close_label')}, t('call.close'));
  let done = false;
  const fire = () => {
    if (done) return;
    done = true;
    if (c.closeTimer) clearTimeout(c.closeTimer);
    c.closeTimer = null;
    onClose();
  };
  close.addEventListener('click', fire);
  c.bar.append(close);
  if (hadFocus || document.activeElement === document.body) close.focus();  // the hang-up button is gone
  if (closeAfter > 0) c.closeTimer = setTimeout(fire, closeAfter * 1000);
}

function destroy(c) {
  c.quality.destroy();
  if (c.tick) clearInterval(c.tick);
  c.tick = null;
  if (c.closeTimer) clearTimeout(c.closeTimer);
  c.closeTimer = null;
  for (const m of [c.remoteVideo, c.remoteAudio, c.localVideo]) if (m) m.srcObject = null;
}

export function mountCallUI({engine, mode, peerName, texts, role, onHangup}) {
  ensureCss();
  const t = makeT(texts);
  const name = peerName || '';
  const video = mode === 'VIDEO_CALL';
  // what the parts of the view share: its nodes, the engine, the timer's state
  const c = {engine, t, name, video, role, timerStart: null, tick: null, closeTimer: null};
  c.root = el('section', {
    class: `lpcall-call ${video ? 'lpcall-video' : 'lpcall-voice'} lpcall-role-${role || 'consumer'}`,
    'aria-label': video ? t('call.remote_media', {name}) : t('call.voice_avatar', {name}),
    'data-status': engine.status,
  });
  buildStage(c);
  buildControls(c);
  c.root.append(c.stage, c.bar);
  wire(c, onHangup);

  if (c.localVideo && engine.localStream) c.localVideo.srcObject = engine.localStream;
  // tracks that came before this UI (the offer a listening window applied before the Accept)
  if (engine.remoteStream && engine.remoteStream.getTracks().length) showRemote(c, engine.remoteStream);
  renderLocal(c);
  renderRemote(c);
  renderStatus(c);
  if (engine.connectedOnce) startTimer(c);

  return {
    root: c.root,
    showError(msg) {
      c.error.textContent = msg;
      c.error.hidden = !msg;
    },
    showEnded: (opts) => showEnded(c, opts),
    focus() {
      const first = [c.muteBtn, c.camBtn, c.hangBtn].find((b) => b && !b.hidden && !b.disabled);
      if (first) first.focus();
    },
    destroy: () => destroy(c),
  };
}
