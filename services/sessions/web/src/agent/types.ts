// The shapes the agent page reads from the gateway (snapshot, events, reply frames). Fields the
// server may not send yet are optional: the page renders what it gets.

export interface Message {
  message_id: string;
  sender: string; // customer | agent | supervisor | bot
  sender_id?: string;
  visibility?: string; // public | internal
  text: string;
  time?: string;
  delivery?: string; // sent | delivered
  pending?: boolean; // sent from this page, not yet echoed by the server
}

export interface Tab {
  tab_id: string;
  kind: string;
  title?: string | null;
  anchor?: boolean;
  target?: Record<string, unknown> | null;
}

export interface Draft {
  version: number;
  fields: Record<string, unknown>;
}

export interface Reply {
  suggestion_id?: string;
  reply_id?: string;
  text: string;
  source?: string;
  score?: number;
  missing_slots?: string[];
}

export interface ArticleHit {
  id: string;
  title: string;
  score?: number;
  snippet?: string;
}

export interface CaseSummary {
  issue?: string;
  intent?: string;
  actions?: string[];
  resolution?: string | null;
  next_steps?: string[];
  outcome?: string;
  customer_name?: string;
}

export interface Pane {
  tools?: string[];
  focused_tool?: string | null;
  summary?: { summary?: string; intent?: string; entities?: Record<string, string[]> };
  articles?: { articles?: ArticleHit[] };
  replies?: { replies?: Reply[] };
  case_summary?: { draft?: CaseSummary; trigger?: string };
}

export interface SessionRow {
  session_id: string;
  kind?: string;
  conversation_id?: string | null;
  channel?: string | null;
  title?: string;
  icon?: string;
  status?: string;
  unread?: number;
  badge?: string;
  focused_tab?: string | null;
  opened_at?: string;
  closed_at?: string | null;
  pane?: Pane | null;
  primary?: boolean;
  tabs?: Tab[];
  drafts?: (Draft & { tab_id: string; session_id?: string })[];
  transcript?: Message[];
  transcript_more?: boolean;
}

export interface Offer {
  offer_id: string;
  conversation_id: string;
  channel: string;
  expires_at: string;
  title?: string | null;
  subject?: string | null;
  queue?: string | null;
  status?: string;
  notification?: { show_timeout?: boolean; sound?: string };
}

export interface Presence {
  status: string;
  base?: string;
  closed_channels?: string[];
  since?: string;
  source?: string;
  colour?: string;
}

export interface Status {
  name: string;
  base?: string;
  colour?: string;
}

export interface WorkItem {
  conversation_id: string;
  session_id?: string;
  channel?: string;
  title?: string;
  queue?: string;
  since?: string;
  waiting_s?: number;
  priority?: number;
  closed_at?: string;
}

export interface Dashboard {
  my_work?: WorkItem[];
  queue_work?: WorkItem[];
  closed?: WorkItem[];
}

export interface Disposition {
  code: string;
  label?: string;
}

export interface Profile {
  pane_tools?: string[];
  offer_notifications?: { show_timeout?: boolean; sound?: string };
  max_sessions?: number;
}

export interface Workspace {
  agent_id: string;
  seq: number;
  server_time?: string;
  focused_session?: string;
  sessions: SessionRow[];
  offers?: Offer[];
  profile?: Profile;
  presence?: Presence;
  statuses?: Status[];
  channels?: string[];
  dashboard?: Dashboard;
  dispositions?: Disposition[];
}

export interface CloudEvent {
  id?: string;
  type: string;
  time?: string;
  data: Record<string, any>;
}

export interface Article {
  id: string;
  title: string;
  body?: string;
  tags?: string[];
}
