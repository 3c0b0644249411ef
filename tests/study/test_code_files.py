"""The static import closure behind run keys and published fingerprints."""

from pathlib import Path

from common.study.code_files import config_modules, import_closure, is_lazy_package_init
from common.study.engine import code_fingerprint
from common.study.runner import REPO_ROOT

LAZY_INIT = '''"""Lazy exports."""

from common._lazy import lazy_getattr

_EXPORTS = {"Thing": "things", "helper": "helpers"}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
'''


def _tree(root: Path) -> Path:
    files = {
        "common/__init__.py": "",
        "common/_lazy.py": "def lazy_getattr(p, e):\n    return None\n",
        "common/pkg/__init__.py": LAZY_INIT,
        "common/pkg/things.py": "from .helpers import helper\n\nclass Thing:\n    pass\n",
        "common/pkg/helpers.py": "def helper():\n    from common.deep import value\n    return value\n",
        "common/deep.py": "value = 1\n",
        "common/unused.py": "import common.pkg.things\n",
        "common/other/__init__.py": "print('runs code')\n",
        "common/other/mod.py": "from common.pkg import Thing\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _names(root, paths):
    return sorted(p.relative_to(root).as_posix() for p in paths)


def test_config_references_are_found_in_every_form():
    text = "imports: [$import common.pkg]\nnet: {_target_: common.pkg.Thing}\nx: $common.deep.value + 1\ny: commonly\n"
    assert config_modules([text]) == {"common.pkg", "common.pkg.Thing", "common.deep.value"}


def test_closure_follows_lazy_exports_relative_and_function_level_imports(tmp_path):
    root = _tree(tmp_path)
    files = import_closure(root, {"common.pkg.Thing"})
    # Thing -> things (lazy export) -> .helpers (relative) -> common.deep (inside a function)
    assert _names(root, files) == [
        "common/__init__.py",
        "common/_lazy.py",
        "common/deep.py",
        "common/pkg/__init__.py",
        "common/pkg/helpers.py",
        "common/pkg/things.py",
    ]
    assert "common/unused.py" not in _names(root, files)
    other = _names(root, import_closure(root, {"common.other.mod"}))
    assert "common/other/__init__.py" in other and "common/pkg/things.py" in other


def test_only_export_only_package_inits_are_lazy(tmp_path):
    root = _tree(tmp_path)
    assert is_lazy_package_init(root / "common/pkg/__init__.py")
    assert not is_lazy_package_init(root / "common/other/__init__.py")  # runs code of its own
    assert not is_lazy_package_init(root / "common/pkg/things.py")


def test_a_new_export_elsewhere_leaves_a_bundle_fingerprint_alone(tmp_path):
    root = _tree(tmp_path)
    (root / "bundles/a/configs").mkdir(parents=True)
    (root / "bundles/a/configs/train.yaml").write_text("net: {_target_: common.pkg.Thing}\n")
    before = code_fingerprint(root, bundle_runs_only=True, bundle="a")
    init = root / "common/pkg/__init__.py"
    init.write_text(init.read_text().replace('"helper": "helpers"', '"helper": "helpers", "New": "new"'))
    (root / "common/pkg/new.py").write_text("class New: ...\n")
    assert code_fingerprint(root, bundle_runs_only=True, bundle="a") == before
    (root / "common/deep.py").write_text("value = 2\n")  # reached through a function-level import
    assert code_fingerprint(root, bundle_runs_only=True, bundle="a") != before


def test_each_real_bundle_closure_holds_its_network_and_not_the_others():
    def closure(bundle):
        configs = (REPO_ROOT / "bundles" / bundle / "configs").glob("*")
        return _names(REPO_ROOT, import_closure(REPO_ROOT, config_modules(p.read_text() for p in configs)))

    seg, sr = closure("segmentation_resolution_bias"), closure("sr_degradation_bias")
    assert "common/networks/vinn.py" in seg and "common/networks/vinn.py" not in sr
    assert "common/networks/sr.py" in sr and "common/networks/sr.py" not in seg
    assert not any(p.startswith("common/study/") or p.startswith("common/audit/") for p in seg + sr)


def test_a_moved_name_resolves_to_its_new_module_and_keeps_the_package_lazy():
    closure = {p.relative_to(REPO_ROOT).as_posix() for p in import_closure(REPO_ROOT, ["common.metrics.FlipRiskd"])}
    assert "common/transforms/flip_risk.py" in closure  # where the name lives now
    assert is_lazy_package_init(REPO_ROOT / "common/metrics/__init__.py")  # _MOVED is a declaration too
    closure = {p.relative_to(REPO_ROOT).as_posix() for p in import_closure(REPO_ROOT, ["common.transforms.load_split"])}
    assert "common/data/datalist.py" in closure
