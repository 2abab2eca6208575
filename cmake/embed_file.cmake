# Writes OUT: a C file holding SRC's bytes as `cp_openapi_yaml` (NUL-ended).
file(READ ${SRC} hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
file(WRITE ${OUT}.tmp "/* generated from openapi.yaml */\n#include <stddef.h>\nconst unsigned char cp_openapi_yaml[] = {${hex}0x00};\nconst size_t cp_openapi_yaml_len = ${len};\n")
file(RENAME ${OUT}.tmp ${OUT})
