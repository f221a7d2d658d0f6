"""Run `atlas-align demo` and keep what it printed in docs/demo.txt (the README quotes it from there).

    python scripts/record_demo.py            # ~1–2 minutes on 2 idle cores after the first de-quantisation
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    from atlas_align.cli.demo import run_demo
    from atlas_align.files import atomic_write_text

    lines: list[str] = []

    def echo(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    with tempfile.TemporaryDirectory() as tmp:
        run_demo(Path(tmp) / "atlas-align-demo", echo=echo)
    kept = [line.replace(tmp, "<out>") for line in lines if not line.startswith(("done in", "next:"))]
    atomic_write_text(REPO / "docs" / "demo.txt", "\n".join(kept) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
