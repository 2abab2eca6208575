/*
 * channel_send.c - what a notification channel that is not a webhook
 * receives (issue 14): the text of a lifecycle event (or of an email
 * address's verification) as a subject and a plain body, sent as one email
 * through the configured SMTP relay, or as a Slack-compatible
 * {"text": "..."} POST (webhook_delivery.c posts it, with the webhooks'
 * SSRF guard). webhook_delivery.c is the one delivery engine: it loads the
 * delivery, calls the send function of the channel's kind once, and keeps
 * the retry schedule, so email and Slack retry exactly as webhooks do.
 *
 * Header safety: every value taken from tenant or event data is cleaned
 * of control bytes (CR and LF included) before it goes into a line, and
 * the subject and the recipient are ASCII only; the address was validated
 * at registration (cp_email_valid) and is checked again before use. The
 * SMTP password is handed to libcurl only, never logged. TLS is always
 * verified: smtp:// requires STARTTLS (CURLUSESSL_ALL), smtps:// is TLS
 * from the start, both against smtp_ca_bundle (or the system's roots).
 */
#include "common/buf.h"
#include "crypto/crypto.h"
#include "server/server_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

/* Longest line of the text body (RFC 5322 allows 998 bytes a line). */
#define LINE_MAX_BYTES 900
/* Longest subject, and of a message as a whole. */
#define SUBJECT_MAX 200
#define MESSAGE_MAX (64 * 1024)

/* Append "label: value" as one line, value cleaned: control bytes (CR, LF,
 * tab...) become spaces, ascii_only also turns non-ASCII into '?', and the
 * value is cut at max bytes. NULL or empty value: nothing; "\n": a blank
 * line. Errors are sticky in *rc: after one, nothing more is added. */
static void line_add(struct cp_buf *b, const char *label, const char *value, size_t max,
		     bool ascii_only, cp_rc *rc)
{
	size_t n = 0;

	if (*rc != CP_OK || !value || !*value)
		return;
	if (strcmp(value, "\n") == 0) {
		*rc = cp_buf_add(b, "\r\n", 2);
		return;
	}
	if (label)
		*rc = cp_buf_addf(b, "%s: ", label);
	for (const unsigned char *p = (const unsigned char *)value; *rc == CP_OK && *p && n < max;
	     p++, n++) {
		unsigned char c = *p < 0x20 || *p == 0x7f ? ' ' : *p;
		if (ascii_only && c > 0x7f)
			c = '?';
		*rc = cp_buf_addc(b, (char)c);
	}
	if (*rc == CP_OK)
		*rc = cp_buf_add(b, "\r\n", 2);
}

/* The event's hostnames as "a, b, c" (a certificate event's "hostnames",
 * an order's "identifiers", an authorization's "domain"); new string or
 * NULL when there are none. */
static char *hostnames_of(json_t *data)
{
	json_t *arr = json_object_get(data, "hostnames"), *v;
	struct cp_buf b;
	size_t i;

	if (!json_is_array(arr))
		arr = json_object_get(data, "identifiers");
	if (!json_is_array(arr))
		return cp_json_str(data, "domain") ? cp_strdup(cp_json_str(data, "domain")) : NULL;
	cp_buf_init(&b, LINE_MAX_BYTES);
	json_array_foreach(arr, i, v)
	{
		const char *h = json_string_value(v);
		if (h && cp_buf_addf(&b, "%s%s", i ? ", " : "", h) != CP_OK)
			break;
	}
	return cp_buf_take(&b, NULL);
}

/* The verification mail's subject and body: the token, and how to use it. */
static cp_rc verification_text(const struct api_ctx *ctx, json_t *d, struct cp_buf *subject,
			       struct cp_buf *body)
{
	const char *channel_id = cp_json_str(d, "webhook_id");
	char *aad = cp_aprintf("webhooks:%s", channel_id ? channel_id : ""), *token = NULL;
	char *how = NULL;
	size_t n = 0;
	cp_rc rc = aad ? crypto_open(ctx->keyring, aad, cp_json_str(d, "secret"), &token, &n)
		       : CP_ERR_NOMEM;

	if (rc != CP_OK)
		goto out;
	line_add(subject, NULL, "Verify this address for certplane notifications", SUBJECT_MAX,
		 true, &rc);
	line_add(body, NULL,
		 "This address was registered to receive certificate lifecycle notifications.",
		 LINE_MAX_BYTES, false, &rc);
	line_add(body, NULL, "To confirm, send this token (it is valid once):", LINE_MAX_BYTES,
		 false, &rc);
	line_add(body, NULL, "\n", 2, false, &rc);
	line_add(body, "Token", token, LINE_MAX_BYTES, true, &rc);
	line_add(body, "Channel", channel_id, LINE_MAX_BYTES, true, &rc);
	line_add(body, NULL, "\n", 2, false, &rc);
	how = cp_aprintf("POST /v1/notification-channels/%s/verify {\"token\": \"%s\"}",
			 channel_id ? channel_id : "", token);
	if (!how)
		rc = CP_ERR_NOMEM;
	line_add(body, NULL, how, LINE_MAX_BYTES, false, &rc);
	line_add(body, NULL, "If you did not expect this mail, ignore it: nothing else is sent.",
		 LINE_MAX_BYTES, false, &rc);
out:
	crypto_wipe_free(how);
	crypto_wipe_free_buf(token, n);
	free(aad);
	return rc;
}

cp_rc server_channel_message(const struct api_ctx *ctx, json_t *d, char **subject_out,
			     char **body_out)
{
	const char *type = cp_json_str(d, "event_type");
	json_t *ev = json_object_get(d, "body"), *data = json_object_get(ev, "data");
	struct cp_buf subject, body;
	char *hosts = NULL, *subj = NULL;
	cp_rc rc = CP_OK;

	*subject_out = *body_out = NULL;
	cp_buf_init(&subject, SUBJECT_MAX + 8);
	cp_buf_init(&body, MESSAGE_MAX);
	if (!type)
		type = cp_json_str(ev, "type");
	if (type && strcmp(type, DB_EVENT_CHANNEL_VERIFICATION) == 0) {
		rc = verification_text(ctx, d, &subject, &body);
		goto out;
	}
	hosts = hostnames_of(data);
	subj = cp_aprintf("[certplane] %s%s%s", type ? type : "event", hosts ? ": " : "",
			  hosts ? hosts : "");
	if (!subj) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	line_add(&subject, NULL, subj, SUBJECT_MAX, true, &rc);
	line_add(&body, "Event", type, LINE_MAX_BYTES, false, &rc);
	line_add(&body, "Hostnames", hosts, LINE_MAX_BYTES, false, &rc);
	line_add(&body, "Certificate", cp_json_str(data, "certificate_id"), LINE_MAX_BYTES, false,
		 &rc);
	line_add(&body, "Certificate name", cp_json_str(data, "certificate_name"), LINE_MAX_BYTES,
		 false, &rc);
	line_add(&body, "Order", cp_json_str(data, "order_id"), LINE_MAX_BYTES, false, &rc);
	line_add(&body, "Reason", cp_json_str(data, "reason"), LINE_MAX_BYTES, false, &rc);
	line_add(&body, "Detail", cp_json_str(data, "detail"), LINE_MAX_BYTES, false, &rc);
	line_add(&body, "Next attempt", cp_json_str(data, "next_attempt_at"), LINE_MAX_BYTES, false,
		 &rc);
	line_add(&body, "Expires", cp_json_str(data, "not_after"), LINE_MAX_BYTES, false, &rc);
	line_add(&body, "Event id", cp_json_str(ev, "id"), LINE_MAX_BYTES, false, &rc);
	line_add(&body, "Time", cp_json_str(ev, "timestamp"), LINE_MAX_BYTES, false, &rc);
out:
	free(hosts);
	free(subj);
	if (rc == CP_OK && (!subject.len || !body.len))
		rc = CP_ERR_INTERNAL; /* every message has both */
	if (rc == CP_OK) {
		/* The subject is one header value: without its line end. */
		*subject_out = cp_buf_take(&subject, NULL);
		(*subject_out)[strcspn(*subject_out, "\r\n")] = '\0';
		*body_out = cp_buf_take(&body, NULL);
	}
	cp_buf_free(&subject);
	cp_buf_free(&body);
	return rc;
}

/* The message being uploaded: libcurl reads it in pieces. */
struct upload {
	const char *p;
	size_t left;
};

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct upload *u = userdata;
	size_t n = size * nitems < u->left ? size * nitems : u->left;

	memcpy(buf, u->p, n);
	u->p += n;
	u->left -= n;
	return n;
}

/* The whole RFC 5322 message to address: headers, blank line, body (CRLF
 * lines). libcurl dot-stuffs lines that start with '.'. New string. */
static char *email_render(const struct api_ctx *ctx, json_t *d, const char *to, const char *subject,
			  const char *body)
{
	char date[64];
	struct tm tm;
	time_t now = (time_t)cp_now();

	if (!gmtime_r(&now, &tm) ||
	    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0)
		return NULL;
	return cp_aprintf("Date: %s\r\nFrom: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
			  "Message-ID: <%s@certplane.invalid>\r\nMIME-Version: 1.0\r\n"
			  "Content-Type: text/plain; charset=utf-8\r\n"
			  "Content-Transfer-Encoding: 8bit\r\nAuto-Submitted: auto-generated\r\n"
			  "\r\n%s",
			  date, ctx->cfg->smtp_from, to, subject, cp_json_str(d, "delivery_id"),
			  body);
}

void server_channel_email_send(const struct api_ctx *ctx, json_t *d, struct server_send_result *r)
{
	const struct cp_config *cfg = ctx->cfg;
	const char *to = cp_json_str(d, "url"), *why = NULL;
	char *subject = NULL, *body = NULL, *msg = NULL, *from = NULL, *rcpt = NULL;
	struct curl_slist *rcpts = NULL;
	struct upload u;
	CURL *curl = NULL;
	CURLcode code;
	int64_t t0 = cp_mono_ms();
	int timeout = cfg->webhook_timeout_seconds;
	cp_rc rc;

	memset(r, 0, sizeof(*r));
	if (!cfg->smtp_url[0] || !cp_email_valid(cfg->smtp_from, &why)) {
		snprintf(r->error, sizeof(r->error),
			 "email is not configured: smtp_url and a valid smtp_from are needed");
		goto out;
	}
	if (!cp_email_valid(to, &why)) {
		snprintf(r->error, sizeof(r->error), "the address is not valid: %s", why);
		goto out;
	}
	rc = server_channel_message(ctx, d, &subject, &body);
	if (rc != CP_OK) {
		snprintf(r->error, sizeof(r->error), "cannot write the message: %s", cp_rc_str(rc));
		goto out;
	}
	msg = email_render(ctx, d, to, subject, body);
	from = cp_aprintf("<%s>", cfg->smtp_from);
	rcpt = cp_aprintf("<%s>", to);
	rcpts = rcpt ? curl_slist_append(NULL, rcpt) : NULL;
	curl = curl_easy_init();
	if (!msg || !from || !rcpts || !curl) {
		snprintf(r->error, sizeof(r->error), "out of memory");
		goto out;
	}
	u = (struct upload){ .p = msg, .left = strlen(msg) };
	curl_easy_setopt(curl, CURLOPT_URL, cfg->smtp_url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(curl, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
	if (cfg->smtp_ca_bundle[0])
		curl_easy_setopt(curl, CURLOPT_CAINFO, cfg->smtp_ca_bundle);
	if (cfg->smtp_username[0]) {
		curl_easy_setopt(curl, CURLOPT_USERNAME, cfg->smtp_username);
		curl_easy_setopt(curl, CURLOPT_PASSWORD, cfg->smtp_password);
	}
	curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpts);
	curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
	curl_easy_setopt(curl, CURLOPT_READDATA, &u);
	curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(curl, CURLOPT_PROXY, "");
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)timeout);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, (long)(timeout < 10 ? timeout : 10));
	code = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r->status);
	if (code == CURLE_OK) {
		/* The relay took the message: its last reply, 250 after DATA. */
		if (r->status < 200 || r->status > 299)
			r->status = 250;
	} else {
		/* The SMTP reply code (4xx, 5xx) stays in status_code; the
		 * outcome is a failure whatever it is. */
		if (r->status >= 200 && r->status <= 299)
			r->status = 0;
		snprintf(r->error, sizeof(r->error), "SMTP: %s", curl_easy_strerror(code));
	}
out:
	r->latency_ms = cp_mono_ms() - t0;
	curl_slist_free_all(rcpts);
	curl_easy_cleanup(curl);
	free(subject);
	free(body);
	free(msg);
	free(from);
	free(rcpt);
}

cp_rc server_channel_slack_body(const struct api_ctx *ctx, json_t *d, char **out)
{
	char *subject = NULL, *body = NULL, *text = NULL;
	cp_rc rc = server_channel_message(ctx, d, &subject, &body);
	json_t *o = NULL;

	*out = NULL;
	if (rc != CP_OK)
		return rc;
	/* Slack's text: the subject in bold, then the body's lines. */
	text = cp_aprintf("*%s*\n%s", subject, body);
	if (text) {
		size_t j = 0;
		for (size_t i = 0; text[i]; i++)
			if (text[i] != '\r')
				text[j++] = text[i];
		text[j] = '\0';
	}
	o = text ? json_pack("{s:s}", "text", text) : NULL;
	*out = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	free(subject);
	free(body);
	free(text);
	return *out ? CP_OK : CP_ERR_NOMEM;
}
