#!/bin/sh
# rigger onstart loader. Vast.ai limits onstart to about 4 KB, so the real
# bootstrap script (src/bootstrap/bootstrap.sh) travels base64-encoded in
# RIGGER_SCRIPT_0, RIGGER_SCRIPT_1, ... (each within the 256-character limit
# on a variable); this joins, decodes and runs it.
e=${RIGGER_ETC_ENVIRONMENT:-/etc/environment}
# shellcheck disable=SC1090
[ -r "$e" ] && set -a && . "$e" && set +a
f=${TMPDIR:-/tmp}/rigger-bootstrap.$$.sh
n=0
: >"$f.b64"
while eval "c=\${RIGGER_SCRIPT_$n-}"; [ -n "$c" ]; do
  printf %s "$c" >>"$f.b64"
  n=$((n + 1))
done
if base64 -d "$f.b64" >"$f" 2>/dev/null; then
  rm -f "$f.b64"
  exec sh "$f"
fi
echo "rigger-bootstrap: cannot decode the bootstrap script ($n parts; is base64 installed?)"
exit 1
