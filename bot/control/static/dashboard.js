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

  // ---- hover readout: the time and every line's value under the cursor, read back from the drawn
  // paths and the plot geometry the server puts on each chart (no data is sent twice).
  const formats = {
    usd: (v) => v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }),
    size: (v) => v.toLocaleString("en-US", { minimumFractionDigits: 4, maximumFractionDigits: 4 }),
    rate: (v) => (v * 100).toFixed(4) + " %",
    pct: (v) => (v * 100).toFixed(2) + " %",
  };
  const tip = document.createElement("div");
  tip.className = "tip";
  tip.hidden = true;
  document.body.appendChild(tip);
  let hover = null;  // {id, x, y} while the pointer is over a chart

  function vertices(path) {
    const out = [];
    let x = 0, y = 0;
    for (const m of path.getAttribute("d").matchAll(/([MLHV])([-\d.]+)(?:,([-\d.]+))?/g)) {
      const a = parseFloat(m[2]);
      if (m[1] === "H") x = a; else if (m[1] === "V") y = a; else { x = a; y = parseFloat(m[3]); }
      out.push([x, y]);
    }
    return out;
  }

  function valueAt(points, x) {  // the last vertex at or left of x (lines are sorted by time)
    if (!points.length || points[0][0] > x + 0.5) return null;
    let lo = 0, hi = points.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (points[mid][0] <= x + 0.5) lo = mid; else hi = mid - 1;
    }
    return points[lo][1];
  }

  function hideTip() {
    tip.hidden = true;
    for (const line of document.querySelectorAll("line.crosshair")) line.remove();
  }

  function showTip(svg, clientX, clientY) {
    const d = svg.dataset;
    const rect = svg.getBoundingClientRect();
    const x = (clientX - rect.left) * (svg.viewBox.baseVal.width / rect.width);
    const left = Number(d.left), pw = Number(d.pw), top = Number(d.top), ph = Number(d.ph);
    const lo = Number(d.lo), hi = Number(d.hi);
    if (!d.unit || x < left || x > left + pw) { hideTip(); return; }
    const t = Number(d.t0) + (Number(d.t1) - Number(d.t0)) * (x - left) / pw;
    let line = svg.querySelector("line.crosshair");
    if (!line) {
      line = document.createElementNS("http://www.w3.org/2000/svg", "line");
      line.setAttribute("class", "crosshair");
      svg.appendChild(line);
    }
    for (const [name, value] of [["x1", x], ["x2", x], ["y1", top], ["y2", top + ph]]) line.setAttribute(name, value);
    const head = document.createElement("b");
    head.textContent = new Date(t).toISOString().replace("T", " ").slice(0, 19) + "Z";
    tip.replaceChildren(head);
    for (const path of svg.querySelectorAll("path.line")) {
      const y = valueAt(vertices(path), x);
      if (y === null) continue;
      const row = document.createElement("div");
      const swatch = document.createElement("i");
      swatch.style.background = path.getAttribute("stroke");  // CSSOM: allowed by the page's CSP
      const label = path.querySelector("title") ? path.querySelector("title").textContent : "";
      row.append(swatch, label + " " + formats[d.unit](lo + (hi - lo) * (top + ph - y) / ph));
      tip.append(row);
    }
    tip.hidden = false;
    tip.style.left = Math.max(4, Math.min(clientX + 14, window.innerWidth - tip.offsetWidth - 8)) + "px";
    tip.style.top = (clientY + window.scrollY + 16) + "px";
  }

  document.addEventListener("pointermove", (event) => {
    const svg = event.target.closest ? event.target.closest("svg.chart[data-unit]") : null;
    if (svg) {
      hover = { id: svg.id, x: event.clientX, y: event.clientY };
      showTip(svg, event.clientX, event.clientY);
    } else if (hover) {
      hover = null;
      hideTip();
    }
  });

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
      const hovered = hover && document.getElementById(hover.id);
      if (hovered) showTip(hovered, hover.x, hover.y); else if (hover) hideTip();
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
  result.addEventListener("click", () => { result.hidden = true; });
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
