#!/bin/sh
# Regenerates testdata/expected.json from Go 1.19 + Sprig 3.2.3 (Debian packages
# golang-go and golang-github-masterminds-sprig-dev), built in GOPATH mode.
# Usage: regenerate.sh [OUTPUT] (default: testdata/expected.json).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
gopath=$(mktemp -d)
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/fixturegen"
cp "$here/go/main.go" "$gopath/src/fixturegen/"
(cd "$gopath/src/fixturegen" && GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="${GOCACHE:-$gopath/cache}" go build -o "$gopath/fixturegen" .)
out=${1:-$here/expected.json}
"$gopath/fixturegen" "$here" "$out"
echo "wrote $out"
