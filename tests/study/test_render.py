"""Published results: the docs equal the rendering of the committed results files; staleness is detected."""

from __future__ import annotations

import json
import shutil

import pytest

from common.study import render
from common.study.engine import code_fingerprint
from common.study.runner import BUNDLE_NAMES, REPO_ROOT


def test_docs_equal_the_rendering_of_the_committed_results():
    for path, text in render.rendered_documents().items():
        assert path.read_text() == text, (
            f"{path} is not the rendering of the committed results: python -m common.study.render"
        )


def test_committed_results_are_three_seed_quick_studies():
    for bundle in BUNDLE_NAMES:
        record = render.load_results(bundle)
        if record is None:
            continue
        assert record["profile"] == "quick" and record["seeds"] == [0, 1, 2], bundle
        assert set(record["summary"]["per_seed"]) == {"0", "1", "2"}, bundle
        for claim in record["claims"]:
            assert 0 <= claim["holds_in"] <= claim["of"] == 3
        for figure in record["figures"]:
            assert (render.results_dir(bundle) / figure).read_bytes()[:4] == b"\x89PNG"


def _tree(tmp_path):
    """A copy of the code, configs and docs the renderer reads."""
    for sub in ("common", "bundles"):
        shutil.copytree(REPO_ROOT / sub, tmp_path / sub, ignore=shutil.ignore_patterns("__pycache__", "models"))
    shutil.copyfile(REPO_ROOT / "README.md", tmp_path / "README.md")
    return tmp_path


def _record(bundle, fingerprint):
    return {"profile": "quick", "code_fingerprint": fingerprint, "claims": [], "runs": [], "figures": []}


def test_stale_results_name_the_file_and_both_fingerprints(tmp_path):
    root = _tree(tmp_path)
    current = code_fingerprint(root)
    for bundle in BUNDLE_NAMES:
        render.results_dir(bundle, root).mkdir(parents=True, exist_ok=True)
        fp = current if bundle != "sr_degradation_bias" else "0123456789abcdef"
        (render.results_dir(bundle, root) / "quick.json").write_text(json.dumps(_record(bundle, fp)))
    problems = render.stale_results(root)
    assert len(problems) == 1
    assert "sr_degradation_bias/docs/results/quick.json: stale" in problems[0]
    assert "0123456789abcdef" in problems[0] and current in problems[0]
    (root / "common" / "study" / "report.py").write_text((root / "common/study/report.py").read_text() + "\n# x\n")
    assert len(render.stale_results(root)) == len(BUNDLE_NAMES)  # any code change makes every committed file stale


def test_a_doc_without_markers_is_a_clear_error(tmp_path):
    root = _tree(tmp_path)
    doc = root / "bundles/sr_degradation_bias/docs/README.md"
    doc.write_text(doc.read_text().replace(render.BEGIN, ""))
    with pytest.raises(ValueError, match="sr_degradation_bias/docs/README.md: no <!-- results:begin -->"):
        render.rendered_documents(root)


def test_rendering_replaces_only_the_marked_section(tmp_path):
    root = _tree(tmp_path)
    doc = root / "bundles/sr_degradation_bias/docs/README.md"
    before, after = doc.read_text().split(render.BEGIN)[0], doc.read_text().split(render.END)[1]
    doc.write_text(before + render.BEGIN + "\nhand-typed table\n" + render.END + after)
    text = render.rendered_documents(root)[doc]
    assert text.startswith(before) and text.endswith(after) and "hand-typed table" not in text
    assert render.NOTE in text


def test_import_copies_a_slim_record_and_its_figures(tmp_path):
    root = _tree(tmp_path / "repo")
    source = tmp_path / "runs"
    (source / "label_error_refurbishment").mkdir(parents=True)
    detection = {"scores": {"loss": {"a": 1.0}}, "metrics": {"loss": 0.9}}
    run = {
        "name": "x",
        "metrics": {"per_sample": [{"id": "a"}], "metrics": {"d": 1.0}, "extra": {"detection": detection}},
    }
    record = {"profile": "quick", "runs": [run], "figures": ["roc.png"], "summary": {"a": 1}}
    (source / "label_error_refurbishment" / "results.json").write_text(json.dumps(record))
    (source / "label_error_refurbishment" / "roc.png").write_bytes(b"\x89PNG....")
    assert render.import_results(source, root) == ["label_error_refurbishment"]
    dest = render.results_dir("label_error_refurbishment", root)
    saved = json.loads((dest / "quick.json").read_text())
    assert saved["runs"][0]["metrics"] == {"metrics": {"d": 1.0}, "extra": {"detection": {"metrics": {"loss": 0.9}}}}
    assert saved["summary"] == {"a": 1} and (dest / "roc.png").read_bytes() == b"\x89PNG...."
    assert record["runs"][0]["metrics"]["extra"]["detection"]["scores"]  # the source record is left whole


def test_import_refuses_a_profile_other_than_quick(tmp_path):
    root = _tree(tmp_path / "repo")
    (tmp_path / "runs" / "sr_degradation_bias").mkdir(parents=True)
    (tmp_path / "runs" / "sr_degradation_bias" / "results.json").write_text(json.dumps({"profile": "smoke"}))
    with pytest.raises(ValueError, match="profile 'smoke'; the published results are the quick profile"):
        render.import_results(tmp_path / "runs", root)
