// The embedded engagement window: a small chat widget on every tagged page.
//
// It talks the Messaging-Window protocol over <base>/ws/consumer (PROTOCOL §3), declares
// CO_BROWSE, recovers the visitor's open conversation from the server after a reload or
// navigation, and shows call invitations (COBROWSE dialogs) with Accept / Decline, publishing
// the seed's lpCoBrowse events exactly like a custom integration would (PROTOCOL §10).
// All user text is rendered with textContent.

import {LPSocket, socketUrl} from './socket.js';
import {consumerFeatures, el, t} from './dom.js';

const OPEN_KEY = 'lpcall.window.open';
// systemKey of the agent's request to run the pre-call network check (PROTOCOL §3).
const NETCHECK_REQUEST = 'system.netcheck_request';

function monitoring() {
  const sdk = window.lpTag && window.lpTag.taglets && window.lpTag.taglets.lp_monitoringSDK;
  try { return {ssid: sdk.getSid(), svid: sdk.getVid()}; } catch (e) { return null; }
}

function publish(event, data) {
  const events = window.lpTag && window.lpTag.events;
  if (events && typeof events.publish === 'function') return events.publish('lpCoBrowse', event, data);
  return false;
}

// The window's stylesheet, once per page; the window stays invisible until it has loaded.
function ensureStyles(root) {
  if (document.querySelector('link[data-lpcall-css]')) return;
  const link = el('link', {rel: 'stylesheet', href: new URL('./lpcall.css', import.meta.url).href, 'data-lpcall-css': ''});
  root.style.visibility = 'hidden';
  const show = () => { root.style.visibility = ''; };
  link.addEventListener('load', show);
  link.addEventListener('error', show);
  document.head.appendChild(link);
}

// The panel's elements (nothing wired yet).
function buildPanel() {
  const root = el('div', {class: 'lpcall-window', 'data-lpcall-window': ''});
  const launcher = el('button', {type: 'button', class: 'lpcall-launcher', 'aria-expanded': 'false', 'aria-controls': 'lpcall-window-panel'}, t('window.open'));
  const panel = el('section', {id: 'lpcall-window-panel', class: 'lpcall-panel', role: 'dialog', 'aria-label': t('window.title'), hidden: true});
  const head = el('header', {class: 'lpcall-panel-head'});
  const title = el('h2', {class: 'lpcall-panel-title'}, t('window.title'));
  const minimize = el('button', {type: 'button', class: 'lpcall-minimize', 'aria-label': t('window.minimize'), title: t('window.minimize')}, '–');
  head.append(title, minimize);
  const status = el('p', {class: 'lpcall-status', role: 'status', 'aria-live': 'polite'});
  // a live region from the start: an invitation inserted later is announced
  const invites = el('div', {class: 'lpcall-invitations', 'aria-live': 'assertive'});
  const callArea = el('div', {class: 'lpcall-window-call'});
  const netcheckArea = el('section', {class: 'lpcall-window-netcheck', 'aria-label': t('window.netcheck'), tabindex: '-1', hidden: true});
  const transcript = el('ol', {class: 'lpcall-transcript', role: 'log', 'aria-live': 'polite', 'aria-label': t('window.transcript')});

  const startForm = el('form', {class: 'lpcall-start'});
  const nameInput = el('input', {id: 'lpcall-visitor-name', name: 'visitorName', autocomplete: 'name', maxlength: '100'});
  startForm.append(el('label', {for: 'lpcall-visitor-name'}, t('window.name_label')), nameInput,
    el('button', {type: 'submit'}, t('window.start')));

  const composer = el('form', {class: 'lpcall-composer', hidden: true});
  const input = el('textarea', {id: 'lpcall-message', rows: '2', placeholder: t('window.placeholder')});
  composer.append(el('label', {for: 'lpcall-message', class: 'lpcall-sr-only'}, t('window.message_label')), input,
    el('button', {type: 'submit'}, t('window.send')));

  const ended = el('div', {class: 'lpcall-ended', hidden: true});
  const newChat = el('button', {type: 'button'}, t('window.new_chat'));
  ended.append(el('p', {}, t('window.ended')), newChat);

  panel.append(head, status, invites, netcheckArea, callArea, transcript, startForm, ended, composer);
  root.append(panel, launcher);
  return {root, launcher, panel, minimize, status, invites, callArea, netcheckArea, transcript, startForm, nameInput, composer, input, ended, newChat};
}

// Open / minimized (kept per tab), the status line and which form shows: w.setOpen, w.showStatus, w.showMode.
function panelControls(w) {
  const {panel, launcher, minimize, composer, nameInput, input, status, startForm, ended} = w.ui;
  // The focus moves into the panel only when it opens, never when it is open already (a
  // conversation update must not take the focus from an invitation's Accept or the composer).
  w.setOpen = (open) => {
    const opening = open && panel.hidden;
    panel.hidden = !open;
    launcher.setAttribute('aria-expanded', String(open));
    launcher.hidden = open;
    try { sessionStorage.setItem(OPEN_KEY, open ? '1' : '0'); } catch (e) { /* ignore */ }
    if (opening) (composer.hidden ? nameInput : input).focus();
  };
  launcher.addEventListener('click', () => w.setOpen(true));
  minimize.addEventListener('click', () => { w.setOpen(false); launcher.focus(); });
  panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') { w.setOpen(false); launcher.focus(); } });
  w.wasOpen = null;
  try { w.wasOpen = sessionStorage.getItem(OPEN_KEY); } catch (e) { /* ignore */ }
  if (w.wasOpen === '1') w.setOpen(true);

  w.showStatus = (text) => {
    status.textContent = text || '';
    status.hidden = !text;
  };
  w.showMode = (mode) => { // 'start' | 'chat' | 'ended'
    startForm.hidden = mode !== 'start';
    composer.hidden = mode !== 'chat';
    ended.hidden = mode !== 'ended';
  };
  w.showMode('start');
}

// The conversation's messages: w.renderEvent(ev), w.clearTranscript().
function transcriptView(w) {
  const {state, ui} = w;
  w.clearTranscript = () => {
    ui.transcript.textContent = '';
    state.lastSeq = -1;
  };
  w.renderEvent = (ev) => {
    if (ev.sequence <= state.lastSeq) return;
    state.lastSeq = ev.sequence;
    const role = ev.role || 'SYSTEM';
    const li = el('li', {class: `lpcall-msg lpcall-msg-${role.toLowerCase()}`, 'data-seq': String(ev.sequence)});
    if (role !== 'SYSTEM') {
      const who = role === 'CONSUMER' ? t('window.you') : ((state.conv && state.conv.agent && state.conv.agent.name) || '');
      li.append(el('span', {class: 'lpcall-msg-who'}, who));
    }
    li.append(el('span', {class: 'lpcall-msg-text'}, (ev.event && ev.event.message) || ''));
    if (role === 'SYSTEM' && ev.systemKey === NETCHECK_REQUEST) {
      const run = el('button', {type: 'button', class: 'lpcall-netcheck-run'}, t('window.netcheck'));
      run.addEventListener('click', () => w.runNetcheck());
      li.append(run);
    }
    ui.transcript.append(li);
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
    if (state.conv && state.conv.agent) w.showStatus('');
  };
}

// The agent's network check request: the widget inline (static/lpcall/netcheck.js): w.runNetcheck().
function netcheckView(w) {
  const {netcheckArea, input} = w.ui;
  let netcheck = null; // the mounted widget's promise
  function netcheckStyles() {
    if (document.querySelector('link[data-lpcall-netcheck-css]')) return;
    document.head.appendChild(el('link', {rel: 'stylesheet', href: new URL('./netcheck.css', import.meta.url).href, 'data-lpcall-netcheck-css': ''}));
  }
  function mount() {
    netcheckStyles();
    const body = el('div', {class: 'lpcall-window-netcheck-body'});
    const close = el('button', {type: 'button', class: 'lpcall-netcheck-close', 'aria-label': t('window.netcheck_close'), title: t('window.netcheck_close')}, '×');
    close.addEventListener('click', () => {
      netcheckArea.hidden = true;
      netcheckArea.textContent = '';
      netcheck = null;
      input.focus();
    });
    netcheckArea.replaceChildren(close, body);
    return import('./netcheck.js').then((m) => m.mountNetcheck(body, {base: w.base}));
  }
  w.runNetcheck = async () => {
    if (!netcheck) netcheck = mount();
    netcheckArea.hidden = false;
    w.setOpen(true);
    netcheckArea.focus();
    try {
      const widget = await netcheck;
      widget.start();
    } catch (err) {
      netcheck = null;
      w.showStatus(t('netcheck.failed', {error: err.message}));
    }
  };
}

// -- invitations (PROTOCOL §10) -------------------------------------------------------
function builtInInvitation(mode, agentName) {
  const node = el('div', {class: 'lpcall-invitation'});
  const text = el('p', {class: 'lpcall-invitation-text'}, t(`invite.${mode}`, {agent: agentName}));
  const accept = el('button', {type: 'button', class: 'lpcall-accept'}, t('invite.accept'));
  const decline = el('button', {type: 'button', class: 'lpcall-decline'}, t('invite.decline'));
  const buttons = el('div', {class: 'lpcall-invitation-buttons'});
  buttons.append(accept, decline);
  node.append(text, buttons);
  return {node, text, accept, decline};
}

// A copy of the page's <template id="lpcall-invitation-template"> (the Jinja block of
// lpcall/invitation_template.html): [data-lpcall-invitation-text], [data-lpcall-accept] and
// [data-lpcall-decline] get our texts when empty ({agent} and {mode} are filled in otherwise).
function brandInvitation(mode, agentName) {
  const tpl = document.getElementById('lpcall-invitation-template');
  const first = tpl && tpl.content && tpl.content.firstElementChild;
  if (!first) return null;
  const node = first.cloneNode(true);
  const text = node.querySelector('[data-lpcall-invitation-text]');
  const accept = node.querySelector('[data-lpcall-accept]');
  const decline = node.querySelector('[data-lpcall-decline]');
  if (!text || !accept || !decline) {
    console.error('lpcall: #lpcall-invitation-template needs [data-lpcall-invitation-text], [data-lpcall-accept] and [data-lpcall-decline]; the built-in invitation is shown');
    return null;
  }
  const fill = (n, key, params) => {
    if (!n.textContent.trim()) n.textContent = t(key, params);
    else n.textContent = n.textContent.split('{agent}').join(agentName).split('{mode}').join(t(`mode.${mode}`));
  };
  fill(text, `invite.${mode}`, {agent: agentName});
  fill(accept, 'invite.accept', {});
  fill(decline, 'invite.decline', {});
  return {node, text, accept, decline};
}

// The invitation's lpCoBrowse payload (the seed's fields).
function payloadFor(w, dialog) {
  const {state} = w;
  const ids = monitoring() || {ssid: state.me.consumerId, svid: state.me.consumerId};
  const meta = dialog.metaData || {};
  return {
    serviceId: meta.serviceId,
    agentId: (state.conv && state.conv.agent && state.conv.agent.id) || 'agent',
    visitorName: (state.conv && state.conv.visitorName) || t('agent.visitor'),
    mode: meta.mode,
    ssid: ids.ssid,
    svid: ids.svid,
  };
}

// The call screen's container (created here unless the page has one) with a loading indicator.
function ensureContainer(w) {
  let container = document.querySelector('.lp_cobrowse_callscreen_container');
  if (container && container.hasAttribute('data-lpcall-owned') && !container.querySelector('.lpcall-loading')) {
    container.remove();  // a previous call's outcome: the new call starts with a fresh one
    container = null;
  }
  if (!container) {
    // ours (callapp.js removes it when the ended call is closed); focusable, so the focus
    // waits here from the Accept until the call's controls appear
    container = el('div', {class: 'lp_cobrowse_callscreen_container', 'data-lpcall-owned': '', tabindex: '-1'});
    const loading = el('div', {class: 'lpcall-loading', role: 'status'});
    loading.append(el('span', {class: 'lpcall-spinner', 'aria-hidden': 'true'}), el('span', {}, t('call.loading')));
    container.append(loading);
    w.ui.callArea.append(container);
  }
  w.setOpen(true);
  return container;
}

// "Continue on my phone" from the invitation (handoff.js, issue 18): the phone answers it. The
// module comes with the call app (loaded by now while the page was idle, or with this invitation).
function offerHandoff(w, shown, dialog, accept) {
  if (w.config.handoff === false) return;
  const {node} = shown;
  import('./handoff.js').then(({mountHandoff}) => {
    if (w.state.invitation !== shown) return;  // answered or withdrawn meanwhile
    shown.handoff = mountHandoff({
      base: w.base, serviceId: shown.serviceId, t,
      bar: node.querySelector('.lpcall-invitation-buttons') || accept.parentElement || node, host: node,
      token: () => w.identity({create: false}).then((id) => id && id.token),
      release: () => {
        w.state.handled.add(dialog.dialogId);
        w.removeInvitation();
        w.showStatus(t('handoff.moved_invitation'));
      },
    });
  }).catch(() => {});
}

// Invitations shown from the conversation's COBROWSE dialogs: w.handleDialogs(details), w.removeInvitation().
function invitations(w) {
  const {state, ui} = w;
  w.removeInvitation = () => {
    if (!state.invitation) return;
    const hadFocus = state.invitation.node.contains(document.activeElement);
    if (state.invitation.handoff) state.invitation.handoff.destroy();
    state.invitation.node.remove();
    if (hadFocus && !ui.composer.hidden) ui.input.focus();  // withdrawn or expired: the focus is not lost
    state.invitation = null;
  };
  function answer(dialog, accepted, payload) {
    state.handled.add(dialog.dialogId);
    w.removeInvitation();
    if (accepted) ensureContainer(w).focus();
    else if (!ui.composer.hidden) ui.input.focus();
    publish(accepted ? 'cobrowseAccepted' : 'cobrowseDeclined', payload);
  }
  function showInvitation(dialog) {
    const meta = dialog.metaData || {};
    if (state.handled.has(dialog.dialogId)) return;
    if (state.invitation && state.invitation.dialogId === dialog.dialogId) return;
    w.removeInvitation();
    const payload = payloadFor(w, dialog);
    const agentName = (state.conv && state.conv.agent && state.conv.agent.name) || '';
    const textId = `lpcall-invitation-${dialog.dialogId}`;
    // the brand's own markup (<template id="lpcall-invitation-template">, README "Look and feel"), else ours
    const {node, text, accept, decline} = brandInvitation(meta.mode, agentName) || builtInInvitation(meta.mode, agentName);
    node.classList.add('lpcall-invitation');
    node.setAttribute('role', 'alertdialog');
    node.setAttribute('aria-labelledby', textId);
    text.id = textId;
    accept.addEventListener('click', () => answer(dialog, true, payload));
    decline.addEventListener('click', () => answer(dialog, false, payload));
    ui.invites.append(node);
    const shown = state.invitation = {dialogId: dialog.dialogId, serviceId: meta.serviceId, node, payload, handoff: null};
    offerHandoff(w, shown, dialog, accept);
    w.setOpen(true);
    accept.focus();
    publish('cobrowseOffered', payload);
  }
  w.handleDialogs = (details) => {
    for (const dialog of details.dialogs || []) {
      if (dialog.channelType !== 'COBROWSE') continue;
      const s = dialog.metaData && dialog.metaData.sessionState;
      if (s === 'INVITED') showInvitation(dialog);
      else if (state.invitation && (s === 'CLOSED' || s === 'ACCEPTED')) w.removeInvitation();
    }
  };
  // The call app found an active call after a reload: create the container, say so.
  try {
    window.lpTag.events.bind({appName: 'cobrowse', eventName: 'sessionResume', func: () => {
      ensureContainer(w);
      publish('sliderOpened');
    }});
  } catch (e) { /* no bus */ }
}

// The ended call's screen was closed: its room goes back to the chat, and so does the focus.
function focusBackAfterCalls(w) {
  const {panel, composer, input} = w.ui;
  document.addEventListener('lpcall:callscreenclosed', (e) => {
    const lost = !document.activeElement || document.activeElement === document.body;
    if ((e.detail && e.detail.hadFocus) || lost) {
      if (!panel.hidden && !composer.hidden) input.focus();
    }
  });
}

// -- the conversation -------------------------------------------------------------------
async function subscribeMessages(w, convId) {
  const {state} = w;
  if (state.subscribedConv === convId) return;
  state.subscribedConv = convId;
  try {
    await w.sock.rawRequest('ms.SubscribeMessagingEvents', {conversationId: convId, fromSeq: state.lastSeq + 1});
  } catch (err) {
    state.subscribedConv = null;
  }
}

function onConversation(w, details) {
  const {state} = w;
  const current = state.conv && state.conv.convId;
  if (details.state === 'OPEN') {
    if (current && current !== details.convId) w.clearTranscript();
    state.conv = details;
    w.showMode('chat');
    if (!details.agent) w.showStatus(t('window.waiting'));
    subscribeMessages(w, details.convId);
    w.handleDialogs(details);
    w.prefetchCall();  // an invitation can only come in a chat: the call app loads while the page is idle
    if (w.wasOpen === null) w.setOpen(true);
  } else if (details.convId === current) {
    state.conv = details;
    w.removeInvitation();
    w.showStatus('');
    w.showMode('ended');
  }
}

// InitConnection with the visitor's identity (a refused token: a fresh identity, once), then the
// subscription to the visitor's open conversations.
async function authenticate(w, s) {
  w.state.subscribedConv = null;
  let me = await w.identity();
  const init = (id) => s.rawRequest('InitConnection', {}, {headers: [
    {type: '.ams.headers.ClientProperties', deviceFamily: /Mobi/.test(navigator.userAgent) ? 'MOBILE' : 'DESKTOP', os: 'OTHER', features: consumerFeatures()},
    {type: '.ams.headers.ConsumerAuthentication', jwt: id.token},
  ]});
  try {
    await init(me);
  } catch (err) {
    if (err.status !== 401) throw err;
    me = await w.identity({refresh: true});
    await init(me);
  }
  w.state.me = me;
  await s.rawRequest('cqm.SubscribeExConversations', {convState: ['OPEN']});
}

function onNotification(w, frame) {
  const {state} = w;
  if (frame.type === 'cqm.ExConversationChangeNotification') {
    for (const change of frame.body.changes || []) {
      const details = change.result && change.result.conversationDetails;
      if (details) onConversation(w, details);
    }
  } else if (frame.type === 'ms.MessagingEventNotification') {
    if (!state.conv || frame.body.conversationId !== state.conv.convId) return;
    for (const ev of frame.body.events || []) w.renderEvent(ev);
  }
}

function connect(w) {
  const {state, ui} = w;
  w.sock = new LPSocket(socketUrl(w.base, '/ws/consumer'), {
    heartbeat: w.config.heartbeat,
    onOpen: (s) => authenticate(w, s),
    onNotification: (frame) => onNotification(w, frame),
    onStatus: (s) => {
      ui.root.dataset.status = s;
      if (s === 'offline') w.showStatus(t('window.offline'));
      else if (s === 'open') w.showStatus(state.conv && state.conv.state === 'OPEN' && !state.conv.agent ? t('window.waiting') : '');
    },
  });
  w.sock.connect();
}

// -- the forms: start a chat, send a message, a new chat after the end ----------------------
function startForm(w) {
  const {state, ui} = w;
  ui.startForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const body = await w.sock.request('cm.ConsumerRequestConversation', {visitorName: ui.nameInput.value.trim() || null});
      // the change notification (with the agent a new conversation is routed to) may come
      // before this answer: what it brought is kept, or the agent's messages lose their name
      if (!state.conv || state.conv.convId !== body.conversationId) {
        w.clearTranscript();
        state.conv = {convId: body.conversationId, state: 'OPEN', agent: null, dialogs: []};
      }
      w.showMode('chat');
      w.showStatus(state.conv.agent ? '' : t('window.waiting'));
      subscribeMessages(w, body.conversationId);
      ui.input.focus();
    } catch (err) {
      w.showStatus(t('window.error', {error: err.message}));
    }
  });
  ui.newChat.addEventListener('click', () => {
    state.conv = null;
    state.subscribedConv = null;
    w.clearTranscript();
    w.showMode('start');
    ui.nameInput.focus();
  });
}

function composerForm(w) {
  const {state, ui} = w;
  const {composer, input} = ui;
  composer.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = input.value;
    if (!text.trim() || !state.conv) return;
    if (text.length > w.config.maxMessageLength) {
      w.showStatus(t('window.too_long'));
      return;
    }
    // Clear at once: what the visitor types while the send is under way must not be wiped.
    input.value = '';
    try {
      await w.sock.request('ms.PublishEvent', {
        conversationId: state.conv.convId,
        event: {type: 'ContentEvent', contentType: 'text/plain', message: text},
      });
      if (state.conv.agent) w.showStatus('');
    } catch (err) {
      if (!input.value) input.value = text; // nothing is lost: the text comes back to retry
      w.showStatus(err.status === 413 ? t('window.too_long') : t('window.error', {error: err.message}));
    }
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      composer.requestSubmit();
    }
  });
}

// The window, mounted into the page: {root, socket, state}. `prefetchCall()` is called once a chat is
// open (consumer.js then loads the call app while the page is idle).
export function mountWindow({base, config, identity, prefetchCall = () => {}}) {
  const state = {
    me: null,
    conv: null, // conversationDetails of the open (or just closed) conversation
    subscribedConv: null,
    lastSeq: -1,
    invitation: null, // {dialogId, serviceId, node, payload, handoff}
    handled: new Set(), // dialogIds answered in this page
  };
  // what the parts below share; each adds its own functions to it
  const w = {base, config, identity, prefetchCall, state, ui: buildPanel()};
  ensureStyles(w.ui.root);
  document.body.appendChild(w.ui.root);
  panelControls(w);
  transcriptView(w);
  netcheckView(w);
  invitations(w);
  focusBackAfterCalls(w);
  connect(w);
  startForm(w);
  composerForm(w);
  return {root: w.ui.root, socket: w.sock, state};
}
