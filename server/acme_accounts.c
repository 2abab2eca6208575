/*
 * acme_accounts.c - the ACME accounts of the process: which CA a name means
 * (server_acme_ca), its account row with the sealed key, and each worker
 * thread's cache of registered clients (server_acme_client).
 */
#include "acme/acme.h"
#include "crypto/crypto.h"
#include "server/server_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ==== ACME clients: one per CA per worker thread, kept across jobs ==== */

/* A thread's client for one CA (the directory and nonces stay warm). */
struct ca_client {
	char ca[64];
	char account_id[CP_UUID_LEN + 1];
	struct crypto_key *key;
	struct acme_client *c;
};

#define THREAD_CLIENTS 8
struct thread_clients {
	struct ca_client slot[THREAD_CLIENTS];
};

static pthread_key_t clients_key;
static pthread_mutex_t register_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t clients_once = PTHREAD_ONCE_INIT;

static void clients_free(void *p)
{
	struct thread_clients *tc = p;

	for (int i = 0; tc && i < THREAD_CLIENTS; i++) {
		acme_client_free(tc->slot[i].c);
		crypto_key_free(tc->slot[i].key);
	}
	free(tc);
}

static void clients_init(void)
{
	(void)pthread_key_create(&clients_key, clients_free);
}

cp_rc server_acme_ca(const struct cp_config *cfg, const char *ca, const char **directory_url,
		     const char **ca_bundle)
{
	json_t *entry;

	if (strcmp(ca, "letsencrypt") == 0) {
		*directory_url = cfg->acme_directory_url;
		*ca_bundle = cfg->acme_ca_bundle;
	} else {
		entry = json_object_get(cfg->cas, ca);
		*directory_url = json_string_value(json_object_get(entry, "directory_url"));
		*ca_bundle = json_string_value(json_object_get(entry, "ca_bundle"));
	}
	if (!*directory_url || !**directory_url)
		return CP_ERR_NOT_FOUND;
	if (*ca_bundle && !**ca_bundle)
		*ca_bundle = NULL;
	return CP_OK;
}

/* Create the CA's account row (key sealed) unless it exists; read it. */
static cp_rc account_row(const struct api_ctx *ctx, struct db *db, const char *ca,
			 const char *directory_url, json_t **row)
{
	struct crypto_key *k = NULL;
	char id[CP_UUID_LEN + 1], *pem = NULL, *aad = NULL, *sealed = NULL;
	cp_rc rc = db_acme_account_get(db, ca, row);

	if (rc != CP_ERR_NOT_FOUND)
		return rc;
	cp_uuid(id);
	aad = cp_aprintf("acme_accounts:%s", id);
	rc = aad ? crypto_key_generate(CRYPTO_KEY_ECDSA_P256, &k) : CP_ERR_NOMEM;
	if (rc == CP_OK)
		rc = crypto_key_to_pem(k, &pem);
	if (rc == CP_OK)
		rc = crypto_seal(ctx->keyring, aad, pem, strlen(pem), &sealed);
	if (rc == CP_OK)
		rc = db_acme_account_create(db, id, ca, directory_url, sealed);
	/* Another worker created the CA's row first (ca is unique): use theirs. */
	if (rc == CP_ERR_CONFLICT)
		rc = CP_OK;
	if (rc == CP_OK)
		rc = db_acme_account_get(db, ca, row);
	crypto_key_free(k);
	crypto_wipe_free(pem);
	free(aad);
	free(sealed);
	return rc;
}

/* Take the registration lease name, waiting up to ACCOUNT_LEASE_WAIT_S for
 * another instance that holds it (it is registering the same key): whether
 * this process holds it. Past the wait, or when the database cannot say,
 * the caller registers anyway: newAccount for a key that has an account
 * answers that account, so a second registration is harmless, only slower. */
#define ACCOUNT_LEASE_TTL_S 60
#define ACCOUNT_LEASE_WAIT_S 10
static bool account_lease(struct db *db, const char *name)
{
	bool held = false;

	for (int i = 0; i < ACCOUNT_LEASE_WAIT_S * 4; i++) {
		if (db_lease_hold(db, name, server_instance_id(), ACCOUNT_LEASE_TTL_S, &held) !=
		    CP_OK)
			return false;
		if (held)
			return true;
		usleep(250 * 1000);
	}
	return false;
}

cp_rc server_acme_client(const struct api_ctx *ctx, struct db *db, const char *ca,
			 struct acme_client **client, struct acme_result *r)
{
	struct thread_clients *tc;
	struct ca_client *slot = NULL;
	const char *dir_url, *bundle, *acct_url, *url;
	json_t *row = NULL;
	char *aad = NULL, *pem = NULL;
	size_t n = 0;
	cp_rc rc;

	pthread_once(&clients_once, clients_init);
	tc = pthread_getspecific(clients_key);
	if (!tc) {
		tc = calloc(1, sizeof(*tc));
		if (!tc || pthread_setspecific(clients_key, tc) != 0) {
			free(tc);
			return CP_ERR_NOMEM;
		}
	}
	if ((rc = server_acme_ca(ctx->cfg, ca, &dir_url, &bundle)) != CP_OK)
		return CP_ERR_INVALID;
	if ((rc = account_row(ctx, db, ca, dir_url, &row)) != CP_OK)
		goto out;
	acct_url = json_string_value(json_object_get(row, "account_url"));
	for (int i = 0; i < THREAD_CLIENTS && !slot; i++)
		if (strcmp(tc->slot[i].ca, ca) == 0)
			slot = &tc->slot[i];
	if (slot && strcmp(slot->account_id, json_string_value(json_object_get(row, "id"))) != 0) {
		acme_client_free(slot->c);
		crypto_key_free(slot->key);
		memset(slot, 0, sizeof(*slot));
		slot = NULL;
	}
	if (!slot) {
		for (int i = 0; i < THREAD_CLIENTS && !slot; i++)
			if (!tc->slot[i].c)
				slot = &tc->slot[i];
		if (!slot) { /* more CAs than slots: recycle the first */
			slot = &tc->slot[0];
			acme_client_free(slot->c);
			crypto_key_free(slot->key);
			memset(slot, 0, sizeof(*slot));
		}
		const json_t *entry = json_object_get(ctx->cfg->cas, ca);
		struct acme_config ac = {
			.directory_url = dir_url,
			.ca_bundle = bundle,
			/* External Account Binding where the CA requires it */
			.eab_kid = json_string_value(json_object_get(entry, "eab_kid")),
			.eab_hmac_key = json_string_value(json_object_get(entry, "eab_hmac_key")),
		};
		const char *id = json_string_value(json_object_get(row, "id"));
		aad = cp_aprintf("acme_accounts:%s", id);
		rc = aad ? crypto_open(ctx->keyring, aad,
				       json_string_value(json_object_get(row, "key")), &pem, &n)
			 : CP_ERR_NOMEM;
		if (rc == CP_OK)
			rc = crypto_key_from_pem(pem, n, NULL, &slot->key, NULL);
		ac.account_key = slot->key;
		ac.account_url = acct_url;
		if (rc == CP_OK)
			rc = acme_client_new(&ac, &slot->c);
		if (rc != CP_OK) {
			crypto_key_free(slot->key);
			memset(slot, 0, sizeof(*slot));
			goto out;
		}
		snprintf(slot->ca, sizeof(slot->ca), "%s", ca);
		snprintf(slot->account_id, sizeof(slot->account_id), "%s", id);
	}
	/* Another thread may have re-registered (or forgotten) the account. */
	url = acme_client_account_url(slot->c);
	if ((acct_url == NULL) != (url == NULL) || (acct_url && strcmp(acct_url, url) != 0))
		if ((rc = acme_client_set_account_url(slot->c, acct_url)) != CP_OK)
			goto out;
	if (!acct_url) {
		/* One registration at a time per process (the mutex) and across
		 * instances (a lease in the database): concurrent newAccount
		 * requests for one key hang Pebble, and one is all we need. The
		 * winner stores the URL; the others find it under the lock. */
		const char *email = ctx->cfg->acme_contact_email;
		json_t *again = NULL;
		char lease[96];
		bool leased;

		snprintf(lease, sizeof(lease), "acme-account:%s", ca);
		pthread_mutex_lock(&register_lock);
		leased = account_lease(db, lease);
		rc = db_acme_account_get(db, ca, &again);
		acct_url = json_string_value(json_object_get(again, "account_url"));
		if (rc == CP_OK && acct_url) {
			rc = acme_client_set_account_url(slot->c, acct_url);
		} else if (rc == CP_OK) {
			rc = acme_account_ensure(slot->c, email && *email ? email : NULL, &url, r);
			if (rc == CP_OK)
				rc = db_acme_account_set_url(db, ca, url);
			if (rc == CP_OK)
				cp_log_json(CP_LOG_INFO, "acme.account",
					    json_pack("{s:s,s:s}", "ca", ca, "account_url", url));
		}
		if (leased && db_lease_release(db, lease, server_instance_id()) != CP_OK)
			cp_logf(CP_LOG_WARN, "acme.account", "could not release %s", lease);
		pthread_mutex_unlock(&register_lock);
		json_decref(again);
		if (rc != CP_OK)
			goto out;
	}
	*client = slot->c;
out:
	json_decref(row);
	free(aad);
	crypto_wipe_free_buf(pem, n);
	return rc;
}
