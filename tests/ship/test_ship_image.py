"""Replays the Dockerfile's build and runtime steps without a Docker engine.

What the image does, and what this test does instead:

1. build stage, ``pip wheel .``: here ``pip wheel --no-deps --no-build-isolation`` with
   the project venv's hatchling, so no network is needed;
2. runtime stage, ``python -m venv`` + ``pip install --no-index --find-links`` of that
   wheel: here the same, into a fresh venv in a world-readable temporary directory,
   with ``--no-deps``. The dependencies come from the project venv through a ``.pth``
   line that appends its site-packages to the fresh venv's ``sys.path`` (a plain path
   line, so the project's editable-install hook in that directory is *not* run and
   ``relay`` is imported from the installed wheel, which the test checks). This needs
   only what ``pip install -e '.[dev]'`` already put on the machine, so it works on a
   fresh CI machine without network;
3. ``USER 10001``, read-only root filesystem: here the commands run as uid/gid 65534
   (nobody) with the image's environment, from a root-owned venv they cannot write to,
   and the test checks that they wrote no bytecode.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 -- what the image binds, on purpose

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _dockerfile_env() -> dict[str, str]:
    """The ``ENV`` pairs the runtime stage sets (single-line ``KEY=value`` pairs)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = text.split(" AS runtime", 1)[1]
    env: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            for pair in line.removeprefix("ENV ").split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _project_version() -> str:
    text = (ROOT / "relay" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    assert match is not None
    return match.group(1)


def _build_context() -> list[str]:
    """What the build stage ``COPY``s from the build context."""
    copied: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            copied += [name.removeprefix("./") for name in line.split()[1:-1]]
    return copied


def test_dockerignore_lets_through_exactly_what_the_build_copies() -> None:
    allowed = [
        line.removeprefix("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    assert sorted(allowed) == sorted(_build_context()) == ["README.md", "pyproject.toml", "relay"]


def _interpreter_for_nobody() -> str:
    """A Python of the project venv's minor version that uid 65534 may execute.

    The project venv's own interpreter may live where only root can read it (pyenv
    under ``/root``), so the fresh venv may be based on another build of the same
    minor version (the compiled dependencies share its ABI).
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        str(Path(getattr(sys, "_base_executable", sys.executable)).resolve()),
        f"/usr/local/bin/python{version}",
        f"/usr/bin/python{version}",
        shutil.which(f"python{version}") or "",
    ]
    for candidate in candidates:
        if not candidate or not Path(candidate).is_file():
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "import venv"],
                user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
                capture_output=True, timeout=30, check=False,
            )  # fmt: skip
        except PermissionError:
            continue  # not executable by that uid
        if probe.returncode == 0:
            return candidate
    raise AssertionError(f"no Python {version} that uid {NOBODY} can run among {candidates}")


@pytest.fixture(scope="module")
def image_root() -> Iterator[Path]:
    """A world-readable directory tree standing in for the image's filesystem."""
    root = Path(tempfile.mkdtemp(prefix="exmail-relay-image-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def installed_venv(image_root: Path) -> Path:
    context = image_root / "src"
    context.mkdir()
    for name in _build_context():
        source = ROOT / name
        assert source.exists(), f"the Dockerfile copies {name}, which does not exist"
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, context / name)
    wheels = image_root / "wheels"
    built_wheel = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(wheels), str(context)],
        check=False, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert built_wheel.returncode == 0, f"pip wheel failed:\n{built_wheel.stderr[-3000:]}"
    built = sorted(wheels.glob("exmail_relay-*.whl"))
    assert len(built) == 1, f"expected one project wheel, got {built}"

    venv = image_root / "opt" / "exmail-relay"
    subprocess.run(
        [_interpreter_for_nobody(), "-m", "venv", "--without-pip", str(venv)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (purelib / "_project_deps.pth").write_text(site.getsitepackages()[0] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--no-index", "--find-links", str(wheels), str(built[0])],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    for path in [image_root, *image_root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    return venv


def _image_env(venv: Path, journal_dir: Path, config: Path) -> dict[str, str]:
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    env |= {k: v for k, v in _dockerfile_env().items() if not k.startswith("PIP_")}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    env["VIRTUAL_ENV"] = str(venv)
    # The image's absolute paths, moved under the stand-in root.
    assert env["RELAY_CONFIG"] == "/etc/exmail-relay/relay.toml"
    assert env["RELAY_JOURNAL__PATH"] == "/var/lib/exmail-relay/journal.sqlite3"
    env["RELAY_CONFIG"] = str(config)
    env["RELAY_JOURNAL__PATH"] = str(journal_dir / "journal.sqlite3")
    return env


def _as_nobody(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, user=NOBODY, group=NOBODY, extra_groups=[],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def runtime(installed_venv: Path, image_root: Path) -> tuple[Path, dict[str, str]]:
    journal_dir = image_root / "var" / "lib" / "exmail-relay"
    journal_dir.mkdir(parents=True)
    os.chown(journal_dir, NOBODY, NOBODY)
    config_dir = image_root / "etc" / "exmail-relay"
    config_dir.mkdir(parents=True)
    secret = config_dir / "acme.secret"
    secret.write_text("s3cret-interface-key\n")
    secret.chmod(0o644)
    config = config_dir / "relay.toml"
    config.write_text(
        "[[tenants]]\n"
        'name = "acme"\n'
        'client_id = "admin@acme.example"\n'
        f'client_secret_file = "{secret}"\n'
        "[sharding]\ncount = 1\n"
    )
    config.chmod(0o644)
    return journal_dir, _image_env(installed_venv, journal_dir, config)


def test_image_environment_matches_the_documented_contract() -> None:
    env = _dockerfile_env()
    assert env["RELAY_CONFIG"] == "/etc/exmail-relay/relay.toml"
    assert env["RELAY_JOURNAL__PATH"] == "/var/lib/exmail-relay/journal.sqlite3"
    assert env["RELAY_HTTP__HOST"] == ALL_INTERFACES
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_entrypoint_runs_as_non_root_from_the_installed_wheel(
    installed_venv: Path, runtime: tuple[Path, dict[str, str]]
) -> None:
    journal_dir, env = runtime
    result = _as_nobody(["exmail-relay", "--help"], env, journal_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: exmail-relay")
    version = _as_nobody(["exmail-relay", "--version"], env, journal_dir)
    assert version.stdout.strip() == f"exmail-relay {_project_version()}"

    where = _as_nobody(
        ["python", "-c", "import os, relay; print(os.getuid(), relay.__file__)"], env, journal_dir
    )
    assert where.returncode == 0, where.stderr
    uid, module = where.stdout.split()
    assert uid == str(NOBODY)
    assert Path(module).is_relative_to(installed_venv), "relay must come from the wheel"
    assert not list((installed_venv / "bin").glob("pip*")), "the fresh venv carries no pip"


def test_image_config_loads_as_non_root(
    installed_venv: Path, runtime: tuple[Path, dict[str, str]]
) -> None:
    journal_dir, env = runtime
    help_text = _as_nobody(["exmail-relay", "--help"], env, journal_dir).stdout
    if re.search(r"^\s+config\s", help_text, re.MULTILINE):  # the command exists by now
        result = _as_nobody(["exmail-relay", "config", "check"], env, journal_dir)
        assert result.returncode == 0, result.stderr
        assert "s3cret-interface-key" not in result.stdout + result.stderr
    else:
        code = (
            "from relay.app.loader import load_settings; s = load_settings();"
            "print(s.journal.path, s.http.host, s.tenants[0].name,"
            " s.tenants[0].secret().get_secret_value() == 's3cret-interface-key')"
        )
        result = _as_nobody(["python", "-c", code], env, journal_dir)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [
            str(journal_dir / "journal.sqlite3"),
            ALL_INTERFACES,
            "acme",
            "True",
        ]
    written = [p for p in installed_venv.rglob("*.pyc") if p.stat().st_uid == NOBODY]
    assert written == [], "the runtime must not write bytecode"


def test_a_bad_config_fails_clearly_as_non_root(runtime: tuple[Path, dict[str, str]]) -> None:
    journal_dir, env = runtime
    bad = journal_dir / "bad.toml"
    bad.write_text('[http]\nport = "eighty"\n')
    os.chown(bad, NOBODY, NOBODY)
    code = "from relay.app.loader import load_settings; load_settings()"
    result = _as_nobody(["python", "-c", code], env | {"RELAY_CONFIG": str(bad)}, journal_dir)
    assert result.returncode != 0
    assert "http.port" in result.stderr
