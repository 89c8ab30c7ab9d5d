// Inline SVG icons (no icon font, no emoji: headless and minimal systems have neither).
const PATHS: Record<string, string> = {
  chat: "M4 5h16v11H9l-5 4z",
  voice:
    "M5 3h4l2 5-2.5 1.5a11 11 0 0 0 6 6L16 13l5 2v4a2 2 0 0 1-2 2A17 17 0 0 1 3 5a2 2 0 0 1 2-2z",
  email: "M3 5h18v14H3z M3 6l9 7 9-7",
  sms: "M7 2h10v20H7z M11 18h2",
  case: "M3 6h6l2 2h10v11H3z",
  record: "M6 3h9l4 4v14H6z M14 3v5h5",
  bell: "M6 16v-5a6 6 0 0 1 12 0v5l2 2H4z M10 21a2 2 0 0 0 4 0",
  "bell-off": "M6 16v-5a6 6 0 0 1 12 0v5l2 2H4z M10 21a2 2 0 0 0 4 0 M3 3l18 18",
  home: "M3 11l9-7 9 7v10h-6v-6H9v6H3z",
};

export function Icon(props: { name: string; size?: number; class?: string }) {
  const d = PATHS[props.name] ?? PATHS.record;
  const size = props.size ?? 16;
  return (
    <svg
      class={`icon${props.class ? ` ${props.class}` : ""}`}
      width={size}
      height={size}
      viewBox="0 0 24 24"
      fill="none"
      stroke="currentColor"
      stroke-width="2"
      stroke-linecap="round"
      stroke-linejoin="round"
      aria-hidden="true"
      focusable="false"
    >
      <path d={d} />
    </svg>
  );
}
