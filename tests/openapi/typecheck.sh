#!/usr/bin/env bash
# typecheck.sh - generate TypeScript types from openapi.yaml with the pinned
# openapi-typescript and compile client-check.ts against them with the
# pinned tsc under --strict (CTest: openapi_typescript). Needs `npm ci` in
# tests/openapi (deploy/quickstart.sh test does it); fails when it was not.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$here/node_modules/.bin
for tool in openapi-typescript tsc; do
	[ -x "$bin/$tool" ] || {
		echo "typecheck.sh: $tool is not installed: run \`npm ci\` in tests/openapi" >&2
		exit 1
	}
done
work=$(mktemp -d /tmp/cp-typecheck.XXXXXX)
trap 'rm -rf "$work"' EXIT
# A field with a default may be left out of a request (the server fills
# it): without --default-non-nullable=false every such field is required.
"$bin/openapi-typescript" "$here/../../openapi.yaml" --default-non-nullable=false \
	-o "$work/api.ts" >/dev/null
cp "$here/client-check.ts" "$work/"
cat >"$work/tsconfig.json" <<'JSON'
{
  "compilerOptions": {
    "strict": true, "noEmit": true, "noUncheckedIndexedAccess": true,
    "exactOptionalPropertyTypes": true, "noImplicitOverride": true,
    "target": "es2022", "module": "es2022", "moduleResolution": "bundler",
    "lib": ["es2022", "dom"], "types": [], "skipLibCheck": false
  },
  "files": ["client-check.ts", "api.ts"]
}
JSON
"$bin/tsc" -p "$work/tsconfig.json"
echo "typecheck.sh: client-check.ts compiles under tsc --strict against the generated types"
