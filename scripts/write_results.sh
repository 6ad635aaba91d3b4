#!/usr/bin/env bash
# Regenerates every figure in docs/ from the shipped recordings (run after scripts/record_shipped.sh).
#   bash scripts/write_results.sh [--splits N]
set -euo pipefail
cd "$(dirname "$0")/.."
splits=${SPLITS:-20}
python benchmarks/recording_stats.py --docs docs/recordings.md > benchmarks/results/recording_stats.json
out=docs/results-example.md
cat > "$out" <<'MD'
# The example's table on the shipped recordings

Written by `bash scripts/write_results.sh`, which runs `examples/mmlu_gate.py` for three cost
triples. Share of oracle savings = (best constant cost - policy cost) / (best constant cost -
oracle cost), where the constants are always-run and always-skip: post-inference policies pay c
on every item and can land below 0 in this frame (see docs/concepts.md). *Skips* are items never
run; *abstains* are items run whose answer was not used (both cost S). The two-gate row fits its
pre-gate calibrator on half of the calibration items and its post-gate calibrator on the other
half (`Cascade(split=0.5)`, see docs/guarantees.md).

MD
for triple in "1 3 6" "1 2 4" "1 5 10"; do
  set -- $triple
  python examples/mmlu_gate.py --c "$1" --S "$2" --E "$3" --markdown "$out" > /dev/null
done
python benchmarks/bench_gates.py --splits "$splits" --json-out benchmarks/results/gates.json --docs docs/results.md > /dev/null
python benchmarks/validate_guarantees.py --json-out benchmarks/results/validity.json --docs docs/guarantees.md > /dev/null
python benchmarks/bench_guarantees.py --json-out benchmarks/results/guarantees.json --docs docs/guarantees.md > /dev/null
python benchmarks/validate_tiers.py --docs docs/routing.md > /dev/null
# Many models: needs the MMLU-Pro folder (../shared/data/mmlu-pro or MMLU_PRO=...) and its embeddings.
mmlu_pro=${MMLU_PRO:-../shared/data/mmlu-pro}
if [ -d "$mmlu_pro" ]; then
  python benchmarks/embed_mmlu_pro.py --data "$mmlu_pro" > /dev/null
  python benchmarks/bench_routing.py --data "$mmlu_pro" --docs docs/routing.md > /dev/null
else
  echo "write_results: no MMLU-Pro folder at $mmlu_pro; docs/routing.md's benchmark table left as it is" >&2
fi
