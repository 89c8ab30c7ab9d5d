// Closing a session (confirmation with a wrap-up: disposition and note) and transferring it to a
// queue or an agent.
import { useState } from "preact/hooks";
import { Modal } from "../lib/ui";
import { useStore } from "./context";

export function CloseDialog() {
  const store = useStore();
  const id = store.closing.value;
  const s = id ? store.session(id) : null;
  const [disposition, setDisposition] = useState("");
  const [note, setNote] = useState("");
  const dispositions = store.dispositions.value;
  const done = () => {
    store.closing.value = null;
    setDisposition("");
    setNote("");
  };
  return (
    <Modal open={Boolean(s)} title={s ? `Close session “${s.title.value}”?` : "Close session"} onClose={done}>
      {s && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const data: Record<string, unknown> = { session_id: s.id, confirmed: true };
            if (disposition) data.disposition = disposition;
            if (note.trim()) data.note = note.trim();
            if (store.send("session.close", data)) done();
          }}
        >
          <p>The conversation ends for you and its capacity is freed for new work.</p>
          {dispositions.length > 0 && (
            <div class="form-row">
              <label for="close-disposition">Disposition</label>
              <select
                id="close-disposition"
                required
                value={disposition}
                onChange={(e) => setDisposition(e.currentTarget.value)}
              >
                <option value="">Choose…</option>
                {dispositions.map((d) => (
                  <option key={d.code} value={d.code}>
                    {d.label ?? d.code}
                  </option>
                ))}
              </select>
            </div>
          )}
          <div class="form-row">
            <label for="close-note">Wrap-up note</label>
            <textarea id="close-note" rows={3} value={note} onInput={(e) => setNote(e.currentTarget.value)} />
          </div>
          <div class="dialog-actions">
            <button type="button" class="secondary" onClick={done}>
              Cancel
            </button>
            <button type="submit" class="danger">
              Confirm close
            </button>
          </div>
        </form>
      )}
    </Modal>
  );
}

export function TransferDialog() {
  const store = useStore();
  const id = store.transferring.value;
  const s = id ? store.session(id) : null;
  const [mode, setMode] = useState<"queue" | "agent">("queue");
  const [target, setTarget] = useState("");
  const dash = store.dashboard.value;
  const queues = [
    ...new Set([...(dash.queue_work ?? []), ...(dash.my_work ?? [])].map((w) => w.queue).filter(Boolean) as string[]),
  ];
  const done = () => {
    store.transferring.value = null;
    setTarget("");
  };
  return (
    <Modal open={Boolean(s)} title={s ? `Transfer “${s.title.value}”` : "Transfer"} onClose={done}>
      {s && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const to = target.trim();
            if (!to) return;
            const data = mode === "queue" ? { session_id: s.id, to_queue: to } : { session_id: s.id, to_agent: to };
            if (store.send("session.transfer", data)) done();
          }}
        >
          <fieldset class="radio-row">
            <legend>Transfer to</legend>
            <label>
              <input type="radio" name="transfer-mode" checked={mode === "queue"} onChange={() => setMode("queue")} /> a queue
            </label>
            <label>
              <input type="radio" name="transfer-mode" checked={mode === "agent"} onChange={() => setMode("agent")} /> an agent
            </label>
          </fieldset>
          <div class="form-row">
            <label for="transfer-target">{mode === "queue" ? "Queue name" : "Agent id"}</label>
            <input
              id="transfer-target"
              type="text"
              required
              list={mode === "queue" ? "transfer-queues" : undefined}
              value={target}
              placeholder={mode === "queue" ? "e.g. billing" : "e.g. agent-2"}
              onInput={(e) => setTarget(e.currentTarget.value)}
            />
            <datalist id="transfer-queues">
              {queues.map((q) => (
                <option key={q} value={q} />
              ))}
            </datalist>
          </div>
          <div class="dialog-actions">
            <button type="button" class="secondary" onClick={done}>
              Cancel
            </button>
            <button type="submit" class="primary">
              Transfer now
            </button>
          </div>
        </form>
      )}
    </Modal>
  );
}
