/*
 * fuzz_spec.c - libFuzzer target for cp_spec_parse (common/), the JSON body
 * validator in front of every API handler: the input is a request body,
 * checked against a spec holding one field of every type, like the
 * handlers' specs.
 *
 * Properties: CP_OK iff no error was appended; every error is an object
 * with string "field" and "message"; the error list stays bounded (one
 * per spec field plus at most 21 for unknown fields); every output points
 * into the body and satisfies its bounds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

static const char *const colours[] = { "red", "green", "blue", NULL };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *name = NULL, *colour = NULL;
	int flag = -1;
	json_int_t count = -7;
	json_t *list = NULL, *meta = NULL, *any = NULL, *body, *errors, *e;
	bool name_given = false;
	const struct cp_spec spec[] = {
		{ .type = CP_SPEC_STRING,
		  .name = "name",
		  .required = true,
		  .out = &name,
		  .min = 1,
		  .max = 64,
		  .present = &name_given },
		CP_SPEC_BOOLEAN("flag", false, &flag),
		CP_SPEC_INTEGER("count", false, &count, -5, 1000),
		CP_SPEC_CHOICE("colour", false, &colour, colours),
		CP_SPEC_ARR("list", false, &list, 10),
		CP_SPEC_OBJ("meta", false, &meta, 256),
		CP_SPEC_JSON("any", false, &any),
		CP_SPEC_DONE,
	};
	size_t i, nfields = CP_ARRAY_LEN(spec) - 1;
	cp_rc rc;

	body = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	errors = json_array();
	if (!body || !errors)
		goto out;
	rc = cp_spec_parse(body, spec, errors);
	if ((rc == CP_OK) != (json_array_size(errors) == 0))
		abort();
	if (json_array_size(errors) > nfields + 21)
		abort(); /* a hostile body must not become a huge error list */
	json_array_foreach(errors, i, e)
	{
		if (!json_is_string(json_object_get(e, "field")) ||
		    !json_is_string(json_object_get(e, "message")) || json_object_size(e) != 2)
			abort();
	}
	if (rc != CP_OK)
		goto out;
	/* Everything filled must satisfy its spec entry. */
	if (!name || strlen(name) < 1 || strlen(name) > 64 || !name_given ||
	    name != json_string_value(json_object_get(body, "name")))
		abort();
	if (flag != -1 && flag != 0 && flag != 1)
		abort();
	if (count != -7 && (count < -5 || count > 1000))
		abort();
	if (colour && colour != colours[0] && colour != colours[1] && colour != colours[2])
		abort();
	if (list && (!json_is_array(list) || json_array_size(list) > 10))
		abort();
	if (meta) {
		char *enc = json_dumps(meta, JSON_COMPACT);

		if (!json_is_object(meta) || !enc || strlen(enc) > 256)
			abort();
		free(enc);
	}
out:
	json_decref(errors);
	json_decref(body);
	return 0;
}
