"""Shared pytest fixtures: the real registry (seeded once per session) and a fresh store path."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from fixtures.certs import self_signed
from fixtures.images import all_images
from fixtures.registry import (
    CHEAP_HTPASSWD,
    REGISTRY_BINARY,
    Registry,
    push,
    running_registry,
)

#: Fixtures that start the real registry: a test that asks for one, itself or through another
#: fixture, is an end-to-end test, as is every test under tests/e2e/ (see ``e2e`` in pyproject).
E2E_FIXTURES = {"registry", "target"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        under_e2e = item.path.is_relative_to(here / "e2e")
        if under_e2e or E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


#: Tests that also run on uvloop: the command uses it when it is installed, and these drive
#: the HTTP client's protocol (and the fault table through it) directly.
BOTH_LOOPS = {"test_client.py", "test_pool.py", "test_resilience.py"}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if item.path.name not in BOTH_LOOPS:
        return factories
    try:
        import uvloop
    except ImportError:
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real docker-registry on loopback holding every image of ``fixtures.images.all_images``."""
    if not REGISTRY_BINARY.exists():
        # Not a skip: the end-to-end suites are the point, and CI installs the package.
        pytest.fail(
            f"{REGISTRY_BINARY} is missing: run `apt-get install -y docker-registry`",
            pytrace=False,
        )
    # The access log lets tests assert which requests reached the registry (support/helpers.py).
    access_log = {"log": {"accesslog": {"disabled": False}}}
    with running_registry(tmp_path_factory.mktemp("registry"), extra_config=access_log) as running:
        for image in all_images():
            push(running.url, image)
        yield running


@pytest.fixture(autouse=True)
def no_user_configuration(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests, and the pypull processes they start, never read this machine's pypull config or
    docker credentials, nor meet its target locks or its default store (with its record of
    where blobs live): each test gets its own."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / "docker"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    for var in [v for v in os.environ if v.startswith("PYPULL_")]:
        monkeypatch.delenv(var)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """Where a test's image store goes; not created, so the store's own setup is exercised."""
    return tmp_path / "store"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An empty registry behind htpasswd, with its access log."""
    work = tmp_path_factory.mktemp("copy-target")
    htpasswd = work / "htpasswd"
    htpasswd.write_text(CHEAP_HTPASSWD)
    config = {
        "auth": {"htpasswd": {"realm": "pypull-test", "path": str(htpasswd)}},
        "log": {"accesslog": {"disabled": False}},
    }
    with running_registry(work / "storage", extra_config=config) as reg:
        yield reg


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    try:
        return self_signed(tmp_path_factory.mktemp("tls"))
    except FileNotFoundError as e:
        pytest.skip(str(e))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many JSON lines the commands printed, each checked against the README's schema."""
    from tests.support.jsonlines import CHECKED

    if CHECKED["runs"]:
        by = ", ".join(f"{c} {n}" for c, n in sorted(CHECKED.items()) if c != "runs")
        lines = sum(n for c, n in CHECKED.items() if c != "runs")
        terminalreporter.write_line(
            f"JSON lines checked against the README's schema: {lines} of {CHECKED['runs']} "
            f"--format json runs ({by})"
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """JSON runs made but no line checked: the check no longer sees what the commands print."""
    from tests.support.jsonlines import CHECKED

    if CHECKED["runs"] >= 5 and sum(n for c, n in CHECKED.items() if c != "runs") == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
