"""The Dockerfile: hadolint-clean, and the runtime stage keeps its promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    return str(Path(sys.executable).parent / "hadolint")


def _runtime_stage() -> str:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)
    runtime = [stage for stage in stages if " AS runtime" in stage.splitlines()[0]]
    assert len(runtime) == 1
    return runtime[0]


def test_hadolint_reports_nothing() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.stdout == "", result.stdout + result.stderr
    assert result.returncode == 0, result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    result = subprocess.run(
        [_hadolint(), "--no-color", str(bad)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the linter is live, not a no-op


def test_every_hadolint_ignore_carries_a_reason() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        if "hadolint ignore" in line:
            assert re.search(r"ignore=\S+\s+\S", line), f"ignore without a reason: {line}"


def test_base_image_is_a_pinned_slim_python_312() -> None:
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match is not None
    assert re.fullmatch(r"python:3\.12\.\d+-slim-bookworm", match.group(1))
    assert DOCKERFILE.read_text().count("FROM ${PYTHON_IMAGE} AS ") == 2


def test_runtime_stage_is_non_root_and_read_only_friendly() -> None:
    runtime = _runtime_stage()
    user = re.search(r"^USER (\d+)(?::(\d+))?$", runtime, re.MULTILINE)
    assert user is not None
    assert int(user.group(1)) >= 10000
    assert 'ENTRYPOINT ["exmail-relay"]' in runtime
    assert 'CMD ["run"]' in runtime
    assert "EXPOSE 8080" in runtime
    assert 'VOLUME ["/var/lib/exmail-relay"]' in runtime
    assert "PYTHONDONTWRITEBYTECODE=1" in runtime
    assert "chown 10001:10001 /var/lib/exmail-relay" in runtime
    healthcheck = re.search(r"^HEALTHCHECK .*$", runtime, re.MULTILINE)
    assert healthcheck is not None
    assert "urllib.request" in healthcheck.group(0)
    assert "/livez" in healthcheck.group(0)
    for label in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{label}=" in runtime


def test_runtime_stage_has_no_build_tools_or_source() -> None:
    runtime = "\n".join(
        line for line in _runtime_stage().splitlines() if not line.lstrip().startswith("#")
    )
    for tool in ("apt-get", "gcc", "build-essential", "curl", "COPY ", "pip wheel"):
        assert tool not in runtime, tool
    assert "--no-index" in runtime  # installs only the wheels built in the first stage
