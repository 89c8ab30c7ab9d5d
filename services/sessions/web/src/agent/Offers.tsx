// Offers as toasts: who, channel, subject/queue, the time left by the server's clock, Accept and
// Reject. Voice offers look like an incoming call.
import { secondsUntil, tick } from "../lib/clock";
import { ChannelMarker } from "../lib/ui";
import { useStore } from "./context";
import type { Offer } from "./types";

export function Offers() {
  const store = useStore();
  const offers = store.offers.value;
  return (
    <section class="offers" aria-label="Offers" aria-live="assertive">
      {offers.map((o) => (
        <OfferToast key={o.offer_id} offer={o} />
      ))}
    </section>
  );
}

function OfferToast(props: { offer: Offer }) {
  const store = useStore();
  const o = props.offer;
  const voice = o.channel === "voice";
  const showTimeout = (o.notification?.show_timeout ?? store.profile.value.offer_notifications?.show_timeout) !== false;
  const id = `offer-${o.offer_id}`;
  return (
    <div class={`offer${voice ? " offer-voice" : ""}`} role="group" aria-labelledby={`${id}-title`} aria-describedby={`${id}-meta`}>
      <div class="offer-kind">
        <ChannelMarker channel={o.channel} withText />
        <span>{voice ? "Incoming call" : "New work offered"}</span>
      </div>
      <div class="offer-title" id={`${id}-title`}>
        {o.title || o.conversation_id}
      </div>
      {o.subject && <div class="offer-subject">{o.subject}</div>}
      <div class="offer-meta" id={`${id}-meta`}>
        {o.queue && <span>Queue: {o.queue}</span>}
        {showTimeout && <Countdown expiresAt={o.expires_at} />}
      </div>
      <div class="offer-actions">
        <button type="button" class="accept" onClick={() => store.send("offer.accept", { offer_id: o.offer_id })}>
          Accept
        </button>
        <button type="button" class="reject" onClick={() => store.send("offer.reject", { offer_id: o.offer_id })}>
          Reject
        </button>
      </div>
    </div>
  );
}

function Countdown(props: { expiresAt: string }) {
  const left = secondsUntil(props.expiresAt, tick.value);
  return (
    <span class={`countdown${left <= 10 ? " urgent" : ""}`}>
      <span class="sr-only">Time left: </span>
      {left > 0 ? `${left} s` : "expiring"}
    </span>
  );
}
