/*
 * config.c - certplane's settings. One table names every key, its type,
 * where it lives in struct cp_config and its default, so that the JSON file,
 * the CERTPLANE_<KEY> environment and `certplane check-config` all agree.
 */
#include "common/config.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum key_type { K_STR, K_INT, K_BOOL, K_LIST, K_OBJ };

struct key_def {
	const char *name; /* JSON key; env var is CERTPLANE_<NAME upper-cased> */
	enum key_type type;
	size_t offset;	 /* offsetof(struct cp_config, field) */
	const char *def; /* default (strings; ints as text; lists/objects JSON) */
	int min, max;	 /* K_INT range */
	bool secret;	 /* redacted by cp_config_json */
};

/* The built portal next to the source (CMake sets it); "" = no portal. */
#ifndef CP_PORTAL_DIR_DEFAULT
#define CP_PORTAL_DIR_DEFAULT ""
#endif
#define OFF(f) offsetof(struct cp_config, f)
static const struct key_def keys[] = {
	{ "listen", K_STR, OFF(listen), "127.0.0.1:8080", 0, 0, false },
	{ "http01_listen", K_STR, OFF(http01_listen), "0.0.0.0:80", 0, 0, false },
	{ "data_dir", K_STR, OFF(data_dir), "./data", 0, 0, false },
	{ "database", K_STR, OFF(database), "", 0, 0, false },
	{ "operator_token", K_STR, OFF(operator_token), "", 0, 0, true },
	{ "master_key", K_STR, OFF(master_key), "", 0, 0, true },
	{ "edge_zone", K_STR, OFF(edge_zone), "edge.certplane.localhost", 0, 0, false },
	{ "acme_directory_url", K_STR, OFF(acme_directory_url),
	  "https://acme-v02.api.letsencrypt.org/directory", 0, 0, false },
	{ "acme_ca_bundle", K_STR, OFF(acme_ca_bundle), "", 0, 0, false },
	{ "acme_contact_email", K_STR, OFF(acme_contact_email), "", 0, 0, false },
	{ "cas", K_OBJ, OFF(cas), "{}", 0, 0, false },
	{ "dns_resolver", K_STR, OFF(dns_resolver), "", 0, 0, false },
	{ "edge_check_address", K_STR, OFF(edge_check_address), "", 0, 0, false },
	{ "renew_before_days", K_INT, OFF(renew_before_days), "25", 1, 365, false },
	{ "scheduler_interval_seconds", K_INT, OFF(scheduler_interval_seconds), "300", 1, 3600,
	  false },
	{ "workers", K_INT, OFF(workers), "4", 1, 256, false },
	{ "http_threads", K_INT, OFF(http_threads), "4", 1, 256, false },
	{ "dns01_timeout_seconds", K_INT, OFF(dns01_timeout_seconds), "1800", 1, 86400 * 7, false },
	{ "order_deadline_hours", K_INT, OFF(order_deadline_hours), "24", 1, 24 * 30, false },
	{ "webhook_allow_private_networks", K_BOOL, OFF(webhook_allow_private_networks), "false", 0,
	  0, false },
	{ "cors_origins", K_LIST, OFF(cors_origins), "[]", 0, 0, false },
	{ "max_body_bytes", K_INT, OFF(max_body_bytes), "1048576", 1024, 64 << 20, false },
	{ "rate_limit_per_second", K_INT, OFF(rate_limit_per_second), "200", 0, 1000000, false },
	{ "rate_limit_burst", K_INT, OFF(rate_limit_burst), "400", 1, 1000000, false },
	{ "webhook_timeout_seconds", K_INT, OFF(webhook_timeout_seconds), "15", 1, 120, false },
	{ "webhook_dns_timeout_ms", K_INT, OFF(webhook_dns_timeout_ms), "5000", 100, 60000, false },
	{ "webhook_retry_schedule", K_STR, OFF(webhook_retry_schedule),
	  "[0,5,300,1800,7200,18000,36000,36000,36000,36000,36000,36000,36000]", 0, 0, false },
	{ "renew_backoff_seconds", K_STR, OFF(renew_backoff_seconds), "[60,600,6000,86400]", 0, 0,
	  false },
	{ "portal_dir", K_STR, OFF(portal_dir), CP_PORTAL_DIR_DEFAULT, 0, 0, false },
	{ "log_level", K_STR, OFF(log_level), "info", 0, 0, false },
	{ "metrics_public", K_BOOL, OFF(metrics_public), "false", 0, 0, false },
	{ "read_cache", K_BOOL, OFF(read_cache), "true", 0, 0, false },
	{ "job_lease_seconds", K_INT, OFF(job_lease_seconds), "120", 12, 3600, false },
	{ "ca_orders_per_hour", K_INT, OFF(ca_orders_per_hour), "18000", 1, 3600000, false },
	{ "ca_order_burst", K_INT, OFF(ca_order_burst), "50", 1, 100000, false },
	{ "job_retention_days", K_INT, OFF(job_retention_days), "7", 1, 3650, false },
	{ "hostname_claim_ttl_days", K_INT, OFF(hostname_claim_ttl_days), "7", 1, 365, false },
	{ "hostname_claim_ttl_seconds", K_INT, OFF(hostname_claim_ttl_seconds), "0", 0, 86400 * 365,
	  false },
	{ "hostname_recheck_seconds", K_INT, OFF(hostname_recheck_seconds), "300", 1, 86400,
	  false },
	{ "hostname_verified_recheck_seconds", K_INT, OFF(hostname_verified_recheck_seconds),
	  "86400", 1, 86400 * 30, false },
	{ "http_client_connection_limit", K_INT, OFF(http_client_connection_limit), "64", 1, 4096,
	  false },
	{ "http_request_deadline_seconds", K_INT, OFF(http_request_deadline_seconds), "10", 1, 600,
	  false },
	{ "http_idle_timeout_seconds", K_INT, OFF(http_idle_timeout_seconds), "5", 1, 600, false },
	{ "net_threads", K_INT, OFF(net_threads), "8", 1, 256, false },
	{ "net_tenant_concurrency", K_INT, OFF(net_tenant_concurrency), "2", 1, 256, false },
	{ "event_streams_max", K_INT, OFF(event_streams_max), "256", 1, 4096, false },
	{ "event_stream_keepalive_seconds", K_INT, OFF(event_stream_keepalive_seconds), "15", 1,
	  300, false },
	{ "webhook_workers", K_INT, OFF(webhook_workers), "4", 1, 256, false },
	{ "general_workers", K_INT, OFF(general_workers), "2", 1, 256, false },
	{ "tenant_max_running_jobs", K_INT, OFF(tenant_max_running_jobs), "2", 1, 256, false },
	{ "quota_properties", K_INT, OFF(quota_properties), "1000", 0, 1000000000, false },
	{ "quota_hostnames", K_INT, OFF(quota_hostnames), "5000", 0, 1000000000, false },
	{ "quota_certificates", K_INT, OFF(quota_certificates), "1000", 0, 1000000000, false },
	{ "quota_orders_in_flight", K_INT, OFF(quota_orders_in_flight), "50", 0, 1000000000,
	  false },
	{ "quota_webhooks", K_INT, OFF(quota_webhooks), "20", 0, 1000000000, false },
	{ "quota_edge_hostnames", K_INT, OFF(quota_edge_hostnames), "100", 0, 1000000000, false },
	/* DCV delegation (dcv/dcv.h) */
	{ "dcv_zone", K_STR, OFF(dcv_zone), "", 0, 0, false },
	{ "dcv_server", K_STR, OFF(dcv_server), "", 0, 0, false },
	{ "dcv_tsig_name", K_STR, OFF(dcv_tsig_name), "", 0, 0, false },
	{ "dcv_tsig_algorithm", K_STR, OFF(dcv_tsig_algorithm), "hmac-sha256", 0, 0, false },
	{ "dcv_tsig_secret", K_STR, OFF(dcv_tsig_secret), "", 0, 0, true },
	{ "dcv_tsig_secret_file", K_STR, OFF(dcv_tsig_secret_file), "", 0, 0, false },
	{ "dcv_label_secret", K_STR, OFF(dcv_label_secret), "", 0, 0, true },
	/* CAA (RFC 8659): the default CA's issuer domain names; cas.<name>.caa_identities */
	{ "acme_caa_identities", K_LIST, OFF(acme_caa_identities), "[\"letsencrypt.org\"]", 0, 0,
	  false },
	/* notification channels (issue 14): the SMTP relay every email goes
	 * through (STARTTLS required on smtp://, TLS verified) and the
	 * per-tenant count of email and Slack channels. */
	{ "smtp_url", K_STR, OFF(smtp_url), "", 0, 0, false },
	{ "smtp_from", K_STR, OFF(smtp_from), "", 0, 0, false },
	{ "smtp_username", K_STR, OFF(smtp_username), "", 0, 0, false },
	{ "smtp_password", K_STR, OFF(smtp_password), "", 0, 0, true },
	{ "smtp_ca_bundle", K_STR, OFF(smtp_ca_bundle), "", 0, 0, false },
	{ "quota_notification_channels", K_INT, OFF(quota_notification_channels), "10", 0,
	  1000000000, false },
};
#undef OFF

static cp_rc cas_check(const struct cp_config *cfg, char **err);

static const struct key_def *key_find(const char *name)
{
	for (size_t i = 0; i < CP_ARRAY_LEN(keys); i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* Store v (already type-checked JSON) into the field of k. */
static cp_rc key_store(struct cp_config *cfg, const struct key_def *k, json_t *v, char **err)
{
	char *base = (char *)cfg + k->offset;

	switch (k->type) {
	case K_STR:
		if (!json_is_string(v))
			goto bad;
		free(*(char **)base);
		*(char **)base = cp_strdup(json_string_value(v));
		return *(char **)base ? CP_OK : CP_ERR_NOMEM;
	case K_INT:
		if (!json_is_integer(v) || json_integer_value(v) < k->min ||
		    json_integer_value(v) > k->max) {
			*err = cp_aprintf("%s: must be an integer from %d to %d", k->name, k->min,
					  k->max);
			return CP_ERR_INVALID;
		}
		*(int *)base = (int)json_integer_value(v);
		return CP_OK;
	case K_BOOL:
		if (!json_is_boolean(v))
			goto bad;
		*(bool *)base = json_is_true(v);
		return CP_OK;
	case K_LIST:
		if (!json_is_array(v))
			goto bad;
		for (size_t i = 0; i < json_array_size(v); i++)
			if (!json_is_string(json_array_get(v, i)))
				goto bad;
		json_decref(*(json_t **)base);
		*(json_t **)base = json_incref(v);
		return CP_OK;
	case K_OBJ:
		if (!json_is_object(v))
			goto bad;
		json_decref(*(json_t **)base);
		*(json_t **)base = json_incref(v);
		return CP_OK;
	}
bad:
	*err = cp_aprintf("%s: wrong type", k->name);
	return CP_ERR_INVALID;
}

/* Turn an environment string into JSON of the key's type. New reference. */
static json_t *env_value(const struct key_def *k, const char *s)
{
	json_t *v;

	switch (k->type) {
	case K_STR:
		return json_string(s);
	case K_INT: {
		char *end;
		long long n = strtoll(s, &end, 10);
		if (!*s || *end)
			return json_string(s); /* keeps the type error for key_store */
		return json_integer(n);
	}
	case K_BOOL:
		if (!strcmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes"))
			return json_true();
		if (!strcmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "no"))
			return json_false();
		return json_string(s);
	case K_LIST: {
		const char *p = s;
		if (*s == '[')
			return json_loads(s, 0, NULL);
		v = json_array();
		while (*p) {
			const char *c = strchr(p, ',');
			size_t n = c ? (size_t)(c - p) : strlen(p);
			while (n && isspace((unsigned char)*p)) {
				p++;
				n--;
			}
			while (n && isspace((unsigned char)p[n - 1]))
				n--;
			if (n)
				json_array_append_new(v, json_stringn(p, n));
			p += c ? (size_t)(c - p) + 1 : strlen(p);
		}
		return v;
	}
	case K_OBJ:
		return json_loads(s, 0, NULL);
	}
	return NULL;
}

/* Bytes of a base64 TSIG or label secret, at most. */
#define DCV_SECRET_MAX 4096

/* True if s is non-empty standard base64 (the value itself never leaves here). */
static bool b64_ok(const char *s)
{
	uint8_t *raw = NULL;
	size_t n = 0;
	bool ok = cp_b64_decode(s, &raw, &n) == CP_OK && n > 0;

	if (raw)
		memset(raw, 0, n);
	free(raw);
	return ok;
}

/*
 * The DCV delegation settings, checked once dcv_zone is set: the secret
 * read from dcv_tsig_secret_file when not given inline (trailing white
 * space dropped; the file's content is never put in a message), every
 * other key present, the secrets base64, a known algorithm. CP_ERR_INVALID with *err naming
 * the key.
 */
static cp_rc dcv_settings(struct cp_config *cfg, char **err)
{
	static const char *const algs[] = { "hmac-sha256", "hmac-sha384", "hmac-sha512", NULL };
	char *file = NULL;
	size_t len = 0, i;
	cp_rc rc;

	if (!cfg->dcv_zone[0])
		return CP_OK;
	if (!cfg->dcv_tsig_secret[0] && cfg->dcv_tsig_secret_file[0]) {
		rc = cp_file_read(cfg->dcv_tsig_secret_file, DCV_SECRET_MAX, &file, &len);
		if (rc != CP_OK) {
			*err = cp_aprintf("dcv_tsig_secret_file: cannot read %s (%s)",
					  cfg->dcv_tsig_secret_file, cp_rc_str(rc));
			return CP_ERR_INVALID;
		}
		while (len && isspace((unsigned char)file[len - 1]))
			file[--len] = '\0';
		free(cfg->dcv_tsig_secret);
		cfg->dcv_tsig_secret = file;
	}
	if (!cfg->dcv_server[0] || !cfg->dcv_tsig_name[0] || !cfg->dcv_tsig_secret[0]) {
		*err = cp_aprintf("dcv_zone is set: dcv_server, dcv_tsig_name and dcv_tsig_secret "
				  "(or dcv_tsig_secret_file) are required too");
		return CP_ERR_INVALID;
	}
	if (!b64_ok(cfg->dcv_tsig_secret) ||
	    (cfg->dcv_label_secret[0] && !b64_ok(cfg->dcv_label_secret))) {
		*err = cp_aprintf("%s: must be base64", b64_ok(cfg->dcv_tsig_secret)
								? "dcv_label_secret"
								: "dcv_tsig_secret");
		return CP_ERR_INVALID;
	}
	for (i = 0; algs[i] && strcmp(algs[i], cfg->dcv_tsig_algorithm) != 0; i++)
		;
	if (!algs[i]) {
		*err = cp_aprintf("dcv_tsig_algorithm: must be hmac-sha256, hmac-sha384 or "
				  "hmac-sha512");
		return CP_ERR_INVALID;
	}
	return CP_OK;
}

void cp_config_free(struct cp_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < CP_ARRAY_LEN(keys); i++) {
		char *base = (char *)cfg + keys[i].offset;
		if (keys[i].type == K_STR)
			free(*(char **)base);
		else if (keys[i].type == K_LIST || keys[i].type == K_OBJ)
			json_decref(*(json_t **)base);
	}
	free(cfg);
}

cp_rc cp_config_load(const char *path, struct cp_config **out, char **err)
{
	struct cp_config *cfg = calloc(1, sizeof(*cfg));
	json_t *file = NULL, *v;
	json_error_t jerr;
	const char *key;
	cp_rc rc = CP_ERR_NOMEM;

	assert(out && err);
	*err = NULL;
	if (!cfg)
		goto out;
	for (size_t i = 0; i < CP_ARRAY_LEN(keys); i++) {
		const struct key_def *k = &keys[i];
		v = k->type == K_STR ? json_string(k->def)
				     : json_loads(k->def, JSON_DECODE_ANY, NULL);
		rc = key_store(cfg, k, v, err);
		json_decref(v);
		if (rc != CP_OK)
			goto out;
	}
	if (path) {
		file = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
		if (!json_is_object(file)) {
			*err = cp_aprintf("%s:%d: %s", path, jerr.line,
					  file ? "top level must be an object" : jerr.text);
			rc = CP_ERR_INVALID;
			goto out;
		}
		json_object_foreach(file, key, v)
		{
			const struct key_def *k = key_find(key);
			if (!k) {
				*err = cp_aprintf("%s: unknown key \"%s\"", path, key);
				rc = CP_ERR_INVALID;
				goto out;
			}
			rc = key_store(cfg, k, v, err);
			if (rc != CP_OK)
				goto out;
		}
	}
	for (size_t i = 0; i < CP_ARRAY_LEN(keys); i++) {
		char env[96];
		const char *s;
		size_t j;
		snprintf(env, sizeof(env), "CERTPLANE_%s", keys[i].name);
		for (j = 10; env[j]; j++)
			env[j] = (char)toupper((unsigned char)env[j]);
		s = getenv(env);
		if (!s)
			continue;
		v = env_value(&keys[i], s);
		if (!v) {
			*err = cp_aprintf("%s: not valid JSON", env);
			rc = CP_ERR_INVALID;
			goto out;
		}
		rc = key_store(cfg, &keys[i], v, err);
		json_decref(v);
		if (rc != CP_OK)
			goto out;
	}
	if (!cfg->database[0]) {
		free(cfg->database);
		cfg->database = cp_aprintf("%s/certplane.db", cfg->data_dir);
	}
	if (strcmp(cfg->log_level, "debug") && strcmp(cfg->log_level, "info") &&
	    strcmp(cfg->log_level, "warn") && strcmp(cfg->log_level, "error")) {
		*err = cp_aprintf("log_level: must be debug, info, warn or error");
		rc = CP_ERR_INVALID;
		goto out;
	}
	{
		int64_t sched[CP_SCHEDULE_MAX];
		size_t n;
		if (cp_config_schedule(cfg->webhook_retry_schedule, sched, CP_SCHEDULE_MAX, &n) !=
		    CP_OK) {
			*err = cp_aprintf("webhook_retry_schedule: must be a list of 1 to %d "
					  "integers from 0 to 604800 (seconds)",
					  CP_SCHEDULE_MAX);
			rc = CP_ERR_INVALID;
			goto out;
		}
	}
	{
		int64_t sched[CP_SCHEDULE_MAX];
		size_t n;
		if (cp_config_schedule(cfg->renew_backoff_seconds, sched, CP_SCHEDULE_MAX, &n) !=
		    CP_OK) {
			*err = cp_aprintf("renew_backoff_seconds: must be a list of 1 to %d "
					  "integers from 0 to 604800 (seconds)",
					  CP_SCHEDULE_MAX);
			rc = CP_ERR_INVALID;
			goto out;
		}
	}
	if ((rc = dcv_settings(cfg, err)) != CP_OK || (rc = cas_check(cfg, err)) != CP_OK)
		goto out;
	*out = cfg;
	cfg = NULL;
	rc = CP_OK;
out:
	if (rc == CP_ERR_NOMEM && !*err)
		*err = cp_aprintf("out of memory");
	json_decref(file);
	cp_config_free(cfg);
	return rc;
}

/* A string setting as shown, when it is not a secret by its key: one that
 * may carry a password anyway (a URL's user:secret@, as in database or
 * smtp_url, or a conninfo's password=) is shown redacted whole, since
 * parsing it back out is where leaks hide; anything else (a path, a URL
 * without a password) is shown. */
static json_t *str_shown(const char *v)
{
	const char *scheme = v ? strstr(v, "://") : NULL;
	const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
	bool userinfo_pw = at && memchr(scheme + 3, ':', (size_t)(at - scheme - 3));

	if (!v)
		return NULL;
	return json_string(userinfo_pw || strstr(v, "password") ? "<redacted>" : v);
}

/*
 * The CA entries beyond directory_url and ca_bundle: caa_identities a list
 * of domain names (strings), eab_kid and eab_hmac_key (base64url) strings,
 * both or neither; acme_caa_identities a list of strings.
 */
static cp_rc cas_check(const struct cp_config *cfg, char **err)
{
	const char *name;
	json_t *entry, *v;
	size_t i;

	json_array_foreach(cfg->acme_caa_identities, i, v) if (!json_is_string(v))
	{
		*err = cp_aprintf("acme_caa_identities: must be a list of domain names");
		return CP_ERR_INVALID;
	}
	json_object_foreach(cfg->cas, name, entry)
	{
		json_t *ids = json_object_get(entry, "caa_identities");
		json_t *kid = json_object_get(entry, "eab_kid"),
		       *hmac = json_object_get(entry, "eab_hmac_key");

		if (!json_is_object(entry)) {
			*err = cp_aprintf("cas.%s: must be an object", name);
			return CP_ERR_INVALID;
		}
		if (ids && !json_is_array(ids)) {
			*err = cp_aprintf("cas.%s.caa_identities: must be a list of domain names",
					  name);
			return CP_ERR_INVALID;
		}
		json_array_foreach(ids, i, v) if (!json_is_string(v))
		{
			*err = cp_aprintf("cas.%s.caa_identities: must be a list of domain names",
					  name);
			return CP_ERR_INVALID;
		}
		if ((kid && !json_is_string(kid)) || (hmac && !json_is_string(hmac)) ||
		    !kid != !hmac) {
			*err = cp_aprintf(
				"cas.%s: eab_kid and eab_hmac_key must be strings, both or neither",
				name);
			return CP_ERR_INVALID;
		}
	}
	return CP_OK;
}

/* cas as shown: every eab_hmac_key redacted (new reference). */
static json_t *cas_shown(const json_t *cas)
{
	json_t *o = json_deep_copy(cas), *entry;
	const char *name;

	json_object_foreach(o, name, entry) if (json_object_get(entry, "eab_hmac_key"))
		json_object_set_new(entry, "eab_hmac_key", json_string("<redacted>"));
	return o;
}

json_t *cp_config_json(const struct cp_config *cfg)
{
	json_t *o = json_object();

	assert(cfg);
	for (size_t i = 0; i < CP_ARRAY_LEN(keys); i++) {
		const struct key_def *k = &keys[i];
		const char *base = (const char *)cfg + k->offset;
		json_t *v = NULL;
		switch (k->type) {
		case K_STR:
			if (k->secret)
				v = json_string(**(char *const *)base ? "<redacted>" : "");
			else
				v = str_shown(*(char *const *)base);
			break;
		case K_INT:
			v = json_integer(*(const int *)base);
			break;
		case K_BOOL:
			v = json_boolean(*(const bool *)base);
			break;
		case K_LIST:
		case K_OBJ:
			if (k->offset == offsetof(struct cp_config, cas)) {
				v = cas_shown(cfg->cas);
				break;
			}
			v = json_deep_copy(*(json_t *const *)base);
			break;
		}
		json_object_set_new(o, k->name, v);
	}
	return o;
}

cp_rc cp_config_schedule(const char *s, int64_t *out, size_t max, size_t *n)
{
	const char *p = s;
	bool bracket;

	assert(out && max > 0 && n);
	*n = 0;
	if (!s)
		return CP_ERR_INVALID;
	while (isspace((unsigned char)*p))
		p++;
	bracket = *p == '[';
	if (bracket)
		p++;
	for (;;) {
		char *end;
		long long v;
		while (isspace((unsigned char)*p))
			p++;
		if (!isdigit((unsigned char)*p))
			return CP_ERR_INVALID;
		v = strtoll(p, &end, 10);
		if (v < 0 || v > 604800 || *n == max)
			return CP_ERR_INVALID;
		out[(*n)++] = v;
		p = end;
		while (isspace((unsigned char)*p))
			p++;
		if (*p != ',')
			break;
		p++;
	}
	if (bracket && *p++ != ']')
		return CP_ERR_INVALID;
	while (isspace((unsigned char)*p))
		p++;
	return *p == '\0' && *n > 0 ? CP_OK : CP_ERR_INVALID;
}
