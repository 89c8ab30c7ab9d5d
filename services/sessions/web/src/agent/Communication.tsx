// The communication panel in the conversation tab: the live transcript and, by channel, the
// reply box (chat, sms), the email composer (a draft kept on the server) or the call state.
import { Component } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { clockTime, duration, secondsSince, tick } from "../lib/clock";
import { useStore } from "./context";
import { Icon } from "../lib/icons";
import { keepComposer, type SessionState } from "./store";
import type { Message } from "./types";

export function Communication(props: { session: SessionState }) {
  const s = props.session;
  return (
    <div class="communication">
      {s.channel === "voice" && <VoicePanel session={s} />}
      <Transcript session={s} />
      {s.channel === "email" ? <EmailComposer session={s} /> : <Composer session={s} />}
    </div>
  );
}

const SENDER_LABEL: Record<string, string> = { customer: "Customer", agent: "Agent", supervisor: "Supervisor", bot: "Bot" };

function senderName(m: Message, title: string, me: string): string {
  if (m.sender === "customer") return title || "Customer";
  if (m.sender === "agent" && (!m.sender_id || m.sender_id === me)) return "You";
  return m.sender_id ? `${SENDER_LABEL[m.sender] ?? m.sender} ${m.sender_id}` : (SENDER_LABEL[m.sender] ?? m.sender);
}

/** One transcript line; re-renders only when its message object changes. */
class MessageItem extends Component<{ m: Message; who: string }> {
  shouldComponentUpdate(next: { m: Message; who: string }): boolean {
    return next.m !== this.props.m || next.who !== this.props.who;
  }

  render() {
    const { m, who } = this.props;
    const internal = m.visibility === "internal";
    // the delivery state matters for what this agent sent; every stored message was "sent"
    const delivery = m.pending ? "sending…" : who === "You" ? m.delivery : undefined;
    return (
      <li class={`msg msg-${m.sender}${internal ? " msg-internal" : ""}${m.pending ? " msg-pending" : ""}`}>
        <div class="msg-head">
          <span class="msg-sender">{who}</span>
          {internal && <span class="chip chip-internal">Internal note</span>}
          <time dateTime={m.time}>{clockTime(m.time)}</time>
          {delivery && <span class="msg-delivery">{delivery}</span>}
        </div>
        <div class="msg-text">{m.text}</div>
      </li>
    );
  }
}

/** How many of the latest messages are drawn at first; scrolling up draws more (cheap
 * switches with long transcripts), then asks the server for older ones. */
const WINDOW = 40;

export function Transcript(props: { session: SessionState }) {
  const store = useStore();
  const s = props.session;
  const all = s.transcript.value;
  const title = s.title.value;
  const [shown, setShown] = useState(WINDOW);
  const hidden = Math.max(0, all.length - shown);
  const messages = hidden ? all.slice(hidden) : all;
  const ref = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const prevFirst = useRef<string | undefined>(undefined);
  const prevHeight = useRef(0);

  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const first = messages[0]?.message_id;
    if (prevFirst.current && first !== prevFirst.current && prevHeight.current && !stick.current) {
      el.scrollTop += el.scrollHeight - prevHeight.current; // older messages came in above: keep the view
    } else if (stick.current) {
      el.scrollTop = el.scrollHeight;
    }
    prevFirst.current = first;
    prevHeight.current = el.scrollHeight;
  }, [messages[0]?.message_id, messages.length, all]);
  useEffect(() => {
    // messages off screen are laid out at an estimated height (content-visibility): once the
    // visible ones have their real size, land on the newest again
    const el = ref.current;
    const id = requestAnimationFrame(() => {
      if (el && stick.current) el.scrollTop = el.scrollHeight;
    });
    return () => cancelAnimationFrame(id);
  }, [messages.length, all]);

  const earlier = () => {
    if (hidden) setShown(shown + WINDOW);
    else if (s.more.value) store.loadOlder(s);
  };

  return (
    <div
      class="transcript"
      ref={ref}
      role="log"
      aria-label={`Conversation with ${title}`}
      tabIndex={0}
      onScroll={(e) => {
        const el = e.currentTarget;
        stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
        if (el.scrollTop < 40 && hidden) setShown(shown + WINDOW);
      }}
    >
      {(hidden > 0 || s.more.value) && (
        <div class="older">
          <button type="button" class="link-button" disabled={s.loadingOlder.value} onClick={earlier}>
            {s.loadingOlder.value ? "Loading…" : "Show earlier messages"}
          </button>
        </div>
      )}
      {messages.length === 0 ? (
        <p class="empty">No messages yet.</p>
      ) : (
        <ol class="messages">
          {messages.map((m) => (
            <MessageItem key={m.message_id} m={m} who={senderName(m, title, store.agentId)} />
          ))}
        </ol>
      )}
    </div>
  );
}

function Composer(props: { session: SessionState }) {
  const store = useStore();
  const s = props.session;
  const internal = s.internal.value;
  const ref = useRef<HTMLTextAreaElement>(null);
  const voice = s.channel === "voice";
  useEffect(() => {
    if (voice && !s.internal.value) s.internal.value = true; // on a call, typed text is a note
  }, [voice]);
  const submit = () => {
    if (store.sendMessage(s, s.composer.value, internal)) {
      s.composer.value = "";
      keepComposer(s.id, "");
    }
    ref.current?.focus();
  };
  return (
    <form
      class={`composer${internal ? " composer-internal" : ""}`}
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
    >
      <label for={`message-${s.id}`} class="composer-label">
        Message
      </label>
      <textarea
        id={`message-${s.id}`}
        ref={ref}
        data-composer
        rows={3}
        maxLength={8000}
        value={s.composer.value}
        placeholder={internal ? "Internal note (only agents and supervisors see it)" : "Reply to the customer — Enter sends, Shift+Enter adds a line"}
        onInput={(e) => {
          s.composer.value = e.currentTarget.value;
          keepComposer(s.id, e.currentTarget.value);
          if (!e.currentTarget.value) s.suggestionId.value = null;
        }}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            submit();
          }
        }}
      />
      <div class="composer-bar">
        <label class="toggle">
          <input
            type="checkbox"
            checked={internal}
            disabled={voice}
            onChange={(e) => (s.internal.value = e.currentTarget.checked)}
          />
          Internal note
        </label>
        {s.suggestionId.value && <span class="chip">from a suggestion</span>}
        <button type="submit" class="primary" disabled={!s.composer.value.trim()}>
          Send
        </button>
      </div>
    </form>
  );
}

/** Email: subject and body are a draft on the anchor tab, saved as the agent types, so the
 * reply survives switching, reload and another device. */
function EmailComposer(props: { session: SessionState }) {
  const store = useStore();
  const s = props.session;
  const draft = s.drafts.value.anchor;
  const saved = (draft?.fields ?? {}) as { subject?: string; body?: string };
  const [subject, setSubject] = useState(saved.subject ?? `Re: ${s.title.value}`);
  const [body, setBody] = useState(saved.body ?? "");
  const dirty = useRef(false);
  const timer = useRef<number>();
  useEffect(() => {
    if (dirty.current) return; // the agent is typing: their text wins until it is saved
    setSubject(saved.subject ?? `Re: ${s.title.value}`);
    setBody(saved.body ?? "");
  }, [draft?.version]);
  const reloads = s.draftReloads.value;
  useEffect(() => {
    if (!reloads) return;
    window.clearTimeout(timer.current);
    dirty.current = false;
    const f = (s.drafts.value.anchor?.fields ?? {}) as { subject?: string; body?: string };
    setSubject(f.subject ?? `Re: ${s.title.value}`);
    setBody(f.body ?? "");
  }, [reloads]);
  const schedule = (patch: { subject?: string; body?: string }) => {
    if (!dirty.current) store.beginEdit(s, "anchor");
    dirty.current = true;
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => {
      store.saveDraft(s, "anchor", patch);
      dirty.current = false;
    }, 400);
  };
  useEffect(() => () => window.clearTimeout(timer.current), []);
  const send = () => {
    if (!body.trim()) return;
    if (store.sendMessage(s, body, false)) {
      setBody("");
      window.clearTimeout(timer.current);
      store.saveDraft(s, "anchor", { subject, body: "" });
    }
  };
  return (
    <form
      class="composer email-composer"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      <label class="field">
        <span>Subject</span>
        <input
          type="text"
          value={subject}
          onInput={(e) => {
            setSubject(e.currentTarget.value);
            schedule({ subject: e.currentTarget.value, body });
          }}
        />
      </label>
      <label class="field">
        <span>Body</span>
        <textarea
          rows={5}
          value={body}
          onInput={(e) => {
            setBody(e.currentTarget.value);
            schedule({ subject, body: e.currentTarget.value });
          }}
        />
      </label>
      <div class="composer-bar">
        <span class="muted">{draft ? `Draft saved (version ${draft.version})` : "Not saved yet"}</span>
        <button type="submit" class="primary" disabled={!body.trim()}>
          Send
        </button>
      </div>
    </form>
  );
}

function VoicePanel(props: { session: SessionState }) {
  const s = props.session;
  return (
    <div class="voice" role="group" aria-label="Call">
      <span class="voice-icon" aria-hidden="true">
        <Icon name="voice" size={28} />
      </span>
      <div>
        <div class="voice-state">Call connected</div>
        <div class="voice-duration">
          <span class="sr-only">Duration </span>
          <CallTimer since={s.openedAt} />
        </div>
      </div>
      <p class="muted voice-note">Audio runs on your phone system; notes you type here are internal.</p>
    </div>
  );
}

function CallTimer(props: { since?: string }) {
  return <time>{duration(secondsSince(props.since, tick.value))}</time>;
}
