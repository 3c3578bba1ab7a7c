#!/usr/bin/env bash
# Build the Debian package of rsp with cargo-deb: man pages and shell completions are
# generated from the binary first (rsp man, rsp completions).
# Usage: packaging/build-deb.sh [--profile release|dev] [--no-build]
# The .deb lands in target/debian/. Needs cargo-deb (cargo install cargo-deb).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "usage: $0 [--profile release|dev] [--no-build]" >&2; exit 2 ;;
  esac
done
dir=release
[ "$profile" = dev ] && dir=debug
target="${CARGO_TARGET_DIR:-target}"
if [ "$build" = 1 ]; then
  cargo build --locked -p rsp --profile "$profile"
fi
rsp="$target/$dir/rsp"
out="$target/$dir/packaging"
rm -rf "$out"
mkdir -p "$out/completions" "$out/man"
"$rsp" completions bash > "$out/completions/rsp"
"$rsp" completions zsh > "$out/completions/_rsp"
"$rsp" completions fish > "$out/completions/rsp.fish"
"$rsp" man "$out/man" > /dev/null
cargo deb -p rsp --profile "$profile" --no-build --no-strip --fast -o "$target/debian/"
