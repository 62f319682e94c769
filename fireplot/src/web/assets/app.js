// fireplot console. The server draws the plot (the same renderer as
// `fireplot plot`, binned per pixel) and answers what is under a pixel; this
// script adds hover, pinning, zoom, the day links, the alerts panel, the
// rate strip under the plot (drawn here from bins the server counts) and the
// live dots. No data is ever sent as raw rows for a range.
"use strict";

const $ = (id) => document.getElementById(id);
const page = new URL(location.href);
const token = page.searchParams.get("token");
const VIEW_KEYS = ["from", "to", "last", "day", "since", "proto", "family", "src", "ports", "country", "asn", "tag", "color", "iface", "theme", "utc"];

// What this page shows: the view parameters, from the path and the query.
const view = new URLSearchParams();
for (const k of VIEW_KEYS) {
  const v = page.searchParams.get(k);
  if (v) view.set(k, v);
}
let mode = "live";
let sourceIp = null;
const dayMatch = page.pathname.match(/^\/day\/(\d{4}-\d{2}-\d{2})$/);
const srcMatch = page.pathname.match(/^\/source\/([0-9A-Fa-f:.]+)$/);
if (dayMatch) {
  mode = "day";
  view.set("day", dayMatch[1]);
} else if (srcMatch) {
  mode = "source";
  sourceIp = decodeURIComponent(srcMatch[1]);
  view.set("src", sourceIp);
} else if (view.has("from") || view.has("to")) {
  mode = "range";
}
if (mode === "live" && !view.has("last") && !view.has("since")) view.set("last", "24h");

/// A URL on this server with the view, extra parameters and the token.
function url(path, extra) {
  const q = new URLSearchParams(view);
  for (const [k, v] of Object.entries(extra || {})) {
    if (v === null || v === undefined || v === "") q.delete(k); else q.set(k, v);
  }
  if (token) q.set("token", token);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/// A page link keeping the token (and nothing else unless asked).
function pageUrl(path, params) {
  const q = new URLSearchParams(params || {});
  if (token) q.set("token", token);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

async function getJson(u) {
  const r = await fetch(u, { cache: "no-store" });
  if (!r.ok) throw new Error(`${r.status}: ${(await r.text()).trim()}`);
  return r.json();
}

function showError(e) {
  const box = $("error");
  box.hidden = !e;
  box.textContent = e ? String(e.message || e) : "";
}

const fmtTime = (ms) => {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
};
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const num = (n) => Number(n || 0).toLocaleString("en");

let geo = null; // the view's geometry (/api/view)
let alertsInView = [];
let size = { w: 1600, h: 800 };

function plotSize() {
  const avail = Math.max(640, Math.min(2400, $("plotbox").clientWidth || 1200));
  return { w: Math.round(avail), h: Math.round(Math.min(1000, Math.max(420, avail * 0.5))) };
}

// Pixel geometry, exactly as the server's Layout.
function xOf(ms) {
  const f = (ms - geo.from_ms) / (geo.to_ms - geo.from_ms);
  return geo.left + Math.floor(f * (geo.right - geo.left));
}
function msOf(x) {
  const f = (x - geo.left) / (geo.right - geo.left);
  return Math.round(geo.from_ms + Math.min(1, Math.max(0, f)) * (geo.to_ms - geo.from_ms));
}
function yOfPort(port) {
  if (port < 0) {
    const lane = { "-1": 0, "-2": 1, "-3": 2 }[port];
    return geo.lane_top + lane * geo.lane_row + Math.floor(geo.lane_row / 2);
  }
  const h = geo.ports_bottom - geo.top - 1;
  return geo.ports_bottom - 1 - Math.round((Math.log(Math.max(1, port)) / Math.log(65535)) * h);
}

/// Image pixel of a pointer event (the image may be scaled by CSS).
function pixel(ev) {
  const img = $("plot");
  const r = img.getBoundingClientRect();
  return {
    x: Math.round(((ev.clientX - r.left) * img.naturalWidth) / r.width),
    y: Math.round(((ev.clientY - r.top) * img.naturalHeight) / r.height),
    cx: ev.clientX - r.left,
    cy: ev.clientY - r.top,
  };
}

async function load() {
  showError(null);
  size = plotSize();
  if (mode === "source" && !view.has("from") && !view.has("last") && !view.has("day")) {
    // All of its history: the stored span (at most the last 400 days).
    try {
      const all = await getJson(url("/api/view"));
      if (all.span_ms) {
        const end = all.span_ms[1] + 1000;
        view.set("from", String(Math.max(all.span_ms[0], end - 400 * 86400000)));
        view.set("to", String(end));
      }
    } catch (e) {
      showError(e);
      return;
    }
  }
  try {
    geo = await getJson(url("/api/view", { w: size.w, h: size.h }));
  } catch (e) {
    showError(e);
    return;
  }
  if (geo.file_view && mode === "live" && geo.span_ms) {
    // A file is not live: its front page is the whole file.
    mode = "range";
    view.delete("last");
    view.delete("since");
    view.set("from", String(geo.span_ms[0]));
    view.set("to", String(geo.span_ms[1] + 1000));
    return load();
  }
  document.body.className = view.get("theme") === "light" ? "light" : "dark";
  $("title").textContent = mode === "source" ? `source ${sourceIp}` : geo.label;
  $("range").textContent = `${fmtTime(geo.from_ms)} – ${fmtTime(geo.to_ms)} (${geo.zone})`;
  setupNav();
  fillFilters();
  const img = $("plot");
  const started = performance.now();
  const plotUrl = url("/plot.png", { w: size.w, h: size.h });
  try {
    const r = await fetch(plotUrl, { cache: "no-store" });
    if (!r.ok) throw new Error(`${r.status}: ${(await r.text()).trim()}`);
    $("count").textContent = `${num(r.headers.get("x-fireplot-events"))} events`;
    const blob = await r.blob();
    const old = img.src;
    img.src = URL.createObjectURL(blob);
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    await img.decode().catch(() => {});
    img.dataset.ms = String(Math.round(performance.now() - started));
    document.body.dataset.loaded = "1";
  } catch (e) {
    showError(e);
  }
  const ov = $("overlay");
  ov.width = img.naturalWidth || size.w;
  ov.height = img.naturalHeight || size.h;
  ov.style.width = img.clientWidth + "px";
  ov.style.height = img.clientHeight + "px";
  clearOverlay();
  $("png").href = url("/plot.png", { w: size.w, h: size.h, download: 1 });
  $("svg").href = url("/plot.svg", { w: size.w, h: size.h, download: 1 });
  loadAlerts();
  loadRates();
  loadTop();
  loadStats();
  if (mode === "source") loadSource();
  if (geo.live) startLive(); else stopLive();
  if (geo.file_view) {
    $("status").textContent = "file view (not live)";
    $("status").className = "file";
  }
}

function setupNav() {
  const nav = (id, href) => {
    const a = $(id);
    a.classList.toggle("off", !href);
    if (href) a.href = href;
  };
  const extra = {};
  for (const k of ["proto", "family", "src", "ports", "country", "asn", "tag", "color", "iface", "theme", "utc"]) if (view.get(k) && !(mode === "source" && k === "src")) extra[k] = view.get(k);
  const day = geo.day;
  nav("prev", day && day.prev ? pageUrl(`/day/${day.prev}`, extra) : null);
  nav("next", day && day.next ? pageUrl(`/day/${day.next}`, extra) : null);
  nav("today", pageUrl(`/day/${geo.today}`, extra));
  // A file's view has no "now": its whole span instead of live.
  nav("live", geo.file_view ? null : pageUrl("/", extra));
  nav("midnight", geo.file_view ? null : pageUrl("/", Object.assign({ since: "midnight" }, extra)));
}

let filtersFilled = false;
function fillFilters() {
  const f = $("filters");
  if (!filtersFilled) {
    const sel = f.elements.iface;
    for (const name of geo.interfaces || []) {
      const o = document.createElement("option");
      o.textContent = name;
      sel.appendChild(o);
    }
    for (const k of ["proto", "family", "src", "ports", "country", "asn", "tag", "color", "iface", "theme"]) {
      if (f.elements[k] && view.get(k)) f.elements[k].value = view.get(k);
    }
    filtersFilled = true;
  }
}

$("filters").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = ev.target;
  const q = new URLSearchParams(page.search);
  for (const k of ["proto", "family", "src", "ports", "country", "asn", "tag", "color", "iface", "theme"]) {
    const v = f.elements[k].value.trim();
    if (v) q.set(k, v); else q.delete(k);
  }
  if (mode === "source") q.delete("src");
  location.search = q.toString();
});

// ---- overlay: live dots, zoom selection, alert band ----

let liveDots = [];
let band = null;
function clearOverlay() {
  const ov = $("overlay");
  const g = ov.getContext("2d");
  g.clearRect(0, 0, ov.width, ov.height);
  if (band) {
    g.fillStyle = "rgba(255, 255, 0, 0.18)";
    const x0 = Math.max(geo.left, xOf(band[0]));
    const x1 = Math.min(geo.right, Math.max(x0 + 2, xOf(band[1])));
    g.fillRect(x0, geo.top, x1 - x0, geo.lane_top + 3 * geo.lane_row - geo.top);
  }
  // The plot's own palette in the view's theme (from /api/view).
  const colors = geo.colors;
  const colourBy = (view.get("color") || "proto") !== "proto";
  for (const [ms, cat, port] of liveDots) {
    if (ms < geo.from_ms || ms >= geo.to_ms) continue;
    // Coloured by who the sources are, the plot's legend names the
    // colours; a live dot's source is not looked up, so it is drawn neutral.
    g.fillStyle = colourBy ? (view.get("theme") === "light" ? "#606060" : "#c8c8c8") : colors[cat] || colors[colors.length - 1];
    g.fillRect(xOf(ms), yOfPort(port), 2, 2);
  }
}

let drag = null;
let pinned = false;
const ov = $("overlay");
ov.addEventListener("mousedown", (ev) => {
  drag = { start: pixel(ev), moved: false };
});
window.addEventListener("mouseup", (ev) => {
  if (!drag) return;
  const end = pixel(ev);
  const d = drag;
  drag = null;
  if (Math.abs(end.x - d.start.x) > 4) {
    const a = msOf(Math.min(end.x, d.start.x));
    const b = msOf(Math.max(end.x, d.start.x));
    zoomTo(a, b);
  } else if (ev.target === ov) {
    // A click pins what is under the pointer (a pending hover would
    // otherwise replace it).
    clearTimeout(hoverTimer);
    pinned = true;
    hover(end, true);
  }
});
ov.addEventListener("mousemove", (ev) => {
  const p = pixel(ev);
  if (drag) {
    clearOverlay();
    const g = ov.getContext("2d");
    g.fillStyle = "rgba(100, 160, 255, 0.25)";
    g.fillRect(Math.min(p.x, drag.start.x), geo.top, Math.abs(p.x - drag.start.x), geo.ports_bottom - geo.top);
    return;
  }
  if (!pinned) scheduleHover(p);
});
ov.addEventListener("mouseleave", () => {
  if (!pinned) $("tip").hidden = true;
});

function zoomTo(a, b) {
  const q = new URLSearchParams();
  for (const k of ["proto", "family", "ports", "country", "asn", "tag", "color", "iface", "theme", "utc"]) if (view.get(k)) q.set(k, view.get(k));
  if (mode !== "source" && view.get("src")) q.set("src", view.get("src"));
  q.set("from", String(a));
  q.set("to", String(Math.max(b, a + 1000)));
  if (token) q.set("token", token);
  const path = mode === "source" ? page.pathname : "/";
  location.href = `${path}?${q.toString()}`;
}

let hoverTimer = null;
let hoverSeq = 0;
function scheduleHover(p) {
  clearTimeout(hoverTimer);
  hoverTimer = setTimeout(() => {
    if (!pinned) hover(p, false);
  }, 60);
}

// Who a source is (country, network, tags), when the store knows.
function originText(o) {
  if (!o) return "";
  const parts = [];
  if (o.country) parts.push(o.country);
  if (o.asn) parts.push(`AS${o.asn}${o.as_org ? " " + o.as_org : ""}`);
  for (const t of o.tags || []) parts.push(`[${t}]`);
  return parts.join(" ");
}

function originHtml(o) {
  const t = originText(o);
  return t ? ` <span class="origin">${esc(t)}</span>` : "";
}

async function hover(p, pin) {
  const seq = ++hoverSeq;
  const tip = $("tip");
  let res;
  try {
    res = await getJson(url("/api/at", { w: size.w, h: size.h, x: p.x, y: p.y }));
  } catch (e) {
    tip.hidden = false;
    tip.textContent = String(e.message || e);
    return;
  }
  if (seq !== hoverSeq) return;
  if (!res.groups.length) {
    tip.hidden = !pin;
    tip.classList.toggle("pinned", pin);
    tip.innerHTML = pin ? "nothing here — click elsewhere to unpin" : "";
    if (pin) pinned = false;
    place(tip, p);
    return;
  }
  const items = res.groups.map((g) => {
    // An aggregate (a flood the kernel counted) names a /24 or /48, not a host.
    const who = g.aggregate ? `${esc(g.src)} (aggregated)` : g.src ? `<a class="src" href="${esc(pageUrl(`/source/${g.src}`))}">${esc(g.src)}</a>` : "?";
    const what = g.port ? `${esc(g.proto)}/${g.port}` : esc(g.proto);
    const when = g.first_ms === g.last_ms ? fmtTime(g.first_ms) : `${fmtTime(g.first_ms)} – ${fmtTime(g.last_ms)}`;
    const alert = g.alert ? `<div class="alert">${esc(g.alert.kind)}: ${esc(g.alert.summary)}</div>` : "";
    // The fleet: which sensors saw them.
    const seen = g.sensors ? ` · <span class="sensor">seen by ${esc(g.sensors.join(", "))}</span>` : "";
    return `<li><span class="who">${who}</span>${originHtml(g.origin)} → <span class="what">${what}</span> · ${num(g.count)} probe${g.count === 1 ? "" : "s"} · ${when}${seen}${alert}</li>`;
  });
  const more = res.total > res.groups.reduce((s, g) => s + g.count, 0) ? `<div>${num(res.total)} probes under the pointer</div>` : "";
  tip.innerHTML = `<ul>${items.join("")}</ul>${more}${pin ? '<div class="hint">pinned: click the plot to unpin</div>' : ""}`;
  tip.classList.toggle("pinned", pin);
  tip.hidden = false;
  place(tip, p);
}

function place(tip, p) {
  const stage = $("stage");
  const left = Math.min(p.cx + 14, Math.max(0, stage.clientWidth - tip.offsetWidth - 4));
  tip.style.left = `${left}px`;
  tip.style.top = `${p.cy + 14}px`;
}

document.addEventListener("click", (ev) => {
  if (pinned && ev.target !== ov && !$("tip").contains(ev.target)) {
    pinned = false;
    $("tip").hidden = true;
  }
});

// ---- keyboard: ← → ----
document.addEventListener("keydown", (ev) => {
  if (ev.target.closest && ev.target.closest("input, select")) return;
  if (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight") return;
  if (geo && geo.day) {
    const to = ev.key === "ArrowLeft" ? geo.day.prev : geo.day.next;
    if (to) location.href = $(ev.key === "ArrowLeft" ? "prev" : "next").href;
    return;
  }
  if (!geo) return;
  const span = geo.to_ms - geo.from_ms;
  const shift = ev.key === "ArrowLeft" ? -span : span;
  zoomTo(geo.from_ms + shift, geo.to_ms + shift);
});

// ---- panels ----

/// An attack's facts in one line: destination, vector, peaks, sources,
/// duration.
function attackFacts(a) {
  const dst = a.destination ? `${a.destination}${a.prefix_len ? "/" + a.prefix_len : ""}` : "?";
  const vector = a.vector ? `${a.vector}${a.reflector_port ? " from port " + a.reflector_port : ""}` : a.proto || "";
  const peak = a.peak_pps ? `peak ${rate(a.peak_pps, false)}` : "";
  const bps = a.peak_bps ? rate(a.peak_bps, true) : "";
  const secs = Math.max(0, Math.round((a.last_ms - a.first_ms) / 1000));
  const parts = [`→ ${dst}`, vector, peak, bps, `${num(a.source_count)} sources`, `${num(secs)} s`].filter((x) => x);
  return `<span class="facts">${esc(parts.join(" · "))}</span>`;
}

async function loadAlerts() {
  const ol = $("alerts");
  try {
    alertsInView = await getJson(url("/api/alerts"));
  } catch (e) {
    ol.innerHTML = `<li>${esc(e.message)}</li>`;
    return;
  }
  ol.innerHTML = "";
  if (!alertsInView.length) ol.innerHTML = "<li>none</li>";
  for (const a of alertsInView) {
    const li = document.createElement("li");
    li.dataset.id = a.id;
    // A per-source alert says who its source is (when the detector knew).
    const who = a.origins && a.origins.length === 1 && a.source_count === 1 ? originHtml(a.origins[0]) : "";
    const sensor = a.sensor ? ` <span class="sensor">[${esc(a.sensor)}]</span>` : a.sensors ? ` <span class="sensor">[${esc(a.sensors.join(", "))}]</span>` : "";
    li.innerHTML = `<span class="sev s${esc(a.severity)}">${esc(a.severity)}</span><span class="kind">${esc(a.kind)}</span>${sensor} ${esc(a.summary)}${who}${a.attack ? attackFacts(a) : ""}`;
    if (a.attack) li.classList.add("attack");
    li.addEventListener("click", () => {
      const pad = Math.max(60000, (a.last_ms - a.first_ms) * 0.1);
      const q = new URLSearchParams();
      for (const k of ["proto", "family", "ports", "country", "asn", "tag", "color", "iface", "theme", "utc"]) if (view.get(k)) q.set(k, view.get(k));
      q.set("from", String(Math.floor(a.first_ms - pad)));
      q.set("to", String(Math.ceil(a.last_ms + pad)));
      if (token) q.set("token", token);
      location.href = `/?${q.toString()}#alert=${a.id}`;
    });
    ol.appendChild(li);
  }
  const m = location.hash.match(/^#alert=(\d+)$/);
  if (m) {
    const a = alertsInView.find((x) => String(x.id) === m[1]);
    if (a) {
      band = [a.first_ms, Math.max(a.last_ms, a.first_ms + 1)];
      clearOverlay();
      const li = ol.querySelector(`li[data-id="${m[1]}"]`);
      if (li) li.classList.add("on");
    }
  }
}

// ---- rate strip ----

const RATE_COLORS = ["#ff5050", "#50a0ff", "#ffd000", "#40e040", "#ff60ff", "#40e0e0", "#ff9030", "#b090ff", "#c0c0c0", "#90ff90"];
let rates = null;

/// "1.5 k", "12 M": SI prefixes for rates.
function si(v) {
  const units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [f, u] of units) if (v >= f) return `${(v / f).toFixed(v >= 10 * f ? 0 : 1)} ${u}`;
  return v >= 10 || v === 0 ? `${Math.round(v)} ` : `${v.toFixed(1)} `;
}

/// A rate with its unit: "5.2 k packets/s", "2.5 Mbit/s".
const rate = (v, bits) => (bits ? `${si(v)}bit/s` : `${si(v).trim()} packets/s`);

async function loadRates() {
  const note = $("rate-note");
  const bins = Math.max(1, Math.min(600, geo.right - geo.left));
  // A heavy query like the plot and the top sources: when the server is
  // busy with those (503), ask again a little later.
  for (let attempt = 0; ; attempt++) {
    try {
      rates = await getJson(url("/api/rates", { bins }));
      note.textContent = "";
    } catch (e) {
      if (e.message.startsWith("503") && attempt < 3) {
        await new Promise((r) => setTimeout(r, 2000));
        continue;
      }
      rates = null;
      note.textContent = e.message;
    }
    break;
  }
  drawRates();
}

function drawRates() {
  const c = $("rates");
  const img = $("plot");
  c.width = img.naturalWidth || size.w;
  c.style.width = (img.clientWidth || c.width) + "px";
  const g = c.getContext("2d");
  const dark = document.body.className !== "light";
  g.fillStyle = dark ? "#000" : "#fff";
  g.fillRect(0, 0, c.width, c.height);
  const legend = $("rate-legend");
  legend.innerHTML = "";
  c.dataset.series = "0";
  if (!rates || !geo) return;
  const bits = document.querySelector('input[name="rate-unit"]:checked').value === "bps";
  const log = $("rate-log").checked;
  const top = 8, bottom = c.height - 16;
  const series = rates.series.filter((s) => s.packets_total > 0);
  const value = (s, i) => (bits ? s.bytes[i] * 8 : s.packets[i]) / rates.bin_s;
  let max = 0;
  for (const s of series) for (let i = 0; i < rates.bins; i++) max = Math.max(max, value(s, i));
  const hi = log ? Math.log10(Math.max(10, max)) + 0.1 : Math.max(1, max) * 1.05;
  const yOf = (v) => {
    const f = log ? Math.log10(Math.max(1, v)) / hi : v / hi;
    return bottom - Math.round(f * (bottom - top));
  };
  // The plot's x axis: the same left and right edges and range.
  const xOfBin = (i) => geo.left + Math.round((i / rates.bins) * (geo.right - geo.left));
  g.strokeStyle = dark ? "#333" : "#ccc";
  g.fillStyle = dark ? "#aaa" : "#444";
  g.font = "11px sans-serif";
  g.textAlign = "right";
  const ticks = log ? Array.from({ length: Math.ceil(hi) + 1 }, (_, k) => 10 ** k).filter((v) => Math.log10(v) <= hi) : [0, hi / 4, hi / 2, (3 * hi) / 4];
  for (const v of ticks) {
    const y = yOf(v);
    g.beginPath();
    g.moveTo(geo.left, y + 0.5);
    g.lineTo(geo.right, y + 0.5);
    g.stroke();
    g.fillText(rate(v, bits), geo.left - 4, y + 4);
  }
  g.strokeRect(geo.left + 0.5, top + 0.5, geo.right - geo.left, bottom - top);
  series.forEach((s, k) => {
    const color = RATE_COLORS[k % RATE_COLORS.length];
    g.strokeStyle = color;
    g.lineWidth = 1.5;
    g.beginPath();
    for (let i = 0; i < rates.bins; i++) {
      const y = yOf(value(s, i));
      if (i === 0) g.moveTo(xOfBin(0), y); else g.lineTo(xOfBin(i), y);
      g.lineTo(xOfBin(i + 1), y);
    }
    g.stroke();
    const li = document.createElement("li");
    li.dataset.vector = s.vector;
    const peak = Math.max(...s.packets.map((_, i) => value(s, i)));
    // Colours through the CSSOM: the page's policy allows no inline style.
    li.innerHTML = `<span class="swatch"></span>${esc(s.label)} <span class="hint">peak ${esc(rate(peak, bits))}</span>`;
    li.firstChild.style.background = color;
    legend.appendChild(li);
  });
  g.lineWidth = 1;
  c.dataset.series = String(series.length);
  if (!series.length) {
    g.fillStyle = dark ? "#888" : "#666";
    g.textAlign = "center";
    g.fillText("no packets in view", (geo.left + geo.right) / 2, (top + bottom) / 2);
  }
}

for (const el of document.querySelectorAll('input[name="rate-unit"], #rate-log')) el.addEventListener("change", drawRates);

async function loadTop() {
  // Ports come from pre-binned hours (fast); sources need the events, so
  // they fill in after, without holding the ports back.
  $("sources").innerHTML = "<li>counting…</li>";
  try {
    const t = await getJson(url("/api/top", { n: 10, part: "ports" }));
    $("ports").innerHTML = t.ports.map((p) => `<li>${esc(p.proto)}/${p.port} — ${num(p.count)}</li>`).join("") || "<li>none</li>";
  } catch (e) {
    $("ports").innerHTML = `<li>${esc(e.message)}</li>`;
  }
  try {
    const t = await getJson(url("/api/top", { n: 10, part: "sources" }));
    $("sources").innerHTML = t.sources.map((s) => s.aggregate ? `<li>${esc(s.src)} (aggregated) — ${num(s.count)}</li>` : `<li><a href="${esc(pageUrl(`/source/${s.src}`))}">${esc(s.src)}</a>${originHtml(s.origin)} — ${num(s.count)}</li>`).join("") || "<li>none</li>";
  } catch (e) {
    $("sources").innerHTML = `<li>${esc(e.message)}</li>`;
  }
}

async function loadStats() {
  const dl = $("stats");
  try {
    const s = await getJson(pageUrl("/api/stats"));
    const v = s.summary;
    if (!v) {
      dl.innerHTML = "<dt>no counters stored yet</dt><dd></dd>";
      return;
    }
    const by = {};
    for (const c of v.classes || []) by[c.class] = (by[c.class] || 0) + c.packets;
    const k = v.kernel || {};
    const st = v.store || {};
    const rows = [
      ["counters", `${s.origin} ${v.ts || ""}`],
      ...Object.entries(by).map(([c, n]) => [`packets ${c}`, num(n)]),
      ["events sent", num(k.events_sent)],
      ["lost: ring full", num(k.ring_full)],
      ["lost: rate limited", num(k.suppressed)],
      ["lost: not stored", num(st.not_stored)],
      ["store queue", num(st.queued)],
    ];
    dl.innerHTML = rows.map(([a, b]) => `<dt>${esc(a)}</dt><dd>${esc(b)}</dd>`).join("");
  } catch (e) {
    dl.innerHTML = `<dt>${esc(e.message)}</dt><dd></dd>`;
  }
}

async function loadSource() {
  $("sourcebox").hidden = false;
  $("src-ip").textContent = sourceIp;
  try {
    const s = await getJson(url("/api/source", { ip: sourceIp, src: null }));
    const o = s.origin || {};
    const facts = [
      ["country", o.country || "—"],
      ["network", o.asn ? `AS${o.asn}${o.as_org ? " " + o.as_org : ""}` : "—"],
      ["tags", (o.tags || []).join(", ") || "—"],
      ["probes", num(s.probes)],
      ["first seen", s.first_ms ? fmtTime(s.first_ms) : "—"],
      ["last seen", s.last_ms ? fmtTime(s.last_ms) : "—"],
      ["distinct ports", num(s.distinct_ports)],
      ["targets", num(s.targets)],
    ];
    $("src-facts").innerHTML = facts.map(([a, b]) => `<dt>${esc(a)}</dt><dd>${esc(b)}</dd>`).join("");
    $("src-alerts").innerHTML = s.alerts.map((a) => `<li><span class="sev s${esc(a.severity)}">${esc(a.severity)}</span><span class="kind">${esc(a.kind)}</span> ${esc(a.summary)}</li>`).join("") || "<li>none</li>";
    $("src-ports").innerHTML = s.ports.map((p) => `<li>${esc(p.proto)}/${p.port} — ${num(p.count)}</li>`).join("");
  } catch (e) {
    $("src-facts").innerHTML = `<dt>${esc(e.message)}</dt><dd></dd>`;
  }
}

// ---- live ----

let es = null;
let lastReload = Date.now();
let lastPanels = 0;
function startLive() {
  if (es) return;
  es = new EventSource(url("/api/live"));
  const status = $("status");
  es.onopen = () => {
    status.textContent = "● live";
    status.className = "live";
  };
  es.onerror = () => {
    status.textContent = "● reconnecting…";
    status.className = "down";
  };
  es.addEventListener("events", (ev) => {
    let items;
    try {
      items = JSON.parse(ev.data);
    } catch (_) {
      return;
    }
    let past = false;
    for (const it of items) {
      liveDots.push(it);
      if (it[0] >= geo.to_ms) past = true;
    }
    if (liveDots.length > 200000) liveDots = liveDots.slice(-100000);
    document.body.dataset.liveEvents = String(Number(document.body.dataset.liveEvents || 0) + items.length);
    // New probes may have started or grown an episode: refresh the panels
    // (at most every 3 s).
    if (items.length && Date.now() - lastPanels > 3000) {
      lastPanels = Date.now();
      loadAlerts();
      loadStats();
    }
    // New dots beyond the right edge, or a stale image: slide the window.
    if ((past && Date.now() - lastReload > 10000) || Date.now() - lastReload > 300000) {
      lastReload = Date.now();
      slide();
    } else {
      clearOverlay();
    }
  });
}

function stopLive() {
  if (es) es.close();
  es = null;
}

async function slide() {
  const keep = liveDots;
  await load();
  liveDots = keep.filter((d) => d[0] >= geo.to_ms - 5000);
  clearOverlay();
}

window.addEventListener("resize", () => {
  const s = plotSize();
  if (Math.abs(s.w - size.w) > 80) load();
});

load();
