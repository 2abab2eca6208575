// main.tsx - the tenant portal: sign-in, dashboard, certificates, properties,
// edge hostnames, orders, webhooks, events and the audit log, on the public
// REST API only (api.ts).
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { all, api, fetchSummary, getKey, liveReload, must, problemOf, setKey } from "./api";
import type { Problem, S } from "./api";
import { Badge, Field, Link, ProblemBox, fieldErrors, lines, navigate, relative, useLoad, when } from "./ui";
import "./style.css";

type Cert = S["Certificate"];

// ------------------------------------------------------------------ sign-in
function SignIn(p: { onIn: () => void }) {
  const [key, setK] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setKey(key.trim());
    const r = await api.GET("/v1/certificates", { params: { query: { limit: 1 } } }).catch((x: unknown) => ({ error: x, response: undefined, data: undefined }));
    setBusy(false);
    if (r.data) { p.onIn(); return; }
    setKey(null);
    const pr = problemOf(r.error, r.response);
    setProblem({ ...pr, errors: [{ field: "api_key", message: pr.status === 401 ? "This key is not valid (unknown, revoked or expired)." : pr.detail || pr.title }] });
  }
  const errs = fieldErrors(problem);
  return (
    <main class="signin">
      <h1>certplane</h1>
      <form onSubmit={submit} aria-label="Sign in">
        <Field label="API key" name="api_key" errors={errs} hint="A tenant API key (cpk_…). It stays in this tab only.">
          {(id, d) => <input id={id} name="api_key" type="password" autocomplete="off" required value={key} aria-describedby={d} aria-invalid={!!errs["api_key"]} onInput={(e) => setK(e.currentTarget.value)} />}
        </Field>
        <button type="submit" disabled={busy}>Sign in</button>
      </form>
    </main>
  );
}

// ---------------------------------------------------------------- dashboard
function Dashboard() {
  const { data, problem } = useLoad(async () => {
    const summary = await fetchSummary();
    if (summary) {
      return {
        byStatus: summary.certificates.by_status as Record<string, number>,
        soonest: summary.expiring_soonest.slice(0, 5),
        failing: summary.failing_renewals.top.map((c) => ({ id: c.id, name: c.name, words: c.last_error ? "The last renewal attempt failed" + (c.failure_count > 1 ? ` (${c.failure_count} times in a row)` : "") + ": " + sentence(c.last_error) : "Renewal failing." })),
        failingCount: summary.failing_renewals.count,
        pending: summary.hostname_verifications.pending as number | undefined,
      };
    }
    // A server without /v1/summary: the same from the lists.
    const certs = await all((cursor) => must(api.GET("/v1/certificates", { params: { query: { limit: 500, ...(cursor ? { cursor } : {}) } } })));
    const by: Record<string, number> = {};
    for (const c of certs) by[c.status] = (by[c.status] ?? 0) + 1;
    const soonest = certs.filter((c) => c.not_after).sort((a, b) => (a.not_after ?? "").localeCompare(b.not_after ?? "")).slice(0, 5);
    const failing = certs.filter((c) => c.renewal.failure_count > 0 || c.status === "failed").map((c) => ({ id: c.id, name: c.name, words: renewalWords(c) }));
    return { byStatus: by, soonest, failing, failingCount: failing.length, pending: undefined };
  }, []);
  return (
    <section>
      <h1>Dashboard</h1>
      <ProblemBox problem={problem} />
      {data && (
        <>
          <h2>Certificates by status</h2>
          <ul class="counts">
            {Object.entries(data.byStatus).map(([k, v]) => <li><Badge status={k} /> <strong data-testid={"count-" + k}>{v}</strong></li>)}
          </ul>
          {typeof data.pending === "number" && <p>Hostnames pending verification: <strong data-testid="pending-verifications">{data.pending}</strong></p>}
          <h2>Soonest expiries</h2>
          {data.soonest.length ? (
            <table><thead><tr><th>Certificate</th><th>Expires</th></tr></thead>
              <tbody>{data.soonest.map((c) => <tr><td><Link to={"/certificates/" + c.id}>{c.name}</Link></td><td>{when(c.not_after)} <small>{relative(c.not_after)}</small></td></tr>)}</tbody></table>
          ) : <p>No certificates yet. <Link to="/certificates">Create one</Link>.</p>}
          <h2>Failing renewals ({data.failingCount})</h2>
          {data.failing.length ? (
            <ul>{data.failing.map((c) => <li><Link to={"/certificates/" + c.id}>{c.name}</Link>: {c.words}</li>)}</ul>
          ) : <p>None.</p>}
        </>
      )}
    </section>
  );
}

// ------------------------------------------------------------- certificates
function renewalWords(c: Cert): string {
  const r = c.renewal;
  if (c.status === "renewing") return "Renewing now.";
  if (r.last_error) {
    const next = !r.next_attempt_at ? ""
      : new Date(r.next_attempt_at).getTime() <= Date.now() + 1500 ? " It is tried again now."
      : " Next try " + relative(r.next_attempt_at) + " (" + when(r.next_attempt_at) + ").";
    return `The last renewal attempt failed${r.failure_count > 1 ? " (" + r.failure_count + " times in a row)" : ""}: ${r.last_error}.${next}`;
  }
  if (c.auto_renew === "none") return "Auto-renew is off: this certificate will not be renewed.";
  if (r.renew_after) {
    const due = new Date(r.renew_after).getTime() <= Date.now();
    return due ? `Due for renewal (since ${when(r.renew_after)}); it renews once a property using it is in production.` : `Renews automatically ${relative(r.renew_after)} (${when(r.renew_after)}).`;
  }
  return "Not scheduled for renewal yet.";
}

function CertTable(p: { certs: Cert[] }) {
  if (!p.certs.length) return <p>None.</p>;
  return (
    <table>
      <thead><tr><th>Name</th><th>Status</th><th>Source</th><th>Hostnames</th><th>Expires</th><th>Version</th></tr></thead>
      <tbody>
        {p.certs.map((c) => (
          <tr>
            <td><Link to={"/certificates/" + c.id}>{c.name}</Link></td>
            <td><Badge status={c.status} /></td>
            <td>{c.source}</td>
            <td>{(c.sans ?? c.hostnames).join(", ")}</td>
            <td>{when(c.not_after)} <small>{relative(c.not_after)}</small></td>
            <td>{c.version}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Certificates() {
  const list = useLoad(() => all((cursor) => must(api.GET("/v1/certificates", { params: { query: { limit: 500, ...(cursor ? { cursor } : {}) } } }))), []);
  return (
    <section>
      <h1>Certificates</h1>
      <ProblemBox problem={list.problem} />
      {list.data && <CertTable certs={list.data} />}
      <CreateCertificate />
    </section>
  );
}

function CreateCertificate() {
  const [source, setSource] = useState<"self_signed" | "acme" | "upload">("self_signed");
  const [name, setName] = useState("");
  const [hostnames, setHostnames] = useState("");
  const [validity, setValidity] = useState("90");
  const [autoRenew, setAutoRenew] = useState("letsencrypt");
  const [challenge, setChallenge] = useState<"http-01" | "dns-01">("http-01");
  const [pem, setPem] = useState("");
  const [keyPem, setKeyPem] = useState("");
  const [chain, setChain] = useState("");
  const [ctype, setCtype] = useState<"server" | "ca">("server");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const errs = fieldErrors(problem);

  async function readFile(e: Event, set: (s: string) => void) {
    const f = (e.currentTarget as HTMLInputElement).files?.[0];
    if (f) set(await f.text());
  }
  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      if (source === "self_signed") {
        const c = await must(api.POST("/v1/certificates", { body: { source, name, hostnames: lines(hostnames), validity_days: Number(validity), auto_renew: autoRenew } }));
        navigate("/certificates/" + c.id);
      } else if (source === "acme") {
        const r = await api.POST("/v1/certificates", { body: { source, name, hostnames: lines(hostnames), challenge, auto_renew: autoRenew === "none" ? "none" : autoRenew } });
        if (r.error !== undefined || !r.data) throw problemOf(r.error, r.response);
        const d = r.data as S["CertificateWithOrder"];
        navigate(d.order ? "/orders/" + d.order.id : "/certificates/" + d.id);
      } else {
        const c = await must(api.POST("/v1/certificates", { body: { source, name, type: ctype, certificate: pem, private_key: keyPem, ...(chain ? { chain } : {}), auto_renew: ctype === "ca" ? "none" : autoRenew } }));
        navigate("/certificates/" + c.id);
      }
    } catch (x) {
      setProblem(x as Problem);
    } finally {
      setBusy(false);
    }
  }
  return (
    <form onSubmit={submit} aria-label="Create certificate" class="card">
      <h2>Create a certificate</h2>
      <fieldset>
        <legend>Source</legend>
        {([["self_signed", "Self-signed (a bootstrap, renewed by a CA)"], ["acme", "ACME (issued by a CA)"], ["upload", "Upload PEM"]] as const).map(([v, l]) => (
          <label class="inline"><input type="radio" name="source" value={v} checked={source === v} onChange={() => setSource(v)} /> {l}</label>
        ))}
      </fieldset>
      <Field label="Name" name="name" errors={errs}>{(id, d) => <input id={id} required value={name} aria-describedby={d} onInput={(e) => setName(e.currentTarget.value)} />}</Field>
      {source !== "upload" && (
        <Field label="Hostnames" name="hostnames" errors={errs} hint="One a line or separated by commas.">
          {(id, d) => <textarea id={id} rows={2} value={hostnames} aria-describedby={d} onInput={(e) => setHostnames(e.currentTarget.value)} />}
        </Field>
      )}
      {source === "self_signed" && (
        <Field label="Validity (days)" name="validity_days" errors={errs}>{(id, d) => <input id={id} type="number" min={1} value={validity} aria-describedby={d} onInput={(e) => setValidity(e.currentTarget.value)} />}</Field>
      )}
      {source === "acme" && (
        <Field label="Challenge" name="challenge" errors={errs}>
          {(id, d) => <select id={id} value={challenge} aria-describedby={d} onChange={(e) => setChallenge(e.currentTarget.value as "http-01" | "dns-01")}><option value="http-01">HTTP-01</option><option value="dns-01">DNS-01 (publish TXT records)</option></select>}
        </Field>
      )}
      {source === "upload" && (
        <>
          <Field label="Type" name="type" errors={errs}>
            {(id, d) => <select id={id} value={ctype} aria-describedby={d} onChange={(e) => setCtype(e.currentTarget.value as "server" | "ca")}><option value="server">Server certificate</option><option value="ca">CA certificate</option></select>}
          </Field>
          <Field label="Certificate (PEM)" name="certificate" errors={errs}>{(id, d) => <textarea id={id} rows={4} value={pem} aria-describedby={d} onInput={(e) => setPem(e.currentTarget.value)} />}</Field>
          <Field label="Certificate file" name="certificate_file" errors={errs}>{(id) => <input id={id} type="file" accept=".pem,.crt" onChange={(e) => readFile(e, setPem)} />}</Field>
          <Field label="Private key (PEM)" name="private_key" errors={errs}>{(id, d) => <textarea id={id} rows={4} value={keyPem} aria-describedby={d} onInput={(e) => setKeyPem(e.currentTarget.value)} />}</Field>
          <Field label="Private key file" name="private_key_file" errors={errs}>{(id) => <input id={id} type="file" accept=".pem,.key" onChange={(e) => readFile(e, setKeyPem)} />}</Field>
          <Field label="Chain (PEM, optional)" name="chain" errors={errs}>{(id, d) => <textarea id={id} rows={3} value={chain} aria-describedby={d} onInput={(e) => setChain(e.currentTarget.value)} />}</Field>
        </>
      )}
      <Field label="Auto renew" name="auto_renew" errors={errs}>
        {(id, d) => <select id={id} value={autoRenew} aria-describedby={d} onChange={(e) => setAutoRenew(e.currentTarget.value)}><option value="letsencrypt">Let's Encrypt</option><option value="none">None</option></select>}
      </Field>
      <ProblemBox problem={problem} shown={["name", "hostnames", "validity_days", "challenge", "type", "certificate", "private_key", "chain", "auto_renew"]} />
      <button type="submit" disabled={busy}>Create certificate</button>
    </form>
  );
}

async function downloadPem(id: string, name: string) {
  const r = await fetch(`/v1/certificates/${encodeURIComponent(id)}/pem`, { headers: { Authorization: "Bearer " + (getKey() ?? "") } });
  if (!r.ok) return;
  const url = URL.createObjectURL(await r.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = name.replace(/[^A-Za-z0-9._-]/g, "_") + ".pem";
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function EventList(p: { events: S["Event"][] }) {
  if (!p.events.length) return <p>No events yet.</p>;
  return (
    <ul class="events" aria-live="polite" aria-label="Events, newest first">
      {p.events.map((e) => {
        const cid = e.data["certificate_id"];
        const oid = e.data["order_id"];
        return (
          <li data-type={e.type}><time>{when(e.timestamp)}</time> <code>{e.type}</code> {eventWords(e)}
            {typeof cid === "string" && <> <Link to={"/certificates/" + cid}>certificate</Link></>}
            {typeof oid === "string" && <> <Link to={"/orders/" + oid}>order</Link></>}
          </li>
        );
      })}
    </ul>
  );
}

function eventWords(e: S["Event"]): string {
  const d = e.data;
  const v = d["version"] !== undefined ? " version " + String(d["version"]) : "";
  switch (e.type) {
    case "certificate.issued": return "Issued" + v + ".";
    case "certificate.renewed": return "Renewed:" + v + " is current.";
    case "certificate.renewal_failed": return "Renewal failed: " + String(d["detail"] ?? d["reason"] ?? "") + ".";
    case "order.dns_challenge_required": return "Publish TXT " + String(d["txt_record_name"] ?? "") + ".";
    case "order.dns_challenge_completed": return "The CA saw the TXT record of " + String(d["domain"] ?? "the name") + ".";
    case "webhook.test": return "Test event.";
    case "order.failed": return "Order failed: " + String(d["detail"] ?? d["reason"] ?? "") + ".";
    default: return "";
  }
}

function CertificateDetail(p: { id: string }) {
  const load = () => Promise.all([
    must(api.GET("/v1/certificates/{id}", { params: { path: { id: p.id } } })),
    all((cursor) => must(api.GET("/v1/certificates/{id}/versions", { params: { path: { id: p.id }, query: { limit: 500, ...(cursor ? { cursor } : {}) } } }))),
    all((cursor) => must(api.GET("/v1/orders", { params: { query: { certificate_id: p.id, limit: 500, ...(cursor ? { cursor } : {}) } } }))),
    all((cursor) => must(api.GET("/v1/events", { params: { query: { certificate_id: p.id, limit: 500, ...(cursor ? { cursor } : {}) } } }))),
    all((cursor) => must(api.GET("/v1/properties", { params: { query: { certificate_id: p.id, limit: 500, ...(cursor ? { cursor } : {}) } } }))),
  ]);
  const { data, problem, reload } = useLoad(load, [p.id]);
  const [action, setAction] = useState<Problem | null>(null);
  useEffect(() => liveReload({ certificate_id: p.id }, reload), [p.id]);
  useEffect(() => {
    const t = setInterval(reload, 15000); // a status change without an event (renewing)
    return () => clearInterval(t);
  }, [p.id]);
  if (problem && !data) return <ProblemBox problem={problem} />;
  if (!data) return <p>Loading…</p>;
  const [c, versions, orders, events, props] = data;
  async function renew() {
    const r = await api.POST("/v1/certificates/{id}/renew", { params: { path: { id: p.id } } });
    setAction(r.error !== undefined ? problemOf(r.error, r.response) : null);
    reload();
  }
  return (
    <section>
      <h1>Certificate {c.name}</h1>
      <dl class="facts">
        <dt>Status</dt><dd><Badge status={c.status} /></dd>
        <dt>Source</dt><dd>{c.source}</dd>
        <dt>Auto renew</dt><dd>{c.auto_renew}</dd>
        <dt>Names</dt><dd>{(c.sans ?? c.hostnames).join(", ")}</dd>
        <dt>Issuer</dt><dd>{c.issuer ?? "—"}</dd>
        <dt>Valid</dt><dd>{when(c.not_before)} – {when(c.not_after)} <small>{relative(c.not_after)}</small></dd>
        <dt>Current version</dt><dd data-testid="cert-version">{c.version}</dd>
        <dt>Renewal</dt><dd data-testid="renewal-words">{renewalWords(c)}</dd>
        <dt>Properties</dt><dd>{props.length ? props.map((pr, i) => <>{i ? ", " : ""}<Link to={"/properties/" + pr.id}>{pr.name}</Link></>) : "none"}</dd>
      </dl>
      <p class="actions">
        <button type="button" onClick={() => downloadPem(c.id, c.name)} disabled={!c.version}>Download PEM</button>
        <button type="button" onClick={renew} disabled={c.source === "upload" && c.auto_renew === "none"}>Renew now</button>
      </p>
      <ProblemBox problem={action} />
      <h2>Versions</h2>
      <table data-testid="versions">
        <thead><tr><th>Version</th><th>Issuer</th><th>Serial</th><th>Not after</th><th>Order</th></tr></thead>
        <tbody>
          {versions.slice().reverse().map((v) => (
            <tr data-version={v.version}><td>{v.version}{v.current ? " (current)" : ""}</td><td>{v.issuer}</td><td><code>{v.serial.slice(0, 16)}</code></td><td>{when(v.not_after)}</td><td>{v.order_id ? <Link to={"/orders/" + v.order_id}>{v.order_id.slice(0, 8)}</Link> : "—"}</td></tr>
          ))}
        </tbody>
      </table>
      <h2>Orders</h2>
      <OrderTable orders={orders} />
      <h2>Events</h2>
      <EventList events={events.slice().reverse()} />
    </section>
  );
}

// ------------------------------------------------------------------- orders
function OrderTable(p: { orders: S["Order"][] }) {
  if (!p.orders.length) return <p>None.</p>;
  return (
    <table>
      <thead><tr><th>Order</th><th>Kind</th><th>Status</th><th>Names</th><th>Challenge</th><th>Created</th></tr></thead>
      <tbody>{p.orders.slice().reverse().map((o) => (
        <tr><td><Link to={"/orders/" + o.id}>{o.id.slice(0, 8)}</Link></td><td>{o.kind}</td><td><Badge status={o.status} /></td><td>{o.identifiers.join(", ")}</td><td>{o.challenge}</td><td>{when(o.created_at)}</td></tr>
      ))}</tbody>
    </table>
  );
}

function Orders() {
  const { data, problem } = useLoad(() => all((cursor) => must(api.GET("/v1/orders", { params: { query: { limit: 500, ...(cursor ? { cursor } : {}) } } }))), []);
  return <section><h1>Orders</h1><ProblemBox problem={problem} />{data && <OrderTable orders={data} />}</section>;
}

const FINAL = ["valid", "failed", "canceled"];

function OrderDetail(p: { id: string }) {
  const { data: o, problem, reload } = useLoad(() => must(api.GET("/v1/orders/{id}", { params: { path: { id: p.id } } })), [p.id]);
  const cert = useLoad(() => (o ? must(api.GET("/v1/certificates/{id}", { params: { path: { id: o.certificate_id } } })) : Promise.resolve(null)), [o?.certificate_id, o?.status]);
  const [action, setAction] = useState<Problem | null>(null);
  const [note, setNote] = useState("");
  const [records, setRecords] = useState<S["VerifyRecord"][]>([]);
  const running = !!o && !FINAL.includes(o.status);
  useEffect(() => (o ? liveReload({ certificate_id: o.certificate_id }, reload) : undefined), [o?.certificate_id]);
  useEffect(() => {
    if (!running) return;
    const t = setInterval(reload, 2000); // state changes without an event (validating, issuing)
    return () => clearInterval(t);
  }, [running, p.id]);
  if (problem && !o) return <ProblemBox problem={problem} />;
  if (!o) return <p>Loading…</p>;
  async function post(what: "verify" | "cancel") {
    if (what === "verify") {
      const r = await api.POST("/v1/orders/{id}/verify", { params: { path: { id: p.id } } });
      setAction(r.error !== undefined ? problemOf(r.error, r.response) : null);
      setRecords(r.data?.records ?? []);
      setNote(r.error !== undefined ? "" : "Asked the CA to validate now.");
    } else {
      const r = await api.POST("/v1/orders/{id}/cancel", { params: { path: { id: p.id } } });
      setAction(r.error !== undefined ? problemOf(r.error, r.response) : null);
      setNote(r.error !== undefined ? "" : "Canceled.");
    }
    reload();
  }
  return (
    <section>
      <h1>Order {o.id.slice(0, 8)}</h1>
      <dl class="facts">
        <dt>Status</dt><dd data-testid="order-status"><Badge status={o.status} /></dd>
        <dt>Certificate</dt><dd><Link to={"/certificates/" + o.certificate_id}>{cert.data?.name ?? o.certificate_id.slice(0, 8)}</Link>{cert.data && <> <Badge status={cert.data.status} /></>}</dd>
        <dt>Kind</dt><dd>{o.kind}</dd>
        <dt>Names</dt><dd>{o.identifiers.join(", ")}</dd>
        <dt>CA</dt><dd>{o.ca}</dd>
        {o.error && <><dt>Problem</dt><dd class="error-text">{o.error.detail} <small>({o.error.reason})</small></dd></>}
        {o.next_attempt_at && <><dt>Next attempt</dt><dd>{when(o.next_attempt_at)}</dd></>}
      </dl>
      <h2>Authorizations</h2>
      {o.authorizations.length === 0 && <p>Waiting for the CA…</p>}
      {o.authorizations.map((a) => (
        <div class="card authz" data-identifier={a.identifier ?? ""}>
          <h3>{a.identifier ?? "(not asked yet)"} <Badge status={a.status} /></h3>
          {a.challenge?.type === "dns-01" && (
            <>
              <p>Publish this TXT record in the hostname's DNS zone, then press Verify:</p>
              <dl class="facts">
                <dt>Name</dt><dd><code class="txt-name">{a.challenge.txt_record_name}</code></dd>
                <dt>Type</dt><dd>TXT</dd>
                <dt>Value</dt><dd><code class="txt-value">{a.challenge.txt_record_value}</code></dd>
                {records.filter((x) => x.name === a.challenge?.txt_record_name && x.value === a.challenge?.txt_record_value).map((x) => (
                  <><dt>At Verify</dt><dd class={x.visible ? "" : "error-text"} data-testid="txt-visible">{x.visible ? "visible in DNS" : "not visible yet" + (x.seen.length ? " (found: " + x.seen.join(", ") + ")" : "") + (x.detail ? " - " + x.detail : "")}</dd></>
                ))}
              </dl>
            </>
          )}
          {a.challenge?.type === "http-01" && (
            <>
              <p>The CA fetches this URL; certplane answers it itself once the hostname CNAMEs to its edge hostname.</p>
              <dl class="facts">
                <dt>URL</dt><dd><code class="http-url">{a.challenge.url}</code></dd>
                <dt>Body</dt><dd><code class="http-body">{a.challenge.body}</code></dd>
              </dl>
            </>
          )}
          {!a.challenge && <p>Nothing to publish.</p>}
        </div>
      ))}
      <p class="actions">
        <button type="button" onClick={() => post("verify")} disabled={!running}>Verify</button>
        <button type="button" onClick={() => post("cancel")} disabled={!running}>Cancel order</button>
        <span role="status">{note}</span>
      </p>
      <ProblemBox problem={action} />
    </section>
  );
}

// ---------------------------------------------------------------- properties
function Properties() {
  const { data, problem } = useLoad(() => all((cursor) => must(api.GET("/v1/properties", { params: { query: { limit: 500, ...(cursor ? { cursor } : {}) } } }))), []);
  return (
    <section>
      <h1>Properties</h1>
      <ProblemBox problem={problem} />
      {data && (data.length ? (
        <table>
          <thead><tr><th>Name</th><th>Hostnames</th><th>Edge hostname</th><th>Staging</th><th>Production</th></tr></thead>
          <tbody>{data.map((pr) => (
            <tr><td><Link to={"/properties/" + pr.id}>{pr.name}</Link></td><td>{pr.hostnames.join(", ")}</td><td>{pr.edge_hostname}</td><td>{pr.staging ? "v" + pr.staging.version : "—"}</td><td>{pr.production ? "v" + pr.production.version : "—"}</td></tr>
          ))}</tbody>
        </table>
      ) : <p>None yet.</p>)}
      <PropertyForm />
    </section>
  );
}

function useChoices() {
  return useLoad(() => Promise.all([
    all((cursor) => must(api.GET("/v1/edge-hostnames", { params: { query: { limit: 500, ...(cursor ? { cursor } : {}) } } }))),
    all((cursor) => must(api.GET("/v1/certificates", { params: { query: { limit: 500, ...(cursor ? { cursor } : {}) } } }))),
  ]), []);
}

function PropertyForm() {
  const choices = useChoices();
  const [name, setName] = useState("");
  const [hostnames, setHostnames] = useState("");
  const [edge, setEdge] = useState("");
  const [cert, setCert] = useState("");
  const [auto, setAuto] = useState(true);
  const [problem, setProblem] = useState<Problem | null>(null);
  const errs = fieldErrors(problem);
  const [edges, certs] = choices.data ?? [[], []];
  async function submit(e: Event) {
    e.preventDefault();
    setProblem(null);
    try {
      const pr = await must(api.POST("/v1/properties", { body: { name, hostnames: lines(hostnames), edge_hostname_id: edge || (edges[0]?.id ?? ""), ...(cert ? { certificate_id: cert } : {}), certificate_renew_automation: auto } }));
      navigate("/properties/" + pr.id);
    } catch (x) { setProblem(x as Problem); }
  }
  return (
    <form onSubmit={submit} aria-label="Create property" class="card">
      <h2>Create a property</h2>
      <Field label="Property name" name="name" errors={errs}>{(id, d) => <input id={id} required value={name} aria-describedby={d} onInput={(e) => setName(e.currentTarget.value)} />}</Field>
      <Field label="Property hostnames" name="hostnames" errors={errs} hint="One a line or separated by commas.">{(id, d) => <textarea id={id} rows={2} value={hostnames} aria-describedby={d} onInput={(e) => setHostnames(e.currentTarget.value)} />}</Field>
      <Field label="Edge hostname" name="edge_hostname_id" errors={errs} hint={edges.length ? undefined : "Create an edge hostname first."}>
        {(id, d) => <select id={id} value={edge} aria-describedby={d} onChange={(e) => setEdge(e.currentTarget.value)}>{edges.map((x) => <option value={x.id}>{x.hostname}</option>)}</select>}
      </Field>
      <Field label="Certificate" name="certificate_id" errors={errs}>
        {(id, d) => <select id={id} value={cert} aria-describedby={d} onChange={(e) => setCert(e.currentTarget.value)}><option value="">(none)</option>{certs.map((c) => <option value={c.id}>{c.name}</option>)}</select>}
      </Field>
      <div class="field"><label class="inline"><input type="checkbox" checked={auto} onChange={(e) => setAuto(e.currentTarget.checked)} /> Certificate renew automation</label></div>
      <ProblemBox problem={problem} shown={["name", "hostnames", "edge_hostname_id", "certificate_id"]} />
      <button type="submit">Create property</button>
    </form>
  );
}

function PropertyDetail(p: { id: string }) {
  const { data: loaded, problem, reload } = useLoad(async () => {
    const r = await api.GET("/v1/properties/{id}", { params: { path: { id: p.id } } });
    if (r.error !== undefined || !r.data) throw problemOf(r.error, r.response);
    return { pr: r.data, etag: r.response.headers.get("ETag") };
  }, [p.id]);
  const pr = loaded?.pr;
  const choices = useChoices();
  const [dns, setDns] = useState<S["DnsCheck"] | null>(null);
  const [action, setAction] = useState<Problem | null>(null);
  const [note, setNote] = useState("");
  const [cert, setCert] = useState<string | null>(null);
  // The checkbox shows what was clicked until the property reloads: rendering
  // the stale server value in between would flip it back under the user.
  const [auto, setAuto] = useState<boolean | null>(null);
  useEffect(() => setAuto(null), [loaded]);
  useEffect(() => liveReload({ property_id: p.id }, reload), [p.id]);
  if (problem && !pr) return <ProblemBox problem={problem} />;
  if (!pr) return <p>Loading…</p>;
  const certs = choices.data?.[1] ?? [];
  async function check() {
    setAction(null);
    try { setDns(await must(api.GET("/v1/properties/{id}/dns-check", { params: { path: { id: p.id } } }))); setNote("DNS checked " + when(new Date().toISOString()) + "."); reload(); }
    catch (x) { setAction(x as Problem); }
  }
  async function deploy(environment: "staging" | "production") {
    setAction(null);
    try { const d = await must(api.POST("/v1/properties/{id}/deployments", { params: { path: { id: p.id } }, body: { environment } })); setNote(`Deployed version ${d.version} to ${environment}.`); reload(); }
    catch (x) { setAction(x as Problem); }
  }
  async function save(body: { certificate_id?: string | null; certificate_renew_automation?: boolean }) {
    setAction(null);
    // If-Match: a change made meanwhile (another tab) is a 412, not overwritten.
    const etag = loaded?.etag;
    const r = await api.PATCH("/v1/properties/{id}", { params: { path: { id: p.id } }, body, ...(etag ? { headers: { "If-Match": etag } } : {}) });
    if (r.response.status === 412) {
      setAction({ type: "about:blank", title: "Changed elsewhere", status: 412, detail: "The property changed since this page loaded (another tab or user); it is reloaded now: check it and save again.", errors: [] });
      setCert(null);
    } else if (r.error !== undefined) setAction(problemOf(r.error, r.response));
    else setNote("Saved.");
    reload();
  }
  const byHost = new Map((dns?.hostnames ?? []).map((h) => [h.hostname, h]));
  const errs = fieldErrors(action);
  return (
    <section>
      <h1>Property {pr.name}</h1>
      <dl class="facts">
        <dt>Edge hostname</dt><dd><code>{pr.edge_hostname}</code></dd>
        <dt>Version</dt><dd>{pr.version}</dd>
        <dt>Staging</dt><dd>{pr.staging ? `version ${pr.staging.version}, ${when(pr.staging.deployed_at)}` : "not deployed"}</dd>
        <dt>Production</dt><dd data-testid="production">{pr.production ? `version ${pr.production.version}, ${when(pr.production.deployed_at)}` : "not deployed"}</dd>
        <dt>Certificate</dt><dd>{pr.certificate_id ? <Link to={"/certificates/" + pr.certificate_id}>{certs.find((c) => c.id === pr.certificate_id)?.name ?? pr.certificate_id.slice(0, 8)}</Link> : "none"}</dd>
        <dt>Renew automation</dt><dd>{pr.certificate_renew_automation ? "on" : "off"}</dd>
      </dl>
      <h2>Hostnames</h2>
      <p>Point each hostname at the edge hostname: <code>CNAME {pr.edge_hostname}</code>.</p>
      <table data-testid="hostnames">
        <thead><tr><th>Hostname</th><th>CNAME</th><th>Verification</th><th>Detail</th></tr></thead>
        <tbody>{pr.hostname_verification.map((v) => {
          const d = byHost.get(v.hostname);
          return (
            <tr data-hostname={v.hostname}>
              <td>{v.hostname}</td>
              <td class="cname">{d ? (d.points_to_edge ? "pointed to the edge" : "not pointed") : v.method === "cname" && v.status === "verified" ? "pointed at the last check" : "not checked yet"}{!d && v.checked_at && <small class="block">{relative(v.checked_at)}</small>}</td>
              <td><Badge status={v.status} />{v.method ? " by " + v.method : ""}</td>
              <td>{sentence(d?.detail ?? v.detail ?? "")}{v.status === "pending" && <small class="block">Or prove control with a TXT record <code>{v.txt_record_name}</code> = <code>{v.token}</code>.</small>}</td>
            </tr>
          );
        })}</tbody>
      </table>
      <p class="actions">
        <button type="button" onClick={check}>Check DNS</button>
        <button type="button" onClick={() => deploy("staging")}>Deploy to staging</button>
        <button type="button" onClick={() => deploy("production")}>Deploy to production</button>
        <span role="status">{note}</span>
      </p>
      <form class="card" aria-label="Certificate settings" onSubmit={(e) => { e.preventDefault(); save({ certificate_id: (cert ?? pr.certificate_id) || null }); }}>
        <h2>Certificate settings</h2>
        <Field label="Attach certificate" name="certificate_id" errors={errs}>
          {(id, d) => <select id={id} aria-describedby={d} value={cert ?? pr.certificate_id ?? ""} onChange={(e) => setCert(e.currentTarget.value)}><option value="">(none)</option>{certs.map((c) => <option value={c.id}>{c.name}</option>)}</select>}
        </Field>
        <div class="field"><label class="inline"><input type="checkbox" checked={auto ?? pr.certificate_renew_automation} onChange={(e) => { const on = e.currentTarget.checked; setAuto(on); save({ certificate_renew_automation: on }); }} /> Certificate renew automation</label></div>
        <button type="submit">Save certificate</button>
      </form>
      <ProblemBox problem={action} shown={["certificate_id"]} />
    </section>
  );
}

function sentence(s: string): string {
  return s && !/[.!?]$/.test(s) ? s + "." : s;
}

// ------------------------------------------------------------ edge hostnames
function EdgeHostnames() {
  const { data, problem, reload } = useLoad(() => all((cursor) => must(api.GET("/v1/edge-hostnames", { params: { query: { limit: 500, ...(cursor ? { cursor } : {}) } } }))), []);
  const [label, setLabel] = useState("");
  const [fp, setFp] = useState<Problem | null>(null);
  const errs = fieldErrors(fp);
  async function submit(e: Event) {
    e.preventDefault();
    setFp(null);
    try { await must(api.POST("/v1/edge-hostnames", { body: label ? { label } : {} })); setLabel(""); reload(); }
    catch (x) { setFp(x as Problem); }
  }
  return (
    <section>
      <h1>Edge hostnames</h1>
      <ProblemBox problem={problem} />
      {data && (data.length ? <ul>{data.map((x) => <li><code>{x.hostname}</code> <small>created {when(x.created_at)}</small></li>)}</ul> : <p>None yet.</p>)}
      <form onSubmit={submit} aria-label="Create edge hostname" class="card">
        <h2>Create an edge hostname</h2>
        <Field label="Label" name="label" errors={errs} hint="Leave empty for a generated one.">{(id, d) => <input id={id} value={label} aria-describedby={d} onInput={(e) => setLabel(e.currentTarget.value)} />}</Field>
        <ProblemBox problem={fp} shown={["label"]} />
        <button type="submit">Create edge hostname</button>
      </form>
    </section>
  );
}

// ------------------------------------------------------------------ webhooks
function Webhooks() {
  const { data, problem, reload } = useLoad(() => all((cursor) => must(api.GET("/v1/webhooks", { params: { query: { limit: 500, ...(cursor ? { cursor } : {}) } } }))), []);
  const [url, setUrl] = useState("");
  const [events, setEvents] = useState("*");
  const [secret, setSecret] = useState<string | null>(null);
  const [fp, setFp] = useState<Problem | null>(null);
  const errs = fieldErrors(fp);
  async function submit(e: Event) {
    e.preventDefault();
    setFp(null);
    try {
      const w = await must(api.POST("/v1/webhooks", { body: { url, events: lines(events) as S["WebhookEventTypes"] } }));
      setSecret(w.secret); setUrl(""); reload();
    } catch (x) { setFp(x as Problem); }
  }
  return (
    <section>
      <h1>Webhooks</h1>
      <ProblemBox problem={problem} />
      {secret && <div class="secret" role="status">Signing secret (shown once, store it now): <code>{secret}</code> <button type="button" onClick={() => setSecret(null)}>Done</button></div>}
      {data && (data.length ? data.map((w) => <WebhookRow w={w} onSecret={setSecret} />) : <p>None yet.</p>)}
      <form onSubmit={submit} aria-label="Create webhook" class="card">
        <h2>Create a webhook</h2>
        <Field label="Endpoint URL" name="url" errors={errs}>{(id, d) => <input id={id} type="url" required value={url} aria-describedby={d} onInput={(e) => setUrl(e.currentTarget.value)} />}</Field>
        <Field label="Event types" name="events" errors={errs} hint="* for every type, or types separated by commas.">{(id, d) => <input id={id} value={events} aria-describedby={d} onInput={(e) => setEvents(e.currentTarget.value)} />}</Field>
        <ProblemBox problem={fp} shown={["url", "events"]} />
        <button type="submit">Create webhook</button>
      </form>
    </section>
  );
}

function WebhookRow(p: { w: S["Webhook"]; onSecret: (s: string) => void }) {
  const [open, setOpen] = useState(false);
  const [note, setNote] = useState("");
  const dl = useLoad(() => (open ? all((cursor) => must(api.GET("/v1/webhooks/{id}/deliveries", { params: { path: { id: p.w.id }, query: { limit: 100, ...(cursor ? { cursor } : {}) } } }))) : Promise.resolve([])), [open, p.w.id]);
  const pending = !!dl.data?.some((d) => d.state === "pending");
  useEffect(() => {
    if (!open || !pending) return;
    const t = setInterval(dl.reload, 2000); // until every delivery is decided
    return () => clearInterval(t);
  }, [open, pending]);
  async function rotate() {
    const r = await api.POST("/v1/webhooks/{id}/rotate-secret", { params: { path: { id: p.w.id } }, body: {} });
    if (r.error !== undefined || !r.data) { setNote(problemOf(r.error, r.response).detail); return; }
    p.onSecret(r.data.secret);
    setNote("New secret made; the previous one still signs for a day.");
  }
  async function redeliver(d: S["WebhookDelivery"]) {
    const r = await api.POST("/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", { params: { path: { id: p.w.id, delivery_id: d.id } } });
    setNote(r.error !== undefined ? problemOf(r.error, r.response).detail : "Redelivery of " + d.event_type + " queued.");
    dl.reload();
  }
  async function test() {
    const r = await api.POST("/v1/webhooks/{id}/test", { params: { path: { id: p.w.id } } });
    setNote(r.error !== undefined ? problemOf(r.error, r.response).detail : "Test event queued.");
    dl.reload();
  }
  return (
    <div class="card">
      <h3><code>{p.w.url}</code> {p.w.enabled ? <Badge status="enabled" /> : <Badge status="disabled" />}</h3>
      <p>Events: {p.w.events.join(", ")}{p.w.disabled_reason ? " — " + p.w.disabled_reason : ""}</p>
      <p class="actions"><button type="button" onClick={test}>Send test</button> <button type="button" aria-expanded={open} onClick={() => setOpen(!open)}>Deliveries</button> <button type="button" onClick={rotate}>Rotate secret</button> <span role="status">{note}</span></p>
      {open && dl.data && (dl.data.length ? (
        <table><thead><tr><th>Event</th><th>State</th><th>Attempts</th><th>Last error</th><th>Created</th><th></th></tr></thead>
          <tbody>{dl.data.map((d) => <tr><td>{d.event_type}</td><td><Badge status={d.state} /></td><td>{d.attempts.length}</td><td>{d.last_error ?? ""}</td><td>{when(d.created_at)}</td><td><button type="button" onClick={() => redeliver(d)} aria-label={"Redeliver " + d.event_type} disabled={d.state === "pending"} title={d.state === "pending" ? "A pending delivery is retried on its schedule" : undefined}>Redeliver</button></td></tr>)}</tbody></table>
      ) : <p>No deliveries yet.</p>)}
    </div>
  );
}

// ------------------------------------------------------- events, audit log
function Events() {
  const { data, problem, reload } = useLoad(() => all((cursor) => must(api.GET("/v1/events", { params: { query: { limit: 500, ...(cursor ? { cursor } : {}) } } }))), []);
  useEffect(() => liveReload({}, reload), []);
  return <section><h1>Events</h1><ProblemBox problem={problem} />{data && <EventList events={data.slice().reverse()} />}</section>;
}

function Audit() {
  const { data, problem } = useLoad(() => all((cursor) => must(api.GET("/v1/audit-log", { params: { query: { limit: 500, ...(cursor ? { cursor } : {}) } } }))), []);
  return (
    <section>
      <h1>Audit log</h1>
      <ProblemBox problem={problem} />
      {data && <table><thead><tr><th>When</th><th>Actor</th><th>Action</th><th>Resource</th></tr></thead>
        <tbody>{data.slice().reverse().map((a) => <tr><td>{when(a.created_at)}</td><td>{a.actor === "operator" ? "operator" : <span title={a.actor}>API key {a.actor.slice(0, 8)}</span>}</td><td><code>{a.action}</code></td><td>{a.resource_type} {a.resource_id?.slice(0, 8) ?? ""}</td></tr>)}</tbody></table>}
    </section>
  );
}

// ------------------------------------------------------------------ API keys
function ApiKeys() {
  const { data, problem, reload } = useLoad(() => all((cursor) => must(api.GET("/v1/api-keys", { params: { query: { limit: 500, ...(cursor ? { cursor } : {}) } } }))), []);
  const [name, setName] = useState("");
  const [scope, setScope] = useState<"admin" | "read">("read");
  const [expires, setExpires] = useState("");
  const [made, setMade] = useState<string | null>(null);
  const [fp, setFp] = useState<Problem | null>(null);
  const [note, setNote] = useState("");
  const errs = fieldErrors(fp);
  async function submit(e: Event) {
    e.preventDefault();
    setFp(null);
    try {
      const k = await must(api.POST("/v1/api-keys", { body: { name, scope, ...(expires ? { expires_at: new Date(expires + "T00:00:00Z").toISOString().replace(/\.\d+Z$/, "Z") } : {}) } }));
      setMade(k.key); setName(""); reload();
    } catch (x) { setFp(x as Problem); }
  }
  async function revoke(k: S["ApiKey"]) {
    const r = await api.DELETE("/v1/api-keys/{id}", { params: { path: { id: k.id } } });
    setNote(r.error !== undefined ? problemOf(r.error, r.response).detail : "Revoked " + k.prefix + "….");
    reload();
  }
  return (
    <section>
      <h1>API keys</h1>
      <ProblemBox problem={problem} />
      {made && <div class="secret" role="status">New key (shown once, store it now): <code>{made}</code> <button type="button" onClick={() => setMade(null)}>Done</button></div>}
      {data && (
        <table><thead><tr><th>Name</th><th>Prefix</th><th>Scope</th><th>Expires</th><th>Created</th><th></th></tr></thead>
          <tbody>{data.map((k) => <tr><td>{k.name}{getKey()?.startsWith(k.prefix) && <small> (this session's key)</small>}</td><td><code>{k.prefix}</code></td><td>{k.scope}</td><td>{k.expires_at ? when(k.expires_at) : "never"}</td><td>{when(k.created_at)}</td><td><button type="button" onClick={() => revoke(k)} aria-label={"Revoke " + k.name}>Revoke</button></td></tr>)}</tbody></table>
      )}
      <p role="status">{note}</p>
      <form onSubmit={submit} aria-label="Create API key" class="card">
        <h2>Create an API key</h2>
        <Field label="Key name" name="name" errors={errs}>{(id, d) => <input id={id} required value={name} aria-describedby={d} onInput={(e) => setName(e.currentTarget.value)} />}</Field>
        <Field label="Scope" name="scope" errors={errs} hint="read: GET only, for dashboards and this portal when it only looks.">
          {(id, d) => <select id={id} value={scope} aria-describedby={d} onChange={(e) => setScope(e.currentTarget.value as "admin" | "read")}><option value="read">read</option><option value="admin">admin</option></select>}
        </Field>
        <Field label="Expires on (optional)" name="expires_at" errors={errs}>{(id, d) => <input id={id} type="date" value={expires} aria-describedby={d} onInput={(e) => setExpires(e.currentTarget.value)} />}</Field>
        <ProblemBox problem={fp} shown={["name", "scope", "expires_at"]} />
        <button type="submit">Create API key</button>
      </form>
    </section>
  );
}

// ------------------------------------------------------------------- shell
const NAV: [string, string][] = [["/", "Dashboard"], ["/certificates", "Certificates"], ["/properties", "Properties"], ["/edge-hostnames", "Edge hostnames"], ["/orders", "Orders"], ["/webhooks", "Webhooks"], ["/events", "Events"], ["/audit-log", "Audit log"], ["/api-keys", "API keys"]];

function route(path: string) {
  const m = (re: RegExp) => path.match(re)?.[1];
  let id: string | undefined;
  if ((id = m(/^\/certificates\/([^/]+)$/))) return <CertificateDetail id={id} />;
  if ((id = m(/^\/properties\/([^/]+)$/))) return <PropertyDetail id={id} />;
  if ((id = m(/^\/orders\/([^/]+)$/))) return <OrderDetail id={id} />;
  switch (path) {
    case "/certificates": return <Certificates />;
    case "/properties": return <Properties />;
    case "/edge-hostnames": return <EdgeHostnames />;
    case "/orders": return <Orders />;
    case "/webhooks": return <Webhooks />;
    case "/events": return <Events />;
    case "/audit-log": return <Audit />;
    case "/api-keys": return <ApiKeys />;
    default: return <Dashboard />;
  }
}

function App() {
  const here = () => location.pathname.replace(/^\/portal/, "") || "/";
  const [path, setPath] = useState(here());
  const [signed, setSigned] = useState(!!getKey());
  useEffect(() => {
    const on = () => setPath(here());
    const out = () => setSigned(false);
    addEventListener("popstate", on);
    addEventListener("certplane:signed-out", out);
    return () => { removeEventListener("popstate", on); removeEventListener("certplane:signed-out", out); };
  }, []);
  useEffect(() => { document.title = "certplane — " + (NAV.find(([p]) => p !== "/" && path.startsWith(p))?.[1] ?? (signed ? "Dashboard" : "Sign in")); }, [path, signed]);
  if (!signed) return <SignIn onIn={() => setSigned(true)} />;
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header>
        <strong>certplane</strong>
        <nav aria-label="Main">{NAV.map(([p, l]) => <Link to={p} current={p === "/" ? path === "/" : path.startsWith(p)}>{l}</Link>)}</nav>
        <button type="button" onClick={() => { setKey(null); setSigned(false); }}>Sign out</button>
      </header>
      <main id="main" key={path}>{route(path)}</main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
