#!/usr/bin/env bash
# Builds the release tarball: one self-contained Linux binary (the Swift runtime linked statically,
# stripped; the starter pack and the pages' templates are inside it), with the README, the licence and
# the man page, and a SHA-256 file:
#   dist/waiver-<version>-linux-<arch>.tar.gz
#   dist/waiver-<version>-linux-<arch>.tar.gz.sha256     (check with: sha256sum -c)
# It needs only glibc, libstdc++, zlib and libsqlite3 where it runs (Debian: libsqlite3-0).
# Takes about 6 minutes on 2 cores from a clean tree. scripts/test-release.sh checks the result.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib --product waiver
bin=$(swift build -c release --static-swift-stdlib --show-bin-path)/waiver
version=$("$bin" --version)
arch=$(uname -m)
name="waiver-${version}-linux-${arch}"
rm -rf "dist/$name" "dist/$name.tar.gz" "dist/$name.tar.gz.sha256"
mkdir -p "dist/$name"
strip -o "dist/$name/waiver" "$bin"
cp README.md LICENSE docs/man/waiver.1 "dist/$name/"
# Reproducible archive: fixed owner, order and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2026-01-01 00:00:00Z' -C dist -czf "dist/$name.tar.gz" "$name"
(cd dist && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
size=$(stat -c %s "dist/$name/waiver")
echo "dist/$name.tar.gz ($(stat -c %s "dist/$name.tar.gz") bytes; binary $size bytes)"
cat "dist/$name.tar.gz.sha256"
