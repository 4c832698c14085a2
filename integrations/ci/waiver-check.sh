#!/usr/bin/env bash
# `waiver check` for any CI (Jenkins, Buildkite, CircleCI, a shell): one run, every report a CI reads,
# the verdict as the exit code (0 pass, 1 blocked, 2 invalid input, 3 still pending after --wait).
#
#   WAIVER_PLAN=plan.json WAIVER_WORKSPACE=payments-prod integrations/ci/waiver-check.sh [more check options]
#
# Reports go to $WAIVER_REPORTS (default waiver-reports/): waiver-junit.xml, waiver.sarif, waiver.md,
# waiver.json; the text report goes to the log. Set WAIVER_SERVER and WAIVER_TOKEN for the shared register.
set -uo pipefail
reports="${WAIVER_REPORTS:-waiver-reports}"
mkdir -p "$reports"
set -- check --workspace "${WAIVER_WORKSPACE:-default}" \
  --format text --output - --format junit --output "$reports/waiver-junit.xml" --format sarif --output "$reports/waiver.sarif" \
  --format markdown --output "$reports/waiver.md" --format json --output "$reports/waiver.json" "$@"
[ -n "${WAIVER_PLAN:-}" ] && set -- "$@" --plan "$WAIVER_PLAN"
for s in ${WAIVER_SARIF_REPORTS:-}; do set -- "$@" --sarif "$s"; done
exec "${WAIVER_BIN:-waiver}" "$@"
