#!/usr/bin/env bash
# banned.sh - fail when a tracked C file calls a banned function: curl's list
# (scripts/checksrc.pl) and a few more, each unbounded, not thread-safe or
# unable to report an error. Run by CTest (style_banned). Comments and string
# and character literals are ignored. A use that is justified carries the
# marker "banned-ok: <why>" in a comment on the same line.
#
# What to use instead:
#   gets                          fgets
#   sprintf vsprintf              snprintf vsnprintf (check the result)
#   strcpy strcat strncat strncpy snprintf, or memcpy with a known length
#   strtok strtok_r               strchr/strcspn/strsep on a copy you own
#   sscanf vsscanf                strtol/strtoll/strtoul with end and range checks
#   atoi atol atoll atof          strtol/strtoll/strtod with end and range checks
#   gmtime localtime ctime asctime ctime_r asctime_r
#                                 gmtime_r/localtime_r and strftime
#   strerror                      strerror_r
#   tmpnam tempnam mktemp         mkstemp, mkdtemp
#   alloca getwd                  malloc, getcwd
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v python3 >/dev/null || { echo "python3 is not installed" >&2; exit 1; }
if [ -d .git ] || git rev-parse --git-dir >/dev/null 2>&1; then
	files=$(git ls-files '*.c' '*.h' | grep -v '^tests/fuzz/corpus/' || true)
else
	files=$(find . -path ./build\* -prune -o -path ./tests/fuzz/corpus -prune -o \
		\( -name '*.c' -o -name '*.h' \) -print)
fi
[ -n "$files" ] || { echo "banned.sh: no C files found" >&2; exit 1; }
# shellcheck disable=SC2086
python3 - $files <<'EOF'
import re, sys

BANNED = """gets sprintf vsprintf strcpy strcat strncat strncpy strtok strtok_r
sscanf vsscanf atoi atol atoll atof gmtime localtime ctime asctime ctime_r
asctime_r strerror tmpnam tempnam mktemp alloca getwd""".split()
use = re.compile(r"\b(" + "|".join(BANNED) + r")\s*\(")
lexeme = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|' r"'(?:\\.|[^'\\\n])*'", re.S)


def blank(m):
    # keep the newlines so that line numbers survive
    return re.sub(r"[^\n]", " ", m.group(0))


found = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8", errors="replace") as f:
        raw = f.read()
    code = lexeme.sub(blank, raw).split("\n")
    for n, (line, orig) in enumerate(zip(code, raw.split("\n")), 1):
        m = use.search(line)
        if m and "banned-ok:" not in orig:
            print(f"{path}:{n}: banned function {m.group(1)}(): {orig.strip()}")
            found += 1
if found:
    print(f"banned.sh: {found} use(s) of banned functions (see tests/style/banned.sh "
          "for what to use instead)", file=sys.stderr)
    sys.exit(1)
print(f"banned functions: {len(sys.argv) - 1} files clean")
EOF
