/*
 * portal.c - the tenant portal's static files (portal/dist, built by Vite)
 * at /portal/ on the API listener, and `GET /` redirecting there.
 *
 * The portal is a single-page app: /portal/ and every sub-path without a
 * file extension answer index.html (the app routes in the browser); a name
 * with an extension that is not there is a 404. Paths are checked segment
 * by segment against a small alphabet before any file is opened, so `..`,
 * hidden files and odd bytes never reach the file system. Hashed assets
 * (assets/) are immutable; index.html is revalidated on every load. Every
 * answer carries a strict Content-Security-Policy: the app's own scripts,
 * styles and API only.
 */
#include "server/server_internal.h"

#include "common/config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PORTAL_PREFIX "/portal"
#define PORTAL_PATH_MAX 512 /* bytes of a sub-path; longer is a 404 */
#define PORTAL_FILE_MAX (16 << 20)

static const char portal_csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
				 "img-src 'self' data:; connect-src 'self'; font-src 'self'; "
				 "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

bool server_portal_path(const char *url)
{
	if (!url)
		return false;
	if (strcmp(url, "/") == 0)
		return true;
	return strncmp(url, PORTAL_PREFIX, strlen(PORTAL_PREFIX)) == 0 &&
	       (url[strlen(PORTAL_PREFIX)] == '\0' || url[strlen(PORTAL_PREFIX)] == '/');
}

/* The Content-Type of a file name by its extension; NULL: not served. */
static const char *portal_type(const char *name)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
		{ ".html", "text/html; charset=utf-8" },
		{ ".js", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" },
		{ ".svg", "image/svg+xml" },
		{ ".png", "image/png" },
		{ ".ico", "image/x-icon" },
		{ ".json", "application/json" },
		{ ".txt", "text/plain; charset=utf-8" },
		{ ".woff2", "font/woff2" },
	};
	const char *dot = strrchr(name, '.');

	if (!dot || strchr(dot, '/'))
		return NULL;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return NULL;
}

/* True if rel ("a/b.js", may be "") is a path the portal may serve: segments
 * of [A-Za-z0-9._-], none empty (but a trailing '/'), none starting with
 * '.' (no "..", no hidden files). */
static bool portal_rel_ok(const char *rel)
{
	bool seg_start = true;
	size_t n = strlen(rel);

	if (n > PORTAL_PATH_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = rel[i];
		if (ch == '/') {
			if (seg_start)
				return false; /* "//" or a leading '/' */
			seg_start = true;
			continue;
		}
		if (seg_start && ch == '.')
			return false;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
		seg_start = false;
	}
	return true;
}

/* Queue a plain answer (status, text body) with the portal's headers. */
static enum MHD_Result portal_plain(struct MHD_Connection *c, int *out_status, unsigned status,
				    const char *text, const char *location)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		strlen(text), (void *)(uintptr_t)text, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (location)
		MHD_add_response_header(r, "Location", location);
	*out_status = (int)status;
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Open dir/rel as a regular file; -1 if it is not one. */
static int portal_open(const char *dir, const char *rel, struct stat *st)
{
	char path[PORTAL_PATH_MAX + 1024];
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, rel) >= sizeof(path))
		return -1;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || st->st_size > PORTAL_FILE_MAX) {
		close(fd);
		return -1;
	}
	return fd;
}

enum MHD_Result server_portal_answer(const struct cp_config *cfg, struct MHD_Connection *c,
				     const char *url, const char *method, int *status)
{
	const char *dir = cfg->portal_dir;
	const char *rel, *type, *last;
	struct MHD_Response *r;
	enum MHD_Result ret;
	struct stat st;
	bool index;
	int fd;

	assert(server_portal_path(url));
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		struct MHD_Response *na =
			MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		if (!na)
			return MHD_NO;
		MHD_add_response_header(na, "Allow", "GET, HEAD");
		*status = 405;
		ret = MHD_queue_response(c, 405, na);
		MHD_destroy_response(na);
		return ret;
	}
	if (strcmp(url, "/") == 0 || strcmp(url, PORTAL_PREFIX) == 0)
		return portal_plain(c, status, 302, "see /portal/\n", PORTAL_PREFIX "/");
	if (!dir || !dir[0])
		return portal_plain(c, status, 404, "the portal is not configured (portal_dir)\n",
				    NULL);
	rel = url + strlen(PORTAL_PREFIX "/");
	if (!portal_rel_ok(rel))
		return portal_plain(c, status, 404, "not found\n", NULL);
	last = strrchr(rel, '/');
	last = last ? last + 1 : rel;
	/* SPA routing: a path without an extension is a page of the app. */
	index = strchr(last, '.') == NULL;
	if (index)
		rel = "index.html";
	type = portal_type(rel);
	if (!type)
		return portal_plain(c, status, 404, "not found\n", NULL);
	fd = portal_open(dir, rel, &st);
	if (fd < 0)
		return portal_plain(
			c, status, 404,
			index ? "the portal is not built (portal_dir has no index.html)\n"
			      : "not found\n",
			NULL);
	r = MHD_create_response_from_fd((uint64_t)st.st_size, fd); /* takes fd */
	if (!r) {
		close(fd);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	/* Vite names assets/ by their content hash: a changed file is a new
	 * name, so they never need revalidating; index.html names them. */
	MHD_add_response_header(r, "Cache-Control",
				strncmp(rel, "assets/", 7) == 0
					? "public, max-age=31536000, immutable"
					: "no-cache");
	MHD_add_response_header(r, "Content-Security-Policy", portal_csp);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	*status = 200;
	ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}
