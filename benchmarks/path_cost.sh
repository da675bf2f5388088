#!/usr/bin/env bash
# Instructions per request of the gateway's request path at TREE (default: this checkout),
# counted by callgrind: (I(N=500) - I(N=100)) / 400. See benchmarks/path_cost.py.
set -euo pipefail
tree="$(cd "${1:-$(dirname "$0")/..}" && pwd)"
script="$(cd "$(dirname "$0")" && pwd)/path_cost.py"
out="$(mktemp -d)"
for n in 100 500; do
  (cd "$tree" && WARM=50 N=$n valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    .venv/bin/python "$script" >"$out/$n.log" 2>&1)
done
count() { grep -m1 "Collected" "$out/$1.log" | awk '{print $4}'; }
echo "$tree $(git -C "$tree" rev-parse --short HEAD): $(( ($(count 500) - $(count 100)) / 400 )) instructions per request"
rm -rf "$out"
