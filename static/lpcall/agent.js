// The agent workspace: live conversation list, chat pane, call buttons (PROTOCOL §4).
// All user text is rendered with textContent.

import {LPSocket, socketUrl} from './socket.js';
import {el, loadConfig, t} from './dom.js';

const root = document.getElementById('lpcall-agent');
const base = root.dataset.base;
const me = {id: root.dataset.agentId, name: root.dataset.agentName};
const allowed = {VOICE_CALL: root.dataset.voice === '1', VIDEO_CALL: root.dataset.video === '1'};
const SELECTED_KEY = 'lpcall.agent.selected';

const $ = (sel) => document.querySelector(sel);
const queueList = $('.lpcall-queue');
const mineList = $('.lpcall-mine');
const empty = $('.lpcall-empty');
const main = $('.lpcall-chat-main');
const chatTitle = $('.lpcall-chat-title');
const takeBtn = $('.lpcall-take');
const closeBtn = $('.lpcall-close-conv');
const netcheckBtn = $('.lpcall-netcheck-request');
const callButtons = [...document.querySelectorAll('.lpcall-call-btn')];
const reason = $('.lpcall-call-reason');
const chatError = $('.lpcall-chat-error');
const callContainer = $('.lpcall-agent-call');
const elsewhere = $('.lpcall-call-elsewhere');
const elsewhereText = $('.lpcall-call-elsewhere-text');
const showCallBtn = $('.lpcall-call-show');
const stopCallBtn = $('.lpcall-call-stop');
const linkArea = $('.lpcall-call-link-area');
const linkBtn = $('.lpcall-call-link');
const linkResult = $('.lpcall-call-link-result');
const linkLabel = $('.lpcall-call-link-label');
const linkUrl = $('.lpcall-call-link-url');
const linkCopy = $('.lpcall-call-link-copy');
const linkStatus = $('.lpcall-call-link-status');
const transcript = main.querySelector('.lpcall-transcript');
const composer = main.querySelector('.lpcall-composer');
const input = composer.querySelector('textarea');
const availableBox = $('#lpcall-available');
const connStatus = $('.lpcall-conn-status');

const convs = new Map(); // convId -> summary
let selected = null;
let lastSeq = -1;
let activeCall = null; // {serviceId, conversationId, ui}
let paneConv = null; // the conversation the call pane belongs to (a call, or its "Call ended")
let config = {maxMessageLength: 4000};

function visitorName(c) {
  return (c && c.visitorName) || t('agent.visitor');
}

function showError(text) {
  chatError.textContent = text || '';
  chatError.hidden = !text;
}

// -- list --------------------------------------------------------------------------------
// One row per conversation, kept across updates and changed in place: a list rebuilt on every update
// (a visitor typing, a new visitor) took the keyboard focus from the row the agent was on and could
// swallow a click whose press and release straddled the update.
const rows = new Map(); // convId -> {li, open, name, last, take}

function listRow(convId) {
  let r = rows.get(convId);
  if (r) return r;
  const li = el('li', {class: 'lpcall-conv-item', 'data-conv-id': convId});
  const open = el('button', {type: 'button', class: 'lpcall-conv-open'});
  const name = el('span', {class: 'lpcall-conv-name'});
  const last = el('span', {class: 'lpcall-conv-last'});
  open.append(name);
  open.addEventListener('click', () => select(convId));
  const take = el('button', {type: 'button', class: 'lpcall-conv-take'}, t('agent.take'));
  take.addEventListener('click', () => takeConversation(convId));
  li.append(open);
  r = {li, open, name, last, take};
  rows.set(convId, r);
  return r;
}

function fillRow(r, c) {
  const who = visitorName(c);
  if (r.name.textContent !== who) r.name.textContent = who;
  const preview = c.lastMessage ? c.lastMessage.text : null;
  if (preview === null) r.last.remove();
  else {
    if (r.last.textContent !== preview) r.last.textContent = preview;
    if (!r.last.parentNode) r.open.append(r.last);
  }
  if (c.convId === selected) r.open.setAttribute('aria-current', 'true');
  else r.open.removeAttribute('aria-current');
  if (c.agentId) r.take.remove();
  else {
    r.take.setAttribute('aria-label', `${t('agent.take')}: ${who}`);
    if (!r.take.parentNode) r.li.append(r.take);
  }
}

// `list` holds exactly `items`, in order; a row already in its place is not moved (moving it would blur it)
function placeRows(list, items) {
  items.forEach((li, i) => {
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
  });
  while (list.children.length > items.length) list.lastElementChild.remove();
}

function renderList() {
  const sorted = [...convs.values()].sort((a, b) => a.startTs - b.startTs);
  const queued = [], mine = [];
  for (const c of sorted) {
    const r = listRow(c.convId);
    fillRow(r, c);
    (c.agentId ? mine : queued).push(r.li);
  }
  for (const [convId, r] of rows) {
    if (!convs.has(convId)) { r.li.remove(); rows.delete(convId); }
  }
  placeRows(queueList, queued);
  placeRows(mineList, mine);
}

function upsert(c, visible) {
  const old = convs.get(c.convId);
  if (!c.lastMessage && old && old.lastMessage) c.lastMessage = old.lastMessage; // change rows carry no preview
  if (!visible || c.state !== 'OPEN') convs.delete(c.convId);
  else convs.set(c.convId, c);
  renderList();
  if (c.convId === selected) {
    if (!convs.has(c.convId)) deselect();
    else renderHead();
  }
}

// -- chat pane -----------------------------------------------------------------------------
function renderHead() {
  const c = convs.get(selected);
  if (!c) return;
  chatTitle.textContent = visitorName(c);
  const mine = c.agentId === me.id;
  takeBtn.hidden = mine;
  closeBtn.hidden = !mine;
  netcheckBtn.hidden = !mine;
  composer.hidden = !mine;
  const cobrowse = (c.features || []).includes('CO_BROWSE');
  const busy = Boolean(c.call) || Boolean(activeCall);
  let why = '';
  if (!cobrowse) why = t('agent.no_cobrowse');
  else if (busy) why = t('agent.call_in_progress');
  for (const b of callButtons) {
    b.hidden = !allowed[b.dataset.mode] || !mine;
    b.disabled = !cobrowse || busy;
  }
  reason.textContent = why;
  reason.hidden = !why || !mine || callButtons.length === 0;
  renderCallPane();
}

// The call pane belongs to its conversation: over another one it is hidden (its media go on)
// and a bar says where the call is, with a way back and the cancel / hang-up button.
function renderCallPane() {
  const here = Boolean(paneConv) && paneConv === selected;
  callContainer.hidden = !here;
  main.classList.toggle('lpcall-with-call', here && callContainer.childElementCount > 0);
  renderLinkArea();
  const away = activeCall && activeCall.conversationId !== selected ? activeCall : null;
  elsewhere.hidden = !away;
  if (!away) return;
  const invited = !away.ui || !away.ui.engine || away.ui.engine.sessionState === 'INVITED';
  const name = visitorName(convs.get(away.conversationId) || away.peer);
  elsewhereText.textContent = t(invited ? 'agent.invite_elsewhere' : 'agent.call_elsewhere', {name});
  stopCallBtn.textContent = t(invited ? 'agent.cancel_invite' : 'call.hangup');
  stopCallBtn.setAttribute('aria-label', `${stopCallBtn.textContent}: ${name}`);
  showCallBtn.hidden = !convs.has(away.conversationId);
  stopCallBtn.disabled = !away.ui;
}
// A call link (issue 18) for the invitation waiting in this conversation: the standalone call page,
// for a visitor who wants to answer on another device or in an app. It goes into the chat at once,
// and shows here with a copy button and when it stops working.
function invitedHere() {
  const call = activeCall;
  if (!call || call.conversationId !== selected || !call.ui || !call.ui.engine) return null;
  return call.ui.engine.sessionState === 'INVITED' && !call.ui.engine.closedInfo ? call : null;
}

function renderLinkArea() {
  const call = invitedHere();
  linkArea.hidden = !call;
  if (!call || linkResult.dataset.serviceId !== call.serviceId) {
    linkResult.hidden = true;
    linkResult.dataset.serviceId = '';
  }
}

function csrfToken() {
  const field = document.querySelector('input[name=csrf_token]');
  return field ? field.value : '';
}

async function sendCallLink() {
  const call = invitedHere();
  if (!call) return;
  showError('');
  linkBtn.disabled = true;
  try {
    const resp = await fetch(`${base}/api/agent/call-link`, {
      method: 'POST', credentials: 'same-origin',
      headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken()},
      body: JSON.stringify({serviceId: call.serviceId}),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error((body.error && body.error.message) || `HTTP ${resp.status}`);
    const until = new Date(body.expires * 1000).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
    linkLabel.textContent = t('agent.call_link_label', {name: visitorName(convs.get(call.conversationId) || call.peer)});
    linkUrl.value = body.url;
    linkCopy.textContent = t('agent.call_link_copy');
    linkStatus.textContent = '';
    linkResult.dataset.serviceId = call.serviceId;
    linkResult.hidden = false;
    await sock.request('ms.PublishEvent', {
      conversationId: call.conversationId,
      event: {type: 'ContentEvent', contentType: 'text/plain', message: t('agent.call_link_message', {url: body.url})},
    });
    linkStatus.textContent = t('agent.call_link_sent', {time: until});
    linkCopy.focus();
  } catch (err) {
    showError(t('agent.error', {error: err.message}));
  } finally {
    linkBtn.disabled = false;
  }
}

async function copyCallLink() {
  let copied = false;
  try {
    await navigator.clipboard.writeText(linkUrl.value);
    copied = true;
  } catch (e) {
    linkUrl.select();  // no clipboard API here (an http page): the old way
    try { copied = document.execCommand('copy'); } catch (e2) { copied = false; }
  }
  if (copied) linkCopy.textContent = t('agent.call_link_copied');
  else linkUrl.focus();
}
linkBtn.addEventListener('click', sendCallLink);
linkCopy.addEventListener('click', copyCallLink);
linkUrl.addEventListener('focus', () => linkUrl.select());

showCallBtn.addEventListener('click', () => { if (activeCall) select(activeCall.conversationId); });
stopCallBtn.addEventListener('click', () => {
  if (!activeCall) return;
  if (activeCall.ui) activeCall.ui.hangup();
  else sock.request('call.Cancel', {serviceId: activeCall.serviceId}).catch(() => {});
});

function deselect() {
  selected = null;
  main.hidden = true;
  empty.hidden = false;
  renderCallPane();
  try { sessionStorage.removeItem(SELECTED_KEY); } catch (e) { /* ignore */ }
}

async function select(convId) {
  if (!convs.has(convId)) return;
  selected = convId;
  try { sessionStorage.setItem(SELECTED_KEY, convId); } catch (e) { /* ignore */ }
  transcript.textContent = '';
  lastSeq = -1;
  showError('');
  empty.hidden = true;
  main.hidden = false;
  renderList();
  renderHead();
  try {
    await sock.request('agent.Open', {conversationId: convId});
  } catch (err) {
    showError(t('agent.error', {error: err.message}));
  }
  if (!composer.hidden) input.focus();
}

function renderEvent(ev) {
  if (ev.sequence <= lastSeq) return;
  lastSeq = ev.sequence;
  const role = ev.role || 'SYSTEM';
  const li = el('li', {class: `lpcall-msg lpcall-msg-${role.toLowerCase()}`, 'data-seq': String(ev.sequence)});
  const c = convs.get(selected);
  const who = role === 'CONSUMER' ? visitorName(c) : role === 'AGENT' ? me.name : t('agent.system');
  li.append(el('span', {class: 'lpcall-msg-who'}, who), el('span', {class: 'lpcall-msg-text'}, (ev.event && ev.event.message) || ''));
  transcript.append(li);
  transcript.scrollTop = transcript.scrollHeight;
}

async function takeConversation(convId) {
  try {
    const body = await sock.request('agent.Take', {conversationId: convId});
    upsert(body.conversation, true);
    if (selected !== convId) await select(convId);
    else renderHead();
  } catch (err) {
    showError(t('agent.error', {error: err.message}));
  }
}

// -- calls (PROTOCOL §10: agentcall.js is the calls area's) ------------------------------
async function startCall(info) {
  if (activeCall && activeCall.serviceId === info.serviceId) return;
  const c = convs.get(info.conversationId) || convs.get(selected);
  const call = {serviceId: info.serviceId, conversationId: info.conversationId, ui: null, peer: c};
  activeCall = call;
  renderHead();
  try {
    const mod = await import('./agentcall.js');
    callContainer.textContent = '';
    paneConv = info.conversationId;
    call.ui = mod.startAgentCall({
      base,
      container: callContainer,
      serviceId: info.serviceId,
      token: info.token,
      mode: info.mode,
      iceServers: info.iceServers,
      iceTransportPolicy: info.iceTransportPolicy,
      cameraOffAtStart: info.cameraOffAtStart,
      peerName: visitorName(c),
      texts: (config && config.texts) || {},
      socket: sock,
      info,
      closeAfter: config && config.callEndedSeconds,
      onEnd: () => {
        if (activeCall === call) activeCall = null;
        renderHead();
      },
      onClosed: () => {
        if (paneConv === info.conversationId && !activeCall) paneConv = null;
        renderCallPane();
      },
    });
    call.ui.engine.addEventListener('session', () => renderCallPane());
    renderCallPane();
  } catch (err) {
    console.warn('lpcall: agent call UI unavailable', err);
  }
}

async function invite(mode) {
  if (!selected) return;
  showError('');
  for (const b of callButtons) b.disabled = true;
  try {
    const info = await sock.request('call.Invite', {conversationId: selected, mode});
    await startCall({conversationId: selected, ...info});
  } catch (err) {
    showError(t('agent.error', {error: err.message}));
  }
  renderHead();
}

for (const b of callButtons) b.addEventListener('click', () => invite(b.dataset.mode));
takeBtn.addEventListener('click', () => selected && takeConversation(selected));
// Ask the visitor to run the pre-call network check: the window shows a button (systemKey
// system.netcheck_request), the verdict comes back into this transcript (system.netcheck).
netcheckBtn.addEventListener('click', async () => {
  if (!selected) return;
  showError('');
  netcheckBtn.disabled = true;
  try {
    await sock.request('netcheck.Request', {conversationId: selected});
  } catch (err) {
    showError(t('agent.error', {error: err.message}));
  } finally {
    netcheckBtn.disabled = false;
  }
});
closeBtn.addEventListener('click', async () => {
  if (!selected) return;
  try {
    await sock.request('cm.CloseConversation', {conversationId: selected});
  } catch (err) {
    showError(t('agent.error', {error: err.message}));
  }
});

composer.addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = input.value;
  if (!text.trim() || !selected) return;
  if (text.length > config.maxMessageLength) {
    showError(t('window.too_long'));
    return;
  }
  input.value = ''; // at once: typing during the send must not be wiped
  try {
    await sock.request('ms.PublishEvent', {
      conversationId: selected,
      event: {type: 'ContentEvent', contentType: 'text/plain', message: text},
    });
    showError('');
  } catch (err) {
    if (!input.value) input.value = text; // nothing is lost: back for a retry
    showError(t('agent.error', {error: err.message}));
  }
});
input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    composer.requestSubmit();
  }
});
availableBox.addEventListener('change', () => {
  sock.request('agent.SetAvailable', {available: availableBox.checked}).catch(() => {});
});

// -- socket ---------------------------------------------------------------------------------
const sock = new LPSocket(socketUrl(base, '/ws/agent'), {
  heartbeat: 10,
  onOpen: async (s) => {
    await s.rawRequest('agent.Subscribe', {available: availableBox.checked});
    if (selected) {
      await s.rawRequest('agent.Open', {conversationId: selected, fromSeq: lastSeq + 1}).catch(() => {});
    }
    s.rawRequest('call.Active', {}).then((body) => {
      for (const info of body.calls || []) startCall(info);
    }).catch(() => {});
  },
  onNotification: (frame) => {
    const body = frame.body || {};
    if (frame.type === 'error') {
      if (frame.code === 401) window.location.reload(); // logged out: the page sends us to the login form
      return;
    }
    if (frame.type === 'agent.ConversationList') {
      convs.clear();
      for (const c of body.conversations || []) convs.set(c.convId, c);
      renderList();
      let want = selected;
      if (!want) { try { want = sessionStorage.getItem(SELECTED_KEY); } catch (e) { want = null; } }
      if (want && convs.has(want) && !selected) select(want);
      else if (selected && !convs.has(selected)) deselect();
      else renderHead();
    } else if (frame.type === 'agent.LastMessage') {
      const c = convs.get(body.conversationId);
      if (c) {
        c.lastMessage = body.lastMessage;
        renderList();
      }
    } else if (frame.type === 'agent.ConversationChange') {
      upsert(body.conversation, body.visible);
    } else if (frame.type === 'ms.MessagingEventNotification') {
      // an opened conversation gets no agent.LastMessage: its events update the list
      const events = body.events || [];
      const c = convs.get(body.conversationId);
      if (c && events.length) {
        const ev = events[events.length - 1];
        c.lastMessage = {text: (ev.event && ev.event.message) || '', role: ev.role, ts: ev.serverTimestamp, sequence: ev.sequence};
        renderList();
      }
      if (body.conversationId !== selected) return;
      for (const ev of events) renderEvent(ev);
    }
  },
  onStatus: (s) => {
    root.dataset.status = s;
    connStatus.textContent = s === 'offline' ? t('agent.offline') : '';
  },
});

loadConfig(base).then((c) => { config = c; sock.heartbeat = (c.heartbeat || 10) * 1000; }).catch(() => {}).finally(() => sock.connect());
