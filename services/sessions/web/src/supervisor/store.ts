// The supervisor page's store: the overview (queues, agents, conversations) loaded once, then
// kept current by the stream's full refreshes and events; one observed conversation at a time.
import { batch, signal } from "@preact/signals";
import { Stream, uuid, wsUrl, type Frame } from "../lib/socket";
import { syncClock } from "../lib/clock";
import { metrics, timed } from "../lib/metrics";

export interface QueueRow {
  name: string;
  channels?: string[];
  waiting?: number;
  longest_wait_s?: number;
  estimated_wait_s?: number | null;
  offered_15m?: number;
  assigned_15m?: number;
  abandoned_15m?: number;
  overflowed_15m?: number;
  service_level?: number | null;
  service_level_threshold_s?: number;
}

export interface AgentRow {
  agent_id: string;
  presence?: { status: string; base?: string; since?: string; colour?: string };
  load?: Record<string, { used?: number; limit?: number; max?: number } | number>;
  sessions?: number;
}

export interface ConversationRow {
  conversation_id: string;
  channel?: string;
  queue?: string;
  agent_id?: string | null;
  customer?: string | { name?: string } | null;
  waited_s?: number;
  handle_s?: number | null;
  state?: string;
  subject?: string | null;
  flags?: string[];
}

export interface Overview {
  server_time?: string;
  seq?: number;
  queues: QueueRow[];
  agents: AgentRow[];
  conversations: ConversationRow[];
  statuses?: { name: string; base?: string; colour?: string }[];
}

export interface ObservedMessage {
  message_id: string;
  sender: string;
  sender_id?: string;
  visibility?: string;
  text: string;
  time?: string;
}

export interface Notice {
  id: number;
  tone: "error" | "info";
  text: string;
}

export type ObserveMode = "whisper" | "barge";

export class SupervisorStore {
  readonly stream: Stream;
  readonly overview = signal<Overview | null>(null);
  /** Client time (ms) when the overview arrived: waits and handle times grow from there. */
  readonly receivedAt = signal(Date.now());
  readonly observing = signal<string | null>(null);
  readonly mode = signal<ObserveMode>("whisper");
  readonly transcript = signal<ObservedMessage[]>([]);
  readonly notices = signal<Notice[]>([]);
  readonly dialog = signal<{ kind: "transfer" | "close"; conversationId: string } | null>(null);
  private noticeId = 0;
  private readonly pending = new Map<string, string>();

  constructor(
    readonly supervisorId: string,
    private readonly token: string,
  ) {
    this.stream = new Stream(
      () => wsUrl("/supervisor/stream", { token }),
      (f) => this.onFrame(f),
      () => {
        const c = this.observing.value;
        if (c) this.send("supervisor.observe", { conversation_id: c }); // resume observing after a reconnect
      },
    );
  }

  async start(): Promise<void> {
    try {
      const res = await fetch(`/supervisor/overview?token=${encodeURIComponent(this.token)}`);
      const body = await res.json().catch(() => ({}));
      if (res.ok) this.loadOverview(body as Overview);
      else this.notify("error", body.error ?? body.reason ?? `the overview could not be read (${res.status})`);
    } catch {
      this.notify("error", "the overview could not be read: is the gateway running?");
    }
    this.stream.start();
  }

  private loadOverview(o: Overview): void {
    const first = metrics.firstRender === null;
    timed(
      () => {
        syncClock(o.server_time);
        batch(() => {
          this.overview.value = { ...o, queues: o.queues ?? [], agents: o.agents ?? [], conversations: o.conversations ?? [] };
          this.receivedAt.value = Date.now();
        });
      },
      (ms) => {
        if (first) metrics.firstRender = ms;
      },
    );
  }

  onFrame(f: Frame): void {
    switch (f.kind) {
      case "overview":
        this.loadOverview(f.overview as Overview);
        break;
      case "event":
        this.applyEvent(f.event as { type: string; data: Record<string, any> });
        break;
      case "transcript":
        if (f.conversation_id === this.observing.value) this.transcript.value = (f.messages as ObservedMessage[]) ?? [];
        break;
      case "message": {
        const m = f.message as ObservedMessage;
        if (f.conversation_id === this.observing.value && m && !this.transcript.value.some((x) => x.message_id === m.message_id))
          this.transcript.value = [...this.transcript.value, m];
        break;
      }
      case "accepted": {
        const type = this.pending.get(String(f.command_id)) ?? String(f.type ?? "");
        this.pending.delete(String(f.command_id));
        const done: Record<string, string> = {
          "supervisor.whisper": "Whisper sent to the agent.",
          "supervisor.barge": "You joined the conversation.",
          "supervisor.force_transfer": "Transfer requested.",
          "supervisor.force_close": "Close requested.",
          "supervisor.set_presence": "Presence change requested.",
        };
        if (done[type]) this.notify("info", done[type]);
        break;
      }
      case "error":
        this.notify("error", String(f.reason ?? "the command was refused"));
        break;
    }
  }

  private applyEvent(ev: { type: string; data: Record<string, any> }): void {
    const o = this.overview.value;
    if (!o || !ev?.data) return;
    const d = ev.data;
    if ((ev.type === "presence.changed" || ev.type === "presence.updated") && d.agent_id) {
      this.overview.value = {
        ...o,
        agents: o.agents.map((a) =>
          a.agent_id === d.agent_id
            ? { ...a, presence: { status: d.status, base: d.base, since: new Date().toISOString(), colour: d.colour } }
            : a,
        ),
      };
    } else if (ev.type === "message.received" && d.conversation_id === this.observing.value) {
      this.onFrame({ kind: "message", conversation_id: d.conversation_id, message: d });
    }
  }

  send(type: string, data: Record<string, unknown>): boolean {
    const id = uuid();
    if (!this.stream.send({ id, type, data })) {
      this.notify("error", `Not connected: "${type}" was not sent; the page reconnects by itself.`);
      return false;
    }
    this.pending.set(id, type);
    return true;
  }

  observe(conversationId: string, mode?: ObserveMode): void {
    if (mode) this.mode.value = mode;
    if (this.observing.value === conversationId) return;
    batch(() => {
      this.observing.value = conversationId;
      this.transcript.value = [];
    });
    this.send("supervisor.observe", { conversation_id: conversationId });
  }

  stopObserving(): void {
    this.observing.value = null;
    this.transcript.value = [];
  }

  notify(tone: Notice["tone"], text: string): void {
    const id = ++this.noticeId;
    this.notices.value = [...this.notices.value.slice(-4), { id, tone, text }];
    if (tone === "info") window.setTimeout(() => this.dismiss(id), 8000);
  }

  dismiss(id: number): void {
    this.notices.value = this.notices.value.filter((n) => n.id !== id);
  }
}
