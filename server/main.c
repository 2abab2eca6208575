/*
 * main.c - the certplane command: serve, migrate, check-config, version,
 * routes, backup, rotate-master-key and edge-sync (edgesync/). `serve` loads the configuration,
 * prepares data_dir (database, master key ring, operator token), starts the
 * API listener, the HTTP-01 responder and the workers, and shuts all of them
 * down cleanly on SIGTERM or SIGINT.
 */
#include "crypto/crypto.h"
#include "edgesync/edgesync.h"
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#define CERTPLANE_VERSION "0.1.0"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: certplane <command> [--config FILE]\n"
		"  serve               run the API, the HTTP-01 responder and the workers\n"
		"  migrate             apply database migrations and exit\n"
		"  check-config        validate the configuration and print it (secrets redacted)\n"
		"  version             print the version\n"
		"  routes              print the route table (METHOD PATTERN)\n"
		"  backup FILE         write a consistent online copy of the database to FILE\n"
		"  rotate-master-key   add a new master key and re-encrypt every secret with it\n"
		"  edge-sync ...       follow the edge feed into a directory (edge-sync --help)\n");
	return 2;
}

/* Everything a command needs, set up from the configuration. */
struct app {
	struct cp_config *cfg;
	struct db *db;
	struct crypto_keyring *keyring;
	char op_hash[65];
	struct api_ctx ctx;
};

static void app_close(struct app *app)
{
	db_close(app->db);
	crypto_keyring_free(app->keyring);
	cp_config_free(app->cfg);
}

/*
 * Give path at most the permissions in want (0600 for a file, 0700 for a
 * directory): a file from an older install, or one made under a loose
 * umask, is tightened and a log line says so. A missing path is fine (0).
 * -1 (after a message on stderr) if it cannot be inspected or changed.
 */
static int path_tighten(const char *path, mode_t want, const char *what)
{
	char was[16], now[16];
	struct stat st;

	if (stat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		fprintf(stderr, "certplane: cannot stat %s %s\n", what, path);
		return -1;
	}
	if ((st.st_mode & 0777 & ~want) == 0)
		return 0;
	if (chmod(path, st.st_mode & want) != 0) {
		fprintf(stderr, "certplane: cannot restrict %s %s to %04o\n", what, path,
			(unsigned)want);
		return -1;
	}
	snprintf(was, sizeof(was), "%04o", (unsigned)(st.st_mode & 0777));
	snprintf(now, sizeof(now), "%04o", (unsigned)(st.st_mode & want));
	cp_log_json(
		CP_LOG_WARN, "data_dir.mode",
		json_pack("{s:s,s:s,s:s,s:s}", "path", path, "what", what, "was", was, "now", now));
	return 0;
}

/* The database file and SQLite's -wal and -shm beside it: 0600. */
static int database_tighten(const char *database)
{
	static const char *const suffix[] = { "", "-wal", "-shm" };

	for (size_t i = 0; i < CP_ARRAY_LEN(suffix); i++) {
		char *p = cp_aprintf("%s%s", database, suffix[i]);
		int r = p ? path_tighten(p, 0600, "database file") : -1;
		free(p);
		if (r != 0)
			return -1;
	}
	return 0;
}

/* data_dir exists, is a directory and is 0700 (created so, or tightened
 * with a log line); the database and its -wal/-shm files are 0600. */
static int data_dir_prepare(const struct cp_config *cfg)
{
	struct stat st;

	if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "certplane: cannot create data_dir %s\n", cfg->data_dir);
		return -1;
	}
	if (stat(cfg->data_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "certplane: data_dir %s is not a directory\n", cfg->data_dir);
		return -1;
	}
	if (path_tighten(cfg->data_dir, 0700, "data_dir") != 0)
		return -1;
	/* a database server's files are its own business */
	return db_target_is_file(cfg->database) ? database_tighten(cfg->database) : 0;
}

/* The operator token: configured, or read from (or created in)
 * data_dir/operator.token with mode 0600. Prints where it is on creation.
 * Only a missing file makes a new token: any other read error (a directory
 * in its place, permissions, I/O, an oversized or empty file) stops start-up,
 * because replacing the token would lock out every operator that has it. */
static cp_rc operator_token(struct app *app)
{
	char *path = cp_aprintf("%s/operator.token", app->cfg->data_dir), *tok = NULL;
	uint8_t raw[32];
	size_t len;
	cp_rc rc = CP_ERR_NOMEM;

	if (!path)
		goto out;
	if (app->cfg->operator_token[0]) {
		cp_sha256_hex(app->cfg->operator_token, strlen(app->cfg->operator_token),
			      app->op_hash);
		rc = CP_OK;
		goto out;
	}
	rc = cp_file_read(path, 4096, &tok, &len);
	if (rc == CP_OK) {
		while (len && (tok[len - 1] == '\n' || tok[len - 1] == '\r'))
			tok[--len] = '\0';
		if (len == 0) {
			fprintf(stderr,
				"certplane: %s is empty; remove it to have a new token made\n",
				path);
			rc = CP_ERR_INVALID;
			goto out;
		}
		if (path_tighten(path, 0600, "operator token") != 0) {
			rc = CP_ERR_IO;
			goto out;
		}
	} else if (rc == CP_ERR_NOT_FOUND) {
		char *secret;
		rc = cp_random(raw, sizeof(raw));
		if (rc != CP_OK)
			goto out;
		secret = cp_b64url(raw, sizeof(raw));
		crypto_wipe(raw, sizeof(raw));
		tok = secret ? cp_aprintf("cpo_%s", secret) : NULL;
		crypto_wipe_free(secret);
		if (!tok) {
			rc = CP_ERR_NOMEM;
			goto out;
		}
		rc = cp_file_write(path, tok, strlen(tok), 0600);
		if (rc != CP_OK) {
			cp_logf(CP_LOG_ERROR, "config.operator_token", "cannot write %s", path);
			fprintf(stderr, "certplane: cannot write the operator token %s\n", path);
			goto out;
		}
		cp_logf(CP_LOG_INFO, "config.operator_token", "operator token created in %s", path);
		len = strlen(tok);
	} else {
		fprintf(stderr,
			"certplane: cannot read the operator token %s (%s); fix it (a regular file, "
			"readable, at most 4096 bytes) or remove it to have a new one made\n",
			path, cp_rc_str(rc));
		goto out;
	}
	cp_sha256_hex(tok, len, app->op_hash);
out:
	crypto_wipe_free(tok);
	free(path);
	return rc;
}

static int app_open(struct app *app, const char *config_path, bool need_keys, bool migrate)
{
	char *err = NULL;
	int from = 0, to = 0;
	bool file;

	memset(app, 0, sizeof(*app));
	if (cp_config_load(config_path, &app->cfg, &err) != CP_OK) {
		fprintf(stderr, "certplane: configuration: %s\n", err ? err : "invalid");
		free(err);
		return 1;
	}
	cp_log_set_level(!strcmp(app->cfg->log_level, "debug")	 ? CP_LOG_DEBUG
			 : !strcmp(app->cfg->log_level, "warn")	 ? CP_LOG_WARN
			 : !strcmp(app->cfg->log_level, "error") ? CP_LOG_ERROR
								 : CP_LOG_INFO);
	if (data_dir_prepare(app->cfg) != 0)
		return 1;
	/* A file is this process's own and migrated at start; a server's
	 * schema is shared by every instance and changed only by `certplane
	 * migrate`, so serve refuses a schema it was not built for. The
	 * setting may hold a password: it is never printed. */
	file = db_target_is_file(app->cfg->database);
	if (db_open(app->cfg->database, &app->db) != CP_OK) {
		fprintf(stderr, "certplane: cannot open the database%s%s\n", file ? " " : "",
			file ? app->cfg->database : "");
		return 1;
	}
	if (file || migrate) {
		if (db_migrate(app->db, &from, &to) != CP_OK) {
			fprintf(stderr, "certplane: cannot migrate the database\n");
			return 1;
		}
	} else if (db_schema_check(app->db, &from) != CP_OK) {
		fprintf(stderr,
			"certplane: the database has schema version %d, this binary needs %d: "
			"run `certplane migrate` first\n",
			from, db_schema_version());
		return 1;
	}
	/* Created under umask 077 (main); a file SQLite made before is tightened. */
	if (file && database_tighten(app->cfg->database) != 0)
		return 1;
	db_set_path(app->cfg->database);
	if (need_keys) {
		if (crypto_keyring_load(app->cfg->data_dir,
					app->cfg->master_key[0] ? app->cfg->master_key : NULL,
					&app->keyring) != CP_OK) {
			fprintf(stderr, "certplane: cannot load the master key\n");
			return 1;
		}
		if (operator_token(app) != CP_OK)
			return 1;
	}
	app->ctx.cfg = app->cfg;
	app->ctx.keyring = app->keyring;
	app->ctx.operator_token_hash = app->op_hash;
	app->ctx.started_at = cp_now();
	app->ctx.metrics_render = server_metrics_render;
	app->ctx.ca_profile_check = server_ca_profile_check;
	app->ctx.stopping = &stop_requested;
	db_edge_check_set(app->cfg->edge_check_address[0] != '\0');
	return 0;
}

/* Take data_dir/certplane.lock so that one data directory has one writer
 * process (serve, rotate-master-key); the kernel drops it on any exit,
 * kill -9 included. Returns the fd, or -1 when another process holds it. */
static int data_dir_lock(const struct app *app)
{
	char *path = cp_aprintf("%s/certplane.lock", app->cfg->data_dir);
	int fd = path ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;

	free(path);
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Whether this serve sees every write of its database (api_ctx.read_cache):
 * a SQLite file, and data_dir's own certplane.db, which the data_dir lock
 * this process holds keeps to one writer (a second serve or
 * rotate-master-key on that data_dir refuses to start: data_dir_lock). A
 * database elsewhere is not covered by that lock (another data_dir could
 * name it); a PostgreSQL database is shared by other instances. */
static bool read_cache_safe(const struct app *app)
{
	char *own;
	bool ok;

	if (!app->cfg->read_cache || !db_target_is_file(app->cfg->database))
		return false;
	own = cp_aprintf("%s/certplane.db", app->cfg->data_dir);
	ok = own && strcmp(own, app->cfg->database) == 0;
	free(own);
	return ok;
}

static int cmd_serve(struct app *app)
{
	struct server_http *http = NULL;
	struct server_workers *workers = NULL;
	struct server_notify *notify = NULL;
	struct server_http01 *http01 = NULL;
	struct sigaction sa = { .sa_handler = on_signal };
	sigset_t block, old;
	int status = 1, lock = data_dir_lock(app);

	if (lock < 0) {
		fprintf(stderr, "certplane: %s is in use by another certplane process\n",
			app->cfg->data_dir);
		return 1;
	}
	app->ctx.read_cache = read_cache_safe(app);
	/* On a file, with the lock held, no other worker process exists: jobs
	 * still marked running were cut off by a crash (kill -9) and run again
	 * at once. A database server is shared by other live instances whose
	 * running jobs these may be: there a dead worker's job is claimed again
	 * when its lease lapses (the claim's rescue), never at start. */
	if (db_target_is_file(app->cfg->database) && db_job_recover_orphans(app->db) != CP_OK)
		goto out;
	/* SIGTERM/SIGINT stay blocked except inside sigsuspend, so a signal can
	 * never slip in between the flag test and the wait. Threads started
	 * below inherit the blocked mask and never take them. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	/* The request log's flusher (after the mask: it never takes signals). */
	if (cp_log_defer_start() != CP_OK)
		goto out;
	if (server_http_start(&app->ctx, &http) != CP_OK)
		goto out;
	/* The API must serve even when the HTTP-01 port cannot be bound: the
	 * error is logged and orders fail their HTTP-01 validation visibly. */
	if (server_http01_start(&app->ctx, &http01) != CP_OK)
		cp_logf(CP_LOG_ERROR, "http01.listen",
			"HTTP-01 responder not running (cannot listen on %s)",
			app->cfg->http01_listen);
	if (server_workers_start(&app->ctx, &workers) != CP_OK)
		goto out;
	if (server_notify_start(app->cfg, &notify) != CP_OK)
		cp_logf(CP_LOG_WARN, "notify.listen",
			"not listening: other instances' work is "
			"seen by polling");
	cp_log_json(CP_LOG_INFO, "server.ready",
		    json_pack("{s:s,s:s,s:i,s:b}", "version", CERTPLANE_VERSION, "listen",
			      app->cfg->listen, "workers", app->cfg->workers, "read_cache",
			      app->ctx.read_cache));
	while (!stop_requested)
		sigsuspend(&old);
	cp_logf(CP_LOG_INFO, "server.stopping", "signal received, shutting down");
	status = 0;
out:
	/* Stop accepting first, then let workers finish or release their jobs.
	 * The HTTP-01 responder stops last: a worker still in a validation
	 * (its challenge answered, the CA fetching the token) gets it served. */
	server_http_stop(http);
	server_notify_stop(notify);
	server_workers_stop(workers);
	server_http01_stop(http01);
	db_thread_close();
	cp_log_defer_stop();
	cp_logf(CP_LOG_INFO, "server.stopped", "clean shutdown");
	close(lock);
	return status;
}

/* Rotation runs with the server stopped: a running server would keep
 * sealing new secrets with the key this command prunes. */
static int cmd_rotate(struct app *app)
{
	int n = 0, lock = data_dir_lock(app);
	int64_t stale = -1;
	cp_rc rc;

	if (lock < 0) {
		fprintf(stderr, "certplane: stop the server first (%s is in use)\n",
			app->cfg->data_dir);
		return 1;
	}
	rc = db_secrets_rotate(app->db, app->keyring, app->cfg->data_dir, &n, &stale);
	if (rc != CP_OK) {
		if (stale > 0)
			fprintf(stderr, "certplane: %lld values are still under an older key\n",
				(long long)stale);
		fprintf(stderr,
			"certplane: rotation failed (%s); old keys are kept, every secret "
			"still opens\n",
			cp_rc_str(rc));
		close(lock);
		return 1;
	}
	printf("re-encrypted %d secrets under the new master key\n", n);
	close(lock);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL, *config = NULL, *arg = NULL;
	struct app app;
	int status = 1;

	/* Before any JSON exists: jansson wipes what it frees (bodies with keys). */
	crypto_json_wipe_on_free();
	/* edge-sync has flags of its own (edgesync/edgesync.h). */
	if (cmd && strcmp(cmd, "edge-sync") == 0)
		return edgesync_main(argc - 1, argv + 1);
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (!arg && argv[i][0] != '-')
			arg = argv[i];
		else
			return usage();
	}
	if (!cmd)
		return usage();
	if (strcmp(cmd, "version") == 0) {
		printf("certplane %s (schema %d)\n", CERTPLANE_VERSION, db_schema_version());
		return 0;
	}
	if (strcmp(cmd, "routes") == 0) {
		size_t n;
		const struct server_route *r = server_routes(&n);
		for (size_t i = 0; i < n; i++)
			printf("%s %s\n", r[i].method, r[i].pattern);
		return 0;
	}
	if (strcmp(cmd, "check-config") == 0) {
		struct cp_config *cfg = NULL;
		char *err = NULL, *text;
		json_t *j;
		if (cp_config_load(config, &cfg, &err) != CP_OK) {
			fprintf(stderr, "certplane: configuration: %s\n", err ? err : "invalid");
			free(err);
			return 1;
		}
		j = cp_config_json(cfg);
		text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
		printf("%s\nconfiguration ok\n", text ? text : "{}");
		free(text);
		json_decref(j);
		cp_config_free(cfg);
		return 0;
	}
	if (strcmp(cmd, "serve") && strcmp(cmd, "migrate") && strcmp(cmd, "backup") &&
	    strcmp(cmd, "rotate-master-key"))
		return usage();
	if (strcmp(cmd, "backup") == 0 && !arg)
		return usage();

	/* Every file these commands create (database, -wal, -shm, backups,
	 * master.keys, operator.token, locks) is for this user only. */
	umask(077);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (app_open(&app, config, strcmp(cmd, "migrate") != 0 && strcmp(cmd, "backup") != 0,
		     strcmp(cmd, "migrate") == 0))
		goto out;
	if (strcmp(cmd, "serve") == 0) {
		status = cmd_serve(&app);
	} else if (strcmp(cmd, "migrate") == 0) {
		printf("schema version %d\n", db_schema_version());
		status = 0;
	} else if (strcmp(cmd, "backup") == 0) {
		cp_rc rc = db_backup(app.db, arg);
		if (rc == CP_OK)
			printf("backup written to %s\n", arg);
		else
			fprintf(stderr, "certplane: backup failed: %s\n",
				rc == CP_ERR_CONFLICT ? "the file exists" : cp_rc_str(rc));
		status = rc == CP_OK ? 0 : 1;
	} else {
		status = cmd_rotate(&app);
	}
out:
	app_close(&app);
	curl_global_cleanup();
	return status;
}
