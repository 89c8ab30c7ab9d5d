// The server's clock as seen from here: countdowns and durations use server time, so a client
// whose clock is off still shows the offer's real time left.
import { signal } from "@preact/signals";

let offsetMs = 0;

/** Record the server's time at receipt of a snapshot (offset = server − client). */
export function syncClock(serverTime: string | undefined | null): void {
  if (!serverTime) return;
  const t = Date.parse(serverTime);
  if (!Number.isNaN(t)) offsetMs = t - Date.now();
}

export function serverNow(): number {
  return Date.now() + offsetMs;
}

export function clockOffset(): number {
  return offsetMs;
}

/** Ticks once a second; only countdowns and durations subscribe to it. */
export const tick = signal(serverNow());
setInterval(() => {
  tick.value = serverNow();
}, 1000);

export function secondsUntil(iso: string | undefined, now: number): number {
  if (!iso) return 0;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : Math.max(0, Math.ceil((t - now) / 1000));
}

export function secondsSince(iso: string | undefined, now: number): number {
  if (!iso) return 0;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : Math.max(0, Math.floor((now - t) / 1000));
}

/** 75 -> "1:15", 3725 -> "1:02:05". */
export function duration(totalSeconds: number | undefined | null): string {
  const s = Math.max(0, Math.round(totalSeconds ?? 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

// Formatted by hand: Intl's first use loads locale data, a cost paid on the first render.
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const pad = (n: number) => String(n).padStart(2, "0");

/** "14:05" in the browser's time zone. */
export function clockTime(iso: string | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** "21 Nov 14:05". */
export function dateTime(iso: string | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : `${d.getDate()} ${MONTHS[d.getMonth()]} ${clockTime(iso)}`;
}

/** A span for people: 45 -> "45 s", 754 -> "12 min", 4000 -> "1 h 6 min". */
export function span(totalSeconds: number | undefined | null): string {
  const s = Math.max(0, Math.round(totalSeconds ?? 0));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
