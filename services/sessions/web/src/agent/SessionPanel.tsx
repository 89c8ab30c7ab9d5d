// The session panel: Home first, then one entry per open session (icon, title, unread badge,
// channel marker, close). The active entry is marked with aria-current.
import { ChannelMarker } from "../lib/ui";
import { Icon } from "../lib/icons";
import { useStore } from "./context";
import { HOME, type SessionState } from "./store";

export function SessionPanel() {
  const store = useStore();
  const ids = store.order.value;
  return (
    <nav class="sessions" aria-label="Sessions">
      <ul>
        <HomeEntry />
        {ids.map((id, i) => {
          const s = store.session(id);
          return s ? <SessionEntry key={id} session={s} index={i + 2} /> : null;
        })}
      </ul>
      <p class="hint">Alt+↑/↓ switches sessions; Ctrl+Alt+1…9 jumps.</p>
    </nav>
  );
}

function HomeEntry() {
  const store = useStore();
  const active = store.focused.value === HOME;
  return (
    <li class={`session${active ? " active" : ""}`}>
      <button
        type="button"
        class="session-main"
        aria-current={active ? "page" : undefined}
        aria-keyshortcuts="Control+Alt+1"
        onClick={() => store.switchTo(HOME)}
      >
        <span class="avatar avatar-home" aria-hidden="true">
          <Icon name="home" />
        </span>
        <span class="session-title">Home</span>
      </button>
    </li>
  );
}

function SessionEntry(props: { session: SessionState; index: number }) {
  const store = useStore();
  const s = props.session;
  const active = store.focused.value === s.id;
  const badge = s.badge.value;
  const voice = s.channel === "voice";
  return (
    <li class={`session${active ? " active" : ""}${voice ? " session-voice" : ""}`}>
      <button
        type="button"
        class="session-main"
        aria-current={active ? "page" : undefined}
        aria-keyshortcuts={props.index <= 9 ? `Control+Alt+${props.index}` : undefined}
        onClick={() => store.switchTo(s.id)}
      >
        <span class="avatar" aria-hidden="true">
          {s.icon.value}
        </span>
        <span class="session-title">{s.title.value}</span>
        <ChannelMarker channel={s.channel} />
        {badge && (
          <span class="badge" aria-label={`${s.unread.value} unread`}>
            {badge}
          </span>
        )}
      </button>
      <button
        type="button"
        class="icon-button session-close"
        aria-label={`Close ${s.title.value}`}
        onClick={() => (store.closing.value = s.id)}
      >
        ×
      </button>
    </li>
  );
}
