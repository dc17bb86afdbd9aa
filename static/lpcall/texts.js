// The text catalog in the browser: `await loadConfig(base)` once, then `t(key, params)`.
// Texts come from GET <base>/api/client-config (flask_lpcall/texts.py + LPCALL_TEXTS);
// placeholders are filled the same way as texts.render() on the server.

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
