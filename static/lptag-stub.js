/* flask-lpcall tag stub, inlined into every page after window.lpCallConfig={base,win,dbg,v} (flask_lpcall/tag.py
   replaces @V@ by the content hash of static/lptag.js). Like LivePerson's own tag it is small: it creates
   window.lpTag (merging into an existing one), queues lpTag.events calls and loads the full bus
   (static/lptag.js) asynchronously from a versioned, long-cached URL, carrying this script's CSP nonce.
   The bus installs the real lpTag.events and replays the queue in call order. */
(function (w, d) {
  // topmost frame only; nothing to do when the bus (or another stub) is on the page already
  try { if (w.top !== w.self) return; } catch (e) { return; }
  var lp = w.lpTag = w.lpTag || {}, ev = lp.events, q = [], n = 0, me = d.currentScript, s;
  if (ev && (ev._lpcall || ev._lpq)) return;
  function later(m) { return function () { q.push([m, arguments]); }; }
  // queued until the bus arrives: bind returns its (kept) id at once, the others return nothing
  lp.events = { _lpq: q, _prev: ev, publish: later("publish"), trigger: later("trigger"), unbind: later("unbind"),
    bind: function () { q.push(["bind", arguments, "lsId_q" + ++n]); return "lsId_q" + n; },
    hasFired: function () { return []; } };
  s = d.createElement("script");
  s.src = w.lpCallConfig.base + "/static/lptag.js?v=@V@";
  if (me && me.nonce) s.nonce = me.nonce;
  d.head.appendChild(s);
})(window, document);
