"""``render --from`` refuses uncommitted code under common/ and bundles/ (docs/results aside)."""

import subprocess

import pytest

from common.study import render
from common.study.render import require_clean_tree


def _git(root, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                   capture_output=True)  # fmt: skip


@pytest.fixture
def repo(tmp_path):
    for path in ("common/a.py", "bundles/b/configs/train.yaml", "bundles/b/docs/results/quick.json", "notes.txt"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "init")
    return tmp_path


def test_clean_tree_passes_and_results_or_other_paths_do_not_count(repo):
    require_clean_tree(repo)
    (repo / "bundles/b/docs/results/quick.json").write_text("y\n")
    (repo / "bundles/b/docs/results/new.png").write_text("y\n")
    (repo / "notes.txt").write_text("y\n")
    require_clean_tree(repo)


@pytest.mark.parametrize("change", ["modified", "untracked", "staged", "deleted"])
def test_dirty_code_is_refused_naming_the_paths(repo, change):
    if change == "modified":
        (repo / "common/a.py").write_text("y\n")
    elif change == "untracked":
        (repo / "bundles/b/configs/new.yaml").write_text("y\n")
    elif change == "staged":
        (repo / "common/c.py").write_text("y\n")
        _git(repo, "add", "common/c.py")
    else:
        (repo / "bundles/b/configs/train.yaml").unlink()
    with pytest.raises(RuntimeError, match="uncommitted changes in") as err:
        require_clean_tree(repo)
    expected = {"modified": "common/a.py", "untracked": "bundles/b/configs/new.yaml", "staged": "common/c.py",
                "deleted": "bundles/b/configs/train.yaml"}[change]  # fmt: skip
    assert str(err.value).split(": commit")[0] == f"uncommitted changes in {expected}"


def test_not_a_git_tree_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="git status failed"):
        require_clean_tree(tmp_path)


def test_main_from_refuses_a_dirty_tree_unless_allowed(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(render, "require_clean_tree", lambda: (_ for _ in ()).throw(RuntimeError("dirty: common/a.py")))
    imported = []
    monkeypatch.setattr(render, "import_results", lambda source: imported.append(source) or [])
    monkeypatch.setattr(render, "rendered_documents", dict)
    with pytest.raises(SystemExit) as exit_:
        render.main(["--from", str(tmp_path)])
    assert exit_.value.code == 2 and "dirty: common/a.py" in capsys.readouterr().err
    assert imported == []
    assert render.main(["--from", str(tmp_path), "--allow-dirty"]) == 0
    assert imported == [tmp_path]
