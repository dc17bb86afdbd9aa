// Consumer entry, imported lazily by the tag (static/lptag.js): the visitor's identity,
// the embedded engagement window (LPCALL_ENGAGEMENT_WINDOW) and the call app.
//
// Identity (PROTOCOL §1): localStorage["lpcall.consumer"] = {"consumerId", "token"}, one per
// visitor, shared by all tabs; the token is the Messaging-Window ConsumerAuthentication jwt
// and the Bearer token of the consumer HTTP API.

import {loadConfig} from './dom.js';
import {prefetchResume} from './resume.js';

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

async function main() {
  const config = await loadConfig(base);
  if (config.analytics && config.analytics !== 'none') {  // tracking adapters (issue 8, PROTOCOL §10)
    import('./analytics.js').then((m) => m.installAnalytics(config.analytics)).catch(() => {});
  }
  let win = null;
  if (config.engagementWindow) {
    const mod = await import('./window.js');
    win = mod.mountWindow({base, config, identity});
  }
  try {
    const app = await import('./callapp.js');
    const start = app && (app.startCallApp || app.start);
    if (typeof start === 'function') start({base, config, identity});
  } catch (err) {
    if (tag.log) tag.log('DEBUG', 'lpCall', `call app not loaded: ${err}`);
  }
  return {config, window: win};
}

if (!window.__lpcallConsumer) {
  prefetchResume(base);  // a stored call: ask the server now, in parallel with the rest (resume.js)
  window.__lpcallConsumer = main();
}
export const ready = window.__lpcallConsumer;
