// perpbot dashboard: poll /v1/dashboard and swap in the server-rendered sections (charts are SVG
// drawn by the daemon at the widths measured here); range buttons; kill with confirmation.
// No framework and no build step; the session cookie authenticates, the CSRF meta tag guards the kill.
(() => {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const pollMs = Number(document.body.dataset.pollMs) || 2000;
  const conn = document.getElementById("conn");
  const dialog = document.getElementById("kill-dialog");
  const result = document.getElementById("kill-result");
  const confirmButton = document.getElementById("kill-confirm");
  const ranges = ["1h", "24h", "7d", "all"];
  let updates = 0;
  let range = ranges.includes(localStorage.getItem("perpbot.range")) ? localStorage.getItem("perpbot.range")
    : (document.body.dataset.range || "24h");

  function showRange() {
    document.body.dataset.range = range;
    for (const button of document.querySelectorAll("button.range")) {
      button.classList.toggle("active", button.dataset.range === range);
    }
  }

  function widths() {
    // The SVGs are drawn at these pixel widths, so their text stays readable at any screen size.
    const slot = document.querySelector(".chart-slot:not(.wide)");
    const wide = document.querySelector(".chart-slot.wide") || document.getElementById("charts");
    const w = slot ? Math.floor(slot.clientWidth) : 560;
    const fw = wide ? Math.floor(wide.clientWidth) : 2 * w;
    return "&w=" + w + "&fw=" + fw;
  }

  function setConn(text, cls) {
    conn.textContent = text;
    conn.className = "conn " + cls;
  }

  let sequence = 0;

  async function refresh() {
    const mine = ++sequence;
    try {
      const response = await fetch("/v1/dashboard?range=" + encodeURIComponent(range) + widths(), { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        setConn("session expired: open the dashboard again with /?token=…", "bad");
        return false;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
      if (mine !== sequence) return true;  // a newer request (another range) is on its way
      for (const [id, html] of Object.entries(data.html)) {
        const el = document.getElementById(id);
        if (el) el.innerHTML = html;  // server-rendered, every value escaped there
      }
      updates += 1;
      document.body.dataset.updates = String(updates);
      document.body.dataset.riskMode = data.risk_mode;
      setConn("live · updated " + new Date().toLocaleTimeString(), "ok");
    } catch (err) {
      setConn("daemon unreachable (" + err.message + "); retrying", "bad");
    }
    return true;
  }

  async function loop() {
    if (await refresh()) setTimeout(loop, pollMs);
  }

  for (const button of document.querySelectorAll("button.range")) {
    button.addEventListener("click", () => {
      range = button.dataset.range;
      try { localStorage.setItem("perpbot.range", range); } catch (e) { /* private mode */ }
      showRange();
      refresh();
    });
  }
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(refresh, 250);
  });
  showRange();

  document.getElementById("kill-open").addEventListener("click", () => {
    dialog.hidden = false;
    document.getElementById("kill-reason").focus();
  });
  document.getElementById("kill-cancel").addEventListener("click", () => { dialog.hidden = true; });
  confirmButton.addEventListener("click", async () => {
    confirmButton.disabled = true;
    const body = {
      reason: document.getElementById("kill-reason").value.trim() || "dashboard kill",
      flatten: document.getElementById("kill-flatten").checked,
    };
    try {
      const response = await fetch("/v1/kill", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(body),
      });
      const text = await response.text();
      let report = text;
      try { report = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
      result.textContent = (response.ok ? "Kill done:\n" : "Kill FAILED (HTTP " + response.status + "):\n") + report;
      result.dataset.ok = String(response.ok);
    } catch (err) {
      result.textContent = "Kill FAILED: " + err.message + ". Use `perpbot kill` or `perpbot kill --direct`.";
      result.dataset.ok = "false";
    }
    result.hidden = false;
    dialog.hidden = true;
    confirmButton.disabled = false;
    refresh();
  });

  setTimeout(loop, 0);
})();
