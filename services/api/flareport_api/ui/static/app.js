// Flareport web UI: progressive enhancement only. Every page works without this file.
// - live updates: listen to /ui/events (server-sent events); on "changed", re-fetch this page and swap <main>
// - copy buttons, confirmation of destructive forms, ticking pending-deletion countdowns and "5s ago" times
"use strict";

function copyFrom(id, button) {
  const text = document.getElementById(id).textContent.trim();
  const done = () => { const old = button.textContent; button.textContent = "Copied"; setTimeout(() => { button.textContent = old; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
  } else {
    const area = document.createElement("textarea");
    area.value = text; document.body.appendChild(area); area.select();
    document.execCommand("copy"); area.remove(); done();
  }
}

function tickCountdowns() {
  for (const el of document.querySelectorAll(".countdown[data-at]")) {
    const left = Math.round((Date.parse(el.dataset.at) - Date.now()) / 1000);
    el.textContent = left <= 0 ? "deleted due now" : "deleted in " + (left >= 60 ? Math.floor(left / 60) + "m " : "") + String(left % 60).padStart(2, "0") + "s";
  }
}

// The same words as the server's ``ago`` (ui/guards.py), from the moment each <time class="ago"> carries.
function agoText(seconds) {
  if (seconds < 0) return "just now";
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (seconds >= size) return Math.floor(seconds / size) + unit + " ago";
  }
  return seconds + "s ago";
}

function tickAgo() {
  for (const el of document.querySelectorAll("time.ago[datetime]")) {
    const at = Date.parse(el.getAttribute("datetime"));
    if (!Number.isNaN(at)) el.textContent = agoText(Math.floor((Date.now() - at) / 1000));
  }
}

function tick() { tickCountdowns(); tickAgo(); }

async function refreshMain() {
  // Do not throw away what the admin is typing.
  const active = document.activeElement;
  if (active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA" || active.tagName === "SELECT") && active.value) return;
  const response = await fetch(location.href, { credentials: "same-origin", headers: { "X-Requested-With": "live" } });
  if (!response.ok || response.redirected) return;
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = doc.getElementById("main");
  if (fresh) {
    // The notice on screen (e.g. "Key revoked") stays: it answers what the admin just did.
    fresh.querySelectorAll(".flash").forEach((el) => el.remove());
    document.querySelectorAll("#main > .flash").forEach((el) => fresh.prepend(el));
    document.getElementById("main").replaceWith(fresh);
    tick();
  }
}

function live() {
  if (document.body.dataset.live !== "1" || !window.EventSource) return;
  const status = document.getElementById("live-status");
  const source = new EventSource("/ui/events");
  // The read model's version this page was rendered from; a page without one takes the stream's first version.
  let shown = document.body.dataset.version || null;
  source.addEventListener("changed", (event) => {
    const version = JSON.parse(event.data).version;
    if (shown === null) { shown = version; return; }
    if (version !== shown) { shown = version; refreshMain(); }
  });
  source.onopen = () => { if (status) { status.hidden = false; status.textContent = "live"; } };
  source.onerror = () => { if (status) { status.textContent = "reconnecting…"; } };
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy[data-copy]");
  if (button) copyFrom(button.dataset.copy, button);
});
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});
document.addEventListener("DOMContentLoaded", () => { live(); tick(); setInterval(tick, 1000); });
