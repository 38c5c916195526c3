#!/usr/bin/env bash
# Whole-process replay of the peers' abandoned-cart file (PEERS_DIR: the team's peer
# implementations, gen_events.py, baseline_python.py and rust_baseline/), in one run on this
# machine: remarket (1 and 2 shards) against the plain-Python peer and the naive Rust loop.
# Runs are interleaved (noise hits every contender alike); medians of RUNS (default 5).
#
#   benches/peers/compare.sh [PEERS_DIR] [DATA_FILE]
#
# Prints one line per contender (median seconds, peak RSS) and the ratios the README quotes.
set -euo pipefail
cd "$(dirname "$0")/../.."
peers="${1:-../shared/peers}"
data="${2:-/tmp/peers-events.jsonl}"
runs="${RUNS:-5}"
[ -s "$data" ] || python3 "$peers/gen_events.py" --out "$data" >&2
(cd "$peers/rust_baseline" && CARGO_TARGET_DIR=/tmp/rust-baseline cargo build --release -q)
cargo build --release -q
remarket=target/release/remarket
baseline=/tmp/rust-baseline/release/cart-baseline
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

declare -A cmd=(
  [remarket-1-shard]="$remarket replay --quiet --config benches/peers/cart.toml --shards 1 --out $out/r1 $data"
  [remarket-2-shards]="$remarket replay --quiet --config benches/peers/cart.toml --shards 2 --out $out/r2 $data"
  [rust-naive-loop]="$baseline $data sonic-once"
)
# The Python peer takes seconds a run: fewer runs.
py="python3 $peers/baseline_python.py $data"
for i in $(seq "$runs"); do
  for name in "${!cmd[@]}"; do
    /usr/bin/time -f "%e %M" -o "$out/t" ${cmd[$name]} >/dev/null 2>"$out/err" || { cat "$out/err" >&2; exit 1; }
    echo "$name $(cat "$out/t")" >>"$out/times"
  done
  if [ "$i" -le 2 ]; then
    /usr/bin/time -f "%e %M" -o "$out/t" $py >/dev/null
    echo "python-peer $(cat "$out/t")" >>"$out/times"
  fi
done
grep -q '"qualified": 69036' "$out/r1/summary.json" || { echo "remarket found other users" >&2; exit 1; }
python3 - "$out/times" <<'PY'
import sys, statistics, collections
t = collections.defaultdict(list); m = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, secs, kb = line.split()
    t[name].append(float(secs)); m[name].append(int(kb))
med = {n: statistics.median(v) for n, v in t.items()}
for n in sorted(med):
    print(f"{n:18} median {med[n]:6.2f} s  (runs {' '.join(f'{x:.2f}' for x in t[n])})  peak RSS {max(m[n])//1024} MB")
best = min(med["remarket-1-shard"], med["remarket-2-shards"])
print(f"python-peer / remarket   = {med['python-peer'] / best:5.1f}x  (target >= 25x)")
print(f"rust-naive-loop / remarket = {med['rust-naive-loop'] / best:5.2f}x  (target >= 1.5x)")
PY
