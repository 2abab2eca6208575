// ui.tsx - small shared pieces: forms whose problem+json errors land next to
// the field they name, tables, dates, plain-word statuses.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { Problem } from "./api";

export function navigate(to: string): void {
  history.pushState(null, "", "/portal" + to);
  dispatchEvent(new PopStateEvent("popstate"));
}

export function Link(p: { to: string; children: ComponentChildren; current?: boolean }) {
  return (
    <a href={"/portal" + p.to} aria-current={p.current ? "page" : undefined}
      onClick={(e) => { if (e.ctrlKey || e.metaKey || e.shiftKey) return; e.preventDefault(); navigate(p.to); }}>
      {p.children}
    </a>
  );
}

/** Field errors of a problem, by field name. */
export function fieldErrors(p: Problem | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of p?.errors ?? []) out[e.field] = out[e.field] ? out[e.field] + "; " + e.message : e.message;
  return out;
}

let seq = 0;
export function Field(p: { label: string; name: string; errors: Record<string, string>; children: (id: string, describedBy?: string) => ComponentChildren; hint?: string }) {
  const [id] = useState(() => "f" + ++seq);
  const err = p.errors[p.name];
  return (
    <div class={"field" + (err ? " invalid" : "")}>
      <label for={id}>{p.label}</label>
      {p.children(id, err ? id + "-err" : p.hint ? id + "-hint" : undefined)}
      {p.hint && !err && <small id={id + "-hint"}>{p.hint}</small>}
      {err && <span class="field-error" id={id + "-err"} role="alert" data-field={p.name}>{err}</span>}
    </div>
  );
}

/** The problem as a banner (with the field errors no field on the form shows). */
export function ProblemBox(p: { problem: Problem | null; shown?: string[] }) {
  if (!p.problem) return null;
  const rest = p.problem.errors.filter((e) => !(p.shown ?? []).includes(e.field));
  // Every error is next to its field already: say where, not the same words again.
  const atFields = p.problem.errors.length > 0 && rest.length === 0;
  return (
    <div class="problem" role={atFields ? undefined : "alert"}>
      <strong>{p.problem.title}</strong> {atFields ? "Correct the field" + (p.problem.errors.length > 1 ? "s" : "") + " marked above." : p.problem.detail}
      {rest.length > 0 && <ul>{rest.map((e) => <li>{e.field}: {e.message}</li>)}</ul>}
    </div>
  );
}

export function when(s: string | null | undefined): string {
  if (!s) return "—";
  const d = new Date(s);
  return isNaN(d.getTime()) ? s : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
}

export function relative(s: string | null | undefined): string {
  if (!s) return "";
  const secs = Math.round((new Date(s).getTime() - Date.now()) / 1000);
  const a = Math.abs(secs);
  const txt = a < 90 ? a + " s" : a < 5400 ? Math.round(a / 60) + " min" : a < 172800 ? Math.round(a / 3600) + " h" : Math.round(a / 86400) + " days";
  return secs >= 0 ? "in " + txt : txt + " ago";
}

export function Badge(p: { status: string }) {
  return <span class={"badge s-" + p.status}>{p.status}</span>;
}

/** Load once per deps change; reload() to refresh. */
export function useLoad<T>(fn: () => Promise<T>, deps: unknown[]): { data: T | null; problem: Problem | null; reload: () => void } {
  const [data, setData] = useState<T | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    fn().then((d) => { if (live) { setData(d); setProblem(null); } })
      .catch((p: Problem) => { if (live) setProblem(p); });
    return () => { live = false; };
  }, [...deps, tick]);
  return { data, problem, reload: () => setTick((t) => t + 1) };
}

export function lines(s: string): string[] {
  return s.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
}
