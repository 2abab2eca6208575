/*
 * spec.c - the declarative JSON body validator ("spec") every API handler
 * uses, and the small typed JSON member getters.
 */
#include "common/common.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Unknown fields named one by one before a single summary error. */
#define CP_SPEC_UNKNOWN_MAX 20

void cp_spec_error(json_t *errors, const char *field, const char *msg)
{
	assert(errors && field && msg);

	json_array_append_new(errors, json_pack("{s:s,s:s}", "field", field, "message", msg));
}

static bool spec_known(const struct cp_spec *spec, const char *key)
{
	for (const struct cp_spec *s = spec; s->type != CP_SPEC_END; s++)
		if (strcmp(s->name, key) == 0)
			return true;
	return false;
}

/* Check one present, non-null value against its spec entry and store it. */
static void spec_field(const struct cp_spec *s, json_t *v, json_t *errors)
{
	char msg[160];

	switch (s->type) {
	case CP_SPEC_STRING: {
		size_t len;
		if (!json_is_string(v)) {
			cp_spec_error(errors, s->name, "must be a string");
			return;
		}
		len = json_string_length(v);
		if (strlen(json_string_value(v)) != len) {
			cp_spec_error(errors, s->name, "must not contain NUL characters");
			return;
		}
		if ((json_int_t)len < s->min || (s->max > 0 && (json_int_t)len > s->max)) {
			snprintf(msg, sizeof(msg), "must be %lld to %lld characters long",
				 (long long)s->min, (long long)s->max);
			cp_spec_error(errors, s->name, msg);
			return;
		}
		*(const char **)s->out = json_string_value(v);
		break;
	}
	case CP_SPEC_BOOL:
		if (!json_is_boolean(v)) {
			cp_spec_error(errors, s->name, "must be true or false");
			return;
		}
		*(int *)s->out = json_is_true(v);
		break;
	case CP_SPEC_INT:
		if (!json_is_integer(v) || json_integer_value(v) < s->min ||
		    json_integer_value(v) > s->max) {
			snprintf(msg, sizeof(msg), "must be an integer from %lld to %lld",
				 (long long)s->min, (long long)s->max);
			cp_spec_error(errors, s->name, msg);
			return;
		}
		*(json_int_t *)s->out = json_integer_value(v);
		break;
	case CP_SPEC_ENUM: {
		size_t off = 0;
		if (json_is_string(v)) {
			for (const char *const *c = s->choices; *c; c++) {
				if (strcmp(*c, json_string_value(v)) == 0) {
					*(const char **)s->out = *c;
					return;
				}
			}
		}
		off += (size_t)snprintf(msg, sizeof(msg), "must be one of:");
		for (const char *const *c = s->choices; *c && off < sizeof(msg); c++)
			off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s \"%s\"",
						c == s->choices ? "" : ",", *c);
		cp_spec_error(errors, s->name, msg);
		break;
	}
	case CP_SPEC_ARRAY:
		if (!json_is_array(v)) {
			cp_spec_error(errors, s->name, "must be an array");
			return;
		}
		if ((json_int_t)json_array_size(v) > s->max) {
			snprintf(msg, sizeof(msg), "must have at most %lld items",
				 (long long)s->max);
			cp_spec_error(errors, s->name, msg);
			return;
		}
		*(json_t **)s->out = v;
		break;
	case CP_SPEC_OBJECT: {
		char *enc;
		size_t elen;
		if (!json_is_object(v)) {
			cp_spec_error(errors, s->name, "must be an object");
			return;
		}
		enc = json_dumps(v, JSON_COMPACT);
		elen = enc ? strlen(enc) : 0;
		free(enc);
		if (s->max > 0 && (json_int_t)elen > s->max) {
			snprintf(msg, sizeof(msg), "must encode to at most %lld bytes",
				 (long long)s->max);
			cp_spec_error(errors, s->name, msg);
			return;
		}
		*(json_t **)s->out = v;
		break;
	}
	case CP_SPEC_ANY:
		*(json_t **)s->out = v;
		break;
	case CP_SPEC_END:
		break;
	}
}

cp_rc cp_spec_parse(json_t *body, const struct cp_spec *spec, json_t *errors)
{
	size_t before = json_array_size(errors), unknown = 0;
	const char *key;
	json_t *v;

	assert(spec && errors);
	if (!json_is_object(body)) {
		cp_spec_error(errors, "body", "must be a JSON object");
		return CP_ERR_INVALID;
	}
	json_object_foreach(body, key, v)
	{
		if (spec_known(spec, key))
			continue;
		/* Name a few, then stop: a body of a million unknown keys must
		 * not become a response of a million errors. */
		if (unknown++ == CP_SPEC_UNKNOWN_MAX) {
			cp_spec_error(errors, "body", "has more unknown fields than these");
			break;
		}
		cp_spec_error(errors, key, "is not a known field");
	}
	for (const struct cp_spec *s = spec; s->type != CP_SPEC_END; s++) {
		v = json_object_get(body, s->name);
		if (!v || json_is_null(v)) {
			if (s->required)
				cp_spec_error(errors, s->name, "is required");
			continue;
		}
		if (s->present)
			*s->present = true;
		spec_field(s, v, errors);
	}
	return json_array_size(errors) == before ? CP_OK : CP_ERR_INVALID;
}

const char *cp_json_str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

int64_t cp_json_int(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}
