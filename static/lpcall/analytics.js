// Call lifecycle tracking (LPCALL_ANALYTICS: none | google | piwik | webtrekk | tealium).
//
// `installAnalytics(provider)` listens on the lpTag bus and sends six events through the
// site's own analytics library, using that library's standard global, only when the global
// is there at the moment of the event (a library loaded later is picked up; a missing one
// is skipped silently; an exception inside it never reaches the call):
//
//   bus event (PROTOCOL §8)                    tracked as
//   lpCoBrowse / cobrowseOffered               invitation_shown
//   lpCoBrowse / cobrowseAccepted              invitation_accepted
//   lpCoBrowse / cobrowseDeclined              invitation_declined
//   lpCall     / callConnected {mode}          call_connected
//   lpCall     / callEnded {mode, reason, durationSeconds}   call_ended
//   cobrowse   / sessionError {msg, id}        call_error (label: the error id)
//
// Only the call mode, the error id, the close reason and the duration are sent: no names,
// no ids of the visitor, agent or call.

export const CATEGORY = 'lpcall';

export const EVENTS = Object.freeze({
  invitationShown: 'invitation_shown',
  invitationAccepted: 'invitation_accepted',
  invitationDeclined: 'invitation_declined',
  callConnected: 'call_connected',
  callEnded: 'call_ended',
  callError: 'call_error',
});

// [appName, eventName, tracked event]
const BUS_MAP = [
  ['lpCoBrowse', 'cobrowseOffered', EVENTS.invitationShown],
  ['lpCoBrowse', 'cobrowseAccepted', EVENTS.invitationAccepted],
  ['lpCoBrowse', 'cobrowseDeclined', EVENTS.invitationDeclined],
  ['lpCall', 'callConnected', EVENTS.callConnected],
  ['lpCall', 'callEnded', EVENTS.callEnded],
  ['cobrowse', 'sessionError', EVENTS.callError],
];

const MODES = {VOICE_CALL: 'voice', VIDEO_CALL: 'video'};

// The few fields we pass on, from any bus payload.
export function details(name, data) {
  const d = data && typeof data === 'object' ? data : {};
  const out = {};
  if (typeof d.mode === 'string' && MODES[d.mode]) out.mode = d.mode;
  if (name === EVENTS.callError && typeof d.id === 'string') out.errorId = d.id;
  if (name === EVENTS.callEnded) {
    if (typeof d.reason === 'string') out.reason = d.reason;
    if (typeof d.errorId === 'string' && d.errorId) out.errorId = d.errorId;
    const secs = Number(d.durationSeconds);
    if (Number.isFinite(secs) && secs >= 0) out.durationSeconds = Math.round(secs);
  }
  return out;
}

function label(info) {
  return info.errorId || (info.mode && MODES[info.mode]) || '';
}

const fn = (x) => typeof x === 'function';
const pushable = (x) => !!x && fn(x.push);

// provider -> (window, name, info) => true when something was sent.
export const ADAPTERS = {
  none: () => false,

  // gtag.js (GA4): gtag('event', name, params); Tag Manager: dataLayer.push({event, ...});
  // the older analytics.js: ga('send', 'event', category, action, label, value).
  google(w, name, info) {
    const eventName = `${CATEGORY}_${name}`;
    const params = {event_category: CATEGORY, event_label: label(info)};
    if (info.mode) params.call_mode = info.mode;
    if (info.errorId) params.error_id = info.errorId;
    if (info.reason) params.close_reason = info.reason;
    if (info.durationSeconds !== undefined) params.value = info.durationSeconds;
    if (fn(w.gtag)) { w.gtag('event', eventName, params); return true; }
    if (pushable(w.dataLayer)) { w.dataLayer.push({event: eventName, ...params}); return true; }
    if (fn(w.ga)) {
      const args = ['send', 'event', CATEGORY, name, label(info)];
      if (info.durationSeconds !== undefined) args.push(info.durationSeconds);
      w.ga(...args);
      return true;
    }
    return false;
  },

  // Piwik / Matomo: _paq.push(['trackEvent', category, action, name?, value?]).
  piwik(w, name, info) {
    if (!pushable(w._paq)) return false;
    const cmd = ['trackEvent', CATEGORY, name];
    const l = label(info);
    if (l || info.durationSeconds !== undefined) cmd.push(l);
    if (info.durationSeconds !== undefined) cmd.push(info.durationSeconds);
    w._paq.push(cmd);
    return true;
  },

  // Webtrekk (Mapp Intelligence): the async queue wts.push(['send', 'click', {linkId, ...}]),
  // else the pixel object's wt.sendinfo({linkId, customClickParameter}).
  webtrekk(w, name, info) {
    const click = {linkId: `${CATEGORY}.${name}`};
    const ccp = {};
    if (info.mode) ccp[1] = info.mode;
    if (info.errorId || info.reason) ccp[2] = info.errorId || info.reason;
    if (info.durationSeconds !== undefined) ccp[3] = String(info.durationSeconds);
    if (Object.keys(ccp).length) click.customClickParameter = ccp;
    if (pushable(w.wts)) { w.wts.push(['send', 'click', click]); return true; }
    const pixel = w.wt || w.webtrekk;
    if (pixel && fn(pixel.sendinfo)) { pixel.sendinfo(click); return true; }
    return false;
  },

  // Tealium iQ: utag.link({...}).
  tealium(w, name, info) {
    if (!w.utag || !fn(w.utag.link)) return false;
    const data = {event_name: `${CATEGORY}_${name}`, event_category: CATEGORY, event_action: name, event_label: label(info)};
    if (info.mode) data.call_mode = info.mode;
    if (info.errorId) data.error_id = info.errorId;
    if (info.reason) data.close_reason = info.reason;
    if (info.durationSeconds !== undefined) data.call_duration = info.durationSeconds;
    w.utag.link(data);
    return true;
  },
};

// A tracker for one provider: track(name, data) -> true when the library got the event.
export function createTracker(provider, w = window) {
  const adapter = ADAPTERS[provider] || ADAPTERS.none;
  return {
    provider: ADAPTERS[provider] ? provider : 'none',
    track(name, data) {
      try {
        return adapter(w, name, details(name, data)) === true;
      } catch (err) {
        debug(w, `analytics (${provider}) failed on ${name}: ${err}`);
        return false;
      }
    },
  };
}

function debug(w, text) {
  try {
    const tag = w.lpTag && w.lpTag.lpcall;
    if (tag && fn(tag.log)) tag.log('DEBUG', 'lpCall', text);
  } catch (e) { /* never let logging break a call */ }
}

let current = null;

// The provider installed on this page, or null.
export function installed() {
  return current ? current.provider : null;
}

// The module-level tracker the call app can use directly: track(EVENTS.callConnected, {mode}).
export function track(name, data) {
  return current ? current.track(name, data) : false;
}

// Events of one call already tracked in this tab: a reload or a navigation during a call
// (resume) publishes callConnected again, and a pending invitation is shown again; each is
// counted once per call. Kept in sessionStorage (per tab), the last SEEN_MAX entries.
const SEEN_KEY = 'lpcall.analytics';
const SEEN_MAX = 100;

function tabSeen(w) {
  let list = [];
  try { list = JSON.parse(w.sessionStorage.getItem(SEEN_KEY) || '[]'); } catch (e) { list = []; }
  if (!Array.isArray(list)) list = [];
  return {
    has: (key) => list.includes(key),
    add(key) {
      list.push(key);
      if (list.length > SEEN_MAX) list = list.slice(-SEEN_MAX);
      try { w.sessionStorage.setItem(SEEN_KEY, JSON.stringify(list)); } catch (e) { /* private mode: per page only */ }
    },
  };
}

// Bind the bus once per page; returns an uninstall function. Events published before this
// ran (the tag keeps a short history) are replayed, each tracked once.
export function installAnalytics(provider, {w = window, bus} = {}) {
  if (current) return current.uninstall;
  const events = bus || (w.lpTag && w.lpTag.events);
  const tracker = createTracker(provider, w);
  const seen = new Set();
  const perCall = tabSeen(w);
  const ids = [];
  if (tracker.provider !== 'none' && events && fn(events.bind)) {
    for (const [appName, eventName, name] of BUS_MAP) {
      ids.push(events.bind({
        appName, eventName, replay: true,
        func: (data, info) => {
          const key = info && info.eventId;
          if (key) {
            if (seen.has(key)) return;
            seen.add(key);
          }
          const sid = data && typeof data.serviceId === 'string' ? data.serviceId : null;
          if (sid) {
            const callKey = `${name}:${sid}`;
            if (perCall.has(callKey)) return;
            perCall.add(callKey);
          }
          tracker.track(name, data);
        },
      }));
    }
  }
  const uninstall = () => {
    for (const id of ids) { try { events.unbind(id); } catch (e) { /* gone */ } }
    current = null;
  };
  current = {...tracker, uninstall};
  return uninstall;
}
