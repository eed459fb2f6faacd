// The Couchpay developer console: plain JavaScript, no build step, no dependencies.
// Reads GET /v1/admin/console with the admin token (kept in this tab's sessionStorage)
// and follows GET /v1/admin/events, refreshing when something was committed. Every value
// is written with textContent, never parsed as HTML.
"use strict";

const KEY = "couchpay-admin-token";
let token = sessionStorage.getItem(KEY);
let seen = new Set();
let firstLoad = true;
let refreshTimer = null;
let stream = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function when(ms) {
  if (ms === null || ms === undefined) return "";
  const d = new Date(ms);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  const time = d.toLocaleTimeString(undefined, { hour12: false });
  return sameDay ? time : d.toLocaleDateString() + " " + time;
}

function live(on, text) {
  $("live").classList.toggle("on", on);
  $("live").querySelector("span").textContent = text;
}

async function api(path, init) {
  const resp = await fetch(path, {
    ...(init || {}),
    headers: { Authorization: "Bearer " + token, ...((init && init.headers) || {}) },
  });
  if (resp.status === 401) throw new Error("unauthorized");
  if (!resp.ok) throw new Error("HTTP " + resp.status);
  return resp.json();
}

function render(snap) {
  $("now").textContent = "Server time " + when(snap.now_ms);
  $("clock").classList.toggle("test", snap.test_clock);
  const nav = $("nav");
  const main = $("sections");
  nav.replaceChildren();
  main.replaceChildren();
  for (const s of snap.sections) {
    const link = el("a", { href: "#" + s.id }, s.title);
    link.appendChild(el("span", {}, String(s.rows.length)));
    nav.appendChild(link);
    const sec = el("section", { id: s.id });
    sec.appendChild(el("h2", {}, s.title));
    if (s.rows.length === 0) {
      sec.appendChild(el("div", { class: "empty" }, "Nothing yet."));
      main.appendChild(sec);
      continue;
    }
    const table = el("table");
    const head = el("tr");
    for (const c of s.columns) head.appendChild(el("th", { scope: "col" }, c.name));
    table.appendChild(el("thead")).appendChild(head);
    const body = el("tbody");
    for (const row of s.rows) {
      const tr = el("tr");
      // A row is new if its first two cells (time and id) were not shown before.
      const key = s.id + ":" + row[0] + ":" + row[1];
      if (!firstLoad && !seen.has(key)) tr.className = "fresh";
      seen.add(key);
      row.forEach((v, i) => {
        const c = s.columns[i];
        const text = c.kind === "time" ? when(v) : v === null ? "" : String(v);
        const td = el("td", { title: text }, text);
        if (c.name === "Status" || c.name === "State") td.className = "s-" + text;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    }
    table.appendChild(body);
    const scroll = el("div", { class: "scroll" });
    scroll.appendChild(table);
    sec.appendChild(scroll);
    main.appendChild(sec);
  }
  firstLoad = false;
}

async function refresh() {
  try {
    render(await api("/v1/admin/console"));
  } catch (e) {
    if (e.message === "unauthorized") return signOut("That token is no longer accepted.");
    live(false, "cannot reach the server; retrying");
  }
}

function soon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refresh();
  }, 250);
}

// Server-sent events over fetch (EventSource cannot send the Authorization header).
async function follow() {
  const ctrl = new AbortController();
  stream = ctrl;
  try {
    const resp = await fetch("/v1/admin/events", {
      headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" },
      signal: ctrl.signal,
    });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    live(true, "live");
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const chunk = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const name = chunk.split("\n").find((l) => l.startsWith("event:"));
        if (name && name.slice(6).trim() === "event") {
          const data = chunk.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
          try {
            const ev = JSON.parse(data).event;
            const kind = Object.keys(ev)[0];
            const inner = Array.isArray(ev[kind]) ? ev[kind][ev[kind].length - 1] : ev[kind];
            live(true, "live · last: " + kind.toLowerCase() + " " + (inner && inner.type ? inner.type : Object.keys(inner || {})[0] || ""));
          } catch (_) {
            live(true, "live");
          }
          soon();
        }
      }
    }
  } catch (e) {
    if (ctrl.signal.aborted) return;
  }
  if (stream !== ctrl) return;
  live(false, "reconnecting…");
  setTimeout(() => { if (stream === ctrl) { follow(); refresh(); } }, 2000);
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  token = null;
  if (stream) stream.abort();
  stream = null;
  $("app").hidden = true;
  $("login").hidden = false;
  $("error").textContent = message || "";
}

async function signIn(candidate) {
  token = candidate;
  try {
    const snap = await api("/v1/admin/console");
    sessionStorage.setItem(KEY, token);
    $("login").hidden = true;
    $("app").hidden = false;
    $("error").textContent = "";
    render(snap);
    follow();
  } catch (e) {
    token = null;
    $("error").textContent =
      e.message === "unauthorized"
        ? "That token was not accepted. Use the admin token the server was started with."
        : "The server did not answer. Is it running?";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn($("token").value.trim());
  });
  $("logout").addEventListener("click", () => signOut(""));
  for (const b of document.querySelectorAll("#clock button")) {
    b.addEventListener("click", async () => {
      try {
        await api("/v1/admin/clock", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ advance_ms: Number(b.dataset.ms) }),
        });
      } catch (_) {
        live(false, "the clock did not move");
      }
      refresh();
    });
  }
  // A slow safety net: refresh now and then even if an event was missed.
  setInterval(() => { if (token) refresh(); }, 10000);
  if (token) signIn(token);
});
