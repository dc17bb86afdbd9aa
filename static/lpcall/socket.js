// A reconnecting JSON request/response WebSocket (PROTOCOL §3 envelope).
//
//   const s = new LPSocket(url, {onOpen, onNotification, onStatus, heartbeat});
//   s.connect();
//   const body = await s.request('ms.PublishEvent', {...});   // rejects with SocketError
//
// onOpen(socket) runs after every (re)connect, before queued requests are sent, so it
// can re-authenticate and re-subscribe. A heartbeat `ping` goes out every `heartbeat`
// seconds; two missed answers close the socket and a reconnect starts with backoff.
//
// `reconnect()` is the one back-off loop of the browser code: this socket (chat window, agent
// workspace) and the call's signaling socket (recovery.js) both reopen through it.

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Retries `attempt(n)` after delays[n] ms (the last delay repeats; n counts from `from`) until it
// resolves true (connected: resolves true) or `stopped()` says to give up (resolves false). An
// attempt that throws counts as a failed one.
export async function reconnect({attempt, stopped, delays, from = 0}) {
  for (let n = from; !stopped(); n++) {
    const wait = delays[Math.min(n, delays.length - 1)];
    if (wait) await sleep(wait);
    if (stopped()) break;
    let ok = false;
    try { ok = await attempt(n); } catch (err) { ok = false; }
    if (ok) return true;
  }
  return false;
}

// LPSocket's delays: 250 ms, doubling up to 5 s.
const SOCKET_DELAYS_MS = [250, 500, 1000, 2000, 4000, 5000];

export class SocketError extends Error {
  constructor(error, status) {
    super((error && error.message) || 'request failed');
    this.code = (error && error.code) || 'ERROR';
    this.field = error && error.field;
    this.status = status;
  }
}

export class LPSocket {
  constructor(url, {onOpen, onNotification, onStatus, heartbeat = 10, requestTimeout = 15} = {}) {
    this.url = url;
    this.onOpen = onOpen || (async () => {});
    this.onNotification = onNotification || (() => {});
    this.onStatus = onStatus || (() => {});
    this.heartbeat = Math.max(Number(heartbeat) || 10, 0.2) * 1000;
    this.requestTimeout = requestTimeout * 1000;
    this.nextId = 1;
    this.pending = new Map();
    this.ws = null;
    this.ready = false;
    this.stopped = false;
    this.reconnecting = false;
    this.lastSeen = 0;
    this.timer = null;
  }

  // Opens the socket; after a loss it reopens through reconnect() until stopped.
  connect() {
    this.open();
  }

  // One connection attempt: resolves true once open and onOpen has run, false when it closed first.
  open() {
    if (this.stopped) return Promise.resolve(false);
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.ready = false;
    this.onStatus('connecting');
    return new Promise((settle) => {
      ws.onopen = () => this.opened(ws, settle);
      ws.onmessage = (ev) => { if (ws === this.ws) this.received(ev); };
      ws.onclose = () => { if (ws === this.ws) this.closed(settle); };
      ws.onerror = () => {};
    });
  }

  async opened(ws, settle) {
    if (ws !== this.ws) return;
    this.lastSeen = Date.now();
    this.startHeartbeat();
    try {
      await this.onOpen(this);
      this.ready = true;
      this.onStatus('open');
      settle(true);
    } catch (err) {
      this.onStatus('error', err);
      if (err && err.status === 401) { this.stop(); return; }
      ws.close();
    }
  }

  received(ev) {
    this.lastSeen = Date.now();
    let frame;
    try { frame = JSON.parse(ev.data); } catch (e) { return; }
    if (frame.kind === 'resp') {
      const p = this.pending.get(frame.reqId);
      if (p) {
        this.pending.delete(frame.reqId);
        clearTimeout(p.timer);
        if (frame.code === 200) p.resolve(frame.body || {});
        else p.reject(new SocketError(frame.body && frame.body.error, frame.code));
      } else if (frame.code !== 200) {
        this.onNotification({type: 'error', body: frame.body, code: frame.code});
      }
    } else if (frame.kind === 'notification') {
      try { this.onNotification(frame); } catch (e) { console.error('lpcall: notification handler failed', e); }
    }
  }

  closed(settle) {
    this.stopHeartbeat();
    this.ready = false;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new SocketError({code: 'DISCONNECTED', message: 'connection lost'}, 0));
      this.pending.delete(id);
    }
    settle(false);
    if (this.stopped) return;
    this.onStatus('offline');
    if (this.reconnecting) return;  // the loop below tries again
    this.reconnecting = true;
    reconnect({attempt: () => this.open(), stopped: () => this.stopped, delays: SOCKET_DELAYS_MS})
      .finally(() => { this.reconnecting = false; });
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.timer = setInterval(() => {
      if (Date.now() - this.lastSeen > 2.5 * this.heartbeat) {
        try { this.ws.close(); } catch (e) { /* already closing */ }
        return;
      }
      this.rawRequest('ping', {}).catch(() => {});
    }, this.heartbeat);
  }

  stopHeartbeat() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  // Sends even before onOpen finished (used by onOpen itself).
  rawRequest(type, body, extra = {}) {
    return new Promise((resolve, reject) => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject(new SocketError({code: 'DISCONNECTED', message: 'not connected'}, 0));
        return;
      }
      const id = String(this.nextId++);
      const timer = setTimeout(() => {
        if (this.pending.delete(id)) reject(new SocketError({code: 'TIMEOUT', message: 'no answer'}, 0));
      }, this.requestTimeout);
      this.pending.set(id, {resolve, reject, timer});
      ws.send(JSON.stringify({kind: 'req', id, type, body, ...extra}));
    });
  }

  // Waits until the socket is open and onOpen has run.
  async request(type, body = {}, extra = {}) {
    const deadline = Date.now() + this.requestTimeout;
    while (!this.ready) {
      if (this.stopped || Date.now() > deadline) throw new SocketError({code: 'DISCONNECTED', message: 'not connected'}, 0);
      await new Promise((r) => setTimeout(r, 100));
    }
    return this.rawRequest(type, body, extra);
  }

  stop() {
    this.stopped = true;
    this.stopHeartbeat();
    if (this.ws) this.ws.close();
  }
}

export function socketUrl(base, path) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}${base}${path}`;
}
