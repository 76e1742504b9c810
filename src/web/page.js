// The live view's behaviour. It speaks the broker's line protocol over a WebSocket, one
// line per frame, exactly as `nc` would over TCP:
//   sent:     SUBSCRIBE <topic> <id>      UNSUBSCRIBE <topic> <id>
//   received: DELIVER <topic> <message> <publisher_id> <YYYY-MM-DD> <HH:MM:SS>
// It publishes with POST /publish (to show the broker's HTTP answer), and reads the topic
// list and the counters from GET /topics and GET /stats every two seconds.
"use strict";

const MAX_ROWS = 200;        // messages kept in the table, newest first
const MAX_WIRE = 40;         // lines kept in "On the wire"
const POLL_MS = 2000;        // how often the topics and counters are read

const id = "web-" + Math.random().toString(16).slice(2, 6);
const topics = [];           // subscribed topics, in the order they were added
let shown = 0;

// ---- connection ------------------------------------------------------------------------

function connect() {
  connectLive(() => {
    setState("connected", "connected as " + id);
    for (const topic of topics) send("SUBSCRIBE " + topic + " " + id);
  }, receive);
}

function send(line) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(line);
    wire("out", "▶ " + line);
  }
}

function receive(line) {
  wire(line.startsWith("ERROR") ? "in error" : "in", "◀ " + line);
  if (line.startsWith("DELIVER ")) {
    const delivery = parseDeliver(line);
    if (delivery) addMessage(delivery);
  } else if (line.startsWith("ERROR ")) {
    showResult("bad", "The broker said: " + line);
  }
}

// ---- messages --------------------------------------------------------------------------

function addMessage(delivery) {
  const row = document.createElement("tr");
  row.className = "message new";
  for (const [name, text] of [["time", delivery.time], ["topic", delivery.topic],
                              ["publisher", delivery.publisher], ["message", delivery.message]]) {
    const cell = document.createElement("td");
    cell.className = name;
    cell.textContent = text;   // text, never HTML: a message cannot change the page
    row.appendChild(cell);
  }
  row.title = delivery.date + " " + delivery.time;
  const body = $("#messages tbody");
  body.insertBefore(row, body.firstChild);
  while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
  shown += 1;
  $("#empty").hidden = true;
  $("#message-count").textContent = shown > MAX_ROWS
    ? `${shown} received, newest ${MAX_ROWS} shown` : `${shown} received`;
}

function wire(kind, text) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text;
  const list = $("#wire");
  list.insertBefore(item, list.firstChild);
  while (list.children.length > MAX_WIRE) list.lastChild.remove();
}

// ---- subscriptions ---------------------------------------------------------------------

function subscribe(topic) {
  topic = topic.trim();
  if (!topic) return;
  if (/\s/.test(topic)) {
    showResult("bad", "A topic is one word, with no spaces: " + JSON.stringify(topic));
    return;
  }
  if (topics.includes(topic)) return;
  topics.push(topic);
  send("SUBSCRIBE " + topic + " " + id);
  renderSubscriptions();
}

function unsubscribe(topic) {
  topics.splice(topics.indexOf(topic), 1);
  send("UNSUBSCRIBE " + topic + " " + id);
  renderSubscriptions();
}

function renderSubscriptions() {
  const list = $("#subscriptions");
  list.replaceChildren();
  for (const topic of topics) {
    const item = document.createElement("li");
    item.append(topic);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.title = "Unsubscribe from " + topic;
    remove.setAttribute("aria-label", remove.title);
    remove.onclick = () => unsubscribe(topic);
    item.appendChild(remove);
    list.appendChild(item);
  }
  // The address bar holds the subscriptions, so the link can be handed out as it is.
  const query = topics.map((t) => "topic=" + encodeURIComponent(t)).join("&");
  const link = location.pathname + (query ? "?" + query : "");
  history.replaceState(null, "", link);
  $("#share").href = link;
  $("#share").textContent = decodeURIComponent(link);
}

// ---- publishing ------------------------------------------------------------------------

async function publish(topic, message, publisher) {
  try {
    const response = await fetch("/publish", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ topic, message, publisher }),
    });
    const text = await response.text();
    const kind = response.status === 200 ? "ok" : response.status === 404 ? "warn" : "bad";
    showResult(kind, `${response.status} ${text}`);
    return response.status === 200;
  } catch (error) {
    showResult("bad", "Could not reach the broker: " + error.message);
    return false;
  }
}

function showResult(kind, text) {
  const result = $("#publish-result");
  result.className = "result " + kind;
  result.textContent = text;
}

// ---- topics and counters ---------------------------------------------------------------

const COUNTERS = [
  ["connections_current", "clients connected"],
  ["topics", "topics"],
  ["subscriptions", "subscriptions"],
  ["messages_published", "messages published"],
  ["deliveries", "deliveries"],
  ["errors", "errors answered"],
  ["slow_consumers_disconnected", "slow consumers cut off"],
  ["uptime_seconds", "up for"],
];

async function poll() {
  if (document.hidden) return;
  try {
    const [listing, stats] = await Promise.all([
      fetch("/topics").then((r) => r.json()),
      fetch("/stats").then((r) => r.json()),
    ]);
    renderTopics(listing);
    renderStats(stats);
  } catch (error) {
    // The broker is away; the connection state already says so.
  }
}

function renderTopics(listing) {
  const body = $("#topics tbody");
  body.replaceChildren();
  for (const { topic, subscribers } of listing.topics) {
    const row = body.insertRow();
    if (topics.includes(topic)) row.className = "mine";
    row.insertCell().textContent = topic;
    const count = row.insertCell();
    count.className = "number";
    count.textContent = subscribers;
  }
  if (listing.more > 0) {
    body.insertRow().insertCell().textContent = `… and ${listing.more} more`;
  }
  $("#no-topics").hidden = listing.topics.length > 0;
}

function renderStats(stats) {
  const list = $("#stats");
  list.replaceChildren();
  for (const [name, label] of COUNTERS) {
    if (!(name in stats)) continue;
    const term = document.createElement("dt");
    term.textContent = label;
    const value = document.createElement("dd");
    value.textContent = name === "uptime_seconds" ? duration(stats[name]) : stats[name].toLocaleString();
    list.append(term, value);
  }
}

function duration(seconds) {
  if (seconds < 60) return seconds + " s";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
  return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
}

// ---- start -----------------------------------------------------------------------------

$("#subscribe-form").addEventListener("submit", (event) => {
  event.preventDefault();
  subscribe($("#subscribe-topic").value);
  $("#subscribe-topic").value = "";
});

$("#publish-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const sent = await publish($("#publish-topic").value.trim(), $("#publish-message").value,
                             $("#publish-publisher").value.trim());
  if (sent) $("#publish-message").value = "";
});

startThemes();

// /?topic=weather&topic=news/%23 subscribes to both on load.
for (const topic of new URLSearchParams(location.search).getAll("topic")) subscribe(topic);
renderSubscriptions();
if (topics[0]) $("#publish-topic").value = topics[0].includes("+") || topics[0].includes("#") ? "" : topics[0];
connect();
poll();
setInterval(poll, POLL_MS);
