// The agent's side of a call (PROTOCOL §10), called by the workspace (agent.js) right after
// `call.Invite` (or `call.Active` after a reload):
//
//   const call = startAgentCall({container, serviceId, token, mode, iceServers,
//     iceTransportPolicy, cameraOffAtStart, peerName, texts, onEnd, closeAfter, onClosed});
//   call.destroy();
//
// The agent joins the call's signaling at once and waits for the visitor; the hang-up button
// cancels the invitation while it is pending. Errors of either side are shown in the UI.
// An ended call shows "Call ended" and a close button; without an error it closes by itself
// after `closeAfter` seconds (0: stays until closed): the container is emptied, `onClosed` runs.

import {CallEngine} from './engine.js';
import {makeT, mountCallUI} from './callui.js';

function baseUrl(opts) {
  if (opts.base) return opts.base;
  const cfg = (window.lpTag && window.lpTag.lpcall && window.lpTag.lpcall.config) || window.lpCallConfig || {};
  if (cfg.base) return cfg.base;
  const m = /^(.*)\/agent(\/|$)/.exec(location.pathname);
  return m ? m[1] : '/lpcall';
}

// The agent's engine; a lost signaling socket rejoins with a fresh token from the workspace socket.
function agentEngine(opts) {
  const {serviceId, token, mode} = opts;
  const info = opts.info || {};
  return new CallEngine({
    base: baseUrl(opts),
    serviceId,
    token,
    mode,
    role: 'agent',
    iceServers: opts.iceServers,
    iceTransportPolicy: opts.iceTransportPolicy,
    cameraOffAtStart: opts.cameraOffAtStart,
    connectTimeout: opts.connectTimeout || info.connectTimeout,
    sessionState: opts.sessionState || info.sessionState || 'INVITED',
    // a lost signaling socket rejoins with a fresh token from the workspace socket (recovery.js)
    refreshToken: opts.socket && typeof opts.socket.request === 'function'
      ? () => opts.socket.request('call.Active', {}).then((b) => {
        const found = (b.calls || []).find((c) => c.serviceId === serviceId);
        if (!found) throw Object.assign(new Error('the call has ended'), {status: 404});
        return found.token;
      })
      : null,
  });
}

// Why the call ended, for the agent ('' for a plain end).
function endReason(t, info, engine, peerName) {
  if (info && info.errorId) {
    const error = t(`error.${info.errorId}`);
    return info.by === 'consumer' ? t('call.peer_failed', {name: peerName || '', error}) : error;
  }
  if (info && info.reason === 'consumer_disconnected' && !engine.connectedOnce) {
    return t('call.visitor_left', {name: peerName || ''});  // the visitor's page went away while invited
  }
  return '';
}

export function startAgentCall(opts) {
  const {container, serviceId, mode, peerName, texts, onEnd} = opts;
  const info = opts.info || {};
  const t = makeT(texts);
  const engine = agentEngine(opts);
  // The hang-up button; if the signaling socket cannot say it, the workspace socket cancels.
  const hangup = async () => {
    const info = await engine.hangup();
    if (info && info.by === 'agent' && !info.confirmed && opts.socket && typeof opts.socket.request === 'function') {
      opts.socket.request('call.Cancel', {serviceId}).catch(() => {});
    }
    return info;
  };
  if (info.connectedTs) engine.startedAt = info.connectedTs;  // after a reload the timer goes on (issue 5)
  const ui = mountCallUI({engine, mode, peerName, texts, role: 'agent', onHangup: hangup});
  container.replaceChildren(ui.root);
  let ended = false;

  function end(info) {
    if (ended) return;
    ended = true;
    const why = endReason(t, info, engine, peerName);
    ui.showEnded({
      onClose: () => {
        ui.destroy();
        if (!container.contains(ui.root)) return;  // a newer call uses the container by now
        container.replaceChildren();
        if (typeof opts.onClosed === 'function') opts.onClosed();
      },
      closeAfter: why ? 0 : Number(opts.closeAfter ?? 5),
    });
    if (why) ui.showError(why);
    if (typeof onEnd === 'function') {
      try { onEnd(info || null); } catch (e) { console.warn('lpcall: onEnd failed', e); }
    }
  }

  engine.addEventListener('error', (e) => ui.showError(t(`error.${e.detail.code}`)));
  engine.addEventListener('closed', (e) => end(e.detail));
  engine.start().catch((err) => {
    if (err.code === 'CALL_ENDED') {  // closed before we could join (e.g. the visitor failed at once)
      end(null);
      return;
    }
    if (err.code === 'CALL_IN_OTHER_TAB') {  // another workspace tab holds the call and keeps it (issue 5)
      engine.destroy();
      end({reason: null, errorId: 'CALL_IN_OTHER_TAB', by: 'agent'});
      return;
    }
    const id = ['BROWSER_NOT_SUPPORTED', 'NO_CAMERA_ACCESS'].includes(err.code) ? err.code : 'UNABLE_TO_CONNECT';
    ui.showError(t(`error.${id}`));
    end({reason: 'error', errorId: id, by: 'agent'});
  });

  return {
    engine,
    ui,
    hangup,
    destroy() {
      engine.destroy();
      ui.destroy();
    },
  };
}
