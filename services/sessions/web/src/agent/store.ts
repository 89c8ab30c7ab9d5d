// The agent page's one store: loaded from the snapshot, fed by the stream, changed by nothing
// else. Each session keeps its own signals, so an event for one session re-renders only the
// parts of the screen that show it (a message for a background session touches its badge, not
// the focused transcript).
import { batch, computed, signal, type Signal } from "@preact/signals";
import { playOfferSound } from "../lib/sound";
import { Stream, uuid, wsUrl, type Frame } from "../lib/socket";
import { syncClock } from "../lib/clock";
import { metrics, recordSwitch, timed } from "../lib/metrics";
import type {
  Article,
  ArticleHit,
  CaseSummary,
  CloudEvent,
  Dashboard,
  Disposition,
  Draft,
  Message,
  Offer,
  Pane,
  Presence,
  Profile,
  SessionRow,
  Status,
  Tab,
  Workspace,
} from "./types";

export const HOME = "home";
const BASE_STATUSES: Status[] = [
  { name: "available", base: "available" },
  { name: "busy", base: "busy" },
  { name: "busy_dnd", base: "busy_dnd" },
  { name: "away", base: "away" },
  { name: "offline", base: "offline" },
];

export class SessionState {
  readonly id: string;
  readonly kind: string;
  readonly conversationId: string | null;
  readonly channel: string | null;
  readonly openedAt: string | undefined;
  readonly title: Signal<string>;
  readonly icon: Signal<string>;
  readonly unread = signal(0);
  readonly badge = signal("");
  readonly tabs = signal<Tab[]>([]);
  readonly focusedTab = signal("anchor");
  readonly pane = signal<Pane>({});
  readonly transcript = signal<Message[]>([]);
  readonly more = signal(false);
  readonly loadingOlder = signal(false);
  readonly drafts = signal<Record<string, Draft>>({});
  /** Bumped when a save was refused as stale and the drafts now hold the server's fields. */
  readonly draftReloads = signal(0);
  /** What the agent is typing in the Message box; kept here so switching sessions keeps it. */
  readonly composer = signal("");
  readonly internal = signal(false);
  readonly suggestionId = signal<string | null>(null);
  readonly dismissed = signal<ReadonlySet<string>>(new Set());
  /** Suggested replies whose rejection is on its way to assist. */
  readonly rejecting = signal<ReadonlySet<string>>(new Set());
  /** The case summary as assist saved it (this page's Save), and whether a save is on its way. */
  readonly caseSummarySaved = signal<SavedCaseSummary | null>(null);
  readonly caseSummarySaving = signal(false);

  constructor(row: SessionRow) {
    this.id = row.session_id;
    this.kind = row.kind ?? "conversation";
    this.conversationId = row.conversation_id ?? null;
    this.channel = row.channel ?? null;
    this.openedAt = row.opened_at;
    this.title = signal(row.title ?? row.session_id);
    this.icon = signal(row.icon ?? (row.title ?? "?").slice(0, 2));
    this.unread.value = row.unread ?? 0;
    this.badge.value = row.badge ?? badgeOf(row.unread ?? 0);
    this.tabs.value = (row.tabs ?? []).map((t) => ({ ...t, anchor: t.anchor ?? t.tab_id === "anchor" }));
    this.focusedTab.value = row.focused_tab ?? "anchor";
    this.pane.value = row.pane ?? {};
    this.transcript.value = row.transcript ?? [];
    this.composer.value = readComposer(this.id);
    this.dismissed.value = readDismissed(this.id);
    this.more.value = row.transcript_more ?? false;
    const drafts: Record<string, Draft> = {};
    for (const d of row.drafts ?? []) drafts[d.tab_id] = { version: d.version, fields: d.fields ?? {} };
    this.drafts.value = drafts;
  }
}

export interface SavedCaseSummary {
  summary: CaseSummary;
  saved_at?: string | null;
  saved_by?: string | null;
}

export interface Notice {
  id: number;
  tone: "error" | "info";
  text: string;
}

interface PendingCommand {
  type: string;
  data: Record<string, unknown>;
  sentAt: number;
}

interface DraftQueue {
  inflight: string | null; // command id of the save on its way
  inflightFields: Record<string, unknown> | null;
  next: Record<string, unknown> | null; // fields typed meanwhile, sent once the save lands
  base: number | null; // the version the agent's edit started from
  editing: boolean; // keystrokes not yet handed to saveDraft
}

/** JSON with sorted keys, to recognise our own save coming back. */
function stable(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === "object" && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : x,
  );
}

/** The reply box's text survives a reload of this browser tab (sessionStorage, per session). */
export function readComposer(sessionId: string): string {
  try {
    return sessionStorage.getItem(`switchboard.composer.${sessionId}`) ?? "";
  } catch {
    return "";
  }
}

export function keepComposer(sessionId: string, text: string): void {
  try {
    if (text) sessionStorage.setItem(`switchboard.composer.${sessionId}`, text);
    else sessionStorage.removeItem(`switchboard.composer.${sessionId}`);
  } catch {
    /* storage disabled: the text lives as long as the page */
  }
}

/** Suggested replies the agent rejected or used, per session, for as long as this browser tab
 * lives (the pane's replies come from the server, which does not know the verdicts). */
function readDismissed(sessionId: string): ReadonlySet<string> {
  try {
    return new Set(JSON.parse(sessionStorage.getItem(`switchboard.dismissed.${sessionId}`) ?? "[]") as string[]);
  } catch {
    return new Set();
  }
}

export function dismissSuggestion(s: SessionState, id: string): void {
  const next = new Set([...s.dismissed.value, id]);
  s.dismissed.value = next;
  try {
    sessionStorage.setItem(`switchboard.dismissed.${s.id}`, JSON.stringify([...next].slice(-100)));
  } catch {
    /* storage disabled: the set lives as long as the page */
  }
}

function badgeOf(unread: number): string {
  return unread <= 0 ? "" : unread > 9 ? "9+" : String(unread);
}

export class AgentStore {
  readonly agentId: string;
  readonly stream: Stream;
  seq = 0;
  readonly loaded = signal(false);
  readonly focused = signal<string>(HOME);
  readonly order = signal<string[]>([]);
  readonly sessions = new Map<string, SessionState>();
  readonly offers = signal<Offer[]>([]);
  readonly profile = signal<Profile>({});
  readonly presence = signal<Presence | null>(null);
  readonly statuses = signal<Status[]>([]);
  readonly channels = signal<string[]>([]);
  readonly dashboard = signal<Dashboard>({});
  /** Client time the dashboard arrived: waiting times grow from there. */
  dashboardAt = Date.now();
  readonly dispositions = signal<Disposition[]>([]);
  readonly closedRows = signal<SessionRow[]>([]);
  readonly notices = signal<Notice[]>([]);
  readonly kbResults = signal<Record<string, ArticleHit[] | "loading">>({});
  readonly articles = signal<Record<string, Article | "loading">>({});
  readonly closing = signal<string | null>(null); // session whose close dialog is open
  readonly transferring = signal<string | null>(null);
  readonly focusedSession = computed(() => this.sessionSignalled(this.focused.value));
  private readonly version = signal(0); // bumps when the session map is rebuilt
  private readonly pending = new Map<string, PendingCommand>();
  private readonly draftQueues = new Map<string, DraftQueue>();
  private noticeId = 0;

  constructor(agentId: string, token: string, device: string) {
    this.agentId = agentId;
    this.stream = new Stream(
      () =>
        wsUrl(`/agents/${encodeURIComponent(agentId)}/stream`, {
          token,
          device,
          after_seq: this.loaded.value ? this.seq : undefined,
        }),
      (frame) => this.onFrame(frame),
    );
  }

  private sessionSignalled(id: string): SessionState | null {
    void this.version.value;
    return this.sessions.get(id) ?? null;
  }

  session(id: string): SessionState | null {
    return this.sessions.get(id) ?? null;
  }

  byConversation(conversationId: string | null | undefined): SessionState | null {
    if (!conversationId) return null;
    for (const s of this.sessions.values()) if (s.conversationId === conversationId) return s;
    return null;
  }

  // --- frames and events -----------------------------------------------------------------------

  onFrame(frame: Frame): void {
    switch (frame.kind) {
      case "snapshot": {
        const first = metrics.firstRender === null;
        timed(
          () => this.load(frame.workspace as Workspace),
          (ms) => {
            if (first) metrics.firstRender = ms;
          },
        );
        break;
      }
      case "resumed":
        break; // the events after our seq follow
      case "event":
        this.apply(frame.event as CloudEvent);
        break;
      case "accepted":
        // published (a refusal comes later as command.rejected, matched by command_id), or done
        // at once: assist's answers to suggestion.feedback and case_summary.save
        this.assistDone(frame);
        break;
      case "error":
        this.readFailed(frame.type as string | undefined);
        this.assistFailed(frame);
        this.notify("error", String(frame.reason ?? "the gateway refused the command"));
        break;
      case "dashboard":
        if (frame.dashboard) {
          this.dashboardAt = Date.now();
          this.dashboard.value = frame.dashboard as Dashboard;
        }
        break;
      case "history":
        this.prependHistory(String(frame.conversation_id), (frame.messages as Message[]) ?? [], Boolean(frame.more));
        break;
      case "kb_results":
        this.kbResults.value = { ...this.kbResults.value, [String(frame.query)]: (frame.results as ArticleHit[]) ?? [] };
        break;
      case "kb_article": {
        const article = frame.article as Article;
        if (article?.id) this.articles.value = { ...this.articles.value, [article.id]: article };
        break;
      }
    }
  }

  load(w: Workspace): void {
    syncClock(w.server_time);
    batch(() => {
      this.seq = w.seq ?? 0;
      const previous = new Map(this.sessions);
      this.sessions.clear();
      const order: string[] = [];
      const closed: SessionRow[] = [];
      for (const row of w.sessions ?? []) {
        if (row.session_id === HOME) continue;
        if (row.status && row.status !== "open") {
          closed.push(row);
          continue;
        }
        const state = new SessionState(row);
        const before = previous.get(row.session_id);
        if (before) {
          // a fresh snapshot (reconnect too late to resume) keeps what the agent was typing
          state.composer.value = before.composer.value;
          state.internal.value = before.internal.value;
          state.suggestionId.value = before.suggestionId.value;
          state.dismissed.value = before.dismissed.value;
          state.caseSummarySaved.value = before.caseSummarySaved.value;
        }
        this.sessions.set(row.session_id, state);
        order.push(row.session_id);
      }
      this.order.value = order;
      this.closedRows.value = closed;
      this.version.value++;
      const focus = w.focused_session ?? HOME;
      this.focused.value = this.sessions.has(focus) ? focus : HOME;
      this.offers.value = (w.offers ?? []).filter((o) => !o.status || o.status === "pending");
      this.profile.value = w.profile ?? {};
      this.presence.value = w.presence ?? null;
      this.statuses.value = w.statuses?.length ? w.statuses : BASE_STATUSES;
      this.channels.value = w.channels ?? [];
      this.dashboard.value = w.dashboard ?? {};
      this.dashboardAt = Date.now();
      this.dispositions.value = w.dispositions ?? [];
      this.draftQueues.clear();
      this.loaded.value = true;
    });
  }

  apply(ev: CloudEvent): void {
    const d = ev.data ?? {};
    if (typeof d.seq === "number") {
      if (d.seq <= this.seq) return; // already in the snapshot or seen before a reconnect
      this.seq = d.seq;
    }
    const s = d.session_id ? this.sessions.get(d.session_id) : undefined;
    batch(() => {
      switch (ev.type) {
        case "offer.received":
          if (!this.offers.value.some((o) => o.offer_id === d.offer_id)) {
            this.offers.value = [...this.offers.value, d as Offer];
            playOfferSound(d.notification?.sound ?? this.profile.value.offer_notifications?.sound);
          }
          break;
        case "offer.withdrawn":
        case "offer.accepted":
        case "offer.rejected": {
          const offer = this.offers.value.find((o) => o.offer_id === d.offer_id);
          this.offers.value = this.offers.value.filter((o) => o.offer_id !== d.offer_id);
          if (ev.type === "offer.withdrawn" && offer)
            this.notify("info", `The offer of ${offer.title || offer.conversation_id} was withdrawn (${d.reason ?? "expired"}).`);
          break;
        }
        case "session.started":
          if (!this.sessions.has(d.session_id)) {
            if (!d.transcript && d.conversation_id) window.setTimeout(() => this.history(d.conversation_id), 0);
            this.refreshDashboard();
            const row: SessionRow = {
              session_id: d.session_id,
              conversation_id: d.conversation_id,
              channel: d.channel,
              title: d.title,
              icon: d.icon,
              opened_at: ev.time ?? new Date().toISOString(),
              transcript: d.transcript,
              transcript_more: d.transcript_more,
            };
            this.sessions.set(d.session_id, new SessionState(row));
            this.order.value = [...this.order.value, d.session_id];
            this.version.value++;
          }
          break;
        case "session.focused":
          this.focus(d.session_id);
          break;
        case "session.retitled":
          if (s) {
            s.title.value = d.title;
            s.icon.value = d.icon;
          }
          break;
        case "session.unread_changed":
          if (s) {
            s.unread.value = d.unread;
            s.badge.value = d.badge ?? badgeOf(d.unread);
          }
          break;
        case "session.closed":
          this.refreshDashboard();
          if (s) {
            this.sessions.delete(d.session_id);
            this.order.value = this.order.value.filter((id) => id !== d.session_id);
            this.closedRows.value = [
              { session_id: s.id, conversation_id: s.conversationId, channel: s.channel, title: s.title.value, closed_at: ev.time },
              ...this.closedRows.value,
            ];
            this.version.value++;
            if (this.focused.value === d.session_id) this.focused.value = HOME;
            keepComposer(s.id, "");
            try {
              sessionStorage.removeItem(`switchboard.dismissed.${s.id}`);
            } catch {
              /* nothing kept */
            }
            if (d.reason) this.notify("info", `${s.title.value}: the session ended (${d.reason}).`);
          }
          break;
        case "tab.opened":
          if (s && !s.tabs.value.some((t) => t.tab_id === d.tab_id))
            s.tabs.value = [
              ...s.tabs.value,
              { tab_id: d.tab_id, kind: d.kind, title: d.title, anchor: d.tab_id === "anchor", target: d.target ?? {} },
            ];
          break;
        case "tab.focused":
          if (s) s.focusedTab.value = d.tab_id;
          break;
        case "tab.closed":
          if (s) {
            s.tabs.value = s.tabs.value.filter((t) => t.tab_id !== d.tab_id);
            if (s.focusedTab.value === d.tab_id) s.focusedTab.value = "anchor";
          }
          break;
        case "draft.saved":
          if (s) this.draftSaved(s, d.tab_id, d.version, d.fields);
          break;
        case "pane.updated":
          if (s) s.pane.value = { ...s.pane.value, ...(d.pane ?? {}) };
          break;
        case "message.received":
          this.messageReceived(d);
          break;
        case "presence.changed":
        case "presence.updated":
          this.presence.value = {
            status: d.status,
            base: d.base,
            closed_channels: d.closed_channels ?? this.presence.value?.closed_channels ?? [],
            since: ev.time ?? new Date().toISOString(),
            source: d.source,
            colour: d.colour,
          };
          if (presenceWorthTelling(d, this.agentId))
            this.notify("info", `Presence changed to ${d.status}${d.reason ? ` (${d.reason})` : ""}`);
          break;
        case "supervisor.action":
          this.notify("info", supervisorNotice(d));
          break;
        case "dashboard.updated":
          if (d.dashboard) {
            this.dashboardAt = Date.now();
            this.dashboard.value = d.dashboard;
          }
          break;
        case "command.rejected":
          this.rejected(d);
          break;
      }
    });
  }

  private messageReceived(d: Record<string, any>): void {
    const s: SessionState | null = (d.session_id && this.sessions.get(d.session_id)) || this.byConversation(d.conversation_id);
    if (!s) return;
    const msg: Message = {
      message_id: d.message_id,
      sender: d.sender,
      sender_id: d.sender_id,
      visibility: d.visibility,
      text: d.text,
      time: d.time,
      delivery: d.delivery ?? "sent", // delivered to this page: it was stored and posted
    };
    const list = s.transcript.value;
    if (list.some((m) => m.message_id === msg.message_id)) return;
    // our own message coming back: it replaces the copy shown while it was on its way
    let mine = d.command_id ? list.findIndex((m) => m.message_id === `local-${d.command_id}`) : -1;
    if (mine < 0) mine = list.findIndex((m) => m.pending && m.text === msg.text && msg.sender === "agent");
    if (mine >= 0) {
      const next = list.slice();
      next[mine] = msg;
      s.transcript.value = next;
    } else {
      s.transcript.value = [...list, msg];
    }
  }

  private prependHistory(conversationId: string, messages: Message[], more: boolean): void {
    const s = this.byConversation(conversationId);
    if (!s) return;
    const known = new Set(s.transcript.value.map((m) => m.message_id));
    batch(() => {
      s.transcript.value = [...messages.filter((m) => !known.has(m.message_id)), ...s.transcript.value];
      s.more.value = more;
      s.loadingOlder.value = false;
    });
  }

  private rejected(d: Record<string, any>): void {
    const cmd = this.pending.get(d.command_id);
    if (!cmd) return; // another device's command: that device tells its user
    this.pending.delete(d.command_id);
    const type = d.command_type ?? cmd.type;
    if (type === "draft.save") {
      const session = this.sessions.get(String(cmd.data.session_id));
      const tabId = String(cmd.data.tab_id);
      this.draftQueues.delete(`${cmd.data.session_id}/${tabId}`);
      if (session && typeof d.current_version === "number") {
        session.drafts.value = {
          ...session.drafts.value,
          [tabId]: { version: d.current_version, fields: d.current_fields ?? {} },
        };
        session.draftReloads.value++;
        this.notify("error", "This form was changed elsewhere (another device?): it now shows the saved version.");
        return;
      }
    }
    if (type === "message.send") {
      const session = this.sessions.get(String(cmd.data.session_id));
      if (session) session.transcript.value = session.transcript.value.filter((m) => !(m.pending && m.text === cmd.data.text));
    }
    this.notify("error", d.reason ?? "the command was refused");
  }

  // --- commands ------------------------------------------------------------------------------

  /** Sends a command; returns its id, or null when not connected (the user is told). */
  send(type: string, data: Record<string, unknown>): string | null {
    const id = uuid();
    if (!this.stream.send({ id, type, data })) {
      this.notify("error", `Not connected: "${type}" was not sent. The page reconnects by itself; try again then.`);
      return null;
    }
    this.pending.set(id, { type, data, sentAt: performance.now() });
    if (this.pending.size > 200) this.pending.delete(this.pending.keys().next().value as string);
    return id;
  }

  /** Shows the session at once (a view choice) and tells the server, which confirms it. */
  switchTo(sessionId: string): void {
    if (sessionId !== HOME && !this.sessions.has(sessionId)) return;
    if (this.focused.value !== sessionId) this.focus(sessionId);
    this.send("session.focus", { session_id: sessionId });
  }

  private focus(sessionId: string): void {
    const target = sessionId === HOME || this.sessions.has(sessionId) ? sessionId : HOME;
    if (this.focused.value === target) return;
    timed(
      () => (this.focused.value = target),
      (ms) => recordSwitch(target, ms),
    );
  }

  /** Moves focus by `delta` in the session panel's order (Home first), wrapping around. */
  step(delta: number): void {
    const ids = [HOME, ...this.order.value];
    const at = Math.max(0, ids.indexOf(this.focused.value));
    this.switchTo(ids[(at + delta + ids.length) % ids.length]);
  }

  sendMessage(s: SessionState, text: string, internal: boolean): boolean {
    const body = text.trim();
    if (!body) return false;
    const data: Record<string, unknown> = { session_id: s.id, text: body, visibility: internal ? "internal" : "public" };
    const suggestion = s.suggestionId.value;
    if (suggestion && !internal) data.suggestion_id = suggestion;
    const commandId = this.send("message.send", data);
    if (!commandId) return false;
    batch(() => {
      s.transcript.value = [
        ...s.transcript.value,
        {
          message_id: `local-${commandId}`,
          sender: "agent",
          sender_id: this.agentId,
          visibility: internal ? "internal" : "public",
          text: body,
          time: new Date().toISOString(),
          pending: true,
        },
      ];
      s.suggestionId.value = null;
      // sent: assist takes it as used (or edited); the pane no longer offers it
      if (suggestion && !internal) dismissSuggestion(s, suggestion);
    });
    return true;
  }

  /** The newest page of a conversation (a session that started without its transcript). */
  private history(conversationId: string): void {
    const s = this.byConversation(conversationId);
    if (!s || s.loadingOlder.value) return;
    if (this.send("conversation.history", { conversation_id: conversationId })) s.loadingOlder.value = true;
  }

  private dashboardTimer: number | undefined;

  /** Asks for Home's dashboard again (debounced): after sessions start or close, and while Home shows. */
  refreshDashboard(): void {
    window.clearTimeout(this.dashboardTimer);
    this.dashboardTimer = window.setTimeout(() => {
      if (this.stream.link.value.state === "online") this.stream.send({ id: uuid(), type: "dashboard.get", data: {} });
    }, 300);
  }

  /** Tells assist the agent rejects a suggested reply; it leaves the pane once assist has it. */
  rejectSuggestion(s: SessionState, suggestionId: string): void {
    if (s.rejecting.value.has(suggestionId)) return;
    if (this.send("suggestion.feedback", { suggestion_id: suggestionId, verdict: "rejected" }))
      s.rejecting.value = new Set([...s.rejecting.value, suggestionId]);
  }

  /** Saves the agent's reviewed case summary with assist (for the conversation of `s`). */
  saveCaseSummary(s: SessionState, summary: CaseSummary): void {
    if (!s.conversationId || s.caseSummarySaving.value) return;
    if (this.send("case_summary.save", { ...summary, conversation_id: s.conversationId })) s.caseSummarySaving.value = true;
  }

  private assistDone(frame: Frame): void {
    const cmd = this.pending.get(String(frame.command_id));
    if (!cmd || (cmd.type !== "suggestion.feedback" && cmd.type !== "case_summary.save")) return;
    this.pending.delete(String(frame.command_id));
    if (cmd.type === "suggestion.feedback") {
      const id = String(cmd.data.suggestion_id);
      for (const s of this.sessions.values()) {
        if (!s.rejecting.value.has(id)) continue;
        batch(() => {
          dismissSuggestion(s, id);
          s.rejecting.value = new Set([...s.rejecting.value].filter((x) => x !== id));
        });
      }
      return;
    }
    const s = this.byConversation(String(cmd.data.conversation_id));
    if (!s) return;
    const saved = (frame.case_summary ?? {}) as { saved?: CaseSummary; saved_at?: string; saved_by?: string };
    const { conversation_id: _cid, ...sent } = cmd.data;
    const summary = (saved.saved ?? sent) as CaseSummary;
    batch(() => {
      s.caseSummarySaving.value = false;
      s.caseSummarySaved.value = { summary, saved_at: saved.saved_at, saved_by: saved.saved_by };
    });
    // kept with the session's drafts too, so a reload still shows the reviewed version
    this.saveDraft(s, "anchor", { case_summary: summary });
  }

  private assistFailed(frame: Frame): void {
    const cmd = this.pending.get(String(frame.command_id));
    if (!cmd) return;
    this.pending.delete(String(frame.command_id));
    if (cmd.type === "suggestion.feedback") {
      const id = String(cmd.data.suggestion_id);
      for (const s of this.sessions.values())
        if (s.rejecting.value.has(id)) s.rejecting.value = new Set([...s.rejecting.value].filter((x) => x !== id));
    } else if (cmd.type === "case_summary.save") {
      const s = this.byConversation(String(cmd.data.conversation_id));
      if (s) s.caseSummarySaving.value = false;
    }
  }

  /** A read the gateway could not answer: stop showing it as loading. */
  private readFailed(type: string | undefined): void {
    if (type === "kb.search") {
      const next = { ...this.kbResults.value };
      for (const [q, r] of Object.entries(next)) if (r === "loading") next[q] = [];
      this.kbResults.value = next;
    } else if (type === "kb.article") {
      this.articles.value = Object.fromEntries(Object.entries(this.articles.value).filter(([, a]) => a !== "loading"));
    } else if (type === "conversation.history") {
      for (const s of this.sessions.values()) s.loadingOlder.value = false;
    }
  }

  loadOlder(s: SessionState): void {
    const first = s.transcript.value.find((m) => !m.pending);
    if (!s.conversationId || s.loadingOlder.value) return;
    if (this.send("conversation.history", { conversation_id: s.conversationId, before_message_id: first?.message_id }))
      s.loadingOlder.value = true;
  }

  /** The agent started changing a form tab: their edit is based on the version shown now. */
  beginEdit(s: SessionState, tabId: string): void {
    const q = this.draftQueue(s, tabId);
    q.editing = true;
    if (q.base === null) q.base = s.drafts.value[tabId]?.version ?? 0;
  }

  /** Saves a form tab's fields with the version the edit was based on. One save is in flight per
   * tab; later edits wait for it and build on it. A save from elsewhere in between makes ours
   * stale: the server refuses it and the form reloads the server's fields. */
  saveDraft(s: SessionState, tabId: string, patch: Record<string, unknown>): void {
    const q = this.draftQueue(s, tabId);
    q.editing = false;
    if (q.base === null) q.base = s.drafts.value[tabId]?.version ?? 0;
    const fields = { ...(q.next ?? q.inflightFields ?? s.drafts.value[tabId]?.fields ?? {}), ...patch };
    if (q.inflight) {
      q.next = fields;
      return;
    }
    q.inflight = this.send("draft.save", { session_id: s.id, tab_id: tabId, fields, version: q.base });
    q.inflightFields = q.inflight ? fields : null;
    q.next = null;
  }

  private draftQueue(s: SessionState, tabId: string): DraftQueue {
    const key = `${s.id}/${tabId}`;
    let q = this.draftQueues.get(key);
    if (!q) {
      q = { inflight: null, inflightFields: null, next: null, base: null, editing: false };
      this.draftQueues.set(key, q);
    }
    return q;
  }

  private draftSaved(s: SessionState, tabId: string, version: number, fields: Record<string, unknown> | undefined): void {
    const current = s.drafts.value[tabId];
    s.drafts.value = {
      ...s.drafts.value,
      [tabId]: { version, fields: fields ?? current?.fields ?? {} },
    };
    const q = this.draftQueues.get(`${s.id}/${tabId}`);
    if (!q) return;
    if (q.inflight && stable(fields) === stable(q.inflightFields)) {
      q.inflight = null;
      q.inflightFields = null;
      q.base = version; // our own save: what comes next builds on it
      if (q.next) {
        const next = q.next;
        q.next = null;
        this.saveDraft(s, tabId, next);
      }
    } else if (!q.inflight && !q.next && !q.editing) {
      q.base = null; // saved elsewhere while we were idle: the form shows it, the next edit starts from it
    }
  }

  pendingDraft(s: SessionState, tabId: string): boolean {
    const q = this.draftQueues.get(`${s.id}/${tabId}`);
    return Boolean(q && (q.inflight || q.next));
  }

  searchKnowledge(query: string): void {
    const q = query.trim();
    if (!q) return;
    if (this.send("kb.search", { query: q })) this.kbResults.value = { ...this.kbResults.value, [q]: "loading" };
  }

  openArticle(id: string): void {
    const have = this.articles.value[id];
    if (have && have !== "loading") return;
    if (this.send("kb.article", { id })) this.articles.value = { ...this.articles.value, [id]: "loading" };
  }

  notify(tone: Notice["tone"], text: string): void {
    const id = ++this.noticeId;
    this.notices.value = [...this.notices.value.slice(-4), { id, tone, text }];
    if (tone === "info") window.setTimeout(() => this.dismiss(id), 12000);
  }

  dismiss(id: number): void {
    this.notices.value = this.notices.value.filter((n) => n.id !== id);
  }
}

/** A presence change the agent did not choose and would not expect: not their own choice, and not
 * presence's routine following of their load (busy while working, available again after). */
function presenceWorthTelling(d: Record<string, any>, agentId: string): boolean {
  if (!d.source || ["manual", "agent", agentId].includes(d.source)) return false;
  const routine = d.source === "automatic" && ["available", "busy", "busy_dnd"].includes(d.base ?? d.status);
  return !routine;
}

function supervisorNotice(d: Record<string, any>): string {
  if (d.detail) return String(d.detail); // the server's sentence for the agent
  const who = d.supervisor_id ?? "A supervisor";
  const what: Record<string, string> = {
    observe: "is observing",
    whisper: "whispered in",
    barge: "joined",
    force_transfer: "transferred",
    force_close: "closed",
    set_presence: "set your presence",
  };
  const verb = what[d.action] ?? d.action;
  const target = d.action === "set_presence" ? "" : ` conversation ${d.conversation_id ?? ""}`;
  return `${who} ${verb}${target}`.trim();
}
