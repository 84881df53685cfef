"""Package metadata: one extra per integration, nothing of the repository's own published."""

from __future__ import annotations

import re
from pathlib import Path

from .test_readme import optional_dependencies

ROOT = Path(__file__).resolve().parents[1]


def test_only_integrations_are_published_as_extras() -> None:
    extras = set(optional_dependencies())
    assert not extras & {"demo", "test", "dev", "bench"}  # the repository's own: requirements/
    assert {"starlette", "fastapi", "websockets", "uvicorn", "redis"} <= extras


def test_the_classifiers_name_every_supported_python() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    lowest = re.search(r'requires-python = ">=3\.(\d+)"', text)
    assert lowest is not None
    for minor in range(int(lowest.group(1)), 14):
        assert f'"Programming Language :: Python :: 3.{minor}"' in text


def test_the_makefile_installs_the_repositorys_requirements_files() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for name in ("demo", "dev", "bench"):
        assert f"requirements/{name}.txt" in makefile
        assert (ROOT / "requirements" / f"{name}.txt").is_file()
    assert "'.[" not in makefile  # no extras of the repository's own
    dev = (ROOT / "requirements" / "dev.txt").read_text(encoding="utf-8")
    assert "-r demo.txt" in dev
    assert "pytest" in dev
