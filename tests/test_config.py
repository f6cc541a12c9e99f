"""params.yaml validation: every bad value names its key."""

from pathlib import Path

import pytest
import yaml

from nvr import config
from nvr.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize("path", [ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))],
                         ids=lambda p: p.name)
def test_every_profile_validates(path):
    study = config.load(path)
    assert study.method_names()
    for m in study.method_names():
        assert study.mining_config(m).num_negatives >= 1


PROFILES = [ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))]


def test_default_methods_match_the_presets():
    """params.yaml spells out each paper method (every preset the study needs)."""
    from nvr.mining import PRESETS

    study = config.load(ROOT / "params.yaml")
    named = [m for m in study.method_names() if m in PRESETS]   # sweep points are not presets
    assert {"naive", "shift10", "abs07", "marginpos005", "percpos095", "percpos095_sampled10",
            "top1_sampled10"} <= set(named)


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_methods_named_after_a_preset_are_that_preset(path):
    """A method named after a preset (the paper's methods) has the preset's settings in params.yaml and
    in EVERY profile: all of them (window_after_filters, temperature, ...), not a chosen few, so a
    profile cannot drift from the paper's reading (e.g. PercPos + sampled top-10 without
    ``window_after_filters``). Only n and the seed are a profile's own."""
    import dataclasses

    from nvr.mining import PRESETS

    study = config.load(path)
    named = [m for m in study.method_names() if m in PRESETS]
    assert named, f"{path.name}: no preset method"
    for name in named:
        ours, ref = study.mining_config(name), PRESETS[name]
        for f in dataclasses.fields(ref):
            if f.name in ("num_negatives", "seed"):
                continue
            assert getattr(ours, f.name) == getattr(ref, f.name), (path.name, name, f.name)


def expect(raw_params, *fragments):
    with pytest.raises(ConfigError) as exc:
        config.parse(raw_params)
    for f in fragments:
        assert f in str(exc.value), str(exc.value)


def test_unknown_top_level_key_suggests():
    r = raw(); r["minig"] = {}
    expect(r, "minig", "did you mean 'mining'")


def test_unknown_nested_key_named_with_path():
    r = raw(); r["dataset"]["max_doc"] = 3
    expect(r, "dataset.max_doc", "max_docs")


def test_wrong_type_and_range():
    r = raw(); r["teachers"]["minilm"]["depth"] = "many"
    expect(r, "teachers.minilm.depth")
    r = raw(); r["teachers"]["minilm"]["depth"] = 0
    expect(r, "teachers.minilm.depth", "> 0")
    r = raw(); r["dataset"]["source"] = "web"
    expect(r, "dataset.source", "beir_local")


def test_mining_method_errors_name_the_method_key():
    r = raw(); r["mining"]["methods"]["percpos095"]["perc"] = -1
    expect(r, "mining.methods.percpos095.perc")
    r = raw(); r["mining"]["methods"]["naive"] = {"selction": "top"}
    expect(r, "mining.methods.naive.selction", "selection")
    r = raw(); r["mining"]["methods"]["naive"] = {"selection": "best"}
    expect(r, "mining.methods.naive.selection")


def test_teacher_references_checked():
    r = raw(); r["teacher"] = "e5"
    expect(r, "teacher", "e5")
    r = raw(); r["teacher_ablation"] = ["minilm", "bm52"]
    expect(r, "teacher_ablation", "bm52")
    r = raw(); r["train"]["stage2_method"] = "percpos"
    expect(r, "train.stage2_method")


def test_stage_config_errors(tmp_path):
    r = raw(); r["train"]["stage1"]["learning_rate"] = -1.0
    p = tmp_path / "params.yaml"; p.write_text(yaml.safe_dump(r))
    with pytest.raises(ConfigError, match=r"train\.stage1\.learning_rate"):
        config.load(p)
    r = raw(); r["train"]["stage1"]["batchsize"] = 3
    p.write_text(yaml.safe_dump(r))
    with pytest.raises(ConfigError, match=r"train\.stage1\.batchsize"):
        config.load(p)


def test_malformed_yaml_names_line(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("seed: 1\nmining: [unclosed\n")
    with pytest.raises(ConfigError, match=r"params\.yaml:\d+"):
        config.load(p)
