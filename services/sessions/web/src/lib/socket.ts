// One WebSocket that reconnects by itself with exponential backoff and jitter. The URL is asked
// for on every attempt, so a caller can resume from the last sequence number it holds.
import { signal } from "@preact/signals";

export type LinkState = "connecting" | "online" | "retrying" | "denied";

export interface Link {
  state: LinkState;
  detail: string;
  retryAt?: number;
}

export type Frame = { kind: string; [key: string]: unknown };

export class Stream {
  readonly link = signal<Link>({ state: "connecting", detail: "" });
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: number | undefined;
  private stopped = false;

  constructor(
    private readonly url: () => string,
    private readonly onFrame: (frame: Frame) => void,
    private readonly onOpen: () => void = () => {},
  ) {}

  start(): void {
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.timer);
    this.ws?.close(1000, "page closed");
  }

  /** Sends a JSON message; false when the socket is not open (the caller tells the user). */
  send(message: unknown): boolean {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  private open(): void {
    this.link.value = { state: "connecting", detail: "" };
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url());
    } catch (exc) {
      this.retry(String(exc));
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.link.value = { state: "online", detail: "" };
      this.onOpen();
    };
    ws.onmessage = (m: MessageEvent) => {
      let frame: Frame;
      try {
        frame = JSON.parse(String(m.data)) as Frame;
      } catch {
        return; // not ours to show: the gateway only sends JSON
      }
      this.onFrame(frame);
    };
    ws.onclose = (e: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (e.code === 4401 || e.code === 4403) {
        this.link.value = { state: "denied", detail: e.reason || "not allowed" };
        return;
      }
      this.retry(e.reason || (e.code === 1006 ? "connection lost" : `closed (${e.code})`));
    };
  }

  private retry(reason: string): void {
    const base = Math.min(15000, 500 * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt += 1;
    this.link.value = { state: "retrying", detail: reason, retryAt: Date.now() + delay };
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.open(), delay);
  }

  /** Reconnect now (the user asked), skipping the rest of the backoff. */
  reconnectNow(): void {
    if (this.link.value.state !== "retrying") return;
    window.clearTimeout(this.timer);
    this.open();
  }
}

export function wsUrl(path: string, params: Record<string, string | number | undefined | null>): string {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") query.set(k, String(v));
  return `${proto}://${location.host}${path}?${query.toString()}`;
}

export function uuid(): string {
  if (typeof crypto !== "undefined" && "randomUUID" in crypto) return crypto.randomUUID();
  return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, (c) => {
    const r = (Math.random() * 16) | 0;
    return (c === "x" ? r : (r & 3) | 8).toString(16);
  });
}
