// A mock of the sessions gateway for developing the pages without the backend: serves the three
// pages and the built bundle, answers the agent, supervisor and customer protocols with canned
// data, and plays a little live traffic. Node built-ins only.
//
//   node dev/mock.mjs [--port 31080] [--quiet]      (npm run mock)
//   http://localhost:31080/?agent=agent-1&token=dev        the agent workspace (3 sessions, 2 offers)
//   http://localhost:31080/?agent=perf&token=dev           10 sessions × 200 messages
//   http://localhost:31080/supervisor?supervisor=sup-1&token=dev
//   http://localhost:31080/customer
// A token "bad" is refused (close 4401), to see the page's sign-in state.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import { fileURLToPath } from "node:url";
import { acceptWebSocket } from "./ws.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const staticDir = path.resolve(here, "../../src/sessions/static");
const args = process.argv.slice(2);
const port = Number(args[args.indexOf("--port") + 1] || process.env.PORT || 31080);
const quiet = args.includes("--quiet");
const live = !args.includes("--still");

const id = () => crypto.randomUUID();
const iso = (offsetS = 0) => new Date(Date.now() + offsetS * 1000).toISOString();
const log = (...a) => quiet || console.log(...a);

// --- canned data --------------------------------------------------------------------------------

const CUSTOMER_LINES = [
  "Hi, I was charged twice for my last order.",
  "The order number is 4411, placed on Monday.",
  "Can you refund the second charge please?",
  "I already checked my bank statement, both charges are there.",
  "How long does a refund usually take?",
  "Thanks, that would be great.",
  "Also, can I change my delivery address for the next order?",
  "It's 12 Rose Street, Leeds.",
];
const AGENT_LINES = [
  "Hello! I'm sorry to hear that, let me look into it.",
  "I can see the two charges on order 4411.",
  "I've started a refund for the duplicate charge.",
  "Refunds take 3 to 5 working days to show on your statement.",
  "I've updated the delivery address on your account.",
];

function transcript(conversationId, n, startMinutesAgo = 60) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const customer = i % 2 === 0;
    const internal = !customer && i % 11 === 5;
    out.push({
      message_id: `${conversationId}-m${i}`,
      sender: customer ? "customer" : "agent",
      sender_id: customer ? "cust" : "agent-1",
      visibility: internal ? "internal" : "public",
      text: internal
        ? "Note: customer is a repeat buyer, be generous with the goodwill credit."
        : customer
          ? CUSTOMER_LINES[(i / 2) % CUSTOMER_LINES.length | 0]
          : AGENT_LINES[((i - 1) / 2) % AGENT_LINES.length | 0],
      time: iso(-startMinutesAgo * 60 + i * 20),
      delivery: customer ? undefined : "delivered",
    });
  }
  return out;
}

const PANE = {
  summary: {
    summary: "Customer was charged twice for order 4411 and wants the duplicate refunded; also asks to change the delivery address.",
    intent: "refund",
    entities: { order: ["4411"], address: ["12 Rose Street, Leeds"] },
  },
  replies: {
    replies: [
      { suggestion_id: "sg-1", reply_id: "r-refund", text: "I've started a refund for the duplicate charge; it takes 3–5 working days.", score: 0.91 },
      { suggestion_id: "sg-2", reply_id: "r-sorry", text: "I'm sorry about the double charge. Let me fix that for you right away.", score: 0.84 },
      { suggestion_id: "sg-3", reply_id: "r-address", text: "I've updated your delivery address to {address}.", score: 0.66, missing_slots: ["address"] },
    ],
  },
  articles: {
    articles: [
      { id: "kb-12", title: "Refunding a duplicate card charge", score: 0.88, snippet: "When a payment is captured twice, refund the later capture from the order page…" },
      { id: "kb-7", title: "Changing a delivery address", score: 0.71, snippet: "Addresses can be changed until the order is packed…" },
    ],
  },
  case_summary: {
    trigger: "agent",
    draft: {
      issue: "Customer was charged twice for order 4411.",
      actions: ["Started a refund for the duplicate charge."],
      resolution: null,
      next_steps: ["Confirm the refund reached the customer's statement."],
      outcome: "open",
    },
  },
};

const ARTICLES = {
  "kb-12": { id: "kb-12", title: "Refunding a duplicate card charge", tags: ["billing", "refunds"], body: "When a payment is captured twice, refund the later capture from the order page.\n\nRefunds reach the customer's statement in 3 to 5 working days. Tell the customer the refund reference.\n\nDo not refund the first capture: it pays for the order." },
  "kb-7": { id: "kb-7", title: "Changing a delivery address", tags: ["delivery"], body: "Addresses can be changed until the order is packed.\n\nAfter packing, offer a redirect through the carrier instead." },
  "kb-3": { id: "kb-3", title: "Password reset for customers", tags: ["account"], body: "Send the reset link from the customer's account page. Links expire after 30 minutes." },
  "kb-21": { id: "kb-21", title: "<script>alert('xss')</script> Escaping test article", tags: ["test"], body: "This title must show as text, never run." },
};

const STATUSES = [
  { name: "available", base: "available", colour: "#1f9d55" },
  { name: "busy", base: "busy", colour: "#d97706" },
  { name: "busy_dnd", base: "busy_dnd", colour: "#dc2626" },
  { name: "away", base: "away", colour: "#a16207" },
  { name: "offline", base: "offline", colour: "#6b7280" },
  { name: "lunch", base: "away", colour: "#f5a623" },
  { name: "training", base: "busy_dnd", colour: "#7b61ff" },
  { name: "coaching", base: "busy", colour: "#4a90e2" },
];
const DISPOSITIONS = [
  { code: "resolved", label: "Resolved" },
  { code: "follow_up", label: "Needs follow-up" },
  { code: "escalated", label: "Escalated" },
  { code: "no_response", label: "Customer did not respond" },
];

function session(cid, title, channel, n, extra = {}) {
  const sid = `conv-${cid}`;
  return {
    session_id: sid,
    kind: "conversation",
    conversation_id: cid,
    channel,
    title,
    icon: title.replace(/[^A-Za-z]/g, "").slice(0, 2).replace(/^./, (c) => c.toUpperCase()) || title.slice(0, 2),
    status: "open",
    unread: 0,
    focused_tab: "anchor",
    opened_at: iso(-600 - n * 3),
    pane: {},
    tabs: [{ session_id: sid, tab_id: "anchor", kind: "conversation", title, anchor: true, target: {} }],
    drafts: [],
    transcript: transcript(cid, n),
    transcript_more: n >= 50,
    ...extra,
  };
}

function initialWorkspace(agentId) {
  const sessions = [{ session_id: "home", kind: "home", title: "Home", icon: "Ho", status: "open", unread: 0 }];
  if (agentId === "perf") {
    const names = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov", "Donald Knuth", "Margaret Hamilton", "Ken Thompson", "Radia Perlman", "Tim Berners-Lee"];
    names.forEach((name, i) => {
      const s = session(`perf-${i + 1}`, name, i === 3 ? "email" : i === 6 ? "sms" : "chat", 200);
      s.transcript = s.transcript.slice(-200);
      s.pane = PANE;
      s.unread = i % 3 === 0 ? i + 2 : 0;
      sessions.push(s);
    });
  } else {
    const maria = session("c-1001", "Maria Lopez", "chat", 14, { pane: PANE, unread: 0 });
    maria.transcript.push({
      message_id: "c-1001-html",
      sender: "customer",
      sender_id: "cust",
      visibility: "public",
      text: "Is <b>this</b> shown as text? <img src=x onerror=alert(1)>",
      time: iso(-30),
    });
    maria.tabs.push({ session_id: maria.session_id, tab_id: "case-1", kind: "case", title: "Case", anchor: false, target: {} });
    maria.drafts.push({ session_id: maria.session_id, tab_id: "case-1", version: 2, fields: { subject: "Duplicate charge on 4411", description: "Refund started.", priority: "high" } });
    const email = session("c-1002", "Order 5520 never arrived", "email", 4, { unread: 3 });
    email.drafts.push({ session_id: email.session_id, tab_id: "anchor", version: 1, fields: { subject: "Re: Order 5520 never arrived", body: "Hello Tom,\n\nI checked with the carrier and" } });
    const voice = session("c-1003", "Visitor 3", "voice", 0, { unread: 12, opened_at: iso(-185) });
    sessions.push(maria, email, voice);
  }
  const open = sessions.filter((s) => s.session_id !== "home");
  return {
    agent_id: agentId,
    seq: 100,
    server_time: iso(),
    focused_session: open[0]?.session_id ?? "home",
    sessions,
    offers:
      agentId === "perf"
        ? []
        : [
            { offer_id: "of-1", conversation_id: "c-2001", channel: "chat", queue: "billing", title: "Jonas Weber", status: "pending", expires_at: iso(95), notification: { show_timeout: true, sound: "chime" } },
            { offer_id: "of-2", conversation_id: "c-2002", channel: "voice", queue: "support-voice", title: "+44 20 7946 0018", status: "pending", expires_at: iso(38), notification: { show_timeout: true, sound: "bell" } },
          ],
    profile: { max_sessions: 10, max_tabs: 10, pane_tools: ["summary", "articles", "replies", "case_summary"], offer_notifications: { show_timeout: true, sound: "chime" } },
    presence: { status: "busy", base: "busy", closed_channels: ["voice"], since: iso(-754), source: "automatic" },
    statuses: STATUSES,
    channels: ["chat", "voice", "email", "sms", "case"],
    dashboard: {
      my_work: open.map((s) => ({ conversation_id: s.conversation_id, channel: s.channel, title: s.title, queue: s.channel === "email" ? "email" : "billing", since: s.opened_at })),
      queue_work: [
        { conversation_id: "c-3001", channel: "chat", title: "Priya Natarajan", queue: "billing", waiting_s: 212, priority: 2 },
        { conversation_id: "c-3002", channel: "email", title: "Invoice copy request", queue: "email", waiting_s: 1430, priority: 0 },
        { conversation_id: "c-3003", channel: "sms", title: "Visitor 7", queue: "delivery", waiting_s: 48, priority: 0 },
      ],
      closed: [
        { conversation_id: "c-0990", session_id: "conv-c-0990", channel: "chat", title: "Lena Fischer", closed_at: iso(-3600) },
        { conversation_id: "c-0985", session_id: "conv-c-0985", channel: "email", title: "Warranty question", closed_at: iso(-7200) },
      ],
    },
    dispositions: DISPOSITIONS,
  };
}

// --- agent state --------------------------------------------------------------------------------

const agents = new Map(); // agentId -> { ws: workspace, ring: [frames], sockets: Set }

function agentState(agentId) {
  if (!agents.has(agentId)) agents.set(agentId, { ws: initialWorkspace(agentId), ring: [], sockets: new Set() });
  return agents.get(agentId);
}

function emit(agentId, type, data) {
  const st = agentState(agentId);
  st.ws.seq += 1;
  const event = { specversion: "1.0", id: id(), source: "/mock/sessions", type, subject: agentId, time: iso(), data: { agent_id: agentId, ...data, seq: st.ws.seq } };
  const frame = JSON.stringify({ kind: "event", event });
  st.ring.push([st.ws.seq, frame]);
  if (st.ring.length > 1000) st.ring.shift();
  for (const s of st.sockets) s.send(frame);
}

const findSession = (st, sid) => st.ws.sessions.find((s) => s.session_id === sid && s.status === "open");
const findByConversation = (st, cid) => st.ws.sessions.find((s) => s.conversation_id === cid && s.status === "open");

function startSession(agentId, cid, title, channel, messages = []) {
  const st = agentState(agentId);
  if (findByConversation(st, cid)) return findByConversation(st, cid);
  const s = session(cid, title, channel, 0);
  s.transcript = messages;
  s.opened_at = iso();
  st.ws.sessions.push(s);
  emit(agentId, "session.started", { session_id: s.session_id, conversation_id: cid, channel, title, icon: s.icon, anchor_tab_id: "anchor", transcript: messages, transcript_more: false });
  emit(agentId, "tab.opened", { session_id: s.session_id, tab_id: "anchor", kind: "conversation", title, conversation_id: cid });
  focus(agentId, s.session_id);
  const d = st.ws.dashboard;
  d.queue_work = d.queue_work.filter((w) => w.conversation_id !== cid);
  d.closed = d.closed.filter((w) => w.conversation_id !== cid);
  d.my_work = [...d.my_work, { conversation_id: cid, channel, title, queue: "billing", since: iso() }];
  emit(agentId, "dashboard.updated", { dashboard: d });
  return s;
}

function focus(agentId, sid) {
  const st = agentState(agentId);
  st.ws.focused_session = sid;
  emit(agentId, "session.focused", { session_id: sid });
  const s = findSession(st, sid);
  if (s && s.unread) {
    s.unread = 0;
    emit(agentId, "session.unread_changed", { session_id: sid, conversation_id: s.conversation_id, unread: 0, badge: "" });
  }
}

function closeSession(agentId, s, why) {
  const st = agentState(agentId);
  s.status = "closed";
  s.closed_at = iso();
  emit(agentId, "session.closed", { session_id: s.session_id, conversation_id: s.conversation_id, channel: s.channel, ...why });
  if (st.ws.focused_session === s.session_id) focus(agentId, "home");
  const d = st.ws.dashboard;
  d.my_work = d.my_work.filter((w) => w.conversation_id !== s.conversation_id);
  d.closed = [{ conversation_id: s.conversation_id, session_id: s.session_id, channel: s.channel, title: s.title, closed_at: iso() }, ...d.closed];
  emit(agentId, "dashboard.updated", { dashboard: d });
}

function postMessage(agentId, s, msg) {
  s.transcript.push(msg);
  emit(agentId, "message.received", { session_id: s.session_id, conversation_id: s.conversation_id, ...msg });
  const st = agentState(agentId);
  if (msg.sender === "customer" && st.ws.focused_session !== s.session_id) {
    s.unread += 1;
    emit(agentId, "session.unread_changed", { session_id: s.session_id, conversation_id: s.conversation_id, unread: s.unread, badge: s.unread > 9 ? "9+" : String(s.unread) });
  }
  if (msg.visibility !== "internal") for (const c of customerSockets.get(s.conversation_id) ?? []) c.send({ kind: "message", message: msg });
  for (const sup of supervisors) if (sup.observing === s.conversation_id) sup.ws.send({ kind: "message", conversation_id: s.conversation_id, message: msg });
}

function reject(agentId, cmd, reason, extra = {}) {
  emit(agentId, "command.rejected", { command_id: cmd.id, command_type: cmd.type, reason, ...extra });
}

function onAgentCommand(agentId, ws, raw) {
  let cmd;
  try {
    cmd = JSON.parse(raw);
  } catch {
    return ws.send({ kind: "error", reason: 'commands are JSON objects: {"type": ..., "data": {...}}' });
  }
  const st = agentState(agentId);
  const d = cmd.data ?? {};
  const known = ["offer.accept", "offer.reject", "session.focus", "session.open", "session.close", "tab.open", "tab.focus", "tab.close", "draft.save", "message.send", "presence.set", "kb.search", "kb.article", "conversation.history", "session.transfer", "record.link", "dashboard.get", "suggestion.feedback", "case_summary.save"];
  if (!known.includes(cmd.type)) return ws.send({ kind: "error", reason: `unknown type '${cmd.type}' on sessions.commands.v1` });
  if (!["kb.search", "kb.article", "conversation.history", "dashboard.get", "suggestion.feedback", "case_summary.save"].includes(cmd.type)) ws.send({ kind: "accepted", command_id: cmd.id, type: cmd.type });
  log("agent", agentId, cmd.type, JSON.stringify(d).slice(0, 120));
  switch (cmd.type) {
    case "offer.accept":
    case "offer.reject": {
      const o = st.ws.offers.find((x) => x.offer_id === d.offer_id);
      if (!o) return reject(agentId, cmd, `no offer '${d.offer_id}' for ${agentId}`);
      st.ws.offers = st.ws.offers.filter((x) => x !== o);
      emit(agentId, cmd.type === "offer.accept" ? "offer.accepted" : "offer.rejected", { offer_id: o.offer_id, conversation_id: o.conversation_id, channel: o.channel, expires_at: o.expires_at });
      if (cmd.type === "offer.accept") {
        const first = pendingCustomer.get(o.conversation_id) ?? [{ message_id: `${o.conversation_id}-m0`, sender: "customer", sender_id: "cust", visibility: "public", text: "Hello, is anyone there?", time: iso(-20) }];
        startSession(agentId, o.conversation_id, o.title ?? o.conversation_id, o.channel, first);
      }
      return;
    }
    case "session.focus":
      if (d.session_id !== "home" && !findSession(st, d.session_id)) return reject(agentId, cmd, `no open session '${d.session_id}' in this agent's workspace`);
      return focus(agentId, d.session_id);
    case "session.open": {
      const w = [...st.ws.dashboard.queue_work, ...st.ws.dashboard.closed].find((x) => x.conversation_id === d.conversation_id);
      if (!w) return reject(agentId, cmd, `conversation '${d.conversation_id}' is not waiting in your queues`);
      return startSession(agentId, w.conversation_id, w.title, w.channel, transcript(w.conversation_id, 3, 5));
    }
    case "session.close": {
      const s = findSession(st, d.session_id);
      if (!s) return reject(agentId, cmd, `no session '${d.session_id}' in this agent's workspace`);
      if (!d.confirmed) return reject(agentId, cmd, "closing needs confirmation");
      log("  wrap-up:", d.disposition, d.note);
      return closeSession(agentId, s, {});
    }
    case "dashboard.get":
      return ws.send({ kind: "dashboard", dashboard: st.ws.dashboard });
    case "session.transfer": {
      const s = findSession(st, d.session_id);
      if (!s) return reject(agentId, cmd, `no session '${d.session_id}'`);
      if (d.to_queue === "nowhere") return reject(agentId, cmd, "no queue 'nowhere': known queues are billing, delivery, email, support-voice");
      return closeSession(agentId, s, { reason: "transferred" });
    }
    case "tab.open": {
      const s = findSession(st, d.session_id);
      if (!s) return reject(agentId, cmd, `no open session '${d.session_id}'`);
      if (s.tabs.length >= 10) return reject(agentId, cmd, `tab limit reached (10 in session '${s.session_id}'); close a tab first`);
      const tab = { session_id: s.session_id, tab_id: `${d.kind}-${id().slice(0, 8)}`, kind: d.kind, title: d.title, anchor: false, target: d.target ?? {} };
      s.tabs.push(tab);
      s.focused_tab = tab.tab_id;
      emit(agentId, "tab.opened", { session_id: s.session_id, tab_id: tab.tab_id, kind: tab.kind, title: tab.title, target: tab.target, conversation_id: s.conversation_id });
      return emit(agentId, "tab.focused", { session_id: s.session_id, tab_id: tab.tab_id });
    }
    case "tab.focus":
    case "tab.close": {
      const s = findSession(st, d.session_id);
      const tab = s?.tabs.find((t) => t.tab_id === d.tab_id);
      if (!tab) return reject(agentId, cmd, `no tab '${d.tab_id}' in session '${d.session_id}'`);
      if (cmd.type === "tab.focus") {
        s.focused_tab = tab.tab_id;
        return emit(agentId, "tab.focused", { session_id: s.session_id, tab_id: tab.tab_id });
      }
      if (tab.anchor) return reject(agentId, cmd, "the anchor tab cannot be closed on its own; close the session instead");
      s.tabs = s.tabs.filter((t) => t !== tab);
      emit(agentId, "tab.closed", { session_id: s.session_id, tab_id: tab.tab_id });
      if (s.focused_tab === tab.tab_id) {
        s.focused_tab = "anchor";
        emit(agentId, "tab.focused", { session_id: s.session_id, tab_id: "anchor" });
      }
      return;
    }
    case "draft.save": {
      const s = findSession(st, d.session_id);
      if (!s || !s.tabs.some((t) => t.tab_id === d.tab_id)) return reject(agentId, cmd, `no tab '${d.tab_id}' in session '${d.session_id}'`);
      const cur = s.drafts.find((x) => x.tab_id === d.tab_id);
      const version = cur?.version ?? 0;
      if ((d.version ?? 0) !== version)
        return reject(agentId, cmd, `stale draft: you edited version ${d.version} but the current version is ${version}; reload it and apply your changes again`, { current_version: version, current_fields: cur?.fields ?? {} });
      if (cur) Object.assign(cur, { version: version + 1, fields: d.fields });
      else s.drafts.push({ session_id: s.session_id, tab_id: d.tab_id, version: 1, fields: d.fields });
      return emit(agentId, "draft.saved", { session_id: s.session_id, tab_id: d.tab_id, version: version + 1, fields: d.fields, conversation_id: s.conversation_id });
    }
    case "message.send": {
      const s = findSession(st, d.session_id);
      if (!s) return reject(agentId, cmd, `no open session '${d.session_id}'`);
      if ((d.text ?? "").length > 4000) return reject(agentId, cmd, "message too long: at most 4000 characters");
      postMessage(agentId, s, { message_id: id(), sender: "agent", sender_id: agentId, visibility: d.visibility ?? "public", text: d.text, time: iso(), delivery: "sent" });
      if (d.visibility !== "internal" && !customerSockets.has(s.conversation_id))
        setTimeout(() => {
          if (s.status === "open")
            postMessage(agentId, s, { message_id: id(), sender: "customer", sender_id: "cust", visibility: "public", text: "Thank you! That helps a lot.", time: iso() });
        }, 1500);
      return;
    }
    case "presence.set": {
      const p = st.ws.presence;
      if (d.status) {
        const known = STATUSES.find((x) => x.name === d.status);
        if (!known) return reject(agentId, cmd, `unknown status '${d.status}'`);
        Object.assign(p, { status: known.name, base: known.base, since: iso(), source: "agent" });
      }
      for (const [ch, state] of Object.entries(d.channels ?? {})) {
        const closed = new Set(p.closed_channels);
        state === "closed" ? closed.add(ch) : closed.delete(ch);
        p.closed_channels = [...closed];
      }
      return emit(agentId, "presence.updated", { status: p.status, base: p.base, previous: p.status, source: "agent", closed_channels: p.closed_channels, colour: STATUSES.find((x) => x.name === p.status)?.colour });
    }
    case "kb.search": {
      const q = String(d.query ?? "").toLowerCase();
      const words = q.split(/\s+/).filter(Boolean);
      const results = Object.values(ARTICLES)
        .map((a) => ({ id: a.id, title: a.title, score: words.filter((w) => (a.title + a.body).toLowerCase().includes(w)).length / words.length, snippet: a.body.slice(0, 90) + "…" }))
        .filter((r) => r.score > 0)
        .sort((a, b) => b.score - a.score);
      return setTimeout(() => ws.send({ kind: "kb_results", query: d.query, results }), 120);
    }
    case "kb.article": {
      const a = ARTICLES[d.id];
      if (!a) return ws.send({ kind: "error", reason: `no article '${d.id}'` });
      return setTimeout(() => ws.send({ kind: "kb_article", article: a }), 80);
    }
    case "conversation.history": {
      const s = findByConversation(st, d.conversation_id);
      if (!s) return ws.send({ kind: "error", reason: `no conversation '${d.conversation_id}' in your sessions` });
      s.olderPages = (s.olderPages ?? 0) + 1;
      const older = transcript(`${s.conversation_id}-p${s.olderPages}`, 20, 60 * (s.olderPages + 1));
      return setTimeout(() => ws.send({ kind: "history", conversation_id: s.conversation_id, messages: older, more: s.olderPages < 3 }), 150);
    }
    case "suggestion.feedback": {
      // as the gateway: assist keeps one verdict per suggestion
      st.verdicts ??= {};
      if (!d.suggestion_id) return ws.send({ kind: "error", command_id: cmd.id, type: cmd.type, reason: "suggestion.feedback needs a suggestion_id" });
      if (st.verdicts[d.suggestion_id])
        return ws.send({ kind: "error", command_id: cmd.id, type: cmd.type, reason: `this suggested reply already has a verdict (suggestion '${d.suggestion_id}' was already ${st.verdicts[d.suggestion_id]})` });
      st.verdicts[d.suggestion_id] = d.verdict ?? "rejected";
      return setTimeout(() => ws.send({ kind: "accepted", command_id: cmd.id, type: cmd.type, suggestion_id: d.suggestion_id, verdict: st.verdicts[d.suggestion_id] }), 80);
    }
    case "case_summary.save": {
      const s = findByConversation(st, d.conversation_id);
      if (!s) return ws.send({ kind: "error", command_id: cmd.id, type: cmd.type, reason: `${agentId} has not held conversation '${d.conversation_id}': its case summary is not theirs` });
      if (!String(d.issue ?? "").trim()) return ws.send({ kind: "error", command_id: cmd.id, type: cmd.type, reason: "assist refused: HTTP 422: invalid case summary: issue must not be empty" });
      const { conversation_id, ...saved } = d;
      const at = new Date().toISOString();
      return setTimeout(() => ws.send({ kind: "accepted", command_id: cmd.id, type: cmd.type, conversation_id, case_summary: { status: "saved", saved, saved_by: agentId, saved_at: at } }), 80);
    }
    default:
      return;
  }
}

function onAgentSocket(agentId, ws, afterSeq) {
  const st = agentState(agentId);
  if (afterSeq !== null && st.ring.length && st.ring[0][0] <= afterSeq + 1) {
    ws.send({ kind: "resumed", after_seq: afterSeq });
    for (const [seq, frame] of st.ring) if (seq > afterSeq) ws.send(frame);
  } else if (afterSeq !== null && afterSeq === st.ws.seq) {
    ws.send({ kind: "resumed", after_seq: afterSeq });
  } else {
    st.ws.server_time = iso();
    ws.send({ kind: "snapshot", reason: afterSeq !== null ? "resume point too old" : null, workspace: st.ws });
  }
  st.sockets.add(ws);
  ws.onmessage = (raw) => onAgentCommand(agentId, ws, raw);
  ws.onclose = () => st.sockets.delete(ws);
}

// --- supervisor ---------------------------------------------------------------------------------

const supervisors = new Set();

function overview() {
  const a1 = agentState("agent-1");
  const conversations = [
    ...a1.ws.sessions
      .filter((s) => s.status === "open" && s.conversation_id)
      .map((s, i) => ({ conversation_id: s.conversation_id, channel: s.channel, queue: s.channel === "email" ? "email" : "billing", agent_id: "agent-1", customer: s.title, waited_s: 30 + i * 25, handle_s: 400 + i * 130, state: "assigned", flags: i === 0 ? ["upset", "asks_for_manager"] : i === 2 ? ["handled_too_long"] : [] })),
    { conversation_id: "c-3001", channel: "chat", queue: "billing", agent_id: null, customer: "Priya Natarajan", waited_s: 212, handle_s: null, state: "waiting", flags: ["waited_too_long"] },
    { conversation_id: "c-2001", channel: "chat", queue: "billing", agent_id: "agent-1", customer: "Jonas Weber", waited_s: 40, handle_s: null, state: "offered", flags: [] },
    { conversation_id: "c-3004", channel: "chat", queue: "delivery", agent_id: "agent-2", customer: "Omar Haddad", waited_s: 15, handle_s: 95, state: "assigned", flags: ["overflowed", "transferred_repeatedly"] },
  ];
  return {
    server_time: iso(),
    seq: a1.ws.seq,
    statuses: STATUSES,
    queues: [
      { name: "billing", channels: ["chat", "email"], waiting: 2, longest_wait_s: 212, estimated_wait_s: 95, offered_15m: 14, assigned_15m: 12, abandoned_15m: 1, overflowed_15m: 0, service_level: 0.86, service_level_threshold_s: 60 },
      { name: "delivery", channels: ["chat", "sms"], waiting: 1, longest_wait_s: 48, estimated_wait_s: 30, offered_15m: 6, assigned_15m: 6, abandoned_15m: 0, overflowed_15m: 2, service_level: 0.95, service_level_threshold_s: 60 },
      { name: "support-voice", channels: ["voice"], waiting: 0, longest_wait_s: 0, estimated_wait_s: null, offered_15m: 3, assigned_15m: 2, abandoned_15m: 1, overflowed_15m: 0, service_level: 0.67, service_level_threshold_s: 20 },
      { name: "email", channels: ["email"], waiting: 1, longest_wait_s: 1430, estimated_wait_s: 900, offered_15m: 2, assigned_15m: 1, abandoned_15m: 0, overflowed_15m: 0, service_level: null, service_level_threshold_s: 3600 },
    ],
    agents: [
      { agent_id: "agent-1", presence: { status: a1.ws.presence.status, base: a1.ws.presence.base, since: a1.ws.presence.since }, load: { chat: { used: 1, limit: 3 }, email: { used: 1, limit: 2 }, voice: { used: 1, limit: 1 } }, sessions: a1.ws.sessions.filter((s) => s.status === "open" && s.conversation_id).length },
      { agent_id: "agent-2", presence: { status: "available", base: "available", since: iso(-1250) }, load: { chat: { used: 1, limit: 3 }, email: { used: 0, limit: 2 } }, sessions: 1 },
      { agent_id: "agent-3", presence: { status: "lunch", base: "away", since: iso(-900) }, load: { chat: { used: 0, limit: 3 } }, sessions: 0 },
      { agent_id: "agent-4", presence: { status: "busy_dnd", base: "busy_dnd", since: iso(-300) }, load: { chat: { used: 3, limit: 3 }, case: { used: 2, limit: 5 } }, sessions: 5 },
      { agent_id: "agent-5", presence: { status: "offline", base: "offline", since: iso(-7200) }, load: {}, sessions: 0 },
    ],
    conversations,
  };
}

function onSupervisorSocket(ws) {
  const sup = { ws, observing: null };
  supervisors.add(sup);
  ws.send({ kind: "overview", overview: overview() });
  ws.onclose = () => supervisors.delete(sup);
  ws.onmessage = (raw) => {
    let cmd;
    try {
      cmd = JSON.parse(raw);
    } catch {
      return ws.send({ kind: "error", reason: "commands are JSON objects" });
    }
    const d = cmd.data ?? {};
    log("supervisor", cmd.type, JSON.stringify(d));
    const a1 = agentState("agent-1");
    const s = d.conversation_id ? findByConversation(a1, d.conversation_id) : null;
    const notInHand = () => ws.send({ kind: "error", reason: `conversation '${d.conversation_id}' is not assigned to an agent: nothing to ${cmd.type.split(".")[1]}` });
    switch (cmd.type) {
      case "supervisor.observe":
        sup.observing = d.conversation_id;
        ws.send({ kind: "accepted", command_id: cmd.id, type: cmd.type });
        if (s) emit("agent-1", "supervisor.action", { conversation_id: s.conversation_id, session_id: s.session_id, supervisor_id: "sup-1", action: "observe", time: iso() });
        return ws.send({ kind: "transcript", conversation_id: d.conversation_id, messages: s ? s.transcript.slice(-50) : transcript(d.conversation_id, 6, 5) });
      case "supervisor.whisper":
      case "supervisor.barge": {
        if (!s) return notInHand();
        if (cmd.type === "supervisor.whisper" && !d.text) return ws.send({ kind: "error", reason: "a whisper needs text" });
        ws.send({ kind: "accepted", command_id: cmd.id, type: cmd.type });
        const action = cmd.type.split(".")[1];
        emit("agent-1", "supervisor.action", { conversation_id: s.conversation_id, session_id: s.session_id, supervisor_id: "sup-1", action, detail: d.text ?? "", time: iso() });
        if (d.text) postMessage("agent-1", s, { message_id: id(), sender: "supervisor", sender_id: "sup-1", visibility: action === "whisper" ? "internal" : "public", text: d.text, time: iso() });
        return;
      }
      case "supervisor.force_transfer":
      case "supervisor.force_close":
        if (!s) return notInHand();
        if (cmd.type === "supervisor.force_close" && !d.reason) return ws.send({ kind: "error", reason: "force close needs a reason" });
        ws.send({ kind: "accepted", command_id: cmd.id, type: cmd.type });
        emit("agent-1", "supervisor.action", { conversation_id: s.conversation_id, session_id: s.session_id, supervisor_id: "sup-1", action: cmd.type.split(".")[1], detail: d.reason ?? d.to_queue ?? d.to_agent, time: iso() });
        closeSession("agent-1", s, {});
        for (const x of supervisors) x.ws.send({ kind: "overview", overview: overview() });
        return;
      case "supervisor.set_presence": {
        ws.send({ kind: "accepted", command_id: cmd.id, type: cmd.type });
        if (d.agent_id === "agent-1") {
          const known = STATUSES.find((x) => x.name === d.status) ?? STATUSES[0];
          Object.assign(a1.ws.presence, { status: known.name, base: known.base, since: iso(), source: "supervisor" });
          emit("agent-1", "presence.updated", { status: known.name, base: known.base, source: "supervisor", reason: "set by sup-1", closed_channels: a1.ws.presence.closed_channels, colour: known.colour });
          emit("agent-1", "supervisor.action", { supervisor_id: "sup-1", action: "set_presence", detail: known.name, time: iso() });
        }
        for (const x of supervisors) x.ws.send({ kind: "event", event: { type: "presence.changed", data: { agent_id: d.agent_id, status: d.status, base: STATUSES.find((x) => x.name === d.status)?.base } } });
        return;
      }
      default:
        return ws.send({ kind: "error", reason: `unknown supervisor command '${cmd.type}'` });
    }
  };
}

// --- customer -----------------------------------------------------------------------------------

const customerSockets = new Map(); // conversation_id -> Set(ws)
const pendingCustomer = new Map(); // conversation_id -> messages before an agent accepts
const customerConversations = new Map(); // token -> conversation_id

function onCustomerSocket(cid, ws) {
  if (!customerSockets.has(cid)) customerSockets.set(cid, new Set());
  customerSockets.get(cid).add(ws);
  const a1 = agentState("agent-1");
  const s = findByConversation(a1, cid);
  for (const m of (s ? s.transcript : pendingCustomer.get(cid) ?? []).filter((m) => m.visibility !== "internal")) ws.send({ kind: "message", message: m });
  ws.onclose = () => customerSockets.get(cid)?.delete(ws);
  ws.onmessage = (raw) => {
    let cmd;
    try {
      cmd = JSON.parse(raw);
    } catch {
      return ws.send({ kind: "error", reason: "commands are JSON objects" });
    }
    if (cmd.type !== "customer.message" || !cmd.data?.text) return ws.send({ kind: "error", reason: "send {type: customer.message, data: {text}}" });
    const msg = { message_id: id(), sender: "customer", sender_id: "cust", visibility: "public", text: cmd.data.text, time: iso() };
    const session = findByConversation(agentState("agent-1"), cid);
    if (session) postMessage("agent-1", session, msg);
    else {
      pendingCustomer.get(cid)?.push(msg);
      for (const c of customerSockets.get(cid) ?? []) c.send({ kind: "message", message: msg });
    }
  };
}

// --- HTTP ---------------------------------------------------------------------------------------

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".map": "application/json", ".png": "image/png" };

function serveFile(res, file) {
  fs.readFile(file, (err, body) => {
    if (err) {
      res.writeHead(404, { "content-type": "text/plain" });
      return res.end("not found");
    }
    res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
    res.end(body);
  });
}

function json(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, `http://${req.headers.host}`);
  const p = url.pathname;
  const token = url.searchParams.get("token");
  if (p === "/") return serveFile(res, path.join(staticDir, "workspace.html"));
  if (p === "/supervisor") return serveFile(res, path.join(staticDir, "supervisor.html"));
  if (p === "/customer") return serveFile(res, path.join(staticDir, "customer.html"));
  if (p.startsWith("/static/")) return serveFile(res, path.join(staticDir, path.basename(p)));
  if (p.startsWith("/dev/")) return serveFile(res, path.join(here, path.basename(p)));
  if (p === "/mock/metrics" && req.method === "POST") {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      console.log("METRICS", body);
      fs.writeFileSync("/tmp/switchboard-metrics.json", body);
      json(res, 200, { ok: true });
    });
    return;
  }
  let m = p.match(/^\/agents\/([^/]+)\/workspace$/);
  if (m) {
    if (!token || token === "bad") return json(res, 401, { error: "invalid token" });
    const st = agentState(decodeURIComponent(m[1]));
    st.ws.server_time = iso();
    return json(res, 200, st.ws);
  }
  if (p === "/supervisor/overview") {
    if (!token || token === "bad") return json(res, 401, { error: "invalid token" });
    return json(res, 200, overview());
  }
  if (p === "/customer/conversations" && req.method === "POST") {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      let data;
      try {
        data = JSON.parse(body);
      } catch {
        return json(res, 422, { error: "send JSON {name, subject, channel}" });
      }
      const cid = `c-${Math.floor(4000 + Math.random() * 5000)}`;
      const tok = id();
      customerConversations.set(tok, cid);
      pendingCustomer.set(cid, [{ message_id: id(), sender: "customer", sender_id: "cust", visibility: "public", text: data.subject || "Hello", time: iso() }]);
      const st = agentState("agent-1");
      const offer = { offer_id: id(), conversation_id: cid, channel: "chat", queue: "billing", title: data.name || "Visitor", status: "pending", expires_at: iso(120), notification: { show_timeout: true, sound: "chime" } };
      st.ws.offers.push(offer);
      emit("agent-1", "offer.received", offer);
      json(res, 200, { conversation_id: cid, token: tok });
    });
    return;
  }
  res.writeHead(404, { "content-type": "text/plain" });
  res.end("not found");
});

server.on("upgrade", (req, socket) => {
  const url = new URL(req.url, `http://${req.headers.host}`);
  const token = url.searchParams.get("token");
  const ws = acceptWebSocket(req, socket);
  if (!ws) return;
  if (!token || token === "bad") return ws.close(4401, "invalid or expired token");
  let m = url.pathname.match(/^\/agents\/([^/]+)\/stream$/);
  if (m) {
    const after = url.searchParams.get("after_seq");
    return onAgentSocket(decodeURIComponent(m[1]), ws, after !== null && /^\d+$/.test(after) ? Number(after) : null);
  }
  if (url.pathname === "/supervisor/stream") return onSupervisorSocket(ws);
  m = url.pathname.match(/^\/customer\/conversations\/([^/]+)\/stream$/);
  if (m) {
    if (customerConversations.get(token) !== decodeURIComponent(m[1])) return ws.close(4403, "this token is not for that conversation");
    return onCustomerSocket(decodeURIComponent(m[1]), ws);
  }
  ws.close(4404, "no such stream");
});

// a little live traffic: customers write in background sessions, queues refresh
if (live) {
  setInterval(() => {
    const st = agentState("agent-1");
    const open = st.ws.sessions.filter((s) => s.status === "open" && s.conversation_id && s.channel !== "voice" && !customerSockets.has(s.conversation_id));
    const s = open[Math.floor(Math.random() * open.length)];
    if (s) postMessage("agent-1", s, { message_id: id(), sender: "customer", sender_id: "cust", visibility: "public", text: CUSTOMER_LINES[Math.floor(Math.random() * CUSTOMER_LINES.length)], time: iso() });
  }, 25000);
  setInterval(() => {
    for (const x of supervisors) x.ws.send({ kind: "overview", overview: overview() });
  }, 10000);
}

server.listen(port, "127.0.0.1", () => console.log(`mock gateway on http://127.0.0.1:${port}/?agent=agent-1&token=dev`));
