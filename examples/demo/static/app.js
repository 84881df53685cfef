// wsregistry demo client: plain JavaScript, no build step.
//
// One WebSocket per tab to /ws (the signed session cookie authenticates it),
// reconnecting with exponential back-off and jitter. Channels:
//   "announcements"  broadcasts to everyone
//   "room:<name>"    rooms this tab joined (rooms are per connection)
//   "dm:<user>"      direct messages; every tab of both users sees them
"use strict";

const $ = (id) => document.getElementById(id);
const ANNOUNCEMENTS = "announcements";
const NAME_RE = /^[A-Za-z0-9_-]{1,24}$/;
const ROOM_RE = /^[A-Za-z0-9_-]{1,32}$/;

const state = {
  me: null,
  socket: null,
  attempt: 0,            // reconnect attempts since the last successful open
  retryTimer: null,
  signedOut: false,
  online: new Set(),
  peers: new Set(),      // users this tab has direct messages with, online or not
  seen: new Set(),       // ids of messages shown (history and live may overlap)
  rooms: new Set(),      // rooms this tab is in; re-joined after a reconnect
  active: ANNOUNCEMENTS,
  unread: new Map(),
  early: null,           // presence events received before this socket's welcome
};

// -- views ---------------------------------------------------------------------------

function showSignIn(message) {
  $("signin-view").hidden = false;
  $("chat-view").hidden = true;
  $("me").hidden = true;
  $("signout").hidden = true;
  $("signin-error").textContent = message || "";
  setStatus("offline", "offline");
  $("name").focus();
}

function showChat() {
  $("signin-view").hidden = true;
  $("chat-view").hidden = false;
  $("me").hidden = false;
  $("signout").hidden = false;
  $("me").textContent = state.me;
  selectChannel(state.active);
}

function setStatus(kind, text) {
  const el = $("status");
  el.className = `status status-${kind}`;
  el.textContent = text;
  const connected = kind === "online";
  $("message").disabled = !connected;
  $("send").disabled = !connected;
}

// -- channels and feeds --------------------------------------------------------------

function channelTitle(channel) {
  if (channel === ANNOUNCEMENTS) return "# announcements";
  if (channel.startsWith("room:")) return `# ${channel.slice(5)}`;
  return `@ ${channel.slice(3)}`;
}

function feed(channel) {
  let el = document.querySelector(`.feed[data-channel="${CSS.escape(channel)}"]`);
  if (!el) {
    el = document.createElement("ol");
    el.className = "feed";
    el.dataset.channel = channel;
    el.hidden = channel !== state.active;
    $("feeds").appendChild(el);
  }
  return el;
}

function addLine(channel, { from = null, text, ts = null, kind = "msg" }) {
  const el = feed(channel);
  const li = document.createElement("li");
  li.className = kind;
  if (from !== null) {
    const who = document.createElement("span");
    who.className = "from" + (from === state.me ? " from-me" : "");
    who.textContent = from;
    li.appendChild(who);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.appendChild(body);
  const time = document.createElement("time");
  time.textContent = new Date(ts ? ts * 1000 : Date.now()).toLocaleTimeString();
  li.appendChild(time);
  el.appendChild(li);
  el.scrollTop = el.scrollHeight;
  if (channel !== state.active) {
    state.unread.set(channel, (state.unread.get(channel) || 0) + 1);
    renderBadges();
  }
}

function selectChannel(channel) {
  state.active = channel;
  state.unread.delete(channel);
  for (const el of document.querySelectorAll(".feed")) el.hidden = el.dataset.channel !== channel;
  feed(channel).hidden = false;
  $("channel-title").textContent = channelTitle(channel);
  $("leave-room").hidden = !channel.startsWith("room:");
  $("message").placeholder =
    channel === ANNOUNCEMENTS ? "Write an announcement to everyone"
    : channel.startsWith("room:") ? `Message #${channel.slice(5)}`
    : `Message ${channel.slice(3)} (all their tabs)`;
  for (const el of document.querySelectorAll(".channel")) {
    el.classList.toggle("active", el.dataset.target === channel);
  }
  renderBadges();
}

function renderBadges() {
  for (const el of document.querySelectorAll(".channel")) {
    const badge = el.querySelector(".badge");
    const count = state.unread.get(el.dataset.target) || 0;
    badge.hidden = count === 0;
    badge.textContent = String(count);
  }
}

function channelButton(target, label, extraClass) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "channel" + (extraClass ? ` ${extraClass}` : "");
  button.dataset.target = target;
  const name = document.createElement("span");
  name.className = "channel-name";
  name.textContent = label;
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.hidden = true;
  button.append(name, badge);
  li.appendChild(button);
  return li;
}

function renderRooms() {
  const list = $("rooms");
  list.replaceChildren(
    ...[...state.rooms].sort().map((room) => channelButton(`room:${room}`, `# ${room}`))
  );
  selectChannel(state.active);
}

function renderOnline() {
  const list = $("online");
  const users = [...state.online].sort((a, b) => a.localeCompare(b));
  // People who sent or got a direct message but are not online (e.g. a background job
  // that notifies users) are listed too, so their messages can be read.
  const offline = [...state.peers].filter((user) => !state.online.has(user)).sort();
  list.replaceChildren(
    ...users.map((user) => {
      const li = channelButton(`dm:${user}`, user, "user");
      li.dataset.user = user;
      if (user === state.me) {
        li.querySelector(".channel-name").textContent = `${user} (you)`;
      }
      return li;
    }),
    ...offline.map((user) => {
      const li = channelButton(`dm:${user}`, `${user} (offline)`, "user offline");
      li.dataset.peer = user;
      return li;
    })
  );
  $("online-count").textContent = `(${users.length})`;
  selectChannel(state.active);
}

function showDm(message) {
  const peer = message.from === state.me ? message.to : message.from;
  if (!state.peers.has(peer)) {
    state.peers.add(peer);
    if (!state.online.has(peer)) renderOnline();
  }
  addLine(`dm:${peer}`, message);
}

function firstTime(message) {
  // History and live messages may overlap (a reconnect, several tabs): show each once.
  if (!message.id) return true;
  if (state.seen.has(message.id)) return false;
  state.seen.add(message.id);
  return true;
}

// -- the socket ------------------------------------------------------------------------

function connect() {
  clearTimeout(state.retryTimer);
  state.retryTimer = null;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  state.socket = socket;
  state.early = [];
  setStatus("connecting", "connecting…");

  socket.addEventListener("open", () => {
    state.attempt = 0;
    setStatus("online", "connected");
    for (const room of state.rooms) send({ type: "join", room });
  });
  socket.addEventListener("message", (event) => handle(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return;
    state.socket = null;
    if (state.signedOut) return;
    if (event.code === 4401) {
      showSignIn("Your session is not valid any more: sign in again.");
      return;
    }
    if (event.code === 4403) {
      showSignIn(`The server does not accept WebSockets from ${location.origin} ` +
                 "(set WSREGISTRY_DEMO_ORIGINS).");
      return;
    }
    if (event.code === 4429) {
      setStatus("offline", "too many open tabs");
      return;
    }
    scheduleReconnect();  // 1001/1012 restarts, 1013 slow consumer, network errors
  });
}

function scheduleReconnect() {
  // 0.5 s, 1 s, 2 s … capped at 15 s, with jitter so a restarted server is not stampeded.
  const base = Math.min(15000, 500 * 2 ** state.attempt);
  const delay = Math.round(base / 2 + Math.random() * (base / 2));
  state.attempt += 1;
  let left = Math.ceil(delay / 1000);
  setStatus("reconnecting", `reconnecting in ${left}s`);
  const tick = setInterval(() => {
    left -= 1;
    if (left > 0 && state.retryTimer) setStatus("reconnecting", `reconnecting in ${left}s`);
  }, 1000);
  state.retryTimer = setTimeout(() => {
    clearInterval(tick);
    connect();
  }, delay);
}

function applyPresence(message) {
  if (message.online) state.online.add(message.user);
  else state.online.delete(message.user);
}

function send(message) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify(message));
    return true;
  }
  return false;
}

function handle(message) {
  switch (message.type) {
    case "welcome":
      // Presence events can arrive before the welcome (the socket is registered first);
      // they are newer than the welcome's snapshot, so apply them on top of it.
      state.online = new Set(message.online);
      for (const early of state.early) applyPresence(early);
      state.early = null;
      $("worker").textContent = `worker ${message.pid} · node ${String(message.node).slice(0, 8)}`;
      $("worker").title = `this tab is served by process ${message.pid} (node ${message.node})`;
      renderOnline();
      break;
    case "history":
      for (const old of message.messages) handle(old);
      break;
    case "presence":
      if (state.early) state.early.push(message);
      else {
        applyPresence(message);
        renderOnline();
      }
      break;
    case "dm":
      if (firstTime(message)) showDm(message);
      break;
    case "joined":
      state.rooms.add(message.room);
      renderRooms();
      selectChannel(`room:${message.room}`);
      break;
    case "left":
      state.rooms.delete(message.room);
      if (state.active === `room:${message.room}`) state.active = ANNOUNCEMENTS;
      renderRooms();
      break;
    case "room":
      addLine(`room:${message.room}`, message);
      break;
    case "room_notice":
      addLine(`room:${message.room}`, { text: message.text, ts: message.ts, kind: "notice" });
      break;
    case "announcement":
      if (firstTime(message)) addLine(ANNOUNCEMENTS, { ...message, kind: "msg announcement" });
      break;
    case "error":
      addLine(state.active, { text: message.text, kind: "notice error" });
      break;
    default:
      console.warn("unknown message", message);
  }
}

// -- wiring ----------------------------------------------------------------------------

async function signIn(name) {
  const response = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name }),
  });
  if (!response.ok) {
    const detail = await response.json().catch(() => ({}));
    throw new Error(detail.detail || `sign-in failed (${response.status})`);
  }
  return (await response.json()).name;
}

async function start() {
  const response = await fetch("/api/me");
  if (response.ok) {
    state.me = (await response.json()).name;
    showChat();
    connect();
  } else {
    showSignIn();
  }
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  if (!NAME_RE.test(name)) {
    $("signin-error").textContent = "Use 1–24 letters, digits, '-' or '_'.";
    return;
  }
  try {
    state.me = await signIn(name);
  } catch (error) {
    $("signin-error").textContent = error.message;
    return;
  }
  state.signedOut = false;
  showChat();
  connect();
});

$("signout").addEventListener("click", async () => {
  state.signedOut = true;
  clearTimeout(state.retryTimer);
  await fetch("/api/logout", { method: "POST" });
  if (state.socket) state.socket.close(1000, "signed out");
  state.rooms.clear();
  renderRooms();
  showSignIn();
});

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const room = $("room-name").value.trim().toLowerCase();
  if (!ROOM_RE.test(room)) return;
  if (send({ type: "join", room })) $("room-name").value = "";
});

$("leave-room").addEventListener("click", () => {
  if (state.active.startsWith("room:")) send({ type: "leave", room: state.active.slice(5) });
});

$("chat-view").addEventListener("click", (event) => {
  const button = event.target.closest(".channel");
  if (button) selectChannel(button.dataset.target);
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text) return;
  const channel = state.active;
  let message;
  if (channel === ANNOUNCEMENTS) message = { type: "announce", text };
  else if (channel.startsWith("room:")) message = { type: "say", room: channel.slice(5), text };
  else message = { type: "dm", to: channel.slice(3), text };
  if (send(message)) $("message").value = "";
});

start();
