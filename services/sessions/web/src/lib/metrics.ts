// Main-thread timings the browser tests read from window.__switchboard.metrics: the time from a
// change (a snapshot loaded, a session switch) to the rendered DOM with style and layout done.
// Preact renders in a microtask after a signal changes; `timed` runs that render at once instead,
// so performance.now() brackets exactly the work of this change and nothing queued after it.
import { options } from "preact";

export interface Metrics {
  firstRender: number | null;
  lastSwitch: number | null;
  lastSwitchTo: string | null;
  switches: number[];
  /** The last timed change split into applying it, rendering it and style + layout (ms). */
  lastParts: { apply: number; render: number; layout: number } | null;
}

export const metrics: Metrics = { firstRender: null, lastSwitch: null, lastSwitchTo: null, switches: [], lastParts: null };

let pending: (() => void) | null = null;
const schedule = options.debounceRendering ?? ((cb: () => void) => queueMicrotask(cb));
options.debounceRendering = (render) => {
  pending = render;
  schedule(() => flushRenders());
};

function flushRenders(): void {
  const render = pending;
  pending = null;
  render?.();
}

export function timed(work: () => void, record: (ms: number) => void): void {
  const t0 = performance.now();
  work();
  const t1 = performance.now();
  flushRenders();
  const t2 = performance.now();
  void document.body.offsetHeight; // style and layout of what was rendered
  const t3 = performance.now();
  const r = (ms: number) => Math.round(ms * 10) / 10;
  metrics.lastParts = { apply: r(t1 - t0), render: r(t2 - t1), layout: r(t3 - t2) };
  record(r(t3 - t0));
}

export function recordSwitch(to: string, ms: number): void {
  metrics.lastSwitch = ms;
  metrics.lastSwitchTo = to;
  metrics.switches.push(ms);
  if (metrics.switches.length > 50) metrics.switches.shift();
}
