#!/usr/bin/env bash
# The GitHub Action's check step (action.yml): runs `waiver check` once for four reports, then writes
# what GitHub reads: step outputs ($GITHUB_OUTPUT), the job summary ($GITHUB_STEP_SUMMARY) and one
# pull-request comment, found by a marker and updated in place on every push. It never fails the step
# itself: the action's last step does, from the exit code, after the SARIF upload.
set -uo pipefail
say() { echo "waiver-action: $*" >&2; }
out="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/waiver-${INPUT_WORKSPACE:-default}"
mkdir -p "$out"
output() { echo "$1=$2" >> "$GITHUB_OUTPUT"; }

# The binary: on PATH (a self-hosted runner, or an earlier step), else the release tarball, checked.
if ! command -v waiver >/dev/null 2>&1; then
  version="${INPUT_VERSION:-0.1.0}"
  name="waiver-${version}-linux-$(uname -m)"
  base="${WAIVER_RELEASES:-https://github.com/${GITHUB_ACTION_REPOSITORY:-waiver-dev/waiver}/releases/download}/v${version}"
  (cd "$out" && curl -fsSLO "$base/$name.tar.gz" && curl -fsSLO "$base/$name.tar.gz.sha256" && sha256sum -c "$name.tar.gz.sha256" >&2 \
    && tar -xzf "$name.tar.gz") || { say "could not download $name"; output exit-code 2; exit 0; }
  export PATH="$out/$name:$PATH"
fi

args=(check --workspace "${INPUT_WORKSPACE:-default}"
      --format text --output - --format sarif --output "$out/waiver.sarif"
      --format markdown --output "$out/waiver.md" --format json --output "$out/waiver.json")
[ -n "${INPUT_PLAN:-}" ] && args+=(--plan "$INPUT_PLAN")
for s in ${INPUT_SARIF:-}; do args+=(--sarif "$s"); done
if [ -n "${INPUT_SERVER:-}" ]; then
  args+=(--server "$INPUT_SERVER")
  [ -n "${INPUT_TOKEN:-}" ] && export WAIVER_TOKEN="$INPUT_TOKEN"
fi
if [ "${INPUT_REQUEST:-false}" = "true" ]; then
  args+=(--request --reason "${INPUT_REASON:-requested from GitHub Actions run ${GITHUB_RUN_ID:-}}")
  # Who wrote the change may not approve the exceptions it asks for.
  args+=(--commit-author "${GITHUB_ACTOR:-unknown}")
fi
read -r -a extra <<< "${INPUT_ARGS:-}"
args+=("${extra[@]}")

waiver "${args[@]}"
code=$?
output exit-code "$code"
if [ "$code" -ge 2 ] || [ ! -f "$out/waiver.json" ]; then
  say "waiver check exited $code without a report"
  exit 0
fi
output sarif-file "$out/waiver.sarif"
output markdown-file "$out/waiver.md"
output json-file "$out/waiver.json"
python3 - "$out/waiver.json" >> "$GITHUB_OUTPUT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"verdict={r['verdict']}")
for k in ("violations", "blocking", "excepted", "pending", "unknown"):
    print(f"{k}={r['summary'][k]}")
PY
cat "$out/waiver.md" >> "$GITHUB_STEP_SUMMARY"

# One comment per pull request and workspace, updated in place.
[ "${INPUT_COMMENT:-true}" = "true" ] || exit 0
pr=$(python3 -c 'import json,os,sys; e=json.load(open(os.environ["GITHUB_EVENT_PATH"])) if os.environ.get("GITHUB_EVENT_PATH") else {}; print((e.get("pull_request") or {}).get("number") or "")' 2>/dev/null)
[ -n "$pr" ] && [ -n "${INPUT_GITHUB_TOKEN:-}" ] || exit 0
api="${GITHUB_API_URL:-https://api.github.com}/repos/$GITHUB_REPOSITORY"
marker="<!-- waiver-check: ${INPUT_WORKSPACE:-default} -->"
auth=(-H "Authorization: Bearer $INPUT_GITHUB_TOKEN" -H "Accept: application/vnd.github+json" -H "X-GitHub-Api-Version: 2022-11-28")
body=$(python3 -c 'import json,sys; print(json.dumps({"body": sys.argv[1] + "\n" + open(sys.argv[2]).read()}))' "$marker" "$out/waiver.md")
existing=""
page=1
while [ -z "$existing" ]; do
  list=$(curl -fsS "${auth[@]}" "$api/issues/$pr/comments?per_page=100&page=$page") || { say "could not list the pull request's comments"; exit 0; }
  read -r count existing < <(python3 -c 'import json,sys; c=json.loads(sys.argv[2]); m=[x["id"] for x in c if sys.argv[1] in (x.get("body") or "")]; print(len(c), m[0] if m else "")' "$marker" "$list")
  [ -n "$existing" ] || [ "$count" -lt 100 ] && break
  page=$((page + 1))
done
if [ -n "$existing" ]; then
  curl -fsS -X PATCH "${auth[@]}" "$api/issues/comments/$existing" -d "$body" > /dev/null && say "updated comment $existing on #$pr"
else
  curl -fsS -X POST "${auth[@]}" "$api/issues/$pr/comments" -d "$body" > /dev/null && say "commented on #$pr"
fi
exit 0
