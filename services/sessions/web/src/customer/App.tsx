// The customer's side of the demo: a name and subject start a chat; then the public transcript
// and a Message box. The conversation survives a reload of this tab.
import { useLayoutEffect, useRef, useState } from "preact/hooks";
import { signal } from "@preact/signals";
import { Stream, uuid, wsUrl } from "../lib/socket";
import { clockTime } from "../lib/clock";
import { ConnectionIndicator } from "../lib/ui";

interface Chat {
  conversation_id: string;
  token: string;
  name: string;
  subject: string;
}

interface ChatMessage {
  message_id: string;
  sender: string;
  sender_id?: string;
  text: string;
  time?: string;
  pending?: boolean;
}

const KEY = "switchboard.customer.chat";
const SENDER: Record<string, string> = { customer: "You", agent: "Agent", supervisor: "Supervisor", bot: "Bot" };

function savedChat(): Chat | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Chat) : null;
  } catch {
    return null;
  }
}

const chat = signal<Chat | null>(savedChat());
const messages = signal<ChatMessage[]>([]);
const error = signal("");
let stream: Stream | null = null;

function connect(c: Chat): void {
  stream?.stop();
  messages.value = [];
  stream = new Stream(
    () => wsUrl(`/customer/conversations/${encodeURIComponent(c.conversation_id)}/stream`, { token: c.token }),
    (f) => {
      if (f.kind === "message") {
        const m = f.message as ChatMessage;
        const list = messages.value;
        if (!m || list.some((x) => x.message_id === m.message_id)) return;
        const mine = list.findIndex((x) => x.pending && x.text === m.text && m.sender === "customer");
        if (mine >= 0) {
          const next = list.slice();
          next[mine] = m;
          messages.value = next;
        } else messages.value = [...list, m];
      } else if (f.kind === "error") error.value = String(f.reason ?? "the message was refused");
    },
  );
  stream.start();
}

if (chat.value) connect(chat.value);

export function CustomerApp() {
  const c = chat.value;
  return (
    <div class="customer">
      <header class="topbar">
        <span class="brand">Switchboard</span>
        <span class="who">Customer chat (demo)</span>
        <span class="spacer" />
        {stream && c && <ConnectionIndicator link={stream.link} onRetry={() => stream?.reconnectNow()} />}
      </header>
      <main class="customer-main">
        {error.value && (
          <div role="alert" class="notice notice-error">
            <span class="notice-text">{error.value}</span>
            <button type="button" class="icon-button" aria-label="Dismiss notice" onClick={() => (error.value = "")}>
              ×
            </button>
          </div>
        )}
        {c ? <ChatView chat={c} /> : <StartForm />}
      </main>
    </div>
  );
}

function StartForm() {
  const [name, setName] = useState("");
  const [subject, setSubject] = useState("");
  const [busy, setBusy] = useState(false);
  return (
    <form
      class="card start-chat"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        error.value = "";
        try {
          const res = await fetch("/customer/conversations", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ name: name.trim(), subject: subject.trim(), channel: "chat" }),
          });
          const body = await res.json().catch(() => ({}));
          if (!res.ok) throw new Error(body.error ?? body.reason ?? `the chat could not start (${res.status})`);
          const started: Chat = { conversation_id: body.conversation_id, token: body.token, name: name.trim(), subject: subject.trim() };
          try {
            sessionStorage.setItem(KEY, JSON.stringify(started));
          } catch {
            /* no storage: the chat lasts as long as the page */
          }
          chat.value = started;
          connect(started);
        } catch (exc) {
          error.value = exc instanceof Error ? exc.message : String(exc);
        } finally {
          setBusy(false);
        }
      }}
    >
      <h1>Chat with us</h1>
      <p class="muted">An agent will be with you shortly.</p>
      <div class="form-row">
        <label for="c-name">Your name</label>
        <input id="c-name" type="text" autoComplete="name" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </div>
      <div class="form-row">
        <label for="c-subject">Subject</label>
        <input id="c-subject" type="text" required value={subject} onInput={(e) => setSubject(e.currentTarget.value)} />
      </div>
      <button type="submit" class="primary" disabled={busy}>
        {busy ? "Starting…" : "Start chat"}
      </button>
    </form>
  );
}

function ChatView(props: { chat: Chat }) {
  const c = props.chat;
  const [text, setText] = useState("");
  const log = useRef<HTMLDivElement>(null);
  const list = messages.value;
  useLayoutEffect(() => {
    if (log.current) log.current.scrollTop = log.current.scrollHeight;
  }, [list]);
  const send = () => {
    const body = text.trim();
    if (!body || !stream) return;
    if (!stream.send({ id: uuid(), type: "customer.message", data: { text: body } })) {
      error.value = "Not connected: your message was not sent. The page reconnects by itself.";
      return;
    }
    messages.value = [
      ...messages.value,
      { message_id: `local-${uuid()}`, sender: "customer", text: body, time: new Date().toISOString(), pending: true },
    ];
    setText("");
  };
  return (
    <section class="card chat" aria-labelledby="chat-title">
      <div class="chat-head">
        <h1 id="chat-title">{c.subject || "Your chat"}</h1>
        <button
          type="button"
          class="ghost small"
          onClick={() => {
            stream?.stop();
            stream = null;
            try {
              sessionStorage.removeItem(KEY);
            } catch {
              /* nothing stored */
            }
            chat.value = null;
          }}
        >
          Start a new chat
        </button>
      </div>
      <div class="transcript" role="log" aria-label="Chat transcript" tabIndex={0} ref={log}>
        {list.length ? (
          <ol class="messages">
            {list.map((m) => (
              <li key={m.message_id} class={`msg msg-${m.sender === "customer" ? "self" : "other"}${m.pending ? " msg-pending" : ""}`}>
                <div class="msg-head">
                  <span class="msg-sender">{SENDER[m.sender] ?? "Agent"}</span>
                  <time dateTime={m.time}>{clockTime(m.time)}</time>
                </div>
                <div class="msg-text">{m.text}</div>
              </li>
            ))}
          </ol>
        ) : (
          <p class="empty">Say hello, {c.name || "there"}: your messages appear here.</p>
        )}
        {!list.some((m) => m.sender !== "customer") && <p class="waiting-agent">Waiting for an agent to join…</p>}
      </div>
      <form
        class="composer"
        onSubmit={(e) => {
          e.preventDefault();
          send();
        }}
      >
        <label for="c-message" class="composer-label">
          Message
        </label>
        <textarea
          id="c-message"
          rows={2}
          value={text}
          onInput={(e) => setText(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
              e.preventDefault();
              send();
            }
          }}
        />
        <div class="composer-bar">
          <span class="spacer" />
          <button type="submit" class="primary" disabled={!text.trim()}>
            Send
          </button>
        </div>
      </form>
    </section>
  );
}
