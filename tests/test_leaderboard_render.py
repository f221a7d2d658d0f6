"""Leaderboard rendering, and the page in a real headless Chromium (sort, filter, heatmap, curves, bars, links, screenshot)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from atlas_align.leaderboard.collect import extract_metrics
from atlas_align.leaderboard.render import best_layers, card_url, load, render, to_markdown
from atlas_align.leaderboard.schema import METRIC_COLUMNS, Leaderboard, LeaderboardRow

REPO = Path(__file__).resolve().parents[1]
VERSIONS = {"translation": "1", "retrieval": "1"}


def sample_board() -> Leaderboard:
    def row(repo, model, layer, method, auroc, status="verified"):
        return LeaderboardRow(
            repo_id=repo, commit=f"{abs(hash(repo)) % 10**12:040d}", atlas_id="builtin", subject_model=model, layer=layer,
            hookpoint=f"layers.{layer}", method=method, metrics={"auroc": auroc, "ap": auroc / 2, "mrr": auroc - 0.1, "mpp": 0.2, "faithfulness": 0.1},
            benchmark_versions=VERSIONS, status=status,
        )

    rows = [
        row("org/smol-l10", "HuggingFaceTB/SmolLM2-135M-Instruct", 10, "procrustes", 0.71),
        row("org/smol-l20", "HuggingFaceTB/SmolLM2-135M-Instruct", 20, "procrustes", 0.83),
        row("org/smol-l20-cov", "HuggingFaceTB/SmolLM2-135M-Instruct", 20, "covariance", 0.64, "corrected"),
        row("org/qwen-l12", "Qwen/Qwen2.5-Coder-0.5B-Instruct", 12, "procrustes", 0.78, "self-reported"),
    ]
    return Leaderboard(generated_at="2026-11-25T00:00:00Z", registry="http://127.0.0.1:1", rows=rows)


# Three models of different depths, four layers each at roughly 1/4, 1/2, 3/4 and the last layer (so the heatmap has to
# merge 0.235/0.241/0.273 into one column), three methods including the control, a refused row and an old depth-less row.
MODELS = {  # subject model → (n_layers, the four layers)
    "HuggingFaceTB/SmolLM2-135M": (30, (7, 15, 22, 29)),
    "google/gemma-3-270m": (18, (4, 9, 13, 17)),
    "sentence-transformers/all-mpnet-base-v2": (12, (3, 6, 8, 11)),
}
METHODS = {"procrustes": 0.05, "covariance": 0.02, "random_rotation": -0.12}
BEST_AUROC = ("google/gemma-3-270m", 9, "procrustes", 0.912)  # the heatmap's best cell under AUROC
BEST_MRR = 0.75  # SmolLM2 at its last layer, procrustes: 0.3 + 0.2 + 0.2 + 0.05


def rich_board() -> Leaderboard:
    rows = []
    for i, (model, (n_layers, layers)) in enumerate(MODELS.items()):
        for j, layer in enumerate(layers):
            for method, offset in METHODS.items():
                auroc = 0.60 + 0.05 * i + (0.00, 0.08, 0.12, 0.03)[j] + offset
                if (model, layer, method) == BEST_AUROC[:3]:
                    auroc = BEST_AUROC[3]
                mrr = 0.30 + 0.10 * (2 - i) + (0.10, 0.05, 0.00, 0.20)[j] + offset
                rows.append(LeaderboardRow(
                    repo_id=f"org/{model.split('/')[-1].lower()}-l{layer}-{method}", commit=f"{i}{j}{len(rows):038d}", atlas_id="builtin",
                    subject_model=model, layer=layer, depth=layer / (n_layers - 1), hookpoint=f"layers.{layer}", method=method,
                    metrics={"auroc": round(auroc, 4), "ap": round(auroc / 2, 4), "mrr": round(mrr, 4), "mpp": 0.2, "faithfulness": None},
                    benchmark_versions=VERSIONS, status="corrected" if (i, j, method) == (2, 0, "covariance") else "verified",
                ))
    rows.append(LeaderboardRow(
        repo_id="org/smollm2-l15-correlation-broken", commit="f" * 40, atlas_id="builtin", subject_model="HuggingFaceTB/SmolLM2-135M", layer=15,
        depth=15 / 29, hookpoint="layers.15", method="correlation", metrics=dict.fromkeys(("auroc", "ap", "mrr", "mpp", "faithfulness")),
        benchmark_versions=VERSIONS, status="refused", notes="refused: T has non-finite entries (IntegrityError)",
    ))
    rows.append(LeaderboardRow(
        repo_id="org/old-row", commit="e" * 40, atlas_id="builtin", subject_model="Qwen/Qwen2.5-0.5B", layer=12, depth=None,
        hookpoint="layers.12", method="procrustes", metrics={"auroc": 0.7, "mrr": 0.5}, benchmark_versions=VERSIONS,
    ))
    return Leaderboard(generated_at="2026-11-25T00:00:00Z", registry="https://huggingface.co", rows=rows)


def test_outputs_written_and_ordered(tmp_path):
    paths = render(sample_board(), tmp_path)
    assert load(paths["json"]) == sample_board()
    md = paths["markdown"].read_text()
    assert "## Atlas: builtin [retrieval@1,translation@1]" in md
    table = md[md.index("All alignments:") :]
    order = [line.split("|")[-2].strip() for line in table.splitlines() if line.startswith("| HuggingFace") or line.startswith("| Qwen")]
    assert order == [f"[{r}](http://127.0.0.1:1/{r})" for r in ["org/smol-l20", "org/qwen-l12", "org/smol-l10", "org/smol-l20-cov"]]
    html = paths["html"].read_text()
    assert "__DATA__" not in html and "org/qwen-l12" in html


def test_markdown_best_layer_table_and_missing_values():
    md = to_markdown(rich_board())
    best = md[md.index("Best layer per model") : md.index("All alignments:")]
    lines = [line for line in best.splitlines() if line.startswith("| ") and "Subject model" not in line]
    assert len(lines) == 4  # three swept models and the old row; the refused row has no number and is not a "best"
    gemma = [c.strip() for c in lines[0].split("|")[1:-1]]
    # the best is Gemma layer 9 (depth 0.53) procrustes 0.912; its control there: 0.60 + 0.05 + 0.08 - 0.12 = 0.610
    assert gemma == ["google/gemma-3-270m", "9", "0.53", "procrustes", "0.912", "0.500", "0.610", "+0.302"]
    old = [c.strip() for c in lines[-1].split("|")[1:-1]]
    assert old[:3] == ["Qwen/Qwen2.5-0.5B", "12", "—"] and old[-2:] == ["—", "—"]
    refused = next(line for line in md.splitlines() if "correlation-broken" in line)
    assert "refused" in refused and refused.count("—") >= 5
    assert "[org/old-row](https://huggingface.co/org/old-row)" in md
    assert [pair[0].subject_model for pair in best_layers(rich_board().rows)][0] == "google/gemma-3-270m"


def test_card_url():
    assert card_url("https://huggingface.co", "org/name") == "https://huggingface.co/org/name"
    assert card_url("http://127.0.0.1:8080/", "a b/c") == "http://127.0.0.1:8080/a%20b/c"
    assert card_url("atlas-align registry server (scripts/build_demo_leaderboard.py)", "org/name") is None


def test_extract_metrics_reads_eval_results():
    doc = {"results": {"translation@1": {"metrics": {"auroc": 0.8, "ap": 0.4}}, "retrieval@1": {"metrics": {"mrr": 0.9}}}}
    metrics, versions = extract_metrics(doc)
    assert metrics["auroc"] == 0.8 and metrics["mrr"] == 0.9 and metrics["faithfulness"] is None
    assert versions == {"translation": "1", "retrieval": "1"}


def _require_browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        why = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("ATLAS_ALIGN_REQUIRE_BROWSER") == "1":  # CI sets it: a missing browser is a failure there
            pytest.fail(f"ATLAS_ALIGN_REQUIRE_BROWSER=1 but the browser test cannot run: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--force-device-scale-factor=1",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    browser.set_window_size(1300, 1000)
    yield browser
    browser.quit()


def test_page_sorts_filters_and_plots_in_headless_chromium(driver, tmp_path):
    from selenium.webdriver.common.by import By

    paths = render(sample_board(), tmp_path)
    driver.get(paths["html"].as_uri())
    repos = lambda: [tr.get_attribute("data-repo") for tr in driver.find_elements(By.CSS_SELECTOR, "table.board tbody tr")]
    assert repos() == ["org/smol-l20", "org/qwen-l12", "org/smol-l10", "org/smol-l20-cov"]  # AUROC, descending
    header = driver.find_element(By.CSS_SELECTOR, "th[data-key='layer']")
    header.click()  # first click sorts descending
    assert repos()[-1] == "org/smol-l10"
    driver.find_element(By.CSS_SELECTOR, "th[data-key='layer']").click()
    assert repos()[0] == "org/smol-l10"
    driver.find_element(By.ID, "filter").send_keys("qwen")
    assert repos() == ["org/qwen-l12"]
    driver.find_element(By.ID, "filter").clear()
    driver.execute_script("document.getElementById('filter').dispatchEvent(new Event('input'))")
    assert len(repos()) == 4
    assert driver.find_element(By.CSS_SELECTOR, "td .badge.corrected").text == "corrected"
    # rows without a relative depth: no heatmap cells or curves, but the method bars still draw (3 rows with a layer and AUROC)
    assert not driver.find_elements(By.CSS_SELECTOR, "svg.heatmap rect.cell") and not driver.find_elements(By.CSS_SELECTOR, "svg.curve path.curve")
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.bars rect.bar")) == 3  # SmolLM2 at layer 20 (2 methods), Qwen at 12
    assert "no relative depth" in driver.find_element(By.CSS_SELECTOR, "section.atlas p.note").text
    # this registry is a web address: the repo cell links to {registry}/{repo_id}
    assert driver.find_element(By.CSS_SELECTOR, "tr[data-repo='org/qwen-l12'] a.card").get_attribute("href") == "http://127.0.0.1:1/org/qwen-l12"


def _cells(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "section.atlas svg.heatmap rect.cell")


def test_page_charts_links_and_badges_in_headless_chromium(driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    board = rich_board()
    paths = render(board, tmp_path)
    driver.get(paths["html"].as_uri())
    assert len(driver.find_elements(By.CSS_SELECTOR, "section.atlas")) == 1
    # (1) heatmap: 3 models × 4 merged depth columns, every cell filled, the outlined best cell holds the known best AUROC
    cells = _cells(driver)
    assert len(cells) == 12 and not driver.find_elements(By.CSS_SELECTOR, "svg.heatmap rect.cell.empty")
    columns = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "svg.heatmap text.col-label")]
    assert columns == ["0.24–0.27", "0.52–0.55", "0.73–0.76", "1.00"]
    best = driver.find_element(By.CSS_SELECTOR, "svg.heatmap rect.cell.best")
    assert (best.get_attribute("data-model"), best.get_attribute("data-method"), best.get_attribute("data-value")) == ("google/gemma-3-270m", "procrustes", "0.912")
    assert max(float(c.get_attribute("data-value")) for c in cells) == 0.912
    assert "0.912" in [t.text for t in driver.find_elements(By.CSS_SELECTOR, "svg.heatmap text.cell-value")]
    assert driver.find_elements(By.CSS_SELECTOR, "svg.heatmap .legend-scale")
    auroc_values = [c.get_attribute("data-value") for c in cells]
    # (2) layer curves: one solid path per model (the depth-less model is not drawn), one dashed control path per model
    curves = driver.find_elements(By.CSS_SELECTOR, "svg.curve path.curve")
    assert sorted(p.get_attribute("data-model") for p in curves) == sorted(MODELS)
    controls = driver.find_elements(By.CSS_SELECTOR, "svg.curve path.control")
    assert len(controls) == 3 and all(p.get_attribute("stroke-dasharray") for p in controls)
    assert all(p.get_attribute("d").count("L") == 3 for p in curves)  # four depths each
    # (3) method bars: each of the 4 models with a value, at its best layer, one bar per method (control included)
    bars = driver.find_elements(By.CSS_SELECTOR, "svg.bars rect.bar")
    assert len(bars) == 3 * 3 + 1
    gemma = {b.get_attribute("data-method"): b.get_attribute("data-value") for b in bars if b.get_attribute("data-model") == "google/gemma-3-270m"}
    assert gemma == {"procrustes": "0.912", "covariance": "0.750", "random_rotation": "0.610"}
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.bars rect.bar.control")) == 3
    # (4) table: card links and badges, the refused row's notes on hover and '—' for its metrics
    link = driver.find_element(By.CSS_SELECTOR, "tr[data-repo='org/gemma-3-270m-l9-procrustes'] a.card")
    assert link.get_attribute("href") == "https://huggingface.co/org/gemma-3-270m-l9-procrustes"
    refused = driver.find_element(By.CSS_SELECTOR, "tr[data-repo='org/smollm2-l15-correlation-broken']")
    badge = refused.find_element(By.CSS_SELECTOR, ".badge.refused")
    assert badge.get_attribute("title") == "refused: T has non-finite entries (IntegrityError)" and badge.text == "refused"
    assert [td.text for td in refused.find_elements(By.CSS_SELECTOR, "td.num")][2:] == ["—"] * len(METRIC_COLUMNS)  # layer, depth, then every metric
    assert len(driver.find_elements(By.CSS_SELECTOR, "table.board tbody tr")) == len(board.rows)
    driver.save_screenshot(str(tmp_path / "leaderboard-auroc.png"))
    # the metric selector recolours and relabels the heatmap (and the best cell moves to SmolLM2's last layer)
    Select(driver.find_element(By.ID, "metric")).select_by_value("mrr")
    cells = _cells(driver)
    mrr_values = [c.get_attribute("data-value") for c in cells]
    assert len(cells) == 12 and mrr_values != auroc_values
    best = driver.find_element(By.CSS_SELECTOR, "svg.heatmap rect.cell.best")
    assert (best.get_attribute("data-model"), best.get_attribute("data-value")) == ("HuggingFaceTB/SmolLM2-135M", f"{BEST_MRR:.3f}")
    assert "MRR" in driver.find_element(By.CSS_SELECTOR, "section.atlas .chart h3").text
    # the method selector: only the control's values, and the curve then has no separate dashed control line
    Select(driver.find_element(By.ID, "method")).select_by_value("random_rotation")
    assert {c.get_attribute("data-method") for c in _cells(driver)} == {"random_rotation"}
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.curve path.curve")) == 3 and not driver.find_elements(By.CSS_SELECTOR, "svg.curve path.control")
    # sorting and filtering the table still work alongside the charts
    driver.find_element(By.ID, "filter").send_keys("gemma")
    assert len(driver.find_elements(By.CSS_SELECTOR, "table.board tbody tr")) == 12 and len(_cells(driver)) == 12
    driver.save_screenshot(str(tmp_path / "leaderboard.png"))
    assert (tmp_path / "leaderboard.png").stat().st_size > 10_000


def test_screenshot_script_on_a_synthetic_board(tmp_path):
    _require_browser()
    board_json = render(rich_board(), tmp_path / "board")["json"]
    out = tmp_path / "shot" / "leaderboard.png"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "screenshot_leaderboard.py"), "--board", str(board_json), "--out", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    # a board without relative depths is refused (nothing to draw on the depth charts)
    flat = render(sample_board(), tmp_path / "flat")["json"]
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "screenshot_leaderboard.py"), "--board", str(flat), "--out", str(tmp_path / "x.png")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "no row has a relative depth" in done.stderr and not (tmp_path / "x.png").exists()


def test_a_row_lacking_a_benchmark_shares_the_board_that_agrees_on_the_rest():
    """An encoder has no steering version; it belongs with the causal LMs it shares translation/retrieval versions with."""

    def row(repo, versions, atlas="builtin"):
        return LeaderboardRow(repo_id=repo, commit="0" * 40, atlas_id=atlas, subject_model=repo, layer=1, hookpoint="layers.1", method="procrustes",
                              metrics={"auroc": 0.6}, benchmark_versions=versions, status="verified")  # fmt: skip

    board = Leaderboard(generated_at="2026-11-26T00:00:00Z", registry="r", rows=[
        row("org/causal", {"translation": "2", "retrieval": "2", "steering": "3"}),
        row("org/encoder", {"translation": "2", "retrieval": "2"}),
        row("org/old", {"translation": "1", "retrieval": "2"}),
        row("org/other-atlas", {"translation": "2", "retrieval": "2"}, atlas="other"),
    ])  # fmt: skip
    groups = {name: sorted(r.repo_id for r in rows) for name, rows in board.boards().items()}
    assert groups == {
        "builtin [retrieval@2,steering@3,translation@2]": ["org/causal", "org/encoder"],
        "builtin [retrieval@2,translation@1]": ["org/old"],
        "other [retrieval@2,translation@2]": ["org/other-atlas"],
    }
