/*
 * edgesync.c - `certplane edge-sync` (edgesync.h): the loop that mirrors
 * the feed into a directory.
 *
 * One batch: GET <url>/v1/edge/deployments?after=<cursor>&wait=<s> (a
 * long-poll; libcurl, aborted at once on SIGTERM), then for each entry in
 * order: write <hostname>.key then <hostname>.crt (cp_file_write: a temp
 * file, fsync, rename, fsync of the directory; mode 0600), or unlink both
 * for a removal; then the reload command (`/bin/sh -c`), then the cursor
 * (.cursor, written the same way). The cursor is stored only after the
 * reload, so a crash in between replays the batch (the writes are
 * idempotent) rather than losing it. A later entry for a hostname supersedes
 * an earlier one, so replaying from any cursor ends in the same files.
 *
 * Hostnames become file names only when they are plain DNS names (letters,
 * digits, '-', '.', a leading "*." for wildcards, no "..", at most 253
 * bytes): nothing in the feed can write outside the directory. The edge key
 * comes from CERTPLANE_EDGE_TOKEN or --token-file, never from argv (which
 * every local user can read); no key material is logged.
 */
#include "edgesync/edgesync.h"

#include "common/buf.h"
#include "common/common.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#define SYNC_WAIT_DEFAULT 20	  /* long-poll seconds asked for */
#define SYNC_BODY_MAX (64u << 20) /* a feed answer (the server's own cap) */
#define SYNC_BACKOFF_MAX_MS 30000 /* between failed polls, doubling */
#define SYNC_CURSOR_FILE ".cursor"

static volatile sig_atomic_t sync_stop;

static void on_signal(int sig)
{
	(void)sig;
	sync_stop = 1;
}

struct sync_opts {
	const char *url;	/* certplane's base URL */
	const char *dir;	/* where the files go */
	const char *reload_cmd; /* run after a batch; NULL = none */
	const char *ca_bundle;	/* trust for https; NULL = system */
	char *token;		/* owned: the edge key */
	int wait;
	bool once;
};

static int usage(void)
{
	fprintf(stderr, "usage: certplane edge-sync --url URL --dir DIR [--reload-cmd CMD] "
			"[--token-file FILE] [--ca-bundle FILE] [--wait SECONDS] [--once]\n"
			"  the edge key comes from CERTPLANE_EDGE_TOKEN or --token-file\n"
			"  (URL also from CERTPLANE_EDGE_URL)\n");
	return 2;
}

/* A feed hostname that is safe as a file name in the directory. */
static bool name_safe(const char *h)
{
	size_t n = h ? strlen(h) : 0;

	if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-' || strstr(h, ".."))
		return false;
	if (h[0] == '*' && h[1] != '.')
		return false;
	for (size_t i = h[0] == '*' ? 1 : 0; i < n; i++) {
		char c = h[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.'))
			return false;
	}
	return true;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct cp_buf *b = arg;
	return cp_buf_add(b, p, size * n) == CP_OK ? size * n : 0;
}

/* libcurl's progress callback: abort the transfer once we are stopping. */
static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	(void)arg, (void)a, (void)b, (void)c, (void)d;
	return sync_stop ? 1 : 0;
}

/* One poll: the parsed answer into *out (owned), or an error (logged). */
static cp_rc poll_feed(CURL *curl, const struct sync_opts *o, long long cursor, json_t **out)
{
	struct cp_buf body;
	struct curl_slist *hdr = NULL;
	char *url = NULL, *auth = NULL;
	long status = 0;
	json_error_t jerr;
	CURLcode cc;
	cp_rc rc = CP_ERR_UPSTREAM;

	*out = NULL;
	cp_buf_init(&body, SYNC_BODY_MAX);
	body.wipe = true; /* private keys */
	url = cp_aprintf("%s/v1/edge/deployments?after=%lld&wait=%d&limit=100", o->url, cursor,
			 o->once ? 0 : o->wait);
	auth = cp_aprintf("Authorization: Bearer %s", o->token);
	if (!url || !auth || !(hdr = curl_slist_append(NULL, auth))) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	curl_easy_reset(curl);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)o->wait + 30L);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	if (o->ca_bundle)
		curl_easy_setopt(curl, CURLOPT_CAINFO, o->ca_bundle);
	cc = curl_easy_perform(curl);
	if (cc != CURLE_OK) {
		if (!sync_stop)
			cp_logf(CP_LOG_WARN, "edge_sync.poll", "feed request failed: %s",
				curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		cp_logf(CP_LOG_WARN, "edge_sync.poll", "feed answered %ld", status);
		rc = status == 401 || status == 403 ? CP_ERR_UNAUTHORIZED : CP_ERR_UPSTREAM;
		goto out;
	}
	*out = json_loadb(cp_buf_str(&body), body.len, 0, &jerr);
	if (!json_is_object(*out) || !json_is_array(json_object_get(*out, "data")) ||
	    !json_is_integer(json_object_get(*out, "cursor"))) {
		json_decref(*out);
		*out = NULL;
		cp_logf(CP_LOG_WARN, "edge_sync.poll", "the feed's answer is not a feed page");
		goto out;
	}
	rc = CP_OK;
out:
	curl_slist_free_all(hdr);
	free(url);
	if (auth) {
		memset(auth, 0, strlen(auth));
		free(auth);
	}
	cp_buf_free(&body);
	return rc;
}

/* Apply one entry to the directory. CP_ERR_INVALID: the entry is skipped
 * (logged); CP_ERR_IO: the directory failed (stop). */
static cp_rc apply_entry(const struct sync_opts *o, const json_t *e)
{
	const char *h = json_string_value(json_object_get(e, "hostname"));
	const char *chain = json_string_value(json_object_get(e, "chain_pem"));
	const char *key = json_string_value(json_object_get(e, "key_pem"));
	bool removed = json_is_true(json_object_get(e, "removed"));
	char *crt = NULL, *kf = NULL;
	cp_rc rc = CP_OK;

	if (!name_safe(h)) {
		cp_logf(CP_LOG_WARN, "edge_sync.skip", "entry with an unusable hostname skipped");
		return CP_ERR_INVALID;
	}
	crt = cp_aprintf("%s/%s.crt", o->dir, h);
	kf = cp_aprintf("%s/%s.key", o->dir, h);
	if (!crt || !kf) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	if (removed) {
		if ((unlink(crt) != 0 && errno != ENOENT) || (unlink(kf) != 0 && errno != ENOENT))
			rc = CP_ERR_IO;
		cp_logf(CP_LOG_INFO, "edge_sync.removed", "%s", h);
		goto out;
	}
	if (!chain || !key) {
		cp_logf(CP_LOG_WARN, "edge_sync.skip", "entry for %s has no chain or key", h);
		rc = CP_ERR_INVALID;
		goto out;
	}
	/* The key first: a handshake between the two renames sees the new key
	 * with the old chain for an instant at worst, never a chain without
	 * its key. */
	rc = cp_file_write(kf, key, strlen(key), 0600);
	if (rc == CP_OK)
		rc = cp_file_write(crt, chain, strlen(chain), 0600);
	if (rc == CP_OK)
		cp_log_json(CP_LOG_INFO, "edge_sync.written",
			    json_pack("{s:s,s:O?,s:O?}", "hostname", h, "version",
				      json_object_get(e, "version"), "fingerprint_sha256",
				      json_object_get(e, "fingerprint_sha256")));
out:
	free(crt);
	free(kf);
	return rc;
}

static long long cursor_load(const struct sync_opts *o, bool *ok)
{
	char *path = cp_aprintf("%s/" SYNC_CURSOR_FILE, o->dir), *text = NULL, *end;
	long long c = 0;
	size_t len;
	cp_rc rc;

	*ok = path != NULL;
	if (!path)
		return 0;
	rc = cp_file_read(path, 64, &text, &len);
	if (rc == CP_OK) {
		c = strtoll(text, &end, 10);
		*ok = end != text && c >= 0 && (*end == '\0' || *end == '\n');
	} else if (access(path, F_OK) == 0) {
		*ok = false; /* there, but unreadable */
	}
	free(text);
	free(path);
	return *ok ? c : 0;
}

static cp_rc cursor_store(const struct sync_opts *o, long long c)
{
	char *path = cp_aprintf("%s/" SYNC_CURSOR_FILE, o->dir);
	char text[32];
	cp_rc rc;

	if (!path)
		return CP_ERR_NOMEM;
	snprintf(text, sizeof(text), "%lld\n", c);
	rc = cp_file_write(path, text, strlen(text), 0600);
	free(path);
	return rc;
}

/* Run the reload command; true when it exited 0. */
static bool reload(const struct sync_opts *o)
{
	int st;

	if (!o->reload_cmd)
		return true;
	st = system(o->reload_cmd);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		cp_logf(CP_LOG_WARN, "edge_sync.reload", "reload command failed (status %d)", st);
		return false;
	}
	return true;
}

/* Read the edge key from CERTPLANE_EDGE_TOKEN or path (first line). */
static char *token_load(const char *path)
{
	const char *env = getenv("CERTPLANE_EDGE_TOKEN");
	char *text = NULL;
	size_t len = 0;

	if (!path)
		return env && env[0] ? cp_strdup(env) : NULL;
	if (cp_file_read(path, 4096, &text, &len) != CP_OK)
		return NULL;
	text[strcspn(text, "\r\n")] = '\0';
	return text;
}

int edgesync_main(int argc, char **argv)
{
	struct sync_opts o = { .url = getenv("CERTPLANE_EDGE_URL"), .wait = SYNC_WAIT_DEFAULT };
	const char *token_file = NULL;
	struct sigaction sa = { .sa_handler = on_signal };
	int64_t backoff = 0;
	long long cursor;
	CURL *curl = NULL;
	bool ok;
	int status = 1;
	struct stat dst;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--once") == 0) {
			o.once = true;
			continue;
		}
		if (!v)
			return usage();
		if (strcmp(a, "--url") == 0)
			o.url = v;
		else if (strcmp(a, "--dir") == 0)
			o.dir = v;
		else if (strcmp(a, "--reload-cmd") == 0)
			o.reload_cmd = v;
		else if (strcmp(a, "--token-file") == 0)
			token_file = v;
		else if (strcmp(a, "--ca-bundle") == 0)
			o.ca_bundle = v;
		else if (strcmp(a, "--wait") == 0) {
			char *end;
			long w = strtol(v, &end, 10);
			if (!*v || *end || w < 0 || w > 25)
				return usage();
			o.wait = (int)w;
		} else
			return usage();
		i++;
	}
	if (!o.url || !o.url[0] || !o.dir)
		return usage();
	o.token = token_load(token_file);
	if (!o.token || !o.token[0]) {
		fprintf(stderr, "certplane edge-sync: no edge key (CERTPLANE_EDGE_TOKEN or "
				"--token-file)\n");
		goto out;
	}
	if (stat(o.dir, &dst) != 0 || !S_ISDIR(dst.st_mode)) {
		fprintf(stderr, "certplane edge-sync: %s is not a directory\n", o.dir);
		goto out;
	}
	umask(077);
	cursor = cursor_load(&o, &ok);
	if (!ok) {
		fprintf(stderr, "certplane edge-sync: %s/" SYNC_CURSOR_FILE " is unreadable\n",
			o.dir);
		goto out;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN); /* a reload command or the server closing first */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	curl = curl_easy_init();
	if (!curl)
		goto out;
	cp_logf(CP_LOG_INFO, "edge_sync.start", "following %s from cursor %lld into %s", o.url,
		cursor, o.dir);
	status = 0;
	while (!sync_stop) {
		json_t *page = NULL, *e;
		size_t i, n;
		cp_rc rc = poll_feed(curl, &o, cursor, &page);

		if (rc != CP_OK) {
			if (sync_stop)
				break;
			backoff = backoff ? backoff * 2 : 1000;
			if (backoff > SYNC_BACKOFF_MAX_MS)
				backoff = SYNC_BACKOFF_MAX_MS;
			if (o.once) {
				status = 1;
				break;
			}
			for (int64_t t = 0; t < backoff && !sync_stop; t += 100)
				cp_sleep_ms(100);
			continue;
		}
		backoff = 0;
		n = json_array_size(json_object_get(page, "data"));
		json_array_foreach(json_object_get(page, "data"), i, e)
		{
			rc = apply_entry(&o, e);
			if (rc == CP_ERR_IO || rc == CP_ERR_NOMEM)
				break;
		}
		if (rc == CP_ERR_IO || rc == CP_ERR_NOMEM) {
			fprintf(stderr, "certplane edge-sync: cannot write into %s\n", o.dir);
			json_decref(page);
			status = 1;
			break;
		}
		if (n > 0) {
			long long next = json_integer_value(json_object_get(page, "cursor"));
			/* A failed reload keeps the cursor: the batch is applied
			 * (and reloaded) again on the next round. */
			if (reload(&o)) {
				if (cursor_store(&o, next) != CP_OK) {
					fprintf(stderr,
						"certplane edge-sync: cannot store the cursor\n");
					json_decref(page);
					status = 1;
					break;
				}
				cp_logf(CP_LOG_INFO, "edge_sync.batch",
					"%zu entries applied, cursor %lld", n, next);
				cursor = next;
			} else {
				for (int t = 0; t < 20 && !sync_stop; t++)
					cp_sleep_ms(100);
			}
		}
		json_decref(page);
		if (o.once)
			break;
	}
out:
	if (curl)
		curl_easy_cleanup(curl);
	if (o.token) {
		memset(o.token, 0, strlen(o.token));
		free(o.token);
	}
	return status;
}
