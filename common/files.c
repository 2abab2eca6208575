/*
 * files.c - bounded whole-file reads and atomic, durable file replacement
 * (temporary file, fsync, rename, directory fsync).
 */
#include "common/buf.h"
#include "common/common.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

cp_rc cp_file_read(const char *path, size_t max, char **out, size_t *len)
{
	/* wipe: the caller may read a secret (operator token), so no copy of
	 * it is left behind by regrowth or on an error path. */
	struct cp_buf buf = { 0 };
	struct stat st;
	FILE *f = NULL;
	char chunk[4096];
	cp_rc rc = CP_ERR_IO;
	int fd;

	assert(path && max > 0 && out && len);
	cp_buf_init(&buf, max + 1); /* room for the terminator */
	buf.wipe = true;
	/* O_NONBLOCK: a FIFO in the file's place must not hang the open; the
	 * fstat below then refuses anything but a regular file. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT ? CP_ERR_NOT_FOUND : CP_ERR_IO;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0 || !(f = fdopen(fd, "rb"))) {
		close(fd);
		goto out;
	}
	for (;;) {
		size_t got = fread(chunk, 1, sizeof(chunk), f);
		if (got == 0)
			break;
		rc = cp_buf_add(&buf, chunk, got);
		if (rc != CP_OK)
			goto out; /* CP_ERR_TOO_LARGE well over max, or CP_ERR_NOMEM */
	}
	rc = CP_ERR_IO;
	if (ferror(f))
		goto out;
	rc = CP_ERR_TOO_LARGE;
	if (buf.len > max)
		goto out;
	/* Terminated, and an empty file still gives a (empty) string. */
	rc = cp_buf_addc(&buf, '\0');
	if (rc != CP_OK)
		goto out;
	*out = cp_buf_take(&buf, len);
	*len -= 1; /* the terminator added above */
	rc = CP_OK;
out:
	OPENSSL_cleanse(chunk, sizeof(chunk));
	if (f)
		fclose(f);
	cp_buf_free(&buf);
	return rc;
}

/*
 * Write a new private temporary file next to path and return its fd; *tmp is
 * its new name (caller frees). The name is random and the file is created
 * with O_EXCL | O_NOFOLLOW, so nothing planted in the directory (a symlink,
 * a file of another user) is ever opened or truncated: an existing name is
 * skipped, as mkstemp() does. -1 on failure (*tmp NULL).
 */
static int tmp_create(const char *path, int mode, char **tmp)
{
	uint8_t rnd[8];
	char hex[17];
	int fd = -1;

	*tmp = NULL;
	for (int tries = 0; fd < 0 && tries < 16; tries++) {
		if (cp_random(rnd, sizeof(rnd)) != CP_OK)
			return -1;
		cp_hex(rnd, sizeof(rnd), hex);
		free(*tmp);
		*tmp = cp_aprintf("%s.tmp.%s", path, hex);
		if (!*tmp)
			return -1;
		fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		free(*tmp);
		*tmp = NULL;
	}
	return fd;
}

/* fsync the directory holding path, so that a rename into it is durable. */
static cp_rc dir_sync(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? cp_strndup(path, slash == path ? 1 : (size_t)(slash - path))
			  : cp_strdup(".");
	int fd;
	cp_rc rc = CP_ERR_IO;

	if (!dir)
		return CP_ERR_NOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		if (fsync(fd) == 0)
			rc = CP_OK;
		close(fd);
	}
	free(dir);
	return rc;
}

cp_rc cp_file_write(const char *path, const void *data, size_t len, int mode)
{
	const char *p = data;
	char *tmp = NULL;
	int fd;
	bool renamed = false;
	cp_rc rc = CP_ERR_IO;

	assert(path && (data || len == 0));
	fd = tmp_create(path, mode, &tmp);
	if (fd < 0)
		goto out;
	/* Explicit mode: the umask may only have narrowed it. */
	if (fchmod(fd, (mode_t)mode) != 0)
		goto out;
	for (size_t off = 0; off < len;) {
		ssize_t put = write(fd, p + off, len - off);
		if (put < 0 && errno == EINTR)
			continue;
		if (put <= 0)
			goto out;
		off += (size_t)put;
	}
	if (fsync(fd) != 0)
		goto out;
	if (close(fd) != 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto out;
	renamed = true;
	rc = dir_sync(path);
out:
	if (fd >= 0)
		close(fd);
	if (tmp && !renamed)
		unlink(tmp);
	free(tmp);
	return rc;
}
