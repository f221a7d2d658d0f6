"""Screenshot the leaderboard page (heatmap, layer curves, method bars, top of the table) for the README.

    python scripts/screenshot_leaderboard.py                          # leaderboard/leaderboard.json → docs/leaderboard.png
    python scripts/screenshot_leaderboard.py --board B.json --out X.png --metric mrr

The page is rendered from the board JSON into a temporary folder (the published index.html is not touched) and opened in
headless Chromium (Debian's ``chromium`` + ``chromium-driver``, and ``selenium``). A board whose rows carry no relative
depth is refused: its heatmap and curves would be empty, which is no picture for a README (``--allow-no-depth`` overrides).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars", "--force-device-scale-factor=1")


def chromium_driver(profile_dir: Path):
    """A headless Chromium WebDriver (raises RuntimeError when chromium/chromedriver are not installed)."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        raise RuntimeError("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(chromedriver), options=options)


def screenshot(board_json: Path, out: Path, *, width: int = 1280, max_height: int = 1150, metric: str = "auroc", allow_no_depth: bool = False) -> Path:
    sys.path.insert(0, str(REPO))
    from atlas_align.leaderboard.render import load, to_html

    board = load(board_json)
    if not allow_no_depth and not any(row.depth is not None for row in board.rows):
        raise SystemExit(f"{board_json}: no row has a relative depth yet (rebuild the board first); --allow-no-depth to shoot it anyway")
    with tempfile.TemporaryDirectory(prefix="leaderboard-shot-") as tmp:
        page = Path(tmp) / "index.html"
        page.write_text(to_html(board), encoding="utf-8")
        driver = chromium_driver(Path(tmp) / "profile")
        try:
            driver.set_window_size(width, 800)
            driver.get(page.as_uri())
            if metric != "auroc":
                driver.execute_script("const s = document.getElementById('metric'); s.value = arguments[0]; s.dispatchEvent(new Event('change'));", metric)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(width, min(int(height) + 20, max_height))
            out.parent.mkdir(parents=True, exist_ok=True)
            if not driver.save_screenshot(str(out)):
                raise RuntimeError(f"Chromium did not write {out}")
        finally:
            driver.quit()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", type=Path, default=REPO / "leaderboard" / "leaderboard.json")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "leaderboard.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--max-height", type=int, default=1150)
    parser.add_argument("--metric", default="auroc", choices=["auroc", "mrr", "ap", "mpp", "faithfulness"])
    parser.add_argument("--allow-no-depth", action="store_true")
    args = parser.parse_args(argv)
    out = screenshot(args.board, args.out, width=args.width, max_height=args.max_height, metric=args.metric, allow_no_depth=args.allow_no_depth)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
