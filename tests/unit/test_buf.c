/*
 * test_buf.c - the bounded growable buffer (common/buf.h): growth, the cap
 * on every add, NUL termination, take and reset, and that a failed add
 * leaves the content as it was; the JSON writer (cp_jw_*): the same bytes
 * as jansson's compact dump for every byte value, separators, integers at
 * the limits, timestamps, and a sticky first error.
 */
#include "common/buf.h"
#include "tests/unit/check.h"

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void test_empty(void)
{
	struct cp_buf b;
	size_t len = 99;

	cp_buf_init(&b, 16);
	CHECK(b.p == NULL && b.len == 0 && b.max == 16 && !b.wipe);
	CHECK(strcmp(cp_buf_str(&b), "") == 0);
	CHECK(cp_buf_take(&b, &len) == NULL);
	CHECK(len == 0);
	CHECK_RC(cp_buf_add(&b, NULL, 0), CP_OK);
	CHECK(b.p && b.p[0] == '\0' && b.len == 0);
	cp_buf_free(&b);
	CHECK(b.p == NULL && b.cap == 0 && b.max == 16);
	cp_buf_free(NULL);
}

static void test_add_and_cap(void)
{
	struct cp_buf b;

	cp_buf_init(&b, 8);
	CHECK_RC(cp_buf_add(&b, "abcd", 4), CP_OK);
	CHECK_RC(cp_buf_addc(&b, 'e'), CP_OK);
	CHECK(b.len == 5 && strcmp(b.p, "abcde") == 0);
	/* Over the cap: refused whole, content unchanged. */
	CHECK_RC(cp_buf_add(&b, "fghi", 4), CP_ERR_TOO_LARGE);
	CHECK(b.len == 5 && strcmp(b.p, "abcde") == 0);
	CHECK_RC(cp_buf_add(&b, "fgh", 3), CP_OK); /* exactly max */
	CHECK(b.len == 8 && strcmp(b.p, "abcdefgh") == 0);
	CHECK(b.cap <= b.max + 1);
	CHECK_RC(cp_buf_addc(&b, 'x'), CP_ERR_TOO_LARGE);
	CHECK_RC(cp_buf_addf(&b, "%d", 1), CP_ERR_TOO_LARGE);
	CHECK(strcmp(b.p, "abcdefgh") == 0);
	/* A huge n must not wrap the length check. */
	CHECK_RC(cp_buf_add(&b, "", SIZE_MAX), CP_ERR_TOO_LARGE);
	cp_buf_free(&b);
}

static void test_addf_growth(void)
{
	struct cp_buf b;
	size_t i, len;
	char *s;

	cp_buf_init(&b, 1 << 20);
	for (i = 0; i < 10000; i++)
		CHECK_RC(cp_buf_addf(&b, "%05zu,", i), CP_OK);
	CHECK(b.len == 60000);
	CHECK(b.p[b.len] == '\0');
	CHECK(memcmp(b.p, "00000,00001,", 12) == 0);
	CHECK(memcmp(b.p + 59994, "09999,", 6) == 0);
	/* A formatted string longer than the room left grows in one step. */
	CHECK_RC(cp_buf_addf(&b, "%4000s|", "x"), CP_OK);
	CHECK(b.len == 64001 && b.p[64000] == '|' && b.p[64001] == '\0');
	s = cp_buf_take(&b, &len);
	CHECK(s && len == 64001 && strlen(s) == len);
	CHECK(b.p == NULL && b.len == 0 && b.max == 1 << 20);
	free(s);
	/* Reusable after take. */
	CHECK_RC(cp_buf_addf(&b, "%s-%d", "again", 2), CP_OK);
	CHECK(strcmp(cp_buf_str(&b), "again-2") == 0);
	cp_buf_free(&b);
}

static void test_addf_cap(void)
{
	struct cp_buf b;

	cp_buf_init(&b, 300);
	CHECK_RC(cp_buf_addf(&b, "%290s", "a"), CP_OK);
	CHECK(b.len == 290);
	/* Ten more fit exactly, eleven do not, and the tail stays clean. */
	CHECK_RC(cp_buf_addf(&b, "%11s", "b"), CP_ERR_TOO_LARGE);
	CHECK(b.len == 290 && b.p[290] == '\0');
	CHECK_RC(cp_buf_addf(&b, "%10s", "c"), CP_OK);
	CHECK(b.len == 300 && b.p[299] == 'c' && b.p[300] == '\0');
	cp_buf_free(&b);
}

static void test_wipe_and_reset(void)
{
	struct cp_buf b;
	char chunk[1000];
	size_t i;

	memset(chunk, 'k', sizeof(chunk));
	cp_buf_init(&b, 100000);
	b.wipe = true;
	/* Regrowth on a wiping buffer copies instead of realloc; content kept. */
	for (i = 0; i < 50; i++)
		CHECK_RC(cp_buf_add(&b, chunk, sizeof(chunk)), CP_OK);
	CHECK(b.len == 50000);
	for (i = 0; i < b.len && b.p[i] == 'k'; i++)
		;
	CHECK(i == 50000 && b.p[50000] == '\0');
	cp_buf_reset(&b);
	CHECK(b.len == 0 && b.p && b.p[0] == '\0' && b.cap >= 50001);
	CHECK(b.wipe);
	CHECK_RC(cp_buf_add(&b, "z", 1), CP_OK);
	CHECK(strcmp(cp_buf_str(&b), "z") == 0);
	cp_buf_free(&b);
	CHECK(b.p == NULL && b.wipe);
}

/* Every byte a string can hold (valid UTF-8 around each one) writes what
 * json_dumps writes for the same string. */
static void test_jw_escapes_as_jansson(void)
{
	for (int c = 1; c < 0x80; c++) {
		char s[8], *want;
		struct cp_buf b;
		struct cp_jw w;
		json_t *j;

		snprintf(s, sizeof(s), "a%c\xc3\xa9", c);
		j = json_string(s);
		want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
		cp_buf_init(&b, 64);
		cp_jw_init(&w, &b);
		cp_jw_cstr(&w, s);
		CHECK_RC(cp_jw_rc(&w), CP_OK);
		CHECK(want && strcmp(cp_buf_str(&b), want) == 0);
		free(want);
		json_decref(j);
		cp_buf_free(&b);
	}
}

static void test_jw_shapes(void)
{
	struct cp_buf b;
	struct cp_jw w;

	cp_buf_init(&b, 4096);
	cp_jw_init(&w, &b);
	cp_jw_open(&w, '{');
	cp_jw_key(&w, "a");
	cp_jw_int(&w, LLONG_MIN);
	cp_jw_key(&w, "b");
	cp_jw_open(&w, '[');
	cp_jw_int(&w, 0);
	cp_jw_int(&w, LLONG_MAX);
	cp_jw_bool(&w, true);
	cp_jw_null(&w);
	cp_jw_cstr(&w, NULL);
	cp_jw_raw(&w, "{\"x\":[]}", 8);
	cp_jw_raw(&w, NULL, 0);
	cp_jw_open(&w, '{');
	cp_jw_close(&w, '}');
	cp_jw_close(&w, ']');
	cp_jw_key(&w, "t");
	cp_jw_time(&w, 951782400);
	cp_jw_key(&w, "e");
	cp_jw_str(&w, "x\ny", 3);
	cp_jw_close(&w, '}');
	CHECK_RC(cp_jw_rc(&w), CP_OK);
	CHECK(strcmp(cp_buf_str(&b),
		     "{\"a\":-9223372036854775808,\"b\":[0,9223372036854775807,true,null,null,"
		     "{\"x\":[]},null,{}],\"t\":\"2000-02-29T00:00:00Z\",\"e\":\"x\\ny\"}") == 0);
	cp_buf_free(&b);

	/* Not UTF-8: refused, and the error sticks (later adds are no-ops). */
	cp_buf_init(&b, 4096);
	cp_jw_init(&w, &b);
	cp_jw_open(&w, '[');
	cp_jw_cstr(&w, "\xff");
	cp_jw_int(&w, 1);
	CHECK_RC(cp_jw_rc(&w), CP_ERR_INVALID);
	CHECK(strcmp(cp_buf_str(&b), "[\"") == 0);
	cp_buf_free(&b);
	/* cp_utf8_valid's rules: overlong, surrogate, truncated, NUL refused;
	 * 2-, 3- and 4-byte forms kept as they are. */
	{
		static const char *const bad[] = { "\xc0\xaf", "\xed\xa0\x80", "a\xe2\x82",
						   "\xf5\x80\x80\x80" };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			cp_buf_init(&b, 64);
			cp_jw_init(&w, &b);
			cp_jw_cstr(&w, bad[i]);
			CHECK_RC(cp_jw_rc(&w), CP_ERR_INVALID);
			cp_buf_free(&b);
		}
		cp_buf_init(&b, 64);
		cp_jw_init(&w, &b);
		cp_jw_str(&w, "a\0b", 3);
		CHECK_RC(cp_jw_rc(&w), CP_ERR_INVALID);
		cp_buf_free(&b);
		cp_buf_init(&b, 64);
		cp_jw_init(&w, &b);
		cp_jw_cstr(&w, "\xc3\xa9\xe2\x9c\x93\xf0\x9f\x94\x92\"");
		CHECK_RC(cp_jw_rc(&w), CP_OK);
		CHECK(strcmp(cp_buf_str(&b), "\"\xc3\xa9\xe2\x9c\x93\xf0\x9f\x94\x92\\\"\"") == 0);
		cp_buf_free(&b);
	}

	/* Over the cap: CP_ERR_TOO_LARGE, the content a whole prefix. */
	cp_buf_init(&b, 10);
	cp_jw_init(&w, &b);
	cp_jw_open(&w, '[');
	cp_jw_cstr(&w, "0123456789");
	cp_jw_close(&w, ']');
	CHECK_RC(cp_jw_rc(&w), CP_ERR_TOO_LARGE);
	CHECK(b.len <= 10);
	cp_buf_free(&b);
}

int main(void)
{
	test_empty();
	test_add_and_cap();
	test_addf_growth();
	test_addf_cap();
	test_wipe_and_reset();
	test_jw_escapes_as_jansson();
	test_jw_shapes();
	return check_exit("test_buf");
}
