// "Continue on my phone" (issue 18): during a call, the visitor shows a QR code whose one-time
// link (<prefix>/call/<link>, made by POST <base>/api/call/handoff) opens the standalone call page
// on a phone. The phone takes the call over like a resume: once it opened the link, this tab lets
// the call go (its engine leaves without hanging up: the agent keeps its side) and says where the
// call went; the chat stays. The visitor can cancel the code; it expires (LPCALL_CALL_LINK_TTL).
//
//   const h = mountHandoff({base, serviceId, ui, t, token, release});   // callapp.js, per call
//   mountHandoff({base, serviceId, bar, host, t, token, release});       // window.js, per invitation
//   h.destroy();
//
// From an invitation the phone's page shows the invitation and the visitor answers there; this tab
// drops its invitation once the phone opened the link.

import {el, stylesheet} from './dom.js';

const POLL_MS = 700;

function ensureCss() {
  stylesheet('lpcall-handoff-css', new URL('./handoff.css', import.meta.url).href);
}

// The handoff API (POST / GET / DELETE <base>/api/call/handoff[/<id>]) with the visitor's token.
async function handoffRequest(base, token, method, path, body) {
  const resp = await fetch(`${base}/api/call/handoff${path}`, {
    method, credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', Authorization: `Bearer ${await token()}`},
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error((json.error && json.error.message) || `HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return json;
}

// The panel's content for a one-time link: its QR code, the link, how long it lasts, Cancel.
function codeView(t, handoff, qrUrl, onCancel) {
  const minutes = Math.max(1, Math.round((handoff.expires * 1000 - Date.now()) / 60000));
  const img = el('img', {class: 'lpcall-handoff-qr', src: qrUrl, alt: t('handoff.qr_alt'), width: '200', height: '200'});
  const link = el('input', {class: 'lpcall-handoff-url', readonly: true, value: handoff.url, 'aria-label': t('handoff.link_label')});
  link.addEventListener('focus', () => link.select());
  const cancel = el('button', {type: 'button', class: 'lpcall-handoff-cancel'}, t('handoff.cancel'));
  cancel.addEventListener('click', onCancel);
  const nodes = [el('h3', {class: 'lpcall-handoff-title'}, t('handoff.title')), img,
    el('p', {class: 'lpcall-handoff-text'}, t('handoff.instructions', {minutes})), link, cancel];
  return {nodes, img, cancel};
}

// `ui`: a call UI (the button goes into its controls, the panel into it); or `bar` and `host`:
// where the button and the panel go (the invitation, window.js).
export function mountHandoff({base, serviceId, ui, bar: barEl, host: hostEl, t, token, release}) {
  const bar = barEl || (ui && ui.root && ui.root.querySelector('.lpcall-controls'));
  const host = hostEl || (ui && ui.root);
  if (!bar || !host || typeof fetch !== 'function') return {destroy() {}};
  ensureCss();
  const button = el('button', {type: 'button', class: 'lpcall-handoff', 'aria-haspopup': 'dialog'}, t('handoff.button'));
  bar.append(button);
  let panel = null;
  let timer = null;
  let handoff = null;
  let qrUrl = null;
  let gone = false;

  const request = (method, path, body) => handoffRequest(base, token, method, path, body);

  function closePanel() {
    clearTimeout(timer);
    timer = null;
    if (qrUrl) URL.revokeObjectURL(qrUrl);
    qrUrl = null;
    if (panel) panel.remove();
    panel = null;
    handoff = null;
    button.disabled = false;
  }

  function note(text) {
    if (!panel) return;
    const close = el('button', {type: 'button', class: 'lpcall-handoff-close'}, t('handoff.close'));
    close.addEventListener('click', () => { closePanel(); button.focus(); });
    panel.replaceChildren(el('p', {class: 'lpcall-handoff-note', role: 'status'}, text), close);
    close.focus();
  }

  async function poll() {
    if (!handoff || gone) return;
    try {
      const status = await request('GET', `/${encodeURIComponent(handoff.handoffId)}`);
      if (status.state === 'opened') {
        gone = true;
        closePanel();
        release(t('handoff.moved'));
        return;
      }
      if (status.state === 'cancelled') return closePanel();
    } catch (err) {
      if (err.status === 404) return note(t('handoff.expired'));  // expired (or the call ended)
    }
    if (handoff) timer = setTimeout(poll, POLL_MS);
  }

  async function open() {
    if (panel) return;
    button.disabled = true;
    panel = el('div', {class: 'lpcall-handoff-panel', role: 'dialog', 'aria-label': t('handoff.title')});
    host.append(panel);
    try {
      handoff = await request('POST', '', {serviceId});
    } catch (err) {
      return note(t('handoff.failed', {error: err.message}));
    }
    if (!panel) return;
    qrUrl = URL.createObjectURL(new Blob([handoff.qrSvg], {type: 'image/svg+xml'}));
    const {nodes, img, cancel} = codeView(t, handoff, qrUrl, async () => {
      const id = handoff && handoff.handoffId;
      closePanel();
      button.focus();
      if (id) { try { await request('DELETE', `/${encodeURIComponent(id)}`); } catch (e) { /* expired anyway */ } }
    });
    panel.replaceChildren(...nodes);
    cancel.focus({preventScroll: true});
    img.scrollIntoView({block: 'nearest'});  // a scrolling room shows the code, not just its Cancel
    timer = setTimeout(poll, POLL_MS);
  }

  button.addEventListener('click', open);
  return {
    destroy() { clearTimeout(timer); if (qrUrl) URL.revokeObjectURL(qrUrl); button.remove(); if (panel) panel.remove(); },
  };
}

// NO_CAMERA_ACCESS (issue 18): the desktop cannot open its camera or microphone, the call is still
// open (callapp.js holds it instead of failing): the error view offers the phone. `giveUp`: the
// visitor ends the call here instead (callapp.js then reports NO_CAMERA_ACCESS as before).
//
//   const offer = mountNoCameraOffer({container, message, base, serviceId, t, token, release, giveUp});
//   offer.destroy();
export function mountNoCameraOffer({container, message, base, serviceId, t, token, release, giveUp}) {
  const node = el('div', {class: 'lpcall-call-error lpcall-no-camera'});
  const actions = el('div', {class: 'lpcall-no-camera-actions'});
  node.append(el('p', {role: 'alert'}, message), el('p', {class: 'lpcall-no-camera-phone'}, t('handoff.no_camera')), actions);
  const handoff = mountHandoff({base, serviceId, bar: actions, host: node, t, token, release});
  const end = el('button', {type: 'button', class: 'lpcall-no-camera-end'}, t('handoff.give_up'));
  end.addEventListener('click', () => giveUp(node));
  actions.append(end);
  const hadFocus = container.contains(document.activeElement) || document.activeElement === document.body;
  container.replaceChildren(node);
  const first = actions.querySelector('.lpcall-handoff');
  if (hadFocus) (first || end).focus();
  return {node, destroy() { handoff.destroy(); end.remove(); }};
}
