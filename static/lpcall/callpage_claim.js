// The "used" page of a call link (callpage.py): when this tab opened the link before, it holds the
// link's claim in sessionStorage (a cross-site iframe sends no claim cookie): open the link again
// with it, once. A classic script in <head>: nothing of the "used" page shows meanwhile.
(function reclaim() {
  try {
    if (/[?&]claim=/.test(location.search)) return;  // tried already: the "used" page stands
    const claim = sessionStorage.getItem(`lpcall.claim:${location.pathname}`);
    if (!claim) return;
    document.documentElement.style.visibility = 'hidden';
    location.replace(`${location.pathname}?claim=${encodeURIComponent(claim)}${location.hash}`);
  } catch (e) { /* no storage: the "used" page stands */ }
}());
