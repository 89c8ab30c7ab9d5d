// Offer sounds made with WebAudio (no audio files to ship). Browsers only allow sound after the
// person has interacted with the page, so the context is created on the first click or key.
import { signal, effect } from "@preact/signals";

const KEY = "switchboard.muted";
export const muted = signal(readMuted());
effect(() => {
  try {
    localStorage.setItem(KEY, muted.value ? "1" : "0");
  } catch {
    /* storage disabled: the toggle still works for this page */
  }
});

function readMuted(): boolean {
  try {
    return localStorage.getItem(KEY) === "1";
  } catch {
    return false;
  }
}

let ctx: AudioContext | null = null;

function unlock(): void {
  if (ctx) return;
  try {
    ctx = new AudioContext();
  } catch {
    ctx = null;
  }
}
window.addEventListener("pointerdown", unlock, { once: true, capture: true });
window.addEventListener("keydown", unlock, { once: true, capture: true });

function tone(freq: number, start: number, length: number, type: OscillatorType, gain: number): void {
  if (!ctx) return;
  const osc = ctx.createOscillator();
  const amp = ctx.createGain();
  osc.type = type;
  osc.frequency.value = freq;
  amp.gain.setValueAtTime(0.0001, start);
  amp.gain.exponentialRampToValueAtTime(gain, start + 0.01);
  amp.gain.exponentialRampToValueAtTime(0.0001, start + length);
  osc.connect(amp).connect(ctx.destination);
  osc.start(start);
  osc.stop(start + length + 0.05);
}

/** Plays the profile's offer sound: "chime" (two soft rising notes) or "bell" (a ringing strike). */
export function playOfferSound(kind: string | undefined): void {
  if (muted.value || !ctx || !kind || kind === "none") return;
  try {
    if (ctx.state === "suspended") void ctx.resume();
    const t = ctx.currentTime + 0.02;
    if (kind === "bell") {
      for (const [f, g] of [
        [660, 0.25],
        [1320, 0.1],
        [1980, 0.05],
      ] as const)
        tone(f, t, 1.6, "sine", g);
      tone(660, t + 0.9, 1.2, "sine", 0.15);
    } else {
      tone(880, t, 0.45, "sine", 0.2);
      tone(1318.5, t + 0.18, 0.7, "sine", 0.18);
    }
  } catch {
    /* no sound device: the toast is still shown */
  }
}
