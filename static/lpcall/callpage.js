// The standalone call page <prefix>/call/<link> (issue 18): the same call app and call UI as the
// tagged pages (callapp.js, callui.js, engine.js), full page, phone first.
//
// The server renders the page's data (#lpcall-callpage-data): the call's ids, the visitor's
// identity for it and the texts. This page is its own "engagement window": it shows the invitation,
// publishes the seed's lpCoBrowse events (cobrowseOffered / cobrowseAccepted / cobrowseDeclined,
// sliderOpened on a resume) on an lpTag.events bus, and every event published there (the call
// app's cobrowse / lpCall ones too) also goes to the host app (hostbridge.js).
// A reload resumes the call like the embedded window (sessionStorage "lpcall.call", resume.js).

import {startCallApp} from './callapp.js';
import {makeT} from './callui.js';
import {postToHost} from './hostbridge.js';

const STORE_KEY = 'lpcall.call';
const data = JSON.parse(document.getElementById('lpcall-callpage-data').textContent);
const t = makeT((data.config && data.config.texts) || {});
const call = data.call;

// -- the event bus (the tag's, in small: publish / bind with replay / unbind / hasFired) --------
function makeBus(previous) {
  let seq = 0;
  let listeners = [];
  const history = [];
  const deliver = (l, ev) => {
    try { l.func(ev.data, ev.info); } catch (e) { console.error('lpcall: listener failed', e); }
  };
  const matches = (l, info) => l.appName === info.appName && (l.eventName === '*' || l.eventName === info.eventName);
  return {
    _lpcall: true,
    publish(appName, eventName, payload) {
      const info = {appName, eventName, eventId: `evId_${(++seq).toString(36)}`};
      const ev = {data: payload, info};
      history.push(ev);
      if (history.length > 50) history.shift();
      for (const l of listeners.slice()) if (matches(l, info)) deliver(l, ev);
      if (previous) { try { previous.publish(appName, eventName, payload); } catch (e) { /* ignored */ } }
      postToHost(appName, eventName, payload);
      return info.eventId;
    },
    bind(app, eventName, func) {
      const o = app && typeof app === 'object' ? app : {appName: app, eventName, func};
      if (typeof o.func !== 'function') return null;
      const l = {id: `lsId_${(++seq).toString(36)}`, appName: o.appName, eventName: o.eventName, func: o.func};
      listeners.push(l);
      if (o.replay) for (const ev of history.slice()) if (matches(l, ev.info)) deliver(l, ev);
      return l.id;
    },
    unbind(id) {
      const n = listeners.length;
      listeners = listeners.filter((l) => l.id !== id);
      return listeners.length < n;
    },
    hasFired(appName, eventName = '*') {
      return history.filter((ev) => matches({appName, eventName}, ev.info))
        .map((ev) => ({...ev.info, data: ev.data}));
    },
  };
}

window.lpTag = window.lpTag || {};
const previous = window.lpTag.events && typeof window.lpTag.events.publish === 'function' ? window.lpTag.events : null;
const bus = makeBus(previous);
window.lpTag.events = bus;

// -- the page ------------------------------------------------------------------------------
const invitation = document.querySelector('[data-lpcall-callpage-invitation]');
const message = document.querySelector('[data-lpcall-callpage-message]');
const container = document.querySelector('.lp_cobrowse_callscreen_container');

function say(text) {
  message.textContent = text || '';
  message.hidden = !text;
}

function payload() {
  return {
    serviceId: call.serviceId,
    agentId: call.agentId,
    visitorName: call.visitorName || t('agent.visitor'),
    mode: call.mode,
    ssid: data.identity.consumerId,
    svid: data.identity.consumerId,
  };
}

function readStored() {
  try { return JSON.parse(sessionStorage.getItem(STORE_KEY) || 'null'); } catch (e) { return null; }
}

// An answered call opened on this page without a stored call (a new tab of the same browser):
// it is taken over like a resume (the agent keeps its side).
function seedResume() {
  const stored = readStored();
  if (stored && stored.serviceId === call.serviceId) return;
  try {
    sessionStorage.setItem(STORE_KEY, JSON.stringify({
      serviceId: call.serviceId, mode: call.mode, agentName: call.agentName || '', visitorName: call.visitorName || '',
      muted: false, cameraOff: false, payload: payload(),
    }));
  } catch (e) { /* storage unavailable: no resume */ }
}

function showInvitation() {
  const text = invitation.querySelector('.lpcall-invitation-text');
  const accept = invitation.querySelector('[data-lpcall-accept]');
  const decline = invitation.querySelector('[data-lpcall-decline]');
  // a brand's own markup (template block "invitation") keeps its texts; empty elements get ours
  if (text && !text.textContent.trim()) text.textContent = t(`invite.${call.mode}`, {agent: call.agentName || ''});
  if (accept && !accept.textContent.trim()) accept.textContent = t('invite.accept');
  if (decline && !decline.textContent.trim()) decline.textContent = t('invite.decline');
  invitation.hidden = false;
  const answered = {done: false};
  if (accept) {
    accept.addEventListener('click', () => {
      if (answered.done) return;
      answered.done = true;
      invitation.hidden = true;
      container.focus();
      bus.publish('lpCoBrowse', 'cobrowseAccepted', payload());
    });
  }
  if (decline) {
    decline.addEventListener('click', () => {
      if (answered.done) return;
      answered.done = true;
      invitation.hidden = true;
      bus.publish('lpCoBrowse', 'cobrowseDeclined', payload());
      say(t('callpage.declined'));
    });
  }
  if (accept) accept.focus();
  bus.publish('lpCoBrowse', 'cobrowseOffered', payload());
}

// the call app asks for the call's room on a resume: this page is it
bus.bind({appName: 'cobrowse', eventName: 'sessionResume', func: () => bus.publish('lpCoBrowse', 'sliderOpened', {})});
// the ended call's panel closed (by itself or its Close button): the page says what is left to do
document.addEventListener('lpcall:callscreenclosed', () => say(t('callpage.finished')));

// A "continue on my phone" link: the tab that made it lets the call go once it sees this page
// opened; the call is taken over (like a resume) when its socket has left, or after a deadline.
async function desktopLeft() {
  const deadline = Date.now() + 15000;
  const url = `${data.base}/api/call/handoff/${encodeURIComponent(data.handoff.id)}`;
  while (Date.now() < deadline) {
    try {
      const resp = await fetch(url, {headers: {Authorization: `Bearer ${data.identity.token}`}, credentials: 'same-origin'});
      const status = await resp.json();
      if (!resp.ok || !status.consumerPresent) return;
    } catch (e) { return; }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

// The link's claim (callpage.py): also in this tab's storage, for a reload where the browser sends no
// claim cookie (a host app's cross-site iframe); a claim that came in the address leaves it.
function keepClaim() {
  try { if (data.claim) sessionStorage.setItem(`lpcall.claim:${location.pathname}`, data.claim); } catch (e) { /* no storage */ }
  if (/[?&]claim=/.test(location.search)) history.replaceState(history.state, '', location.pathname + location.hash);
}

async function main() {
  keepClaim();
  const invited = call.sessionState === 'INVITED';
  if (!invited) {
    const resuming = (readStored() || {}).serviceId === call.serviceId;  // a reload of this page
    if (data.handoff && !resuming) {
      container.replaceChildren(Object.assign(document.createElement('p'), {className: 'lpcall-loading', textContent: t('call.loading')}));
      await desktopLeft();
      container.replaceChildren();
    }
    seedResume();
  } else if ((readStored() || {}).serviceId === call.serviceId) {
    try { sessionStorage.removeItem(STORE_KEY); } catch (e) { /* ignored */ }
  }
  const identity = () => Promise.resolve(data.identity);
  // no "continue on my phone" here: this page is the phone
  const app = startCallApp({base: data.base, config: {...data.config, handoff: false}, identity});
  if (invited) showInvitation();
  window.__lpcallCallPage = {bus, app, call};
}

main();
