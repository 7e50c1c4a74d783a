// The dashboard. It polls this agent's JSON API once a second, asking each
// read only for what is new (events after the last seen, history since the
// last point), and redraws. Nothing is loaded from anywhere else (the
// agent's Content-Security-Policy forbids it). Names come from gossip, so
// every text goes in through textContent, never as HTML.
"use strict";

const POLL_MS = 1000;
// Hottest sensor as a share of its critical limit: the colour bins.
const BINS = [0.5, 0.6, 0.7, 0.8, 0.9, Infinity];
const BIN_LABELS = ["< 50 %", "50–60 %", "60–70 %", "70–80 %", "80–90 %", "≥ 90 % of critical"];
const NEAR_CRITICAL_MC = 5000;
const TOKEN_KEY = "maxwell.api-token";

const S = {
  members: [], selected: null, status: null, guests: null,
  events: [], lastEvent: 0, history: new Map(), token: sessionStorage.getItem(TOKEN_KEY),
};

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function svg(tag, attrs, ...kids) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

const celsius = (mc) => (mc === null || mc === undefined ? "–" : (mc / 1000).toFixed(1) + " °C");
const watts = (uw) => (uw === null || uw === undefined ? "–" : Math.round(uw / 1e6) + " W");
const price = (m) => (m === null || m === undefined ? "–" : (m / 1000).toFixed(3));
const gib = (mib) => (mib === null || mib === undefined ? "–" : (mib / 1024).toFixed(1) + " GiB");
const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

function headers(json) {
  const h = {};
  if (S.token) h["Authorization"] = "Bearer " + S.token;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

// A request that has not answered in this long has failed: an agent gone
// from the network must show as an error, not as a frozen page.
const TIMEOUT_MS = 5000;

async function get(path) {
  const r = await fetch(path, { cache: "no-store", headers: headers(false), signal: AbortSignal.timeout(TIMEOUT_MS) });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401 && S.token) forgetToken("the agent refused the token: " + (body.error || r.status));
  if (!r.ok) throw new Error(`${path}: ${body.error || r.status}`);
  return body;
}

async function act(path, method, body) {
  const r = await fetch(path, { method, headers: headers(true), body: JSON.stringify(body || {}), signal: AbortSignal.timeout(TIMEOUT_MS) });
  const answer = await r.json().catch(() => ({}));
  if (r.status === 401) forgetToken("the agent refused the token: " + (answer.error || r.status));
  if (!r.ok) throw new Error(answer.error || String(r.status));
  return answer;
}

function heatBin(m) {
  if (m.hottest_millicelsius == null || !m.critical_millicelsius) return null;
  const f = m.hottest_millicelsius / m.critical_millicelsius;
  return BINS.findIndex((b) => f < b);
}

// alive, stale, dead or left: what an operator may rely on.
function statusOf(m) {
  if (m.status === "dead" || m.status === "left") return m.status;
  return m.fresh ? "alive" : "stale";
}

function nearCritical(m) {
  return m.hottest_millicelsius != null && m.critical_millicelsius != null &&
    m.hottest_millicelsius >= m.critical_millicelsius - NEAR_CRITICAL_MC;
}

function renderLegend() {
  const legend = document.getElementById("legend");
  legend.replaceChildren(
    ...BIN_LABELS.map((l, i) => el("span", { class: "heat-" + i }, l)),
    el("span", { class: "legend-stale" }, "stale report"),
    el("span", { class: "legend-dead" }, "dead / left"),
  );
}

function renderSummary() {
  const self = S.members.find((m) => m.is_self);
  const count = (s) => S.members.filter((m) => statusOf(m) === s).length;
  const hottest = S.members.filter((m) => statusOf(m) === "alive")
    .reduce((a, m) => (a && a.hottest_millicelsius >= m.hottest_millicelsius ? a : m), null);
  document.getElementById("summary").replaceChildren(
    "served by ", el("b", {}, self ? self.name : "?"), ` · ${S.members.length} hosts: `,
    el("b", {}, count("alive")), " alive, ", el("b", {}, count("stale")), " stale, ",
    el("b", {}, count("dead")), " dead, ", el("b", {}, count("left")), " left",
    hottest ? ` · hottest ${hottest.name} ${celsius(hottest.hottest_millicelsius)}` : "",
    ` · updated ${clock(Date.now())}`,
  );
}

// Cells and buttons are kept across redraws (keyed by host and guest), so
// that a click never lands on an element a redraw has just replaced.
const cells = new Map();
const buttons = new Map();

function hostCell(m) {
  const st = statusOf(m);
  const bin = heatBin(m);
  const classes = ["host", "st-" + st];
  if (bin !== null && st !== "dead" && st !== "left") classes.push("heat-" + bin);
  if (m.is_self) classes.push("self");
  if (m.id === S.selected) classes.push("selected");
  const free = m.free_vcpus == null ? "–" : `${m.free_vcpus} vCPU ${gib(m.free_memory_mib)}`;
  let e = cells.get(m.id);
  if (!e) {
    e = el("div", { tabindex: 0, onclick: () => select(m.id) });
    cells.set(m.id, e);
  }
  e.className = classes.join(" ");
  const data = { id: m.id, name: m.name, rack: m.rack, slot: m.slot, status: st,
    tempMc: m.hottest_millicelsius ?? "", heat: bin ?? "", self: m.is_self ? "true" : "false" };
  Object.assign(e.dataset, data);
  e.title = `${m.name} (${m.id}) · report ${(m.age_ms / 1000).toFixed(1)} s old`;
  e.replaceChildren(
    el("span", { class: "status" }, nearCritical(m) && st === "alive" ? "near critical" : st),
    el("div", { class: "name" }, m.name),
    el("div", { class: "temp" }, celsius(m.hottest_millicelsius)),
    el("div", { class: "facts" }, `price ${price(m.price_milli)} · headroom ${watts(m.headroom_microwatts)}`),
    el("div", { class: "facts" }, `guests ${m.guests ?? "–"} · free ${free}`));
  return e;
}

function renderGrid() {
  // A peer without a verified report has no place yet (rack "-").
  const hosts = S.members.filter((m) => m.rack !== "-" || m.name !== "-");
  const racks = [...new Set(hosts.map((m) => m.rack))].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const slots = [...new Set(hosts.map((m) => m.slot))].sort((a, b) => a - b);
  const grid = document.getElementById("rack-grid");
  const head = el("tr", {}, el("th", { class: "slot" }), ...racks.map((r) => el("th", { scope: "col" }, "rack " + r)));
  const rows = slots.map((slot) => el("tr", {},
    el("th", { class: "slot", scope: "row" }, "slot " + slot),
    ...racks.map((rack) => {
      const here = hosts.filter((m) => m.rack === rack && m.slot === slot);
      return el("td", { "data-rack": rack, "data-slot": slot, class: here.length ? null : "empty" }, here.map(hostCell));
    })));
  grid.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
}

function renderEvents() {
  const list = document.getElementById("events");
  const recent = S.events.slice(-60).reverse();
  list.replaceChildren(...recent.map((e) => eventItem(e, `${e.name} ${e.kind}`)));
}

// One event as a list item, its text led by `what`.
function eventItem(e, what) {
  return el("li", { class: "kind-" + e.kind },
    el("span", { class: "t" }, clock(e.t_ms)), what, e.detail ? `: ${e.detail}` : "");
}

function chart(points, pick, cls, label, fmt, limit) {
  const W = 400, H = 90, pad = 4;
  const vals = points.map(pick).filter((v) => v !== null);
  const box = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", "data-points": vals.length });
  if (vals.length < 2) {
    box.append(svg("text", { x: 8, y: 16 }, `${label}: collecting…`));
    return box;
  }
  const top = Math.max(...vals);
  let lo = Math.min(...vals), hi = Math.max(top, limit ?? -Infinity);
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const x = (t) => pad + ((t - t0) / Math.max(1, t1 - t0)) * (W - 2 * pad);
  const y = (v) => H - pad - ((v - lo) / (hi - lo)) * (H - 2 * pad);
  let d = "", pen = false;
  for (const p of points) {
    const v = pick(p);
    if (v === null) { pen = false; continue; }
    d += `${pen ? "L" : "M"}${x(p[0]).toFixed(1)},${y(v).toFixed(1)} `;
    pen = true;
  }
  box.append(svg("path", { class: "line " + cls, d }));
  if (limit != null) box.append(svg("path", { class: "crit", d: `M${pad},${y(limit)} L${W - pad},${y(limit)}` }));
  box.append(svg("text", { x: 6, y: 12 }, `${label} ${fmt(top)} max`));
  box.append(svg("text", { x: 6, y: H - 6 }, `${fmt(lo)} · last ${Math.round((t1 - t0) / 1000)} s`));
  return box;
}

function kv(rows) {
  return el("table", {}, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { class: "num" }, v))));
}

function guestTable(list) {
  const armed = Boolean(S.token);
  const rows = list.guests.map((g) => {
    const a = g.market || {};
    const button = (label, run) => {
      const key = `${g.id}/${label}`;
      let b = buttons.get(key);
      if (!b) {
        b = el("button", { "data-action": label, "data-guest": g.id,
          onclick: () => run().then(refresh).catch((e) => showError(`${label} ${g.name}: ${e.message}`)) }, label);
        buttons.set(key, b);
      }
      b.disabled = !armed;
      b.title = armed ? "" : "needs the API token";
      return b;
    };
    const fund = () => {
      const credits = Number(prompt(`Credits to add to ${g.name}'s wallet:`, "100"));
      if (!(credits > 0)) return Promise.resolve();
      return act(`/v1/guests/${g.id}/fund`, "POST", { amount_milli: Math.round(credits * 1000) });
    };
    // The backend's state is the truth for an operator's pause; the
    // market's says why a running guest is capped or paused.
    const shown = g.state === "running" ? (a.state || g.state) : g.state;
    return [el("tr", { "data-guest": g.id, "data-state": shown },
      el("td", {}, g.name), el("td", {}, a.class || "–"), el("td", {}, shown),
      el("td", { class: "num" }, a.share_mcores != null ? (a.share_mcores / 1000).toFixed(2) : "–"),
      el("td", { class: "num" }, a.bid_milli != null ? price(a.bid_milli) : "–"),
      el("td", { class: "num" }, a.wallet_milli != null ? price(a.wallet_milli) : "–"),
      el("td", { class: "num" }, a.joules != null ? Math.round(a.joules) : "–")),
    el("tr", { class: "actions" }, el("td", { colspan: 7 },
      button("pause", () => act(`/v1/guests/${g.id}/pause`, "POST")),
      button("resume", () => act(`/v1/guests/${g.id}/resume`, "POST")),
      button("kill", () => (confirm(`Kill ${g.name}?`) ? act(`/v1/guests/${g.id}/kill`, "POST") : Promise.resolve())),
      button("fund", fund)))];
  });
  return el("table", { id: "guests" },
    el("tr", {}, ["guest", "class", "state", "share", "bid", "wallet", "J"].map((h) => el("th", {}, h))), rows.flat());
}

const loopback = (ip) => ip === "localhost" || ip.startsWith("127.") || ip === "[::1]";
const splitAddr = (a) => { const i = a.lastIndexOf(":"); return [a.slice(0, i), a.slice(i + 1)]; };

// Another host's own page, where this browser can reach it: its API as it
// told it, on its gossip address when it listens on every interface. A
// loopback API is reachable only when that host is this one's machine too.
function pageOf(m) {
  if (!m.api || m.addr === "-") return null;
  let [ip, port] = splitAddr(m.api);
  const [gossipIp] = splitAddr(m.addr);
  if (ip === "0.0.0.0" || ip === "[::]") ip = gossipIp;
  if (loopback(ip) && !(loopback(gossipIp) && loopback(location.hostname))) return null;
  return `http://${ip}:${port}/ui`;
}

function renderDetail() {
  const box = document.getElementById("detail");
  const m = S.members.find((x) => x.id === S.selected);
  if (!m) { box.replaceChildren(el("p", { class: "hint" }, "Select a host.")); return; }
  const points = S.history.get(m.id) || [];
  const parts = [
    el("h2", {}, m.name + (m.is_self ? " (this agent)" : "")),
    kv([["id", m.id], ["rack / slot", `${m.rack} / ${m.slot}`], ["status", statusOf(m)],
      ["gossip address", m.addr], ["report age", (m.age_ms / 1000).toFixed(1) + " s"], ["sensors", m.sensor_source || "–"]]),
    el("h3", {}, "Heat and power (signed report)"),
    kv([["hottest", celsius(m.hottest_millicelsius)], ["critical", celsius(m.critical_millicelsius)],
      ["draw", watts(m.power_draw_microwatts)], ["cap", watts(m.power_cap_microwatts)],
      ["headroom", watts(m.headroom_microwatts)], ["price", price(m.price_milli)],
      ["guests", m.guests ?? "–"], ["free", m.free_vcpus == null ? "–" : `${m.free_vcpus} vCPU, ${gib(m.free_memory_mib)}`]]),
    el("h3", {}, "History"),
    chart(points, (p) => p[1], "temp", "temperature", celsius, m.critical_millicelsius),
    chart(points, (p) => p[2], "price", "price", price, null),
  ];
  if (m.is_self) {
    parts.push(el("h3", {}, "Guests"));
    if (S.guests?.guests) parts.push(S.guests.guests.length ? guestTable(S.guests) : el("p", { class: "hint" }, "No guests."));
    else parts.push(el("p", { class: "hint" }, `No guest list: ${S.guests?.error ?? "not read yet"}`));
  } else {
    const url = pageOf(m);
    parts.push(el("h3", {}, "Guests and price terms"), el("p", { class: "hint" },
      `${m.guests ?? "?"} guests, as gossiped. Their shares, wallets and joules, and the terms of its price, are its own agent's to show: `,
      url ? el("a", { href: url, "data-page": m.id }, `open ${m.name}'s dashboard`)
        : "its API listens on loopback only, so its page opens on that host alone."));
  }
  if (m.is_self && S.status) {
    const st = S.status;
    parts.push(el("h3", {}, "Sensors"),
      kv((st.hwmon?.temperatures || []).map((t) => [`${t.chip} ${t.label || t.sensor}`, celsius(t.input_millicelsius)])
        .concat([["CPU load", Math.round((st.cpu?.utilisation || 0) * 100) + " %"]])));
    if (st.price) {
      parts.push(el("h3", {}, "Price terms"),
        kv(Object.entries(st.price.terms).map(([k, v]) => [k.replace(/_/g, " "), price(v)])
          .concat([["target", price(st.price.target_milli)], ["held in band", st.price.held ? "yes" : "no"]])));
    }
  }
  const mine = S.events.filter((e) => e.node === m.id).slice(-20).reverse();
  parts.push(el("h3", {}, "Events"), mine.length
    ? el("ol", { class: "events", reversed: true }, mine.map((e) => eventItem(e, e.kind)))
    : el("p", { class: "hint" }, "None seen by this agent."));
  box.replaceChildren(...parts);
}

function renderToken() {
  const armed = Boolean(S.token);
  const state = document.getElementById("token-state");
  state.className = armed ? "armed" : "readonly";
  state.textContent = armed ? "actions enabled (token held in this tab)" : "read-only: paste the API token to pause, resume, kill or fund";
  document.getElementById("token").hidden = armed;
  document.querySelector("#token-form button[type=submit]").hidden = armed;
  document.getElementById("token-clear").hidden = !armed;
}

function forgetToken(why) {
  S.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  renderToken();
  if (why) showError(why);
}

function showError(text) {
  const f = document.getElementById("error");
  f.textContent = text;
  f.hidden = !text;
}

function select(id) {
  S.selected = id;
  render();
  refresh();
}

function render() {
  for (const id of cells.keys()) if (!S.members.some((m) => m.id === id)) cells.delete(id);
  const guests = new Set((S.guests?.guests || []).map((g) => String(g.id)));
  for (const key of buttons.keys()) if (!guests.has(key.split("/")[0])) buttons.delete(key);
  renderSummary();
  renderGrid();
  renderEvents();
  renderDetail();
}

// One refresh at a time; one asked for meanwhile (after an action) runs next.
let inFlight = false;
let again = false;
async function refresh() {
  if (inFlight) { again = true; return; }
  inFlight = true;
  try {
    const members = await get("/v1/members");
    S.members = members.members;
    if (!S.selected) S.selected = (S.members.find((m) => m.is_self) || {}).id || null;
    let ev = await get("/v1/events?after=" + S.lastEvent);
    if (S.boot !== undefined && ev.boot_ms !== S.boot) {
      // The agent restarted: its numbering began again.
      S.events = [];
      S.lastEvent = 0;
      ev = await get("/v1/events?after=0");
    }
    S.boot = ev.boot_ms;
    for (const e of ev.events) { S.events.push(e); S.lastEvent = e.seq; }
    S.events = S.events.slice(-256);
    const id = S.selected; // a click during the await must not file these points under another host
    if (id) {
      const have = S.history.get(id) || [];
      const since = have.length ? have[have.length - 1][0] : 0;
      const h = await get(`/v1/history/${id}?since_ms=${since}`);
      const all = have.concat(h.points);
      // The agent's clock, not the browser's, bounds the span.
      const keepAfter = all.length ? all[all.length - 1][0] - h.span_s * 1000 : 0;
      S.history.set(id, all.filter((p) => p[0] >= keepAfter));
    }
    const self = S.members.find((m) => m.is_self);
    if (self && S.selected === self.id) {
      S.status = await get("/v1/status");
      S.guests = await get("/v1/guests").catch((e) => ({ error: e.message }));
    }
    showError("");
    render();
  } catch (e) {
    showError(`this agent does not answer as it should: ${e.message}`);
  } finally {
    inFlight = false;
    if (again) { again = false; refresh(); }
  }
}

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = document.getElementById("token").value.trim();
  if (!t) return;
  S.token = t;
  sessionStorage.setItem(TOKEN_KEY, t);
  document.getElementById("token").value = "";
  renderToken();
  refresh();
});
document.getElementById("token-clear").addEventListener("click", () => forgetToken(null));
renderLegend();
renderToken();
refresh();
setInterval(refresh, POLL_MS);
