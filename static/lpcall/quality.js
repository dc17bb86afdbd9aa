// Connection quality (issue 17): about once a second, the call's RTCPeerConnection stats become one
// of four levels — good, fair, poor, lost — with the reason of the worst measure. The own summary
// goes to the other side as a small `quality` signaling frame (PROTOCOL §5 "quality"), at most
// once a second and only when it changed or every 5 s; the other side's arrives the same way.
//
//   const q = watchQuality(engine, {video: true});
//   q.addEventListener('change', (e) => e.detail);  // {own: {level, reason, ...}, peer: {...} | null}
//   q.stop();
//
// What counts for one's own level is what this side can see of its own network: loss and jitter
// of the media it receives, the round trip, its outgoing bandwidth estimate, and whether video
// frames still decode. The other side's loss of our media shows on its own indicator, not ours.

export const LEVELS = ['good', 'fair', 'poor', 'lost'];
export const REASONS = ['loss', 'rtt', 'jitter', 'bandwidth', 'frames', 'nomedia'];

// [fair from, poor from] per measure; bandwidth: below, in kbit/s
export const THRESHOLDS = {
  loss: [2, 8],          // % of the media packets received in the window (worst of audio / video)
  rtt: [300, 600],       // ms, the selected candidate pair's round trip
  jitter: [40, 100],     // ms, the audio's (the video's in a call without audio)
  bandwidthVideo: [400, 60],  // kbit/s available outgoing (video calls)
  bandwidthAudio: [40, 16],   // kbit/s available outgoing (voice calls)
};
const WINDOW = 3;          // samples the loss is counted over
// Audio fallback (issue 17 part 4): a video call whose outgoing bandwidth estimate stays below
// FALLBACK.kbps for FALLBACK.samples samples stops sending video (both sides: the other one follows
// the `audioOnly` flag of our `quality` frame). Every PROBE_EVERY_MS the side that fell back sends a
// small video stream (≤ PROBE_KBPS) for up to PROBE_SAMPLES samples: an estimate reaching
// RECOVERED_KBPS, with a round trip that is not poor, means the network can carry video again, and video is
// offered back (a button). A fresh connection (the stall watch's) starts the probe clock again: its estimate
// begins at the browser's guess (Chromium: 300 kbit/s) whatever the network, and a probe on it read that guess
// as a recovery while the limit held (a CI run, 2026-11-27).
// Samples within FALLBACK.settleMs of an ICE restart do not count towards it: the sender's estimator starts
// again from what was acknowledged around the path change, a dip of seconds that is no network limit.
export const FALLBACK = {kbps: 120, samples: 5, probeEveryMs: 10000, probeSamples: 5, probeKbps: 150, recoveredKbps: 200,
  settleMs: 3000};
// The start of a connection: the browser's outgoing estimate begins at a guess (Chromium: 300 kbit/s, under
// the video's fair line) and climbs while the sender probes the path, for seconds against a peer that answers
// with REMB alone (the aiortc demo agent). Until the start is over a low estimate does not make the level fair
// ("video at lower quality" while the video went out whole). The start is over once the estimate reached the
// fair line, or made no new high for RAMP_FLAT_SAMPLES samples in a row: a real limit holds it down, a dip on
// the way up does not end the start. Poor (under the poor line) counts from the first sample.
export const RAMP_FLAT_SAMPLES = 5;
export const RAMP_START = Object.freeze({peak: 0, flat: 0, done: false});

// one sample's estimate (kbit/s or null) into the start's state, against the call's fair line: a new state
export function rampStep(ramp, kbps, fairKbps = THRESHOLDS.bandwidthVideo[0]) {
  if (ramp.done || kbps === null || kbps === undefined) return ramp;
  if (kbps >= fairKbps) return {...ramp, done: true};
  if (kbps > ramp.peak) return {peak: kbps, flat: 0, done: false};
  const flat = ramp.flat + 1;
  return {peak: ramp.peak, flat, done: flat >= RAMP_FLAT_SAMPLES};
}
const PERIOD_MS = 1000;
const SEND_EVERY_MS = 5000;

// The same rules as flask_lpcall/schemas.QualityFrameSchema: what a `quality` frame may carry.
export function validQualityFrame(f) {
  if (!f || typeof f !== 'object' || f.type !== 'quality') return false;
  const allowed = new Set(['type', 'level', 'reason', 'rttMs', 'lossPct', 'jitterMs', 'outKbps', 'iceRestarts',
    'networkSwitches', 'audioOnly', 'from']);
  if (f.audioOnly !== undefined && typeof f.audioOnly !== 'boolean') return false;
  if (Object.keys(f).some((k) => !allowed.has(k))) return false;
  if (!LEVELS.includes(f.level)) return false;
  if (f.reason !== null && f.reason !== undefined && !REASONS.includes(f.reason)) return false;
  const num = (v, max) => v === null || v === undefined || (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= max);
  const count = (v) => v === undefined || (Number.isInteger(v) && v >= 0 && v <= 1e6);
  return num(f.rttMs, 60000) && num(f.lossPct, 100) && num(f.jitterMs, 60000) && num(f.outKbps, 1e6)
    && count(f.iceRestarts) && count(f.networkSwitches);
}

function rank(level) { return LEVELS.indexOf(level); }

function grade(value, [fair, poor], below = false) {
  if (value === null || value === undefined) return 'good';
  if (below) return value < poor ? 'poor' : value < fair ? 'fair' : 'good';
  return value >= poor ? 'poor' : value >= fair ? 'fair' : 'good';
}

// one sample → the level and the reason (the measure with the worst level, first in REASONS on a tie)
// (m.rampingUp: the connection's start, see rampStep: a low estimate is not yet a weak network)
export function classify(m, {video = true} = {}) {
  if (m.lost) return {level: 'lost', reason: 'nomedia'};
  const bandwidth = grade(m.outKbps, video ? THRESHOLDS.bandwidthVideo : THRESHOLDS.bandwidthAudio, true);
  const grades = {
    loss: grade(m.lossPct, THRESHOLDS.loss),
    rtt: grade(m.rttMs, THRESHOLDS.rtt),
    jitter: grade(m.jitterMs, THRESHOLDS.jitter),
    bandwidth: m.rampingUp && bandwidth === 'fair' ? 'good' : bandwidth,
    frames: m.framesStalled ? 'poor' : m.dropRatio > 0.2 ? 'fair' : 'good',
  };
  let level = 'good', reason = null;
  for (const r of REASONS) {
    if (grades[r] && rank(grades[r]) > rank(level)) { level = grades[r]; reason = r; }
  }
  return {level, reason};
}

// cumulative counters of one getStats() report
export function readCounters(report) {
  const c = {audio: {recv: 0, lost: 0, jitter: null}, video: {recv: 0, lost: 0, jitter: null, decoded: 0, dropped: 0},
    rttMs: null, outKbps: null, bytesIn: 0, localAddress: null};
  let pairId = null;
  report.forEach((r) => {
    if (r.type === 'inbound-rtp' && (r.kind === 'audio' || r.kind === 'video')) {
      const k = c[r.kind];
      k.recv += r.packetsReceived || 0;
      k.lost += Math.max(0, r.packetsLost || 0);
      if (typeof r.jitter === 'number') k.jitter = Math.max(k.jitter || 0, r.jitter * 1000);
      if (r.kind === 'video') { k.decoded += r.framesDecoded || 0; k.dropped += r.framesDropped || 0; }
      c.bytesIn += r.bytesReceived || 0;
    }
    if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
  });
  let pair = pairId ? report.get(pairId) : null;
  if (!pair) report.forEach((r) => { if (!pair && r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
  if (pair) {
    const local = report.get(pair.localCandidateId);
    if (local) c.localAddress = `${local.address || local.ip || ''}/${local.networkType || ''}`;
    if (typeof pair.currentRoundTripTime === 'number') c.rttMs = pair.currentRoundTripTime * 1000;
    if (typeof pair.availableOutgoingBitrate === 'number') c.outKbps = pair.availableOutgoingBitrate / 1000;
  }
  return c;
}

// the window's measures from the oldest and newest counters
export function measures(old, now, {video = true, connection = 'connected'} = {}) {
  const lossOf = (k) => {
    const recv = now[k].recv - old[k].recv, lost = Math.max(0, now[k].lost - old[k].lost);  // duplicates lower packetsLost
    return recv + lost > 0 ? (100 * lost) / (recv + lost) : null;
  };
  const losses = [lossOf('audio'), lossOf('video')].filter((v) => v !== null);
  const packets = (now.audio.recv + now.video.recv) - (old.audio.recv + old.video.recv);
  const decoded = now.video.decoded - old.video.decoded, dropped = now.video.dropped - old.video.dropped;
  // the audio's jitter where there is audio: a video frame's packets leave in a burst, so video jitter
  // is high on any network (and a Python peer's pacing adds tens of ms) without anyone hearing it
  const jitters = [now.audio.jitter !== null ? now.audio.jitter : now.video.jitter].filter((v) => v !== null);
  const down = ['failed', 'disconnected', 'closed'].includes(connection);
  return {
    lossPct: losses.length ? Math.max(...losses) : null,
    rttMs: now.rttMs,
    jitterMs: jitters.length ? Math.max(...jitters) : null,
    outKbps: now.outKbps,
    lost: down || packets <= 0,
    framesStalled: video && now.video.recv - old.video.recv > 0 && decoded <= 0,
    dropRatio: decoded + dropped > 0 ? dropped / (decoded + dropped) : 0,
  };
}

const round = (v, digits = 0) => (v === null || v === undefined ? null : Number(v.toFixed(digits)));

// The state one watchQuality() shares between its parts (the sampler, the frames, the audio fallback).
function qualityState(engine, video) {
  return {
    engine, video, target: new EventTarget(), history: [], pc: null, own: null, peer: null, ramp: RAMP_START,
    lastSent: 0, lastSentKey: '', stopped: false,
    // ICE restarts (the local ICE ufrag changed, also for a fresh connection) and network switches (the
    // selected pair's local address changed), counted over the call from the exposed RTCPeerConnection
    counts: {iceRestarts: 0, networkSwitches: 0}, lastUfrag: null, lastAddress: null, restartAt: -Infinity,
    // audio fallback: mode 'video' | 'audio'; by 'self' (our network) | 'peer' (theirs); offer: video may come back
    fb: {mode: 'video', by: null, offer: false, probing: 0, high: 0, low: 0, since: 0},
  };
}

const ufragOf = (p) => { const m = /a=ice-ufrag:(\S+)/.exec((p.localDescription && p.localDescription.sdp) || ''); return m ? m[1] : null; };

function emitChange(q) {
  q.target.dispatchEvent(new CustomEvent('change', {detail: {own: q.own, peer: q.peer}}));
}

// Our level to the other side (a `quality` frame): when it changed (at most once a second), else every SEND_EVERY_MS.
function sendSummary(q, summary) {
  const audioOnly = q.fb.mode === 'audio' && q.fb.by === 'self';
  const key = `${summary.level}/${summary.reason}/${q.counts.iceRestarts}/${q.counts.networkSwitches}/${audioOnly}`;
  const now = performance.now();
  if (now - q.lastSent < 1000 || (key === q.lastSentKey && now - q.lastSent < SEND_EVERY_MS)) return;
  q.lastSent = now;
  q.lastSentKey = key;
  const frame = {type: 'quality', level: summary.level, reason: summary.reason, rttMs: summary.rttMs,
    lossPct: summary.lossPct, jitterMs: summary.jitterMs, outKbps: summary.outKbps, ...q.counts, audioOnly};
  if (validQualityFrame(frame) && q.engine._send) q.engine._send(frame);
}

function countChanges(q, c) {
  const ufrag = ufragOf(q.pc);
  if (ufrag && q.lastUfrag && ufrag !== q.lastUfrag) {
    q.counts.iceRestarts += 1;
    q.restartAt = performance.now();
  }
  if (ufrag) q.lastUfrag = ufrag;
  if (c.localAddress && q.lastAddress && c.localAddress !== q.lastAddress) q.counts.networkSwitches += 1;
  if (c.localAddress) q.lastAddress = c.localAddress;
}

// One sample: the connection's counters into the window, our level from it, the fallback's step.
async function sampleQuality(q) {
  const current = q.engine.pc;
  if (!current || q.engine.status === 'closed') return;
  if (current !== q.pc) {  // a fresh connection: a fresh window, and its estimate starts again
    q.pc = current;
    q.history.length = 0;
    q.ramp = RAMP_START;
    if (q.fb.mode === 'audio') Object.assign(q.fb, {probing: 0, high: 0, since: performance.now()});
  }
  const pc = q.pc;
  if (!['connected', 'disconnected', 'failed'].includes(pc.connectionState) && !q.engine.connectedOnce) return;
  let report;
  try { report = await pc.getStats(); } catch { return; }
  const c = readCounters(report);
  countChanges(q, c);
  const sendingVideo = q.video && q.fb.mode === 'video';  // audio only: the audio thresholds
  q.ramp = rampStep(q.ramp, c.outKbps, (sendingVideo ? THRESHOLDS.bandwidthVideo : THRESHOLDS.bandwidthAudio)[0]);
  q.history.push(c);
  if (q.history.length > WINDOW + 1) q.history.shift();
  if (q.history.length < 2) return;
  const m = measures(q.history[0], q.history.at(-1), {video: sendingVideo, connection: pc.connectionState});
  m.rampingUp = !q.ramp.done;
  const {level, reason} = classify(m, {video: sendingVideo});
  q.own = {level, reason, rttMs: round(m.rttMs), lossPct: round(m.lossPct, 1), jitterMs: round(m.jitterMs),
    outKbps: round(m.outKbps)};
  if (q.video) await fallbackStep(q, m);
  emitChange(q);
  sendSummary(q, q.own);
}

// -- audio fallback ---------------------------------------------------------------------
function videoSenders(q) {
  return q.pc ? q.pc.getSenders().filter((x) => x.track && x.track.kind === 'video') : [];
}

// the video encoding on or off, optionally capped (a probe); enforced each sample, so a fresh
// connection or an encoder refresh by the stall recovery (recovery.js) cannot turn video back on
async function sendVideo(q, active, capKbps = null) {
  for (const sender of videoSenders(q)) {
    const params = sender.getParameters();
    if (!params.encodings || !params.encodings.length) continue;
    const e = params.encodings[0];
    const cap = capKbps ? capKbps * 1000 : undefined;
    if (e.active === active && e.maxBitrate === cap) continue;
    e.active = active;
    if (cap) e.maxBitrate = cap; else delete e.maxBitrate;
    try { await sender.setParameters(params); } catch (err) { /* a renegotiation in flight: next sample */ }
  }
}

function fallbackChanged(q) {
  q.engine.audioFallback = q.fb.mode === 'audio';  // recovery.js: no video to expect meanwhile
  q.target.dispatchEvent(new CustomEvent('fallback', {detail: {...q.fb}}));
}

async function toAudio(q, by) {
  Object.assign(q.fb, {mode: 'audio', by, offer: false, probing: 0, low: 0, since: performance.now()});
  await sendVideo(q, false);
  q.lastSent = 0;  // tell the other side now
  fallbackChanged(q);
}

async function toVideo(q) {
  Object.assign(q.fb, {mode: 'video', by: null, offer: false, probing: 0, low: 0, since: performance.now()});
  await sendVideo(q, true);
  fallbackChanged(q);
}

// Audio only because of our network: a capped probe now and then; video is offered back when it climbs.
async function probeStep(q, m) {
  const fb = q.fb;
  if (fb.probing > 0) {  // a probe runs: does the estimate climb?
    fb.probing += 1;
    // two samples in a row above the line: one estimate spike (a loaded machine, a burst) is no recovery;
    // nor is an estimate while the round trip is poor (a full queue: seconds on a link still at its limit)
    const clear = m.rttMs === null || m.rttMs < THRESHOLDS.rtt[1];
    fb.high = m.outKbps !== null && m.outKbps >= FALLBACK.recoveredKbps && clear ? (fb.high || 0) + 1 : 0;
    if (fb.high >= 2) {
      fb.probing = 0;
      fb.high = 0;
      fb.offer = true;
      await sendVideo(q, false);
      fallbackChanged(q);
    } else if (fb.probing > FALLBACK.probeSamples || (m.lossPct !== null && m.lossPct >= THRESHOLDS.loss[1])) {
      fb.probing = 0;
      fb.since = performance.now();
      await sendVideo(q, false);
    }
    return;
  }
  if (performance.now() - fb.since >= FALLBACK.probeEveryMs) {
    fb.probing = 1;
    fb.high = 0;
    await sendVideo(q, true, FALLBACK.probeKbps);
  } else {
    await sendVideo(q, false);
  }
}

async function fallbackStep(q, m) {
  const fb = q.fb;
  if (fb.mode === 'video') {
    const settling = performance.now() - q.restartAt < FALLBACK.settleMs;  // the estimate restarts: not counted
    if (!settling) fb.low = m.outKbps !== null && m.outKbps < FALLBACK.kbps ? fb.low + 1 : 0;
    if (fb.low >= FALLBACK.samples) await toAudio(q, 'self');
    else if (fb.probing === 0) await sendVideo(q, true);
    return;
  }
  if (fb.by !== 'self' || fb.offer) { await sendVideo(q, false); return; }
  await probeStep(q, m);
}

// The other side's `quality` frame: its level, and its audio-only state mirrored here.
function onPeerFrame(q, f) {
  if (!validQualityFrame(f)) return;
  q.peer = {level: f.level, reason: f.reason || null, rttMs: f.rttMs ?? null, lossPct: f.lossPct ?? null};
  if (q.video && f.audioOnly === true && q.fb.mode === 'video') toAudio(q, 'peer');
  else if (q.video && f.audioOnly !== true && q.fb.mode === 'audio' && q.fb.by === 'peer') toVideo(q);
  emitChange(q);
}

export function watchQuality(engine, {video = true, periodMs = PERIOD_MS} = {}) {
  const q = qualityState(engine, video);
  const target = q.target;
  target.videoBack = async () => {  // the user takes the offer
    if (q.fb.mode !== 'audio') return;
    await toVideo(q);
    q.lastSent = 0;
    if (q.own) sendSummary(q, q.own);
  };
  const onFrame = (e) => onPeerFrame(q, e.detail);
  const onPeer = (e) => {
    if (!e.detail.present && q.peer) { q.peer = {level: 'lost', reason: 'nomedia'}; emitChange(q); }
  };
  engine.addEventListener('remotequality', onFrame);
  engine.addEventListener('peer', onPeer);
  let busy = false;
  const timer = setInterval(() => {
    if (q.stopped || busy) return;
    busy = true;
    sampleQuality(q).finally(() => { busy = false; });
  }, periodMs);
  target.stop = () => {
    q.stopped = true;
    clearInterval(timer);
    engine.removeEventListener('remotequality', onFrame);
    engine.removeEventListener('peer', onPeer);
  };
  Object.defineProperty(target, 'state', {get: () => ({own: q.own, peer: q.peer, ...q.counts, fallback: {...q.fb}})});
  return target;
}

// -- the indicator in the call UI ------------------------------------------------------------
// Two badges (own, the other side's) with data-level, and one polite live region with the reason
// when a level is not good. Texts from the catalog (flask_lpcall/texts.py "quality.*").
export function mountQualityIndicator({engine, t, name, video = true}) {
  const root = document.createElement('div');
  root.className = 'lpcall-quality';
  const badge = (cls) => {
    const b = document.createElement('span');
    b.className = `lpcall-quality-badge ${cls}`;
    b.hidden = true;
    return b;
  };
  const ownBadge = badge('lpcall-quality-own'), peerBadge = badge('lpcall-quality-peer');
  const reason = document.createElement('div');
  reason.className = 'lpcall-quality-reason';
  reason.setAttribute('role', 'status');
  reason.setAttribute('aria-live', 'polite');
  reason.hidden = true;
  const notice = document.createElement('div');  // audio fallback: why video paused, and the offer back
  notice.className = 'lpcall-fallback';
  notice.setAttribute('role', 'status');
  notice.setAttribute('aria-live', 'polite');
  notice.hidden = true;
  const noticeText = document.createElement('span');
  const backBtn = document.createElement('button');
  backBtn.type = 'button';
  backBtn.className = 'lpcall-video-back';
  backBtn.hidden = true;
  backBtn.textContent = t('quality.video_back');
  notice.append(noticeText, backBtn);
  root.append(ownBadge, peerBadge, reason, notice);
  const watcher = watchQuality(engine, {video});
  if (window.__lpcallTest) window.__lpcallQuality = watcher;  // tests and benchmarks read its state
  backBtn.addEventListener('click', () => watcher.videoBack());
  watcher.addEventListener('fallback', (e) => {
    const f = e.detail;
    root.dataset.fallback = f.mode === 'audio' ? (f.offer ? 'offer' : 'audio') : '';
    notice.hidden = f.mode !== 'audio';
    noticeText.textContent = f.mode !== 'audio' ? ''
      : f.offer ? t('quality.video_recovered') : t(f.by === 'self' ? 'quality.audio_only.self' : 'quality.audio_only.peer', {name});
    backBtn.hidden = !(f.mode === 'audio' && f.offer);
  });
  function show(b, q, labelKey) {
    b.hidden = !q;
    if (!q) return;
    b.dataset.level = q.level;
    if (q.reason) b.dataset.reason = q.reason; else delete b.dataset.reason;
    const text = t(labelKey, {name, level: t(`quality.level.${q.level}`)});
    b.textContent = text;
    b.setAttribute('title', text);
  }
  watcher.addEventListener('change', (e) => {
    const {own, peer} = e.detail;
    show(ownBadge, own, 'quality.own_label');
    show(peerBadge, peer, 'quality.peer_label');
    root.dataset.own = own ? own.level : '';
    root.dataset.peer = peer ? peer.level : '';
    let text = '';
    if (own && own.level !== 'good') text = t(`quality.own.${own.reason || 'loss'}`, {name});
    else if (peer && peer.level === 'lost') text = t('quality.peer.lost', {name});
    else if (peer && peer.level !== 'good') text = t('quality.peer.weak', {name});
    if (reason.textContent !== text) reason.textContent = text;
    reason.hidden = !text;
  });
  return {root, watcher, destroy() { watcher.stop(); }};
}
