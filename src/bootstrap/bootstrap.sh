#!/bin/sh
# rigger bootstrap: install one just-in-time GitHub Actions runner on this
# rented machine, run it, and destroy the machine when it exits, whatever
# the reason. POSIX sh: container images may have no bash.
#
# Everything per-instance arrives in RIGGER_* environment variables (see
# src/bootstrap/mod.rs); values longer than Vast.ai's 256-character limit
# per variable come split as NAME_0, NAME_1, ...
# Comment lines are stripped when rendered, to stay under the 4 KB onstart limit.

# VM mode: Vast.ai writes the instance's variables to /etc/environment.
# (RIGGER_ETC_ENVIRONMENT and RIGGER_ENV_FROM exist for the sandboxed tests.)
E=${RIGGER_ETC_ENVIRONMENT:-/etc/environment}
# shellcheck disable=SC1090
[ -r "$E" ] && set -a && . "$E" && set +a
D=${RIGGER_DIR:-/opt/rigger-runner}
L=${RIGGER_LOG:-/var/log/rigger-bootstrap.log}
mkdir -p "$D" "$(dirname "$L")"

log() { echo "rigger-bootstrap: $(date -u +%H:%M:%S) $*"; }

# Join NAME_0, NAME_1, ... into one value.
joined() {
  v="" n=0
  while eval "c=\${${1}_$n-}"; [ -n "$c" ]; do v="$v$c"; n=$((n + 1)); done
  printf %s "$v"
}

# Destroy this machine, with retries: in container mode with the
# per-instance key Vast.ai injects (it can destroy this instance only);
# otherwise through rigger's callback; failing both, rigger's reconciler does it.
destroy() {
  i=0
  while [ $i -lt 5 ]; do
    if [ -n "${CONTAINER_ID-}" ] && [ -n "${CONTAINER_API_KEY-}" ]; then
      curl -fsS -m 30 -X DELETE -H "Authorization: Bearer $CONTAINER_API_KEY" \
        -H 'Content-Type: application/json' -d '{}' \
        "${RIGGER_VAST_URL:-https://console.vast.ai}/api/v0/instances/$CONTAINER_ID/" >/dev/null && return 0
    elif [ -n "${RIGGER_CALLBACK_URL-}" ]; then
      curl -fsS -m 30 -X POST -H "Authorization: Bearer $(joined RIGGER_CALLBACK_TOKEN)" \
        -d "{\"exit_code\":$1}" "$RIGGER_CALLBACK_URL" >/dev/null && return 0
    else
      log "no per-instance key and no callback URL: rigger will destroy this machine"
      return 0
    fi
    i=$((i + 1))
    sleep $((i * 2))
  done
  log "could not destroy this machine after $i tries: rigger will"
}

finish() {
  log "exiting ($1): destroying this machine"
  destroy "$1"
  exit "$1"
}

die() {
  log "FAILED: $*"
  finish 1
}

pkg() {
  if command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  elif command -v dnf >/dev/null; then dnf install -y -q "$@"
  elif command -v apk >/dev/null; then apk add -q --no-cache "$@"
  else return 1; fi
}

main() {
  log "starting on $(uname -m), $(id -un)"
  need=""
  for c in curl tar; do command -v $c >/dev/null || need="$need $c"; done
  [ -e /etc/ssl/certs/ca-certificates.crt ] || [ -e /etc/pki/tls/certs/ca-bundle.crt ] || need="$need ca-certificates"
  if [ -n "$need" ]; then
    log "installing:$need"
    # shellcheck disable=SC2086
    pkg $need >/dev/null || die "could not install$need (no apt-get, dnf or apk that works)"
  fi

  # Check the GPUs before anything slow: a wrong machine fails fast.
  if [ "${RIGGER_GPU_COUNT:-0}" -gt 0 ]; then
    command -v nvidia-smi >/dev/null || die "expected $RIGGER_GPU_COUNT x $RIGGER_GPU_MODEL, but there is no nvidia-smi"
    found=$(nvidia-smi --query-gpu=name --format=csv,noheader) || die "nvidia-smi failed: expected $RIGGER_GPU_COUNT x $RIGGER_GPU_MODEL"
    n=$(printf '%s\n' "$found" | grep -c .)
    ok=$(printf '%s\n' "$found" | tr -d ' _-' | grep -ciE "$RIGGER_GPU_MATCH")
    if [ "$n" -lt "$RIGGER_GPU_COUNT" ] || [ "$ok" -lt "$RIGGER_GPU_COUNT" ]; then
      die "expected $RIGGER_GPU_COUNT x $RIGGER_GPU_MODEL, found $n: $(printf '%s' "$found" | tr '\n' ',')"
    fi
    log "GPUs ok: $(printf '%s' "$found" | tr '\n' ',')"
  fi

  if [ -x "${RIGGER_RUNNER_PREINSTALLED-}/run.sh" ]; then
    D=$RIGGER_RUNNER_PREINSTALLED
    log "using the runner installed in the image at $D"
  else
    log "downloading $RIGGER_RUNNER_URL"
    curl -fsSL --retry 5 -o "$D/runner.tgz" "$RIGGER_RUNNER_URL" || die "could not download $RIGGER_RUNNER_URL"
    if [ -n "${RIGGER_RUNNER_SHA256-}" ]; then
      got=$(sha256sum "$D/runner.tgz" | cut -d' ' -f1)
      [ "$got" = "$RIGGER_RUNNER_SHA256" ] || die "checksum mismatch for $RIGGER_RUNNER_URL: expected $RIGGER_RUNNER_SHA256, got $got"
    fi
    tar xzf "$D/runner.tgz" -C "$D" || die "could not unpack the runner"
    rm -f "$D/runner.tgz"
    if [ -x "$D/bin/installdependencies.sh" ] && ! ldconfig -p 2>/dev/null | grep -q libicu; then
      log "installing the runner's libraries"
      "$D/bin/installdependencies.sh" >/dev/null 2>&1 || log "installdependencies.sh failed; trying anyway"
    fi
  fi

  # The runner reads .env: give it the image's environment (Vast.ai does
  # not pass it on), less rigger's and Vast.ai's own secrets.
  if [ -n "${RIGGER_VM-}" ]; then src=$E; else src=${RIGGER_ENV_FROM:-/proc/1/environ}; fi
  tr '\0' '\n' <"$src" 2>/dev/null | grep -E '^[A-Za-z_][A-Za-z0-9_]*=' |
    grep -vE '^(RIGGER_|CONTAINER_API_KEY|ACTIONS_RUNNER_INPUT_|HOME=|HOSTNAME=|PWD=|SHLVL=|_=)' >"$D/.env"
  echo "ACTIONS_RUNNER_HOOK_JOB_STARTED=$D/job-started.sh" >>"$D/.env"
  printf '#!/bin/sh\ntouch %s/.job-started\n' "$D" >"$D/job-started.sh"
  chmod +x "$D/job-started.sh"
  joined RIGGER_SETUP_INFO | base64 -d >"$D/.setup_info" 2>/dev/null || rm -f "$D/.setup_info"

  u=root
  if [ "$(id -u)" = 0 ]; then
    if id runner >/dev/null 2>&1 || useradd -m runner 2>/dev/null || adduser -D runner 2>/dev/null; then
      u=runner
      chown -R runner "$D"
      [ -d /etc/sudoers.d ] && echo 'runner ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/runner
    else
      log "could not create a user 'runner' (no useradd or adduser): running the runner as root"
      export RUNNER_ALLOW_RUNASROOT=1
    fi
  fi

  ACTIONS_RUNNER_INPUT_JITCONFIG=$(joined RIGGER_JIT)
  export ACTIONS_RUNNER_INPUT_JITCONFIG
  [ -n "$ACTIONS_RUNNER_INPUT_JITCONFIG" ] || die "no JIT config (RIGGER_JIT_0...)"
  log "starting the runner as $u"
  cd "$D" || die "no $D"
  # Its own session, so a timeout can stop run.sh and the listener together.
  s=""
  command -v setsid >/dev/null && s=setsid
  if [ $u = root ]; then $s ./run.sh &
  elif command -v runuser >/dev/null; then $s runuser -u runner -- ./run.sh &
  else $s su runner -s /bin/sh -c ./run.sh &
  fi
  pid=$!
  unset ACTIONS_RUNNER_INPUT_JITCONFIG
  t=${RIGGER_IDLE_TIMEOUT:-600}
  (
    i=0
    while [ $i -lt "$t" ]; do
      if [ -e .job-started ] || [ -e .done ]; then exit 0; fi
      sleep 1
      i=$((i + 1))
    done
    log "no job within ${t}s: stopping the runner"
    kill -TERM -"$pid" 2>/dev/null || kill -TERM "$pid"
  ) &
  wait "$pid"
  rc=$?
  touch .done
  log "the runner exited with $rc"
  finish "$rc"
}

# Log to the file and to stdout (what Vast.ai's logs show). A pipeline's
# status is tee's, so main's own travels through a file.
{
  (main)
  echo $? >"$D/.status"
} 2>&1 | tee -a "$L"
exit "$(cat "$D/.status" 2>/dev/null || echo 1)"
