"""The one spec parser: what users type and what artifacts record both load back."""

import pytest

from atlas_align.errors import ConfigError
from atlas_align.refs import AtlasRef, AtlasSpec, raw_atlas_id


def test_raw_atlas_written_with_a_module_path_parses_back():
    """Regression: a raw-model atlas was written as '…@layers.4' but parsed as '…@4' only."""
    recorded = raw_atlas_id("minilm", "encoder.layer.4")
    spec = AtlasSpec.parse(recorded)
    assert (spec.kind, spec.id, spec.hookpoint, spec.layer) == ("raw", "minilm", "encoder.layer.4", None)
    assert str(spec) == recorded
    by_index = AtlasSpec.parse("model:minilm@4")
    assert (by_index.layer, by_index.hookpoint) == (4, None)
    assert AtlasSpec.parse("model:org/some-model@-1").layer == -1


def test_recorded_atlas_revision_survives_reload():
    """Regression: the atlas revision in an artifact was dropped when the atlas was loaded for evaluation."""
    ref = AtlasRef(atlas_id="lab/atlas", revision="v2")
    assert AtlasSpec.from_ref(ref) == AtlasSpec(kind="repo", id="lab/atlas", revision="v2")
    raw = AtlasRef(atlas_id=raw_atlas_id("minilm", "encoder.layer.3"), revision="abc", model_id="minilm", hookpoint="encoder.layer.3", kind="raw")
    assert AtlasSpec.from_ref(raw).revision == "abc" and AtlasSpec.from_ref(raw).hookpoint == "encoder.layer.3"


def test_builtin_folder_and_bad_specs(tmp_path):
    assert AtlasSpec.parse("builtin").kind == "builtin"
    assert AtlasSpec.parse("builtin:minilm-l3-wordnet").kind == "builtin"  # the id artifacts record
    assert AtlasSpec.parse(tmp_path).kind == "folder"
    for bad in ("", "model:@3", "model:minilm@", "not a spec", str(tmp_path / "missing" / "x")):
        with pytest.raises(ConfigError):
            AtlasSpec.parse(bad)
