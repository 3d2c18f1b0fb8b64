"""What a hostile registry or credential helper can make ``pypull`` print: never a byte that drives
the terminal (escape sequences that clear the screen or retitle the window, bidi overrides), and
never an error line longer than a few hundred characters, however much it says."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest

from fixtures.images import OCI_INDEX, Image, make_image
from tests.support.fakeregistry import Status, run_pypull, start_fake

#: Retitles the terminal window to "owned" (OSC 0, ended by BEL), then clears the screen (CSI 2J).
HOSTILE = "\x1b]0;owned\x07\x1b[2J"
#: What the user sees of it instead.
HOSTILE_SHOWN = "\\x1b]0;owned\\x07\\x1b[2J"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SOME_DIGEST = "sha256:" + "ab" * 32


def assert_inert(output: str) -> None:
    """No character in ``output`` that a terminal would act on rather than show."""
    for ch in output:
        if ch == "\n":
            continue
        category = unicodedata.category(ch)
        assert category not in ("Cc", "Cf", "Zl", "Zp"), f"{ch!r} in {output!r}"


def the_error_line(stderr: str) -> str:
    assert_inert(stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ")
    assert "bug in pypull" not in stderr
    return lines[0]


def index_of(platforms: list[dict[str, str]], repository: str = "test/hostile") -> Image:
    """An index whose entries name ``platforms`` (their manifests are never fetched)."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": SOME_DIGEST, "size": 1, "platform": p}
            for p in platforms
        ],
    }
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return Image(repository, "1", OCI_INDEX, raw, ())


@pytest.mark.parametrize(
    "message",
    # a registry's error body is read up to 64 kB: the longest message it can get through
    [HOSTILE, "\u202eevil\u202c" + HOSTILE + "\x9b2J\x00", HOSTILE + "x" * 60_000],
    ids=["escape-sequences", "bidi-and-c1", "60-kB"],
)
async def test_a_registry_error_message_is_shown_escaped_on_one_short_line(
    message: str, store: Path
) -> None:
    image = make_image("test/hostile", "1", layers=1)
    async with start_fake([image]) as fake:
        fake.inject(
            "/manifests/", Status(404, times=None, code="MANIFEST_UNKNOWN", message=message)
        )
        run = await run_pypull(fake.ref(image), store=store)
    assert run.returncode == 1
    line = the_error_line(run.stderr)
    assert HOSTILE_SHOWN in line
    assert line.startswith(f"Error: manifest for {fake.host}/test/hostile:1 not found: ")
    assert len(run.stderr.encode()) < 1024
    assert_inert(run.stdout)


async def test_a_hostile_message_in_a_retry_line_is_escaped(store: Path) -> None:
    image = make_image("test/retry", "1", layers=1)
    async with start_fake([image]) as fake:
        fake.inject(
            "/manifests/",
            Status(503, code="UNAVAILABLE", message=HOSTILE * 1000, headers={"Retry-After": "0"}),
        )
        run = await run_pypull(fake.ref(image), store=store)
    assert run.returncode == 0, run.stderr
    assert_inert(run.stdout)
    retrying = [line for line in run.lines if "Retrying in" in line]
    assert len(retrying) == 1, run.stdout
    assert HOSTILE_SHOWN in retrying[0]
    assert len(retrying[0]) < 1024


@asynccontextmanager
async def raw_challenger(challenge: bytes) -> AsyncIterator[str]:
    """A loopback server answering every request 401 with ``WWW-Authenticate: <challenge>``,
    byte for byte: aiohttp will not send control characters in a header, a hostile server
    will. Yields its ``127.0.0.1:PORT``."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, asyncio.IncompleteReadError):
            while await reader.readuntil(b"\r\n\r\n"):  # requests without bodies
                writer.write(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
                    b"WWW-Authenticate: " + challenge + b"\r\n\r\n"
                )
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


#: 8-bit controls (CSI, and the \x80 inside U+202E's UTF-8 bytes) pass an HTTP parser that
#: refuses the 7-bit ones; a header is read as Latin-1, so they arrive as C1 characters.
C1_REALM_TAIL = b"\x9b2J" + "\u202e".encode()


@pytest.mark.parametrize("repeat", [1, 300], ids=["short", "long"])
async def test_a_hostile_token_realm_is_shown_escaped(repeat: int, store: Path) -> None:
    realm = b"http://192.0.2.1/" + C1_REALM_TAIL * repeat
    async with raw_challenger(b'Bearer realm="' + realm + b'",service="x"') as host:
        run = await run_pypull("--creds", "u:p", f"{host}/test/realm:1", store=store)
    assert run.returncode == 1
    line = the_error_line(run.stderr)
    assert len(line.encode()) < 1024
    assert "refusing token realm http://192.0.2.1/\\x9b2J\u00e2\\x80\u00ae" in line
    # however long the realm, the reason stays at the end of the line
    assert line.endswith(
        "tokens are fetched over HTTPS, except from a plain-HTTP registry's own host"
    )


async def test_escape_sequences_in_a_challenge_do_not_reach_the_terminal(store: Path) -> None:
    realm = b"http://192.0.2.1/" + HOSTILE.encode() * 100
    async with raw_challenger(b'Bearer realm="' + realm + b'",service="x"') as host:
        # one attempt: the realm's refusal is not retried, but make sure no backoff shows
        ref = f"{host}/test/realm:1"
        run = await run_pypull("--creds", "u:p", "--max-download-attempts", "1", ref, store=store)
    assert run.returncode == 1
    line = the_error_line(run.stderr)  # refused as a malformed answer, or the realm refused
    assert len(line.encode()) < 1024
    assert "\\x1b]0;owned\\x07" in line


async def test_hostile_platform_names_are_shown_escaped(store: Path) -> None:
    index = index_of(
        [
            {"os": "linux", "architecture": HOSTILE},
            {"os": "\u202elinux", "architecture": "arm64", "variant": "v8\x9b2J"},
        ]
    )
    async with start_fake([index]) as fake:
        run = await run_pypull("--platform", "linux/s390x", fake.ref(index), store=store)
    assert run.returncode == 1
    line = the_error_line(run.stderr)
    assert f"(available: linux/{HOSTILE_SHOWN}, \\u202elinux/arm64/v8\\x9b2J)" in line


async def test_an_index_of_19000_platforms_makes_an_error_line_under_1_kb(store: Path) -> None:
    index = index_of([{"os": "linux", "architecture": f"arch{i:05d}"} for i in range(19_000)])
    async with start_fake([index]) as fake:
        run = await run_pypull("--platform", "linux/s390x", fake.ref(index), store=store)
    assert run.returncode == 1
    line = the_error_line(run.stderr)
    assert len(line.encode()) < 1024
    assert line.endswith("linux/arch00009 and 18990 more)")


async def test_a_credential_helpers_hostile_stderr_is_shown_escaped(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-hostile"
    helper.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.stderr.write({(HOSTILE + chr(0x202E)) * 2000!r})\n"
        "sys.exit(1)\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    config = Path(os.environ["DOCKER_CONFIG"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.json").write_text(json.dumps({"credsStore": "hostile"}))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")

    image = make_image("test/helper", "1", layers=1)
    async with start_fake([image], auth="basic") as fake:
        run = await run_pypull(fake.ref(image), store=store)
    assert run.returncode == 1
    line = the_error_line(run.stderr)
    assert "credential helper docker-credential-hostile get" in line
    assert HOSTILE_SHOWN + "\\u202e" in line
    assert len(line.encode()) < 1024
