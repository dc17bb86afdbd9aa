// Resume across reloads and navigation (issue 5, seed 003 "Resuming calls after reloading the page").
//
// Which tab owns a call: the one whose sessionStorage holds it (`lpcall.call`). Each tab has an
// id, `sessionStorage["lpcall.tab"]`, sent with every signaling join (`?tab=`); the server refuses
// a join from another tab while the owning tab's socket is alive (CALL_IN_OTHER_TAB). A browser
// that *duplicates* a tab copies its sessionStorage: the copy finds the original on a
// BroadcastChannel, takes a new tab id and forgets the call, so it neither steals nor doubles it.
//
//   const tab = tabId();                       // this tab's id (created on first use)
//   const {duplicate} = await claimTab(sid);   // another live tab holds this tab id and call?
//   prefetchResume(base)                       // consumer.js, at load: start the check early
//   resumeCheck({api, stored, log})            // -> {join | null, forget}

const TAB_KEY = 'lpcall.tab';
const CHANNEL = 'lpcall.tabs';
const PROBE_MS = 120;

let memoryTab = null;
let channel = null;
let owned = null;  // the serviceId this tab holds (answered to duplicates)

function randomId() {
  const c = window.crypto;
  if (c && c.randomUUID) return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

export function tabId() {
  try {
    let id = sessionStorage.getItem(TAB_KEY);
    if (!id) {
      id = randomId();
      sessionStorage.setItem(TAB_KEY, id);
    }
    return id;
  } catch (e) {
    if (!memoryTab) memoryTab = randomId();
    return memoryTab;
  }
}

function newTabId() {
  const id = randomId();
  try { sessionStorage.setItem(TAB_KEY, id); } catch (e) { memoryTab = id; }
  return id;
}

function openChannel() {
  if (channel || typeof BroadcastChannel !== 'function') return channel;
  channel = new BroadcastChannel(CHANNEL);
  channel.onmessage = (ev) => {
    const m = ev.data || {};
    if (m.type === 'who' && m.tab === tabId() && owned && m.serviceId === owned) {
      channel.postMessage({type: 'mine', tab: m.tab, nonce: m.nonce});
    }
  };
  return channel;
}

// This tab holds `serviceId` now: answer duplicates of this tab that ask for it.
export function holdCall(serviceId) {
  owned = serviceId || null;
  if (owned) openChannel();
}

// Is another live tab with this very tab id holding `serviceId`? (then this tab is a duplicate)
export function claimTab(serviceId) {
  const ch = openChannel();
  if (!ch) return Promise.resolve({duplicate: false, tab: tabId()});
  const nonce = randomId();
  return new Promise((resolve) => {
    const done = (duplicate) => {
      ch.removeEventListener('message', onReply);
      clearTimeout(timer);
      resolve({duplicate, tab: duplicate ? newTabId() : tabId()});
    };
    const onReply = (ev) => {
      const m = ev.data || {};
      if (m.type === 'mine' && m.nonce === nonce) done(true);
    };
    ch.addEventListener('message', onReply);
    const timer = setTimeout(() => done(false), PROBE_MS);
    ch.postMessage({type: 'who', tab: tabId(), serviceId, nonce});
  });
}

// Started by consumer.js the moment it loads, when this tab holds a call: the resume API call and
// the duplicate-tab probe then overlap loading the config, the window and the call app.
let early = null;
export function prefetchResume(base) {
  if (early) return early;
  let stored = null;
  let id = null;
  try {
    stored = JSON.parse(sessionStorage.getItem('lpcall.call') || 'null');
    id = JSON.parse(localStorage.getItem('lpcall.consumer') || 'null');
  } catch (e) { return null; }
  if (!stored || typeof stored.serviceId !== 'string' || !id || typeof id.token !== 'string') return null;
  const answer = fetch(`${base}/api/call/resume`, {
    method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', Authorization: `Bearer ${id.token}`},
    body: JSON.stringify({serviceId: stored.serviceId}),
  }).then(async (resp) => {
    const json = await resp.json().catch(() => ({}));
    if (resp.ok) return {join: json};
    const err = new Error((json.error && json.error.message) || `HTTP ${resp.status}`);
    err.status = resp.status;
    return {err};
  }, (err) => ({err}));
  early = {serviceId: stored.serviceId, token: id.token, answer, claim: claimTab(stored.serviceId)};
  import('./callapp.js').catch(() => {});  // warm the call app's module graph meanwhile
  return early;
}

// The stored call's join info if the server still has it open for this visitor, else null.
// A refusal (4xx: ended, foreign, stale token) clears nothing here; the caller does. A network
// failure is `{retry: true}`: the stored call is kept for the next page.
export async function resumeCheck({api, stored, log}) {
  const pre = early && early.serviceId === stored.serviceId ? early : null;
  early = null;
  const [claim, answer] = await Promise.all([
    pre ? pre.claim : claimTab(stored.serviceId),
    pre ? pre.answer : api('resume', {serviceId: stored.serviceId}).then((join) => ({join}), (err) => ({err})),
  ]);
  if (claim.duplicate) {
    log(`call ${stored.serviceId} belongs to the tab this one was duplicated from`);
    return {join: null, forget: true};
  }
  if (answer.err) {
    const status = answer.err.status || 0;
    log(`no call to resume (${status || 'network'}): ${answer.err.message}`);
    return {join: null, forget: status >= 400 && status < 500};
  }
  return {join: answer.join, forget: false};
}
