// Can this page take a WebRTC call? One rule for the chat window (which declares CO_BROWSE only
// when it can, so an agent never invites a browser that cannot call) and the call engine.

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
