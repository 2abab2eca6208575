# Writes OUT: a C file with every SRC/*.sql migration, sorted by name, as
# const strings in struct db_migration order (db_migrations[],
# db_migrations_count: SQLite), and the same for SRC/pg/*.sql
# (db_pg_migrations[], db_pg_migrations_count: PostgreSQL). Run with cmake -P.
set(body "/* generated from the migrations folder by cmake/embed_migrations.cmake */\n")
string(APPEND body "#include <stddef.h>\nstruct db_migration { const char *name; const unsigned char *sql; size_t len; };\n")

# Appends to body the table SYMBOL (and SYMBOL_count) of DIR/*.sql; the
# strings are named PREFIX0, PREFIX1, ...
function(embed_folder dir symbol prefix)
  file(GLOB files ${dir}/*.sql)
  list(SORT files)
  set(table "")
  set(i 0)
  foreach(f ${files})
    get_filename_component(name ${f} NAME)
    file(READ ${f} hex HEX)
    string(LENGTH "${hex}" hexlen)
    math(EXPR len "${hexlen} / 2")
    string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
    string(APPEND body "static const unsigned char ${prefix}${i}[] = {${hex}0x00};\n")
    string(APPEND table "  { \"${name}\", ${prefix}${i}, ${len} },\n")
    math(EXPR i "${i} + 1")
  endforeach()
  if(i EQUAL 0)
    # C has no empty initializer list: one unused row, count 0.
    set(table "  { NULL, NULL, 0 },\n")
  endif()
  string(APPEND body "const struct db_migration ${symbol}[] = {\n${table}};\n")
  string(APPEND body "const size_t ${symbol}_count = ${i};\n")
  set(body "${body}" PARENT_SCOPE)
endfunction()

embed_folder(${SRC} db_migrations m)
embed_folder(${SRC}/pg db_pg_migrations p)
file(WRITE ${OUT}.tmp "${body}")
file(RENAME ${OUT}.tmp ${OUT})
