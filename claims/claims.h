/*
 * claims.h - hostname verification, the DNS side of hostname claims: the
 * claim timing of the configuration, queueing a property's re-check, and
 * verifying one claim from a DNS check (CNAME to one of the tenant's edges,
 * else TXT _certplane-verify.<hostname>). Used by api/ (property writes,
 * dns-check) and server/ (the job, the tick, the order engine), which
 * therefore need not include each other.
 */
#ifndef CP_CLAIMS_H
#define CP_CLAIMS_H

#include "common/common.h"
#include "common/config.h"
#include "db/db.h"

struct acme_resolver;

/* The durable job kind that re-checks every claim of a property
 * (payload {"property_id"}; its handler is server/hostname_verify.c). */
#define CLAIMS_JOB_KIND "hostname_verify"

/* The claim timing configured (hostname_claim_ttl_*, hostname_recheck_seconds). */
struct db_claim_policy claims_policy(const struct cp_config *cfg);
/* Queue the CLAIMS_JOB_KIND job of a property (deduplicated), inside the
 * caller's transaction; the caller cp_kick()s after committing.
 * CP_ERR_NOMEM, or db_job_enqueue's codes. */
cp_rc claims_enqueue(struct db *db, const char *tenant_id, const char *property_id) CP_WUR;
/*
 * Verify tenant_id's claim of hostname from check, the acme_check_hostname
 * result for it (NULL if none; check_rc its return code): CNAME chain to one
 * of the tenant's edges, else TXT _certplane-verify.<hostname> through res;
 * records the outcome in its own transaction (db_claim_record) with the
 * timing of cfg. *status: "verified" | "pending" | "owned_by_another_tenant";
 * *method: "cname" | "txt" when this check verified it, else NULL (both
 * static). CP_ERR_NOT_FOUND if the tenant has no claim of hostname.
 */
cp_rc claims_verify(const struct cp_config *cfg, struct db *db, struct acme_resolver *res,
		    const char *tenant_id, const char *hostname, json_t *check, cp_rc check_rc,
		    const char **status, const char **method) CP_WUR;

#endif
