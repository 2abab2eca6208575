#!/usr/bin/env bash
# check-layering.sh - fail when the module layering is broken. Run by CTest
# (style_layering). The rules:
# - only server/ includes server/ headers: api/ and the modules below it
#   reach the process through struct api_ctx or a shared module (claims/,
#   netpolicy/), so api/ and server/ never include each other in a cycle;
# - api/ headers are included only by api/ and server/ (the modules below
#   know no handler);
# - the route table (server/routes.c) points only at handlers of api/.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail=0
# Every other top-level folder holding C is a module below api/.
if git rev-parse --git-dir >/dev/null 2>&1; then
	files=$(git ls-files '*.c' '*.h')
else
	files=$(find . -path ./build\* -prune -o \( -name '*.c' -o -name '*.h' \) -print | sed 's|^\./||')
fi
below=$(echo "$files" | awk -F/ 'NF > 1 { print $1 }' | sort -u | grep -vxE 'api|server|tests')
[ -n "$below" ] || { echo "layering: no modules found" >&2; exit 1; }
for dir in api $below; do
	if hits=$(grep -n '#include "server/' "$dir"/*.[ch] 2>/dev/null); then
		echo "layering: $dir/ includes a server/ header:" >&2
		echo "$hits" >&2
		fail=1
	fi
done
for dir in $below; do
	if hits=$(grep -n '#include "api/' "$dir"/*.[ch] 2>/dev/null); then
		echo "layering: $dir/ includes an api/ header:" >&2
		echo "$hits" >&2
		fail=1
	fi
done
# Rows of the table look like { "GET", "/path", handler, AUTH ... }.
handlers=$(grep -oE '^\s*\{ *"[A-Z]+", *"[^"]*", *[A-Za-z_0-9]+' server/routes.c |
	sed -E 's/.*, *//')
rows=$(grep -cE '^\s*\{ *"[A-Z]+"' server/routes.c || true)
[ -n "$handlers" ] || { echo "layering: no route rows found in server/routes.c" >&2; exit 1; }
# A row wrapped before its handler would escape the check: refuse it.
if [ "$(echo "$handlers" | wc -l)" != "$rows" ]; then
	echo "layering: $rows route rows but $(echo "$handlers" | wc -l) handlers read" >&2
	exit 1
fi
if bad=$(echo "$handlers" | grep -v '^api_'); then
	echo "layering: route handlers outside api/ (not api_*):" >&2
	echo "$bad" >&2
	fail=1
fi
[ "$fail" = 0 ] || exit 1
echo "layering: $(echo "$handlers" | wc -l) routes, all api_* handlers; no server/ includes outside server/"
