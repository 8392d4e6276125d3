#!/bin/sh
# Fill fuzz/corpus/<target>/ with seeds: the hand-written ones in
# fuzz/seeds/, the repository's examples/ and webhook/ payloads, the saved
# findings in fuzz/regressions/, and, when set, the real .cirun.yml corpus
# (RIGGER_CIRUN_CORPUS, e.g. ../shared/corpus/cirun) and GitHub's published
# payloads and REST examples (RIGGER_GITHUB_FIXTURES, e.g.
# ../shared/fixtures/github). Existing corpus files are kept: libFuzzer
# adds what it finds next to them. Run from anywhere.
set -eu

fuzz=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzz")
corpus="$fuzz/corpus"

# seed TARGET NAME < content
seed() {
    mkdir -p "$corpus/$1"
    cat >"$corpus/$1/$2"
}

# copy TARGET FILE...: each file as a seed named after it.
copy() {
    target=$1
    shift
    for f in "$@"; do
        [ -f "$f" ] || continue
        seed "$target" "seed-$(basename "$f")" <"$f"
    done
}

for dir in "$fuzz/seeds"/* "$fuzz/regressions"/*; do
    [ -d "$dir" ] || continue
    copy "$(basename "$dir")" "$dir"/*
done

copy cirun_yml "$root/examples/.cirun.yml"
copy cirun_global_yml "$root/examples/.cirun.yml"
copy settings "$root/examples/rigger.toml"

# webhook/NAME.json: the event is `ping` for ping.json, else workflow_job.
for f in "$root"/webhook/*.json; do
    name=$(basename "$f" .json)
    event=workflow_job
    [ "$name" = ping ] && event=ping
    { printf '%s\nsha256=%064d\n' "$event" 0; cat "$f"; } | seed webhook "$name"
    { printf '=== %s\n' "$event"; cat "$f"; } | seed webhook_inbox "$name"
done
# One job's life, in order and then redelivered.
{
    for name in queued in_progress completed-success queued; do
        printf '=== workflow_job\n'
        cat "$root/webhook/$name.json"
        printf '\n'
    done
} | seed webhook_inbox life

if [ -n "${RIGGER_CIRUN_CORPUS:-}" ]; then
    for f in "$RIGGER_CIRUN_CORPUS"/*.yml; do
        copy cirun_yml "$f"
    done
    for f in "$RIGGER_CIRUN_CORPUS"/global/*.yml; do
        case $f in
        *.access.yml) copy access_yml "$f" ;;
        *) copy cirun_global_yml "$f" ;;
        esac
    done
    # Every instance_type, machine_image and region value written there.
    i=0
    grep -hE '^\s*-?\s*(instance_type|machine_image|region):\s*\S' "$RIGGER_CIRUN_CORPUS"/*.yml "$RIGGER_CIRUN_CORPUS"/global/*.yml |
        sed -E 's/^[^:]*:\s*//; s/\s+#.*$//; s/\s+$//; s/^"(.*)"$/\1/' | sort -u |
        while IFS= read -r value; do
            i=$((i + 1))
            printf '%s' "$value" | seed instance_type "corpus-$i"
        done
fi

if [ -n "${RIGGER_GITHUB_FIXTURES:-}" ]; then
    examples="$RIGGER_GITHUB_FIXTURES/octokit-webhooks/payload-examples/api.github.com"
    for dir in "$examples"/*/; do
        event=$(basename "$dir")
        for f in "$dir"*.json; do
            [ -f "$f" ] || continue
            { printf '%s\nsha256=%064d\n' "$event" 0; cat "$f"; } | seed webhook "$event-$(basename "$f")"
        done
    done
    for f in "$examples"/workflow_job/*.json; do
        [ -f "$f" ] || continue
        { printf '=== workflow_job\n'; cat "$f"; } | seed webhook_inbox "fixture-$(basename "$f")"
    done
    rest="$RIGGER_GITHUB_FIXTURES/github-docs-rest-examples"
    octo="$RIGGER_GITHUB_FIXTURES/octocrab-tests-resources"
    # answer CALL STATUS FILE NAME: one call answered with a published body.
    answer() {
        [ -f "$3" ] || return 0
        { printf '%s\n=== %s\n' "$1" "$2"; cat "$3"; } | seed github_responses "$4"
    }
    answer jit 201 "$rest/generate-jitconfig.response-201.json" fixture-jit
    answer job 200 "$rest/get-job.response-200.json" fixture-job
    answer 'runners ' 200 "$rest/list-runners.response-200.json" fixture-runners
    answer 'runners ' 200 "$octo/self_hosted_runners.json" fixture-octocrab-runners
    answer sha256 200 "$rest/runner-downloads.response-200.json" fixture-sha256
fi

for dir in "$corpus"/*; do
    printf '%s: %s seeds\n' "$(basename "$dir")" "$(ls "$dir" | wc -l)"
done
