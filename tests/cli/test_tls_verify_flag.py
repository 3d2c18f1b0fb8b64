"""``--tls-verify``, ``--src-tls-verify`` and ``--dest-tls-verify`` as skopeo's users type them:
the flag alone means true and leaves the next word (the image) alone, a boolean word after it or
attached with ``=`` is its value, and ``--help`` shows that form.

Whether a flag came out true or false is read from the URL pypull tried: a loopback registry is
plain HTTP unless a flag says false, which means HTTPS (see ``Access.registries``). Port 1 is
closed, so the runs that do not need a registry fail at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.images import make_image
from tests.support.fakeregistry import run_pypull as run_async
from tests.support.fakeregistry import start_fake
from tests.support.helpers import run_pypull

CLOSED = "127.0.0.1:1"
IMAGE = f"{CLOSED}/team/app:1"


@pytest.mark.parametrize(
    "args",
    [
        ["pull", "--tls-verify", IMAGE],
        ["--tls-verify", IMAGE],  # pull, the default command
        ["inspect", "--remote", "--tls-verify", IMAGE],
        ["tags", "--tls-verify", f"{CLOSED}/team/app"],
        ["push", "--dest-tls-verify", "app:1", f"{CLOSED}/team/app:1"],
        ["copy", "--dest-tls-verify", IMAGE, f"{CLOSED}/team/copy:1"],
        ["sync", "--to", f"{CLOSED}/mirror", "--dest-tls-verify", IMAGE],
    ],
    ids=["pull", "default-command", "inspect-remote", "tags", "push", "copy", "sync"],
)
def test_a_bare_tls_verify_is_true_and_the_next_word_is_an_argument(
    args: list[str], store: Path
) -> None:
    in_store = [] if args[0] == "tags" else ["--store", store]  # tags has no store
    run = run_pypull(*args, *in_store, "--max-download-attempts", "1", timeout=60)
    assert run.returncode == 1, run.stderr  # the registry was tried: no usage error
    assert "usage:" not in run.stderr
    assert f"cannot reach http://{CLOSED}" in run.stderr  # true: loopback stays plain HTTP


@pytest.mark.parametrize(
    "flag",
    ["--tls-verify=false", "--tls-verify false", "--tls-verify FALSE", "--tls-verify no"],
)
def test_a_boolean_word_after_the_flag_is_still_its_value(flag: str, store: Path) -> None:
    run = run_pypull(
        "pull", *flag.split(), IMAGE, "--store", store, "--max-download-attempts", "1", "--json"
    )
    assert run.returncode == 1, run.stderr
    assert f"cannot reach https://{CLOSED}" in run.stderr  # false: HTTPS without checks
    assert json.loads(run.stdout)["reference"] == IMAGE


async def test_a_copy_with_both_bare_flags_copies_between_plain_http_registries() -> None:
    image = make_image("team/app", "1", layers=2, layer_size=1024)
    async with start_fake([image]) as source, start_fake() as target:
        run = await run_async(
            "copy",
            "--json",
            "--src-tls-verify",
            source.ref(image),
            "--dest-tls-verify",
            f"{target.host}/team/copy:1",
        )
        assert run.returncode == 0, run.stderr
        assert json.loads(run.lines[0])["status"] == "copied"
        assert target.manifest("team/copy", "1") is not None


async def test_a_pull_with_the_bare_flag_before_the_image_pulls_it(tmp_path: Path) -> None:
    image = make_image("team/app", "1", layers=2, layer_size=1024)
    async with start_fake([image]) as fake:
        run = await run_async(
            "pull", "--tls-verify", fake.ref(image), "--json", store=tmp_path / "store"
        )
        assert run.returncode == 0, run.stderr
        done = json.loads(run.lines[-1])
        assert (done["event"], done["reference"]) == ("done", fake.ref(image))


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("pull", ["--tls-verify"]),
        ("inspect", ["--tls-verify"]),
        ("tags", ["--tls-verify"]),
        ("push", ["--dest-tls-verify"]),
        ("copy", ["--src-tls-verify", "--dest-tls-verify"]),
        ("sync", ["--src-tls-verify", "--dest-tls-verify"]),
    ],
)
def test_help_shows_the_value_attached_to_the_flag(command: str, flags: list[str]) -> None:
    run = run_pypull(command, "--help")
    assert run.returncode == 0
    for flag in flags:
        assert f"[{flag}[=true|false]]" in run.stdout  # the usage line
        assert f"\n  {flag}[=true|false]\n" in run.stdout  # the option's own entry
        assert f"{flag} [" not in run.stdout
