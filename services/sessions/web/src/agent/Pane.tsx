// The productivity pane of the focused session: summary, suggested replies (Use / Edit /
// Reject reply, the rejection told to assist), surfaced articles, the case-summary draft to
// review and save with assist, and a knowledge search. The focused tab's tool comes first, as
// the server orders them.
import { useEffect, useState } from "preact/hooks";
import { Empty } from "../lib/ui";
import { clockTime } from "../lib/clock";
import { useStore } from "./context";
import { KnowledgeSearch } from "./AppTabs";
import { dismissSuggestion, keepComposer, type SavedCaseSummary, type SessionState } from "./store";
import type { CaseSummary, Pane as PaneData } from "./types";

const FIRST_FOR_KIND: Record<string, string> = {
  conversation: "replies",
  case: "case_summary",
  knowledge: "articles",
  search: "articles",
  article: "articles",
  customer: "summary",
};
const DEFAULT_TOOLS = ["summary", "articles", "replies", "case_summary"];

function toolOrder(pane: PaneData, allowed: string[], focusedKind: string): string[] {
  const present = allowed.filter((k) => k in pane && pane[k as keyof PaneData]);
  const first = FIRST_FOR_KIND[focusedKind];
  return [...present].sort((a, b) => Number(b === first) - Number(a === first));
}

export function Pane() {
  const store = useStore();
  const s = store.focusedSession.value;
  return (
    <aside class="pane" aria-label="Productivity pane">
      <h2 class="pane-title">Productivity</h2>
      {s ? <SessionPane session={s} /> : <p class="muted">Suggestions for a conversation appear when one is in focus.</p>}
      <section class="tool" aria-labelledby="tool-kb">
        <h3 id="tool-kb">Knowledge</h3>
        <KnowledgeSearch session={s} compact />
      </section>
    </aside>
  );
}

function SessionPane(props: { session: SessionState }) {
  const store = useStore();
  const s = props.session;
  const pane = s.pane.value;
  const tab = s.tabs.value.find((t) => t.tab_id === s.focusedTab.value);
  const kind = tab?.anchor || !tab ? "conversation" : tab.kind;
  const allowed = store.profile.value.pane_tools ?? DEFAULT_TOOLS;
  const order = toolOrder(pane, allowed, kind);
  if (!order.length) return <Empty>No suggestions yet for this conversation.</Empty>;
  return (
    <>
      {order.map((tool) => {
        switch (tool) {
          case "summary":
            return <Summary key={tool} pane={pane} />;
          case "replies":
            return <Replies key={tool} session={s} />;
          case "articles":
            return <Articles key={tool} session={s} />;
          case "case_summary":
            return <CaseSummaryTool key={tool} session={s} />;
          default:
            return null;
        }
      })}
    </>
  );
}

function Summary(props: { pane: PaneData }) {
  const summary = props.pane.summary;
  return (
    <section class="tool" aria-labelledby="tool-summary">
      <h3 id="tool-summary">Summary</h3>
      <p>{summary?.summary || "—"}</p>
      {summary?.intent && <span class="chip">intent: {summary.intent}</span>}
    </section>
  );
}

function Replies(props: { session: SessionState }) {
  const store = useStore();
  const s = props.session;
  const dismissed = s.dismissed.value;
  const rejecting = s.rejecting.value;
  const replies = (s.pane.value.replies?.replies ?? []).filter((r) => !dismissed.has(r.suggestion_id ?? r.text));
  const use = (text: string, suggestionId: string | undefined, edit: boolean) => {
    s.composer.value = text;
    keepComposer(s.id, text);
    s.suggestionId.value = suggestionId ?? null;
    s.internal.value = false;
    const box = document.querySelector<HTMLTextAreaElement>("textarea[data-composer]");
    if (box) {
      box.focus();
      if (edit) box.setSelectionRange(text.length, text.length);
    }
  };
  return (
    <section class="tool" aria-labelledby="tool-replies">
      <h3 id="tool-replies">Suggested replies</h3>
      {replies.length ? (
        <ul class="replies">
          {replies.map((r, i) => (
            <li key={r.suggestion_id ?? i} class="reply">
              <p>{r.text}</p>
              {r.missing_slots?.length ? <p class="muted">Fill in: {r.missing_slots.join(", ")}</p> : null}
              <div class="reply-actions" role="group" aria-label={`Suggestion ${i + 1}`}>
                <button type="button" class="primary small" onClick={() => use(r.text, r.suggestion_id, false)}>
                  Use
                </button>
                <button type="button" class="secondary small" onClick={() => use(r.text, r.suggestion_id, true)}>
                  Edit
                </button>
                <button
                  type="button"
                  class="ghost small"
                  disabled={Boolean(r.suggestion_id && rejecting.has(r.suggestion_id))}
                  onClick={() =>
                    r.suggestion_id
                      ? store.rejectSuggestion(s, r.suggestion_id)
                      : dismissSuggestion(s, r.text) // nothing for assist to learn from
                  }
                >
                  Reject reply
                </button>
              </div>
            </li>
          ))}
        </ul>
      ) : (
        <Empty>No suggested replies.</Empty>
      )}
    </section>
  );
}

function Articles(props: { session: SessionState }) {
  const store = useStore();
  const s = props.session;
  const articles = s.pane.value.articles?.articles ?? [];
  return (
    <section class="tool" aria-labelledby="tool-articles">
      <h3 id="tool-articles">Articles</h3>
      {articles.length ? (
        <ul class="kb-results">
          {articles.map((a) => (
            <li key={a.id}>
              <button
                type="button"
                class="link-button"
                onClick={() => store.send("tab.open", { session_id: s.id, kind: "article", title: a.title, target: { article_id: a.id } })}
              >
                {a.title}
              </button>
              {a.snippet && <p class="snippet">{a.snippet}</p>}
            </li>
          ))}
        </ul>
      ) : (
        <Empty>No articles surfaced.</Empty>
      )}
    </section>
  );
}

function lines(v: string[] | undefined): string {
  return (v ?? []).join("\n");
}

/** The case-summary draft from assist, reviewed by the agent and saved with assist
 * (`case_summary.save`); the saved version is kept with the session's drafts too (anchor tab,
 * field `case_summary`) so a reload shows it. */
function CaseSummaryTool(props: { session: SessionState }) {
  const store = useStore();
  const s = props.session;
  const suggested = s.pane.value.case_summary?.draft ?? {};
  const savedNow = s.caseSummarySaved.value;
  const saved = savedNow?.summary ?? (s.drafts.value.anchor?.fields?.case_summary as CaseSummary | undefined);
  const saving = s.caseSummarySaving.value;
  const source = saved ?? suggested;
  const [issue, setIssue] = useState(source.issue ?? "");
  const [actions, setActions] = useState(lines(source.actions));
  const [resolution, setResolution] = useState(source.resolution ?? "");
  const [next, setNext] = useState(lines(source.next_steps));
  const [editing, setEditing] = useState(false);
  const sourceKey = JSON.stringify(source);
  useEffect(() => {
    if (editing) return;
    setIssue(source.issue ?? "");
    setActions(lines(source.actions));
    setResolution(source.resolution ?? "");
    setNext(lines(source.next_steps));
  }, [sourceKey]);
  const split = (v: string) =>
    v
      .split("\n")
      .map((x) => x.trim())
      .filter(Boolean);
  const [open, setOpen] = useState(false);
  // the form stays open until assist has saved it: a refusal (a notice) keeps the agent's edits
  const [submitted, setSubmitted] = useState<{ before: SavedCaseSummary | null } | null>(null);
  useEffect(() => {
    if (!submitted || saving) return;
    setSubmitted(null);
    if (savedNow && savedNow !== submitted.before) {
      setEditing(false);
      setOpen(false);
    }
  }, [submitted, saving, savedNow]);
  if (!open) {
    // the draft as text; the form (four fields) only when the agent reviews it
    return (
      <section class="tool" aria-labelledby="tool-case-summary">
        <h3 id="tool-case-summary">Case summary</h3>
        <p>{source.issue || "—"}</p>
        {source.actions?.length ? (
          <ul class="plain">
            {source.actions.map((a, i) => (
              <li key={i}>{a}</li>
            ))}
          </ul>
        ) : null}
        {source.resolution && <p class="muted">Resolution: {source.resolution}</p>}
        <div class="composer-bar">
          <span class="muted" role="status">
            {saving ? "Saving…" : saved ? `Saved${savedNow?.saved_at ? ` at ${clockTime(savedNow.saved_at)}` : ""}` : "Draft from assist"}
          </span>
          <button type="button" class="secondary small" onClick={() => setOpen(true)}>
            Review
          </button>
        </div>
      </section>
    );
  }
  return (
    <section class="tool" aria-labelledby="tool-case-summary">
      <h3 id="tool-case-summary">Case summary</h3>
      <form
        class="case-summary"
        onFocusIn={() => setEditing(true)}
        onSubmit={(e) => {
          e.preventDefault();
          store.saveCaseSummary(s, {
            ...suggested,
            issue: issue.trim(),
            actions: split(actions),
            resolution: resolution.trim() || null,
            next_steps: split(next),
          });
          setSubmitted({ before: savedNow });
        }}
      >
        <label class="field">
          <span>Issue</span>
          <textarea rows={2} value={issue} onInput={(e) => setIssue(e.currentTarget.value)} />
        </label>
        <label class="field">
          <span>Actions (one per line)</span>
          <textarea rows={2} value={actions} onInput={(e) => setActions(e.currentTarget.value)} />
        </label>
        <label class="field">
          <span>Resolution</span>
          <input type="text" value={resolution} onInput={(e) => setResolution(e.currentTarget.value)} />
        </label>
        <label class="field">
          <span>Next steps (one per line)</span>
          <textarea rows={2} value={next} onInput={(e) => setNext(e.currentTarget.value)} />
        </label>
        <div class="composer-bar">
          <button
            type="button"
            class="ghost small"
            onClick={() => {
              setEditing(false);
              setOpen(false);
            }}
          >
            Cancel
          </button>
          <button type="submit" class="secondary small" disabled={saving || !issue.trim()}>
            Save
          </button>
        </div>
      </form>
    </section>
  );
}
