// One bundle for the three pages; <body data-page="agent|supervisor|customer"> picks the page.
import { render } from "preact";
import "./styles/app.css";
import { params, deviceId } from "./lib/params";
import { metrics } from "./lib/metrics";
import { AgentStore } from "./agent/store";
import { AgentApp } from "./agent/App";
import { SupervisorStore } from "./supervisor/store";
import { SupervisorApp } from "./supervisor/App";
import { CustomerApp } from "./customer/App";

declare global {
  interface Window {
    __switchboard?: { page: string; store: unknown; metrics: typeof metrics };
  }
}

function missing(root: HTMLElement, what: string, example: string): void {
  render(
    <main class="signin">
      <h1>Switchboard</h1>
      <p>
        This page needs {what} in its address, for example <code>{example}</code>.
      </p>
      <p>
        <code>make up</code> prints ready links; <code>switchboard token AGENT</code> makes a token.
      </p>
    </main>,
    root,
  );
}

function boot(): void {
  const root = document.getElementById("app");
  if (!root) return;
  root.textContent = "";
  const page = document.body.dataset.page ?? "agent";
  if (page === "agent") {
    if (!params.agent || !params.token) return missing(root, "an agent and a token", "/?agent=agent-1&token=…");
    const store = new AgentStore(params.agent, params.token, deviceId());
    window.__switchboard = { page, store, metrics };
    render(<AgentApp store={store} />, root);
    store.stream.start();
  } else if (page === "supervisor") {
    if (!params.token) return missing(root, "a token", "/supervisor?supervisor=sup-1&token=…");
    const store = new SupervisorStore(params.supervisor || "supervisor", params.token);
    window.__switchboard = { page, store, metrics };
    render(<SupervisorApp store={store} />, root);
    store.start();
  } else {
    window.__switchboard = { page, store: null, metrics };
    render(<CustomerApp />, root);
  }
}

boot();
