// The standalone call page's events for the app that shows it (issue 18, README "For app developers").
//
// Every event the page publishes on its lpTag.events bus (lpCoBrowse, cobrowse, lpCall) is also
// posted, as {source: 'lpcall', type: 'event', appName, eventName, data}, to:
//   - window.parent.postMessage(msg, '*')          when the page is in an iframe (CSP frame-ancestors
//                                                   decides who may frame it: LPCALL_CALL_PAGE_FRAME_ANCESTORS)
//   - window.webkit.messageHandlers.lpcall          iOS WKWebView (a WKScriptMessageHandler named "lpcall")
//   - window.LPCallAndroid.postMessage(json)        Android WebView (@JavascriptInterface; a JSON string)
// A bridge that throws never stops the page.

function plain(value) {
  try { return JSON.parse(JSON.stringify(value === undefined ? null : value)); } catch (e) { return null; }
}

export function hostMessage(appName, eventName, data) {
  return {source: 'lpcall', type: 'event', appName, eventName, data: plain(data)};
}

export function postToHost(appName, eventName, data) {
  const msg = hostMessage(appName, eventName, data);
  const sent = [];
  try {
    if (window.parent && window.parent !== window) { window.parent.postMessage(msg, '*'); sent.push('parent'); }
  } catch (e) { /* a parent that refuses: ignored */ }
  try {
    const ios = window.webkit && window.webkit.messageHandlers && window.webkit.messageHandlers.lpcall;
    if (ios && typeof ios.postMessage === 'function') { ios.postMessage(msg); sent.push('ios'); }
  } catch (e) { /* ignored */ }
  try {
    const android = window.LPCallAndroid;
    if (android && typeof android.postMessage === 'function') { android.postMessage(JSON.stringify(msg)); sent.push('android'); }
  } catch (e) { /* ignored */ }
  return sent;
}
