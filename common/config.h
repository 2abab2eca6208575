/*
 * config.h - certplane's configuration: every setting it reads, loaded once
 * at start (common/config.c) and read-only afterwards.
 */
#ifndef CP_CONFIG_H
#define CP_CONFIG_H

#include "common/common.h"

/* ---- configuration: defaults < JSON file < CERTPLANE_<KEY> environment ---- */

/* Every setting certplane reads; filled by cp_config_load, then read-only. */
struct cp_config {
	char *listen;		  /* API listener host:port */
	char *http01_listen;	  /* HTTP-01 responder host:port ("" = off) */
	char *data_dir;		  /* database, master key ring, operator token */
	char *database;		  /* SQLite file (default data_dir/certplane.db) */
	char *operator_token;	  /* operator API key (generated if unset) */
	char *master_key;	  /* base64 32-byte master key (else key ring file) */
	char *edge_zone;	  /* zone for edge hostnames */
	char *acme_directory_url; /* default CA ("letsencrypt") directory */
	char *acme_ca_bundle;	  /* trust for the ACME server ("" = system) */
	char *acme_contact_email; /* account contact ("" = none) */
	json_t *cas;		  /* object: name -> {directory_url, ca_bundle} */
	char *dns_resolver;	  /* host:port for CNAME/TXT checks ("" = system) */
	char *edge_check_address; /* host:port the edge serves TLS on ("" = no served check) */
	int renew_before_days;	  /* renewal window */
	int scheduler_interval_seconds;
	int workers;	  /* job worker threads */
	int http_threads; /* libmicrohttpd thread pool size */
	int dns01_timeout_seconds;
	int order_deadline_hours; /* an order meeting only transient CA errors fails after this */
	bool webhook_allow_private_networks;
	json_t *cors_origins;	   /* array of allowed origins */
	int max_body_bytes;	   /* request body cap (413 above) */
	int rate_limit_per_second; /* per API key; 0 = off */
	int rate_limit_burst;
	int webhook_timeout_seconds;  /* per delivery attempt */
	int webhook_dns_timeout_ms;   /* callback host lookup at registration, hard deadline */
	char *webhook_retry_schedule; /* seconds before each attempt ("[0,5,300,...]") */
	char *renew_backoff_seconds;  /* renewal retry delays after failures ("[60,600,6000,86400]")
				       */
	char *portal_dir;	      /* the built portal served at /portal/ ("" = none) */
	char *log_level;	      /* debug|info|warn|error */
	bool metrics_public;	      /* GET /metrics without a key (else operator key) */
	bool read_cache;	      /* single-object GETs from the per-thread read cache */
	int hostname_claim_ttl_days;  /* pending hostname claims are released after this */
	int hostname_claim_ttl_seconds; /* the same TTL in seconds, when > 0 (overrides days) */
	int hostname_recheck_seconds;	/* pending claims re-checked this often */
	int hostname_verified_recheck_seconds; /* verified claims re-checked this often */
	int http_client_connection_limit;      /* open connections per client address */
	int http_request_deadline_seconds;     /* to receive a request's headers and body */
	int http_idle_timeout_seconds;	       /* keep-alive / inactivity timeout */
	int net_threads;		       /* threads for requests that wait on the network */
	int net_tenant_concurrency;	       /* such requests in flight per tenant (429 above) */
	int event_streams_max;		       /* open event streams, all tenants (503 above) */
	int event_stream_keepalive_seconds;    /* a quiet stream's keepalive comment */
	int webhook_workers;		       /* worker threads of the webhook lane */
	int general_workers;		       /* worker threads of the general lane */
	int tenant_max_running_jobs; /* one tenant's running jobs per lane (<= half its workers) */
	int quota_properties;	     /* per-tenant quota defaults (operator overrides per tenant) */
	int quota_hostnames;	     /* property hostnames, over all the tenant's properties */
	int quota_certificates;
	int quota_orders_in_flight; /* ACME orders pending, validating or issuing */
	int quota_webhooks;
	int quota_edge_hostnames;
	int ca_orders_per_hour; /* scheduler's renewal order budget per CA (cas.<name> overrides) */
	int ca_order_burst;	/* orders a CA's budget admits ahead of its rate */
	int job_retention_days; /* finished jobs and webhook deliveries kept this long */
	int job_lease_seconds;	/* a job's claim; a dead instance's jobs run again after it */
	/* DCV delegation (dcv/): delegated DNS-01 through RFC 2136 UPDATE + TSIG */
	char *dcv_zone;		     /* the delegation zone ("" = feature off) */
	char *dcv_server;	     /* its authoritative server, IP:port ("[v6]:port") */
	char *dcv_tsig_name;	     /* TSIG key name */
	char *dcv_tsig_algorithm;    /* hmac-sha256 | hmac-sha384 | hmac-sha512 */
	char *dcv_tsig_secret;	     /* base64 TSIG secret (secret; or from the file) */
	char *dcv_tsig_secret_file;  /* file holding it (read at load) */
	char *dcv_label_secret;	     /* base64 key of the labels ("" = derived from TSIG) */
	json_t *acme_caa_identities; /* the default CA's CAA issuer domain names (strings) */
	/* notification channels (issue 14): email through SMTP, Slack */
	char *smtp_url;			 /* smtp://host:port or smtps:// ("" = no email channels) */
	char *smtp_from;		 /* envelope and From address */
	char *smtp_username;		 /* SMTP AUTH user ("" = no AUTH) */
	char *smtp_password;		 /* SMTP AUTH password (secret) */
	char *smtp_ca_bundle;		 /* trust for the SMTP server's TLS ("" = system) */
	int quota_notification_channels; /* per-tenant channels (email and Slack) */
};

/*
 * Load the configuration: defaults, then the JSON file at path (NULL = none),
 * then CERTPLANE_<KEY> environment variables (lists comma-separated or JSON,
 * objects as JSON). Unknown keys and wrongly typed values are errors: *err
 * gets a new message (caller frees). *out is a new config (cp_config_free).
 */
cp_rc cp_config_load(const char *path, struct cp_config **out, char **err) CP_WUR;
void cp_config_free(struct cp_config *cfg);
/* The effective configuration as JSON, secrets redacted. New reference. */
json_t *cp_config_json(const struct cp_config *cfg);
/* Parse a webhook retry schedule ("[0,5,300]" or "0,5,300": seconds to wait
 * before attempt 1, 2, ...) into out (at most max entries), *n entries.
 * CP_ERR_INVALID if empty, malformed, longer than max or an entry is
 * outside 0..604800. */
cp_rc cp_config_schedule(const char *s, int64_t *out, size_t max, size_t *n) CP_WUR;
#define CP_SCHEDULE_MAX 64

#endif
