#!/usr/bin/env bash
# Build the platform tools the integration tests run against, from published Go modules:
#   kstatus-compute  sigs.k8s.io/cli-utils' kstatus library behind a tiny command (hack/platform/kstatus)
#   kueue            Kueue's controller manager (hack/platform/kueue)
# Usage: hack/build-platform.sh kstatus|kueue   -> prints the binary's path (last line)
# Binaries land in a version-keyed cache outside the clone and are reused when present.
set -euo pipefail
CLI_UTILS_VERSION=v0.37.2   # keep in step with hack/platform/kstatus/go.mod
KUEUE_VERSION=v0.17.0       # keep in step with hack/platform/kueue/go.mod
here=$(cd "$(dirname "$0")" && pwd)
cache=${KUBETUNE_CACHE:-$HOME/.cache/kubetune}/platform
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
case "${1:-}" in
  kstatus) bin=$cache/kstatus-$CLI_UTILS_VERSION/bin/kstatus-compute; pkg=. ; dir=$here/platform/kstatus ;;
  kueue)   bin=$cache/kueue-$KUEUE_VERSION/bin/kueue; pkg=sigs.k8s.io/kueue/cmd/kueue; dir=$here/platform/kueue ;;
  *) echo "usage: $0 kstatus|kueue" >&2; exit 2 ;;
esac
if [ ! -x "$bin" ]; then
  echo ">> building $1 into $bin (first time only)" >&2
  mkdir -p "$(dirname "$bin")"
  (cd "$dir" && nice -n 10 go build -pgo=off -ldflags "-s -w" -o "$bin.tmp" "$pkg") && mv "$bin.tmp" "$bin"
fi
if [ "$1" = kueue ]; then
  (cd "$dir" && go mod download sigs.k8s.io/kueue)   # its CRDs are read from the module cache
fi
echo "$bin"
