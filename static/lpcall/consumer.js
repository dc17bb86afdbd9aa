// Consumer entry, imported lazily by the tag (static/lptag.js): the visitor's identity,
// the embedded engagement window (LPCALL_ENGAGEMENT_WINDOW) and the call app.
//
// Identity (PROTOCOL §1): localStorage["lpcall.consumer"] = {"consumerId", "token"}, one per
// visitor, shared by all tabs; the token is the Messaging-Window ConsumerAuthentication jwt
// and the Bearer token of the consumer HTTP API.
//
// Before an invitation a page loads only the chat (PROTOCOL §8); the call app comes for a stored
// call, on the first lpCoBrowse event, or ahead of that while the page is idle.

import {loadConfig} from './dom.js';

const lp = window.lpTag || {};
const tag = lp.lpcall || {};
const cfg = tag.config || window.lpCallConfig || {};
export const base = cfg.base || '/lpcall';
const KEY = 'lpcall.consumer';

function readStored() {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) || 'null');
    return v && typeof v.token === 'string' && typeof v.consumerId === 'string' ? v : null;
  } catch (e) {
    return null;
  }
}

function visitorId() {
  try { return lp.taglets.lp_monitoringSDK.getVid(); } catch (e) { return undefined; }
}

let pending = null;
let minted = null;  // the last identity made here (kept in memory too: storage may be off)

// The consumer identity {consumerId, token}; `refresh` drops a token the server refused.
// `create: false` (the call app) never makes one: a new consumer owns no call, so a missing
// identity must be reported, not replaced (README "Messaging-Window protocol"; null then).
export function identity({refresh = false, create = true} = {}) {
  if (!refresh) {
    const stored = readStored() || minted;
    if (stored) return Promise.resolve(stored);
  }
  if (!create) return Promise.resolve(null);
  if (!pending) {
    const stored = readStored();
    const headers = {'Content-Type': 'application/json'};
    if (stored && !refresh) headers.Authorization = `Bearer ${stored.token}`;
    pending = fetch(`${base}/api/consumer/session`, {
      method: 'POST', headers, credentials: 'same-origin', body: JSON.stringify({vid: visitorId()}),
    })
      .then((r) => {
        if (!r.ok) throw new Error(`consumer session: HTTP ${r.status}`);
        return r.json();
      })
      .then((id) => {
        minted = {consumerId: id.consumerId, token: id.token};
        try { localStorage.setItem(KEY, JSON.stringify(minted)); } catch (e) { /* private mode */ }
        return id;
      })
      .finally(() => { pending = null; });
  }
  return pending;
}

function log(text) {
  if (tag.log) tag.log('DEBUG', 'lpCall', text);
}

// The call app, imported and started once; null when it cannot be loaded.
let callApp = null;
export function loadCallApp(config) {
  if (!callApp) {
    callApp = import('./callapp.js')
      .then((app) => app.startCallApp({base, config, identity}))
      .catch((err) => {
        log(`call app not loaded: ${err}`);
        callApp = null;
        return null;
      });
  }
  return callApp;
}

// The call app, loaded when the browser is idle (so it never competes with the page's own loading).
export function prefetchCallApp(config) {
  if (callApp) return;
  const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 1));
  idle(() => loadCallApp(config), {timeout: 3000});
}

function holdsCall() {
  try { return Boolean(sessionStorage.getItem('lpcall.call')); } catch (e) { return false; }
}

// Any lpCoBrowse event (an invitation's cobrowseOffered first) loads the call app, which binds with
// replay and so sees that event too.
function loadOnCallEvents(config) {
  const events = lp.events;
  if (!events || typeof events.bind !== 'function') return;
  events.bind({appName: 'lpCoBrowse', eventName: '*', replay: true, func: () => loadCallApp(config)});
}

async function main() {
  const windowModule = cfg.win ? import('./window.js') : null;  // fetched while the config loads
  if (windowModule) windowModule.catch(() => {});  // a failure surfaces where it is awaited
  const config = await loadConfig(base);
  if (config.analytics && config.analytics !== 'none') {  // tracking adapters (issue 8, PROTOCOL §10)
    import('./analytics.js').then((m) => m.installAnalytics(config.analytics)).catch(() => {});
  }
  let win = null;
  if (config.engagementWindow) {
    const mod = await (windowModule || import('./window.js'));
    win = mod.mountWindow({base, config, identity, prefetchCall: () => prefetchCallApp(config)});
  } else {
    prefetchCallApp(config);  // a custom messaging client: an invitation may come at any time
  }
  // after the window: a resumed call announces itself (sessionResume) to a window listening already
  loadOnCallEvents(config);
  if (holdsCall()) await loadCallApp(config);
  return {config, window: win};
}

if (!window.__lpcallConsumer) {
  // a stored call: ask the server now, in parallel with the rest (resume.js)
  if (holdsCall()) import('./resume.js').then((m) => m.prefetchResume(base)).catch(() => {});
  window.__lpcallConsumer = main();
}
export const ready = window.__lpcallConsumer;
