#!/usr/bin/env bash
# Leaderboard job: collect alignments from a registry, verify commits not verified yet, re-render
# leaderboard/, print a readable diff, and (with LEADERBOARD_COMMIT=1) commit it on a branch.
# Runs the same locally, in CI, or from a test against a registry server started by the test.
#   HF_ENDPOINT        registry URL (default: huggingface.co)
#   HF_TOKEN           token, if the registry needs one to read
#   LEADERBOARD_DIR    output folder (default: leaderboard)
#   LEADERBOARD_VERIFY 1 (default) re-runs benchmarks; 0 trusts self-reported numbers
#   LEADERBOARD_CACHE  verified-results cache (default: .cache/atlas-align/leaderboard)
#   LEADERBOARD_COMMIT 1 to commit the change on branch leaderboard/update
#   PYTHON             the interpreter that has atlas-align installed (default: python3)
set -euo pipefail
py="${PYTHON:-python3}"
out="${LEADERBOARD_DIR:-leaderboard}"
verify=$([ "${LEADERBOARD_VERIFY:-1}" = "1" ] && echo --verify || echo --no-verify)
registry_args=()
[ -n "${HF_ENDPOINT:-}" ] && registry_args=(--registry "$HF_ENDPOINT")

before=$(mktemp)
[ -f "$out/leaderboard.json" ] && cp "$out/leaderboard.json" "$before" || echo '{"rows": []}' > "$before"
"$py" -m atlas_align.cli leaderboard build "${registry_args[@]}" "$verify" --out "$out" --cache-dir "${LEADERBOARD_CACHE:-.cache/atlas-align/leaderboard}"
"$py" -m atlas_align.cli leaderboard diff "$before" "$out/leaderboard.json"
rm -f "$before"

if [ "${LEADERBOARD_COMMIT:-0}" = "1" ] && git rev-parse --git-dir >/dev/null 2>&1; then
  if [ -n "$(git status --porcelain -- "$out")" ]; then
    git checkout -B leaderboard/update
    git add "$out"
    git -c user.name="atlas-align bot" -c user.email="bot@atlas-align.invalid" commit -q -m "leaderboard: rebuild from ${HF_ENDPOINT:-huggingface.co}"
    echo "committed the leaderboard update on branch leaderboard/update"
  else
    echo "leaderboard unchanged"
  fi
fi
