"""nox sessions: ``tests``, ``lint``, ``study`` (arguments passed through), ``bench``, ``label``, ``tracking``."""

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session) -> None:
    # requirements.txt pins torch to the local CPU build; never let pip pick another.
    session.install("-r", "requirements-dev.txt")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests and smoke runs of every bundle: ``nox -s tests -- -k vinn``."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "common", "tools", "tests", "bundles", "noxfile.py")
    session.run("ruff", "format", "--check", "--diff", "common", "tools", "tests", "noxfile.py")


@nox.session
def study(session: nox.Session) -> None:
    """``nox -s study -- segmentation_resolution_bias --profile quick --output runs``."""
    _install(session)
    session.run("python", "-m", "common.study", *(session.posargs or ["all", "--profile", "smoke", "--output", "runs"]))


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks; ``nox -s bench -- degradation`` runs one group."""
    _install(session)
    session.run("python", "-m", "tests.benchmarks", *session.posargs)


@nox.session
def label(session: nox.Session) -> None:
    """MONAI Label serving the segmentation bundles on 127.0.0.1: ``nox -s label -- --port 8000``;
    ``nox -s label -- --test`` runs the real-server test instead (tests/tooling/test_monailabel_server.py)."""
    _install(session)
    # --no-deps: monailabel's requirements pull torchvision and CUDA torch; pydicom-seg's pin numpy<2.
    session.install("--no-deps", "monailabel==0.8.5", "pydicom-seg==0.4.1")
    session.install("-r", "requirements-label.txt")
    if "--test" in session.posargs:
        args = [a for a in session.posargs if a != "--test"]
        session.run("python", "-m", "pytest", "-q", "tests/tooling/test_monailabel_server.py", *args)
    else:
        session.run("python", "-m", "tests.tooling.labelserver", *session.posargs)


@nox.session
def tracking(session: nox.Session) -> None:
    """MLflow tracking of every bundle (tests/tooling/test_mlflow_tracking.py) with the optional ``mlflow`` extra."""
    _install(session)
    # constraints.txt keeps the pinned torch: mlflow's dependencies must not pull another build.
    session.install("-r", "requirements-tracking.txt", "-c", "constraints.txt")
    session.run(
        "python", "-m", "pytest", "-q", "-p", "no:xdist", "tests/tooling/test_mlflow_tracking.py", *session.posargs
    )


@nox.session
def results(session: nox.Session) -> None:
    """Published results: ``nox -s results`` reruns every bundle's quick study (seeds 0 1 2; finished runs of the
    same code are reused) and renders the docs from them; ``nox -s results -- --check`` exits non-zero when
    the docs are not the rendering of the committed files or those files were made by other code."""
    _install(session)
    if "--check" in session.posargs:
        session.run("python", "-m", "common.study.render", "--check")
        return
    out = "runs/results"
    # every bundle's quick study and each named grid with a committed record (python -m common.study published)
    session.run("python", "-m", "common.study", "published", "--profile", "quick", "--output", out, *session.posargs)
    session.run("python", "-m", "common.study.render", "--from", out)


@nox.session
def ray(session: nox.Session) -> None:
    """The Ray executor against a real local Ray head on 127.0.0.1 (tests/study/test_ray_executor.py)."""
    _install(session)
    session.install("ray==2.60.0")
    session.run("python", "-m", "pytest", "-q", "tests/study/test_ray_executor.py", *session.posargs)


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing (mutmut; settings in pyproject.toml's [tool.mutmut]) of common/metrics, common/transforms
    and common/networks/pooling.py against their own test files, in a copy of the tree under .nox/mutants/tmp/,
    then the score per module (tests/mutants_report.py; equivalents from tests/MUTANTS.md). Slow: not in CI.
    ``nox -s mutants -- "common.metrics.*"`` runs one module; ``-- --max-children 1 ...`` uses one core."""
    import os
    import shutil
    from pathlib import Path

    _install(session)
    session.install("mutmut==3.8.1")
    repo = Path.cwd()
    work = Path(session.create_tmp()) / "tree"
    shutil.rmtree(work, ignore_errors=True)  # a fresh run: results of an older tree never leak into the score
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("common", "tests"):
        shutil.copytree(repo / name, work / name, ignore=skip)
    shutil.copy2(repo / "pyproject.toml", work / "pyproject.toml")
    args = list(session.posargs)
    if "--max-children" not in args:
        args = ["--max-children", str(os.cpu_count() or 1), *args]
    with session.chdir(work):
        session.run("mutmut", "run", *args, env={"OMP_NUM_THREADS": "1"})
        session.run("python", "-m", "tests.mutants_report", "--equivalents", str(repo / "tests" / "MUTANTS.md"))
