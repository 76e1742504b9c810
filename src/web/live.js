// What the live view (page.js) and the class picture (class.js) share, put in before
// either's own script: the WebSocket to /ws that reconnects by itself, the state shown
// beside the title, reading a DELIVER line, and the light and dark themes.
"use strict";

const MAX_RETRY_MS = 5000;   // the longest wait before reconnecting

const $ = (selector) => document.querySelector(selector);

let socket = null;
let retries = 0;

// Opens the WebSocket at /ws, and opens it again whenever it closes, waiting longer after
// each failure (0.5 s, 1 s, 2 s... up to MAX_RETRY_MS), as a browser's EventSource does:
// a broker restarted in class is found again without a reload. `opened()` runs at every
// open (to subscribe again), `received(line)` for every frame.
function connectLive(opened, received) {
  setState("connecting", "connecting…");
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/ws");
  socket.onopen = () => {
    retries = 0;
    opened();
  };
  socket.onmessage = (event) => received(event.data);
  socket.onclose = (event) => {
    socket = null;
    const wait = Math.min(MAX_RETRY_MS, 500 * 2 ** retries++);
    const why = event.reason ? ": " + event.reason : "";
    setState("disconnected", `disconnected (${event.code}${why}); reconnecting in ${Math.ceil(wait / 1000)} s`);
    setTimeout(() => connectLive(opened, received), wait);
  };
}

function setState(state, text) {
  $("#state").dataset.state = state;
  $("#state-text").textContent = text;
}

// DELIVER <topic> <message> <publisher_id> <date> <time>: the topic is the second word,
// the last three are the publisher, date and time, and the message is everything between,
// spaces and all. Anything else is not a delivery (null).
function parseDeliver(line) {
  if (!line.startsWith("DELIVER ")) return null;
  const rest = line.slice("DELIVER ".length);
  const topicEnd = rest.indexOf(" ");
  if (topicEnd < 0) return null;
  const tail = rest.slice(topicEnd + 1);
  const timeAt = tail.lastIndexOf(" ");
  const dateAt = tail.lastIndexOf(" ", timeAt - 1);
  const publisherAt = tail.lastIndexOf(" ", dateAt - 1);
  if (publisherAt < 0) return null;
  return {
    topic: rest.slice(0, topicEnd),
    message: tail.slice(0, publisherAt),
    publisher: tail.slice(publisherAt + 1, dateAt),
    date: tail.slice(dateAt + 1, timeAt),
    time: tail.slice(timeAt + 1),
  };
}

// ---- light and dark --------------------------------------------------------------------

const THEMES = ["auto", "light", "dark"];

function applyTheme(theme) {
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  $("#theme").textContent = "theme: " + theme;
  try { localStorage.setItem("pubsub-lab-theme", theme); } catch (error) { /* private mode */ }
}

// The #theme button goes round auto, light, dark; the choice is kept for the next visit,
// and both pages share it.
function startThemes() {
  $("#theme").addEventListener("click", () => {
    const now = document.documentElement.dataset.theme || "auto";
    applyTheme(THEMES[(THEMES.indexOf(now) + 1) % THEMES.length]);
  });
  let saved = "auto";
  try { saved = localStorage.getItem("pubsub-lab-theme") || "auto"; } catch (error) { /* private mode */ }
  applyTheme(THEMES.includes(saved) ? saved : "auto");
}
