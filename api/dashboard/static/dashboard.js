// Live pages: while the page's root says data-live="true", fetch the same URL with partial=1
// every few seconds and swap the main content in place (scripts of new plots are re-run).
(function () {
  "use strict";
  const PERIOD_MS = 3000;
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
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) return;
      const html = await response.text();
      const scrollY = window.scrollY;
      main.innerHTML = html;
      runScripts(main);
      window.scrollTo(0, scrollY);
      main.dataset.refreshed = String(Date.now());
    } catch (err) {
      // The server may be restarting; the next tick tries again.
    }
  }

  if (isLive()) {
    const timer = window.setInterval(function () {
      if (!isLive()) { window.clearInterval(timer); return; }
      refresh();
    }, PERIOD_MS);
  }
})();
