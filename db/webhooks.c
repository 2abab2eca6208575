/*
 * webhooks.c - callback URL endpoints and their deliveries.
 * (Placeholder fan-out until the webhooks capability lands: no endpoints
 * exist yet, so an event has nobody to deliver to.)
 */
#include "db/db_internal.h"

cp_rc db_webhook_fanout(struct db *db, const char *tenant_id, const char *event_id,
			const char *type)
{
	(void)db;
	(void)tenant_id;
	(void)event_id;
	(void)type;
	return CP_OK;
}
