// App tabs next to the anchor: a case form (fields kept server-side as a draft), a knowledge
// search, an article, the customer.
import { Fragment } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { Empty } from "../lib/ui";
import { useStore } from "./context";
import type { SessionState } from "./store";
import type { Tab } from "./types";

const PRIORITIES = ["low", "normal", "high", "urgent"];

interface CaseFields {
  subject: string;
  description: string;
  priority: string;
}

function caseFields(raw: Record<string, unknown> | undefined): CaseFields {
  return {
    subject: String(raw?.subject ?? ""),
    description: String(raw?.description ?? ""),
    priority: String(raw?.priority ?? "normal"),
  };
}

/** The case form. Every change is saved (debounced) with the version it was made on; the server
 * refuses a stale save and sends the current fields, which replace the form's. */
export function CaseFormTab(props: { session: SessionState; tab: Tab }) {
  const store = useStore();
  const s = props.session;
  const draft = s.drafts.value[props.tab.tab_id];
  const [fields, setFields] = useState<CaseFields>(() => caseFields(draft?.fields));
  const dirty = useRef(false);
  const timer = useRef<number>();
  const fieldsRef = useRef(fields);
  fieldsRef.current = fields;
  useEffect(() => {
    if (!dirty.current) setFields(caseFields(draft?.fields));
  }, [draft?.version, draft?.fields]);
  const reloads = s.draftReloads.value;
  useEffect(() => {
    if (!reloads) return; // a save was refused as stale: show what the server holds
    window.clearTimeout(timer.current);
    dirty.current = false;
    setFields(caseFields(s.drafts.value[props.tab.tab_id]?.fields));
  }, [reloads]);
  useEffect(
    () => () => {
      if (dirty.current) {
        window.clearTimeout(timer.current);
        store.saveDraft(s, props.tab.tab_id, fieldsRef.current as unknown as Record<string, unknown>);
      }
    },
    [],
  );
  const change = (patch: Partial<CaseFields>) => {
    const next = { ...fields, ...patch };
    setFields(next);
    if (!dirty.current) store.beginEdit(s, props.tab.tab_id);
    dirty.current = true;
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => {
      dirty.current = false;
      store.saveDraft(s, props.tab.tab_id, next as unknown as Record<string, unknown>);
    }, 400);
  };
  const id = `${s.id}-${props.tab.tab_id}`;
  return (
    <form class="form-tab" onSubmit={(e) => e.preventDefault()} aria-label="Case">
      <div class="form-row">
        <label for={`${id}-subject`}>Case subject</label>
        <input id={`${id}-subject`} type="text" value={fields.subject} onInput={(e) => change({ subject: e.currentTarget.value })} />
      </div>
      <div class="form-row">
        <label for={`${id}-description`}>Description</label>
        <textarea
          id={`${id}-description`}
          rows={8}
          value={fields.description}
          onInput={(e) => change({ description: e.currentTarget.value })}
        />
      </div>
      <div class="form-row">
        <label for={`${id}-priority`}>Priority</label>
        <select id={`${id}-priority`} value={fields.priority} onChange={(e) => change({ priority: e.currentTarget.value })}>
          {PRIORITIES.map((p) => (
            <option key={p} value={p}>
              {p}
            </option>
          ))}
        </select>
      </div>
      <p class="muted" aria-live="polite">
        {store.pendingDraft(s, props.tab.tab_id) || dirty.current
          ? "Saving…"
          : draft
            ? `Saved on the server (version ${draft.version}).`
            : "Changes are saved as you type."}
      </p>
    </form>
  );
}

export function KnowledgeSearch(props: { session: SessionState | null; initial?: string; compact?: boolean }) {
  const store = useStore();
  const [query, setQuery] = useState(props.initial ?? "");
  const [asked, setAsked] = useState(props.initial ?? "");
  useEffect(() => {
    if (props.initial && !store.kbResults.value[props.initial]) store.searchKnowledge(props.initial);
  }, []);
  const results = asked ? store.kbResults.value[asked.trim()] : undefined;
  const [inline, setInline] = useState<string | null>(null);
  const open = (id: string, title: string) => {
    if (props.session) store.send("tab.open", { session_id: props.session.id, kind: "article", title, target: { article_id: id } });
    else {
      store.openArticle(id); // no session to hold a tab (Home): read it here
      setInline(id);
    }
  };
  if (inline) {
    const article = store.articles.value[inline];
    return (
      <div class="kb">
        <button type="button" class="link-button" onClick={() => setInline(null)}>
          ← Back to results
        </button>
        {!article || article === "loading" ? (
          <p class="muted">Loading the article…</p>
        ) : (
          <article class="article">
            <h4>{article.title}</h4>
            {(article.body ?? "").split(/\n{2,}/).map((para, i) => (
              <p key={i}>{para}</p>
            ))}
          </article>
        )}
      </div>
    );
  }
  return (
    <div class={`kb${props.compact ? " kb-compact" : ""}`}>
      <form
        role="search"
        class="kb-form"
        onSubmit={(e) => {
          e.preventDefault();
          setAsked(query);
          store.searchKnowledge(query);
        }}
      >
        <label class="sr-only" for={props.compact ? "kb-pane-q" : "kb-tab-q"}>
          Search knowledge
        </label>
        <input
          id={props.compact ? "kb-pane-q" : "kb-tab-q"}
          type="search"
          placeholder="Search knowledge"
          value={query}
          onInput={(e) => setQuery(e.currentTarget.value)}
        />
        <button type="submit" class="secondary">
          Search
        </button>
      </form>
      {results === "loading" && <p class="muted">Searching…</p>}
      {Array.isArray(results) &&
        (results.length ? (
          <ul class="kb-results">
            {results.map((r) => (
              <li key={r.id}>
                <button type="button" class="link-button" onClick={() => open(r.id, r.title)}>
                  {r.title}
                </button>
                {r.snippet && <p class="snippet">{r.snippet}</p>}
              </li>
            ))}
          </ul>
        ) : (
          <Empty>No articles match “{asked}”.</Empty>
        ))}
      {!props.compact && props.session && query.trim() && (
        <p class="muted">Articles open as tabs of this session.</p>
      )}
    </div>
  );
}

export function SearchTab(props: { session: SessionState; tab: Tab }) {
  const initial = String((props.tab.target as { query?: string } | null)?.query ?? "");
  return (
    <div class="app-tab">
      <h2>Knowledge search</h2>
      <KnowledgeSearch session={props.session} initial={initial} />
    </div>
  );
}

export function ArticleTab(props: { session: SessionState; tab: Tab }) {
  const store = useStore();
  const id = String((props.tab.target as { article_id?: string } | null)?.article_id ?? "");
  useEffect(() => {
    if (id) store.openArticle(id);
  }, [id]);
  const article = store.articles.value[id];
  if (!id) return <Empty>This tab names no article.</Empty>;
  if (!article || article === "loading") return <p class="muted">Loading the article…</p>;
  return (
    <article class="app-tab article">
      <h2>{article.title}</h2>
      {article.tags?.length ? (
        <p class="tags">
          {article.tags.map((t) => (
            <span key={t} class="chip">
              {t}
            </span>
          ))}
        </p>
      ) : null}
      <div class="article-body">
        {(article.body ?? "").split(/\n{2,}/).map((para, i) => (
          <p key={i}>{para}</p>
        ))}
      </div>
    </article>
  );
}

export function CustomerTab(props: { session: SessionState; tab: Tab }) {
  const s = props.session;
  const target = (props.tab.target ?? {}) as Record<string, unknown>;
  const rows = Object.entries(target).filter(([, v]) => v !== null && v !== undefined && typeof v !== "object");
  return (
    <div class="app-tab">
      <h2>Customer</h2>
      <dl class="facts">
        <dt>Name</dt>
        <dd>{s.title.value}</dd>
        <dt>Channel</dt>
        <dd>{s.channel ?? "—"}</dd>
        {s.conversationId && (
          <>
            <dt>Conversation</dt>
            <dd class="mono">{s.conversationId}</dd>
          </>
        )}
        {rows
          .filter(([k]) => k !== "conversation_id")
          .map(([k, v]) => (
            <Fragment key={k}>
              <dt>{k}</dt>
              <dd>{String(v)}</dd>
            </Fragment>
          ))}
      </dl>
      {s.pane.value.summary?.entities && (
        <>
          <h3>Known from the conversation</h3>
          <dl class="facts">
            {Object.entries(s.pane.value.summary.entities).map(([k, vs]) => (
              <Fragment key={k}>
                <dt>{k}</dt>
                <dd>{vs.join(", ")}</dd>
              </Fragment>
            ))}
          </dl>
        </>
      )}
    </div>
  );
}
