import { createContext } from "preact";
import { useContext } from "preact/hooks";
import type { AgentStore } from "./store";

export const StoreContext = createContext<AgentStore | null>(null);

export function useStore(): AgentStore {
  const store = useContext(StoreContext);
  if (!store) throw new Error("the agent page's components need the store (StoreContext)");
  return store;
}
