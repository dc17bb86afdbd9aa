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

export function mountCallUI({engine, mode, peerName, texts, role, onHangup}) {
  ensureCss();
  const t = makeT(texts);
  const name = peerName || '';
  const video = mode === 'VIDEO_CALL';
  const root = el('section', {
    class: `lpcall-call ${video ? 'lpcall-video' : 'lpcall-voice'} lpcall-role-${role || 'consumer'}`,
    'aria-label': video ? t('call.remote_media', {name}) : t('call.voice_avatar', {name}),
    'data-status': engine.status,
  });
  const stage = el('div', {class: 'lpcall-stage'});
  const remoteVideo = video ? el('video', {class: 'lpcall-remote', autoplay: true, playsinline: true, 'aria-label': t('call.remote_media', {name})}) : null;
  const remoteAudio = video ? null : el('audio', {class: 'lpcall-remote-audio', autoplay: true});
  const avatar = el('div', {class: 'lpcall-avatar', role: 'img', 'aria-label': t('call.voice_avatar', {name})});
  avatar.append(el('span', {class: 'lpcall-initials', 'aria-hidden': 'true'}, initials(name)), el('span', {class: 'lpcall-peer-name'}, name));
  const localVideo = video ? el('video', {class: 'lpcall-local', autoplay: true, playsinline: true, muted: true, 'aria-label': t('call.local_preview')}) : null;
  if (localVideo) localVideo.muted = true;
  const status = el('div', {class: 'lpcall-call-status', role: 'status', 'aria-live': 'polite'});
  const flags = el('div', {class: 'lpcall-remote-flags', 'aria-live': 'polite'});
  const remoteMuted = el('span', {class: 'lpcall-remote-muted', hidden: true}, t('call.remote_muted', {name}));
  const remoteCamOff = el('span', {class: 'lpcall-remote-camera-off', hidden: true}, t('call.remote_camera_off', {name}));
  flags.append(remoteMuted, remoteCamOff);
  const error = el('div', {class: 'lpcall-call-error', role: 'alert', hidden: true});
  for (const n of [remoteVideo, remoteAudio, avatar, localVideo, status, flags, error]) if (n) stage.append(n);
  const quality = mountQualityIndicator({engine, t, name, video});  // issue 17: own and the other side's level
  stage.append(quality.root);

  const bar = el('div', {class: 'lpcall-controls', role: 'toolbar', 'aria-label': t('call.timer')});
  const timer = el('span', {class: 'lpcall-timer', role: 'timer', 'aria-label': t('call.timer')}, '0:00');
  const muteBtn = el('button', {type: 'button', class: 'lpcall-mute', 'aria-pressed': 'false'});
  const camBtn = video ? el('button', {type: 'button', class: 'lpcall-camera', 'aria-pressed': 'false'}) : null;
  const switchBtn = video ? el('button', {type: 'button', class: 'lpcall-switch', hidden: true, 'aria-label': t('call.switch_camera')}, t('call.switch_camera')) : null;
  const hangBtn = el('button', {type: 'button', class: 'lpcall-hangup'});
  for (const n of [timer, muteBtn, camBtn, switchBtn, hangBtn]) if (n) bar.append(n);
  root.append(stage, bar);

  let timerStart = null;
  let tick = null;
  let closeTimer = null;
  const setLabel = (btn, key) => {
    btn.textContent = t(key);
    btn.setAttribute('aria-label', t(key));
  };
  function renderLocal() {
    setLabel(muteBtn, engine.muted ? 'call.unmute' : 'call.mute');
    muteBtn.setAttribute('aria-pressed', String(engine.muted));
    if (camBtn) {
      setLabel(camBtn, engine.cameraOff ? 'call.camera_on' : 'call.camera_off');
      camBtn.setAttribute('aria-pressed', String(engine.cameraOff));
      root.classList.toggle('lpcall-local-camera-off', engine.cameraOff);
    }
    const invited = role === 'agent' && engine.sessionState === 'INVITED';
    setLabel(hangBtn, invited ? 'agent.cancel_invite' : 'call.hangup');
  }
  function renderRemote() {
    const s = engine.remoteState;
    remoteMuted.hidden = !s.muted;
    remoteCamOff.hidden = !(video && s.cameraOff);
    root.classList.toggle('lpcall-remote-camera-off', Boolean(video && s.cameraOff));
  }
  function renderStatus() {
    const st = engine.status;
    root.dataset.status = st;
    let text = '';
    const wasConnected = engine.connectedOnce || Boolean(engine.startedAt);  // startedAt: a resumed call
    if (!engine.peerPresent && wasConnected && st !== 'closed') text = t('call.peer_reconnecting', {name});
    else if (st === 'reconnecting') text = t('call.reconnecting');
    else if (st === 'connected') text = '';
    else if (st === 'closed') text = t('call.ended');
    else if (role === 'agent' && engine.sessionState === 'INVITED') text = t('call.waiting', {name});
    else text = t('call.connecting');
    status.textContent = text;
    status.hidden = !text;
  }
  function startTimer() {
    if (timerStart !== null) return;
    timerStart = Math.min(Date.now(), Number(engine.startedAt) || Date.now());  // resumed: since the call connected
    tick = setInterval(() => { timer.textContent = formatDuration((Date.now() - timerStart) / 1000); }, 500);
  }

  const on = (type, fn) => engine.addEventListener(type, fn);
  on('localstream', (e) => { if (localVideo) localVideo.srcObject = e.detail.stream; });
  // The browser's autoplay policy (Safari's, and any browser after a reload, which has no click)
  // may refuse to play the remote sound: then a button asks for the click that starts it.
  const soundBtn = el('button', {type: 'button', class: 'lpcall-sound-on', hidden: true}, t('call.sound_on', {name}));
  stage.append(soundBtn);
  function play(target) {
    if (!target.play) return;
    target.play().then(() => { soundBtn.hidden = true; }, (err) => {
      if (err && err.name === 'NotAllowedError') soundBtn.hidden = false;
    });
  }
  soundBtn.addEventListener('click', () => play(remoteVideo || remoteAudio));
  function showRemote(stream) {
    const target = remoteVideo || remoteAudio;
    if (target.srcObject !== stream) target.srcObject = stream;
    play(target);
  }
  on('remotestream', (e) => showRemote(e.detail.stream));
  on('remotestate', renderRemote);
  on('localstate', renderLocal);
  on('status', renderStatus);
  on('peer', renderStatus);
  on('session', () => { renderLocal(); renderStatus(); });
  on('connected', () => { startTimer(); renderStatus(); });

  muteBtn.addEventListener('click', () => engine.setMuted(!engine.muted));
  if (camBtn) camBtn.addEventListener('click', () => engine.setCameraOff(!engine.cameraOff));
  if (switchBtn) {
    switchBtn.addEventListener('click', () => engine.switchCamera().catch(() => {}));
    engine.cameras().then((cams) => { switchBtn.hidden = cams.length < 2; });
  }
  hangBtn.addEventListener('click', () => {
    hangBtn.disabled = true;
    (onHangup ? onHangup() : engine.hangup());
  });

  if (localVideo && engine.localStream) localVideo.srcObject = engine.localStream;
  // tracks that came before this UI (the offer a listening window applied before the Accept)
  if (engine.remoteStream && engine.remoteStream.getTracks().length) showRemote(engine.remoteStream);
  renderLocal();
  renderRemote();
  renderStatus();
  if (engine.connectedOnce) startTimer();

  return {
    root,
    showError(msg) {
      error.textContent = msg;
      error.hidden = !msg;
    },
    showEnded({onClose = null, closeAfter = 0} = {}) {
      quality.destroy();
      quality.root.hidden = true;
      if (tick) clearInterval(tick);
      tick = null;
      root.dataset.status = 'closed';
      status.textContent = t('call.ended');
      status.hidden = false;
      const hadFocus = root.contains(document.activeElement);
      for (const b of [muteBtn, camBtn, switchBtn, hangBtn]) if (b) b.disabled = true;
      if (!onClose || root.querySelector('.lpcall-close')) return;
      for (const b of [muteBtn, camBtn, switchBtn, hangBtn]) if (b) b.hidden = true;
      const close = el('button', {type: 'button', class: 'lpcall-close', 'aria-label': t('call.close_label')}, t('call.close'));
      let done = false;
      const fire = () => {
        if (done) return;
        done = true;
        if (closeTimer) clearTimeout(closeTimer);
        closeTimer = null;
        onClose();
      };
      close.addEventListener('click', fire);
      bar.append(close);
      if (hadFocus || document.activeElement === document.body) close.focus();  // the hang-up button is gone
      if (closeAfter > 0) closeTimer = setTimeout(fire, closeAfter * 1000);
    },
    focus() {
      const first = [muteBtn, camBtn, hangBtn].find((b) => b && !b.hidden && !b.disabled);
      if (first) first.focus();
    },
    destroy() {
      quality.destroy();
      if (tick) clearInterval(tick);
      tick = null;
      if (closeTimer) clearTimeout(closeTimer);
      closeTimer = null;
      for (const m of [remoteVideo, remoteAudio, localVideo]) if (m) m.srcObject = null;
    },
  };
}
