// Home = the agent dashboard: my work, open work of my queues (Pick), closed work (Open).
import { useEffect } from "preact/hooks";
import { ChannelMarker, Empty } from "../lib/ui";
import { clockOffset, dateTime, secondsSince, span, tick } from "../lib/clock";
import { useStore } from "./context";
import type { WorkItem } from "./types";

export function Home() {
  const store = useStore();
  useEffect(() => {
    store.refreshDashboard();
    const t = window.setInterval(() => store.refreshDashboard(), 30000);
    return () => window.clearInterval(t);
  }, [store]);
  const dash = store.dashboard.value;
  const order = store.order.value;
  const mine: WorkItem[] =
    dash.my_work ??
    order.flatMap((id) => {
      const s = store.session(id);
      return s
        ? [{ conversation_id: s.conversationId ?? s.id, session_id: s.id, channel: s.channel ?? undefined, title: s.title.value, since: s.openedAt }]
        : [];
    });
  const closed: WorkItem[] =
    dash.closed ??
    store.closedRows.value.map((r) => ({
      conversation_id: r.conversation_id ?? "",
      session_id: r.session_id,
      channel: r.channel ?? undefined,
      title: r.title,
      closed_at: r.closed_at ?? undefined,
    }));
  return (
    <div class="home">
      <h1>Home</h1>
      <div class="dashboard">
        <section class="card" aria-labelledby="h-my-work">
          <h2 id="h-my-work">
            My work <span class="count">{mine.length}</span>
          </h2>
          {mine.length ? (
            <table class="grid">
              <thead>
                <tr>
                  <th scope="col">Conversation</th>
                  <th scope="col">Queue</th>
                  <th scope="col">Since</th>
                </tr>
              </thead>
              <tbody>
                {mine.map((w) => (
                  <MyWorkRow key={w.conversation_id} item={w} />
                ))}
              </tbody>
            </table>
          ) : (
            <Empty>Nothing assigned to you right now.</Empty>
          )}
        </section>
        <section class="card" aria-labelledby="h-queue-work">
          <h2 id="h-queue-work">
            Open work in my queues <span class="count">{dash.queue_work?.length ?? 0}</span>
          </h2>
          {dash.queue_work?.length ? (
            <table class="grid">
              <thead>
                <tr>
                  <th scope="col">Conversation</th>
                  <th scope="col">Queue</th>
                  <th scope="col">Waiting</th>
                  <th scope="col">
                    <span class="sr-only">Action</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {dash.queue_work.map((w) => (
                  <tr key={w.conversation_id}>
                    <td>
                      <ChannelMarker channel={w.channel} /> {w.title || w.conversation_id}
                      {w.priority ? <span class="chip">priority {w.priority}</span> : null}
                    </td>
                    <td>{w.queue}</td>
                    <td>
                      <Waiting seconds={w.waiting_s} from={store.dashboardAt} />
                    </td>
                    <td>
                      <button
                        type="button"
                        class="primary small"
                        onClick={() => store.send("session.open", { conversation_id: w.conversation_id })}
                      >
                        Pick
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <Empty>No work waiting in your queues.</Empty>
          )}
        </section>
        <section class="card" aria-labelledby="h-closed">
          <h2 id="h-closed">
            Closed <span class="count">{closed.length}</span>
          </h2>
          {closed.length ? (
            <table class="grid">
              <thead>
                <tr>
                  <th scope="col">Conversation</th>
                  <th scope="col">Closed</th>
                  <th scope="col">
                    <span class="sr-only">Action</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {closed.map((w) => (
                  <tr key={w.session_id ?? w.conversation_id}>
                    <td>
                      <ChannelMarker channel={w.channel} /> {w.title || w.conversation_id}
                    </td>
                    <td>{dateTime(w.closed_at)}</td>
                    <td>
                      {w.conversation_id && (
                        <button
                          type="button"
                          class="secondary small"
                          onClick={() => store.send("session.open", { conversation_id: w.conversation_id })}
                        >
                          Open
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <Empty>No closed work today.</Empty>
          )}
        </section>
      </div>
    </div>
  );
}

function MyWorkRow(props: { item: WorkItem }) {
  const store = useStore();
  const w = props.item;
  const session = (w.session_id && store.session(w.session_id)) || store.byConversation(w.conversation_id);
  return (
    <tr>
      <td>
        <ChannelMarker channel={w.channel} />{" "}
        {session ? (
          <button type="button" class="link-button" onClick={() => store.switchTo(session.id)}>
            {w.title || w.conversation_id}
          </button>
        ) : (
          w.title || w.conversation_id
        )}
      </td>
      <td>{w.queue ?? ""}</td>
      <td>
        <Since iso={w.since} />
      </td>
    </tr>
  );
}

function Since(props: { iso?: string }) {
  return <>{props.iso ? span(secondsSince(props.iso, tick.value)) : ""}</>;
}

function Waiting(props: { seconds?: number; from: number }) {
  if (props.seconds === undefined) return null;
  const grown = Math.max(0, (tick.value - (props.from + clockOffset())) / 1000);
  return <>{span(props.seconds + grown)}</>;
}
