// sms-adapter dev console. Plain JavaScript, no build step.
//
// The page loads snapshots (conversations, the open conversation's history, the exchange
// log) whenever the event stream says hello (a first connection, or a server that
// restarted) or reset (it fell too far behind), and applies live events on top of them.
// Everything shown comes from texts people wrote: it is put in the page as text, never
// as HTML.
"use strict";

(() => {
  // The admin token, when the page was opened with ?token=: kept in memory only, and
  // taken out of the address bar so it is not bookmarked or shared by accident.
  const query = new URLSearchParams(location.search);
  const token = query.get("token") || "";
  if (query.has("token")) {
    query.delete("token");
    const rest = query.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }

  const ADDRESS = /^(whatsapp:)?\+[1-9]\d{6,14}$/;
  const MAX_BODY = 1600;
  const MAX_MEDIA = 10;
  const MAX_LOG_ROWS = 500;
  // Statuses only move forward: a late "sent" never hides "delivered".
  const RANK = {
    accepted: 0, scheduled: 0, queued: 1, sending: 2, sent: 3, receiving: 3, received: 4,
    delivered: 5, undelivered: 6, failed: 6, canceled: 6, read: 7,
  };

  const $ = (selector) => document.querySelector(selector);
  const el = {
    connection: $("#connection"),
    layout: $("#layout"),
    tabs: document.querySelectorAll(".tabs button"),
    conversations: $("#conversations"),
    conversationsNote: $("#conversations-note"),
    person: $("#person"),
    personError: $("#person-error"),
    people: $("#people"),
    ours: $("#ours"),
    scroll: $("#thread-scroll"),
    older: $("#older"),
    thread: $("#thread"),
    threadNote: $("#thread-note"),
    composer: $("#composer"),
    media: $("#media"),
    body: $("#body"),
    send: $("#send"),
    composerError: $("#composer-error"),
    logNote: $("#log-note"),
    exchanges: $("#exchanges tbody"),
    detail: $("#exchange-detail"),
  };

  const state = {
    info: null,
    person: "",
    ours: "",
    messages: new Map(), // sid -> message, of the open conversation
    order: [], // sids, in the order shown
    before: null, // cursor of the older page, if any
    conversations: new Map(), // "ours|person" -> {ours, person, last}
    exchanges: new Map(), // id -> summary, of the rows shown
    selectedExchange: null,
  };

  // --- talking to the server ----------------------------------------------------------

  function apiUrl(path) {
    return new URL("console/api/" + path, document.baseURI);
  }

  async function call(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(apiUrl(path), Object.assign({}, options, { headers }));
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const error = new Error((data && data.error) || "HTTP " + response.status);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // --- checks the server makes too, so the reason shows before anything is sent ---------

  function numberProblem(value) {
    if (!value) return "Enter the person's number, such as +15551234567";
    if (!ADDRESS.test(value)) {
      return `"${value}" is not an E.164 number such as +15551234567 (or whatsapp:+15551234567)`;
    }
    return null;
  }

  function mediaUrls(text) {
    return text.split(/[\s,]+/).filter(Boolean);
  }

  function textProblem(body, media) {
    if (body.length > MAX_BODY) return `A text can be at most ${MAX_BODY} characters`;
    if (media.length > MAX_MEDIA) return `At most ${MAX_MEDIA} media URLs`;
    const bad = media.find((url) => !/^https?:\/\/\S+$/.test(url));
    if (bad) return `"${bad}" is not an http(s) URL`;
    if (!body.trim() && media.length === 0) {
      return "The message is empty: type some text or add a media URL";
    }
    return null;
  }

  // --- small helpers ----------------------------------------------------------------------

  function node(tag, attributes = {}, ...children) {
    const made = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") made.className = value;
      else made.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      made.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return made;
  }

  function clock(iso) {
    const moment = new Date(iso);
    if (Number.isNaN(moment.getTime())) return "";
    const today = new Date().toDateString() === moment.toDateString();
    const time = moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return today ? time : moment.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
  }

  function laterStatus(old, fresh) {
    if (!old) return fresh;
    if (!fresh) return old;
    return (RANK[fresh] ?? 0) >= (RANK[old] ?? 0) ? fresh : old;
  }

  function setConnection(mode) {
    const words = {
      connecting: "connecting…",
      live: "live",
      reconnecting: "reconnecting…",
      denied: "not authorized: open the console with ?token=<admin token>",
      polling: "no live updates here",
    };
    el.connection.dataset.state = mode;
    el.connection.textContent = words[mode];
  }

  function showView(view) {
    el.layout.dataset.view = view;
    for (const tab of el.tabs) {
      tab.setAttribute("aria-current", tab.dataset.view === view ? "true" : "false");
    }
  }

  // --- conversations ----------------------------------------------------------------------

  const conversationKey = (ours, person) => ours + "|" + person;

  function renderConversations() {
    const rows = [...state.conversations.values()].sort((a, b) =>
      a.last.at < b.last.at ? 1 : a.last.at > b.last.at ? -1 : 0,
    );
    el.conversations.replaceChildren(
      ...rows.map((row) => {
        const current = row.person === state.person && row.ours === state.ours;
        const last = row.last.body || (row.last.num_media ? "📎 media" : "");
        const button = node(
          "button",
          {
            type: "button",
            "data-person": row.person,
            "data-ours": row.ours,
            "aria-current": current ? "true" : "false",
          },
          node("span", { className: "who" }, row.person, node("time", {}, clock(row.last.at))),
          node("span", { className: "last" }, (row.last.direction === "outbound" ? "Bot: " : "") + last),
        );
        button.addEventListener("click", () => {
          openConversation(row.person, row.ours);
          showView("phone");
        });
        return node("li", {}, button);
      }),
    );
    el.conversationsNote.hidden = rows.length > 0;
    el.conversationsNote.textContent = "No conversations yet: send a text from the phone.";
    el.people.replaceChildren(...rows.map((row) => node("option", { value: row.person })));
  }

  function noteConversation(message) {
    const key = conversationKey(message.ours, message.person);
    const known = state.conversations.get(key);
    if (!known || known.last.at <= message.at || known.last.sid === message.sid) {
      state.conversations.set(key, { ours: message.ours, person: message.person, last: message });
    }
  }

  async function loadConversations() {
    try {
      const data = await call("conversations");
      // Merged, not replaced: a text that arrived live while this loaded stays.
      for (const row of data.conversations) noteConversation(row.last);
      renderConversations();
    } catch (error) {
      el.conversationsNote.hidden = false;
      el.conversationsNote.textContent = "Could not load conversations: " + error.message;
    }
  }

  // --- the open conversation --------------------------------------------------------------

  function bubble(message) {
    const mine = message.direction === "inbound"; // the person's own text
    const links = message.media.map((url) =>
      node("a", { href: /^https?:\/\//.test(url) ? url : null, target: "_blank", rel: "noreferrer" }, "📎 " + url.split("/").pop()),
    );
    if (!links.length && message.num_media) links.push(node("span", {}, `📎 ${message.num_media} media`));
    const status = message.status || "";
    return node(
      "li",
      { className: "bubble " + message.direction, "data-sid": message.sid, "data-status": status },
      message.body ? node("span", { className: "text" }, message.body) : null,
      links.length ? node("span", { className: "media" + (mine ? " inbound-media" : "") }, ...links) : null,
      node(
        "span",
        { className: "meta" },
        node("time", { datetime: message.at }, clock(message.at)),
        node("span", { className: "status status-" + status }, status + (message.error_code ? ` (error ${message.error_code})` : "")),
      ),
    );
  }

  function belongsHere(message) {
    return message.person === state.person && message.ours === state.ours;
  }

  function renderThread() {
    el.thread.replaceChildren(...state.order.map((sid) => bubble(state.messages.get(sid))));
    el.older.hidden = !state.before;
    el.threadNote.textContent = state.order.length ? "" : "No messages yet. Say hello!";
    el.scroll.scrollTop = el.scroll.scrollHeight;
  }

  function upsertMessage(message) {
    const known = state.messages.get(message.sid);
    if (known) {
      const merged = Object.assign({}, known, message, { status: laterStatus(known.status, message.status) });
      state.messages.set(message.sid, merged);
      const shown = el.thread.querySelector(`[data-sid="${CSS.escape(message.sid)}"]`);
      if (shown) shown.replaceWith(bubble(merged));
      return;
    }
    state.messages.set(message.sid, message);
    state.order.push(message.sid);
    el.thread.append(bubble(message));
    el.threadNote.textContent = "";
    el.scroll.scrollTop = el.scroll.scrollHeight;
  }

  async function loadHistory(older = false) {
    const asked = { person: state.person, ours: state.ours };
    const params = new URLSearchParams(asked);
    if (older && state.before) params.set("before", state.before);
    try {
      const data = await call("history?" + params);
      if (asked.person !== state.person || asked.ours !== state.ours) return; // moved on
      const page = data.messages;
      const pageSids = new Set(page.map((m) => m.sid));
      for (const message of page) {
        const known = state.messages.get(message.sid);
        state.messages.set(message.sid, known ? Object.assign({}, message, { status: laterStatus(message.status, known.status) }) : message);
      }
      // Messages already shown (newer pages, or texts that arrived live while this page
      // loaded) stay, after the page.
      state.order = [...page.map((m) => m.sid), ...state.order.filter((sid) => !pageSids.has(sid))];
      state.before = data.before;
      const fromBottom = el.scroll.scrollHeight - el.scroll.scrollTop;
      renderThread(); // scrolls to the newest
      if (older) el.scroll.scrollTop = el.scroll.scrollHeight - fromBottom; // stay in place
    } catch (error) {
      el.threadNote.textContent = "Could not load the history: " + error.message;
    }
  }

  function openConversation(person, ours) {
    const problem = numberProblem(person);
    el.personError.textContent = problem || "";
    if (problem) return false;
    if (ours && ![...el.ours.options].some((option) => option.value === ours)) {
      el.ours.append(node("option", { value: ours }, ours));
    }
    if (ours) el.ours.value = ours;
    el.person.value = person;
    const changed = person !== state.person || el.ours.value !== state.ours;
    state.person = person;
    state.ours = el.ours.value;
    if (changed) {
      state.messages.clear();
      state.order = [];
      state.before = null;
      renderThread();
      location.hash = encodeURIComponent(person);
    }
    renderConversations();
    loadHistory();
    return true;
  }

  // --- sending ----------------------------------------------------------------------------

  async function sendText() {
    const person = el.person.value.trim();
    const body = el.body.value;
    const media = mediaUrls(el.media.value);
    const problem = numberProblem(person) || textProblem(body, media);
    el.composerError.textContent = problem || "";
    if (problem) return;
    if (person !== state.person) openConversation(person);
    el.send.disabled = true;
    try {
      const answer = await call("send", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ person, ours: state.ours, body, media }),
      });
      el.body.value = "";
      el.media.value = "";
      if (answer.webhook_error || (answer.webhook_status && answer.webhook_status >= 400)) {
        el.composerError.textContent = `The adapter answered the webhook with ${answer.webhook_status || "no answer"}${answer.webhook_error ? ": " + answer.webhook_error : ""}`;
      }
      if (!state.info.live) setTimeout(() => loadHistory(), 1000);
    } catch (error) {
      el.composerError.textContent = error.message;
    } finally {
      el.send.disabled = false;
      el.body.focus();
    }
  }

  // --- the exchange log ---------------------------------------------------------------------

  function exchangeRow(summary) {
    const ok = summary.status >= 200 && summary.status < 300;
    const row = node(
      "tr",
      { tabindex: 0, "data-id": summary.id, "aria-selected": summary.id === state.selectedExchange ? "true" : "false" },
      node("td", {}, node("time", { datetime: summary.at }, new Date(summary.at).toLocaleTimeString([], { hour12: false }))),
      node("td", { className: "call", title: summary.path }, node("span", { className: "kind" }, summary.kind), `${summary.method} ${shortPath(summary.path)}`),
      node("td", { className: ok ? "http-ok" : "http-bad" }, summary.status),
      node("td", { className: summary.signature ? "sig-" + summary.signature : "" }, summary.signature || "—"),
      node("td", {}, summary.duration_ms),
    );
    const open = () => showExchange(summary.id);
    row.addEventListener("click", open);
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        open();
      }
    });
    return row;
  }

  // "/2010-04-01/Accounts/AC…/Messages.json" says no more than "…/Messages.json".
  function shortPath(path) {
    return path.replace(/^\/2010-04-01\/Accounts\/[^/]+/, "…");
  }

  function addExchange(summary) {
    if (state.exchanges.has(summary.id)) return; // seen live, then in the snapshot
    state.exchanges.set(summary.id, summary);
    const last = el.exchanges.lastElementChild;
    if (last && Number(last.dataset.id) > summary.id) {
      // Older than what is shown (a snapshot arriving after live rows): redraw in order.
      const ordered = [...state.exchanges.values()].sort((a, b) => a.id - b.id);
      el.exchanges.replaceChildren(...ordered.map(exchangeRow));
    } else {
      el.exchanges.append(exchangeRow(summary));
    }
    while (el.exchanges.children.length > MAX_LOG_ROWS) {
      state.exchanges.delete(Number(el.exchanges.firstElementChild.dataset.id));
      el.exchanges.firstElementChild.remove();
    }
    const scroller = el.exchanges.closest(".log-table");
    scroller.scrollTop = scroller.scrollHeight;
  }

  function readableBody(body, headers) {
    const type = (headers.find(([name]) => name === "content-type") || ["", ""])[1];
    if (!body) return "(empty)";
    if (type.includes("json")) {
      try {
        return JSON.stringify(JSON.parse(body), null, 2);
      } catch (_) {
        return body;
      }
    }
    if (type.includes("x-www-form-urlencoded")) {
      return [...new URLSearchParams(body)].map(([name, value]) => `${name}: ${value}`).join("\n");
    }
    return body;
  }

  async function showExchange(id) {
    state.selectedExchange = id;
    for (const row of el.exchanges.children) {
      row.setAttribute("aria-selected", Number(row.dataset.id) === id ? "true" : "false");
    }
    el.detail.hidden = false;
    try {
      const entry = await call("exchanges/" + id);
      const headerText = (headers) => headers.map(([name, value]) => `${name}: ${value}`).join("\n");
      el.detail.replaceChildren(
        node("h3", {}, `${entry.kind}: ${entry.method} ${entry.path}${entry.query ? "?" + entry.query : ""}`),
        node("p", {}, `HTTP ${entry.status} in ${entry.duration_ms} ms` + (entry.signature ? ` · signature ${entry.signature}` : "")),
        node("h3", {}, "Request headers"),
        node("pre", {}, headerText(entry.request.headers)),
        node("h3", {}, "Request body"),
        node("pre", { className: "request-body" }, readableBody(entry.request.body, entry.request.headers)),
        node("h3", {}, "Response body"),
        node("pre", { className: "response-body" }, readableBody(entry.response.body, entry.response.headers)),
      );
    } catch (error) {
      el.detail.replaceChildren(node("p", { className: "error" }, error.message));
    }
  }

  async function loadExchanges() {
    if (!state.info.exchange_log) {
      el.logNote.hidden = false;
      el.logNote.textContent = "The exchange log is recorded in dev mode (sms-adapter dev).";
      return;
    }
    try {
      const data = await call("exchanges");
      for (const summary of data.exchanges) addExchange(summary);
    } catch (error) {
      el.logNote.hidden = false;
      el.logNote.textContent = "Could not load the exchange log: " + error.message;
    }
  }

  // --- the event stream ---------------------------------------------------------------------

  let source = null;
  let slowReconnect = null;

  // Everything shown is forgotten at once (it may come from a server that is gone), and
  // reloaded; what arrives live meanwhile is merged with what loads.
  function reloadAll() {
    state.conversations.clear();
    state.exchanges.clear();
    el.exchanges.replaceChildren();
    state.messages.clear();
    state.order = [];
    el.thread.replaceChildren();
    loadConversations();
    if (state.person) loadHistory();
    loadExchanges();
  }

  function onLiveMessage(message) {
    noteConversation(message);
    renderConversations();
    if (belongsHere(message)) upsertMessage(message);
  }

  function connect() {
    const url = apiUrl("events");
    if (token) url.searchParams.set("token", token); // an EventSource cannot send headers
    source = new EventSource(url);
    source.addEventListener("open", () => {
      clearTimeout(slowReconnect);
      slowReconnect = null;
      setConnection(state.info.live ? "live" : "polling");
    });
    source.addEventListener("hello", reloadAll);
    source.addEventListener("reset", reloadAll);
    source.addEventListener("message", (event) => onLiveMessage(JSON.parse(event.data)));
    source.addEventListener("exchange", (event) => {
      if (state.info.exchange_log) addExchange(JSON.parse(event.data));
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (the server answered, but not with a stream): find out why.
        setConnection("reconnecting");
        source.close();
        call("info")
          .then(() => setTimeout(connect, 1000))
          .catch((error) => (error.status === 401 || error.status === 404 ? setConnection("denied") : setTimeout(connect, 2000)));
        return;
      }
      // The browser reconnects by itself (an error for each try). A stream that simply
      // ended (they do, every few seconds) is back within a second; only a longer wait is
      // worth showing.
      if (slowReconnect === null) {
        slowReconnect = setTimeout(() => {
          slowReconnect = null;
          if (source.readyState !== EventSource.OPEN) setConnection("reconnecting");
        }, 1500);
      }
    });
  }

  // --- wiring -------------------------------------------------------------------------------

  async function start() {
    try {
      state.info = await call("info");
    } catch (error) {
      setConnection(error.status === 401 || error.status === 404 ? "denied" : "reconnecting");
      if (error.status !== 401 && error.status !== 404) setTimeout(start, 2000);
      return;
    }
    const numbers = state.info.numbers.length ? state.info.numbers : [""];
    el.ours.replaceChildren(...numbers.map((n) => node("option", { value: n }, n || "(any of ours)")));
    const fromHash = decodeURIComponent(location.hash.slice(1));
    openConversation(ADDRESS.test(fromHash) ? fromHash : state.info.default_person);
    connect();
  }

  el.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    sendText();
  });
  el.body.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter starts a new line.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      el.composer.requestSubmit();
    }
  });
  el.media.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      el.composer.requestSubmit();
    }
  });
  el.person.addEventListener("change", () => {
    const person = el.person.value.trim();
    if (person !== state.person) openConversation(person);
  });
  el.person.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      if (openConversation(el.person.value.trim())) el.body.focus();
    }
  });
  el.ours.addEventListener("change", () => openConversation(state.person, el.ours.value));
  el.older.addEventListener("click", () => loadHistory(true));
  for (const tab of el.tabs) tab.addEventListener("click", () => showView(tab.dataset.view));

  start();
})();
