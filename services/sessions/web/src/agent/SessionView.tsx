// One session: its header (title, channel, Transfer, Close session), the tab strip (anchor tab
// plus app tabs) and the focused tab's content.
import { ChannelMarker } from "../lib/ui";
import { useStore } from "./context";
import type { SessionState } from "./store";
import type { Tab } from "./types";
import { Communication } from "./Communication";
import { ArticleTab, CaseFormTab, CustomerTab, SearchTab } from "./AppTabs";

export function SessionView(props: { session: SessionState }) {
  const store = useStore();
  const s = props.session;
  return (
    <div class="session-view">
      <div class="session-header">
        <span class="avatar large" aria-hidden="true">
          {s.icon.value}
        </span>
        <div class="session-heading">
          <h1>{s.title.value}</h1>
          <p class="meta">
            <ChannelMarker channel={s.channel} withText />
            {s.conversationId && <span class="mono">{s.conversationId}</span>}
          </p>
        </div>
        <div class="session-actions">
          {s.conversationId && (
            <button type="button" class="secondary" onClick={() => (store.transferring.value = s.id)}>
              Transfer
            </button>
          )}
          <button type="button" class="danger" onClick={() => (store.closing.value = s.id)}>
            Close session
          </button>
        </div>
      </div>
      <TabStrip session={s} />
      <TabContent session={s} />
    </div>
  );
}

function tabLabel(t: Tab): string {
  if (t.title) return t.title;
  if (t.anchor) return "Conversation";
  return t.kind.charAt(0).toUpperCase() + t.kind.slice(1);
}

function TabStrip(props: { session: SessionState }) {
  const store = useStore();
  const s = props.session;
  const tabs = s.tabs.value.length ? s.tabs.value : [{ tab_id: "anchor", kind: "conversation", anchor: true } as Tab];
  const focused = s.focusedTab.value;
  const focus = (t: Tab) => {
    s.focusedTab.value = t.tab_id;
    store.send("tab.focus", { session_id: s.id, tab_id: t.tab_id });
  };
  const open = (kind: string, title: string, target: Record<string, unknown> = {}) =>
    store.send("tab.open", { session_id: s.id, kind, title, target });
  const close = (t: Tab) => store.send("tab.close", { session_id: s.id, tab_id: t.tab_id });
  const onKey = (e: KeyboardEvent, i: number, t: Tab) => {
    if (e.key === "Delete" && !t.anchor) {
      e.preventDefault();
      close(t);
      return;
    }
    if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
    e.preventDefault();
    const next = tabs[(i + (e.key === "ArrowRight" ? 1 : -1) + tabs.length) % tabs.length];
    focus(next);
    document.getElementById(`tab-${s.id}-${next.tab_id}`)?.focus();
  };
  return (
    <div class="tabbar">
      <div role="tablist" aria-label="Tabs" class="tabs">
        {tabs.map((t, i) => {
          const selected = t.tab_id === focused;
          return (
            <div key={t.tab_id} class={`tab${selected ? " selected" : ""}${t.anchor ? " anchor" : ""}`} role="presentation">
              <button
                type="button"
                role="tab"
                id={`tab-${s.id}-${t.tab_id}`}
                aria-selected={selected}
                aria-controls="tabpanel"
                aria-keyshortcuts={t.anchor ? undefined : "Delete"}
                tabIndex={selected ? 0 : -1}
                onClick={() => focus(t)}
                onKeyDown={(e) => onKey(e, i, t)}
              >
                <span class="tab-label">{tabLabel(t)}</span>
                {!t.anchor && (
                  // a mouse shortcut; keyboard and screen-reader users have Delete and the tab's Close button
                  <span
                    class="tab-x"
                    aria-hidden="true"
                    title={`Close tab ${tabLabel(t)}`}
                    onClick={(e) => {
                      e.stopPropagation();
                      close(t);
                    }}
                  >
                    ×
                  </span>
                )}
              </button>
            </div>
          );
        })}
      </div>
      <div class="tab-new" role="group" aria-label="Open a tab">
        <button type="button" class="ghost small" onClick={() => open("customer", "Customer", { conversation_id: s.conversationId })}>
          + Customer
        </button>
        <button type="button" class="ghost small" onClick={() => open("case", "Case", { conversation_id: s.conversationId })}>
          + Case
        </button>
        <button type="button" class="ghost small" onClick={() => open("search", "Knowledge search", {})}>
          + Knowledge
        </button>
      </div>
    </div>
  );
}

function TabContent(props: { session: SessionState }) {
  const store = useStore();
  const s = props.session;
  const tabId = s.focusedTab.value;
  const tab = s.tabs.value.find((t) => t.tab_id === tabId) ?? { tab_id: "anchor", kind: "conversation", anchor: true };
  const labelledBy = `tab-${s.id}-${tab.tab_id}`;
  let body;
  if (tab.anchor || tab.kind === "conversation") body = <Communication session={s} />;
  else if (tab.kind === "case") body = <CaseFormTab key={tab.tab_id} session={s} tab={tab} />;
  else if (tab.kind === "article") body = <ArticleTab key={tab.tab_id} session={s} tab={tab} />;
  else if (tab.kind === "search" || tab.kind === "knowledge") body = <SearchTab key={tab.tab_id} session={s} tab={tab} />;
  else if (tab.kind === "customer") body = <CustomerTab session={s} tab={tab} />;
  else body = <p class="empty">This tab ({tab.kind}) has no view in the workspace yet.</p>;
  return (
    <div class="tabpanel" id="tabpanel" role="tabpanel" aria-labelledby={labelledBy}>
      {!tab.anchor && tab.kind !== "conversation" && (
        <div class="tabpanel-bar">
          <button
            type="button"
            class="ghost small"
            onClick={() => store.send("tab.close", { session_id: s.id, tab_id: tab.tab_id })}
          >
            Close tab {tabLabel(tab)}
          </button>
        </div>
      )}
      {body}
    </div>
  );
}
