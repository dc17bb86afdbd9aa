// What the visible parts share (the chat window, the call UI, the handoff offer, the agent workspace):
// building elements (`el`), loading their stylesheets (`stylesheet`), the text catalog (`loadConfig`
// once, then `t(key, params)`) and what this page can do (`supportProblem`, `consumerFeatures`).
//
// One small module on purpose: the chat window needs all of it before any invitation, and every
// module a page imports is one more request (benchmarks/bench_pageweight.py).

// An element with attributes (false/null/undefined: left out; true: present, empty) and a text.
export function el(tagName, attrs = {}, text) {
  const node = document.createElement(tagName);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'class') node.className = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

// A button (type=button) with a text and attributes.
export function button(text, attrs = {}) {
  return el('button', {type: 'button', ...attrs}, text);
}

// Adds <link rel=stylesheet href> once per page (`id` names it); the link is returned either way.
// `href` is resolved by the caller against its own module URL, so it carries the assets' version.
export function stylesheet(id, href) {
  const found = document.getElementById(id);
  if (found) return found;
  const link = el('link', {id, rel: 'stylesheet', href});
  document.head.append(link);
  return link;
}

// -- the text catalog -----------------------------------------------------------------------
// Texts come from GET <base>/api/client-config (flask_lpcall/texts.py + LPCALL_TEXTS); placeholders
// are filled the same way as texts.render() on the server.
let config = null;
let loading = null;

export function loadConfig(base) {
  if (config) return Promise.resolve(config);
  if (!loading) {
    loading = fetch(`${base}/api/client-config`, {credentials: 'same-origin'})
      .then((r) => {
        if (!r.ok) throw new Error(`client-config: HTTP ${r.status}`);
        return r.json();
      })
      .then((c) => { config = c; return c; })
      .catch((err) => { loading = null; throw err; });
  }
  return loading;
}

export function clientConfig() {
  return config;
}

export function t(key, params = {}) {
  let text = (config && config.texts && config.texts[key]) || key;
  for (const [name, value] of Object.entries(params)) {
    text = text.split(`{${name}}`).join(String(value));
  }
  return text;
}

// -- can this page take a WebRTC call? ------------------------------------------------------
// One rule for the chat window (which declares CO_BROWSE only when it can, so an agent never invites
// a browser that cannot call) and the call engine (through support.js).
export const BROWSER_NOT_SUPPORTED = 'BROWSER_NOT_SUPPORTED';

// What is missing for a WebRTC call in this page, or null.
export function supportProblem(win = window) {
  if (win.isSecureContext === false) return BROWSER_NOT_SUPPORTED;
  if (typeof win.RTCPeerConnection !== 'function') return BROWSER_NOT_SUPPORTED;
  const md = win.navigator && win.navigator.mediaDevices;
  if (!md || typeof md.getUserMedia !== 'function') return BROWSER_NOT_SUPPORTED;
  return null;
}

// The ClientProperties features of a consumer connection from this page.
export function consumerFeatures(win = window) {
  return supportProblem(win) ? [] : ['CO_BROWSE'];
}
