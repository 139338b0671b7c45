// perpbot dashboard: poll /v1/dashboard and swap in the server-rendered sections; kill with confirmation.
// No framework and no build step; the session cookie authenticates, the CSRF meta tag guards the kill.
(() => {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const pollMs = Number(document.body.dataset.pollMs) || 2000;
  const conn = document.getElementById("conn");
  const dialog = document.getElementById("kill-dialog");
  const result = document.getElementById("kill-result");
  const confirmButton = document.getElementById("kill-confirm");
  let updates = 0;

  function setConn(text, cls) {
    conn.textContent = text;
    conn.className = "conn " + cls;
  }

  async function refresh() {
    try {
      const response = await fetch("/v1/dashboard", { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        setConn("session expired: open the dashboard again with /?token=…", "bad");
        return false;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
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
