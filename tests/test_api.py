"""The Python API as a script sees it: ``dir(puller)`` and ``help(puller)`` list the names, each
loaded from its module on first use; ``import puller`` loads no event loop, TLS, HTTP client or
tar module, and the command line none of the operations it does not run; records give
``to_dict()`` (a dict) and ``to_json()`` (its text); the blocking twins run the coroutines for
code that is not async."""

from __future__ import annotations

import asyncio
import json
import pydoc
import subprocess
import sys
from pathlib import Path

import pytest

import puller
from fixtures.images import redis
from fixtures.registry import Registry
from puller.copying import CopyResult
from puller.oci.digest import digest_of
from puller.oci.manifest import Descriptor, Platform
from puller.store.prune import Pruned, PruneResult

ROOT = Path(__file__).resolve().parents[1]
COROUTINES = ("pull", "inspect", "tags")


def test_dir_lists_every_public_name() -> None:
    assert set(puller.__all__) <= set(dir(puller))
    for name in ("pull", "pull_sync", "inspect", "inspect_sync", "tags", "tags_sync", "run"):
        assert name in puller.__all__


def test_every_name_resolves_to_its_object_and_stays_bound() -> None:
    for name in puller.__all__:
        value = getattr(puller, name)
        assert value is getattr(puller, name), name
        assert name in vars(puller), name  # bound once used: later lookups cost nothing


def test_the_command_line_does_not_load_the_api() -> None:
    """Every ``pypull`` command starts by importing the package: the operations it does not
    run stay unloaded (their dataclasses cost ~30 ms to define)."""
    code = (
        "import sys, puller, puller.cli.main\n"
        "ops = ['puller.copying', 'puller.archive', 'puller.unpacking', 'puller.exporting',"
        " 'puller.inspecting', 'puller.pulling', 'puller.store.prune']\n"
        "print(','.join(m for m in ops if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""


def test_help_names_the_api_and_says_which_functions_are_coroutines() -> None:
    text = pydoc.render_doc(puller, renderer=pydoc.plaintext)
    for name in ("pull", "pull_sync", "inspect_sync", "Puller", "Copier", "ImageInfo", "images"):
        assert f"{name}(" in text or f"class {name}" in text, name
    assert "Coroutine functions" in text
    for name in COROUTINES:
        assert asyncio.iscoroutinefunction(getattr(puller, name))
        twin = getattr(puller, f"{name}_sync")
        assert not asyncio.iscoroutinefunction(twin)
        assert twin.__doc__ is not None and twin.__doc__.startswith("Blocking")


def test_import_puller_loads_no_event_loop_tls_http_or_tar() -> None:
    code = (
        "import sys, puller\n"
        "heavy = ['asyncio', 'ssl', 'socket', 'tarfile', 'subprocess', 'h11',"
        " 'puller.http.client', 'puller.registry.client', 'puller.download']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""


def test_descriptor_to_dict_is_the_dict_and_to_json_its_text() -> None:
    digest = digest_of(b"x")
    d = Descriptor(
        "application/vnd.oci.image.manifest.v1+json", digest, 1, Platform("linux", "arm64")
    )
    doc = d.to_dict()
    assert doc == {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": str(digest),
        "size": 1,
        "platform": {"architecture": "arm64", "os": "linux"},
    }
    assert isinstance(d.to_json(), str)
    assert json.loads(d.to_json()) == doc


def test_copy_and_prune_records_to_dict_and_to_json() -> None:
    record = CopyResult("a:1", "b:1", "copied", uploaded=2)
    assert isinstance(record.to_dict(), dict)
    assert json.loads(record.to_json()) == record.to_dict()
    assert record.to_dict()["blobs"]["uploaded"] == 2
    pruned = PruneResult((Pruned("blob", digest_of(b"y"), 1, "p"),), dry_run=True)
    assert json.loads(pruned.to_json()) == pruned.to_dict()
    assert pruned.to_dict()["reclaimed"] == 1


def test_run_is_refused_inside_a_running_event_loop() -> None:
    async def inside() -> None:
        with pytest.raises(RuntimeError, match="await"):
            puller.tags_sync("127.0.0.1:9/x")

    asyncio.run(inside())


def test_the_blocking_twins_pull_and_inspect_and_their_records_serialise(
    registry: Registry, store: Path
) -> None:
    """An e2e test (the real registry): ``pull_sync``, ``inspect_sync`` and ``tags_sync`` from
    code that is not async; ``ImageInfo`` and ``ImageRecord`` as dict and as text."""
    image = redis()
    name = f"{registry.host}/{image.repository}:{image.tag}"
    result = puller.pull_sync(name, store=store)
    assert isinstance(result, puller.PullResult)
    assert str(result.digest) == image.digest
    info = puller.inspect_sync(name, store=store)
    assert isinstance(info, puller.ImageInfo)
    doc = info.to_dict()
    assert doc["Digest"] == image.digest
    assert json.loads(info.to_json()) == doc
    assert image.tag in puller.tags_sync(f"{registry.host}/{image.repository}", store=store)
    [record] = [r for r in puller.images(store) if str(r.reference) == str(info.reference)]
    assert json.loads(record.to_json()) == record.to_dict()
    assert record.to_dict()["Digest"] == image.digest
