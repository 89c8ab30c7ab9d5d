// Presence: the agent's status (base and custom) and which channels are open to new work. Changes
// the server makes by itself (work assigned, a missed offer) show up as they happen.
import { secondsSince, span, tick } from "../lib/clock";
import { useStore } from "./context";

const COLOURS: Record<string, string> = {
  available: "#1f9d55",
  busy: "#d97706",
  busy_dnd: "#dc2626",
  away: "#a16207",
  offline: "#6b7280",
  inactive: "#9ca3af",
};

export function PresenceControl() {
  const store = useStore();
  if (!store.loaded.value) return null;
  const presence = store.presence.value;
  const statuses = store.statuses.value;
  const channels = store.channels.value;
  const current = presence?.status ?? "";
  const known = statuses.some((st) => st.name === current);
  const colour =
    presence?.colour ?? statuses.find((st) => st.name === current)?.colour ?? COLOURS[presence?.base ?? current] ?? "#6b7280";
  const closed = new Set(presence?.closed_channels ?? []);
  return (
    <div class="presence">
      <span class="presence-dot" style={{ background: colour }} aria-hidden="true" />
      <label for="presence-select" class="presence-label">
        Presence
      </label>
      <select
        id="presence-select"
        value={current}
        onChange={(e) => store.send("presence.set", { status: e.currentTarget.value })}
      >
        {!known && <option value={current}>{current || "unknown"}</option>}
        {statuses.map((st) => (
          <option key={st.name} value={st.name}>
            {st.name.replace(/_/g, " ")}
            {st.base && st.base !== st.name ? ` (${st.base.replace(/_/g, " ")})` : ""}
          </option>
        ))}
      </select>
      {presence?.since && <Since iso={presence.since} />}
      {channels.length > 0 && (
        <fieldset class="channel-toggles">
          <legend class="sr-only">Channels open to new work</legend>
          {channels.map((ch) => {
            const open = !closed.has(ch);
            return (
              <button
                key={ch}
                type="button"
                role="switch"
                aria-checked={open}
                class={`channel-toggle${open ? " on" : ""}`}
                title={open ? `${ch}: open to new work` : `${ch}: closed to new work`}
                onClick={() => store.send("presence.set", { channels: { [ch]: open ? "closed" : "open" } })}
              >
                {ch}
              </button>
            );
          })}
        </fieldset>
      )}
    </div>
  );
}

function Since(props: { iso: string }) {
  return (
    <span class="presence-since" title="Time in this status">
      for {span(secondsSince(props.iso, tick.value))}
    </span>
  );
}
