// The class picture's behaviour. Two sources, both the broker's own:
//   GET /clients, every second: who is connected, what each subscribes to, how it keeps
//     up (what CLIENTS says in nc);
//   a WebSocket at /ws subscribed to "#", as any client can: one DELIVER line per message,
//     which names its topic and its publisher, so a dot can run along the edges it takes.
// Everything a client sent (its ids, its topics) is put in as text, never as markup.
"use strict";

const POLL_MS = 1000;        // how often GET /clients is read
const PULSE_MS = 900;        // how long a dot takes along one edge
const MAX_PULSES = 80;       // dots on screen at once; past that an edge just lights up
const TOPIC_KEPT_MS = 60000; // a topic published to, and subscribed by nobody, stays this long
const ROW = 64;              // vertical room per node, in the drawing's units
const X = { left: 210, middle: 500, right: 790 };
const SVG = "http://www.w3.org/2000/svg";

const id = "class-" + Math.random().toString(16).slice(2, 6);
let clients = [];            // the last GET /clients, without this page itself
const published = new Map(); // topic -> {at, publisher}: when a DELIVER last named it, and the publisher id it named
const places = new Map();    // node key ("c3", "t:weather") -> {x, y}
let pulses = [];             // {from, to, start}

// ---- the traffic -----------------------------------------------------------------------

function connect() {
  connectLive(() => {
    setState("connected", "watching as " + id);
    socket.send("SUBSCRIBE # " + id);
  }, (line) => {
    const seen = parseDeliver(line);
    if (seen) messageSeen(seen.topic, seen.publisher);
  });
}

// A message went from its publisher to the topic, and from there to every subscriber
// whose filter matches it: a dot along each of those edges.
// The publisher is found by the id in the DELIVER line among the ids /clients lists (ids
// are not unique: the first client that used it is taken), when the picture is drawn:
// a publisher that has just connected is in the next /clients.
function messageSeen(topic, publisherId) {
  const before = published.get(topic);
  published.set(topic, { at: Date.now(), publisher: publisherId });
  if (!before || before.publisher !== publisherId) draw();
  const publisher = publisherOf(topic);
  const now = performance.now();
  if (publisher) pulse("c" + publisher.number, "t:" + topic, now);
  for (const client of clients) {
    if (client.state === "cut-off") continue; // gone: nothing reaches it any more
    for (const filter of client.filters) {
      if (!matches(filter, topic)) continue;
      if (filter !== topic) pulse("t:" + topic, "t:" + filter, now + PULSE_MS / 2);
      pulse("t:" + filter, "c" + client.number, now + PULSE_MS);
    }
  }
}

function publisherOf(topic) {
  const seen = published.get(topic);
  return seen && clients.find((c) => c.ids.includes(seen.publisher));
}

function pulse(from, to, start) {
  const edge = document.querySelector(`#picture [data-edge="${CSS.escape(from + ">" + to)}"]`)
    || document.querySelector(`#picture [data-edge="${CSS.escape(to + ">" + from)}"]`);
  if (edge) {
    edge.classList.add("busy");
    clearTimeout(edge.quiet);
    edge.quiet = setTimeout(() => edge.classList.remove("busy"), PULSE_MS * 2);
  }
  if (pulses.length < MAX_PULSES && places.has(from) && places.has(to)) {
    pulses.push({ from, to, start });
  }
}

function animate(now) {
  const layer = $("#pulses");
  if (layer) {
    pulses = pulses.filter((p) => now - p.start < PULSE_MS && places.has(p.from) && places.has(p.to));
    while (layer.childElementCount < pulses.length) layer.appendChild(svg("circle", { r: 8, class: "pulse" }));
    while (layer.childElementCount > pulses.length) layer.lastChild.remove();
    pulses.forEach((p, n) => {
      const t = Math.max(0, (now - p.start) / PULSE_MS);
      const a = places.get(p.from), b = places.get(p.to);
      const dot = layer.children[n];
      dot.setAttribute("cx", a.x + (b.x - a.x) * t);
      dot.setAttribute("cy", a.y + (b.y - a.y) * t);
      dot.style.opacity = now < p.start ? 0 : 1;
    });
  }
  requestAnimationFrame(animate);
}

// MQTT's matching, as the broker does it (src/topic.rs): + is one level, # the rest;
// a filter starting with a wildcard does not match $-topics.
function matches(filter, topic) {
  if (filter === topic) return true;
  if (topic.startsWith("$") && (filter.startsWith("+") || filter.startsWith("#"))) return false;
  const f = filter.split("/"), t = topic.split("/");
  for (let n = 0; n < f.length; n++) {
    if (f[n] === "#") return true;
    if (n >= t.length) return false;
    if (f[n] !== "+" && f[n] !== t[n]) return false;
  }
  return f.length === t.length;
}

// ---- the picture -----------------------------------------------------------------------

async function poll() {
  try {
    const answer = await fetch("/clients", { cache: "no-store" });
    if (!answer.ok) throw new Error(answer.status + " " + (await answer.text()));
    const body = await answer.json();
    clients = body.clients.filter((c) => !c.ids.includes(id));
    $("#client-count").textContent = clients.length + (body.more ? ` (+${body.more} not listed)` : "");
    draw();
    table();
  } catch (error) {
    $("#client-count").textContent = "(" + error.message + ")";
  }
}

function svg(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

// How a client is drawn: its state, or "idle" for one that has neither published nor
// subscribed yet.
function look(client) {
  if (client.state !== "keeping-up") return client.state;
  return client.subs === 0 && client.msgs_in === 0 ? "idle" : "keeping-up";
}

function label(client) {
  const name = client.ids.length ? client.ids[client.ids.length - 1] : client.way;
  return `#${client.number} ${name}`;
}

// Publishers on the left, subscribers on the right (a client that does both is drawn as
// a subscriber), topics and filters in the middle; an edge per subscription, and one
// from each publisher to each topic it was seen publishing to.
function draw() {
  const now = Date.now();
  for (const [topic, seen] of published) if (now - seen.at > TOPIC_KEPT_MS) published.delete(topic);
  const right = clients.filter((c) => c.subs > 0);
  const left = clients.filter((c) => c.subs === 0);
  const topics = new Set(published.keys());
  for (const client of right) client.filters.forEach((f) => topics.add(f));
  const middle = [...topics].sort();
  const rows = Math.max(left.length, right.length, middle.length, 1);
  const height = 70 + rows * ROW;

  places.clear();
  const place = (list, x, key) => list.forEach((item, n) => {
    const y = 60 + (n + 0.5) * (height - 60) / list.length;
    places.set(key(item), { x, y });
  });
  place(left, X.left, (c) => "c" + c.number);
  place(right, X.right, (c) => "c" + c.number);
  place(middle, X.middle, (t) => "t:" + t);

  const picture = $("#picture");
  picture.setAttribute("viewBox", `0 0 1000 ${height}`);
  const edges = svg("g", {}), nodes = svg("g", {});
  const edge = (from, to, extra) => {
    const a = places.get(from), b = places.get(to);
    if (!a || !b) return;
    edges.appendChild(svg("line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: "edge" + extra, "data-edge": from + ">" + to }));
  };
  for (const client of right) {
    for (const filter of client.filters) edge("t:" + filter, "c" + client.number, "");
  }
  for (const topic of published.keys()) {
    for (const filter of middle) {
      if (filter !== topic && matches(filter, topic)) edge("t:" + topic, "t:" + filter, " matches");
    }
  }
  for (const topic of published.keys()) {
    const publisher = publisherOf(topic);
    if (publisher) edge("c" + publisher.number, "t:" + topic, "");
  }

  for (const [title, x] of [["publishers", X.left], ["topics", X.middle], ["subscribers", X.right]]) {
    nodes.appendChild(svg("text", { x, y: 24, class: "column", "text-anchor": "middle" }, title));
  }
  for (const topic of middle) {
    const { x, y } = places.get("t:" + topic);
    const group = svg("g", { class: "topic", "data-topic": topic });
    const width = Math.min(300, 30 + topic.length * 12);
    group.appendChild(svg("rect", { x: x - width / 2, y: y - 20, width, height: 40, rx: 8 }));
    group.appendChild(svg("text", { x, y }, topic));
    nodes.appendChild(group);
  }
  for (const client of clients) {
    const { x, y } = places.get("c" + client.number);
    const onLeft = x === X.left;
    const group = svg("g", { class: "client " + look(client), "data-client": client.number });
    group.appendChild(svg("circle", { cx: x, cy: y, r: 16 }));
    const anchor = onLeft ? "end" : "start";
    const dx = onLeft ? -26 : 26;
    group.appendChild(svg("text", { x: x + dx, y: y - 10, "text-anchor": anchor, class: "name" }, label(client)));
    const state = client.state === "keeping-up" ? client.way : client.state.replace("-", " ");
    group.appendChild(svg("text", { x: x + dx, y: y + 14, "text-anchor": anchor, class: "note state" }, state));
    nodes.appendChild(group);
  }
  picture.replaceChildren(edges, nodes, svg("g", { id: "pulses" }));
}

function table() {
  const body = $("#clients tbody");
  body.replaceChildren(...clients.map((client) => {
    const row = document.createElement("tr");
    row.className = client.state;
    const cells = [
      [client.number, "number"], [client.ids.join(", ") || "–", "ids"], [client.way, ""],
      [client.subs, "number"], [client.msgs_in, "number"], [client.msgs_out, "number"],
      [client.pending, "number"], [client.state.replace("-", " "), "state"],
    ];
    for (const [text, kind] of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (kind) cell.className = kind;
      row.appendChild(cell);
    }
    return row;
  }));
}

// ---- start -----------------------------------------------------------------------------

startThemes();
connect();
poll();
setInterval(poll, POLL_MS);
requestAnimationFrame(animate);
