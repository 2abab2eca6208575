/*
 * db.h - certplane's storage interface. Every line of SQL lives behind this
 * header; callers get domain functions and never see sqlite3. Rows come back
 * as jansson objects shaped like the API's resources, so that a second
 * backend (PostgreSQL) can be added behind the same functions.
 *
 * Threading: a struct db is one connection and is used by one thread at a
 * time. db_thread() gives each thread its own connection, opened lazily.
 * Every function that reads tenant data takes the tenant id explicitly and
 * scopes its query by it; a row of another tenant is CP_ERR_NOT_FOUND.
 *
 * Writes that belong together run between db_begin() (BEGIN IMMEDIATE) and
 * db_commit(); db_rollback() is safe to call in any state.
 */
#ifndef CP_DB_H
#define CP_DB_H

#include "common/common.h"

struct db;
struct cp_buf;

/* ---- connections, transactions, migrations ---- */

/* Open (creating) the database at path: WAL, foreign keys, busy_timeout. */
cp_rc db_open(const char *path, struct db **out) CP_WUR;
void db_close(struct db *db);
/* Remember the path used by db_thread(). Call once before threads start. */
void db_set_path(const char *path);
/* This thread's connection (opened on first use), or NULL if it cannot open. */
struct db *db_thread(void);
/* Close this thread's connection (call before a thread exits). */
void db_thread_close(void);

/* Apply every embedded migration newer than the recorded schema version,
 * each in its own transaction under the dialect's migration lock (several
 * instances may run it at once). from and to (may be NULL) get the
 * versions. */
cp_rc db_migrate(struct db *db, int *from, int *to) CP_WUR;
/* Whether db's schema is the one this binary was built for: CP_OK, or
 * CP_ERR_INVALID (*have says which it is; run `certplane migrate`), or a
 * database error. For the engines where `serve` does not migrate. */
cp_rc db_schema_check(struct db *db, int *have) CP_WUR;
/* Whether target (the database setting) is a file of the embedded engine
 * (SQLite), which this process owns and migrates itself, rather than a
 * server that many instances share. */
bool db_target_is_file(const char *target);
/* The write generation of db's engine (db/driver_sqlite.c): true with *gen,
 * a process-wide count that changes after every commit of this process has
 * become visible, when the engine keeps one (SQLite in WAL mode); false
 * when it does not (PostgreSQL). Load it BEFORE a read whose result is kept
 * under it: the result is current while the generation still equals *gen,
 * as long as no other process writes the database. */
bool db_write_gen(struct db *db, uint64_t *gen);
/* Number of embedded migrations (the schema version this binary wants). */
int db_schema_version(void);

cp_rc db_begin(struct db *db) CP_WUR;
/* db_begin for a read-modify-write of rows (a PATCH merging into what it
 * read, an If-Match check): a concurrent write of the same rows makes this
 * one fail with CP_ERR_BUSY (retryable) rather than be lost or overwrite
 * it. SQLite's one writer gives that already. */
cp_rc db_begin_rmw(struct db *db) CP_WUR;
cp_rc db_commit(struct db *db) CP_WUR;
void db_rollback(struct db *db);
/* Whether a transaction is open on db's connection (one must never be left
 * open for whatever runs next on the thread's connection). */
bool db_in_tx(struct db *db);
/* How many transactions committed on this connection (db_commit, and
 * every statement db_exec_stmt ran outside a transaction): a caller that
 * wants to run work again knows whether any of it may be durable. */
uint64_t db_commits(const struct db *db);

/* Consistent online copy to dest (VACUUM INTO), created 0600 and fsynced;
 * CP_ERR_CONFLICT if dest exists (a symlink included). */
cp_rc db_backup(struct db *db, const char *dest) CP_WUR;
/* PRAGMA integrity_check; *ok true when it says "ok". */
cp_rc db_integrity_check(struct db *db, bool *ok) CP_WUR;
/* Cheap liveness query for /readyz. */
cp_rc db_ping(struct db *db) CP_WUR;

/* ---- secrets at rest ---- */

struct crypto_keyring;
/* Re-encrypt every sealed column value not under the ring's current key
 * (master-key rotation), in one transaction; *count = values re-sealed.
 * Sealed values use "<table>:<row id>" as authenticated data. */
cp_rc db_secrets_reseal(struct db *db, const struct crypto_keyring *ring, int *count) CP_WUR;
/* *stale = sealed values in every sealed column not under ring's current key. */
cp_rc db_secrets_count_stale(struct db *db, const struct crypto_keyring *ring,
			     int64_t *stale) CP_WUR;
/* The master-key rotation: add a new current key to data_dir/master.keys,
 * re-seal every value, count the values left under older keys in the
 * committed database, and prune the older keys only when that count is 0.
 * On any failure (*stale says how many remain, -1 if not counted) the older
 * keys stay in the file and in ring, so every value still opens; ring's
 * current key is the new one. *count = values re-sealed. */
cp_rc db_secrets_rotate(struct db *db, struct crypto_keyring *ring, const char *data_dir,
			int *count, int64_t *stale) CP_WUR;

/* ---- pagination: keyset on an insertion sequence ---- */

/* A page request: rows with seq > after (seq < after when desc, newest
 * first), at most limit of them. */
struct db_page {
	int64_t after; /* 0 = from the start (the newest row when desc) */
	int limit;     /* 1..500 */
	bool desc;     /* seq descending (?order=desc) */
};
/* A page result: data is a new JSON array; next is the cursor seq (0 = end). */
struct db_list {
	json_t *data;
	int64_t next;
};

/* ---- tenants and API keys (operator scope) ---- */

cp_rc db_tenant_create(struct db *db, const char *name, json_t **out) CP_WUR;
cp_rc db_tenant_get(struct db *db, const char *id, json_t **out) CP_WUR;
/* CP_OK if tenant id exists, CP_ERR_NOT_FOUND if not. Answers from the auth
 * cache (tenants.c), so a request naming X-Tenant-ID costs no read. */
cp_rc db_tenant_exists(struct db *db, const char *id) CP_WUR;
cp_rc db_tenant_list(struct db *db, struct db_page pg, struct db_list *out) CP_WUR;
/* Set the tenant's default CA list (an array; empty: none, stored NULL).
 * CP_ERR_NOT_FOUND if no such tenant. */
cp_rc db_tenant_set_default_cas(struct db *db, const char *id, const json_t *cas) CP_WUR;
/* Deletes the tenant and everything it owns; its valid CA-issued
 * certificate versions are queued for revocation first (db_revoke_lost). */
cp_rc db_tenant_delete(struct db *db, const char *id) CP_WUR;

/* What a key may do: read_only keys may only GET/HEAD (server/http.c);
 * expires_at unix seconds, 0 = never. */
struct db_apikey_grant {
	bool read_only;
	int64_t expires_at;
};
/* Store a key by its hash with grant (borrowed); out is {id, tenant_id,
 * name, prefix, scope, expires_at, created_at}; CP_ERR_NOT_FOUND if the
 * tenant does not exist. */
cp_rc db_apikey_create(struct db *db, const char *tenant_id, const char *name, const char *key_hash,
		       const char *prefix, const struct db_apikey_grant *grant,
		       json_t **out) CP_WUR;
cp_rc db_apikey_list(struct db *db, const char *tenant_id, struct db_page pg,
		     struct db_list *out) CP_WUR;
cp_rc db_apikey_delete(struct db *db, const char *tenant_id, const char *id) CP_WUR;
/* Find the key whose SHA-256 hex is key_hash; fills tenant_id, key_id and
 * grant (may be NULL; the caller checks expires_at against the clock).
 * Found keys are cached (tenants.c); db_apikey_delete and db_tenant_delete
 * revoke the cached answers once their transaction commits. */
cp_rc db_apikey_lookup(struct db *db, const char *key_hash, char tenant_id[CP_UUID_LEN + 1],
		       char key_id[CP_UUID_LEN + 1], struct db_apikey_grant *grant) CP_WUR;

/* ---- audit log ---- */

/* Record one change. tenant_id may be NULL (operator-wide); detail is
 * borrowed and must never hold secrets. Call inside the change's transaction. */
cp_rc db_audit_add(struct db *db, const char *tenant_id, const char *actor, const char *action,
		   const char *resource_type, const char *resource_id, json_t *detail) CP_WUR;
/* The last step of an audited change: db_audit_add, then COMMIT; on any
 * failure (rc_so_far included: pass the change's rc) the transaction is
 * rolled back. Returns the first failure, else CP_OK. */
cp_rc db_audit_commit(struct db *db, cp_rc rc_so_far, const char *tenant_id, const char *actor,
		      const char *action, const char *resource_type, const char *resource_id,
		      json_t *detail) CP_WUR;
/* tenant_id NULL lists every tenant's entries (operator only). */
cp_rc db_audit_list(struct db *db, const char *tenant_id, struct db_page pg,
		    struct db_list *out) CP_WUR;

/* ---- idempotency records (24 h) ---- */

/* What an Idempotency-Key is scoped by: who, in which tenant, which
 * request. All borrowed; tenant_id NULL = none (the operator without
 * X-Tenant-ID). */
struct db_idem_scope {
	const char *actor;
	const char *tenant_id;
	const char *method;
	const char *path;
	const char *key;
};
/* A stored response to replay (or, for a pending one, only body_hash). */
struct db_idem {
	char body_hash[65];
	int status;
	char *content_type; /* owned */
	char *response;	    /* owned */
	size_t response_len;
};
void db_idem_clear(struct db_idem *r);
enum db_idem_claim {
	DB_IDEM_RESERVED, /* the caller holds it: run, then finish or release */
	DB_IDEM_PENDING,  /* another request holds it (out->body_hash set) */
	DB_IDEM_DONE,	  /* answered before: out is the response to replay */
};
/* Reserve scope for owner (a request id) with one INSERT of a 'pending'
 * row under the unique key, or take over a pending row past its lease
 * (its holder died) or a record older than max_age seconds. Otherwise
 * *claim and out say what holds the key. CP_ERR_BUSY if the row keeps
 * vanishing under us. */
cp_rc db_idem_reserve(struct db *db, const struct db_idem_scope *scope, const char *owner,
		      const char *body_hash, int64_t lease_seconds, int64_t max_age,
		      enum db_idem_claim *claim, struct db_idem *out) CP_WUR;
/* Record the response in owner's reservation (state 'done').
 * CP_ERR_NOT_FOUND if owner no longer holds it. r borrowed. A response is
 * text: one holding a NUL byte is CP_ERR_INVALID (nothing stored, the
 * reservation still held), as PostgreSQL's text cannot hold it. */
cp_rc db_idem_finish(struct db *db, const struct db_idem_scope *scope, const char *owner,
		     const struct db_idem *r) CP_WUR;
/* Drop owner's reservation (the request failed retryably; a retry runs
 * again). CP_ERR_NOT_FOUND if owner no longer holds it. */
cp_rc db_idem_release(struct db *db, const struct db_idem_scope *scope, const char *owner) CP_WUR;
/* Delete records older than cutoff. */
cp_rc db_idem_purge(struct db *db, int64_t cutoff) CP_WUR;

/* ---- job queue ---- */

/* A claimed job; payload owned by the struct (db_job_clear). */
struct db_job {
	int64_t id;
	char kind[32];
	char tenant_id[CP_UUID_LEN + 1]; /* "" if none */
	json_t *payload;
	int attempts;	/* including this one */
	char owner[64]; /* lease owner that claimed it */
};
void db_job_clear(struct db_job *job);
/* Queue a job. dedupe_key (may be NULL): if a queued/running job with the same
 * key exists nothing is added and CP_OK is returned. payload borrowed. */
cp_rc db_job_enqueue(struct db *db, const char *kind, const char *tenant_id, json_t *payload,
		     int64_t run_at, const char *dedupe_key) CP_WUR;
/* Lanes: each has its own workers. A kind's lane comes from the function
 * set with db_job_set_lanes (server/workers.c holds the table); NULL from it,
 * or no function, means DB_JOB_LANE_GENERAL. Set it before jobs are queued;
 * the function must be safe to call from any thread. */
#define DB_JOB_LANE_GENERAL "general"
typedef const char *(*db_job_lane_fn)(const char *kind);
void db_job_set_lanes(db_job_lane_fn fn);
/* Move the queued and running jobs of kind to lane (jobs queued before the
 * lanes were set, or under another table). */
cp_rc db_job_relane(struct db *db, const char *kind, const char *lane) CP_WUR;
/* Claim for owner, leased until now + lease_seconds, in one transaction of
 * its own: a job of lane whose lease expired, else the earliest due job of
 * the lane's tenant served least recently among those with fewer than
 * tenant_cap (> 0) running jobs. CP_ERR_NOT_FOUND when nothing may run. */
cp_rc db_job_claim(struct db *db, const char *lane, int tenant_cap, const char *owner,
		   int lease_seconds, struct db_job *out) CP_WUR;
/* Extend the lease of a job this owner holds; CP_ERR_CONFLICT if lost. */
cp_rc db_job_extend(struct db *db, int64_t id, const char *owner, int lease_seconds) CP_WUR;
/* Finish: done, or back to queued at run_at with an error, or failed. */
cp_rc db_job_done(struct db *db, int64_t id, const char *owner) CP_WUR;
/* Delete up to limit (> 0) done or failed jobs last updated before cutoff;
 * *deleted = rows deleted (limit: call again for the rest). */
cp_rc db_job_prune(struct db *db, int64_t cutoff, int limit, int *deleted) CP_WUR;
cp_rc db_job_retry(struct db *db, int64_t id, const char *owner, int64_t run_at,
		   const char *error) CP_WUR;
cp_rc db_job_fail(struct db *db, int64_t id, const char *owner, const char *error) CP_WUR;
/* Release every lease of owner (clean shutdown): jobs run again at once. */
cp_rc db_job_release_owner(struct db *db, const char *owner) CP_WUR;
/* Requeue every running job at once. Only for a process that knows it is
 * the only worker process (serve holds the data_dir lock): the leases it
 * finds were left by a process that died, and need not be waited out. */
cp_rc db_job_recover_orphans(struct db *db) CP_WUR;
/* {"<kind>": {"queued": n, "running": n, "failed": n}, ...} new reference. */
cp_rc db_job_stats(struct db *db, json_t **out) CP_WUR;

/* ---- quotas per tenant (quotas.c) ---- */

enum db_quota {
	DB_QUOTA_PROPERTIES,
	DB_QUOTA_HOSTNAMES, /* property hostnames over all the tenant's properties */
	DB_QUOTA_CERTIFICATES,
	DB_QUOTA_ORDERS_IN_FLIGHT, /* ACME orders pending, validating or issuing */
	DB_QUOTA_WEBHOOKS,
	DB_QUOTA_EDGE_HOSTNAMES,
	DB_QUOTA_COUNT
};
/* The API name of q ("properties", ..., "edge_hostnames"); static. */
const char *db_quota_name(enum db_quota q);
/* The quota named name, or -1. */
int db_quota_find(const char *name);
/* What a change adds. hostnames is the count a property will hold; with
 * property_id (an update) it replaces what that property holds now. */
struct db_quota_change {
	int properties, hostnames, certificates, orders_in_flight, webhooks, edge_hostnames;
	const char *property_id;
};
/* The quota a change would break. */
struct db_quota_refusal {
	enum db_quota quota;
	int64_t limit, used, requested;
};
/* Effective limits of tenant_id: its overrides, else defaults (indexed by
 * enum db_quota); overridden[q] tells which. */
cp_rc db_quota_limits(struct db *db, const char *tenant_id, const int64_t defaults[DB_QUOTA_COUNT],
		      int64_t limits[DB_QUOTA_COUNT], bool overridden[DB_QUOTA_COUNT]) CP_WUR;
/* CP_OK if change c fits every quota of tenant_id, CP_ERR_CONFLICT with
 * *refused filled if it does not: only growth past a limit is refused. Call
 * inside the write transaction that then makes the change. */
cp_rc db_quota_check(struct db *db, const char *tenant_id, const int64_t defaults[DB_QUOTA_COUNT],
		     const struct db_quota_change *c, struct db_quota_refusal *refused) CP_WUR;
/* The lock db_quota_check takes first, for a count-then-insert that checks
 * a limit of its own (notification channels): on PostgreSQL the tenant's
 * row, held to COMMIT, so two such creates of one tenant take turns; under
 * SQLite's one writer nothing more is needed. No tenant: CP_OK. */
cp_rc db_quota_lock(struct db *db, const char *tenant_id) CP_WUR;
/* {tenant_id, quotas: {"<name>": {limit, used, default, overridden}}}. */
cp_rc db_quota_get(struct db *db, const char *tenant_id, const int64_t defaults[DB_QUOTA_COUNT],
		   json_t **out) CP_WUR;
/* Set the overrides of tenant_id: for each q with present[q], values[q]
 * (>= 0), or back to the default when values[q] < 0; others are kept.
 * CP_ERR_NOT_FOUND if there is no such tenant. */
cp_rc db_quota_set(struct db *db, const char *tenant_id, const int64_t values[DB_QUOTA_COUNT],
		   const bool present[DB_QUOTA_COUNT]) CP_WUR;

/* ---- events (the outbox) ---- */

/* Every event type certplane emits (the API's filter and the types a
 * webhook may subscribe to), NULL-terminated: the one list of them. */
#define DB_EVENT_TYPES_COUNT 19
extern const char *const db_event_types[DB_EVENT_TYPES_COUNT + 1];
/* Whether type is one of db_event_types (NULL: false). */
bool db_event_type_known(const char *type);
/* Write event {"type", "timestamp", "data"} for tenant_id in the current
 * transaction; data is borrowed. id_out (may be NULL) gets the event id.
 * Webhook deliveries for the tenant's subscribed endpoints are queued in
 * the same transaction. */
cp_rc db_event_add(struct db *db, const char *tenant_id, const char *type, json_t *data,
		   char id_out[CP_UUID_LEN + 1]) CP_WUR;
/* The seq of tenant_id's newest event into *seq (0 when it has none). */
cp_rc db_event_last_seq(struct db *db, const char *tenant_id, int64_t *seq) CP_WUR;
/* The seq of event id of tenant_id (for ?after=<event id>). */
cp_rc db_event_seq(struct db *db, const char *tenant_id, const char *id, int64_t *seq) CP_WUR;
/* Events of a tenant, oldest first; type may be NULL; after is a seq. */
cp_rc db_event_list(struct db *db, const char *tenant_id, const char *type, struct db_page pg,
		    struct db_list *out) CP_WUR;
/* What an event list selects; NULL members select any. certificate_id and
 * property_id are the data's ids of that name. */
struct db_event_filter {
	const char *type;
	const char *certificate_id;
	const char *property_id;
};
/* db_event_list with every filter of f (borrowed); each combination is one
 * index range scan in seq order. */
cp_rc db_event_list_filtered(struct db *db, const char *tenant_id, const struct db_event_filter *f,
			     struct db_page pg, struct db_list *out) CP_WUR;
/* Call fn(cls, tenant_id) after every COMMIT that wrote an event (or after
 * an event written outside a transaction), on the committing thread, with
 * the tenant whose events it wrote (NULL: several tenants'); it must not
 * block nor call db/. Set once, before any thread writes. NULL: none. */
void db_event_hook_set(void (*fn)(void *cls, const char *tenant_id), void *cls);

/* ---- edge hostnames (the CNAME targets; hostname unique across tenants) ---- */

/* Create {id, hostname, label, created_at}; CP_ERR_CONFLICT if hostname is
 * taken (by any tenant). */
cp_rc db_edge_hostname_create(struct db *db, const char *tenant_id, const char *label,
			      const char *hostname, json_t **out) CP_WUR;
cp_rc db_edge_hostname_get(struct db *db, const char *tenant_id, const char *id,
			   json_t **out) CP_WUR;
cp_rc db_edge_hostname_list(struct db *db, const char *tenant_id, struct db_page pg,
			    struct db_list *out) CP_WUR;
/* CP_ERR_CONFLICT while a property uses it, CP_ERR_NOT_FOUND if absent. */
cp_rc db_edge_hostname_delete(struct db *db, const char *tenant_id, const char *id) CP_WUR;

/* ---- properties and their deployments ---- */

/* The writable fields of a property, already validated by the caller. */
struct db_property_in {
	const char *name;
	json_t *hostnames;	      /* array of distinct valid hostname strings */
	const char *edge_hostname_id; /* an edge hostname of the same tenant */
	const char *certificate_id;   /* NULL = no certificate */
	bool renew_automation;
	int64_t claim_ttl_seconds; /* a new hostname's pending claim lives this long */
};
/* Why a property write was refused (CP_ERR_CONFLICT): hostnames[index] is
 * verified by another tenant (other_tenant) or on another property of the
 * same tenant. */
struct db_hostname_taken {
	size_t index;
	bool other_tenant;
};
/*
 * Create a property; out is the API shape {id, name, hostnames,
 * edge_hostname_id, edge_hostname, certificate_id, certificate_renew_automation,
 * version, staging, production, created_at, updated_at}. CP_ERR_CONFLICT if a
 * hostname is used by any property of any tenant: *taken (may be NULL) gets
 * its index in in->hostnames. Call inside a transaction.
 */
cp_rc db_property_create(struct db *db, const char *tenant_id, const struct db_property_in *in,
			 struct db_hostname_taken *taken, json_t **out) CP_WUR;
cp_rc db_property_get(struct db *db, const char *tenant_id, const char *id, json_t **out) CP_WUR;
/* db_property_get rendered as JSON text appended to out (the GET path), as
 * db_certificate_render. */
cp_rc db_property_render(struct db *db, const char *tenant_id, const char *id,
			 struct cp_buf *out) CP_WUR;
/* hostname (may be NULL) keeps only the property that has that hostname;
 * certificate_id (may be NULL) only the properties using it. */
cp_rc db_property_list(struct db *db, const char *tenant_id, const char *hostname,
		       const char *certificate_id, struct db_page pg, struct db_list *out) CP_WUR;
/* Replace every writable field; bump_version adds 1 to version. Same
 * CP_ERR_CONFLICT / *taken contract as create. Call inside a transaction. */
cp_rc db_property_update(struct db *db, const char *tenant_id, const char *id,
			 const struct db_property_in *in, bool bump_version,
			 struct db_hostname_taken *taken, json_t **out) CP_WUR;
/* Deletes the property, its hostnames and its deployments. */
cp_rc db_property_delete(struct db *db, const char *tenant_id, const char *id) CP_WUR;

/* Freeze the property's current version (hostnames + certificate) as live in
 * environment ("staging"|"production"); out is {id, property_id,
 * environment, version, hostnames, certificate_id, created_at}. */
cp_rc db_deployment_create(struct db *db, const char *tenant_id, const char *property_id,
			   const char *environment, json_t **out) CP_WUR;
/* One deployment of the property in the tenant; CP_ERR_NOT_FOUND when it
 * is none of them. *out (owned by the caller) as db_deployment_create's. */
cp_rc db_deployment_get(struct db *db, const char *tenant_id, const char *property_id,
			const char *id, json_t **out) CP_WUR;
/* Deployments of one property, oldest first (the caller checks the property). */
cp_rc db_deployment_list(struct db *db, const char *tenant_id, const char *property_id,
			 struct db_page pg, struct db_list *out) CP_WUR;

/* ---- hostname claims (db/hostname_claims.c; migration 005) ---- */

/* What one DNS check of a claim found. */
enum db_claim_outcome {
	DB_CLAIM_VERIFIED,     /* CNAME to one of the tenant's edges, or TXT token */
	DB_CLAIM_NOT_VERIFIED, /* DNS answered, and proves nothing */
	DB_CLAIM_DNS_ERROR,    /* DNS failed or ran out of time: proves nothing either way */
};
struct db_claim_check {
	enum db_claim_outcome outcome;
	const char *method; /* "cname" | "txt" when VERIFIED, else NULL */
	const char *detail; /* sentence for the tenant (may be NULL) */
};
/* Timing of the claim rules, from the configuration. */
struct db_claim_policy {
	int64_t ttl_seconds;	 /* pending claims are released after this */
	int64_t recheck_seconds; /* pending (and failing verified) claims re-checked this often */
	int64_t verified_recheck_seconds; /* verified claims re-checked this often */
};
/*
 * Record a check of tenant_id's claim of hostname (inside a transaction):
 *  VERIFIED: the claim becomes verified (method, checked_at); every other
 *    tenant's (pending) claim of the hostname is removed from its property
 *    (version + 1) with event property.hostname_released to that tenant. If
 *    another tenant already holds it verified the claim stays pending and
 *    *status_out is "owned_by_another_tenant".
 *  NOT_VERIFIED: a pending claim stays pending; a verified one counts a
 *    failure and, at the 3rd negative check in a row (re-checked every
 *    recheck_seconds), is demoted to pending with a fresh TTL and event
 *    property.hostname_unverified.
 *  DNS_ERROR: nothing changes but checked_at, detail and the next check.
 * *status_out (may be NULL): "verified" | "pending" | "owned_by_another_tenant"
 * (static). CP_ERR_NOT_FOUND if the tenant has no claim of hostname.
 */
cp_rc db_claim_record(struct db *db, const char *tenant_id, const char *hostname,
		      const struct db_claim_check *chk, const struct db_claim_policy *pol,
		      const char **status_out) CP_WUR;
/* tenant_id's claim of hostname: {property_id, status, method, token,
 * edge_hostname (of its property)}; CP_ERR_NOT_FOUND if none. */
cp_rc db_claim_get(struct db *db, const char *tenant_id, const char *hostname, json_t **out) CP_WUR;
/* The hostnames of a property to verify: [{hostname, token}], in order. */
cp_rc db_claims_of_property(struct db *db, const char *tenant_id, const char *property_id,
			    json_t **out) CP_WUR;
/* CP_OK if a name of chain (JSON array of names) is an edge hostname of
 * tenant_id, CP_ERR_NOT_FOUND if none is. */
cp_rc db_edge_in_chain(struct db *db, const char *tenant_id, json_t *chain) CP_WUR;
/* Claims due for a background re-check (at most limit): their next check is
 * pushed back by lease_seconds, and *out gets [{tenant_id, property_id}]
 * (one per property). Verified claims are due every verified_recheck_seconds,
 * pending ones every recheck_seconds. */
cp_rc db_claims_due(struct db *db, int limit, int64_t lease_seconds, json_t **out) CP_WUR;
/* Remove pending claims past their expiry (at most limit), each with event
 * property.hostname_released (reason claim_expired) and the property's
 * version + 1; *removed gets the count. Runs its own transaction. */
cp_rc db_claims_expire(struct db *db, int limit, int *removed) CP_WUR;
/*
 * Issuance scope: the one rule deciding which names tenant_id may have in a
 * certificate order, whatever the source, kind or challenge. A name (a
 * wildcard's base) equal to or under edge_zone or any edge hostname is
 * refused with reason "hostname_in_edge_zone"; a name another tenant has
 * verified with "hostname_owned_by_another_tenant". CP_OK with
 * v->reason NULL when every name is allowed; otherwise v->reason, v->index
 * (into names) and v->detail (a sentence naming the host) are set.
 */
struct db_scope_verdict {
	const char *reason; /* static */
	size_t index;
	char detail[640];
};
cp_rc db_issuance_scope(struct db *db, const char *edge_zone, const char *tenant_id, json_t *names,
			struct db_scope_verdict *v) CP_WUR;

/* ---- certificates ---- */

/* CP_OK if certificate id exists in tenant_id, else CP_ERR_NOT_FOUND. */
cp_rc db_certificate_exists(struct db *db, const char *tenant_id, const char *id) CP_WUR;

/*
 * A certificate's own fields at creation, validated by the caller. Strings
 * are borrowed. status is "pending" for ACME certificates (no version yet)
 * and "active" when a first version is added in the same transaction.
 */
struct db_cert_new {
	const char *name;
	const char *type;	/* "server" | "ca" */
	const char *source;	/* "upload" | "self_signed" | "acme" */
	const char *status;	/* "pending" | "active" */
	const char *auto_renew; /* "none" | "letsencrypt" | a configured CA name */
	const char *key_type;	/* requested key type, NULL for uploads */
	json_t *hostnames;	/* requested names (array) or NULL */
	const char *challenge;	/* ACME only, else NULL */
	const char *ca;		/* ACME only, else NULL */
	json_t *metadata;	/* object or NULL ({}) */
	json_t *cas;		/* ACME only: ordered CA names (array), or NULL */
};
/*
 * Insert a certificate of tenant_id with no version; id_out gets its new
 * id. Call inside a transaction, then db_certificate_add_version() unless it
 * stays pending.
 */
cp_rc db_certificate_create(struct db *db, const char *tenant_id, const struct db_cert_new *in,
			    char id_out[CP_UUID_LEN + 1]) CP_WUR;

/* The material of one version; strings borrowed. */
struct db_cert_material {
	const char *cert_pem;  /* the leaf certificate (PEM) */
	const char *chain_pem; /* intermediates (CERTIFICATE blocks), NULL or "" if none */
	const char *key_pem;   /* unencrypted private key PEM; sealed here, never stored clear */
	const char *order_id;  /* ACME order that issued it, or NULL */
	int64_t renew_after;   /* when renewal becomes due (unix s), 0 = not scheduled */
};
/*
 * Add the next version of certificate id (tenant_id) and make it current:
 * the leaf's facts (subject_cn, sans, issuer, serial, validity,
 * fingerprint, key type) are read from cert_pem itself; the key is sealed
 * under ring with aad "certificate_versions:<version id>". The certificate
 * becomes status "active" with a clean renewal state (failure_count 0, no
 * last_error, no next_attempt_at) and renew_after from m. version_out (may
 * be NULL) gets the new version number. CP_ERR_INVALID if the certificate
 * does not parse or the key does not match it, CP_ERR_NOT_FOUND if there is
 * no such certificate. Call inside a transaction.
 */
cp_rc db_certificate_add_version(struct db *db, const struct crypto_keyring *ring,
				 const char *tenant_id, const char *id,
				 const struct db_cert_material *m, int *version_out) CP_WUR;
/*
 * The same in two steps, for bulk writers that store one material many
 * times (tests/bench/seed): db_cert_prepare reads the facts and checks the
 * key once (*out new, db_cert_prepared_free; CP_ERR_INVALID as above);
 * db_certificate_add_prepared adds it as the next version of id, sealing
 * the key afresh (own nonce, own aad) for every version. order_id may be
 * NULL. Call inside a transaction.
 */
struct db_cert_prepared;
cp_rc db_cert_prepare(const struct db_cert_material *m, struct db_cert_prepared **out) CP_WUR;
void db_cert_prepared_free(struct db_cert_prepared *p);
cp_rc db_certificate_add_prepared(struct db *db, const struct crypto_keyring *ring,
				  const char *tenant_id, const char *id,
				  const struct db_cert_prepared *p, const char *order_id,
				  int64_t renew_after, int *version_out) CP_WUR;
/*
 * The API resource of certificate id: {id, name, type, source, status,
 * auto_renew, key_type, hostnames, challenge, ca, subject_cn, sans, issuer,
 * serial, not_before, not_after, fingerprint_sha256, version, property_ids,
 * metadata, renewal {renew_after, next_attempt_at, last_attempt_at,
 * last_error, last_error_reason, failure_count}, created_at, updated_at}.
 * status is "expired" when now > not_after, else the stored status.
 */
cp_rc db_certificate_get(struct db *db, const char *tenant_id, const char *id, json_t **out) CP_WUR;
/* The same object rendered as JSON text appended to out (the GET path: no
 * JSON tree). CP_ERR_NOT_FOUND; CP_ERR_TOO_LARGE or CP_ERR_NOMEM from out;
 * on error out may hold a partial object. */
cp_rc db_certificate_render(struct db *db, const char *tenant_id, const char *id,
			    struct cp_buf *out) CP_WUR;
/* Filters of db_certificate_list; NULL / negative = not filtered. */
struct db_cert_filter {
	const char *status;	 /* derived status (incl. "expired") */
	int64_t expiring_within; /* seconds: not yet expired, not_after <= now + this; < 0 off */
	const char *hostname; /* a SAN (or requested name) equal to it or a wildcard covering it */
};
cp_rc db_certificate_list(struct db *db, const char *tenant_id, const struct db_cert_filter *f,
			  struct db_page pg, struct db_list *out) CP_WUR;
/* Change name / auto_renew / metadata; NULL keeps a field. */
cp_rc db_certificate_update(struct db *db, const char *tenant_id, const char *id, const char *name,
			    const char *auto_renew, json_t *metadata) CP_WUR;
/* Set (or clear: NULL) the ACME profile the certificate's orders name
 * (migration 010); the caller checked that its CA offers it. */
cp_rc db_certificate_set_profile(struct db *db, const char *tenant_id, const char *id,
				 const char *profile) CP_WUR;
/* Set the certificate's CA list (an array; NULL or empty: none, stored
 * NULL); its next orders take it (migration 020). */
cp_rc db_certificate_set_cas(struct db *db, const char *tenant_id, const char *id,
			     const json_t *cas) CP_WUR;
/*
 * What a new CA order of the certificate carries besides its names: *out is
 * a new object {"profile": string|null, "cert_pem": the current version's
 * leaf or null, "version_ca": the CA whose order stored that version, null
 * when it was uploaded or self-signed, and "cas": the ordered CA list of
 * the certificate or else its tenant's default, absent when neither has
 * one}. CP_ERR_NOT_FOUND if no such certificate.
 */
cp_rc db_certificate_order_plan(struct db *db, const char *tenant_id, const char *id,
				json_t **out) CP_WUR;
/* Delete with every version; CP_ERR_CONFLICT while a property of the tenant
 * has certificate_id = id. Call inside a transaction. */
cp_rc db_certificate_delete(struct db *db, const char *tenant_id, const char *id) CP_WUR;
/* Versions, oldest first, without keys: {id, version, current, certificate,
 * chain, key_type, subject_cn, sans, issuer, serial, not_before, not_after,
 * fingerprint_sha256, order_id, created_at}. The caller checks the certificate. */
cp_rc db_certificate_versions(struct db *db, const char *tenant_id, const char *id,
			      struct db_page pg, struct db_list *out) CP_WUR;
/* Leaf + chain PEM of the current version; new string (caller frees).
 * CP_ERR_CONFLICT if the certificate has no version yet. */
cp_rc db_certificate_pem(struct db *db, const char *tenant_id, const char *id, char **out) CP_WUR;
/* The current version's private key PEM, opened; new string the caller
 * releases with crypto_wipe_free(). CP_ERR_CONFLICT if no version yet,
 * CP_ERR_CRYPTO if it cannot be opened. Only the audited private-key
 * endpoint and the renewal engine may call this. */
cp_rc db_certificate_key_pem(struct db *db, const struct crypto_keyring *ring,
			     const char *tenant_id, const char *id, char **out) CP_WUR;
/* Set the stored status: "pending" | "active" | "renewing" | "failed". */
cp_rc db_certificate_set_status(struct db *db, const char *tenant_id, const char *id,
				const char *status) CP_WUR;
/* The renewal bookkeeping of a certificate; times are unix s, 0 = none. */
struct db_cert_renewal {
	int64_t renew_after;
	int64_t next_attempt_at;
	int64_t last_attempt_at;
	const char *last_error;	       /* human detail or NULL */
	const char *last_error_reason; /* machine reason or NULL */
	int failure_count;
};
/* Replace every renewal field of certificate id. */
cp_rc db_certificate_set_renewal(struct db *db, const char *tenant_id, const char *id,
				 const struct db_cert_renewal *r) CP_WUR;

/* ---- metrics (metrics.c): operator-wide aggregates for GET /metrics ----
 * Each reads every tenant and answers counts only. CP_ERR_NOT_FOUND when the
 * schema has no such table (yet), so a scrape never fails because of it. */

/* {"<status>": n} over orders. */
cp_rc db_metrics_orders(struct db *db, json_t **out) CP_WUR;
/* {"<status>": n} over certificates, "expired" derived as the API does. */
cp_rc db_metrics_certificates(struct db *db, json_t **out) CP_WUR;
/* The earliest not_after (unix s) of an active or renewing certificate's
 * current version; CP_ERR_NOT_FOUND when there is none. */
cp_rc db_metrics_soonest_expiry(struct db *db, int64_t *not_after) CP_WUR;
/* {"<state>": n} over webhook deliveries. */
cp_rc db_metrics_webhook_deliveries(struct db *db, json_t **out) CP_WUR;

/* ---- summary (summary.c): one tenant's dashboard ---- */
/* GET /v1/summary of tenant_id at now into *out (new object): {certificates:
 * {total, by_status}, expiring_soonest: [{id, name, not_after}] (top 5),
 * failing_renewals: {count, top: [...]}, hostname_verifications: {pending,
 * verified}}; index ranges and maintained counts only (migration 014).
 * CP_ERR_NOMEM or a database error. */
cp_rc db_summary(struct db *db, const char *tenant_id, int64_t now, json_t **out) CP_WUR;

/* ---- ACME accounts (accounts.c): one per configured CA ---- */

/* {id, ca, directory_url, key (sealed, aad "acme_accounts:<id>"),
 * account_url|null}; CP_ERR_NOT_FOUND if the CA has no account yet. */
cp_rc db_acme_account_get(struct db *db, const char *ca, json_t **out) CP_WUR;
/* Insert the CA's account unless one exists (then nothing happens: read it
 * back with db_acme_account_get). sealed_key is crypto_seal() output. */
cp_rc db_acme_account_create(struct db *db, const char *id, const char *ca,
			     const char *directory_url, const char *sealed_key) CP_WUR;
/* Remember (or forget, NULL) the CA's account URL. */
cp_rc db_acme_account_set_url(struct db *db, const char *ca, const char *account_url) CP_WUR;

/* ---- ACME orders (orders.c) ---- */

/* Insert an order (status pending). identifiers borrowed (array of names);
 * metadata borrowed (object or NULL). CP_ERR_CONFLICT if the certificate
 * already has an order in flight. Call inside a transaction, with the job. */
cp_rc db_order_create(struct db *db, const char *tenant_id, const char *id,
		      const char *certificate_id, const char *kind, const char *challenge,
		      const json_t *identifiers, const char *ca, const char *key_type,
		      const json_t *metadata) CP_WUR;
/* The API resource {id, certificate_id, kind, status, challenge, identifiers,
 * ca, key_type, authorizations: [{identifier, status, expires_at, challenge:
 * {type, token, url, body | txt_record_name, txt_record_value}}], error
 * {reason, detail}|null, attempts, next_attempt_at, dns01_deadline,
 * metadata, created_at, updated_at, completed_at}. */
cp_rc db_order_get(struct db *db, const char *tenant_id, const char *id, json_t **out) CP_WUR;
/* The statuses of an order in flight (not yet valid, failed or canceled),
 * as an SQL list: the one place the code spells the set. The partial
 * indexes orders_in_flight (migration 004) and orders_tenant_in_flight
 * (006) repeat it as history; SQLite uses them only for a WHERE that says
 * the same, so the text must stay as it is. */
#define DB_ORDER_IN_FLIGHT_SQL "('pending', 'validating', 'issuing')"
/* Whether status is one of DB_ORDER_IN_FLIGHT_SQL's (NULL: false). */
bool db_order_status_in_flight(const char *status);
/* The certificate's order in flight (API shape), or CP_ERR_NOT_FOUND. */
cp_rc db_order_in_flight(struct db *db, const char *tenant_id, const char *certificate_id,
			 json_t **out) CP_WUR;
/* Filters of db_order_list; each NULL = any. hostname is one identifier
 * exactly as the order names it ("*.example.com" for a wildcard). */
struct db_order_filter {
	const char *certificate_id;
	const char *status;
	const char *hostname;
};
/* Orders of a tenant in seq order (pg.desc: newest first), filtered by f. */
cp_rc db_order_list(struct db *db, const char *tenant_id, const struct db_order_filter *f,
		    struct db_page pg, struct db_list *out) CP_WUR;
/* The worker's full view: API fields plus tenant_id, account_url,
 * order_url, finalize_url, certificate_url, key (sealed), error_reason,
 * dns_deadline, verify_at, created_at as unix seconds, and authorizations
 * [{position, url, identifier, status, challenge_type, challenge_url, token,
 * key_authorization, txt_record_name, txt_record_value, expires_at,
 * notified, responded, completed}]. Never hand it to a client. */
cp_rc db_order_load(struct db *db, const char *tenant_id, const char *id, json_t **out) CP_WUR;
/* Patch columns of order id: status, account_url, order_url, finalize_url,
 * certificate_url, key, error_reason, error_detail, attempts,
 * next_attempt_at, dns_deadline, verify_at, completed_at. A member present
 * sets (null clears), absent keeps. patch borrowed. */
cp_rc db_order_save(struct db *db, const char *id, const json_t *patch) CP_WUR;
/* Record authorization url at position (0-based) of order_id (idempotent). */
cp_rc db_order_authz_add(struct db *db, const char *order_id, int position, const char *url) CP_WUR;
/* Patch an authorization: identifier, status, challenge_type,
 * challenge_url, token, key_authorization, txt_record_name,
 * txt_record_value, expires_at, notified, responded, completed. */
cp_rc db_order_authz_save(struct db *db, const char *order_id, int position,
			  const json_t *patch) CP_WUR;
/* Forget the CA side of an order (URLs, authorizations) so that the next
 * run places a new CA order; keeps the key and the attempt count. Only an
 * order in flight: a finished one (valid, failed, canceled) is left as it
 * is and CP_ERR_CONFLICT returned; CP_ERR_NOT_FOUND for no such order. */
cp_rc db_order_reset(struct db *db, const char *id) CP_WUR;
/* HTTP-01: the key authorization (new string) for token when host
 * (lower case, no port, no trailing dot) is the identifier of the token's
 * authorization, that authorization is still pending and its order in
 * flight; else CP_ERR_NOT_FOUND. */
cp_rc db_http01_key_authorization(struct db *db, const char *token, const char *host,
				  char **out) CP_WUR;
/* {edge_hostname, hostnames: [...]} of a property, for its DNS check. */
cp_rc db_property_dns_targets(struct db *db, const char *tenant_id, const char *property_id,
			      json_t **out) CP_WUR;
/* Make the queued job with dedupe_key due now (POST /orders/{id}/verify). */
cp_rc db_job_wake(struct db *db, const char *dedupe_key) CP_WUR;
/* Start an order: insert it (pending), queue its "acme_order" job (dedupe
 * key "acme_order:<id>") at run_at, and for kind "renew" mark the
 * certificate "renewing". id_out (may be NULL) gets the order id.
 * CP_ERR_CONFLICT if the certificate has an order in flight. Call inside a
 * transaction; cp_kick() after the commit. */
cp_rc db_order_start(struct db *db, const char *tenant_id, const char *certificate_id,
		     const char *kind, const char *challenge, const json_t *identifiers,
		     const char *ca, const char *key_type, const json_t *metadata, int64_t run_at,
		     char id_out[CP_UUID_LEN + 1]) CP_WUR;
/* The scheduler's attention scan (migration 008): up to limit (> 0)
 * certificates with after < next_attention_at <= until, earliest first, as
 * a new array of {id, tenant_id, at}. One index range scan. */
cp_rc db_renewal_attention(struct db *db, int64_t after, int64_t until, int limit,
			   json_t **out) CP_WUR;
/* Re-check one certificate by id: *out = a new {id, tenant_id, auto_renew,
 * key_type, not_before, not_after, serial, renew_after, failure_count,
 * ca_issued} when it may be renewed now (see orders.c), CP_ERR_NOT_FOUND
 * when it may not (expired, backoff, order in flight, not deployed...). */
cp_rc db_renewal_candidate(struct db *db, const char *certificate_id, json_t **out) CP_WUR;
/* The renewal facts of certificate_id of tenant_id (renewal preview):
 * *out = a new {type, auto_renew, version, key_type (requested),
 * version_key_type, not_before, not_after, renew_after, next_attempt_at
 * (0 = none), next_attention_at, ca_issued, order_in_flight (id or null)};
 * CP_ERR_NOT_FOUND when the tenant has no such certificate. */
cp_rc db_renewal_facts(struct db *db, const char *tenant_id, const char *certificate_id,
		       json_t **out) CP_WUR;
/* Move a certificate's next_attention_at to at (unix seconds; 0 = NULL,
 * nothing to do) after the scheduler re-checked it. */
cp_rc db_renewal_defer(struct db *db, const char *certificate_id, int64_t at) CP_WUR;
/* *out = the latest run_at of a renewal order of CA ca that is queued and
 * never ran yet (0 = none): where the CA's budget resumes after a restart. */
cp_rc db_renewal_last_run_at(struct db *db, const char *ca, int64_t *out) CP_WUR;
/* Mark "failed" every auto-renewing certificate that expired after failed
 * renewal attempts; *count = certificates marked. */
cp_rc db_renewal_give_up_expired(struct db *db, int *count) CP_WUR;
/* The SAN of a renewal: every hostname of the production deployments of
 * renew-automated properties carrying the certificate (new array). */
cp_rc db_renewal_hostnames(struct db *db, const char *tenant_id, const char *certificate_id,
			   json_t **out) CP_WUR;

/* ---- webhooks: callback URL endpoints and deliveries (webhooks.c) ---- */

/*
 * Create an endpoint of tenant_id with the caller's id (the sealed secret's
 * aad is "webhooks:<id>"); events is a JSON array (borrowed). out is the API
 * shape {id, url, events, description, enabled, disabled_reason,
 * created_at, updated_at}; the secret is never returned by any db_webhook_*.
 */
cp_rc db_webhook_create(struct db *db, const char *tenant_id, const char *id, const char *url,
			json_t *events, const char *description, const char *sealed_secret,
			json_t **out) CP_WUR;
/* Number of endpoints of tenant_id. */
cp_rc db_webhook_count(struct db *db, const char *tenant_id, int *count) CP_WUR;
cp_rc db_webhook_get(struct db *db, const char *tenant_id, const char *id, json_t **out) CP_WUR;
cp_rc db_webhook_list(struct db *db, const char *tenant_id, struct db_page pg,
		      struct db_list *out) CP_WUR;
/* PATCH fields; NULL (enabled: -1) leaves a field as it is. */
struct db_webhook_patch {
	const char *url;
	json_t *events; /* borrowed */
	const char *description;
	int enabled; /* -1 unchanged, 0 disable, 1 enable (clears the reason) */
};
cp_rc db_webhook_update(struct db *db, const char *tenant_id, const char *id,
			const struct db_webhook_patch *p, json_t **out) CP_WUR;
/* Deletes the endpoint with its deliveries and attempts. */
cp_rc db_webhook_delete(struct db *db, const char *tenant_id, const char *id) CP_WUR;
/* Delete up to limit (> 0) delivered or failed webhook deliveries (and their
 * attempts) last updated before cutoff; *deleted = deliveries deleted. */
cp_rc db_webhook_prune(struct db *db, int64_t cutoff, int limit, int *deleted) CP_WUR;
/* Deliveries of one endpoint (the caller checks the endpoint), oldest
 * first, each {id, webhook_id, event_id, event_type, state, next_attempt_at,
 * last_error, attempts: [{attempt, status_code, latency_ms, error, at}],
 * created_at, updated_at}; state (may be NULL) filters. */
cp_rc db_webhook_deliveries(struct db *db, const char *tenant_id, const char *webhook_id,
			    const char *state, struct db_page pg, struct db_list *out) CP_WUR;
/* Queue event event_id (of type) for one endpoint of tenant_id: a delivery
 * row plus its job, in the caller's transaction. CP_ERR_NOT_FOUND if the
 * endpoint is not the tenant's. delivery_id_out may be NULL. */
cp_rc db_webhook_deliver_to(struct db *db, const char *tenant_id, const char *webhook_id,
			    const char *event_id, const char *type,
			    char delivery_id_out[CP_UUID_LEN + 1]) CP_WUR;
/* Redeliver delivery_id of endpoint webhook_id of tenant_id: a delivered
 * or failed delivery becomes pending again with its next attempt due now
 * (a new attempt row, the same event and webhook-id), queued in the
 * caller's transaction; event_id_out is its event. CP_ERR_NOT_FOUND if the
 * tenant has no such delivery on that endpoint, CP_ERR_CONFLICT if it is
 * still pending. */
cp_rc db_webhook_redeliver(struct db *db, const char *tenant_id, const char *webhook_id,
			   const char *delivery_id, char event_id_out[CP_UUID_LEN + 1]) CP_WUR;
/* Replace the endpoint's secret with sealed_secret (aad "webhooks:<id>");
 * the old one keeps signing too until previous_until (unix seconds; none
 * if not in the future). out is the endpoint as db_webhook_get; CP_ERR_NOT_FOUND
 * if not the tenant's. */
cp_rc db_webhook_rotate_secret(struct db *db, const char *tenant_id, const char *id,
			       const char *sealed_secret, int64_t previous_until,
			       json_t **out) CP_WUR;
/* Called by db_event_add: deliver to every enabled endpoint of the tenant
 * subscribed to type ("*" or the type). webhook.test is never fanned out. */
cp_rc db_webhook_fanout(struct db *db, const char *tenant_id, const char *event_id,
			const char *type) CP_WUR;

/* Worker side. Everything one attempt needs: {delivery_id, tenant_id,
 * webhook_id, event_id, state, attempts, created_at, next_attempt_at (unix
 * s), url, enabled, secret (sealed), previous_secret (sealed; only while a
 * rotation's overlap lasts, else null), body (the event object)}. */
cp_rc db_webhook_delivery_load(struct db *db, const char *delivery_id, json_t **out) CP_WUR;
enum db_webhook_outcome {
	DB_WEBHOOK_DELIVERED, /* 2xx */
	DB_WEBHOOK_RETRY,     /* failed; try again at next_attempt_at */
	DB_WEBHOOK_FAILED,    /* failed and the schedule is exhausted */
	DB_WEBHOOK_GONE,      /* 410: the delivery fails and the endpoint is disabled */
	DB_WEBHOOK_SKIPPED,   /* endpoint disabled: fail the delivery without an attempt */
};
/* One attempt's result and the disabling policy to apply. */
struct db_webhook_attempt {
	enum db_webhook_outcome outcome;
	int status_code; /* HTTP status; 0 = no answer */
	int64_t latency_ms;
	const char *error;	       /* NULL on success; never secrets */
	int64_t next_attempt_at;       /* RETRY */
	int disable_after_failed;      /* consecutive failed deliveries that disable (0 = never) */
	int64_t disable_after_seconds; /* continuous failure that disables (0 = never) */
};
/* Record the attempt, move the delivery on, keep the endpoint's failure
 * counters and disable it (event webhook.disabled) when the policy says so,
 * all in one transaction of its own. A delivery that is not pending (or no
 * longer exists) is left alone (CP_OK). *disabled tells if it disabled. */
cp_rc db_webhook_attempt_record(struct db *db, const char *delivery_id,
				const struct db_webhook_attempt *a, bool *disabled) CP_WUR;

/* ---- notification channels: email and Slack (channels.c, issue 14) ----
 * Rows of the webhooks outbox with kind "email" or "slack": fanned out,
 * delivered and retried as webhooks are (db_webhook_fanout,
 * db_webhook_delivery_load, whose "kind" picks the send function). */

/* The event that carries an email channel's verification mail: sent to that
 * channel alone (db_webhook_deliver_to), never fanned out. Its data names
 * the channel and address, never the token. */
#define DB_EVENT_CHANNEL_VERIFICATION "notification_channel.verification"
/* Create a channel of tenant_id with the caller's id: kind "email" (target
 * the address; sealed_secret the sealed verification token) or "slack"
 * (target the URL; verified at once). events borrowed. out is the API
 * shape {id, type, address | url (masked), events, verified, verified_at,
 * enabled, disabled_reason, created_at, updated_at}; no db_channel_*
 * returns the token or the whole Slack URL. */
cp_rc db_channel_create(struct db *db, const char *tenant_id, const char *id, const char *kind,
			const char *target, json_t *events, const char *sealed_secret,
			json_t **out) CP_WUR;
/* Number of channels (not webhooks) of tenant_id. */
cp_rc db_channel_count(struct db *db, const char *tenant_id, int *count) CP_WUR;
cp_rc db_channel_get(struct db *db, const char *tenant_id, const char *id, json_t **out) CP_WUR;
cp_rc db_channel_list(struct db *db, const char *tenant_id, struct db_page pg,
		      struct db_list *out) CP_WUR;
/* Change the channel's events (NULL: unchanged) and enabled (-1 unchanged,
 * 0 disable, 1 re-enable: the webhooks' rule, DB_OUTBOX_ENABLED_SET); out
 * as db_channel_create's. CP_ERR_NOT_FOUND for no such channel. */
cp_rc db_channel_update(struct db *db, const char *tenant_id, const char *id, json_t *events,
			int enabled, json_t **out) CP_WUR;
cp_rc db_channel_delete(struct db *db, const char *tenant_id, const char *id) CP_WUR;
/* The sealed verification token of email channel id (*sealed: new string,
 * caller frees) and whether it is verified; CP_ERR_NOT_FOUND for no such
 * email channel of tenant_id. */
cp_rc db_channel_token(struct db *db, const char *tenant_id, const char *id, char **sealed,
		       bool *verified) CP_WUR;
/* Mark email channel id verified (out as db_channel_get); CP_ERR_NOT_FOUND
 * if there is none or it was verified already. */
cp_rc db_channel_set_verified(struct db *db, const char *tenant_id, const char *id,
			      json_t **out) CP_WUR;
/* *over: tenant_id queued n (>= 1) or more verification mails since (unix s),
 * counted from its notification_channel.verification events (which
 * outlive the channels they were for, so delete-and-recreate counts). */
cp_rc db_channel_verification_recent(struct db *db, const char *tenant_id, int n, int64_t since,
				     bool *over) CP_WUR;
/* ---- revocation (revocations.c; issue 14: revocation and BygoneSSL) ---- */

/* The durable job that sends one version's revokeCert (payload: what
 * revoke_version in revocations.c writes; handler server/revoke.c). */
#define DB_REVOKE_JOB_KIND "certificate_revoke"
/* The RFC 5280 reason names the API takes, NULL-terminated. */
extern const char *const db_revocation_reasons[];
/* The CRLReason code of a name of db_revocation_reasons, else -1. */
int db_revocation_reason_code(const char *name);
/* What a revocation is asked for; strings borrowed. */
struct db_revoke_ask {
	const char *reason; /* one of db_revocation_reasons */
	const char
		*cause; /* "requested", "hostname_verified_by_another_tenant", "tenant_deleted" */
	const char *hostname;	/* only versions naming it (a lost hostname); NULL: any */
	const char *new_holder; /* the tenant that took the hostname over, or NULL */
	bool with_cert_key;	/* sign with the certificate's own key (keyCompromise) */
};
/*
 * Revoke version_id (NULL: every valid CA-issued version) of certificate
 * cert_id of tenant_id, in the caller's transaction: each version gets its
 * reason and revocation_requested_at, a DB_REVOKE_JOB_KIND job is queued
 * for it, and a certificate whose current version is among them drops it
 * (version 0, status "failed", last_error_reason "revoked"). *versions (may
 * be NULL) gets a new array {id, version, serial} of the versions asked.
 * CP_ERR_NOT_FOUND: no such certificate or version of the tenant;
 * CP_ERR_INVALID: no version a CA issued (uploaded, self-signed);
 * CP_ERR_CONFLICT: nothing left to revoke (revoked already or expired).
 */
cp_rc db_revocation_request(struct db *db, const char *tenant_id, const char *cert_id,
			    const char *version_id, const struct db_revoke_ask *ask,
			    json_t **versions) CP_WUR;
/*
 * The rule: tenant_id no longer holds hostname (NULL: any name, the tenant
 * is being deleted), so its valid CA-issued versions naming it are revoked
 * (cessationOfOperation), with certificate.hostname_lost and an audit row
 * per certificate when a hostname is given; new_holder (may be NULL) hears
 * of each revocation once the CA confirms it. *count (may be NULL) gets
 * the versions asked. In the caller's transaction.
 */
cp_rc db_revoke_lost(struct db *db, const char *tenant_id, const char *hostname,
		     const char *new_holder, const char *cause, int *count) CP_WUR;
/* An operator takes hostname away from tenant_id: its claim is released
 * (property.hostname_released, reason withdrawn_by_operator; *released)
 * and db_revoke_lost revokes its certificates naming it (*revoked
 * versions). CP_ERR_NOT_FOUND when the tenant had neither. In the caller's
 * transaction (hostname_claims.c). */
cp_rc db_hostname_withdraw(struct db *db, const char *tenant_id, const char *hostname,
			   bool *released, int *revoked) CP_WUR;
/* new_holder's claim of hostname verified: db_revoke_lost for every other
 * tenant whose certificates name it. In the caller's transaction. */
cp_rc db_revoke_for_new_holder(struct db *db, const char *new_holder, const char *hostname) CP_WUR;
/* The CA revoked the version of the job's payload at revoked_at: record it
 * and emit certificate.revoked (and hostname.prior_certificate_revoked to
 * the new holder); a no-op when recorded already or the tenant is gone.
 * In the caller's transaction. */
cp_rc db_revocation_done(struct db *db, json_t *payload, int64_t revoked_at) CP_WUR;
/* The private key PEM of version version_id of tenant_id, opened (a new
 * string; release with crypto_wipe_free()). CP_ERR_NOT_FOUND if gone. */
cp_rc db_certificate_version_key_pem(struct db *db, const struct crypto_keyring *ring,
				     const char *tenant_id, const char *version_id,
				     char **out) CP_WUR;

/* ---- lifecycle events and expiry reminders (cert_events.c) ---- */

/*
 * Emit a certificate event (certificate.issued, .renewed, .renewal_failed,
 * .expiring, .expired) in the caller's transaction. data = {certificate_id,
 * name, type, source, status, hostnames, sans, subject_cn, serial, issuer,
 * fingerprint_sha256, not_before, not_after, version, auto_renew, metadata}
 * of the certificate's current version, then every key of extra (borrowed,
 * may be NULL; e.g. {"reason", "detail", "order_id"}) added or replacing.
 * CP_ERR_NOT_FOUND if the certificate is not tenant_id's. id_out may be NULL.
 */
cp_rc db_event_certificate(struct db *db, const char *tenant_id, const char *type,
			   const char *certificate_id, json_t *extra,
			   char id_out[CP_UUID_LEN + 1]) CP_WUR;
/*
 * Emit an order event (order.dns_challenge_required, .dns_challenge_completed,
 * .failed) in the caller's transaction. data = {order_id, certificate_id,
 * certificate_name, hostnames, metadata} then extra's keys (borrowed, may be
 * NULL; e.g. {domain, txt_record_name, txt_record_value, expires_at} or
 * {reason, detail}). certificate_id may be NULL.
 */
cp_rc db_event_order(struct db *db, const char *tenant_id, const char *type, const char *order_id,
		     const char *certificate_id, json_t *extra,
		     char id_out[CP_UUID_LEN + 1]) CP_WUR;
/* Send due expiry reminders (at most max, each in its own transaction):
 * certificate.expiring at 30/14/7/1 days (only the tightest threshold
 * crossed, once per version and threshold), certificate.expired once per
 * version. *sent = reminders sent. */
cp_rc db_cert_reminders_run(struct db *db, int64_t now, int max, int *sent) CP_WUR;

/*
 * Leases and instances (leases.c; issue 11). Times are the database's.
 */
/* Take lease name for holder, or renew it, for ttl_seconds (> 0): *held
 * says whether holder holds it now (false: another holder's lease has not
 * lapsed). Safe against instances racing for it. */
cp_rc db_lease_hold(struct db *db, const char *name, const char *holder, int ttl_seconds,
		    bool *held) CP_WUR;
/* Give lease name up if holder holds it (at shutdown: the next instance
 * need not wait for it to lapse). */
cp_rc db_lease_release(struct db *db, const char *name, const char *holder) CP_WUR;
/* Record that instance id (host, pid) is alive now; first beat registers it. */
cp_rc db_instance_beat(struct db *db, const char *id, const char *host, int pid) CP_WUR;
/* Instance id stopped cleanly. */
cp_rc db_instance_gone(struct db *db, const char *id) CP_WUR;
/* *count = instances that beat within the last within_seconds (> 0). */
cp_rc db_instances_live(struct db *db, int within_seconds, int *count) CP_WUR;

/*
 * Wake-ups between instances on a database server (notify.c): a job queued
 * or an event committed by one instance wakes the workers or the event
 * streams of the others. Only engines with notifications (PostgreSQL).
 */
#define DB_CHANNEL_JOBS "certplane_jobs"     /* a job became due */
#define DB_CHANNEL_EVENTS "certplane_events" /* payload: the events' tenant ("" several) */
bool db_has_notify(const struct db *db);
/* Subscribe db's connection to channel: CP_OK, CP_ERR_INVALID (the engine
 * has none), or a database error. */
cp_rc db_listen(struct db *db, const char *channel) CP_WUR;
/* Wait up to timeout_ms for a notification: CP_OK with *woke and its
 * channel and payload (cap bytes each), or with !*woke on timeout; another
 * cp_rc when the connection failed (close it and open a new one). */
cp_rc db_notify_wait(struct db *db, int timeout_ms, bool *woke, char *channel, char *payload,
		     size_t cap) CP_WUR;
/* Run the event hook (db_event_hook_set) for an event another instance
 * committed for tenant_id (NULL or "": several tenants'). */
void db_event_hook_run(const char *tenant_id);

/* ---- DCV delegation (db/dcv.c; the rules are dcv/dcv.h's) ---- */

/* Record the outcome of a check of tenant_id's delegation of hostname
 * (without "*."): in_place, detail (NULL: none), checked now. */
cp_rc db_dcv_delegation_set(struct db *db, const char *tenant_id, const char *hostname,
			    bool in_place, const char *detail) CP_WUR;
/* The last check of tenant_id's delegation of hostname: *out a new object
 * {"in_place": bool, "checked_at": RFC 3339, "detail"}; CP_ERR_NOT_FOUND
 * when never checked. */
cp_rc db_dcv_delegation_get(struct db *db, const char *tenant_id, const char *hostname,
			    json_t **out) CP_WUR;
/* Note the TXT record (name, value) of order_id before it is written
 * (idempotent: a second note of the same record is CP_OK). */
cp_rc db_dcv_record_add(struct db *db, const char *tenant_id, const char *order_id,
			const char *name, const char *value) CP_WUR;
/* Forget it once it is removed from the zone (CP_OK if already gone). */
cp_rc db_dcv_record_remove(struct db *db, const char *tenant_id, const char *order_id,
			   const char *name, const char *value) CP_WUR;
/* Up to limit records whose order is over (valid, failed, canceled) or
 * gone, oldest first: *out a new array of {"tenant_id", "order_id",
 * "name", "value"}. */
cp_rc db_dcv_records_stale(struct db *db, int limit, json_t **out) CP_WUR;
/*
 * Certificates to the edge (edge.c, migration 021): the operator's keys of
 * role "edge", the change feed of what production serves (one row per
 * hostname and change, read by cursor), and what the edge was seen serving.
 * The feed writers run inside the caller's open write transaction.
 */
#define DB_EDGE_CHECK_JOB "edge_check" /* job kind of the served check */
/* Whether feed writers queue DB_EDGE_CHECK_JOB jobs (edge_check_address set). */
void db_edge_check_set(bool on);
/* Store an edge key by its SHA-256 hex; out is {id, name, role, prefix,
 * created_at} (owned by the caller). */
cp_rc db_edge_key_create(struct db *db, const char *name, const char *key_hash, const char *prefix,
			 json_t **out) CP_WUR;
cp_rc db_edge_key_list(struct db *db, struct db_page pg, struct db_list *out) CP_WUR;
/* CP_ERR_NOT_FOUND when there is no such key. */
cp_rc db_edge_key_delete(struct db *db, const char *id) CP_WUR;
/* The edge key of hash key_hash: CP_OK with its id, or CP_ERR_NOT_FOUND. */
cp_rc db_edge_key_lookup(struct db *db, const char *key_hash, char key_id[CP_UUID_LEN + 1]) CP_WUR;
/* Property property_id of tenant_id was deployed to production (or one of
 * its claims became verified): feed its hostnames - those it holds
 * verified; the others are withdrawn - and the removal of those its
 * previous production deployment had and this one has not. */
cp_rc db_edge_feed_deployed(struct db *db, const char *tenant_id, const char *property_id) CP_WUR;
/* Certificate certificate_id got a new current version: feed the hostnames
 * of every property whose production deployment carries it. */
cp_rc db_edge_feed_renewed(struct db *db, const char *tenant_id, const char *certificate_id) CP_WUR;
/* Certificate certificate_id is about to be deleted: feed the removal of
 * the hostnames production deployments carrying it serve. */
cp_rc db_edge_feed_cert_deleted(struct db *db, const char *tenant_id,
				const char *certificate_id) CP_WUR;
/* Property property_id (NULL: every property of the tenant) is about to be
 * deleted: feed the removal of its production hostnames. */
cp_rc db_edge_feed_removed(struct db *db, const char *tenant_id, const char *property_id) CP_WUR;
/* The tenant's claim of hostname on property_id was released or demoted:
 * feed its removal when the property is what the edge serves for it. */
cp_rc db_edge_feed_withdraw(struct db *db, const char *tenant_id, const char *property_id,
			    const char *hostname) CP_WUR;
/* Append the feed entries after cursor after (at most limit > 0) as a JSON
 * array to out, each entry's private key opened with ring; *count entries,
 * *last the cursor of the last one (after when none). Entries come in
 * seq order without gaps: the answer stops before a gap younger than a few
 * seconds (a writer that has not committed yet, on PostgreSQL), so a reader
 * never passes an entry that commits later. */
cp_rc db_edge_feed_read(struct db *db, const struct crypto_keyring *ring, int64_t after, int limit,
			struct cp_buf *out, int *count, int64_t *last) CP_WUR;
/* Compact the feed: of the next limit > 0 rows after *cursor, delete those
 * that a later row of their hostname, older than cutoff (further back than
 * a few seconds), supersedes; *cursor moves past them (0 after the last
 * row), *deleted = the rows removed. Each hostname's last row stays. */
cp_rc db_edge_feed_compact(struct db *db, int64_t cutoff, int limit, int64_t *cursor,
			   int *deleted) CP_WUR;
/* What the latest production deployment of a property serves. */
struct db_edge_expected {
	json_t *hostnames; /* owned: JSON array of strings */
	char certificate_id[CP_UUID_LEN + 1];
	int version;
	char fingerprint[96]; /* the version's fingerprint_sha256 */
};
/* CP_ERR_NOT_FOUND when the property has no production deployment whose
 * certificate has a version. */
cp_rc db_edge_expected(struct db *db, const char *tenant_id, const char *property_id,
		       struct db_edge_expected *out) CP_WUR;
/* Record what the edge served for hostname of the tenant's property
 * (fingerprint NULL: no certificate could be read). */
cp_rc db_edge_served_set(struct db *db, const char *tenant_id, const char *property_id,
			 const char *hostname, const char *fingerprint, bool matches) CP_WUR;

#endif
