/*
 * test_dcv.c - the rules of DCV delegation (dcv/dcv.h) and its settings:
 *
 *   - configuration: dcv_zone alone is refused naming the missing keys, an
 *     unknown algorithm and a secret that is not base64 are refused, the secret is read from
 *     dcv_tsig_secret_file (trailing newline dropped) and redacted by
 *     cp_config_json (check-config);
 *   - labels: 24 characters of lower-case base32, stable, different per
 *     tenant and per hostname, one for "*.x" and "x", insensitive to case
 *     and a trailing dot, changed by dcv_label_secret; the feature off is
 *     CP_ERR_INVALID;
 *   - UPDATE arguments refused before anything is sent: a name outside the
 *     zone, a value that is not base64url, a server that is not IP:port.
 * The UPDATE itself against Knot is tests/e2e/test_dcv_delegation.py's.
 *
 * Exit status: 0 when every check passed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "dcv/dcv.h"
#include "tests/unit/check.h"

#define SECRET "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0="

static const char *const dcv_env[] = { "CERTPLANE_DCV_ZONE",
				       "CERTPLANE_DCV_SERVER",
				       "CERTPLANE_DCV_TSIG_NAME",
				       "CERTPLANE_DCV_TSIG_SECRET",
				       "CERTPLANE_DCV_TSIG_SECRET_FILE",
				       "CERTPLANE_DCV_LABEL_SECRET",
				       "CERTPLANE_DCV_TSIG_ALGORITHM" };

static void env_clear(void)
{
	for (size_t i = 0; i < CP_ARRAY_LEN(dcv_env); i++)
		unsetenv(dcv_env[i]);
}

/* A configuration with the feature on (inline secret); NULL on failure. */
static struct cp_config *config_on(void)
{
	struct cp_config *cfg = NULL;
	char *err = NULL;

	setenv("CERTPLANE_DCV_ZONE", "dcv.example.", 1);
	setenv("CERTPLANE_DCV_SERVER", "127.0.0.1:5300", 1);
	setenv("CERTPLANE_DCV_TSIG_NAME", "dcv-key", 1);
	setenv("CERTPLANE_DCV_TSIG_SECRET", SECRET, 1);
	CHECK_RC(cp_config_load(NULL, &cfg, &err), CP_OK);
	free(err);
	return cfg;
}

static void test_config(void)
{
	struct cp_config *cfg = NULL;
	char *err = NULL, path[] = "/tmp/test_dcv_secretXXXXXX";
	json_t *j;
	int fd;

	env_clear();
	CHECK_RC(cp_config_load(NULL, &cfg, &err), CP_OK);
	CHECK(cfg && !dcv_enabled(cfg));
	CHECK(cfg && !strcmp(cfg->dcv_tsig_algorithm, "hmac-sha256"));
	cp_config_free(cfg);
	cfg = NULL;

	setenv("CERTPLANE_DCV_ZONE", "dcv.example", 1);
	CHECK_RC(cp_config_load(NULL, &cfg, &err), CP_ERR_INVALID);
	CHECK(err && strstr(err, "dcv_server") && strstr(err, "dcv_tsig_secret"));
	free(err);
	err = NULL;

	setenv("CERTPLANE_DCV_SERVER", "127.0.0.1:5300", 1);
	setenv("CERTPLANE_DCV_TSIG_NAME", "dcv-key", 1);
	fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK(write(fd, SECRET "\n", strlen(SECRET) + 1) == (ssize_t)strlen(SECRET) + 1);
		close(fd);
	}
	setenv("CERTPLANE_DCV_TSIG_SECRET_FILE", path, 1);
	setenv("CERTPLANE_DCV_TSIG_ALGORITHM", "hmac-md5", 1);
	CHECK_RC(cp_config_load(NULL, &cfg, &err), CP_ERR_INVALID);
	CHECK(err && strstr(err, "dcv_tsig_algorithm"));
	free(err);
	err = NULL;
	unsetenv("CERTPLANE_DCV_TSIG_ALGORITHM");
	setenv("CERTPLANE_DCV_LABEL_SECRET", "not base64!", 1);
	CHECK_RC(cp_config_load(NULL, &cfg, &err), CP_ERR_INVALID);
	CHECK(err && strstr(err, "dcv_label_secret") && !strstr(err, "not base64!"));
	free(err);
	err = NULL;
	unsetenv("CERTPLANE_DCV_LABEL_SECRET");
	CHECK_RC(cp_config_load(NULL, &cfg, &err), CP_OK);
	free(err);
	err = NULL;
	CHECK(cfg && dcv_enabled(cfg) && !strcmp(cfg->dcv_tsig_secret, SECRET));
	j = cfg ? cp_config_json(cfg) : NULL;
	CHECK(j && !strcmp(json_string_value(json_object_get(j, "dcv_tsig_secret")), "<redacted>"));
	{
		char *text = j ? json_dumps(j, 0) : NULL;
		CHECK(text && !strstr(text, SECRET));
		free(text);
	}
	json_decref(j);
	cp_config_free(cfg);
	cfg = NULL;

	unlink(path);
	CHECK_RC(cp_config_load(NULL, &cfg, &err), CP_ERR_INVALID);
	CHECK(err && strstr(err, "dcv_tsig_secret_file") && !strstr(err, SECRET));
	free(err);
	env_clear();
}

/* The target of tenant's hostname under cfg (new string, NULL on error). */
static char *target(const struct cp_config *cfg, const char *tenant, const char *host)
{
	struct dcv_record r = { 0 };
	char *t;

	if (dcv_record_of(cfg, tenant, host, &r) != CP_OK)
		return NULL;
	t = r.target;
	r.target = NULL;
	dcv_record_clear(&r);
	return t;
}

static void test_labels(void)
{
	struct cp_config *cfg = config_on(), *cfg2 = NULL;
	struct dcv_record r = { 0 };
	char *a, *a2, *b, *w, *c, *d, *e = NULL, *err = NULL;
	const char *dot;

	if (!cfg)
		return;
	CHECK_RC(dcv_record_of(cfg, "tenant-a", "*.Shop.Example.com.", &r), CP_OK);
	CHECK(r.record_name && !strcmp(r.record_name, "_acme-challenge.shop.example.com"));
	dot = r.target ? strchr(r.target, '.') : NULL;
	CHECK(dot && dot - r.target == 24 && !strcmp(dot, ".dcv.example"));
	for (int i = 0; dot && i < 24; i++)
		CHECK(strchr("abcdefghijklmnopqrstuvwxyz234567", r.target[i]) != NULL);
	a = target(cfg, "tenant-a", "shop.example.com");
	a2 = target(cfg, "tenant-a", "shop.example.com");
	w = target(cfg, "tenant-a", "*.shop.example.com");
	b = target(cfg, "tenant-b", "shop.example.com");
	c = target(cfg, "tenant-a", "www.example.com");
	/* No ambiguity between tenant and hostname boundaries. */
	d = target(cfg, "tenant-a.shop", "example.com");
	CHECK(a && a2 && w && b && c && d);
	CHECK(a && r.target && !strcmp(a, r.target));
	CHECK(a && a2 && !strcmp(a, a2));
	CHECK(a && w && !strcmp(a, w));
	CHECK(a && b && strcmp(a, b) != 0);
	CHECK(a && c && strcmp(a, c) != 0);
	CHECK(a && d && strcmp(a, d) != 0);
	CHECK(a && !strstr(a, "shop") && !strstr(a, "tenant"));

	setenv("CERTPLANE_DCV_LABEL_SECRET", "bGFiZWwta2V5LWxhYmVsLWtleS1sYWJlbC1rZXktbGFiZWw=", 1);
	CHECK_RC(cp_config_load(NULL, &cfg2, &err), CP_OK);
	free(err);
	e = cfg2 ? target(cfg2, "tenant-a", "shop.example.com") : NULL;
	CHECK(e && a && strcmp(a, e) != 0);

	/* Off: nothing to show. */
	free(cfg->dcv_zone);
	cfg->dcv_zone = cp_strdup("");
	dcv_record_clear(&r);
	CHECK_RC(dcv_record_of(cfg, "tenant-a", "shop.example.com", &r), CP_ERR_INVALID);
	CHECK(!r.record_name && !r.target);
	free(a);
	free(a2);
	free(b);
	free(w);
	free(c);
	free(d);
	free(e);
	cp_config_free(cfg);
	cp_config_free(cfg2);
	env_clear();
}

static void test_update_refusals(void)
{
	struct cp_config *cfg = config_on();
	const char *value = "gfj9Xq-Rp2yp0CjhQwb_4mh2FxD0o2bNa8SE3bPSJIY";

	if (!cfg)
		return;
	CHECK_RC(dcv_txt_add(cfg, "label.other.example", value), CP_ERR_INVALID);
	CHECK_RC(dcv_txt_delete(cfg, "dcv.example.evil", value), CP_ERR_INVALID);
	CHECK_RC(dcv_txt_add(cfg, "label.dcv.example", "a\" IN A 1.2.3.4"), CP_ERR_INVALID);
	CHECK_RC(dcv_txt_add(cfg, "label.dcv.example", ""), CP_ERR_INVALID);
	free(cfg->dcv_server);
	cfg->dcv_server = cp_strdup("knot.example:53");
	CHECK_RC(dcv_txt_add(cfg, "label.dcv.example", value), CP_ERR_INVALID);
	free(cfg->dcv_server);
	cfg->dcv_server = cp_strdup("127.0.0.1:99999");
	CHECK_RC(dcv_txt_add(cfg, "label.dcv.example", value), CP_ERR_INVALID);
	free(cfg->dcv_server);
	cfg->dcv_server = cp_strdup("[::1:53");
	CHECK_RC(dcv_txt_add(cfg, "label.dcv.example", value), CP_ERR_INVALID);
	cp_config_free(cfg);
	env_clear();
}

int main(void)
{
	test_config();
	test_labels();
	test_update_refusals();
	return check_exit("test_dcv");
}
