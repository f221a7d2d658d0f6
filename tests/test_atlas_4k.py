"""The stronger built-in atlas (issue 14), the default since: its names load, the first default stays loadable by its
recorded id, its build config is what ships, docs/ATLAS.md is generated."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from atlas_align.atlas.atlas import BUILTIN_ATLAS_ID, DEFAULT_ATLAS_ID, STRONG_ATLAS_ID, Atlas, builtin_atlas_dir
from atlas_align.atlas.build import DEFAULT_ATLAS_BUILD, STRONG_ATLAS_BUILD, AtlasBuildConfig, category_label, category_stats
from atlas_align.atlas.labels import FeatureLabel, FeatureLabels
from atlas_align.corpus.sources import iter_samples
from atlas_align.errors import ConfigError
from atlas_align.refs import AtlasSpec

REPO = Path(__file__).resolve().parents[1]


def test_builtin_is_the_4k_atlas_and_the_first_default_keeps_its_name():
    assert DEFAULT_ATLAS_ID == STRONG_ATLAS_ID
    for text in ("builtin", "builtin-4k", STRONG_ATLAS_ID):
        spec = AtlasSpec.parse(text)
        assert (spec.kind, spec.id) == ("builtin", STRONG_ATLAS_ID)
        assert AtlasSpec.parse(str(spec)) == spec  # what an artifact records parses back to the same atlas
    for text in ("builtin-1536", BUILTIN_ATLAS_ID):  # artifacts fitted on the first default record this id
        spec = AtlasSpec.parse(text)
        assert (spec.kind, spec.id) == ("builtin", BUILTIN_ATLAS_ID) and AtlasSpec.parse(str(spec)) == spec
    assert builtin_atlas_dir() == builtin_atlas_dir(STRONG_ATLAS_ID) != builtin_atlas_dir(BUILTIN_ATLAS_ID)
    for typo in ("builtin:minilm-l3", "builtin-8k", "builtin:"):
        with pytest.raises(ConfigError, match="built-in ones are"):
            AtlasSpec.parse(typo)


def test_the_4k_atlas_loads_by_name_and_ships_its_build():
    atlas = Atlas.load("builtin-4k")
    assert atlas.atlas_id == STRONG_ATLAS_ID and atlas.ref.atlas_id == STRONG_ATLAS_ID
    assert atlas.config.name == STRONG_ATLAS_ID and atlas.config.d_in == 384 and atlas.width >= 4096
    assert atlas.config.build == STRONG_ATLAS_BUILD.model_dump(mode="json")  # the folder is exactly STRONG_ATLAS_BUILD
    assert atlas.config.training.validated_features == len(atlas.labels.validated()) and len(atlas.labels) == atlas.width
    assert Atlas.load(AtlasSpec.from_ref(atlas.ref)).atlas_id == STRONG_ATLAS_ID  # recorded ref → the same atlas
    assert Atlas.load("builtin").atlas_id == STRONG_ATLAS_ID
    default = Atlas.load(BUILTIN_ATLAS_ID)  # the first default
    assert default.atlas_id == BUILTIN_ATLAS_ID and default.width < atlas.width
    # (the default's atlas.json predates some CorpusConfig fields, so compare it as a config, missing fields at their defaults)
    assert AtlasBuildConfig.model_validate(default.config.build) == DEFAULT_ATLAS_BUILD == AtlasBuildConfig()


def test_strong_config_takes_every_window_of_the_builtin_corpus():
    cfg = AtlasBuildConfig.model_validate(STRONG_ATLAS_BUILD.model_dump())
    assert cfg == STRONG_ATLAS_BUILD and cfg.width >= 4096 and cfg.seed == DEFAULT_ATLAS_BUILD.seed
    assert (cfg.model, cfg.layer, cfg.corpus) == (DEFAULT_ATLAS_BUILD.model, DEFAULT_ATLAS_BUILD.layer, DEFAULT_ATLAS_BUILD.corpus)
    corpus = cfg.corpus.model_copy(update={"sampling": "sequential"})
    n_train = sum(1 for _ in iter_samples(corpus, "train"))
    n_heldout = sum(1 for _ in iter_samples(corpus, "heldout"))
    assert cfg.samples >= n_train and cfg.heldout_samples >= n_heldout and cfg.scan_limit >= n_train + n_heldout
    shipped = json.loads((builtin_atlas_dir(STRONG_ATLAS_ID) / "atlas.json").read_text())
    assert (shipped["corpus"]["n_train_texts"], shipped["corpus"]["n_heldout_texts"]) == (n_train, n_heldout)


def test_build_script_maps_atlas_names_to_configs():
    script = runpy.run_path(str(REPO / "scripts" / "build_default_atlas.py"))
    default, strong = script["ATLASES"]["1536"], script["ATLASES"]["4k"]
    assert default[0] is DEFAULT_ATLAS_BUILD and default[1] == BUILTIN_ATLAS_ID and default[2] == builtin_atlas_dir(BUILTIN_ATLAS_ID)
    assert strong[0] is STRONG_ATLAS_BUILD and strong[1] == STRONG_ATLAS_ID and strong[2] == builtin_atlas_dir(STRONG_ATLAS_ID)


def test_category_stats_counts_validated_labels_only():
    labels = FeatureLabels(
        [FeatureLabel(feature=i, label=category_label("noun.plant"), score=0.9, validated=True) for i in range(3)]
        + [FeatureLabel(feature=3, label=category_label("noun.animal"), score=0.85, validated=True)]
        + [FeatureLabel(feature=4, label="words: rose, tulip", validated=False)]
    )
    stats = category_stats(labels)
    assert stats["validated"] == 4 and stats["categories_covered"] == 2
    assert stats["max_category"] == "noun.plant" and stats["max_share"] == pytest.approx(0.75)
    assert stats["per_category"] == {"noun.plant": 3, "noun.animal": 1}
    assert category_stats(FeatureLabels())["max_share"] == 0.0


def test_atlas_doc_is_generated_from_the_shipped_atlases():
    script = runpy.run_path(str(REPO / "scripts" / "atlas_report.py"))
    current = (REPO / "docs" / "ATLAS.md").read_text(encoding="utf-8")
    assert script["render"]() == current, "docs/ATLAS.md is stale: run python scripts/atlas_report.py"
    strong = json.loads((builtin_atlas_dir(STRONG_ATLAS_ID) / "atlas.json").read_text())
    assert f"| {strong['training']['validated_features']} |" in current


def test_atlas_doc_reflects_the_attempt_log(tmp_path):
    script = runpy.run_path(str(REPO / "scripts" / "atlas_report.py"))
    log = tmp_path / "attempts.jsonl"
    line = (REPO / "docs" / "atlas_attempts.jsonl").read_text(encoding="utf-8").splitlines()[0]
    record = json.loads(line)
    record["attempt"], record["labels"]["validated"] = "made-up", 12345
    log.write_text(line + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    rendered = script["render"](log)
    assert "| made-up |" in rendered and "| 12345 |" in rendered
    assert rendered != script["render"]()
