/*
 * keyring.c - secrets at rest. Private keys, ACME account keys and webhook
 * secrets are stored in the database sealed with AES-256-GCM under a
 * master key ring: one current key that seals, older keys that only open,
 * so the master key can be rotated without downtime (rotate, re-seal every
 * row, prune).
 *
 * The ring lives in data_dir/master.keys ("<id> <base64 key>" per line, the
 * last line current, mode 0600) or, for deployments with an external secret
 * store, is a single key given in the configuration. Each sealed value
 * names its key id and authenticates the row identity (aad), so a sealed
 * value copied to another row or tenant does not open.
 *
 * Concurrency: a ring is read-locked by seal/open and write-locked by
 * rotate/prune; rotate/prune also take an fcntl lock on
 * data_dir/master.keys.lock so two processes cannot lose each other's keys.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "crypto/crypto_internal.h"

#define KEY_LEN 32
#define NONCE_LEN 12
#define TAG_LEN 16
#define ID_MAX 32
#define FILE_MAX (64 * 1024)
#define AAD_MAX (64 * 1024)
#define SEALED_PREFIX "cpk1:"
#define KEYS_FILE "master.keys"

struct ring_key {
	char id[ID_MAX + 1];
	uint8_t key[KEY_LEN];
};

struct crypto_keyring {
	pthread_rwlock_t lock; /* mutable even through a const ring pointer */
	bool from_config;      /* single configured key: no file, no rotation */
	size_t n;	       /* keys[n - 1] is current; n >= 1 */
	struct ring_key *keys;
};

static pthread_rwlock_t *ring_lock(const struct crypto_keyring *r)
{
	/* The ring is heap-allocated, never a const object: casting is defined. */
	return &((struct crypto_keyring *)r)->lock;
}

static void keys_free(struct ring_key *keys, size_t n)
{
	crypto_wipe_free_buf(keys, n * sizeof(*keys));
}

static bool id_valid(const char *s, size_t n)
{
	if (n == 0 || n > ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* Key ids are the first 8 hex chars of SHA-256(key): stable, not secret. */
static void key_id(const uint8_t key[KEY_LEN], char id[ID_MAX + 1])
{
	char hex[65];

	cp_sha256_hex(key, KEY_LEN, hex);
	memcpy(id, hex, 8);
	id[8] = '\0';
	OPENSSL_cleanse(hex, sizeof(hex));
}

static const struct ring_key *find_key(const struct ring_key *keys, size_t n, const char *id,
				       size_t idlen)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(keys[i].id) == idlen && memcmp(keys[i].id, id, idlen) == 0)
			return &keys[i];
	return NULL;
}

/* Decode one base64 key into dst; CP_ERR_INVALID unless exactly 32 bytes. */
static cp_rc decode_key(const char *b64, uint8_t dst[KEY_LEN])
{
	uint8_t *raw = NULL;
	size_t len = 0;
	cp_rc rc = cp_b64_decode(b64, &raw, &len);

	if (rc != CP_OK)
		return rc == CP_ERR_NOMEM ? rc : CP_ERR_INVALID;
	if (len == KEY_LEN)
		memcpy(dst, raw, KEY_LEN);
	else
		rc = CP_ERR_INVALID;
	crypto_wipe_free_buf(raw, len);
	return rc;
}

/* Parse file text (modified in place) into a new key array. */
static cp_rc parse_keys(char *text, struct ring_key **out, size_t *count)
{
	struct ring_key *keys = NULL, *grown;
	size_t n = 0, cap = 0; /* cap: entries allocated, wiped on the way out */
	char *line = text, *next, *sp;
	cp_rc rc = CP_ERR_INVALID;

	for (; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		line[strcspn(line, "\r")] = '\0';
		if (*line == '\0' || *line == '#')
			continue;
		sp = strchr(line, ' ');
		if (!sp || !id_valid(line, (size_t)(sp - line)) ||
		    find_key(keys, n, line, (size_t)(sp - line)))
			goto out;
		grown = calloc(n + 1, sizeof(*keys));
		if (!grown) {
			rc = CP_ERR_NOMEM;
			goto out;
		}
		if (n)
			memcpy(grown, keys, n * sizeof(*keys));
		keys_free(keys, cap);
		keys = grown;
		cap = n + 1;
		*sp = '\0';
		memcpy(keys[n].id, line, (size_t)(sp - line) + 1);
		rc = decode_key(sp + 1, keys[n].key);
		if (rc != CP_OK)
			goto out;
		rc = CP_ERR_INVALID;
		n++;
	}
	if (n == 0)
		goto out;
	*out = keys;
	*count = n;
	keys = NULL;
	rc = CP_OK;
out:
	keys_free(keys, cap);
	return rc;
}

/*
 * Read and parse path. CP_ERR_NOT_FOUND if it does not exist; CP_ERR_IO if
 * it is not a regular file or group/others have any access to it.
 */
static cp_rc read_keys(const char *path, struct ring_key **keys, size_t *n)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	ssize_t got;
	int fd;
	cp_rc rc = CP_ERR_IO;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? CP_ERR_NOT_FOUND : CP_ERR_IO;
	/* fstat on the open fd: the file checked is the file read. */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) != 0)
		goto out;
	if (st.st_size > FILE_MAX) {
		rc = CP_ERR_TOO_LARGE;
		goto out;
	}
	buf = calloc(1, (size_t)st.st_size + 1);
	if (!buf) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	while (len < (size_t)st.st_size) {
		got = read(fd, buf + len, (size_t)st.st_size - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break; /* shrank underneath us: parse what we have */
		len += (size_t)got;
	}
	buf[len] = '\0';
	rc = parse_keys(buf, keys, n);
out:
	if (buf)
		crypto_wipe_free_buf(buf, (size_t)st.st_size + 1);
	close(fd);
	return rc;
}

/*
 * Write keys to dir/master.keys atomically with mode 0600: private temp file
 * (O_EXCL, random name), fsync, then rename over the old file, or, with
 * exclusive, link() so an existing file (another process won the race to
 * create it) is never replaced. CP_ERR_CONFLICT if exclusive and it exists.
 */
static cp_rc write_keys(const char *dir, const struct ring_key *keys, size_t n, bool exclusive)
{
	char *path = NULL, *tmp = NULL, *text = NULL, *b64 = NULL;
	char rnd_hex[17];
	uint8_t rnd[8];
	size_t len = 0, cap = n * (ID_MAX + 64) + 1;
	ssize_t put;
	int fd = -1, dfd;
	cp_rc rc = CP_ERR_NOMEM;

	if (cp_random(rnd, sizeof(rnd)) != CP_OK)
		return CP_ERR_CRYPTO;
	cp_hex(rnd, sizeof(rnd), rnd_hex);
	path = cp_aprintf("%s/" KEYS_FILE, dir);
	tmp = cp_aprintf("%s/." KEYS_FILE ".%s", dir, rnd_hex);
	text = calloc(1, cap);
	if (!path || !tmp || !text)
		goto out;
	for (size_t i = 0; i < n; i++) {
		b64 = cp_b64(keys[i].key, KEY_LEN);
		if (!b64)
			goto out;
		len += (size_t)snprintf(text + len, cap - len, "%s %s\n", keys[i].id, b64);
		crypto_wipe_free(b64);
		b64 = NULL;
	}
	rc = CP_ERR_IO;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		goto out;
	/* The umask can only narrow 0600, but be explicit about the result. */
	if (fchmod(fd, 0600) != 0)
		goto out;
	for (size_t off = 0; off < len; off += (size_t)put) {
		put = write(fd, text + off, len - off);
		if (put < 0 && errno == EINTR) {
			put = 0;
			continue;
		}
		if (put <= 0)
			goto out;
	}
	if (fsync(fd) != 0)
		goto out;
	close(fd);
	fd = -1;
	if (exclusive) {
		if (link(tmp, path) != 0) {
			if (errno == EEXIST)
				rc = CP_ERR_CONFLICT;
			goto out;
		}
	} else if (rename(tmp, path) != 0) {
		goto out;
	}
	/* Make the new directory entry durable too. */
	dfd = open(dir, O_RDONLY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	rc = CP_OK;
out:
	if (fd >= 0)
		close(fd);
	if (tmp)
		unlink(tmp); /* after link() or a failure; no-op after rename() */
	if (text)
		crypto_wipe_free_buf(text, cap);
	crypto_wipe_free(b64);
	free(tmp);
	free(path);
	return rc;
}

static cp_rc fresh_key(struct ring_key *k, const struct ring_key *others, size_t n)
{
	do {
		if (cp_random(k->key, KEY_LEN) != CP_OK)
			return CP_ERR_CRYPTO;
		key_id(k->key, k->id);
	} while (find_key(others, n, k->id, strlen(k->id))); /* 2^-32 id clash */
	return CP_OK;
}

/* Cross-process lock on dir/master.keys.lock; returns fd or -1. */
static int file_lock(const char *dir)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char *path = cp_aprintf("%s/" KEYS_FILE ".lock", dir);
	int fd;

	if (!path)
		return -1;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	free(path);
	if (fd < 0)
		return -1;
	while (fcntl(fd, F_SETLKW, &fl) != 0) {
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

static void file_unlock(int fd)
{
	if (fd >= 0)
		close(fd); /* closing drops the fcntl lock */
}

cp_rc crypto_keyring_load(const char *data_dir, const char *master_key_b64,
			  struct crypto_keyring **out)
{
	struct crypto_keyring *r = NULL;
	struct ring_key fresh;
	char *path = NULL;
	cp_rc rc = CP_ERR_NOMEM;

	assert(out);
	if (!master_key_b64 && !data_dir)
		return CP_ERR_INVALID;
	r = calloc(1, sizeof(*r));
	if (!r)
		return CP_ERR_NOMEM;
	if (pthread_rwlock_init(&r->lock, NULL) != 0) {
		free(r);
		return CP_ERR_NOMEM;
	}
	if (master_key_b64) {
		r->from_config = true;
		r->keys = calloc(1, sizeof(*r->keys));
		if (!r->keys)
			goto out;
		r->n = 1;
		rc = decode_key(master_key_b64, r->keys[0].key);
		if (rc != CP_OK)
			goto out;
		key_id(r->keys[0].key, r->keys[0].id);
		goto out;
	}
	path = cp_aprintf("%s/" KEYS_FILE, data_dir);
	if (!path)
		goto out;
	rc = read_keys(path, &r->keys, &r->n);
	if (rc == CP_ERR_NOT_FOUND) {
		rc = fresh_key(&fresh, NULL, 0);
		if (rc == CP_OK)
			rc = write_keys(data_dir, &fresh, 1, true);
		OPENSSL_cleanse(&fresh, sizeof(fresh));
		/* CONFLICT: another process created it first; use theirs. */
		if (rc == CP_OK || rc == CP_ERR_CONFLICT)
			rc = read_keys(path, &r->keys, &r->n);
	}
out:
	free(path);
	if (rc != CP_OK) {
		crypto_keyring_free(r);
		r = NULL;
	}
	*out = r;
	return rc;
}

void crypto_keyring_free(struct crypto_keyring *r)
{
	if (!r)
		return;
	keys_free(r->keys, r->n);
	pthread_rwlock_destroy(&r->lock);
	free(r);
}

/* Shared body of rotate (add a key) and prune (keep only the current). */
static cp_rc rewrite(struct crypto_keyring *r, const char *data_dir, bool rotate)
{
	struct ring_key *keys = NULL, *next = NULL;
	size_t n = 0, m = 0;
	char *path = NULL;
	int lfd = -1;
	cp_rc rc = CP_ERR_INVALID;

	if (!r || !data_dir)
		return CP_ERR_INVALID;
	pthread_rwlock_wrlock(&r->lock);
	if (r->from_config)
		goto out;
	rc = CP_ERR_NOMEM;
	path = cp_aprintf("%s/" KEYS_FILE, data_dir);
	if (!path)
		goto out;
	rc = CP_ERR_IO;
	lfd = file_lock(data_dir);
	if (lfd < 0)
		goto out;
	/* Start from the file, not from r: another process may have rotated. */
	rc = read_keys(path, &keys, &n);
	if (rc != CP_OK)
		goto out;
	rc = CP_ERR_NOMEM;
	next = calloc(n + 1, sizeof(*next));
	if (!next)
		goto out;
	if (rotate) {
		memcpy(next, keys, n * sizeof(*keys));
		rc = fresh_key(&next[n], keys, n);
		m = n + 1;
	} else {
		rc = CP_ERR_CONFLICT;
		if (strcmp(keys[n - 1].id, r->keys[r->n - 1].id) != 0)
			goto out;
		next[0] = keys[n - 1];
		m = 1;
		rc = CP_OK;
	}
	if (rc == CP_OK)
		rc = write_keys(data_dir, next, m, false);
	if (rc != CP_OK)
		goto out;
	keys_free(r->keys, r->n);
	r->keys = next;
	r->n = m;
	next = NULL;
out:
	file_unlock(lfd);
	pthread_rwlock_unlock(&r->lock);
	keys_free(next, n + 1);
	keys_free(keys, n);
	free(path);
	return rc;
}

cp_rc crypto_keyring_rotate(struct crypto_keyring *r, const char *data_dir)
{
	assert(r && data_dir);

	return rewrite(r, data_dir, true);
}

cp_rc crypto_keyring_prune(struct crypto_keyring *r, const char *data_dir)
{
	assert(r && data_dir);

	return rewrite(r, data_dir, false);
}

void crypto_keyring_current_id(const struct crypto_keyring *r, char id[ID_MAX + 1])
{
	assert(r && id);

	pthread_rwlock_rdlock(ring_lock(r));
	memcpy(id, r->keys[r->n - 1].id, sizeof(r->keys[0].id));
	pthread_rwlock_unlock(ring_lock(r));
}

/* Locate the id inside "cpk1:<id>:<b64>"; false if not that shape. */
static bool split_sealed(const char *sealed, const char **id, size_t *idlen, const char **b64)
{
	const char *colon;

	if (!sealed || strncmp(sealed, SEALED_PREFIX, strlen(SEALED_PREFIX)) != 0)
		return false;
	*id = sealed + strlen(SEALED_PREFIX);
	colon = strchr(*id, ':');
	if (!colon || !id_valid(*id, (size_t)(colon - *id)))
		return false;
	*idlen = (size_t)(colon - *id);
	*b64 = colon + 1;
	return true;
}

cp_rc crypto_sealed_key_id(const char *sealed, char id[ID_MAX + 1])
{
	const char *p, *b64;
	size_t len;

	if (!split_sealed(sealed, &p, &len, &b64))
		return CP_ERR_INVALID;
	memcpy(id, p, len);
	id[len] = '\0';
	return CP_OK;
}

bool crypto_sealed_is_current(const struct crypto_keyring *r, const char *sealed)
{
	char id[ID_MAX + 1], cur[ID_MAX + 1];

	assert(r);
	if (crypto_sealed_key_id(sealed, id) != CP_OK)
		return false;
	crypto_keyring_current_id(r, cur);
	return strcmp(id, cur) == 0;
}

cp_rc crypto_seal(const struct crypto_keyring *r, const char *aad, const void *pt, size_t n,
		  char **out)
{
	const struct ring_key *k;
	EVP_CIPHER_CTX *ctx = NULL;
	uint8_t *buf = NULL;
	size_t buflen = NONCE_LEN + n + TAG_LEN, aadlen;
	char *b64 = NULL;
	int outl = 0;
	bool locked = false;
	cp_rc rc;

	assert(r && (pt || n == 0) && out);
	if (!aad)
		aad = "";
	aadlen = strlen(aad);
	if (!r || (!pt && n) || aadlen > AAD_MAX)
		return CP_ERR_INVALID;
	if (n > CRYPTO_SEAL_MAX)
		return CP_ERR_TOO_LARGE;
	buf = malloc(buflen);
	if (!buf)
		return CP_ERR_NOMEM;
	/* Random 96-bit nonces: safe far beyond the rows one key ever seals. */
	rc = cp_random(buf, NONCE_LEN);
	if (rc != CP_OK)
		goto out;
	rc = CP_ERR_CRYPTO;
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		goto out;
	pthread_rwlock_rdlock(ring_lock(r));
	locked = true;
	k = &r->keys[r->n - 1];
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k->key, buf) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &outl, (const uint8_t *)aad, (int)aadlen) != 1 ||
	    (n && EVP_EncryptUpdate(ctx, buf + NONCE_LEN, &outl, pt, (int)n) != 1) ||
	    EVP_EncryptFinal_ex(ctx, buf + NONCE_LEN + n, &outl) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, buf + NONCE_LEN + n) != 1)
		goto out;
	rc = CP_ERR_NOMEM;
	b64 = cp_b64(buf, buflen);
	if (!b64)
		goto out;
	*out = cp_aprintf(SEALED_PREFIX "%s:%s", k->id, b64);
	if (*out)
		rc = CP_OK;
out:
	if (locked)
		pthread_rwlock_unlock(ring_lock(r));
	ERR_clear_error();
	EVP_CIPHER_CTX_free(ctx);
	free(b64);
	free(buf);
	return rc;
}

cp_rc crypto_open(const struct crypto_keyring *r, const char *aad, const char *sealed, char **pt,
		  size_t *n)
{
	const struct ring_key *k;
	const char *id, *b64;
	EVP_CIPHER_CTX *ctx = NULL;
	uint8_t *raw = NULL;
	char *plain = NULL;
	size_t idlen, rawlen = 0, ptlen = 0, aadlen;
	int outl = 0;
	bool locked = false;
	cp_rc rc;

	assert(r && pt && n);
	if (!aad)
		aad = "";
	aadlen = strlen(aad);
	if (!r || aadlen > AAD_MAX || !split_sealed(sealed, &id, &idlen, &b64))
		return CP_ERR_INVALID;
	if (strlen(b64) > (size_t)CRYPTO_SEAL_MAX * 2)
		return CP_ERR_TOO_LARGE;
	rc = cp_b64_decode(b64, &raw, &rawlen);
	if (rc != CP_OK)
		return rc == CP_ERR_NOMEM ? rc : CP_ERR_CRYPTO;
	rc = CP_ERR_CRYPTO;
	if (rawlen < NONCE_LEN + TAG_LEN)
		goto out;
	ptlen = rawlen - NONCE_LEN - TAG_LEN;
	plain = malloc(ptlen + 1);
	ctx = EVP_CIPHER_CTX_new();
	if (!plain || !ctx) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	pthread_rwlock_rdlock(ring_lock(r));
	locked = true;
	k = find_key(r->keys, r->n, id, idlen);
	if (!k)
		goto out;
	if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k->key, raw) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &outl, (const uint8_t *)aad, (int)aadlen) != 1 ||
	    (ptlen &&
	     EVP_DecryptUpdate(ctx, (uint8_t *)plain, &outl, raw + NONCE_LEN, (int)ptlen) != 1) ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, raw + NONCE_LEN + ptlen) != 1 ||
	    EVP_DecryptFinal_ex(ctx, (uint8_t *)plain + ptlen, &outl) != 1)
		goto out;
	plain[ptlen] = '\0';
	*pt = plain;
	*n = ptlen;
	plain = NULL;
	rc = CP_OK;
out:
	if (locked)
		pthread_rwlock_unlock(ring_lock(r));
	ERR_clear_error();
	EVP_CIPHER_CTX_free(ctx);
	/* Unauthenticated plaintext must not linger either. */
	if (plain)
		crypto_wipe_free_buf(plain, ptlen + 1);
	free(raw);
	return rc;
}
