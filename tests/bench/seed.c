/*
 * seed.c - bulk seeding of a certplane data directory for benchmarks
 * (issue 10), through the project's own storage layer:
 *
 *   seed --data-dir DIR --certificates N [--tenants T] [--due-fraction F]
 *        [--pool P] [--batch B]
 *   seed --data-dir DIR --measure [--repeat R]
 *
 * Seeding creates DIR if it is new, exactly as `certplane serve` would find
 * it: the database (db_open + db_migrate, the embedded migrations), the
 * master key ring (crypto_keyring_load creates it) and operator.token; then
 * adds N certificates spread over T tenants, each with a real version (a
 * real PEM certificate and its real private key, sealed with the master key
 * by db_certificate_add_version), a property (one hostname of its own,
 * CNAME target the tenant's edge hostname, renew automation on) and a
 * production deployment. `certplane serve` with that data_dir serves all of
 * it, and its scheduler sees the due ones.
 *
 * Speed: generating a key and certificate per row would dominate, so a
 * POOL of P real key+certificate pairs (P-256 leaves with SAN
 * pool-<j>.bench.certplane.test and a 90-day lifetime, issued by one RSA-2048
 * bench intermediate that is every version's chain) is made first and reused
 * across rows: rows share PEMs (and so SANs, serials and fingerprints) with
 * the other rows of their pool entry, while every row has its own
 * certificate, version row, sealed key (a fresh nonce each), property
 * hostname and deployment. Each entry is read once (db_cert_prepare: parse,
 * key check, PKCS#8) and stored per row with db_certificate_add_prepared,
 * which seals the key afresh for every version. The pool's not_before dates are spread so that
 * expiries spread over the 90 days; a fraction F of the rows (chosen by a
 * hash of the row number) takes entries with less than renew_before_days
 * left (due now by the lifecycle rule, lifecycle_renew_at), the others
 * entries that are not due. Rows are written in transactions of B rows.
 *
 * --measure times finding the due set as server/renew.c does (the
 * attention scan db_renewal_attention, limit 500, and the re-check of each
 * row by id, db_renewal_candidate) R times and prints the counts, and the
 * database's size.
 *
 * Exit status: 0 on success, 1 on an error (printed), 2 on bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "claims/claims.h"
#include "common/common.h"
#include "common/config.h"
#include "crypto/crypto.h"
#include "db/db.h"
#include "lifecycle/lifecycle.h"

#define SEED_MAX_CERTS 10000000L
#define SEED_MAX_TENANTS 100000L
#define SEED_MAX_POOL 4096L
#define POOL_LIFE (90 * 86400LL)

/* One pool entry: a real key and its self-signed certificate. */
struct pool_entry {
	char *cert_pem;
	char *key_pem;
	int64_t not_before, not_after;
	struct db_cert_prepared *prepared; /* read once (db_cert_prepare) */
};

struct opts {
	const char *data_dir;
	long certificates, tenants, pool, batch, repeat;
	double due_fraction;
	int measure;
};

static int usage(void)
{
	fprintf(stderr,
		"usage: seed --data-dir DIR --certificates N [--tenants T] [--due-fraction F]\n"
		"            [--pool P] [--batch B]\n"
		"       seed --data-dir DIR --measure [--repeat R]\n");
	return 2;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A long option's value in [lo, hi]; false on a bad one. */
static bool parse_long(const char *s, long lo, long hi, long *out)
{
	char *end = NULL;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || !end || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static bool parse_opts(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->tenants = 100;
	o->pool = 512;
	o->batch = 20000;
	o->repeat = 3;
	o->due_fraction = 0.01;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool ok = true;
		if (!strcmp(a, "--measure")) {
			o->measure = 1;
			continue;
		}
		if (!v)
			return false;
		i++;
		if (!strcmp(a, "--data-dir")) {
			o->data_dir = v;
		} else if (!strcmp(a, "--certificates")) {
			ok = parse_long(v, 1, SEED_MAX_CERTS, &o->certificates);
		} else if (!strcmp(a, "--tenants")) {
			ok = parse_long(v, 1, SEED_MAX_TENANTS, &o->tenants);
		} else if (!strcmp(a, "--pool")) {
			ok = parse_long(v, 2, SEED_MAX_POOL, &o->pool);
		} else if (!strcmp(a, "--batch")) {
			ok = parse_long(v, 1, 1000000, &o->batch);
		} else if (!strcmp(a, "--repeat")) {
			ok = parse_long(v, 1, 100, &o->repeat);
		} else if (!strcmp(a, "--due-fraction")) {
			char *end = NULL;
			o->due_fraction = strtod(v, &end);
			ok = end && !*end && o->due_fraction >= 0 && o->due_fraction <= 1;
		} else {
			ok = false;
		}
		if (!ok) {
			fprintf(stderr, "seed: bad %s %s\n", a, v);
			return false;
		}
	}
	if (!o->data_dir || (!o->measure && !o->certificates))
		return false;
	if (o->tenants > o->certificates && !o->measure)
		o->tenants = o->certificates;
	return true;
}

/* ---- the pool of real key + certificate pairs (OpenSSL directly: a test
 * tool may; the product goes through crypto/) ---- */

static char *bio_string(BIO *b)
{
	char *data = NULL, *s;
	long n = BIO_get_mem_data(b, &data);

	s = n > 0 ? malloc((size_t)n + 1) : NULL;
	if (s) {
		memcpy(s, data, (size_t)n);
		s[n] = '\0';
	}
	return s;
}

/* The issuer of the pool: an RSA-2048 intermediate, as Let's Encrypt's R1x
 * ones are, so that leaf and chain have realistic sizes. */
struct pool_issuer {
	EVP_PKEY *key;
	X509 *cert;
	char *pem;
};

static void pool_issuer_free(struct pool_issuer *is)
{
	EVP_PKEY_free(is->key);
	X509_free(is->cert);
	free(is->pem);
	memset(is, 0, sizeof(*is));
}

static bool pool_issuer_make(struct pool_issuer *is)
{
	BIO *b = BIO_new(BIO_s_mem());
	X509_NAME *name = NULL;
	bool ok = false;

	is->key = EVP_RSA_gen(2048);
	is->cert = X509_new();
	if (!b || !is->key || !is->cert)
		goto out;
	X509_set_version(is->cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(is->cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(is->cert), -86400L * 400);
	X509_gmtime_adj(X509_getm_notAfter(is->cert), 86400L * 400);
	X509_set_pubkey(is->cert, is->key);
	name = X509_get_subject_name(is->cert);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
				   (const unsigned char *)"certplane bench", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)"certplane bench R1", -1, -1, 0);
	X509_set_issuer_name(is->cert, name);
	if (!X509_sign(is->cert, is->key, EVP_sha256()) || !PEM_write_bio_X509(b, is->cert))
		goto out;
	is->pem = bio_string(b);
	ok = is->pem != NULL;
out:
	BIO_free(b);
	return ok;
}

/* Entry j: a P-256 key and a certificate for pool-<j>.bench.certplane.test
 * issued by is, valid from not_before for POOL_LIFE. */
static bool pool_make(const struct pool_issuer *is, int j, int64_t not_before, struct pool_entry *e)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name = NULL;
	X509_EXTENSION *ext = NULL;
	X509V3_CTX v3;
	BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
	char cn[96], san[128];
	bool ok = false;

	snprintf(cn, sizeof(cn), "pool-%d.bench.certplane.test", j);
	snprintf(san, sizeof(san), "DNS:%s", cn);
	if (!k || !x || !cb || !kb)
		goto out;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1000 + j);
	X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &(time_t){ (time_t)not_before });
	X509_time_adj_ex(X509_getm_notAfter(x), 0, 0,
			 &(time_t){ (time_t)(not_before + POOL_LIFE) });
	X509_set_pubkey(x, k);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(is->cert));
	X509V3_set_ctx(&v3, is->cert, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	if (!ext || !X509_add_ext(x, ext, -1) || !X509_sign(x, is->key, EVP_sha256()))
		goto out;
	if (!PEM_write_bio_X509(cb, x) ||
	    !PEM_write_bio_PrivateKey(kb, k, NULL, NULL, 0, NULL, NULL))
		goto out;
	e->cert_pem = bio_string(cb);
	e->key_pem = bio_string(kb);
	e->not_before = not_before;
	e->not_after = not_before + POOL_LIFE;
	ok = e->cert_pem && e->key_pem;
out:
	X509_EXTENSION_free(ext);
	X509_free(x);
	EVP_PKEY_free(k);
	BIO_free(cb);
	BIO_free(kb);
	return ok;
}

/* ---- data directory ---- */

/* operator.token as `certplane serve` creates it (main.c operator_token):
 * "cpo_" + base64url of 32 random bytes, mode 0600, kept if present. */
static cp_rc ensure_operator_token(const char *data_dir)
{
	char *path = cp_aprintf("%s/operator.token", data_dir), *secret = NULL, *tok = NULL;
	uint8_t raw[32];
	cp_rc rc = CP_ERR_NOMEM;

	if (!path)
		goto out;
	if (access(path, F_OK) == 0) {
		rc = CP_OK;
		goto out;
	}
	rc = cp_random(raw, sizeof(raw));
	if (rc != CP_OK)
		goto out;
	secret = cp_b64url(raw, sizeof(raw));
	tok = secret ? cp_aprintf("cpo_%s", secret) : NULL;
	rc = tok ? cp_file_write(path, tok, strlen(tok), 0600) : CP_ERR_NOMEM;
out:
	crypto_wipe_free(tok);
	crypto_wipe_free(secret);
	free(path);
	return rc;
}

static long file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? (long)sb.st_size : 0;
}

/* ---- seeding ---- */

/* Is row r due? A hash of r against the fraction, so due rows spread. */
static bool row_due(long r, double fraction)
{
	uint64_t h = (uint64_t)r * 0x9E3779B97F4A7C15ULL;

	h ^= h >> 29;
	return (double)(h % 1000000) < fraction * 1000000.0;
}

struct seed_ctx {
	struct db *db;
	const struct crypto_keyring *ring;
	const struct cp_config *cfg;
	struct pool_entry *pool;
	long n_due, n_ok; /* pool: [0, n_due) due, [n_due, n_due + n_ok) not due */
	char (*tenant_ids)[CP_UUID_LEN + 1];
	char (*edge_ids)[CP_UUID_LEN + 1];
	struct db_claim_policy claims; /* the server's claim timing (claims_policy) */
};

/* One row: certificate + version + property + production deployment. */
static cp_rc seed_row(struct seed_ctx *s, long r, long tenants, double fraction)
{
	long t = r % tenants;
	const struct pool_entry *e = row_due(r, fraction)
					     ? &s->pool[(r / tenants) % s->n_due]
					     : &s->pool[s->n_due + (r / tenants) % s->n_ok];
	const char *tenant = s->tenant_ids[t];
	char id[CP_UUID_LEN + 1], name[48], host[96];
	json_t *hostnames = NULL, *prop = NULL, *dep = NULL;
	struct db_hostname_taken taken = { 0 };
	cp_rc rc;

	snprintf(name, sizeof(name), "bench-%ld", r);
	snprintf(host, sizeof(host), "c%ld.t%ld.bench.certplane.test", r, t);
	hostnames = json_pack("[s]", host);
	if (!hostnames)
		return CP_ERR_NOMEM;
	struct db_cert_new row = {
		.name = name,
		.type = "server",
		.source = "upload",
		.status = "active",
		.auto_renew = "letsencrypt",
		.hostnames = hostnames,
	};
	/* An uploaded version: the bootstrap rule. */
	int64_t renew_after = lifecycle_renew_at(
		&(struct lifecycle_version){ e->not_before, e->not_after, LIFECYCLE_BOOTSTRAP },
		s->cfg->renew_before_days);

	rc = db_certificate_create(s->db, tenant, &row, id);
	if (rc == CP_OK)
		rc = db_certificate_add_prepared(s->db, s->ring, tenant, id, e->prepared, NULL,
						 renew_after, NULL);
	if (rc == CP_OK) {
		struct db_property_in in = {
			.name = name,
			.hostnames = hostnames,
			.edge_hostname_id = s->edge_ids[t],
			.certificate_id = id,
			.renew_automation = true,
			.claim_ttl_seconds = s->claims.ttl_seconds,
		};
		rc = db_property_create(s->db, tenant, &in, &taken, &prop);
	}
	/* The hostname's claim verified by its CNAME, as a production CDN's
	 * hostnames are (a pending one would be released after its TTL and
	 * stop the renewals); re-checked a week from now. */
	if (rc == CP_OK)
		rc = db_claim_record(s->db, tenant, host,
				     &(struct db_claim_check){ .outcome = DB_CLAIM_VERIFIED,
							       .method = "cname",
							       .detail = "seeded" },
				     &s->claims, NULL);
	if (rc == CP_OK)
		rc = db_deployment_create(s->db, tenant,
					  json_string_value(json_object_get(prop, "id")),
					  "production", &dep);
	json_decref(hostnames);
	json_decref(prop);
	json_decref(dep);
	return rc;
}

/* Tenants (with one edge hostname each) named bench-<i>; existing ones of a
 * previous run are not reused: each run adds its own. */
static cp_rc seed_tenants(struct seed_ctx *s, long tenants)
{
	char suffix[9];
	uint8_t b[4];
	cp_rc rc = cp_random(b, sizeof(b));

	if (rc != CP_OK)
		return rc;
	cp_hex(b, sizeof(b), suffix);
	rc = db_begin(s->db);
	for (long t = 0; t < tenants && rc == CP_OK; t++) {
		json_t *tj = NULL, *ej = NULL;
		char name[64], label[64], host[160];
		snprintf(name, sizeof(name), "bench-%s-%ld", suffix, t);
		snprintf(label, sizeof(label), "bench-%s-%ld", suffix, t);
		snprintf(host, sizeof(host), "%s.%s", label, s->cfg->edge_zone);
		rc = db_tenant_create(s->db, name, &tj);
		if (rc == CP_OK) {
			snprintf(s->tenant_ids[t], CP_UUID_LEN + 1, "%s",
				 json_string_value(json_object_get(tj, "id")));
			rc = db_edge_hostname_create(s->db, s->tenant_ids[t], label, host, &ej);
		}
		if (rc == CP_OK)
			snprintf(s->edge_ids[t], CP_UUID_LEN + 1, "%s",
				 json_string_value(json_object_get(ej, "id")));
		json_decref(tj);
		json_decref(ej);
	}
	if (rc == CP_OK)
		rc = db_commit(s->db);
	else
		db_rollback(s->db);
	return rc;
}

static int run_seed(const struct opts *o, struct db *db, const struct crypto_keyring *ring,
		    const struct cp_config *cfg)
{
	struct seed_ctx s = { .db = db, .ring = ring, .cfg = cfg, .claims = claims_policy(cfg) };
	struct pool_issuer issuer = { 0 };
	int64_t now = cp_now();
	double t0 = now_s(), t_pool, t_rows;
	int status = 1;
	long r = 0;
	cp_rc rc = CP_OK;

	s.pool = calloc((size_t)o->pool, sizeof(*s.pool));
	s.tenant_ids = calloc((size_t)o->tenants, sizeof(*s.tenant_ids));
	s.edge_ids = calloc((size_t)o->tenants, sizeof(*s.edge_ids));
	if (!s.pool || !s.tenant_ids || !s.edge_ids || !pool_issuer_make(&issuer))
		goto out;
	/* Due entries: 1..24 days left (inside renew_before_days = 25 by
	 * default); the others 26..89 days left. Clamped to the config. */
	s.n_due = o->pool / 4 > 0 ? o->pool / 4 : 1;
	s.n_ok = o->pool - s.n_due;
	for (long j = 0; j < o->pool; j++) {
		int64_t left;
		if (j < s.n_due)
			left = 86400 +
			       (j * ((int64_t)(cfg->renew_before_days - 1) * 86400 - 86400)) /
				       s.n_due;
		else
			left = (int64_t)(cfg->renew_before_days + 1) * 86400 +
			       ((j - s.n_due) *
				(POOL_LIFE - (cfg->renew_before_days + 2) * 86400LL)) /
				       s.n_ok;
		if (!pool_make(&issuer, (int)j, now + left - POOL_LIFE, &s.pool[j]) ||
		    db_cert_prepare(&(struct db_cert_material){ .cert_pem = s.pool[j].cert_pem,
								.chain_pem = issuer.pem,
								.key_pem = s.pool[j].key_pem },
				    &s.pool[j].prepared) != CP_OK) {
			fprintf(stderr, "seed: cannot make pool entry %ld\n", j);
			goto out;
		}
	}
	t_pool = now_s() - t0;
	fprintf(stderr, "seed: pool of %ld key+certificate pairs in %.2f s\n", o->pool, t_pool);
	rc = seed_tenants(&s, o->tenants);
	if (rc != CP_OK) {
		fprintf(stderr, "seed: tenants: %s\n", cp_rc_str(rc));
		goto out;
	}
	t0 = now_s();
	while (r < o->certificates && rc == CP_OK) {
		long end = r + o->batch < o->certificates ? r + o->batch : o->certificates;
		rc = db_begin(db);
		for (; r < end && rc == CP_OK; r++)
			rc = seed_row(&s, r, o->tenants, o->due_fraction);
		if (rc == CP_OK)
			rc = db_commit(db);
		else
			db_rollback(db);
		if (rc == CP_OK && (r % 100000 == 0 || r == o->certificates))
			fprintf(stderr, "seed: %ld certificates, %.0f/s\n", r,
				(double)r / (now_s() - t0));
	}
	if (rc != CP_OK) {
		fprintf(stderr, "seed: row %ld: %s\n", r, cp_rc_str(rc));
		goto out;
	}
	t_rows = now_s() - t0;
	printf("seeded %ld certificates (%ld tenants, due fraction %.3f, pool %ld) in %.1f s: "
	       "%.0f certificates/s\n",
	       o->certificates, o->tenants, o->due_fraction, o->pool, t_rows,
	       (double)o->certificates / t_rows);
	status = 0;
out:
	for (long j = 0; s.pool && j < o->pool; j++) {
		free(s.pool[j].cert_pem);
		crypto_wipe_free(s.pool[j].key_pem);
		db_cert_prepared_free(s.pool[j].prepared);
	}
	free(s.pool);
	pool_issuer_free(&issuer);
	free(s.tenant_ids);
	free(s.edge_ids);
	return status;
}

/* Time finding the due set as server/renew.c does it: the attention scan
 * (db_renewal_attention, limit 500) and the re-check of each row by id
 * (db_renewal_candidate). */
static int run_measure(const struct opts *o, struct db *db, const struct cp_config *cfg)
{
	long db_bytes = file_size(cfg->database);
	char *wal = cp_aprintf("%s-wal", cfg->database);

	printf("database %s: %ld bytes (+ WAL %ld)\n", cfg->database, db_bytes,
	       wal ? file_size(wal) : 0);
	free(wal);
	for (long i = 0; i < o->repeat; i++) {
		json_t *list = NULL, *row, *c = NULL;
		double t0 = now_s(), t1;
		cp_rc rc = db_renewal_attention(db, INT64_MIN, cp_now(), 500, &list);
		size_t ok = 0, k;

		t1 = now_s();
		json_array_foreach(list, k, row)
		{
			if (db_renewal_candidate(db, json_string_value(json_object_get(row, "id")),
						 &c) == CP_OK)
				ok++;
			json_decref(c);
			c = NULL;
		}
		printf("due set (limit 500): %s, %zu due rows: scan %.2f ms, scan + re-check "
		       "by id %.2f ms (%zu eligible)\n",
		       cp_rc_str(rc), json_array_size(list), (t1 - t0) * 1e3, (now_s() - t0) * 1e3,
		       ok);
		json_decref(list);
		if (rc != CP_OK)
			return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct cp_config *cfg = NULL;
	struct crypto_keyring *ring = NULL;
	struct db *db = NULL;
	char *err = NULL;
	int status = 1;

	if (!parse_opts(argc, argv, &o))
		return usage();
	/* The same configuration `certplane serve` reads (CERTPLANE_* env),
	 * with data_dir from the command line. */
	if (setenv("CERTPLANE_DATA_DIR", o.data_dir, 1) != 0 ||
	    cp_config_load(NULL, &cfg, &err) != CP_OK) {
		fprintf(stderr, "seed: configuration: %s\n", err ? err : "invalid");
		goto out;
	}
	cp_log_set_level(CP_LOG_WARN);
	if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "seed: cannot create %s\n", cfg->data_dir);
		goto out;
	}
	if (db_open(cfg->database, &db) != CP_OK || db_migrate(db, NULL, NULL) != CP_OK) {
		fprintf(stderr, "seed: cannot open or migrate %s\n", cfg->database);
		goto out;
	}
	if (o.measure) {
		status = run_measure(&o, db, cfg);
		goto out;
	}
	if (crypto_keyring_load(cfg->data_dir, cfg->master_key[0] ? cfg->master_key : NULL,
				&ring) != CP_OK ||
	    ensure_operator_token(cfg->data_dir) != CP_OK) {
		fprintf(stderr, "seed: cannot prepare the key ring or the operator token in %s\n",
			cfg->data_dir);
		goto out;
	}
	status = run_seed(&o, db, ring, cfg);
out:
	db_close(db);
	crypto_keyring_free(ring);
	cp_config_free(cfg);
	free(err);
	return status;
}
