/*
 * driver.c - which driver a database setting selects. The rule itself
 * (what a PostgreSQL target looks like) is db_pg_target in driver_pg.c,
 * where its unit test reaches it without linking the SQLite driver.
 */
#include "db/driver.h"
#include "db/db.h"
#include "db/driver_pg_internal.h"

#include <assert.h>

const struct db_driver *db_driver_for(const char *target)
{
	assert(target);
	return db_pg_target(target) ? &db_driver_pg : &db_driver_sqlite;
}

bool db_target_is_file(const char *target)
{
	return db_driver_for(target) == &db_driver_sqlite;
}
