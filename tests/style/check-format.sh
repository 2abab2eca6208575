#!/usr/bin/env bash
# check-format.sh - fail when any tracked C file differs from what
# clang-format (the repository's .clang-format) makes of it. Run by CTest
# (style_clang_format); `git ls-files '*.c' '*.h' | xargs clang-format -i`
# fixes what it reports.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v clang-format >/dev/null || { echo "clang-format is not installed" >&2; exit 1; }
if [ -d .git ] || git rev-parse --git-dir >/dev/null 2>&1; then
	files=$(git ls-files '*.c' '*.h')
else
	files=$(find . -path ./build\* -prune -o \( -name '*.c' -o -name '*.h' \) -print)
fi
# shellcheck disable=SC2086
clang-format --dry-run --Werror $files
echo "clang-format: $(echo "$files" | wc -w) files clean"
