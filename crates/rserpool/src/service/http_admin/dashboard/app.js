// The dashboard: status every 2 s (message rates for the chart), the handlespace
// reloaded whenever the event stream says it changed (at most every 300 ms).
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const rates = []; // [{rx, tx}] per status poll, newest last
let last = null;
let lastStatus = null;
let kind = null;
let reloadTimer = null;

function age(ms) {
  if (ms == null) return "-";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + Math.floor(s % 60) + "s";
  return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function totals(st) {
  const m = st.messages || {};
  return {
    rx: (m.asap_received || 0) + (m.enrp_received || 0),
    tx: (m.asap_sent || 0) + (m.enrp_sent || 0),
    t: performance.now(),
  };
}

async function pollStatus() {
  try {
    const st = await getJson("/v1/status");
    kind = st.component;
    $("kind").textContent = st.component + (st.server_id ? " " + st.server_id : "");
    lastStatus = st;
    renderSummary(st);
    $("status").textContent = JSON.stringify(st, null, 2);
    const now = totals(st);
    if (last && now.t > last.t) {
      const dt = (now.t - last.t) / 1000;
      rates.push({ rx: Math.max(0, now.rx - last.rx) / dt, tx: Math.max(0, now.tx - last.tx) / dt });
      if (rates.length > 60) rates.shift();
      drawChart();
    }
    last = now;
  } catch (e) {
    $("summary").textContent = "unreachable: " + e.message;
  }
}

function renderSummary(st) {
  if (st.component === "registrar") {
    $("summary").textContent = `${st.pe_count} PEs (${st.pes_owned} own) in ${st.pool_count} pools, ${st.peer_count} peers, ENRP ${st.enrp_phase}, up ${age(st.uptime_s * 1000)}`;
  } else {
    $("summary").textContent = `up ${age(st.uptime_s * 1000)}`;
  }
}

function drawChart() {
  const c = $("rates");
  const w = (c.width = c.clientWidth || 600);
  const h = (c.height = 120);
  const g = c.getContext("2d");
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...rates.map((r) => Math.max(r.rx, r.tx)));
  g.strokeStyle = "#ddd";
  g.beginPath(); g.moveTo(0, h - 0.5); g.lineTo(w, h - 0.5); g.stroke();
  g.fillStyle = "#888"; g.font = "11px sans-serif"; g.fillText(max.toFixed(1) + "/s", 4, 12);
  const line = (key, color) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    rates.forEach((r, i) => {
      const x = (w * (i + 60 - rates.length)) / 59;
      const y = h - 2 - ((h - 16) * r[key]) / max;
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
    const r = rates[rates.length - 1];
    if (r) {
      g.fillStyle = color;
      g.beginPath();
      g.arc(w - 3, h - 2 - ((h - 16) * r[key]) / max, 3, 0, 2 * Math.PI);
      g.fill();
    }
  };
  line("rx", "#1f6feb");
  line("tx", "#2da44e");
  const cur = rates[rates.length - 1];
  if (cur) $("rate-now").textContent = `now ${cur.rx.toFixed(1)} in, ${cur.tx.toFixed(1)} out per second`;
}

function renderPools(doc) {
  const pools = doc.pools || [];
  if (!pools.length) { $("pools").innerHTML = '<p class="muted">no pools yet</p>'; return; }
  let html = "";
  for (const p of pools) {
    html += `<div class="pool-title" data-pool="${esc(p.handle)}">${esc(p.handle)} <span class="muted">${esc(p.policy)}, ${p.pes.length} PE(s)</span></div>`;
    html += '<table class="pool"><thead><tr><th>PE</th><th>policy</th><th>load</th><th>home registrar</th><th>age</th><th>user transport</th><th>reports</th></tr></thead><tbody>';
    for (const pe of p.pes) {
      const load = pe.load_percent == null ? '<span class="muted">-</span>'
        : `<span class="bar"><i style="width:${Math.min(100, pe.load_percent)}%"></i></span> ${pe.load_percent}%`;
      html += `<tr class="pe" data-pe="${esc(pe.id)}"><td class="id">${esc(pe.id)}</td><td>${esc(pe.policy)}</td><td>${load}</td>` +
        `<td class="mono">${esc(pe.home)}</td><td>${age(pe.age_ms)}</td><td class="mono">${esc(pe.user_transport)}${pe.control_channel ? "+ctrl" : ""}</td>` +
        `<td>${pe.unreachable_reports}</td></tr>`;
    }
    html += "</tbody></table>";
  }
  $("pools").innerHTML = html;
}

function renderPeers(enrp) {
  const peers = (enrp && enrp.peers) || [];
  if (!peers.length) { $("peers").innerHTML = '<p class="muted">no peers</p>'; return; }
  let html = "<table><thead><tr><th>peer</th><th>endpoint</th><th>state</th><th>heard</th><th>PEs</th></tr></thead><tbody>";
  for (const p of peers) {
    html += `<tr class="peer"><td class="id">${esc(p.server_id)}${p.mentor ? " (mentor)" : ""}</td><td class="mono">${esc(p.endpoint || "-")}</td>` +
      `<td>${esc(p.state)}</td><td>${p.last_heard_ms == null ? "never" : age(p.last_heard_ms) + " ago"}</td><td>${p.owned_pes}</td></tr>`;
  }
  $("peers").innerHTML = html + "</tbody></table>";
}

async function reload() {
  reloadTimer = null;
  if (kind && kind !== "registrar") {
    $("pools-box").style.display = "none";
    $("peers-box").style.display = "none";
    return;
  }
  try {
    const doc = await getJson("/v1/handlespace");
    renderPools(doc);
    renderPeers(doc.enrp);
    // The counts in the header follow the handlespace between two status polls.
    if (lastStatus && lastStatus.component === "registrar") {
      lastStatus.pe_count = doc.pe_count;
      lastStatus.pool_count = doc.pool_count;
      lastStatus.pes_owned = (doc.pools || []).reduce((n, p) => n + p.pes.filter((pe) => pe.home === doc.server_id).length, 0);
      lastStatus.peer_count = ((doc.enrp && doc.enrp.peers) || []).length;
      renderSummary(lastStatus);
    }
  } catch (e) { /* the next event or tick tries again */ }
}

function soon() {
  if (!reloadTimer) reloadTimer = setTimeout(reload, 300);
}

function listen() {
  if (!window.EventSource) return;
  const es = new EventSource("/v1/events");
  es.onopen = () => { $("live").className = "on"; soon(); };
  es.onerror = () => { $("live").className = "off"; };
  for (const t of ["pe-added", "pe-updated", "pe-removed", "peer-up", "peer-down", "peer-removed", "takeover-won", "sync-done", "resync-done", "resync"]) {
    es.addEventListener(t, soon);
  }
}

pollStatus().then(() => { reload(); if (kind === "registrar") listen(); });
setInterval(pollStatus, 2000);
// Ages and peers' last-heard times move without events.
setInterval(soon, 5000);
