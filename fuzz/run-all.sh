#!/bin/sh
# Run every fuzz target (or the ones named) for SECONDS each, one after the
# other (JOBS=N: N at a time), and write one summary line per target to
# fuzz/summary.txt (SUMMARY=path to write elsewhere):
#
#   fuzz/run-all.sh 1200                 # every target, 20 minutes each
#   JOBS=2 fuzz/run-all.sh 60 cirun_yml settings
#
# Each run keeps going after a crash, a timeout or running out of memory
# (libFuzzer's fork mode), so one known bug does not hide the next; every
# finding is saved under fuzz/artifacts/<target>/. An input counts as slow
# past TIMEOUT seconds (default 10) and as a memory bomb past RSS_MB
# (default 2048). The corpus is seeded first if it is missing (seed.sh).
# Needs cargo-fuzz; builds with RUSTC_BOOTSTRAP=1 on a stable toolchain.
set -eu

if [ $# -lt 1 ]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift
fuzz=$(cd "$(dirname "$0")" && pwd)
cd "$fuzz"
summary=${SUMMARY:-$fuzz/summary.txt}
jobs=${JOBS:-1}
timeout=${TIMEOUT:-10}
rss=${RSS_MB:-2048}
built="$fuzz/target/x86_64-unknown-linux-gnu/release"

RUSTC_BOOTSTRAP=1 cargo fuzz build -s none
[ -d corpus ] || ./seed.sh >/dev/null

targets=${*:-$(cargo fuzz list)}
# Fork mode starts the binary again for each job: run copies, so that a
# rebuild during a long run does not change what is being fuzzed.
bin=$(mktemp -d "${TMPDIR:-/tmp}/rigger-fuzz.XXXXXX")
trap 'rm -rf "$bin"' EXIT
for t in $targets; do
    cp "$built/$t" "$bin/$t"
done

# The dictionary of a target: the tokens of the language its input is in.
dict_of() {
    case $1 in
    cirun_yml | cirun_global_yml | access_yml | instance_type) echo dict/yaml.dict ;;
    webhook | webhook_inbox) echo dict/json.dict ;;
    vast_responses | github_responses) echo dict/responses.dict ;;
    settings) echo dict/toml.dict ;;
    *) echo "" ;;
    esac
}

# run TARGET: fuzz it for $seconds, then print its summary line.
run() {
    t=$1
    mkdir -p "corpus/$t" "artifacts/$t" logs
    log="logs/$t.log"
    before=$(ls "artifacts/$t" | wc -l)
    dict=$(dict_of "$t")
    # `-fork=1`: one child at a time, restarted after each finding.
    "$bin/$t" "corpus/$t" ${dict:+-dict=$dict} \
        -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb="$rss" \
        -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || true
    after=$(ls "artifacts/$t" | wc -l)
    # The fork-mode status line: `#EXECS: cov: N ft: N corp: N exec/s: N oom/timeout/crash: a/b/c time: Ns`
    last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -n 1)
    execs=$(echo "$last" | sed -E 's/^#([0-9]+):.*/\1/')
    cov=$(echo "$last" | sed -E 's/.* cov: ([0-9]+).*/\1/')
    ft=$(echo "$last" | sed -E 's/.* ft: ([0-9]+).*/\1/')
    corp=$(echo "$last" | sed -E 's/.* corp: ([0-9]+).*/\1/')
    rate=$(echo "$last" | sed -E 's/.* exec\/s: ([0-9]+).*/\1/')
    otc=$(echo "$last" | sed -E 's/.* oom\/timeout\/crash: ([0-9/]+).*/\1/')
    printf '%-18s %5ss execs: %s (%s/s) cov: %s ft: %s corpus: %s oom/timeout/crash: %s new artifacts: %s\n' \
        "$t" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${otc:-?}" $((after - before))
}

: >"$summary"
running=0
for t in $targets; do
    run "$t" >>"$summary" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait
        running=0
    fi
done
wait
cat "$summary"
