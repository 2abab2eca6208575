/*
 * driver.c - which driver a database setting names.
 */
#include "db/driver.h"

#include <assert.h>

const struct db_driver *db_driver_for(const char *target)
{
	assert(target);
	return &db_driver_sqlite;
}
