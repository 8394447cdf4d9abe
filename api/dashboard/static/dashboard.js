// Live pages: while the page's root says data-live="true", fetch the same URL with partial=1
// a few seconds after the previous refresh ended and swap the main content in place (scripts of
// new plots are re-run). The next refresh is only scheduled once this one has finished, and a
// refresh that takes too long is aborted, so refreshes never overlap nor pile up on a slow server.
(function () {
  "use strict";
  const PERIOD_MS = 3000;
  const TIMEOUT_MS = 30000;
  const main = document.getElementById("live");
  if (!main) return;

  function isLive() {
    const root = main.querySelector(".live-root");
    return root !== null && root.dataset.live === "true";
  }

  function runScripts(container) {
    container.querySelectorAll("script").forEach(function (old) {
      const fresh = document.createElement("script");
      fresh.textContent = old.textContent;
      old.replaceWith(fresh);
    });
  }

  async function refresh() {
    if (!isLive() || document.hidden) return;
    const focused = document.activeElement;
    if (focused && main.contains(focused) && /INPUT|SELECT|TEXTAREA/.test(focused.tagName)) return;
    const url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    const abort = new AbortController();
    const timer = window.setTimeout(function () { abort.abort(); }, TIMEOUT_MS);
    try {
      const response = await fetch(url, { credentials: "same-origin", signal: abort.signal });
      if (!response.ok) return;
      const html = await response.text();
      const scrollY = window.scrollY;
      main.innerHTML = html;
      runScripts(main);
      window.scrollTo(0, scrollY);
      main.dataset.refreshed = String(Date.now());
    } catch (err) {
      // The server may be restarting, or was too slow; the next tick tries again.
    } finally {
      window.clearTimeout(timer);
    }
  }

  async function tick() {
    if (!isLive()) return;
    await refresh();
    window.setTimeout(tick, PERIOD_MS);
  }

  if (isLive()) window.setTimeout(tick, PERIOD_MS);
})();
