"""Replays the Dockerfile's build and runtime steps without a Docker engine.

What the image does, and what this test does instead:

1. build stage, ``pip wheel .``: here ``pip wheel --no-deps --no-build-isolation`` with
   the project venv's hatchling, so no network is needed;
2. runtime stage, ``python -m venv`` + ``pip install --no-index --find-links`` of
   ``exmail-relay[EXTRAS]``: here the same requirement (taken from the Dockerfile and
   expanded by ``sh`` as the build would), into a fresh venv in a world-readable
   temporary directory, with ``--no-deps``. The dependencies are what pip would resolve
   for that requirement: the closure of the installed wheel's ``Requires-Dist`` with the
   requested extras, taken from the project venv's distributions and linked into one
   directory, which a ``.pth`` line appends to the fresh venv's ``sys.path`` (a plain
   path line, so the project's editable-install hook is *not* run and ``relay`` is
   imported from the installed wheel, which the test checks). A distribution outside
   the closure, such as OpenTelemetry in a build without the extra, is not there. This
   needs only what ``pip install -e '.[dev]'`` already put on the machine, so it works
   on a fresh CI machine without network. Both builds are replayed: the default
   (``EXTRAS=otel``) and ``--build-arg EXTRAS=``;
3. ``USER 10001``, read-only root filesystem: here the commands run as uid/gid 65534
   (nobody) with the image's environment, from a root-owned venv they cannot write to,
   and the test checks that they wrote no bytecode.
"""

from __future__ import annotations

import importlib.metadata
import json
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
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def _default_extras() -> str:
    match = re.search(r"^ARG EXTRAS=(\S*)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert match is not None, "the Dockerfile declares ARG EXTRAS=<default> before FROM"
    return match.group(1)


def _requirements(extras: str) -> tuple[str, str]:
    """The requirements the build stage's ``pip wheel`` and the runtime stage's ``pip
    install`` are given, expanded by ``sh`` with ``EXTRAS`` as the build would."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    wheel = re.search(r"pip wheel --wheel-dir /wheels (\S+)", text)
    install = re.search(r'pip" install --no-index --find-links=/wheels\s+(\S+)', text)
    assert wheel is not None and install is not None
    expanded = subprocess.run(
        ["/bin/sh", "-c", f"printf '%s\\n' {wheel.group(1)} {install.group(1)}"],
        env={"EXTRAS": extras}, capture_output=True, text=True, check=True, timeout=10,
    ).stdout.split()  # fmt: skip
    assert len(expanded) == 2, expanded
    return expanded[0], expanded[1]


def _closure(root: importlib.metadata.Distribution, extras: set[str]) -> list[str]:
    """The project venv's distributions that pip resolves for ``root[extras]``."""
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist
        for dist in importlib.metadata.distributions(path=[site.getsitepackages()[0]])
    }
    todo = [(root, frozenset(extras))]
    needed: set[str] = set()
    while todo:
        dist, wanted = todo.pop()
        for line in dist.requires or []:
            req = Requirement(line)
            environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(e) for e in environments):
                continue
            name = canonicalize_name(req.name)
            assert name in installed, f"{req} is not installed in the project venv"
            assert installed[name].version in req.specifier, f"{req}: {installed[name].version}"
            key = f"{name}[{','.join(sorted(req.extras))}]"
            if key not in needed:
                needed.add(key)
                todo.append((installed[name], frozenset(req.extras)))
    return sorted({key.partition("[")[0] for key in needed})


def _link_dependencies(venv_purelib: Path, extras: set[str], deps: Path) -> list[str]:
    """Links the top-level entries of every distribution in the closure into ``deps``."""
    (root,) = importlib.metadata.distributions(path=[str(venv_purelib)], name="exmail-relay")
    names = _closure(root, extras)
    site_packages = Path(site.getsitepackages()[0])
    deps.mkdir()
    for name in names:
        dist = importlib.metadata.distribution(name)
        assert dist.files is not None, f"{name} has no RECORD"
        for top in {f.parts[0] for f in dist.files}:
            if top in {"..", "__pycache__"} or top.endswith(".pth") or "__editable__" in top:
                continue
            if (site_packages / top).exists() and not (deps / top).exists():
                (deps / top).symlink_to(site_packages / top)
    return names


def test_the_image_installs_the_otel_extra_by_default() -> None:
    assert _default_extras() == "otel"
    assert _requirements("otel") == (".[otel]", "exmail-relay[otel]")
    assert _requirements("") == (".", "exmail-relay")


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


@pytest.fixture(scope="module", params=["default", "without-extras"])
def build_extras(request: pytest.FixtureRequest) -> str:
    """``EXTRAS`` of the replayed build: the Dockerfile's default, or ``--build-arg EXTRAS=``."""
    return _default_extras() if request.param == "default" else ""


@pytest.fixture(scope="module")
def image_root(build_extras: str) -> Iterator[Path]:
    """A world-readable directory tree standing in for the image's filesystem."""
    root = Path(tempfile.mkdtemp(prefix="exmail-relay-image-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def installed_venv(image_root: Path, build_extras: str) -> Path:
    wheel_requirement, install_requirement = _requirements(build_extras)
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
         "--no-index", "--wheel-dir", str(wheels),
         str(context) + wheel_requirement.removeprefix(".")],
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
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--no-index", "--find-links", str(wheels), install_requirement],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    extras = set(Requirement(install_requirement).extras)
    deps = image_root / "deps"
    _link_dependencies(purelib, extras, deps)
    (purelib / "_project_deps.pth").write_text(f"{deps}\n")
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


_TRACING_PROBE = """
import asyncio, json, sys
from relay.app.tracing import open_tracing
import relay.cli.main  # the whole command line, as `exmail-relay run` imports it

async def probe() -> dict[str, object]:
    async with open_tracing() as tracing:
        return {"enabled": tracing.enabled,
                "otel_imported": any(m.startswith("opentelemetry") for m in sys.modules)}

print(json.dumps(asyncio.run(probe())))
"""


def _trace_probe(env: dict[str, str], cwd: Path) -> tuple[dict[str, object], str]:
    result = _as_nobody(["python", "-c", _TRACING_PROBE], env, cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1]), result.stderr


def test_tracing_is_in_the_default_image_and_idle_until_otel_variables_ask(
    build_extras: str, runtime: tuple[Path, dict[str, str]]
) -> None:
    journal_dir, env = runtime
    idle, _ = _trace_probe(env, journal_dir)
    assert idle == {"enabled": False, "otel_imported": False}, "nothing imported, untraced"

    asked, stderr = _trace_probe(env | {"OTEL_TRACES_EXPORTER": "console"}, journal_dir)
    sdk = _as_nobody(
        ["python", "-c", "import importlib.metadata as m; print(m.version('opentelemetry-sdk'))"],
        env, journal_dir,
    )  # fmt: skip
    if build_extras:  # the default image: the extra is installed and traces when asked
        assert "otel" in build_extras.split(",")
        assert sdk.returncode == 0, sdk.stderr
        assert asked == {"enabled": True, "otel_imported": True}
    else:  # built with --build-arg EXTRAS=: no OpenTelemetry, a warning, untraced
        assert sdk.returncode != 0 and "PackageNotFoundError" in sdk.stderr
        assert asked == {"enabled": False, "otel_imported": False}
        assert "[otel] extra is not installed" in stderr
