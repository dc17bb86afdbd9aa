/* flask-lpcall lpTag bus, loaded asynchronously by the stub every page inlines (static/lptag-stub.js, after
   window.lpCallConfig={base,win,dbg,v}): lpTag.events bus, lpCoBrowse payload checks, lp_monitoringSDK ids,
   lazy loader of static/lpcall/consumer.js (from <base>/static/<v>/: the versioned, immutable URL of the
   browser code, flask_lpcall/assets.py). It replays the calls the stub queued, in call order. */
(function (w) {
  "use strict";
  try { if (w.top !== w.self) return; } catch (e) { return; } // topmost frame only
  var lp = w.lpTag = w.lpTag || {};
  if (lp.events && lp.events._lpcall) return; // already installed on this page

  var cfg = w.lpCallConfig || {}, con = w.console, own = Object.prototype.hasOwnProperty;
  // captured before a site can replace window.addEventListener
  var addListener = w.EventTarget && EventTarget.prototype.addEventListener;
  var dbg = !!cfg.dbg || /[?&]lpDebug=[2-9]/.test(w.location.search);

  function stamp() { return new Date().toTimeString().slice(0, 8); }
  function log(level, source, text) {
    if (!dbg || !con) return;
    try { (level === "ERROR" ? con.error : con.debug).call(con, stamp() + " " + source + " : " + text + " LEVEL: " + level); } catch (e) { /* no console */ }
  }
  function on(target, type, fn, opts) { return addListener.call(target, type, fn, opts); }

  // -- lpCoBrowse payload rules (same as CoBrowseEventSchema in flask_lpcall/schemas.py) --
  var MANDATORY = ["serviceId", "agentId", "visitorName", "mode", "ssid", "svid"];
  var OPTIONAL = ["scid", "cid", "eid"];
  var MODES = ["VOICE_CALL", "VIDEO_CALL"];
  var HAS_PAYLOAD = { cobrowseOffered: 1, cobrowseAccepted: 1, cobrowseDeclined: 1, sliderOpened: 0 };

  // [field, problem] of the first broken rule, or null
  function check(app, event, data) {
    if (app !== "lpCoBrowse") return null;
    if (!own.call(HAS_PAYLOAD, event)) return ["event", "not a known lpCoBrowse event"];
    if (!HAS_PAYLOAD[event]) return null;
    if (!data || typeof data !== "object" || Array.isArray(data)) return ["data", "not an object"];
    var i, k, v;
    for (i = 0; i < MANDATORY.length; i++) {
      k = MANDATORY[i]; v = own.call(data, k) ? data[k] : undefined;
      if (v === undefined) return [k, "undefined"];
      if (typeof v !== "string") return [k, "not a string"];
      if (!v) return [k, "empty"];
    }
    if (MODES.indexOf(data.mode) < 0) return ["mode", "not VOICE_CALL or VIDEO_CALL"];
    for (k in data) {
      if (!own.call(data, k) || data[k] === undefined) continue;
      if (OPTIONAL.indexOf(k) >= 0) { if (typeof data[k] !== "string") return [k, "not a string"]; }
      else if (MANDATORY.indexOf(k) < 0) return [k, "not allowed"];
    }
    return null;
  }

  // -- the event bus -----------------------------------------------------------------------
  var listeners = [], history = {}, seq = 0, HISTORY_MAX = 20;
  // the stub's queue (static/lptag-stub.js), and the site's own lpTag.events from before the stub
  var stub = lp.events && lp.events._lpq ? lp.events : null;
  var site = stub ? stub._prev : lp.events;
  var prev = site && typeof site.publish === "function" ? site : null;

  function deliver(l, ev) {
    try { l.func.call(null, ev.data, ev.info); } catch (e) {
      log("ERROR", "Events", "Error in listener of " + ev.info.appName + "." + ev.info.eventName + ": " + e);
    }
  }
  function matches(l, app, event) { return l.appName === app && (l.eventName === "*" || l.eventName === event); }

  // the event id when delivered, false when refused; never throws
  function publish(app, event, data) {
    var id = "evId_" + (++seq).toString(36), bad;
    try { bad = check(app, event, data); } catch (e) { bad = ["data", "unreadable"]; }
    if (bad) {
      log("ERROR", "Events", "Error executing " + event + " eventId: " + id + "=" + bad[0] + " is " + bad[1]);
      return false;
    }
    var ev = { data: data, info: { appName: app, eventName: event, eventId: id } };
    var h = history[app] = history[app] || [];
    h.push(ev);
    if (h.length > HISTORY_MAX) h.shift();
    var snapshot = listeners.slice();
    for (var i = 0; i < snapshot.length; i++) if (matches(snapshot[i], app, event)) deliver(snapshot[i], ev);
    if (prev) { try { prev.publish(app, event, data); } catch (e) { log("ERROR", "Events", "previous lpTag.events: " + e); } }
    if (app === "lpCoBrowse") load();
    return id;
  }

  // bind({appName, eventName, func, replay}) or bind(appName, eventName, func) -> id
  function bind(app, event, func) { return add(app, event, func); }
  // id: the one the stub already returned for a queued bind
  function add(app, event, func, id) {
    var o = app && typeof app === "object" ? app : { appName: app, eventName: event, func: func };
    if (typeof o.func !== "function" || !o.appName || !o.eventName) return null;
    var l = { id: id || "lsId_" + (++seq).toString(36), appName: o.appName, eventName: o.eventName, func: o.func, src: o };
    listeners.push(l);
    if (o.replay) {
      var h = (history[l.appName] || []).slice();
      for (var i = 0; i < h.length; i++) if (matches(l, h[i].info.appName, h[i].info.eventName)) deliver(l, h[i]);
    }
    return l.id;
  }

  // unbind(id) or unbind(the bind object, or one with the same appName/eventName/func)
  function unbind(ref) {
    var n = listeners.length;
    listeners = listeners.filter(function (l) {
      if (ref && typeof ref === "object") {
        return !(l.src === ref || (l.func === ref.func && l.appName === ref.appName && l.eventName === ref.eventName));
      }
      return l.id !== ref;
    });
    return listeners.length < n;
  }

  // hasFired(app, event): the recent events of an app ("*": all), as {appName, eventName, eventId, data}
  function hasFired(app, event) {
    return (history[app] || []).filter(function (ev) { return matches({ appName: app, eventName: event || "*" }, app, ev.info.eventName); })
      .map(function (ev) { return { appName: app, eventName: ev.info.eventName, eventId: ev.info.eventId, data: ev.data }; });
  }

  var events = { publish: publish, trigger: publish, bind: bind, unbind: unbind, hasFired: hasFired, _lpcall: true };
  [site, stub].forEach(function (o) { // the site's own keys are kept (the stub's internals are not)
    if (o && typeof o === "object") {
      for (var key in o) if (own.call(o, key) && !own.call(events, key) && key !== "_lpq" && key !== "_prev") events[key] = o[key];
    }
  });
  lp.events = events;

  // -- monitoring ids: sid per tab (sessionStorage), vid per visitor (localStorage) --------
  var memory = {};
  function newId() {
    var c = w.crypto, b = new Uint8Array(16), s = "";
    if (c && c.randomUUID) return c.randomUUID();
    if (c && c.getRandomValues) c.getRandomValues(b); else for (var i = 0; i < 16; i++) b[i] = Math.random() * 256;
    for (var j = 0; j < 16; j++) s += (b[j] + 256).toString(16).slice(1);
    return s;
  }
  function storage(kind) { try { return w[kind]; } catch (e) { return null; } }
  function get(kind, key) { try { return storage(kind).getItem(key); } catch (e) { return null; } }
  function storedId(kind, key) {
    var v = get(kind, key) || memory[key];
    if (!v) {
      v = memory[key] = newId();
      try { storage(kind).setItem(key, v); } catch (e) { log("DEBUG", "lpCall", kind + " unavailable, id kept for this page only"); }
    }
    return v;
  }
  lp.taglets = lp.taglets || {};
  if (!lp.taglets.lp_monitoringSDK) {
    lp.taglets.lp_monitoringSDK = {
      getSid: function () { return storedId("sessionStorage", "lpcall.sid"); },
      getVid: function () { return storedId("localStorage", "lpcall.vid"); }
    };
  }

  // -- lazy loader: the consumer app is imported only when needed ---------------------------
  var loading = null;
  // the browser code's folder at its version (relative imports inherit it)
  var assets = (cfg.base || "/lpcall") + "/static/" + (cfg.v ? cfg.v + "/" : "");
  function load() {
    if (!loading) {
      var url = assets + "lpcall/consumer.js";
      loading = import(url).then(null, function (e) {
        log("DEBUG", "lpCall", "could not load " + url + ": " + e);
        return null;
      });
    }
    return loading;
  }
  // for the lazy modules: config, untouched addEventListener, debug log, loader
  lp.lpcall = { config: cfg, on: on, log: log, debug: dbg, load: load, assets: assets, version: "0.1.0" };

  if (cfg.win || get("sessionStorage", "lpcall.call")) load();

  // -- the stub's queue: replayed in call order, as if the bus had been there all along -----
  if (stub) {
    var queued = stub._lpq;
    for (var k in events) if (own.call(events, k) && typeof events[k] === "function") stub[k] = events[k]; // late callers of a kept reference
    for (var i = 0; i < queued.length; i++) {
      try {
        var call = queued[i], args = call[1];
        if (call[0] === "bind") add(args[0], args[1], args[2], call[2]);
        else events[call[0]].apply(events, args);
      } catch (e) { log("ERROR", "Events", "queued " + call[0] + ": " + e); }
    }
    queued.length = 0;
  }
})(window);
