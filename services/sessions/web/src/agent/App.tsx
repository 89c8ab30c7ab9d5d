// The agent workspace: header (presence, sound, connection), notices, session panel, the focused
// session (or Home), the productivity pane, offers and the dialogs. Each region reads only the
// signals it shows.
import { useEffect } from "preact/hooks";
import { ConnectionIndicator } from "../lib/ui";
import { muted } from "../lib/sound";
import { Icon } from "../lib/icons";
import { HOME, type AgentStore } from "./store";
import { SessionPanel } from "./SessionPanel";
import { Home } from "./Home";
import { SessionView } from "./SessionView";
import { Pane } from "./Pane";
import { Offers } from "./Offers";
import { PresenceControl } from "./Presence";
import { CloseDialog, TransferDialog } from "./Dialogs";
import { Notices } from "./Notices";
import { StoreContext, useStore } from "./context";

export function AgentApp(props: { store: AgentStore }) {
  return (
    <StoreContext.Provider value={props.store}>
      <Shortcuts />
      <TitleCounter />
      <header class="topbar">
        <span class="brand">Switchboard</span>
        <span class="who">
          <span class="sr-only">Signed in as </span>
          {props.store.agentId}
        </span>
        <PresenceControl />
        <MuteToggle />
        <ConnectionIndicator link={props.store.stream.link} onRetry={() => props.store.stream.reconnectNow()} />
      </header>
      <Notices />
      <Body />
      <Offers />
      <CloseDialog />
      <TransferDialog />
    </StoreContext.Provider>
  );
}

function Body() {
  const store = useStore();
  const link = store.stream.link.value;
  if (!store.loaded.value) {
    // the frame of the workspace while the snapshot is on its way, so the page does not jump
    return (
      <div class="workspace" aria-busy="true">
        <SessionPanel />
        <main class="work loading">
          {link.state === "denied" ? (
            <div role="alert">
              <h1>Not signed in</h1>
              <p>The gateway refused this page: {link.detail}.</p>
              <p>
                Open the link <code>make up</code> printed, or make a token with <code>switchboard token {store.agentId}</code>.
              </p>
            </div>
          ) : (
            <p>Loading your workspace…</p>
          )}
        </main>
        <aside class="pane" aria-label="Productivity pane" />
      </div>
    );
  }
  return (
    <div class="workspace">
      <SessionPanel />
      <Work />
      <Pane />
    </div>
  );
}

function Work() {
  const store = useStore();
  const s = store.focusedSession.value;
  return (
    <main class="work" id="work" aria-label={s ? `Session ${s.title.value}` : "Home"}>
      {store.focused.value === HOME || !s ? <Home /> : <SessionView key={s.id} session={s} />}
    </main>
  );
}

/** The browser tab's title counts offers and unread messages, for an agent looking elsewhere. */
function TitleCounter() {
  const store = useStore();
  const offers = store.offers.value.length;
  const unread = store.order.value.reduce((n, id) => n + (store.session(id)?.unread.value ?? 0), 0);
  useEffect(() => {
    const parts = [offers ? `${offers} offer${offers > 1 ? "s" : ""}` : "", unread ? `${unread} unread` : ""].filter(Boolean);
    document.title = `${parts.length ? `(${parts.join(", ")}) ` : ""}Switchboard — ${store.agentId}`;
  }, [offers, unread]);
  return null;
}

function MuteToggle() {
  const on = !muted.value;
  return (
    <button
      type="button"
      class="icon-button"
      aria-pressed={!on}
      aria-label="Mute offer sounds"
      title={on ? "Offer sounds on" : "Offer sounds muted"}
      onClick={() => (muted.value = !muted.value)}
    >
      <Icon name={on ? "bell" : "bell-off"} size={18} />
    </button>
  );
}

/** Alt+ArrowUp/Down: previous/next session; Ctrl+Alt+1…9: the n-th entry (1 = Home). */
function Shortcuts() {
  const store = useStore();
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.target instanceof HTMLSelectElement) return; // Alt+Down opens a select's list
      if (e.altKey && !e.ctrlKey && !e.metaKey && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
        e.preventDefault();
        store.step(e.key === "ArrowUp" ? -1 : 1);
        return;
      }
      if (e.altKey && e.ctrlKey && /^Digit[1-9]$/.test(e.code)) {
        const ids = [HOME, ...store.order.value];
        const id = ids[Number(e.code.slice(5)) - 1];
        if (id) {
          e.preventDefault();
          store.switchTo(id);
        }
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [store]);
  return null;
}
