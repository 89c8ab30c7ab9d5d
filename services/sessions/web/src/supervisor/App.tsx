// The supervisor view: queues, agents and conversations in progress (with escalation flags),
// live; actions per conversation and per agent; an observe panel with the read-only transcript
// and a box to whisper to the agent or barge in.
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { ChannelMarker, ConnectionIndicator, Empty, Modal } from "../lib/ui";
import { clockTime, duration, secondsSince, serverNow, span } from "../lib/clock";
import { useSignal } from "@preact/signals";
import type { AgentRow, ConversationRow, ObservedMessage, QueueRow, SupervisorStore } from "./store";

const BASE_STATUSES = ["available", "busy", "busy_dnd", "away", "offline"];
const FLAG_TEXT: Record<string, string> = {
  waited_too_long: "waited too long",
  handled_too_long: "handled too long",
  overflowed: "overflowed",
  transferred_repeatedly: "transferred repeatedly",
  asks_for_manager: "asks for a manager",
  upset: "customer upset",
};

/** Ticks every second while mounted: the grids age waits from the last overview. */
function useElapsed(store: SupervisorStore): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(t);
  }, []);
  return Math.max(0, Math.floor((now - store.receivedAt.value) / 1000));
}

export function SupervisorApp(props: { store: SupervisorStore }) {
  const store = props.store;
  const o = store.overview.value;
  return (
    <>
      <header class="topbar">
        <span class="brand">Switchboard</span>
        <span class="who">Supervisor view · {store.supervisorId}</span>
        <span class="spacer" />
        <ConnectionIndicator link={store.stream.link} onRetry={() => store.stream.reconnectNow()} />
      </header>
      <Notices store={store} />
      <div class={`supervisor${store.observing.value ? " with-observe" : ""}`}>
        <main class="grids">
          <h1 class="sr-only">Supervisor view</h1>
          {!o ? (
            store.stream.link.value.state === "denied" ? (
              <p>The gateway refused this page: {store.stream.link.value.detail}. A supervisor token is needed.</p>
            ) : (
              <p class="muted">Loading the overview…</p>
            )
          ) : (
            <>
              <QueuesGrid store={store} rows={o.queues} />
              <ConversationsGrid store={store} rows={o.conversations} />
              <AgentsGrid store={store} rows={o.agents} />
            </>
          )}
        </main>
        {store.observing.value && <ObservePanel store={store} />}
      </div>
      <ActionDialog store={store} />
    </>
  );
}

function Notices(props: { store: SupervisorStore }) {
  const notices = props.store.notices.value;
  return (
    <div class="notices">
      <div role="alert" class="notice-group">
        {notices
          .filter((n) => n.tone === "error")
          .map((n) => (
            <div key={n.id} class="notice notice-error">
              <span class="notice-text">{n.text}</span>
              <button type="button" class="icon-button" aria-label="Dismiss notice" onClick={() => props.store.dismiss(n.id)}>
                ×
              </button>
            </div>
          ))}
      </div>
      <div role="status" class="notice-group">
        {notices
          .filter((n) => n.tone === "info")
          .map((n) => (
            <div key={n.id} class="notice notice-info">
              <span class="notice-text">{n.text}</span>
              <button type="button" class="icon-button" aria-label="Dismiss notice" onClick={() => props.store.dismiss(n.id)}>
                ×
              </button>
            </div>
          ))}
      </div>
    </div>
  );
}

function pct(v: number | null | undefined): string {
  if (v === null || v === undefined) return "—";
  return `${Math.round((v <= 1 ? v * 100 : v) * 10) / 10}%`;
}

function QueuesGrid(props: { store: SupervisorStore; rows: QueueRow[] }) {
  const elapsed = useElapsed(props.store);
  return (
    <section class="card" aria-labelledby="h-queues">
      <h2 id="h-queues">
        Queues <span class="count">{props.rows.length}</span>
      </h2>
      {props.rows.length ? (
        <div class="table-wrap">
          <table class="grid">
            <thead>
              <tr>
                <th scope="col">Queue</th>
                <th scope="col" class="num">Waiting</th>
                <th scope="col" class="num">Longest wait</th>
                <th scope="col" class="num">Est. wait</th>
                <th scope="col" class="num">Offered 15m</th>
                <th scope="col" class="num">Assigned 15m</th>
                <th scope="col" class="num">Abandoned 15m</th>
                <th scope="col" class="num">Overflowed 15m</th>
                <th scope="col" class="num">Service level</th>
              </tr>
            </thead>
            <tbody>
              {props.rows.map((q) => (
                <tr key={q.name}>
                  <th scope="row">
                    {q.name}
                    <span class="channels">
                      {(q.channels ?? []).map((c) => (
                        <ChannelMarker key={c} channel={c} />
                      ))}
                    </span>
                  </th>
                  <td class="num">{q.waiting ?? 0}</td>
                  <td class={`num${(q.longest_wait_s ?? 0) > 60 ? " warn" : ""}`}>
                    {q.waiting ? duration((q.longest_wait_s ?? 0) + elapsed) : "—"}
                  </td>
                  <td class="num">{q.estimated_wait_s === null || q.estimated_wait_s === undefined ? "—" : duration(q.estimated_wait_s)}</td>
                  <td class="num">{q.offered_15m ?? 0}</td>
                  <td class="num">{q.assigned_15m ?? 0}</td>
                  <td class="num">{q.abandoned_15m ?? 0}</td>
                  <td class="num">{q.overflowed_15m ?? 0}</td>
                  <td class="num" title={q.service_level_threshold_s ? `answered within ${q.service_level_threshold_s} s` : undefined}>
                    {pct(q.service_level)}
                    {q.service_level_threshold_s ? <span class="muted"> / {q.service_level_threshold_s}s</span> : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <Empty>No queues.</Empty>
      )}
    </section>
  );
}

function AgentsGrid(props: { store: SupervisorStore; rows: AgentRow[] }) {
  const store = props.store;
  const elapsed = useElapsed(store);
  // the base presences, then the custom statuses presence knows (the overview's `statuses`)
  const statuses = [...new Set([...BASE_STATUSES, ...(store.overview.value?.statuses ?? []).map((s) => s.name)])];
  void elapsed; // re-render every second
  const sinceOf = (iso?: string) => (iso ? span(secondsSince(iso, serverNow())) : "");
  return (
    <section class="card" aria-labelledby="h-agents">
      <h2 id="h-agents">
        Agents <span class="count">{props.rows.length}</span>
      </h2>
      {props.rows.length ? (
        <div class="table-wrap">
          <table class="grid">
            <thead>
              <tr>
                <th scope="col">Agent</th>
                <th scope="col">Presence</th>
                <th scope="col">In status</th>
                <th scope="col">Load</th>
                <th scope="col" class="num">Sessions</th>
                <th scope="col">Set status</th>
              </tr>
            </thead>
            <tbody>
              {props.rows.map((a) => (
                <tr key={a.agent_id}>
                  <th scope="row">{a.agent_id}</th>
                  <td>
                    <span class={`status status-${a.presence?.base ?? a.presence?.status ?? "offline"}`}>
                      {(a.presence?.status ?? "offline").replace(/_/g, " ")}
                    </span>
                  </td>
                  <td>{sinceOf(a.presence?.since)}</td>
                  <td>
                    <span class="loads">
                      {Object.entries(a.load ?? {}).map(([ch, l]) => {
                        const used = typeof l === "object" && l ? Number(l.used ?? 0) : Number(l);
                        const limit = typeof l === "object" && l ? Number(l.limit ?? l.max ?? 0) : 0;
                        return (
                          <span key={ch} class={`load${limit && used >= limit ? " full" : ""}`}>
                            {ch} {used}
                            {limit ? `/${limit}` : ""}
                          </span>
                        );
                      })}
                    </span>
                  </td>
                  <td class="num">{a.sessions ?? 0}</td>
                  <td>
                    <select
                      aria-label={`Set status of ${a.agent_id}`}
                      value=""
                      onChange={(e) => {
                        const status = e.currentTarget.value;
                        e.currentTarget.value = "";
                        if (status) store.send("supervisor.set_presence", { agent_id: a.agent_id, status });
                      }}
                    >
                      <option value="">Set…</option>
                      {statuses.map((s) => (
                        <option key={s} value={s}>
                          {s.replace(/_/g, " ")}
                        </option>
                      ))}
                    </select>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <Empty>No agents signed in.</Empty>
      )}
    </section>
  );
}

function customerName(c: ConversationRow): string {
  if (!c.customer) return c.conversation_id;
  return typeof c.customer === "string" ? c.customer : (c.customer.name ?? c.conversation_id);
}

function ConversationsGrid(props: { store: SupervisorStore; rows: ConversationRow[] }) {
  const store = props.store;
  const elapsed = useElapsed(store);
  return (
    <section class="card" aria-labelledby="h-conversations">
      <h2 id="h-conversations">
        Conversations in progress <span class="count">{props.rows.length}</span>
      </h2>
      {props.rows.length ? (
        <div class="table-wrap">
          <table class="grid conversations">
            <thead>
              <tr>
                <th scope="col">Customer</th>
                <th scope="col">Queue</th>
                <th scope="col">State</th>
                <th scope="col">Agent</th>
                <th scope="col" class="num">Wait</th>
                <th scope="col" class="num">Handle</th>
                <th scope="col">Flags</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {props.rows.map((c) => {
                const observed = store.observing.value === c.conversation_id;
                const live = c.state === "assigned";
                return (
                  <tr key={c.conversation_id} class={observed ? "observed" : undefined}>
                    <th scope="row">
                      <ChannelMarker channel={c.channel} /> {customerName(c)}
                      {c.subject && <div class="subject">{c.subject}</div>}
                      <div class="mono muted">{c.conversation_id}</div>
                    </th>
                    <td>{c.queue ?? ""}</td>
                    <td>
                      <span class={`chip state-${c.state}`}>{c.state ?? ""}</span>
                    </td>
                    <td class="nowrap">{c.agent_id ?? "—"}</td>
                    <td class="num">{duration((c.waited_s ?? 0) + (live ? 0 : elapsed))}</td>
                    <td class="num">{c.handle_s === null || c.handle_s === undefined ? "—" : duration(c.handle_s + (live ? elapsed : 0))}</td>
                    <td>
                      {(c.flags ?? []).map((f) => (
                        <span key={f} class={`flag flag-${f}`}>
                          {FLAG_TEXT[f] ?? f}
                        </span>
                      ))}
                    </td>
                    <td>
                      <div class="actions">
                      <button type="button" class="secondary small" aria-pressed={observed} onClick={() => store.observe(c.conversation_id)}>
                        Observe
                      </button>
                      <button type="button" class="secondary small" disabled={!live} onClick={() => store.observe(c.conversation_id, "whisper")}>
                        Whisper
                      </button>
                      <button type="button" class="secondary small" disabled={!live} onClick={() => store.observe(c.conversation_id, "barge")}>
                        Barge
                      </button>
                      <button
                        type="button"
                        class="ghost small"
                        onClick={() => (store.dialog.value = { kind: "transfer", conversationId: c.conversation_id })}
                      >
                        Force transfer
                      </button>
                      <button
                        type="button"
                        class="ghost small danger-text"
                        onClick={() => (store.dialog.value = { kind: "close", conversationId: c.conversation_id })}
                      >
                        Force close
                      </button>
                      </div>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      ) : (
        <Empty>No conversations in progress.</Empty>
      )}
    </section>
  );
}

function ObservePanel(props: { store: SupervisorStore }) {
  const store = props.store;
  const id = store.observing.value as string;
  const messages = store.transcript.value;
  const mode = store.mode.value;
  const text = useSignal("");
  const log = useRef<HTMLDivElement>(null);
  const box = useRef<HTMLTextAreaElement>(null);
  useLayoutEffect(() => {
    if (log.current) log.current.scrollTop = log.current.scrollHeight;
  }, [messages]);
  useEffect(() => box.current?.focus(), [id, mode]);
  const post = () => {
    const body = text.value.trim();
    if (mode === "whisper" && !body) return;
    const data: Record<string, unknown> = { conversation_id: id };
    if (body) data.text = body;
    if (store.send(mode === "whisper" ? "supervisor.whisper" : "supervisor.barge", data)) text.value = "";
  };
  return (
    <aside class="observe" aria-label="Observed conversation">
      <div class="observe-head">
        <h2>Observing</h2>
        <span class="mono">{id}</span>
        <button type="button" class="ghost small" onClick={() => store.stopObserving()}>
          Stop observing
        </button>
      </div>
      <div class="transcript" role="log" aria-label={`Transcript of ${id}`} tabIndex={0} ref={log}>
        {messages.length ? (
          <ol class="messages">
            {messages.map((m) => (
              <ObservedLine key={m.message_id} m={m} />
            ))}
          </ol>
        ) : (
          <p class="empty">Waiting for the transcript…</p>
        )}
      </div>
      <form
        class={`composer${mode === "whisper" ? " composer-internal" : ""}`}
        onSubmit={(e) => {
          e.preventDefault();
          post();
        }}
      >
        <fieldset class="radio-row">
          <legend>Post as</legend>
          <label>
            <input type="radio" name="observe-mode" checked={mode === "whisper"} onChange={() => (store.mode.value = "whisper")} /> whisper
            (agent only)
          </label>
          <label>
            <input type="radio" name="observe-mode" checked={mode === "barge"} onChange={() => (store.mode.value = "barge")} /> barge
            (customer sees it)
          </label>
        </fieldset>
        <label for="supervisor-text" class="composer-label">
          Supervisor message
        </label>
        <textarea
          id="supervisor-text"
          ref={box}
          rows={3}
          value={text.value}
          onInput={(e) => (text.value = e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
              e.preventDefault();
              post();
            }
          }}
        />
        <div class="composer-bar">
          <span class="muted">{mode === "whisper" ? "Only the agent sees a whisper." : "Barging joins you to the conversation."}</span>
          <button type="submit" class="primary">
            Post
          </button>
        </div>
      </form>
    </aside>
  );
}

const SENDERS: Record<string, string> = { customer: "Customer", agent: "Agent", supervisor: "Supervisor", bot: "Bot" };

function ObservedLine(props: { m: ObservedMessage }) {
  const m = props.m;
  const internal = m.visibility === "internal";
  const who = m.sender === "customer" || m.sender === "bot" ? SENDERS[m.sender] : `${SENDERS[m.sender] ?? m.sender}${m.sender_id ? ` ${m.sender_id}` : ""}`;
  return (
    <li class={`msg msg-${m.sender}${internal ? " msg-internal" : ""}`}>
      <div class="msg-head">
        <span class="msg-sender">{who}</span>
        {internal && <span class="chip chip-internal">Internal</span>}
        <time dateTime={m.time}>{clockTime(m.time)}</time>
      </div>
      <div class="msg-text">{m.text}</div>
    </li>
  );
}

function ActionDialog(props: { store: SupervisorStore }) {
  const store = props.store;
  const d = store.dialog.value;
  const [mode, setMode] = useState<"queue" | "agent">("queue");
  const [value, setValue] = useState("");
  const agents = store.overview.value?.agents.map((a) => a.agent_id) ?? [];
  const queues = store.overview.value?.queues.map((q) => q.name) ?? [];
  const done = () => {
    store.dialog.value = null;
    setValue("");
  };
  const title = d?.kind === "close" ? "Force close" : "Force transfer";
  return (
    <Modal open={Boolean(d)} title={d ? `${title} ${d.conversationId}` : title} onClose={done}>
      {d && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const v = value.trim();
            if (!v) return;
            const ok =
              d.kind === "close"
                ? store.send("supervisor.force_close", { conversation_id: d.conversationId, reason: v })
                : store.send("supervisor.force_transfer", {
                    conversation_id: d.conversationId,
                    ...(mode === "queue" ? { to_queue: v } : { to_agent: v }),
                  });
            if (ok) done();
          }}
        >
          {d.kind === "transfer" ? (
            <>
              <fieldset class="radio-row">
                <legend>Transfer to</legend>
                <label>
                  <input type="radio" name="ft-mode" checked={mode === "queue"} onChange={() => setMode("queue")} /> a queue
                </label>
                <label>
                  <input type="radio" name="ft-mode" checked={mode === "agent"} onChange={() => setMode("agent")} /> an agent
                </label>
              </fieldset>
              <div class="form-row">
                <label for="ft-target">{mode === "queue" ? "Queue" : "Agent"}</label>
                <select id="ft-target" required value={value} onChange={(e) => setValue(e.currentTarget.value)}>
                  <option value="">Choose…</option>
                  {(mode === "queue" ? queues : agents).map((x) => (
                    <option key={x} value={x}>
                      {x}
                    </option>
                  ))}
                </select>
              </div>
            </>
          ) : (
            <div class="form-row">
              <label for="fc-reason">Reason (recorded and shown to the agent)</label>
              <input id="fc-reason" type="text" required value={value} onInput={(e) => setValue(e.currentTarget.value)} />
            </div>
          )}
          <div class="dialog-actions">
            <button type="button" class="secondary" onClick={done}>
              Cancel
            </button>
            <button type="submit" class={d.kind === "close" ? "danger" : "primary"}>
              {d.kind === "close" ? "Close conversation" : "Transfer now"}
            </button>
          </div>
        </form>
      )}
    </Modal>
  );
}
