// api.ts - the portal's only way to the server: openapi-fetch over the types
// generated from ../openapi.yaml at build time (src/api.gen.ts), so a contract
// change breaks `tsc --noEmit`, not the user. The API key lives in
// sessionStorage (gone when the tab closes).
import createClient from "openapi-fetch";
import type { components, paths } from "./api.gen";

export type S = components["schemas"];
export type Problem = S["Problem"];
export type Event = S["Event"];

const KEY = "certplane.apiKey";
export const getKey = (): string | null => sessionStorage.getItem(KEY);
export const setKey = (k: string | null): void => {
  if (k) sessionStorage.setItem(KEY, k);
  else sessionStorage.removeItem(KEY);
};

export const api = createClient<paths>({ baseUrl: location.origin });
api.use({
  onRequest({ request }) {
    const k = getKey();
    if (k) request.headers.set("Authorization", "Bearer " + k);
    return request;
  },
  onResponse({ response }) {
    // The key stopped working (revoked, expired): back to the sign-in page.
    if (response.status === 401 && getKey()) {
      setKey(null);
      dispatchEvent(new Event("certplane:signed-out"));
    }
    return response;
  },
});

/** The problem of a failed call, or a synthetic one for a network failure. */
export function problemOf(error: unknown, response?: Response): Problem {
  const e = error as Partial<Problem> | undefined;
  if (e && typeof e === "object" && typeof e.title === "string")
    return { type: e.type ?? "about:blank", title: e.title, status: e.status ?? response?.status ?? 0,
      detail: e.detail ?? "", errors: Array.isArray(e.errors) ? e.errors : [] };
  return { type: "about:blank", title: "Request failed", status: response?.status ?? 0,
    detail: String(error ?? "no answer"), errors: [] };
}

/** Unwrap an openapi-fetch result: the data, or throw the problem. */
export async function must<T>(p: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const r = await p;
  if (r.error !== undefined || r.data === undefined) throw problemOf(r.error, r.response);
  return r.data;
}

/** Every page of a list (small tenants: the portal's lists are short). */
export async function all<T>(page: (cursor?: string) => Promise<{ data: T[]; next_cursor?: string | null }>): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 50; i++) {
    const r = await page(cursor);
    out.push(...r.data);
    if (!r.next_cursor) break;
    cursor = r.next_cursor;
  }
  return out;
}

/** GET /v1/summary; null when the server has none (404: compute from lists). */
export async function fetchSummary(): Promise<S["Summary"] | null> {
  const r = await api.GET("/v1/summary", {});
  if (r.response.status === 404) return null;
  if (r.error !== undefined || !r.data) throw problemOf(r.error, r.response);
  return r.data;
}

export interface LiveFilter { certificate_id?: string; property_id?: string }

/**
 * Live events: GET /v1/events/stream (server-sent events read with fetch +
 * ReadableStream, since EventSource cannot send Authorization), resumed with
 * Last-Event-ID after a drop; when the stream answers 404 (a server without
 * it), GET /v1/events?after= every 2 s. Returns the stop function.
 */
export function live(filter: LiveFilter, onEvent: (e: Event) => void): () => void {
  let stopped = false;
  let last: string | null = null;
  const ctl = new AbortController();
  const match = (e: Event): boolean =>
    (!filter.certificate_id || e.data["certificate_id"] === filter.certificate_id) &&
    (!filter.property_id || e.data["property_id"] === filter.property_id);
  const sleep = (ms: number) => new Promise<void>((res) => setTimeout(res, ms));

  async function newest(): Promise<string | null> {
    let id: string | null = null;
    let cursor: string | undefined;
    for (let i = 0; i < 200; i++) {
      const page = await must(api.GET("/v1/events", { params: { query: { limit: 500, ...(cursor ? { cursor } : {}) } } }));
      const tail = page.data[page.data.length - 1];
      if (tail) id = tail.id;
      if (!page.next_cursor) break;
      cursor = page.next_cursor;
    }
    return id;
  }

  async function poll(): Promise<void> {
    last = last ?? (await newest());
    while (!stopped) {
      await sleep(2000);
      if (stopped) return;
      const q = last ? { after: last, limit: 500 } : { limit: 500 };
      const r = await api.GET("/v1/events", { params: { query: q }, signal: ctl.signal }).catch(() => null);
      if (!r || !r.data) continue;
      for (const e of r.data.data) {
        last = e.id;
        if (match(e)) onEvent(e);
      }
    }
  }

  async function stream(): Promise<boolean> {
    const q = new URLSearchParams();
    if (filter.certificate_id) q.set("certificate_id", filter.certificate_id);
    if (filter.property_id) q.set("property_id", filter.property_id);
    const headers: Record<string, string> = { Authorization: "Bearer " + (getKey() ?? ""), Accept: "text/event-stream" };
    if (last) headers["Last-Event-ID"] = last;
    const r = await fetch("/v1/events/stream?" + q.toString(), { headers, signal: ctl.signal });
    // 404/405: a server without the stream; 429: this tenant's streams are
    // all in use (other tabs) - either way, poll instead.
    // 401: the polling's first call signs out (the middleware above).
    if ([401, 404, 405, 429].includes(r.status)) return false;
    if (!r.ok || !r.body) return true;
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      buf += value;
      let i: number;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let data = "";
        let id: string | null = null;
        for (const line of block.split("\n")) {
          if (line.startsWith("data:")) data += line.slice(5).trimStart();
          else if (line.startsWith("id:")) id = line.slice(3).trim();
        }
        if (id) last = id;
        if (!data) continue;
        try {
          const e = JSON.parse(data) as Event;
          if (match(e)) onEvent(e);
        } catch { /* a malformed event is dropped, the stream goes on */ }
      }
    }
  }

  (async () => {
    while (!stopped) {
      let again: boolean;
      try {
        again = await stream();
      } catch {
        again = !stopped;
      }
      if (stopped) return;
      if (!again) {
        await poll().catch(() => undefined);
        return;
      }
      await sleep(2000);
    }
  })();
  return () => {
    stopped = true;
    ctl.abort();
  };
}

/** live() for a page that only reloads: events arriving together (a replay
 * after a reconnect, an order's burst) cause one reload, 250 ms later. */
export function liveReload(filter: LiveFilter, reload: () => void): () => void {
  let t: ReturnType<typeof setTimeout> | null = null;
  const stop = live(filter, () => {
    if (t === null) t = setTimeout(() => { t = null; reload(); }, 250);
  });
  return () => {
    if (t !== null) clearTimeout(t);
    stop();
  };
}
