#!/bin/sh
# rigger onstart loader. Vast.ai limits onstart to about 4 KB, so the real
# bootstrap script (src/bootstrap/bootstrap.sh) travels base64-encoded in
# RIGGER_SCRIPT_0, RIGGER_SCRIPT_1, ... (each within the 256-character limit
# on a variable); this joins, decodes and runs it. If it cannot, it still
# destroys the machine: nothing else on it would.
# Comment lines are stripped when rendered.

# Join NAME_0, NAME_1, ... into one value.
j() {
  v="" n=0
  while eval "c=\${${1}_$n-}"; [ -n "$c" ]; do v="$v$c"; n=$((n + 1)); done
  printf %s "$v"
}

# VM mode: Vast.ai writes the instance's variables to /etc/environment, as
# KEY=VALUE lines that are not shell (values may hold spaces, or quotes).
# Then take rigger's secrets out of that world-readable file.
e=${RIGGER_ETC_ENVIRONMENT:-/etc/environment}
if [ -z "${RIGGER_SCRIPT_0-}" ] && [ -r "$e" ]; then
  while IFS= read -r l || [ -n "$l" ]; do
    k=${l%%=*} v=${l#*=}
    case $k in '' | [0-9]* | *[!A-Za-z0-9_]*) continue ;; esac
    [ "$k" = "$l" ] && continue
    case $v in \"*\") v=${v#\"} v=${v%\"} ;; \'*\') v=${v#\'} v=${v%\'} ;; esac
    export "$k=$v"
  done <"$e"
  grep -vE '^(RIGGER_|CONTAINER_API_KEY)' "$e" >"$e.rigger" && cat "$e.rigger" >"$e"
  rm -f "$e.rigger"
fi

fail() {
  echo "rigger-bootstrap: $1: destroying this machine"
  command -v curl >/dev/null || { echo "rigger-bootstrap: no curl either: rigger will destroy it"; exit 1; }
  i=0
  while [ $i -lt 6 ]; do
    if [ -n "${RIGGER_CALLBACK_URL-}" ]; then
      printf 'header = "Authorization: Bearer %s"\n' "$(j RIGGER_CALLBACK_TOKEN)" |
        curl -fsS -m 30 -K - -X POST -H 'Content-Type: text/plain' -d "$1" \
          "$RIGGER_CALLBACK_URL?exit_code=1" >/dev/null && exit 1
    fi
    if [ -n "${CONTAINER_ID-}" ] && [ -n "${CONTAINER_API_KEY-}" ]; then
      printf 'header = "Authorization: Bearer %s"\n' "$CONTAINER_API_KEY" |
        curl -fsS -m 30 -K - -X DELETE -H 'Content-Type: application/json' -d '{}' \
          "${RIGGER_VAST_URL:-https://console.vast.ai}/api/v0/instances/$CONTAINER_ID/" >/dev/null && exit 1
    fi
    i=$((i + 1))
    sleep $i
  done
  exit 1
}

f=${TMPDIR:-/tmp}/rigger-bootstrap.$$.sh
command -v base64 >/dev/null || fail "cannot decode the bootstrap script: no base64 on this machine"
j RIGGER_SCRIPT >"$f.b64"
[ -s "$f.b64" ] || fail "no bootstrap script in the environment (RIGGER_SCRIPT_0...)"
base64 -d "$f.b64" >"$f" 2>/dev/null || fail "cannot decode the bootstrap script"
rm -f "$f.b64"
exec sh "$f"
