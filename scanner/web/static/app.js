// The scanner's live view: a snapshot from /api/state, then Server-Sent Events from /api/stream.
// Every text taken from the server goes in through textContent (never innerHTML).
"use strict";

const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#f778ba", "#a371f7", "#ff7b72", "#56d4dd", "#e3b341"];
const NUMERIC = new Set(["size", "net_bps", "profit_quote", "age"]);
const view = {
  rows: new Map(),        // opportunity id -> row
  sort: { key: "net_bps", dir: -1 },
  symbol: "",
  maxRows: 500,
  historyS: 300,
  skewMs: 0,              // server clock minus this browser's
  source: null,
  chart: null,
  pending: false,
};

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function setStatus(state, text) {
  const s = document.getElementById("status");
  s.dataset.state = state;
  s.className = "status " + (state === "live" ? "live" : "down");
  s.textContent = text;
}

function ageText(row) {
  const ms = Date.now() + view.skewMs - Number(row.opened_ns || row.detected_ns || 0) / 1e6;
  if (!isFinite(ms) || ms < 0) return "0s";
  const s = Math.floor(ms / 1000);
  return s < 60 ? s + "s" : s < 3600 ? Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s"
    : Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
}

function sortValue(row, key) {
  if (key === "age") return -Number(row.opened_ns || row.detected_ns || 0);
  if (NUMERIC.has(key)) return parseFloat(row[key]);
  return String(row[key] ?? "");
}

function renderTable() {
  view.pending = false;
  const { key, dir } = view.sort;
  const rows = [...view.rows.values()].sort((a, b) => {
    const x = sortValue(a, key), y = sortValue(b, key);
    return (x < y ? -1 : x > y ? 1 : 0) * dir;
  });
  const body = document.createElement("tbody");
  for (const r of rows) {
    const tr = el("tr");
    tr.dataset.id = r.id;
    tr.append(el("td", r.symbol), el("td", r.buy_venue), el("td", r.sell_venue), el("td", r.size, "num"),
      el("td", r.net_bps, "num"), el("td", r.profit_quote, "num"), el("td", ageText(r), "num age"),
      el("td", r.transfer_status, String(r.transfer_status || "unknown").replace(/[^a-z]/g, "")));
    body.append(tr);
  }
  document.querySelector("#opps tbody").replaceWith(body);
  document.getElementById("empty").hidden = rows.length > 0;
  document.getElementById("count").textContent = "(" + rows.length + ")";
  for (const th of document.querySelectorAll("#opps th[data-key]")) {
    th.classList.toggle("sorted-asc", th.dataset.key === key && dir > 0);
    th.classList.toggle("sorted-desc", th.dataset.key === key && dir < 0);
  }
}

function scheduleTable() {
  if (!view.pending) { view.pending = true; requestAnimationFrame(renderTable); }
}

function applyOpportunity(row) {
  view.rows.delete(row.id);
  if (row.event !== "close") {
    view.rows.set(row.id, row);
    while (view.rows.size > view.maxRows) view.rows.delete(view.rows.keys().next().value);
  }
  scheduleTable();
}

function renderHealth(h) {
  const body = document.createElement("tbody");
  const na = (v) => (v === null || v === undefined ? "n/a" : v);
  for (const v of h.venues || []) {
    const tr = el("tr");
    tr.append(el("td", v.venue), el("td", v.status, v.status), el("td", na(v.connected), "num"),
      el("td", v.valid + "/" + v.books, "num"), el("td", na(v.book_age_s), "num"), el("td", na(v.msgs_per_s), "num"),
      el("td", na(v.resyncs), "num"));
    body.append(tr);
  }
  document.querySelector("#health tbody").replaceWith(body);
  const ref = document.createElement("tbody");
  for (const r of h.refusals || []) {
    const venues = Object.entries(r.venues || {}).map(([k, n]) => k + " " + n).join(", ");
    const tr = el("tr");
    tr.append(el("td", r.reason), el("td", r.count, "num"), el("td", venues, "muted"));
    ref.append(tr);
  }
  document.querySelector("#refusals tbody").replaceWith(ref);
  document.getElementById("mode").textContent = h.mode === "detect" ? "detect only: feed health from Redis books" : "";
  if (view.source && view.source.readyState === EventSource.OPEN) {
    if (h.redis) setStatus("live", "live");
    else setStatus("redis", "disconnected: Redis unavailable");
  }
}

function drawChart(data) {
  view.chart = data;
  const canvas = document.getElementById("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const pad = { l: 52, r: 10, t: 10, b: 22 };
  const t = data.t || [];
  const series = (data.series || []).filter((s) => s.values.some((v) => v !== null));
  let lo = Infinity, hi = -Infinity;
  for (const s of series) for (const v of s.values) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#7b8494";
  if (!series.length || t.length < 2) {
    g.fillText("no spread samples yet for " + data.symbol, pad.l, h / 2);
    canvas.dataset.drawn = "0";
    return;
  }
  lo = Math.min(lo, 0); hi = Math.max(hi, 0);
  if (hi - lo < 1) { hi += 0.5; lo -= 0.5; }
  const now = t[t.length - 1], t0 = Math.max(now - view.historyS * 1000, t[0]);  // a short history fills the width
  const x = (ts) => pad.l + ((ts - t0) / (now - t0)) * (w - pad.l - pad.r);
  const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (h - pad.t - pad.b);
  g.strokeStyle = "#252c38"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    g.beginPath(); g.moveTo(pad.l, y(v)); g.lineTo(w - pad.r, y(v)); g.stroke();
    g.fillText(v.toFixed(1), 4, y(v) + 4);
  }
  g.strokeStyle = "#7b8494"; g.beginPath(); g.moveTo(pad.l, y(0)); g.lineTo(w - pad.r, y(0)); g.stroke();
  const span = (now - t0) / 1000;
  for (let i = 0; i <= 5; i++) {
    const ago = (span * i) / 5;
    const label = i === 0 ? "now" : span < 120 ? "-" + ago.toFixed(span < 10 ? 1 : 0) + "s" : "-" + (ago / 60).toFixed(1) + "m";
    g.fillText(label, Math.min(x(now - ago * 1000) - 10, w - pad.r - 22), h - 6);
  }
  let lines = 0;
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    g.strokeStyle = color; g.lineWidth = 1.5; g.beginPath();
    let pen = false, points = 0;
    s.values.forEach((v, j) => {
      if (v === null || t[j] < t0) { pen = false; return; }
      if (pen) g.lineTo(x(t[j]), y(v)); else g.moveTo(x(t[j]), y(v));
      pen = true; points++;
    });
    g.stroke();
    if (points > 1) lines++;
    const li = el("li", s.buy + " → " + s.sell);
    li.style.setProperty("--swatch", color);
    legend.append(li);
  });
  canvas.dataset.drawn = lines > 0 ? "1" : "0";
  canvas.dataset.lines = String(lines);
}

function fillSymbols(symbols) {
  const sel = document.getElementById("symbol");
  const keep = view.symbol;
  sel.replaceChildren(...symbols.map((s) => { const o = el("option", s); o.value = s; return o; }));
  sel.value = keep;
}

async function load() {
  const q = view.symbol ? "?symbol=" + encodeURIComponent(view.symbol) : "";
  const res = await fetch("/api/state" + q, { cache: "no-store" });
  if (!res.ok) throw new Error("state: HTTP " + res.status);
  const s = await res.json();
  view.skewMs = s.now_ms - Date.now();
  view.maxRows = s.max_rows;
  view.historyS = s.history_s;
  view.symbol = s.spreads.symbol;
  document.getElementById("window").textContent = Math.round(s.history_s / 60) + " min";
  fillSymbols(s.symbols);
  view.rows.clear();
  for (const r of [...s.opportunities].reverse()) applyOpportunity(r);
  renderHealth({ venues: s.health, refusals: s.refusals, redis: s.redis, mode: s.mode });
  drawChart(s.spreads);
  return s.last_id;
}

function connect(after) {
  if (view.source) view.source.close();
  const src = new EventSource("/api/stream?symbol=" + encodeURIComponent(view.symbol) +
    "&after=" + encodeURIComponent(after));
  view.source = src;
  src.onopen = () => setStatus("live", "live");
  src.onerror = () => {
    setStatus("disconnected", "disconnected: reconnecting…");
    if (src.readyState === EventSource.CLOSED) setTimeout(start, 3000);  // e.g. 503: start over
  };
  src.addEventListener("opportunity", (e) => applyOpportunity(JSON.parse(e.data)));
  src.addEventListener("health", (e) => renderHealth(JSON.parse(e.data)));
  src.addEventListener("spreads", (e) => drawChart(JSON.parse(e.data)));
}

async function start() {
  try {
    connect(await load());
  } catch (err) {
    setStatus("disconnected", "disconnected: " + err.message);
    setTimeout(start, 3000);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const th of document.querySelectorAll("#opps th[data-key]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      view.sort = { key, dir: view.sort.key === key ? -view.sort.dir : NUMERIC.has(key) ? -1 : 1 };
      renderTable();
    });
  }
  document.getElementById("symbol").addEventListener("change", (e) => { view.symbol = e.target.value; start(); });
  window.addEventListener("resize", () => view.chart && drawChart(view.chart));
  setInterval(() => {
    for (const td of document.querySelectorAll("#opps td.age")) {
      const row = view.rows.get(td.parentElement.dataset.id);
      if (row) td.textContent = ageText(row);
    }
  }, 1000);
  start();
});
