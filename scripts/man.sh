#!/usr/bin/env bash
# Regenerates the man page docs/man/waiver.1 from the commands' own help, with swift-argument-parser's
# generate-manual plugin (it builds waiver in release mode first: minutes on a clean tree).
# A test (PipelineConventionsTests) fails when an option of the binary is missing from the page.
set -euo pipefail
cd "$(dirname "$0")/.."
swift package generate-manual
cp .build/plugins/GenerateManual/outputs/waiver/waiver.1 docs/man/waiver.1
echo "wrote docs/man/waiver.1 (view: man -l docs/man/waiver.1)"
