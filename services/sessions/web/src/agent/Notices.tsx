// Rejected commands and notices from the server: errors in an alert region, the rest as status.
import { useStore } from "./context";

export function Notices() {
  const store = useStore();
  const notices = store.notices.value;
  const errors = notices.filter((n) => n.tone === "error");
  const infos = notices.filter((n) => n.tone === "info");
  return (
    <div class="notices">
      <div role="alert" class="notice-group">
        {errors.map((n) => (
          <div key={n.id} class="notice notice-error">
            <span class="notice-text">{n.text}</span>
            <button type="button" class="icon-button" aria-label="Dismiss notice" onClick={() => store.dismiss(n.id)}>
              ×
            </button>
          </div>
        ))}
      </div>
      <div role="status" class="notice-group">
        {infos.map((n) => (
          <div key={n.id} class="notice notice-info">
            <span class="notice-text">{n.text}</span>
            <button type="button" class="icon-button" aria-label="Dismiss notice" onClick={() => store.dismiss(n.id)}>
              ×
            </button>
          </div>
        ))}
      </div>
    </div>
  );
}
