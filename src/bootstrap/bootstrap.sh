#!/bin/sh
# rigger bootstrap: install one just-in-time GitHub Actions runner on this
# rented machine (the file and SHA-256 rigger's release lookup named), run
# it, and destroy the machine when it exits, whatever the reason; a runner
# that exits without having taken a job is reported as a failure. POSIX sh:
# container images may have no bash.
#
# Everything per-instance arrives in RIGGER_* environment variables (see
# src/bootstrap/mod.rs); values longer than Vast.ai's 256-character limit
# per variable come split as NAME_0, NAME_1, ... The onstart loader has
# already exported /etc/environment's variables in VM mode.
# Comment lines are stripped when rendered, to keep the environment small.
#
# Sandboxed tests point these at files of their own: RIGGER_DIR, RIGGER_LOG,
# RIGGER_ETC_ENVIRONMENT (VM mode's /etc/environment), RIGGER_ENV_FROM (the
# image's environment, /proc/1/environ) and RIGGER_SUDOERS_DIR.
D=${RIGGER_DIR:-/opt/rigger-runner}
L=${RIGGER_LOG:-/var/log/rigger-bootstrap.log}
E=${RIGGER_ETC_ENVIRONMENT:-/etc/environment}
V=${RIGGER_VAST_URL:-https://console.vast.ai}
mkdir -p "$D" "$(dirname "$L")"

log() { echo "rigger-bootstrap: $(date -u +%H:%M:%S) $*"; }

# Join NAME_0, NAME_1, ... into one value.
joined() {
  v="" n=0
  while eval "c=\${${1}_$n-}"; [ -n "$c" ]; do v="$v$c"; n=$((n + 1)); done
  printf %s "$v"
}

# Secrets go to curl on stdin (-K -), never on its command line, where any
# process on the machine (a job's) could read them in /proc.
auth() { printf 'header = "Authorization: Bearer %s"\n' "$1"; }

# Tell rigger how this machine ended, with the log's last lines (at most
# 16 kB: progress bars make long lines, and rigger takes 1 MiB): when a boot
# fails, why it failed would otherwise be lost with the machine. rigger
# records it and destroys the machine.
report() {
  tail -n 40 "$L" 2>/dev/null | tail -c 16000 >"$D/.tail"
  auth "$(joined RIGGER_CALLBACK_TOKEN)" | curl -fsS -m 30 -K - -X POST \
    -H 'Content-Type: text/plain' --data-binary "@$D/.tail" \
    "$RIGGER_CALLBACK_URL?exit_code=$1" >/dev/null
}

# Destroy this machine, with retries: through rigger's callback when it has
# a public URL (it also learns why), else with the per-instance key Vast.ai
# injects in container mode (it can destroy this instance only); failing
# both, rigger's reconciler does it.
destroy() {
  i=0
  while [ $i -lt 6 ]; do
    if [ -n "${RIGGER_CALLBACK_URL-}" ] && report "$1"; then return 0; fi
    if [ -n "${CONTAINER_ID-}" ] && [ -n "${CONTAINER_API_KEY-}" ]; then
      auth "$CONTAINER_API_KEY" | curl -fsS -m 30 -K - -X DELETE \
        -H 'Content-Type: application/json' -d '{}' \
        "$V/api/v0/instances/$CONTAINER_ID/" >/dev/null && return 0
    elif [ -z "${RIGGER_CALLBACK_URL-}" ]; then
      log "no per-instance key and no callback URL: rigger will destroy this machine"
      return 0
    fi
    i=$((i + 1))
    log "destroy attempt $i failed; retrying"
    sleep $i
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
  elif command -v yum >/dev/null; then yum install -y -q "$@"
  elif command -v apk >/dev/null; then apk add -q --no-cache "$@"
  else return 1; fi
}

# Start run.sh with nothing of this script's environment but what a runner
# needs: the job must not read CONTAINER_API_KEY, the callback token or the
# JIT config's pieces. The image's environment reaches it through .env.
# (A job running as root can still read /proc/1/environ: hence the
# unprivileged user wherever one can be made.)
scrubbed() {
  for k in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p'); do
    case $k in
      PATH | HOME | LANG | LC_ALL | TZ | TERM | ACTIONS_RUNNER_INPUT_JITCONFIG | RUNNER_ALLOW_RUNASROOT) ;;
      *) unset "$k" 2>/dev/null ;;
    esac
  done
  exec "$@"
}

main() {
  u=$(id -un)
  log "starting on $(uname -m), as $u"

  # Fail fast, before anything slow: the wrong architecture or GPUs.
  case $(uname -m) in
    x86_64 | amd64) a=x64 ;;
    aarch64 | arm64) a=arm64 ;;
    *) a=$(uname -m) ;;
  esac
  [ "$a" = "${RIGGER_RUNNER_ARCH:-$a}" ] ||
    die "this machine is $(uname -m) ($a), but its runner was registered for $RIGGER_RUNNER_ARCH"
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

  need=""
  for c in curl tar; do command -v $c >/dev/null || need="$need $c"; done
  [ -e /etc/ssl/certs/ca-certificates.crt ] || [ -e /etc/pki/tls/certs/ca-bundle.crt ] || need="$need ca-certificates"
  if [ -n "$need" ]; then
    log "installing:$need"
    # shellcheck disable=SC2086
    pkg $need || die "could not install$need (no apt-get, dnf, yum or apk that works)"
  fi

  P=${RIGGER_RUNNER_PREINSTALLED-}
  if [ -n "$P" ] && [ -x "$P/run.sh" ]; then
    D=$P
    log "using the runner installed in the image at $D"
  else
    U=$(printf %s "$RIGGER_RUNNER_URL" | sed "s/{arch}/$a/g")
    if [ -z "${RIGGER_RUNNER_SHA256-}" ] && [ -z "${RIGGER_RUNNER_UNVERIFIED-}" ]; then
      die "no checksum for $U: refusing to run an unverified runner (set runner.sha256.$a, or runner.allow_unverified)"
    fi
    log "downloading $U"
    curl -fsSL --retry 5 -o "$D/runner.tgz" "$U" || die "could not download $U"
    if [ -n "${RIGGER_RUNNER_SHA256-}" ]; then
      got=$(sha256sum "$D/runner.tgz" | cut -d' ' -f1)
      [ "$got" = "$RIGGER_RUNNER_SHA256" ] || die "checksum mismatch for $U: expected $RIGGER_RUNNER_SHA256, got $got"
    else
      log "runner.allow_unverified is set: running $U unverified"
    fi
    tar xzf "$D/runner.tgz" -C "$D" || die "could not unpack the runner"
    rm -f "$D/runner.tgz"
    # Its output stays in the log: why a runner cannot start is often here.
    if [ -x "$D/bin/installdependencies.sh" ] && ! ldconfig -p 2>/dev/null | grep -q libicu; then
      log "installing the runner's libraries"
      "$D/bin/installdependencies.sh" || log "installdependencies.sh failed; trying anyway"
    fi
  fi

  # The runner reads .env: give it the image's environment (Vast.ai does
  # not pass it on), less rigger's and Vast.ai's own secrets. In VM mode
  # that is /etc/environment (the loader has taken rigger's lines out).
  # Its values come from the loader's parse (quotes taken off).
  if [ -n "${RIGGER_VM-}" ]; then
    sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' "$E" 2>/dev/null | while read -r k; do
      eval "printf '%s=%s\n' $k \"\${$k-}\""
    done
  else
    tr '\0' '\n' <"${RIGGER_ENV_FROM:-/proc/1/environ}" 2>/dev/null
  fi | grep -E '^[A-Za-z_][A-Za-z0-9_]*=' |
    grep -vE '^(RIGGER_|CONTAINER_API_KEY|ACTIONS_RUNNER_INPUT_|HOME=|HOSTNAME=|PWD=|SHLVL=|_=)' >"$D/.env"
  echo "ACTIONS_RUNNER_HOOK_JOB_STARTED=$D/job-started.sh" >>"$D/.env"
  printf '#!/bin/sh\ntouch %s/.job-started\n' "$D" >"$D/job-started.sh"
  chmod +x "$D/job-started.sh"
  joined RIGGER_SETUP_INFO | base64 -d >"$D/.setup_info" 2>/dev/null || rm -f "$D/.setup_info"

  if [ "$(id -u)" = 0 ]; then
    if id runner >/dev/null 2>&1 || useradd -m runner 2>/dev/null || adduser -D runner 2>/dev/null; then
      u=runner
      chown -R runner "$D"
      # Passwordless sudo, as on GitHub-hosted runners: jobs install
      # packages. nvidia/cuda and pytorch images have no sudo at all.
      if ! command -v sudo >/dev/null; then
        log "installing sudo for the runner user"
        pkg sudo || log "could not install sudo: the job's steps cannot use sudo"
      fi
      S=${RIGGER_SUDOERS_DIR:-/etc/sudoers.d}
      if command -v sudo >/dev/null || [ -d "$S" ]; then
        mkdir -p "$S" && echo 'runner ALL=(ALL) NOPASSWD:ALL' >"$S/runner" && chmod 0440 "$S/runner"
      fi
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
  if [ "$u" != runner ]; then (scrubbed $s ./run.sh) &
  elif command -v runuser >/dev/null; then (scrubbed $s runuser -u runner -- ./run.sh) &
  else (scrubbed $s su runner -s /bin/sh -c ./run.sh) &
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
  # run.sh exits 0 even when its listener failed or refused to run (as
  # root, say): only the job-started hook says a job ran. Without it this
  # is a failed boot, and rigger re-queues the job at once.
  [ -e .job-started ] ||
    die "the runner exited (code $rc) without taking a job: see its output above"
  finish "$rc"
}

# Log to the file and to stdout (what Vast.ai's logs show). A pipeline's
# status is tee's, so main's own travels through a file.
{
  (main)
  echo $? >"$D/.status"
} 2>&1 | tee -a "$L"
exit "$(cat "$D/.status" 2>/dev/null || echo 1)"
