/*
 * certificates.c - certificates and their versions. A certificate row is
 * the stable id properties point at; each issuance or upload is a row of
 * certificate_versions and certificates.version names the current one
 * (0 while an ACME certificate is still pending). The facts shown for a
 * certificate (subject, SANs, validity, fingerprint) are always read from
 * the certificate itself when the version is stored, never taken from a
 * client. Private keys are sealed here, with the version row's identity as
 * authenticated data, so no caller ever holds a sealed or clear key in SQL.
 *
 * Every query binds ?1 = now, so that the derived "expired" status and the
 * expiry filters agree with one clock reading.
 */
#include "crypto/crypto.h"
#include "db/db_internal.h"
#include "lifecycle/lifecycle.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off */
#define CERT_FROM                          \
	" FROM certificates c LEFT JOIN certificate_versions v" \
	" ON v.certificate_id = c.id AND v.version = c.version "
/* clang-format on */

/* The derived status (lifecycle.h: "failed" wins over "expired"). */
#define CERT_STATUS LIFECYCLE_STATUS_SQL("c.status", "v.not_after")

/*
 * A certificate as the API shows it (openapi.yaml, Certificate): the plain
 * columns of CERT_COLS, in the order of enum cert_col, rendered by
 * cert_render_row, the one renderer of a certificate (get, list, and the
 * JSON every other caller reads). To add a field: a column at the end of
 * CERT_COLS, its CC_ name at the end of the enum, one line in
 * cert_render_row where the field goes.
 */
/* clang-format off */
#define CERT_COLS                                                                             \
	"c.id, c.name, c.type, c.source, " CERT_STATUS ", c.auto_renew, "                    \
	"coalesce(v.key_type, c.key_type), c.hostnames, c.challenge, c.ca, v.subject_cn, "   \
	"v.sans, v.issuer, v.serial, v.not_before, v.not_after, v.fingerprint_sha256, "      \
	"c.version, c.metadata, "                                                              \
	"c.renew_after, c.next_attempt_at, c.last_attempt_at, c.last_error, "                \
	"c.last_error_reason, c.failure_count, c.created_at, c.updated_at, c.profile, "      \
	"c.tenant_id, c.cas"
/* clang-format on */

enum cert_col {
	CC_ID,
	CC_NAME,
	CC_TYPE,
	CC_SOURCE,
	CC_STATUS,
	CC_AUTO_RENEW,
	CC_KEY_TYPE,
	CC_HOSTNAMES,
	CC_CHALLENGE,
	CC_CA,
	CC_SUBJECT_CN,
	CC_SANS,
	CC_ISSUER,
	CC_SERIAL,
	CC_NOT_BEFORE,
	CC_NOT_AFTER,
	CC_FINGERPRINT,
	CC_VERSION,
	CC_METADATA,
	CC_RENEW_AFTER,
	CC_NEXT_ATTEMPT_AT,
	CC_LAST_ATTEMPT_AT,
	CC_LAST_ERROR,
	CC_LAST_ERROR_REASON,
	CC_FAILURE_COUNT,
	CC_CREATED_AT,
	CC_UPDATED_AT,
	CC_PROFILE,
	CC_TENANT_ID,
	CC_CAS,
	CC_COUNT
};

/* The ids of the tenant's properties using certificate ?2, in their order
 * (properties_tenant_certificate, a range of the certificate's entries). */
static const char PROPERTY_IDS_SQL[] = "SELECT p.id FROM properties p "
				       "WHERE p.tenant_id = ?1 AND p.certificate_id = ?2 "
				       "ORDER BY p.seq";

/* The ids of the properties of (tenant_id, id) as a JSON array into w. */
static cp_rc cert_render_property_ids(struct db *db, const char *tenant_id, const char *id,
				      struct cp_jw *w)
{
	struct db_stmt *st = db_stmt_keyed(db, PROPERTY_IDS_SQL, tenant_id, id);
	int r;

	if (!st)
		return CP_ERR_INTERNAL;
	cp_jw_open(w, '[');
	while ((r = db_step(st)) == DB_ROW)
		db_jw_text(w, st, 0);
	db_reset(st);
	if (r != DB_DONE)
		return db_rc(db, r);
	cp_jw_close(w, ']');
	return CP_OK;
}

/* Render the certificate of st's current row, whose CERT_COLS start at
 * column c0, as one JSON object appended to w: CP_OK, or the error of the
 * property ids' query. */
static cp_rc cert_render_row(struct db *db, struct cp_jw *w, struct db_stmt *st, int c0)
{
	/* The keys outlive the property ids' steps: st is another statement,
	 * left on its row. */
	const char *id = db_col_text(st, c0 + CC_ID);
	const char *tenant_id = db_col_text(st, c0 + CC_TENANT_ID);
	cp_rc rc;

	assert(db_col_count(st) >= c0 + CC_COUNT);
	if (!id || !tenant_id)
		return CP_ERR_INTERNAL;
	cp_jw_open(w, '{');
	cp_jw_key(w, "id");
	db_jw_text(w, st, c0 + CC_ID);
	cp_jw_key(w, "name");
	db_jw_text(w, st, c0 + CC_NAME);
	cp_jw_key(w, "type");
	db_jw_text(w, st, c0 + CC_TYPE);
	cp_jw_key(w, "source");
	db_jw_text(w, st, c0 + CC_SOURCE);
	cp_jw_key(w, "status");
	db_jw_text(w, st, c0 + CC_STATUS);
	cp_jw_key(w, "auto_renew");
	db_jw_text(w, st, c0 + CC_AUTO_RENEW);
	cp_jw_key(w, "key_type");
	db_jw_text(w, st, c0 + CC_KEY_TYPE);
	cp_jw_key(w, "hostnames");
	db_jw_json(w, st, c0 + CC_HOSTNAMES);
	cp_jw_key(w, "challenge");
	db_jw_text(w, st, c0 + CC_CHALLENGE);
	cp_jw_key(w, "ca");
	db_jw_text(w, st, c0 + CC_CA);
	cp_jw_key(w, "cas");
	db_jw_json(w, st, c0 + CC_CAS);
	cp_jw_key(w, "profile");
	db_jw_text(w, st, c0 + CC_PROFILE);
	cp_jw_key(w, "subject_cn");
	db_jw_text(w, st, c0 + CC_SUBJECT_CN);
	cp_jw_key(w, "sans");
	db_jw_json(w, st, c0 + CC_SANS);
	cp_jw_key(w, "issuer");
	db_jw_text(w, st, c0 + CC_ISSUER);
	cp_jw_key(w, "serial");
	db_jw_text(w, st, c0 + CC_SERIAL);
	cp_jw_key(w, "not_before");
	db_jw_time(w, st, c0 + CC_NOT_BEFORE);
	cp_jw_key(w, "not_after");
	db_jw_time(w, st, c0 + CC_NOT_AFTER);
	cp_jw_key(w, "fingerprint_sha256");
	db_jw_text(w, st, c0 + CC_FINGERPRINT);
	cp_jw_key(w, "version");
	db_jw_int(w, st, c0 + CC_VERSION);
	cp_jw_key(w, "property_ids");
	rc = cert_render_property_ids(db, tenant_id, id, w);
	if (rc != CP_OK)
		return rc;
	cp_jw_key(w, "metadata");
	db_jw_json(w, st, c0 + CC_METADATA);
	cp_jw_key(w, "renewal");
	cp_jw_open(w, '{');
	cp_jw_key(w, "renew_after");
	db_jw_time(w, st, c0 + CC_RENEW_AFTER);
	cp_jw_key(w, "next_attempt_at");
	db_jw_time(w, st, c0 + CC_NEXT_ATTEMPT_AT);
	cp_jw_key(w, "last_attempt_at");
	db_jw_time(w, st, c0 + CC_LAST_ATTEMPT_AT);
	cp_jw_key(w, "last_error");
	db_jw_text(w, st, c0 + CC_LAST_ERROR);
	cp_jw_key(w, "last_error_reason");
	db_jw_text(w, st, c0 + CC_LAST_ERROR_REASON);
	cp_jw_key(w, "failure_count");
	db_jw_int(w, st, c0 + CC_FAILURE_COUNT);
	cp_jw_close(w, '}');
	cp_jw_key(w, "created_at");
	db_jw_time(w, st, c0 + CC_CREATED_AT);
	cp_jw_key(w, "updated_at");
	db_jw_time(w, st, c0 + CC_UPDATED_AT);
	cp_jw_close(w, '}');
	return CP_OK;
}

/* db_row_render_fn over cert_render_row for (seq, CERT_COLS) rows. */
static cp_rc cert_render_listed(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	return cert_render_row(db, w, st, 1);
}

/*
 * A version as the API shows it (openapi.yaml, CertificateVersion): the
 * columns of VERSION_COLS (enum version_col) of v joined to its
 * certificate c, rendered by version_render_listed.
 */
/* clang-format off */
#define VERSION_COLS                                                                          \
	"v.id, v.version, CASE WHEN v.version = c.version THEN 1 ELSE 0 END, v.cert_pem, "    \
	"v.chain_pem, v.key_type, v.subject_cn, v.sans, v.issuer, v.serial, v.not_before, "   \
	"v.not_after, v.fingerprint_sha256, v.order_id, v.created_at, "                       \
	"(SELECT o.ca FROM orders o WHERE o.id = v.order_id), v.revocation_reason, "          \
	"v.revocation_requested_at, v.revoked_at"
/* clang-format on */

enum version_col {
	VC_ID,
	VC_VERSION,
	VC_CURRENT,
	VC_CERT_PEM,
	VC_CHAIN_PEM,
	VC_KEY_TYPE,
	VC_SUBJECT_CN,
	VC_SANS,
	VC_ISSUER,
	VC_SERIAL,
	VC_NOT_BEFORE,
	VC_NOT_AFTER,
	VC_FINGERPRINT,
	VC_ORDER_ID,
	VC_CREATED_AT,
	VC_CA,
	VC_REVOCATION_REASON,
	VC_REVOCATION_REQUESTED_AT,
	VC_REVOKED_AT,
	VC_COUNT
};

/* db_row_render_fn for (seq, VERSION_COLS) rows. */
static cp_rc version_render_listed(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	const int c0 = 1;

	(void)db;
	assert(db_col_count(st) >= c0 + VC_COUNT);
	cp_jw_open(w, '{');
	cp_jw_key(w, "id");
	db_jw_text(w, st, c0 + VC_ID);
	cp_jw_key(w, "version");
	db_jw_int(w, st, c0 + VC_VERSION);
	cp_jw_key(w, "current");
	cp_jw_bool(w, db_col_int64(st, c0 + VC_CURRENT) != 0);
	cp_jw_key(w, "certificate");
	db_jw_text(w, st, c0 + VC_CERT_PEM);
	cp_jw_key(w, "chain");
	db_jw_text(w, st, c0 + VC_CHAIN_PEM);
	cp_jw_key(w, "key_type");
	db_jw_text(w, st, c0 + VC_KEY_TYPE);
	cp_jw_key(w, "subject_cn");
	db_jw_text(w, st, c0 + VC_SUBJECT_CN);
	cp_jw_key(w, "sans");
	db_jw_json(w, st, c0 + VC_SANS);
	cp_jw_key(w, "issuer");
	db_jw_text(w, st, c0 + VC_ISSUER);
	cp_jw_key(w, "serial");
	db_jw_text(w, st, c0 + VC_SERIAL);
	cp_jw_key(w, "not_before");
	db_jw_time(w, st, c0 + VC_NOT_BEFORE);
	cp_jw_key(w, "not_after");
	db_jw_time(w, st, c0 + VC_NOT_AFTER);
	cp_jw_key(w, "fingerprint_sha256");
	db_jw_text(w, st, c0 + VC_FINGERPRINT);
	cp_jw_key(w, "order_id");
	db_jw_text(w, st, c0 + VC_ORDER_ID);
	cp_jw_key(w, "ca"); /* the CA whose order issued it; null: uploaded or self-signed */
	db_jw_text(w, st, c0 + VC_CA);
	cp_jw_key(w, "created_at");
	db_jw_time(w, st, c0 + VC_CREATED_AT);
	cp_jw_key(w, "revocation_reason");
	db_jw_text(w, st, c0 + VC_REVOCATION_REASON);
	cp_jw_key(w, "revocation_requested_at");
	db_jw_time(w, st, c0 + VC_REVOCATION_REQUESTED_AT);
	cp_jw_key(w, "revoked_at");
	db_jw_time(w, st, c0 + VC_REVOKED_AT);
	cp_jw_close(w, '}');
	return CP_OK;
}

/* Bind a unix time, 0 meaning "none" (SQL NULL). */
static void bind_time(struct db_stmt *st, int idx, int64_t t)
{
	if (t)
		db_bind_int64(st, idx, t);
	else
		db_bind_null(st, idx);
}

cp_rc db_certificate_exists(struct db *db, const char *tenant_id, const char *id)
{
	static const char sql[] = "SELECT 1 FROM certificates WHERE tenant_id = ?1 AND id = ?2";
	return db_probe(db, db_stmt_keyed(db, sql, tenant_id, id));
}

cp_rc db_certificate_create(struct db *db, const char *tenant_id, const struct db_cert_new *in,
			    char id_out[CP_UUID_LEN + 1])
{
	static const char sql[] =
		"INSERT INTO certificates (id, tenant_id, name, type, source, status, auto_renew, "
		"key_type, hostnames, challenge, ca, metadata, created_at, updated_at, cas) "
		"SELECT ?1, id, ?3, ?4, ?5, ?6, ?7, ?8, coalesce(?9, '[]'), ?10, ?11, "
		"coalesce(?12, '{}'), ?13, ?13, ?14 FROM tenants WHERE id = ?2";
	struct db_stmt *st = db_stmt_new_row(db, sql, id_out, tenant_id);

	assert(db && tenant_id && in);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, in->name);
	db_bind_text(st, 4, in->type ? in->type : "server");
	db_bind_text(st, 5, in->source);
	db_bind_text(st, 6, in->status ? in->status : "pending");
	db_bind_text(st, 7, in->auto_renew ? in->auto_renew : "none");
	db_bind_text(st, 8, in->key_type);
	db_bind_json(st, 9, in->hostnames);
	db_bind_text(st, 10, in->challenge);
	db_bind_text(st, 11, in->ca);
	db_bind_json(st, 12, in->metadata);
	db_bind_int64(st, 13, cp_now());
	if (in->cas)
		db_bind_json(st, 14, in->cas);
	else
		db_bind_null(st, 14);
	return db_exec_one(db, st);
}

/* The next version number of certificate id, or CP_ERR_NOT_FOUND. */
static cp_rc next_version(struct db *db, const char *tenant_id, const char *id, int *out)
{
	static const char sql[] =
		"SELECT c.version, (SELECT coalesce(max(version), 0) FROM certificate_versions "
		"WHERE certificate_id = c.id) FROM certificates c WHERE c.tenant_id = ? AND c.id = ?";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);
	cp_rc rc = db_step_row(db, st);
	int cur, max;

	if (rc != CP_OK)
		return rc;
	cur = db_col_int64(st, 0);
	max = db_col_int64(st, 1);
	db_reset(st);
	*out = (cur > max ? cur : max) + 1;
	return CP_OK;
}

/* A version's material read once: the leaf's facts and the key as PKCS#8. */
struct db_cert_prepared {
	struct crypto_cert_info ci;
	char *cert_pem;
	char *chain_pem;
	char *sans;  /* JSON text */
	char *pkcs8; /* unencrypted PKCS#8 PEM: wipe on free */
	char key_kind[16];
};

void db_cert_prepared_free(struct db_cert_prepared *p)
{
	if (!p)
		return;
	crypto_cert_info_clear(&p->ci);
	free(p->cert_pem);
	free(p->chain_pem);
	free(p->sans);
	crypto_wipe_free(p->pkcs8);
	free(p);
}

cp_rc db_cert_prepare(const struct db_cert_material *m, struct db_cert_prepared **out)
{
	struct db_cert_prepared *p = calloc(1, sizeof(*p));
	struct crypto_key *key = NULL;
	cp_rc rc = CP_ERR_NOMEM;

	assert(m && out);
	*out = NULL;
	if (!p)
		goto out;
	rc = crypto_cert_info_parse(m->cert_pem, strlen(m->cert_pem), &p->ci, NULL);
	if (rc != CP_OK)
		goto out;
	rc = crypto_key_from_pem(m->key_pem, strlen(m->key_pem), NULL, &key, NULL);
	if (rc != CP_OK)
		goto out;
	if (!crypto_key_matches_cert(key, m->cert_pem, strlen(m->cert_pem))) {
		rc = CP_ERR_INVALID;
		goto out;
	}
	snprintf(p->key_kind, sizeof(p->key_kind), "%s", crypto_key_kind(key));
	p->cert_pem = strdup(m->cert_pem);
	p->chain_pem = strdup(m->chain_pem ? m->chain_pem : "");
	p->sans = json_dumps(p->ci.sans, JSON_COMPACT);
	if (!p->cert_pem || !p->chain_pem || !p->sans) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	/* Stored as unencrypted PKCS#8 whatever the input form, so that the
	 * private-key endpoint always returns one format. */
	rc = crypto_key_to_pem(key, &p->pkcs8);
	if (rc != CP_OK)
		goto out;
	*out = p;
	p = NULL;
out:
	crypto_key_free(key);
	db_cert_prepared_free(p);
	return rc;
}

cp_rc db_certificate_add_prepared(struct db *db, const struct crypto_keyring *ring,
				  const char *tenant_id, const char *id,
				  const struct db_cert_prepared *p, const char *order_id,
				  int64_t renew_after, int *version_out)
{
	static const char ins[] =
		"INSERT INTO certificate_versions (id, certificate_id, tenant_id, version, cert_pem, "
		"chain_pem, private_key, key_type, subject_cn, sans, issuer, serial, not_before, "
		"not_after, fingerprint_sha256, order_id, created_at) "
		"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
	static const char upd[] =
		"UPDATE certificates SET version = ?3, status = 'active', renew_after = ?4, "
		"next_attempt_at = NULL, last_error = NULL, last_error_reason = NULL, "
		"failure_count = 0, updated_at = ?5 WHERE tenant_id = ?1 AND id = ?2";
	char vid[CP_UUID_LEN + 1], *aad = NULL, *sealed = NULL;
	struct db_stmt *st;
	int version = 0;
	int64_t now = cp_now();
	cp_rc rc;

	assert(db && tenant_id && ring && p && p->pkcs8);
	rc = next_version(db, tenant_id, id, &version);
	if (rc != CP_OK)
		goto out;
	cp_uuid(vid);
	aad = cp_aprintf("certificate_versions:%s", vid);
	if (!aad) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	/* Sealed per version (its own nonce and aad), never shared. */
	rc = crypto_seal(ring, aad, p->pkcs8, strlen(p->pkcs8), &sealed);
	if (rc != CP_OK)
		goto out;
	st = db_stmt(db, ins);
	if (!st) {
		rc = CP_ERR_INTERNAL;
		goto out;
	}
	db_bind_text(st, 1, vid);
	db_bind_text(st, 2, id);
	db_bind_text(st, 3, tenant_id);
	db_bind_int64(st, 4, version);
	db_bind_text(st, 5, p->cert_pem);
	db_bind_text(st, 6, p->chain_pem);
	db_bind_text(st, 7, sealed);
	db_bind_text(st, 8, p->key_kind);
	db_bind_text(st, 9, p->ci.subject_cn);
	db_bind_text(st, 10, p->sans);
	db_bind_text(st, 11, p->ci.issuer ? p->ci.issuer : "");
	db_bind_text(st, 12, p->ci.serial ? p->ci.serial : "");
	db_bind_int64(st, 13, p->ci.not_before);
	db_bind_int64(st, 14, p->ci.not_after);
	db_bind_text(st, 15, p->ci.fingerprint_sha256);
	db_bind_text(st, 16, order_id);
	db_bind_int64(st, 17, now);
	rc = db_exec_stmt(db, st);
	if (rc != CP_OK)
		goto out;
	st = db_stmt_keyed(db, upd, tenant_id, id);
	if (st) {
		db_bind_int64(st, 3, version);
		bind_time(st, 4, renew_after);
		db_bind_int64(st, 5, now);
	}
	rc = db_exec_one(db, st);
	/* Production deployments carrying it serve the new version (edge.c). */
	if (rc == CP_OK)
		rc = db_edge_feed_renewed(db, tenant_id, id);
	if (rc == CP_OK && version_out)
		*version_out = version;
out:
	free(aad);
	free(sealed);
	return rc;
}

cp_rc db_certificate_add_version(struct db *db, const struct crypto_keyring *ring,
				 const char *tenant_id, const char *id,
				 const struct db_cert_material *m, int *version_out)
{
	struct db_cert_prepared *p = NULL;
	cp_rc rc = db_cert_prepare(m, &p);

	assert(db && tenant_id && ring && m);
	if (rc == CP_OK)
		rc = db_certificate_add_prepared(db, ring, tenant_id, id, p, m->order_id,
						 m->renew_after, version_out);
	db_cert_prepared_free(p);
	return rc;
}

cp_rc db_certificate_render(struct db *db, const char *tenant_id, const char *id,
			    struct cp_buf *out)
{
	static const char sql[] =
		"SELECT " CERT_COLS CERT_FROM "WHERE c.tenant_id = ?2 AND c.id = ?3";
	struct db_stmt *st = db_stmt(db, sql);
	struct cp_jw w;
	cp_rc rc;

	assert(db && tenant_id && id && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 1, cp_now());
	db_bind_text(st, 2, tenant_id);
	db_bind_text(st, 3, id);
	rc = db_step_row(db, st);
	if (rc != CP_OK)
		return rc;
	cp_jw_init(&w, out);
	rc = cert_render_row(db, &w, st, 0);
	db_reset(st);
	return rc == CP_OK ? cp_jw_rc(&w) : rc;
}

cp_rc db_certificate_get(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	struct cp_buf b;
	cp_rc rc;

	assert(db && tenant_id && out);
	cp_buf_init(&b, DB_RENDER_MAX);
	rc = db_certificate_render(db, tenant_id, id, &b);
	if (rc == CP_OK)
		rc = db_json_from_buf(&b, out);
	cp_buf_free(&b);
	return rc;
}

/*
 * The list (issue 10: every filter an index range at a million rows). The
 * page is chosen by an inner query over the certificate rows and their
 * indexes alone (the derived status and the expiry read c.not_after, kept
 * by migration 012), in seq order (the cursor), LIMIT ?7; only the rows of
 * the page are then rendered. Parameters, the same in every statement:
 * ?1 now, ?2 tenant, ?3 cursor (seq), ?4 status, ?5 expiring within
 * (seconds), ?6 hostname, ?7 limit + 1; a NULL ?4/?5 switches its residual
 * condition off. The inner query that drives is picked by the filters:
 *   hostname: certificate_names (tenant, name) for the name and the
 *     wildcard one label up, the other filters checked on each row;
 *   expiring_within: certificates_tenant_expiry range, sorted by seq, when
 *     it holds fewer than LIST_RANGE_MAX rows after the cursor; otherwise
 *     the seq walk of certificates_tenant_seq (covering for the expiry),
 *     where at least LIST_RANGE_MAX of the tenant's rows match, so a page
 *     is found within limit * rows / LIST_RANGE_MAX index entries;
 *   status expired: certificates_tenant_expiry range below now, sorted;
 *   another status (stored as itself): certificates_tenant_status range,
 *     already in seq order;
 *   none: certificates_tenant_seq.
 */
#define LIST_RANGE_MAX 2000

#define LIST_STATUS LIFECYCLE_STATUS_SQL("c.status", "c.not_after")
/*
 * Portable SQL (issue 11): the optional filters cast their parameter at
 * every use (PostgreSQL infers no type from "?4 IS NULL"), and the index
 * each inner query must use is chosen by SQLite's documented unary "+"
 * (a term written +col cannot drive an index, nor an ORDER BY +col), not
 * by INDEXED BY, which PostgreSQL does not parse: where the expiry range
 * drives, seq is +c.seq; in the seq walk, the expiry is +c.not_after. The
 * hostname query keeps certificate_names as the outer loop by CROSS JOIN
 * (SQLite keeps a CROSS JOIN's order; the join condition is in WHERE, as
 * PostgreSQL takes no ON after CROSS JOIN). ?8 is the wildcard one label
 * up from ?6 (list_bind).
 */
/* clang-format off */
#define LIST_IF_STATUS " AND (CAST(?4 AS TEXT) IS NULL OR " LIST_STATUS " = CAST(?4 AS TEXT))"
#define LIST_IF_EXPIRING " AND (CAST(?5 AS BIGINT) IS NULL OR (c.not_after >= ?1 AND "     \
	"c.not_after <= ?1 + CAST(?5 AS BIGINT)))"
#define LIST_EXPIRING(col) " AND " col " >= ?1 AND " col " <= ?1 + CAST(?5 AS BIGINT)"
/* Each statement is a macro of (cmp, dir), the keyset comparison and the
 * ORDER BY direction, instantiated in both orders by DB_LIST_BOTH; seq is
 * c.seq, or +c.seq where another index drives. */
#define LIST_TAIL(seq, cmp, dir) " AND " seq " " cmp " ?3" LIST_IF_STATUS " ORDER BY " seq dir \
	" LIMIT ?7"
#define LIST_PAGE(inner, dir)                                                                  \
	"SELECT c.seq, " CERT_COLS " FROM (" inner ") s JOIN certificates c ON c.seq = s.seq "  \
	"LEFT JOIN certificate_versions v ON v.certificate_id = c.id AND v.version = c.version " \
	"ORDER BY c.seq" dir
#define LIST_BY_NAME(cmp, dir) LIST_PAGE(                                                       \
	"SELECT DISTINCT c.seq FROM certificate_names n CROSS JOIN certificates c "             \
	"WHERE c.seq = n.cert_seq AND n.tenant_id = ?2 AND n.name IN (?6, ?8) "                 \
	"AND n.cert_seq " cmp " ?3 AND c.tenant_id = ?2" LIST_IF_EXPIRING                       \
	LIST_TAIL("c.seq", cmp, dir), dir)
/* certificates_tenant_expiry */
#define LIST_BY_EXPIRY(cmp, dir)                                                          \
	LIST_PAGE("SELECT c.seq FROM certificates c WHERE c.tenant_id = ?2"                 \
		  LIST_EXPIRING("c.not_after") LIST_TAIL("+c.seq", cmp, dir), dir)
/* certificates_tenant_seq */
#define LIST_WALK_EXPIRY(cmp, dir)                                                     \
	LIST_PAGE("SELECT c.seq FROM certificates c WHERE c.tenant_id = ?2"              \
		  LIST_EXPIRING("+c.not_after") LIST_TAIL("c.seq", cmp, dir), dir)
/* certificates_tenant_expiry */
#define LIST_EXPIRED(cmp, dir)                                                            \
	LIST_PAGE("SELECT c.seq FROM certificates c "                                       \
		  "WHERE c.tenant_id = ?2 AND c.not_after < ?1" LIST_TAIL("+c.seq", cmp, dir), dir)
/* certificates_tenant_status */
#define LIST_BY_STATUS(cmp, dir)                                                          \
	LIST_PAGE("SELECT c.seq FROM certificates c "                                       \
		  "WHERE c.tenant_id = ?2 AND c.status = CAST(?4 AS TEXT)"                  \
		  LIST_TAIL("c.seq", cmp, dir), dir)
/* certificates_tenant_seq */
#define LIST_ALL(cmp, dir)                                                             \
	LIST_PAGE("SELECT c.seq FROM certificates c "                                    \
		  "WHERE c.tenant_id = ?2" LIST_TAIL("c.seq", cmp, dir), dir)
/* clang-format on */

static const char *const list_by_name[2] = DB_LIST_BOTH(LIST_BY_NAME);
static const char *const list_by_expiry[2] = DB_LIST_BOTH(LIST_BY_EXPIRY);
static const char *const list_walk_expiry[2] = DB_LIST_BOTH(LIST_WALK_EXPIRY);
static const char *const list_expired[2] = DB_LIST_BOTH(LIST_EXPIRED);
static const char *const list_by_status[2] = DB_LIST_BOTH(LIST_BY_STATUS);
static const char *const list_all[2] = DB_LIST_BOTH(LIST_ALL);

/* Bind the list parameters (see above) to st. */
static void list_bind(struct db_stmt *st, int64_t now, const char *tenant_id,
		      const struct db_cert_filter *f, struct db_page pg)
{
	/* The wildcard covering the hostname (NULL: none). */
	char wild[CP_HOSTNAME_MAX + 3];
	bool has_wild =
		f->hostname && cp_hostname_covering_wildcard(f->hostname, wild, sizeof(wild));
	db_bind_int64(st, 1, now);
	db_bind_text(st, 2, tenant_id);
	db_list_bind(st, 3, 7, pg);
	db_bind_text(st, 4, f->status);
	if (f->expiring_within >= 0)
		db_bind_int64(st, 5, f->expiring_within);
	else
		db_bind_null(st, 5);
	db_bind_text(st, 6, f->hostname);
	db_bind_text(st, 8, has_wild ? wild : NULL);
}

/* True when the tenant's expiry range after the cursor (in pg's order)
 * holds at least LIST_RANGE_MAX rows (an index-only count that stops
 * there). */
static cp_rc expiry_range_large(struct db *db, int64_t now, const char *tenant_id,
				const struct db_cert_filter *f, struct db_page pg, bool *large)
{
#define SQL(cmp, dir)                                                                              \
	"SELECT count(*) FROM (SELECT 1 FROM certificates c "                                      \
	"WHERE c.tenant_id = ?2" LIST_EXPIRING("c.not_after") " AND +c.seq " cmp " ?3 LIMIT ?7) s"
	static const char *const sql[2] = DB_LIST_BOTH(SQL);
#undef SQL
	struct db_stmt *st = db_stmt(db, sql[pg.desc ? 1 : 0]);
	struct db_page probe = { .after = pg.after, .limit = LIST_RANGE_MAX - 1, .desc = pg.desc };
	int64_t n = 0;
	cp_rc rc;

	if (!st)
		return CP_ERR_INTERNAL;
	list_bind(st, now, tenant_id, f, probe);
	rc = db_fetch_int64(db, st, &n);
	*large = n >= LIST_RANGE_MAX;
	return rc;
}

cp_rc db_certificate_list(struct db *db, const char *tenant_id, const struct db_cert_filter *f,
			  struct db_page pg, struct db_list *out)
{
	static const struct db_cert_filter none = { .status = NULL,
						    .expiring_within = -1,
						    .hostname = NULL };
	const char *const *sql = list_all;
	int64_t now = cp_now();
	struct db_stmt *st;
	bool large = false;
	cp_rc rc;

	assert(db && tenant_id && out);
	if (!f)
		f = &none;
	if (f->hostname) {
		sql = list_by_name;
	} else if (f->expiring_within >= 0) {
		rc = expiry_range_large(db, now, tenant_id, f, pg, &large);
		if (rc != CP_OK)
			return rc;
		sql = large ? list_walk_expiry : list_by_expiry;
	} else if (f->status) {
		sql = strcmp(f->status, lifecycle_status_name(LIFECYCLE_EXPIRED)) == 0
			      ? list_expired
			      : list_by_status;
	}
	st = db_stmt(db, sql[pg.desc ? 1 : 0]);
	if (!st)
		return CP_ERR_INTERNAL;
	list_bind(st, now, tenant_id, f, pg);
	return db_fetch_page_render(db, st, pg.limit, cert_render_listed, out);
}

cp_rc db_certificate_update(struct db *db, const char *tenant_id, const char *id, const char *name,
			    const char *auto_renew, json_t *metadata)
{
	static const char sql[] =
		"UPDATE certificates SET name = coalesce(?3, name), "
		"auto_renew = coalesce(?4, auto_renew), metadata = coalesce(?5, metadata), "
		"updated_at = ?6 WHERE tenant_id = ?1 AND id = ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);

	assert(db && tenant_id);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, name);
	db_bind_text(st, 4, auto_renew);
	db_bind_json(st, 5, metadata);
	db_bind_int64(st, 6, cp_now());
	return db_exec_one(db, st);
}

cp_rc db_certificate_delete(struct db *db, const char *tenant_id, const char *id)
{
	static const char attached[] =
		"SELECT 1 FROM properties WHERE certificate_id = ?2 AND tenant_id = ?1 LIMIT 1";
	static const char del[] = "DELETE FROM certificates WHERE tenant_id = ?1 AND id = ?2";
	cp_rc rc = db_certificate_exists(db, tenant_id, id);

	if (rc == CP_OK)
		rc = db_unused_or_conflict(db, attached, tenant_id, id);
	/* A production deployment may still carry it: off the edge (edge.c). */
	if (rc == CP_OK)
		rc = db_edge_feed_cert_deleted(db, tenant_id, id);
	return rc == CP_OK ? db_delete_scoped(db, del, tenant_id, id) : rc;
}

cp_rc db_certificate_versions(struct db *db, const char *tenant_id, const char *id,
			      struct db_page pg, struct db_list *out)
{
#define SQL(cmp, dir)                                                                              \
	"SELECT v.seq, " VERSION_COLS " FROM certificate_versions v "                              \
	"JOIN certificates c ON c.id = v.certificate_id "                                          \
	"WHERE v.tenant_id = ?1 AND v.certificate_id = ?2 AND c.tenant_id = ?1 "                   \
	"AND v.seq " cmp " ?3 ORDER BY v.seq" dir " LIMIT ?4"
	static const char *const sql[2] = DB_LIST_BOTH(SQL);
#undef SQL
	return db_fetch_page_render(db, db_stmt_page(db, sql, tenant_id, id, pg), pg.limit,
				    version_render_listed, out);
}

/* Copy column 0..1 text of the current version of certificate id; the row
 * exists but has no version -> CP_ERR_CONFLICT. */
static cp_rc current_version_row(struct db *db, const char *sql, const char *tenant_id,
				 const char *id, char **a, char **b)
{
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);
	cp_rc rc = db_step_row(db, st);

	*a = *b = NULL;
	if (rc != CP_OK)
		return rc;
	if (db_col_null(st, 0)) {
		rc = CP_ERR_CONFLICT;
	} else {
		*a = cp_strdup(db_col_text(st, 0));
		*b = cp_strdup(db_col_text(st, 1));
		rc = *a && *b ? CP_OK : CP_ERR_NOMEM;
		if (rc != CP_OK) {
			free(*a);
			free(*b);
			*a = *b = NULL;
		}
	}
	db_reset(st);
	return rc;
}

cp_rc db_certificate_pem(struct db *db, const char *tenant_id, const char *id, char **out)
{
	static const char sql[] =
		"SELECT v.cert_pem, v.chain_pem" CERT_FROM "WHERE c.tenant_id = ?1 AND c.id = ?2";
	char *leaf = NULL, *chain = NULL;
	size_t ll;
	cp_rc rc;

	assert(db && tenant_id && out);
	*out = NULL;
	rc = current_version_row(db, sql, tenant_id, id, &leaf, &chain);
	if (rc != CP_OK)
		return rc;
	/* PEM blocks must each start on a line of their own. */
	ll = strlen(leaf);
	*out = cp_aprintf("%s%s%s", leaf, ll && leaf[ll - 1] != '\n' ? "\n" : "", chain);
	free(leaf);
	free(chain);
	return *out ? CP_OK : CP_ERR_NOMEM;
}

cp_rc db_certificate_key_pem(struct db *db, const struct crypto_keyring *ring,
			     const char *tenant_id, const char *id, char **out)
{
	static const char sql[] =
		"SELECT v.private_key, v.id" CERT_FROM "WHERE c.tenant_id = ?1 AND c.id = ?2";
	char *sealed = NULL, *vid = NULL, *aad = NULL, *pt = NULL;
	size_t n = 0;
	cp_rc rc;

	assert(db && tenant_id && out && ring);
	*out = NULL;
	rc = current_version_row(db, sql, tenant_id, id, &sealed, &vid);
	if (rc != CP_OK)
		return rc;
	aad = cp_aprintf("certificate_versions:%s", vid);
	rc = aad ? crypto_open(ring, aad, sealed, &pt, &n) : CP_ERR_NOMEM;
	if (rc == CP_ERR_INVALID)
		rc = CP_ERR_CRYPTO; /* stored text that is not sealed is corruption */
	if (rc == CP_OK)
		*out = pt;
	free(sealed);
	free(vid);
	free(aad);
	return rc;
}

cp_rc db_certificate_set_status(struct db *db, const char *tenant_id, const char *id,
				const char *status)
{
	static const char sql[] = "UPDATE certificates SET status = ?3, updated_at = ?4 "
				  "WHERE tenant_id = ?1 AND id = ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);

	assert(db && tenant_id);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, status);
	db_bind_int64(st, 4, cp_now());
	/* The CHECK constraint turns a bad status into CP_ERR_CONFLICT. */
	return db_exec_one(db, st);
}

cp_rc db_certificate_set_renewal(struct db *db, const char *tenant_id, const char *id,
				 const struct db_cert_renewal *r)
{
	static const char sql[] =
		"UPDATE certificates SET renew_after = ?3, next_attempt_at = ?4, "
		"last_attempt_at = ?5, last_error = ?6, last_error_reason = ?7, failure_count = ?8, "
		"updated_at = ?9 WHERE tenant_id = ?1 AND id = ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);

	assert(db && tenant_id);
	if (!st)
		return CP_ERR_INTERNAL;
	bind_time(st, 3, r->renew_after);
	bind_time(st, 4, r->next_attempt_at);
	bind_time(st, 5, r->last_attempt_at);
	db_bind_text(st, 6, r->last_error);
	db_bind_text(st, 7, r->last_error_reason);
	db_bind_int64(st, 8, r->failure_count);
	db_bind_int64(st, 9, cp_now());
	return db_exec_one(db, st);
}

cp_rc db_certificate_set_cas(struct db *db, const char *tenant_id, const char *id,
			     const json_t *cas)
{
	static const char sql[] = "UPDATE certificates SET cas = ?3, updated_at = ?4 "
				  "WHERE tenant_id = ?1 AND id = ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);

	assert(db && tenant_id);
	if (!st)
		return CP_ERR_INTERNAL;
	if (json_array_size(cas) > 0)
		db_bind_json(st, 3, cas);
	else
		db_bind_null(st, 3);
	db_bind_int64(st, 4, cp_now());
	return db_exec_one(db, st);
}

cp_rc db_certificate_set_profile(struct db *db, const char *tenant_id, const char *id,
				 const char *profile)
{
	static const char sql[] = "UPDATE certificates SET profile = ?3, updated_at = ?4 "
				  "WHERE tenant_id = ?1 AND id = ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);

	assert(db && tenant_id);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, profile);
	db_bind_int64(st, 4, cp_now());
	return db_exec_one(db, st);
}

cp_rc db_certificate_order_plan(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	/* One row by primary key; the CA of the current version is the one
	 * of the order that stored it (NULL: uploaded or self-signed). */
	static const char sql[] =
		"SELECT c.profile, v.cert_pem, "
		"(SELECT o.ca FROM orders o WHERE o.id = v.order_id), "
		"coalesce(c.cas, (SELECT t.default_cas FROM tenants t "
		"WHERE t.id = c.tenant_id))" CERT_FROM "WHERE c.tenant_id = ?1 AND c.id = ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);
	cp_rc rc;

	assert(db && tenant_id && out);
	*out = NULL;
	rc = db_step_row(db, st);
	if (rc != CP_OK)
		return rc;
	/* s? writes null for a NULL column, as the API's object always had. */
	*out = json_pack("{s:s?, s:s?, s:s?}", "profile", db_col_text(st, 0), "cert_pem",
			 db_col_text(st, 1), "version_ca", db_col_text(st, 2));
	/* cas: the certificate's CA list, else its tenant's default (absent: none) */
	if (*out && db_col_text(st, 3))
		json_object_set_new(*out, "cas", json_loads(db_col_text(st, 3), 0, NULL));
	db_reset(st);
	return *out ? CP_OK : CP_ERR_NOMEM;
}
