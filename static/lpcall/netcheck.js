// Pre-call network check: connect to the server's aiortc peer over a data channel and
// measure path (candidate type), round-trip time and reachable bitrate (see netcheck.py).
// mountNetcheck(container, {base}) renders the widget; runNetcheck(settings) is the
// measurement alone and resolves with the server's verdict.

const PINGS = 8;

function fmt(texts, key, params = {}) {
  let text = texts[key] || key;
  for (const [name, value] of Object.entries(params)) text = text.split(`{${name}}`).join(String(value));
  return text;
}

function consumerToken() {
  try {
    const raw = localStorage.getItem('lpcall.consumer');
    if (!raw) return null;
    const parsed = raw.trim().startsWith('{') ? JSON.parse(raw) : {token: raw};
    return parsed.token || null;
  } catch (e) {
    return null;
  }
}

async function postJSON(url, body, token) {
  const headers = {'Content-Type': 'application/json'};
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch(url, {method: 'POST', headers, body: JSON.stringify(body), credentials: 'same-origin'});
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error((data.error && data.error.message) || `HTTP ${resp.status}`);
    err.code = (data.error && data.error.code) || 'HTTP_ERROR';
    throw err;
  }
  return data;
}

function withDeadline(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${what}: no answer within ${ms} ms`), {code: 'TIMEOUT'})), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function waitGathering(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return withDeadline(new Promise(resolve => {
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
  }), ms, 'ICE gathering').catch(() => undefined); // use what was gathered so far
}

// A reader of the data channel's messages: next(predicate, ms) resolves with the next match.
function inbox(channel) {
  const waiting = [];
  const onBinary = [];
  channel.binaryType = 'arraybuffer';
  channel.addEventListener('message', ev => {
    if (typeof ev.data !== 'string') {
      onBinary.forEach(fn => fn(ev.data.byteLength));
      return;
    }
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    const i = waiting.findIndex(w => w.match(msg));
    if (i >= 0) waiting.splice(i, 1)[0].resolve(msg);
  });
  return {
    next(match, ms, what) {
      return withDeadline(new Promise(resolve => waiting.push({match, resolve})), ms, what);
    },
    onBinary(fn) { onBinary.push(fn); },
  };
}

async function selectedPath(pc) {
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach(r => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
  });
  if (!pair) stats.forEach(r => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
  if (!pair) return {candidateType: null, iceRttMs: null};
  const local = stats.get(pair.localCandidateId);
  return {
    candidateType: local ? local.candidateType : null,
    iceRttMs: pair.currentRoundTripTime != null ? pair.currentRoundTripTime * 1000 : null,
  };
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : null;
}

async function measure(channel, box, settings, onProgress) {
  // round-trip time: median of a few pings
  const rtts = [];
  for (let n = 0; n < PINGS; n++) {
    const t0 = performance.now();
    channel.send(JSON.stringify({t: 'ping', n}));
    await box.next(m => m.t === 'pong' && m.n === n, 3000, 'ping');
    rtts.push(performance.now() - t0);
  }
  const rttMs = median(rtts);
  onProgress({phase: 'rtt', rttMs});

  // upload: paced at the probe cap, server counts
  const chunk = new Uint8Array(16 * 1024);
  crypto.getRandomValues(chunk);
  channel.send(JSON.stringify({t: 'up', phase: 'start'}));
  const start = performance.now();
  let sent = 0;
  channel.bufferedAmountLowThreshold = 64 * 1024;
  while (performance.now() - start < settings.probeMs) {
    const elapsed = Math.max(performance.now() - start, 50);
    if (channel.bufferedAmount > 256 * 1024 || (sent * 8) / elapsed > settings.probeCapKbps) {
      await new Promise(r => setTimeout(r, 5));
      continue;
    }
    channel.send(chunk);
    sent += chunk.length;
  }
  channel.send(JSON.stringify({t: 'up', phase: 'end'}));
  const up = await box.next(m => m.t === 'up-result', settings.probeMs + 15000, 'upload result');
  onProgress({phase: 'up', upKbps: up.kbps});

  // download: the server sends for probeMs, we count
  let bytes = 0, first = null, last = null;
  box.onBinary(n => { bytes += n; last = performance.now(); if (first === null) first = last; });
  channel.send(JSON.stringify({t: 'down', ms: settings.probeMs}));
  await box.next(m => m.t === 'down-end', settings.probeMs + 15000, 'download');
  const downKbps = first !== null && last > first ? (bytes * 8) / (last - first) : null;
  onProgress({phase: 'down', downKbps});
  return {rttMs, upKbps: up.kbps, downKbps};
}

/** Run the check. Resolves with the server's result: {verdict, message, path, rttMs, bitrateKbps, …}. */
export async function runNetcheck(settings, {onProgress = () => {}, token = consumerToken()} = {}) {
  const base = settings.base;
  const pc = new RTCPeerConnection({iceServers: settings.iceServers, iceTransportPolicy: settings.iceTransportPolicy});
  if (window.__lpcallTest) (window.__lpcallPeers = window.__lpcallPeers || []).push(pc);
  const channel = pc.createDataChannel('netcheck', {ordered: true});
  const box = inbox(channel);
  let checkId = null;
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await waitGathering(pc, 3000);
    const offered = await postJSON(`${base}/api/netcheck/offer`, {offer: {type: 'offer', sdp: pc.localDescription.sdp}}, token);
    checkId = offered.checkId;
    await pc.setRemoteDescription(offered.answer);
    onProgress({phase: 'connecting'});
    const opened = await withDeadline(new Promise((resolve, reject) => {
      channel.addEventListener('open', () => resolve(true));
      pc.addEventListener('connectionstatechange', () => pc.connectionState === 'failed' && reject(new Error('ICE failed')));
    }), settings.connectTimeoutMs, 'connect').catch(() => false);
    let report = {checkId, connected: false};
    if (opened) {
      const path = await selectedPath(pc);
      onProgress({phase: 'connected', candidateType: path.candidateType});
      const m = await measure(channel, box, settings, onProgress);
      report = {checkId, connected: true, candidateType: path.candidateType, rttMs: m.rttMs, downKbps: m.downKbps, upKbps: m.upKbps};
    }
    return await postJSON(`${base}/api/netcheck/result`, report, token);
  } finally {
    pc.close();
  }
}

function row(list, label) {
  const dt = document.createElement('dt');
  dt.textContent = label;
  const dd = document.createElement('dd');
  dd.textContent = '…';
  list.append(dt, dd);
  return dd;
}

/** Render the widget into `container`. Options: {base, settings, onResult}. */
export async function mountNetcheck(container, {base = '/lpcall', settings = null, onResult = () => {}} = {}) {
  const s = settings || await fetch(`${base}/api/netcheck/config`).then(r => r.json());
  const tx = s.texts;
  container.classList.add('lpcall-netcheck');
  container.replaceChildren();
  const intro = document.createElement('p');
  intro.textContent = fmt(tx, 'netcheck.intro');
  const needs = document.createElement('p');
  needs.className = 'lpcall-netcheck-needs';
  needs.textContent = fmt(tx, 'netcheck.needs', s.needs);
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'lpcall-netcheck-start';
  button.textContent = fmt(tx, 'netcheck.start');
  const status = document.createElement('p');
  status.className = 'lpcall-netcheck-status';
  status.setAttribute('role', 'status');
  status.setAttribute('aria-live', 'polite');
  const list = document.createElement('dl');
  list.className = 'lpcall-netcheck-results';
  list.hidden = true;
  const pathDd = row(list, fmt(tx, 'netcheck.path_label'));
  const rttDd = row(list, fmt(tx, 'netcheck.rtt_label'));
  const rateDd = row(list, fmt(tx, 'netcheck.bitrate_label'));
  pathDd.dataset.field = 'path';
  rttDd.dataset.field = 'rtt';
  rateDd.dataset.field = 'bitrate';
  const verdict = document.createElement('p');
  verdict.className = 'lpcall-netcheck-verdict';
  container.append(intro, needs, button, status, list, verdict);

  button.addEventListener('click', async () => {
    button.disabled = true;
    verdict.textContent = '';
    delete container.dataset.verdict;
    [pathDd, rttDd, rateDd].forEach(dd => { dd.textContent = '…'; });
    list.hidden = false;
    status.textContent = fmt(tx, 'netcheck.running');
    try {
      const result = await runNetcheck({...s, base}, {
        onProgress: p => {
          if (p.candidateType) pathDd.textContent = fmt(tx, `netcheck.path.${p.candidateType === 'prflx' ? 'srflx' : p.candidateType}`);
          if (p.rttMs != null) rttDd.textContent = fmt(tx, 'netcheck.ms', {value: Math.round(p.rttMs)});
        },
      });
      pathDd.textContent = fmt(tx, `netcheck.path.${result.path}`);
      rttDd.textContent = result.rttMs == null ? '–' : fmt(tx, 'netcheck.ms', {value: Math.round(result.rttMs)});
      rateDd.textContent = result.bitrateKbps == null ? '–' : fmt(tx, 'netcheck.kbps', {value: Math.round(result.bitrateKbps)});
      verdict.textContent = result.message + (result.sharedWithAgent ? ` ${fmt(tx, 'netcheck.shared')}` : '');
      container.dataset.verdict = result.verdict;
      container.dataset.path = result.path;
      status.textContent = '';
      button.textContent = fmt(tx, 'netcheck.again');
      onResult(result);
    } catch (err) {
      status.textContent = fmt(tx, 'netcheck.failed', {error: err.message});
      container.dataset.verdict = 'error';
    } finally {
      button.disabled = false;
    }
  });
  return {start: () => button.click()};
}
