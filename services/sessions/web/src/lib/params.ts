// Who the page is for, from the query string (?agent=…&token=…, ?supervisor=…&token=…).
const query = new URLSearchParams(location.search);

export const params = {
  agent: query.get("agent") ?? "",
  supervisor: query.get("supervisor") ?? "",
  token: query.get("token") ?? "",
};

/** A device id per browser tab that survives reloads of that tab. */
export function deviceId(): string {
  const key = "switchboard.device";
  try {
    let id = sessionStorage.getItem(key);
    if (!id) {
      id = `web-${Math.random().toString(36).slice(2, 10)}`;
      sessionStorage.setItem(key, id);
    }
    return id;
  } catch {
    return `web-${Math.random().toString(36).slice(2, 10)}`;
  }
}
