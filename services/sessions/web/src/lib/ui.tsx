// Small pieces every page uses: a modal dialog, the connection indicator, channel markers.
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";
import type { Signal } from "@preact/signals";
import type { Link } from "./socket";
import { Icon } from "./icons";

export function Modal(props: {
  open: boolean;
  title: string;
  onClose: () => void;
  children: ComponentChildren;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) d.showModal();
    if (!props.open && d.open) d.close();
  }, [props.open]);
  const id = `dlg-${props.title.replace(/\W+/g, "-").toLowerCase()}`;
  return (
    <dialog
      ref={ref}
      class="modal"
      aria-labelledby={id}
      onCancel={(e) => {
        e.preventDefault();
        props.onClose();
      }}
    >
      {props.open && (
        <>
          <h2 id={id}>{props.title}</h2>
          {props.children}
        </>
      )}
    </dialog>
  );
}

const LINK_TEXT: Record<Link["state"], string> = {
  connecting: "Connecting…",
  online: "Connected",
  retrying: "Reconnecting…",
  denied: "Not signed in",
};

export function ConnectionIndicator(props: { link: Signal<Link>; onRetry?: () => void }) {
  const link = props.link.value;
  return (
    <div class={`conn conn-${link.state}`} role="status" aria-live="polite" title={link.detail || undefined}>
      <span class="dot" aria-hidden="true" />
      <span>{LINK_TEXT[link.state]}</span>
      {link.state === "denied" && <span class="conn-detail">{link.detail}</span>}
      {link.state === "retrying" && props.onRetry && (
        <button type="button" class="link-button" onClick={props.onRetry}>
          Retry now
        </button>
      )}
    </div>
  );
}

export function ChannelMarker(props: { channel: string | null | undefined; withText?: boolean }) {
  const ch = props.channel || "record";
  return (
    <span class={`channel channel-${ch}`} title={ch}>
      <Icon name={ch} size={14} />
      {props.withText ? <span>{ch}</span> : <span class="sr-only">{ch}</span>}
    </span>
  );
}

export function Empty(props: { children: ComponentChildren }) {
  return <p class="empty">{props.children}</p>;
}
