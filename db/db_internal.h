/*
 * db_internal.h - helpers shared by the files of the db module only. Never
 * included outside db/.
 */
#ifndef CP_DB_INTERNAL_H
#define CP_DB_INTERNAL_H

#include "common/buf.h"
#include "db/db.h"
#include "db/driver.h"

struct db {
	const struct db_driver *drv;
	struct db_conn *conn;
	uint64_t commits; /* transactions committed on this connection (db_commits) */
	/* Prepared statements cached by their SQL text's address: every query
	 * is a string literal, so the pointer identifies it. */
	struct {
		const char *sql;
		struct db_stmt *stmt;
	} cache[512];
	/* This transaction revoked an auth answer (db_auth_changed): the auth
	 * cache's generation is bumped when it ends (db_auth_committed). */
	bool auth_dirty;
	/* This transaction wrote an event: the event hook runs after its
	 * COMMIT (db_event_committed), told the tenant (event_tenant, or
	 * NULL when it wrote events of several). */
	bool event_dirty;
	bool event_tenants_many;
	char event_tenant[CP_UUID_LEN + 1];
};

/* One embedded migration (cmake/embed_migrations.cmake). */
struct db_migration {
	const char *name;
	const unsigned char *sql;
	size_t len;
};

/* The SQL that differs per engine (dialect.c); strings are literals, so the
 * statement cache may key on them. */
struct db_dialect {
	const char *begin_write;
	/* A write transaction that reads what it then writes (db_begin_rmw). */
	const char *begin_rmw;
	const char *begin_read;
	const char *version_get;     /* one row, the schema version in column 0 */
	const char *version_set;     /* a printf format taking the new version */
	const char *backup;	     /* ?1 = destination file; NULL: unsupported */
	const char *integrity_check; /* one row "ok" when sound; NULL: unsupported */
	/* Run first in a migration's transaction: one migrator at a time
	 * (NULL: begin_write already serializes writers). */
	const char *migrate_lock;
	/* Notify the other instances: ?1 channel, ?2 payload (notify.c); NULL
	 * for an engine of one process. */
	const char *notify;
	/* The job claim (db/jobs.c), each an UPDATE ... RETURNING id, kind,
	 * tenant ('' for none), payload, attempts of at most one job, with
	 * ?1 owner, ?2 now, ?3 lease seconds, ?4 lane: the job of an expired
	 * lease, and (?5 tenant) the tenant's earliest due queued job. They
	 * differ in how the row is taken: SQLite's one writer makes a plain
	 * subselect safe (INDEXED BY pins its partial index); PostgreSQL
	 * instances claim at once, so the subselect is FOR UPDATE SKIP LOCKED
	 * (a job locked by another claim is passed over, never waited for). */
	const char *job_claim_expired;
	/* Lock the (?1 lane, ?2 tenant) row of job_tenants and read its running
	 * count (claim_cap_lock); NULL where claims never run at once. */
	const char *job_tenant_lock;
	const char *job_claim_queued;
	/* Whether the engine takes SQLite's INDEXED BY (DB_PINNED). */
	bool indexed_by;
	const struct db_migration *migrations;
	const size_t *migrations_count;
	/* Serialize the quota check of one tenant (?1 = tenant id) with every
	 * other write transaction's check of it (quotas.c): SQLite's write lock
	 * does already, PostgreSQL locks the tenant's row. */
	const char *quota_lock;
	/* db_ping's liveness query: one cheap statement that fails when the
	 * database does. SQLite's connection is a file in this process, and
	 * "SELECT 1" says its handle works; a server's session answers
	 * "SELECT 1" even when our tables are out of its reach (a wrong
	 * search_path, a dropped schema), so PostgreSQL reads one. */
	const char *ping;
};
const struct db_dialect *db_dialect(const struct db *db);
/* Notify the instances listening on channel (DB_CHANNEL_*, db.h) with
 * payload, at the COMMIT of the open transaction or now: CP_OK (nothing on
 * an engine without notifications), or a database error. */
cp_rc db_notify(struct db *db, const char *channel, const char *payload) CP_WUR;

/* Map a driver result (enum db_result) to cp_rc: DB_ROW and DB_DONE are
 * CP_OK, BUSY and RETRY CP_ERR_BUSY, CONSTRAINT CP_ERR_CONFLICT; anything
 * else is logged with the driver's message and is CP_ERR_INTERNAL. */
cp_rc db_rc(struct db *db, int rc);
/* Prepare an uncached statement (SQL built at run time, or one used once):
 * DB_DONE with *out (owned: db_finalize it), or an error class. */
int db_prepare(struct db *db, const char *sql, struct db_stmt **out);
void db_finalize(struct db *db, struct db_stmt *st);
/* Bind text of a known length (not NUL-terminated, may hold NULs). */
void db_bind_textn(struct db_stmt *st, int idx, const char *s, size_t len);
/* Rows changed by the connection's last INSERT/UPDATE/DELETE. */
int64_t db_changes(struct db *db);
/* The SQLite handle of a SQLite connection (asserts it is one): for the
 * unit tests that inspect or damage the file on purpose, nothing else. */
struct sqlite3 *db_sqlite_handle(struct db *db);
/* Cached prepared statement for a string-literal sql, reset and unbound.
 * Borrowed: do not finalize. NULL on error (logged). */
struct db_stmt *db_stmt(struct db *db, const char *sql);
/* Bind text or NULL. */
void db_bind_text(struct db_stmt *st, int idx, const char *s);
/* Bind a JSON value encoded compactly (NULL -> SQL NULL). */
void db_bind_json(struct db_stmt *st, int idx, const json_t *v);
/* Step a statement that returns no rows; CP_ERR_CONFLICT on constraint. */
cp_rc db_exec_stmt(struct db *db, struct db_stmt *st) CP_WUR;
/* db_exec_stmt for a statement that must change a row (UPDATE/DELETE of
 * one tenant's object): CP_ERR_NOT_FOUND when it changed none. */
cp_rc db_exec_one(struct db *db, struct db_stmt *st) CP_WUR;
/* Execute a statement whose first column is a JSON object text; one row
 * -> *out, no row -> CP_ERR_NOT_FOUND. */
cp_rc db_fetch_json(struct db *db, struct db_stmt *st, json_t **out) CP_WUR;
/* Execute a statement returning (seq, json) rows with LIMIT pg.limit + 1;
 * fills out->data and out->next. */
cp_rc db_fetch_page(struct db *db, struct db_stmt *st, int limit, struct db_list *out) CP_WUR;
/*
 * Shared workers for the shapes every resource file repeats. Their SQL
 * follows one numbering: ?1 tenant_id, ?2 the object's id (or the parent's
 * for a list of children), ?3 the page's "after" sequence number, ?4 the
 * page limit + 1; filters take ?5 on. A query that is not tenant-scoped
 * simply leaves ?1 unused (it is bound NULL). sql is a string literal (the
 * statement cache keys on its address).
 */
/* db_stmt with ?1 = k1 and ?2 = k2 bound as text (NULL binds SQL NULL).
 * A NULL key for a parameter the statement does not have is a no-op.
 * Borrowed; NULL on error (the fetch/exec helpers turn that into
 * CP_ERR_INTERNAL, so a caller may pass the result straight on). */
struct db_stmt *db_stmt_keyed(struct db *db, const char *sql, const char *k1, const char *k2);
/* db_stmt_keyed for a new row: a fresh UUID is written to id and bound at
 * ?1, k2 at ?2. */
struct db_stmt *db_stmt_new_row(struct db *db, const char *sql, char id[CP_UUID_LEN + 1],
				const char *k2);
/* The one JSON object row of sql for (tenant_id, id): CP_OK with *out
 * (owned by the caller), CP_ERR_NOT_FOUND, or another error. */
cp_rc db_get_scoped(struct db *db, const char *sql, const char *tenant_id, const char *id,
		    json_t **out) CP_WUR;
/* Run the DELETE (or UPDATE) sql for (tenant_id, id): CP_ERR_NOT_FOUND when
 * it changed no row. */
cp_rc db_delete_scoped(struct db *db, const char *sql, const char *tenant_id,
		       const char *id) CP_WUR;
/* A list statement in both orders: the list's SQL is written once as a
 * macro m(cmp, dir) of its keyset comparison with ?3 and its ORDER BY
 * direction, and DB_LIST_BOTH(m) is { ascending, descending }, so each
 * order is the same index range scan walked one way or the other. Used as
 * `static const char *const sql[2] = DB_LIST_BOTH(m);`, indexed by pg.desc. */
/* clang-format off */
#define DB_LIST_BOTH(m) { m(">", ""), m("<", " DESC") }
/* clang-format on */
/* A statement whose SQLite plan is pinned to an index: written once as a
 * macro m(pin) that puts pin right after the table's name (and alias), and
 * DB_PINNED(m, "index") is { pinned, unpinned }: SQLite takes INDEXED BY
 * (it refuses the statement rather than scan when the index is gone, and
 * it holds the plan measured), PostgreSQL has no such clause. Used as
 * `static const char *const sql[2] = DB_PINNED(m, "idx");` and
 * db_pinned(db, sql) for the text to run. */
/* clang-format off */
#define DB_PINNED(m, index) { m(" INDEXED BY " index), m("") }
/* clang-format on */
static inline const char *db_pinned(const struct db *db, const char *const sql[2])
{
	return sql[db_dialect(db)->indexed_by ? 0 : 1];
}
/* The value ?3 takes for pg: pg.after, or past the newest seq for a first
 * descending page. */
int64_t db_page_from(struct db_page pg);
/* Bind the keyset page pg to st: ?from = its cursor (db_page_from) and
 * ?limit = pg.limit + 1 (the one row past the page tells db_fetch_page
 * that a next page exists). The one place a list binds its page, for a
 * statement whose numbering is its own (db_stmt_page binds ?3 and ?4). */
void db_list_bind(struct db_stmt *st, int from, int limit, struct db_page pg);
/* db_stmt_keyed(sql[pg.desc], tenant_id, parent) with the page bound at ?3
 * and ?4 (db_list_bind), for a caller that binds its filters (?5 on) before
 * db_fetch_page. */
struct db_stmt *db_stmt_page(struct db *db, const char *const sql[2], const char *tenant_id,
			     const char *parent, struct db_page pg);
/* One keyset page of sql[pg.desc]'s (seq, json) rows into out (db_fetch_page). */
cp_rc db_list_scoped(struct db *db, const char *const sql[2], const char *tenant_id,
		     const char *parent, struct db_page pg, struct db_list *out) CP_WUR;
/* Execute the statement sql with ?1 = key (text) and ?2 = the time t (the
 * "stamp a row by its key" shape): db_exec_stmt's result. */
cp_rc db_exec_at(struct db *db, const char *sql, const char *key, int64_t t) CP_WUR;
/* Run a bounded DELETE of sql (?1 a cutoff time, ?2 the batch size > 0);
 * *deleted = the rows it removed. The prune ticks' one worker. */
cp_rc db_delete_batch(struct db *db, const char *sql, int64_t cutoff, int limit,
		      int *deleted) CP_WUR;
/* db_list_scoped for a list with one optional text filter at ?5 (NULL
 * binds SQL NULL, which the statement reads as "no filter"). */
cp_rc db_list_filtered(struct db *db, const char *const sql[2], const char *tenant_id,
		       const char *parent, const char *filter, struct db_page pg,
		       struct db_list *out) CP_WUR;
/* Step st once: CP_OK leaves its row to read, and the caller resets st
 * when done with it; CP_ERR_NOT_FOUND (no row) or an error (CP_ERR_INTERNAL
 * for a NULL st) has reset it already. The "step, copy the columns,
 * reset" worker. */
cp_rc db_step_row(struct db *db, struct db_stmt *st) CP_WUR;
/* Step st once: CP_OK when a row exists, CP_ERR_NOT_FOUND when none,
 * another cp_rc on error (CP_ERR_INTERNAL for a NULL st). Resets st. */
cp_rc db_probe(struct db *db, struct db_stmt *st) CP_WUR;
/* CP_ERR_CONFLICT when sql finds a row for (tenant_id, id) (the object is
 * still in use), CP_OK when it finds none: the precise answer a foreign key
 * would give only as a generic constraint error. */
cp_rc db_unused_or_conflict(struct db *db, const char *sql, const char *tenant_id,
			    const char *id) CP_WUR;
/* Step st once and, on a row, copy its text column 0 into buf (cap bytes,
 * truncated, NUL-terminated; NULL copies ""). CP_ERR_NOT_FOUND without a
 * row. Resets st. */
cp_rc db_fetch_text(struct db *db, struct db_stmt *st, char *buf, size_t cap) CP_WUR;
/* Step st once and, on a row, store its integer column 0 in *out.
 * CP_ERR_NOT_FOUND without a row. Resets st. */
cp_rc db_fetch_int64(struct db *db, struct db_stmt *st, int64_t *out) CP_WUR;
/* Copy text column col of st's current row into buf (cap > 0 bytes,
 * truncated, NUL-terminated; SQL NULL copies ""). */
void db_column_copy(struct db_stmt *st, int col, char *buf, size_t cap);

/*
 * Rendering rows straight to JSON text (the single-resource reads and their
 * lists): column writers over cp_jw, SQL NULL writing null for each.
 */
/* The cap of one rendered object (a certificate used by thousands of
 * properties lists them all). */
#define DB_RENDER_MAX (16u << 20)
void db_jw_text(struct cp_jw *w, struct db_stmt *st, int col);
void db_jw_int(struct cp_jw *w, struct db_stmt *st, int col);
/* An integer 0/1 column (or a boolean expression: PostgreSQL's t/f read as
 * 1/0) as true/false. */
void db_jw_bool(struct cp_jw *w, struct db_stmt *st, int col);
/* A unix-seconds column as RFC 3339 text (cp_jw_time). */
void db_jw_time(struct cp_jw *w, struct db_stmt *st, int col);
/* A column holding stored JSON text (written compact by db_bind_json),
 * copied as is. */
void db_jw_json(struct cp_jw *w, struct db_stmt *st, int col);
/* Parse a rendered object into *out (owned by the caller), for callers that
 * need the object as JSON: CP_OK, or CP_ERR_INTERNAL. */
cp_rc db_json_from_buf(const struct cp_buf *b, json_t **out) CP_WUR;
/* Render st's current row as one JSON value into w; CP_OK or an error. */
typedef cp_rc (*db_row_render_fn)(struct db *db, struct db_stmt *st, struct cp_jw *w);
/* db_fetch_page for (seq, columns...) rows that render renders. */
cp_rc db_fetch_page_render(struct db *db, struct db_stmt *st, int limit, db_row_render_fn render,
			   struct db_list *out) CP_WUR;

/* Open a read transaction (BEGIN DEFERRED) if none is open, so that
 * several statements read one snapshot; *began says whether it did.
 * CP_OK or the error of BEGIN. */
cp_rc db_read_begin(struct db *db, bool *began) CP_WUR;
/* End what db_read_begin began (nothing when began is false). */
void db_read_end(struct db *db, bool began);

/* A write that can revoke a cached auth answer (API key or tenant delete)
 * succeeded: bump the auth cache's generation now outside a transaction,
 * or when the open one ends (tenants.c). */
void db_auth_changed(struct db *db);
/* The open transaction ended (committed or rolled back): apply a pending
 * db_auth_changed. Called by db_commit and db_rollback. */
void db_auth_committed(struct db *db);
/* The transaction ended (committed or rolled back): run the event hook if
 * it committed an event (events.c). */
void db_event_committed(struct db *db, bool committed);

/* Raw SQL (multiple statements), for migrations and maintenance. */
cp_rc db_exec(struct db *db, const char *sql) CP_WUR;

/* *other = whether a tenant other than tenant_id holds hostname verified
 * (hostname_claims.c). A wildcard ("*.a.test") counts as held when another
 * tenant verified a name it covers, one label below its base (www.a.test). */
cp_rc db_hostname_verified_elsewhere(struct db *db, const char *tenant_id, const char *hostname,
				     bool *other) CP_WUR;

/* The SET items of an outbox endpoint's (webhook or channel) `enabled`
 * change, p its parameter ("?6"): < 0 leaves it; 1 re-enables with a clean
 * slate (no reason, no failure counters); 0 disables, recording that as the
 * reason unless certplane gave one. The one home of that rule. */
#define DB_OUTBOX_ENABLED_SET(p)                                                                   \
	"enabled = CASE WHEN " p " < 0 THEN enabled ELSE " p " END, "                              \
	"disabled_reason = CASE WHEN " p " = 1 THEN NULL "                                         \
	"  WHEN " p " = 0 THEN coalesce(disabled_reason, 'disabled through the API') "             \
	"  ELSE disabled_reason END, "                                                             \
	"failed_deliveries = CASE WHEN " p " = 1 THEN 0 ELSE failed_deliveries END, "              \
	"failing_since = CASE WHEN " p " = 1 THEN NULL ELSE failing_since END, "

/*
 * Flat objects rendered from a row (port1, issue 11): a table of members,
 * member i from column c0 + i, so a statement's column list and its table
 * are written side by side. SQL NULL writes null for every kind.
 */
enum db_jw_kind {
	DB_JW_TEXT, /* text column as a string */
	DB_JW_INT,  /* integer column as a number */
	DB_JW_TIME, /* unix-seconds column as RFC 3339 text */
	DB_JW_JSON, /* stored JSON text, copied as is */
	DB_JW_BOOL, /* 0/1 (or a boolean) column as false/true */
};
struct db_jw_field {
	const char *key; /* a literal of safe ASCII (cp_jw_key) */
	enum db_jw_kind kind;
};
/* Write the n members of f, from columns c0.. of st's current row, into
 * the object open in w. */
void db_jw_fields(struct cp_jw *w, struct db_stmt *st, int c0, const struct db_jw_field *f,
		  size_t n);
/* Step st once and render its columns 0..n-1 as one object of the members
 * of f into *out (owned by the caller). CP_OK, CP_ERR_NOT_FOUND without a
 * row, or another error (CP_ERR_INTERNAL for a NULL st). Resets st. */
cp_rc db_fetch_fields(struct db *db, struct db_stmt *st, const struct db_jw_field *f, size_t n,
		      json_t **out) CP_WUR;
/* Step st once and render its row with render (the row shape of
 * db_fetch_page_render: seq in column 0) into *out (owned by the caller).
 * CP_OK, CP_ERR_NOT_FOUND without a row, or another error. Resets st. */
cp_rc db_fetch_render(struct db *db, struct db_stmt *st, db_row_render_fn render,
		      json_t **out) CP_WUR;

/* Render the event of st's current row, whose columns c0 and c0 + 1 are
 * its payload and id, as the API shows it: the payload object with "id"
 * as its last member (events.c; a webhook delivery's body too). CP_OK, or
 * CP_ERR_INTERNAL for a payload that is no object; w's own errors are in
 * cp_jw_rc. */
cp_rc db_event_render(struct cp_jw *w, struct db_stmt *st, int c0) CP_WUR;

/* A Slack channel's URL as it is shown (channels.c, the one masking
 * rule): its scheme and host, a slash and four asterisks, then its last 4
 * bytes (its path is what lets anyone post), into out (cap bytes,
 * truncated, NUL-terminated). */
void db_channel_url_mask(const char *url, char *out, size_t cap);
/* The edge's served check of property_id (edge.c) as one JSON object
 * {hostname: {fingerprint, matches, checked_at}} into w. */
cp_rc db_edge_served_render(struct db *db, const char *property_id, struct cp_jw *w) CP_WUR;

#endif
