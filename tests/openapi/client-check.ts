// client-check.ts - a tiny portal-style client, type-checked under
// `tsc --strict` against the types openapi-typescript generates from
// openapi.yaml (tests/openapi/typecheck.sh). It must compile: a contract
// change that breaks what a generated client can do breaks this test.
import type { components, paths } from "./api";

type CreateCertificate =
  paths["/v1/certificates"]["post"]["requestBody"]["content"]["application/json"];
type PatchCertificate =
  paths["/v1/certificates/{id}"]["patch"]["requestBody"]["content"]["application/json"];
type Certificate = components["schemas"]["Certificate"];
type Event = components["schemas"]["Event"];
type EventPage = paths["/v1/events"]["get"]["responses"]["200"]["content"]["application/json"];
type Order = components["schemas"]["Order"];
type Problem = components["schemas"]["Problem"];

// metadata is a free-form object: any JSON values under any keys
const create: CreateCertificate = {
  source: "self_signed",
  name: "www",
  hostnames: ["www.example.com"],
  validity_days: 30,
  auto_renew: "letsencrypt",
  metadata: { team: "web", cost_center: 42, tags: ["a", "b"], owner: { name: "x" } },
};
const patch: PatchCertificate = { metadata: { team: "shop" } };

// ...but still an object: the types are not `any`
// @ts-expect-error metadata is an object, not a string
const wrong: CreateCertificate = { source: "self_signed", name: "x", hostnames: [], metadata: "team" };

function headers(key: string): Record<string, string> {
  return { Authorization: "Bearer " + key, "Content-Type": "application/json" };
}

export async function createThenEvents(base: string, key: string): Promise<string[]> {
  const r = await fetch(base + "/v1/certificates", {
    method: "POST",
    headers: headers(key),
    body: JSON.stringify(create),
  });
  if (r.status === 401) {
    const scheme: string | null = r.headers.get("WWW-Authenticate");
    throw new Error("sign in again (" + (scheme ?? "") + ")");
  }
  if (!r.ok) {
    const p = (await r.json()) as Problem;
    throw new Error(p.detail);
  }
  const location: string | null = r.headers.get("Location");
  const cert = (await r.json()) as Certificate;
  const team: unknown = cert.metadata["team"];
  await fetch(base + (location ?? "/v1/certificates/" + cert.id), {
    method: "PATCH",
    headers: headers(key),
    body: JSON.stringify(patch),
  });
  const page = (await (await fetch(base + "/v1/events", { headers: headers(key) })).json()) as EventPage;
  // event data is a free-form object the client reads by key
  return page.data.map((e: Event) => {
    const id: unknown = e.data["certificate_id"];
    return typeof id === "string" ? e.type + " " + id + " " + String(team) : e.type;
  });
}

export function orderRecords(o: Order): string[] {
  const team: unknown = o.metadata["team"];
  return o.authorizations.flatMap((a) =>
    a.challenge && a.challenge.type === "dns-01"
      ? [`${a.challenge.txt_record_name ?? ""} TXT ${a.challenge.txt_record_value ?? ""} ${String(team)}`]
      : [],
  );
}

void wrong;
