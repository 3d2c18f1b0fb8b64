"""Credentials as ``docker login`` keeps them: config.json ``auths``, credHelpers, credsStore.

Every test gets its own ``DOCKER_CONFIG`` directory; credential helpers are real ``#!/bin/sh``
scripts on a temporary ``PATH`` that record each call (action and stdin) to a log.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from puller.errors import PullError
from puller.registry.auth import Credentials
from puller.registry.credentials import (
    DOCKER_HUB_KEY,
    TOKEN_USERNAME,
    CredentialError,
    CredentialStore,
    config_path,
    find_helper,
)
from tests.support.helpers import run_pypull

SECRET = "s3cr3t-Pa55:w0rd"  # searched for in every error message below


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class Env:
    config_dir: Path
    bin_dir: Path

    @property
    def config(self) -> Path:
        return self.config_dir / "config.json"

    def write(self, data: Any) -> Path:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(data if isinstance(data, str) else json.dumps(data))
        return self.config

    def read(self) -> Any:
        return json.loads(self.config.read_text())

    def helper(
        self,
        name: str,
        get: str = "exit 0",
        store: str = "exit 0",
        erase: str = "exit 0",
    ) -> Path:
        """Install ``docker-credential-<name>``; each action runs the given shell snippet."""
        log = self.bin_dir / f"{name}.log"
        script = self.bin_dir / f"docker-credential-{name}"
        script.write_text(
            "#!/bin/sh\n"
            "input=$(cat)\n"
            f"printf '%s %s\\n' \"$1\" \"$input\" >> '{log}'\n"
            'case "$1" in\n'
            f"  get) {get} ;;\n"
            f"  store) {store} ;;\n"
            f"  erase) {erase} ;;\n"
            '  *) echo "unknown action $1" >&2; exit 1 ;;\n'
            "esac\n"
        )
        script.chmod(0o755)
        return log

    def calls(self, name: str) -> list[tuple[str, str]]:
        """``(action, stdin)`` of every call the helper ``name`` received, in order."""
        log = self.bin_dir / f"{name}.log"
        if not log.exists():
            return []
        return [
            (action, stdin)
            for action, _, stdin in (line.partition(" ") for line in log.read_text().splitlines())
        ]


def answer(user: str, secret: str, server: str = "ignored") -> str:
    """A helper ``get`` snippet printing docker-credential-helpers' JSON answer."""
    body = json.dumps({"ServerURL": server, "Username": user, "Secret": secret})
    return f"printf '%s' '{body}'"


NOT_FOUND = 'echo "credentials not found in native keychain"; exit 1'


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return Env(tmp_path / "docker", bin_dir)


def lookup(registry: str) -> Credentials | None:
    return CredentialStore.load().lookup(registry)


# -- where the file is -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"DOCKER_CONFIG": "/cfg", "HOME": "/home/u"}, "/cfg/config.json"),
        ({"HOME": "/home/u"}, "/home/u/.docker/config.json"),
        ({"DOCKER_CONFIG": "", "HOME": "/home/u"}, "/home/u/.docker/config.json"),
    ],
)
def test_config_path_follows_docker_config_then_home(
    environ: dict[str, str], expected: str
) -> None:
    assert config_path(environ) == Path(expected)


def test_load_uses_docker_config_from_the_environment(env: Env) -> None:
    assert CredentialStore.load().path == env.config


def test_missing_file_or_directory_means_no_credentials(env: Env) -> None:
    assert not env.config_dir.exists()
    assert lookup("localhost:5000") is None


def test_empty_file_means_no_credentials(env: Env) -> None:
    env.write("")
    assert lookup("localhost:5000") is None


# -- the forms of an auths entry -------------------------------------------------------------------

ENTRIES: list[tuple[str, dict[str, Any], Credentials | None]] = [
    ("auth", {"auth": b64("alice:pw")}, Credentials("alice", "pw")),
    ("colons stay in the password", {"auth": b64(f"alice:{SECRET}")}, Credentials("alice", SECRET)),
    ("empty password", {"auth": b64("alice:")}, Credentials("alice", "")),
    ("trailing NULs trimmed", {"auth": b64("alice:pw\x00\x00")}, Credentials("alice", "pw")),
    ("unpadded base64", {"auth": b64("alice:pw1").rstrip("=")}, Credentials("alice", "pw1")),
    ("username/password", {"username": "bob", "password": "pw"}, Credentials("bob", "pw")),
    ("auth wins over username/password", {"auth": b64("a:1"), "username": "b", "password": "2"},
     Credentials("a", "1")),
    ("identity token", {"identitytoken": "tok"}, Credentials(TOKEN_USERNAME, "tok")),
    ("identity token wins", {"auth": b64("alice:pw"), "identitytoken": "tok"},
     Credentials(TOKEN_USERNAME, "tok")),
    ("placeholder docker leaves with a helper", {}, None),
    ("empty auth", {"auth": ""}, None),
    ("email only", {"email": "a@example.test"}, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "expected"), [c[1:] for c in ENTRIES], ids=[c[0] for c in ENTRIES]
)
def test_auths_entry_forms(env: Env, entry: dict[str, Any], expected: Credentials | None) -> None:
    env.write({"auths": {"localhost:5000": entry}})
    assert lookup("localhost:5000") == expected


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(b64(SECRET.replace(":", "")), id="no colon"),
        pytest.param(b64(f":{SECRET}"), id="empty username"),
        pytest.param(f"!!{SECRET}!!", id="not base64"),
    ],
)
def test_broken_auth_value_is_an_error_without_the_secret(env: Env, auth: str) -> None:
    env.write({"auths": {"localhost:5000": {"auth": auth}}})
    with pytest.raises(CredentialError) as info:
        lookup("localhost:5000")
    message = str(info.value)
    assert "localhost:5000" in message and str(env.config) in message
    assert SECRET not in message and auth not in message
    assert SECRET.replace(":", "") not in message


# -- which key answers for a registry --------------------------------------------------------------

KEYS: list[tuple[str, str, bool]] = [
    ("localhost:5000", "localhost:5000", True),
    ("https://localhost:5000/v2/", "localhost:5000", True),
    ("http://localhost:5000", "localhost:5000", True),
    ("https://user@localhost:5000/", "localhost:5000", True),
    ("localhost:5000/v2/", "localhost:5000", True),
    ("127.0.0.1:5000", "127.0.0.1:5000", True),
    ("https://127.0.0.1:5000/v1/", "127.0.0.1:5000", True),
    ("https://[::1]:5000/v2/", "[::1]:5000", True),
    ("[::1]:5000", "[::1]:5000", True),
    ("registry.example.test", "registry.example.test", True),
    ("https://localhost:5001/", "localhost:5000", False),
    ("localhost", "localhost:5000", False),
    ("localhost:5000", "localhost", False),
    ("https://registry.example.test/", "example.test", False),
    ("127.0.0.1:5000", "localhost:5000", False),
]


@pytest.mark.parametrize(("key", "registry", "found"), KEYS)
def test_auths_key_matching(env: Env, key: str, registry: str, found: bool) -> None:
    env.write({"auths": {key: {"auth": b64("u:p")}}})
    assert (lookup(registry) is not None) is found


def test_exact_key_wins_over_a_stripped_one(env: Env) -> None:
    env.write(
        {
            "auths": {
                "https://localhost:5000/v2/": {"auth": b64("legacy:1")},
                "localhost:5000": {"auth": b64("exact:2")},
            }
        }
    )
    assert lookup("localhost:5000") == Credentials("exact", "2")


@pytest.mark.parametrize("registry", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_names_map_to_the_hub_key(env: Env, registry: str) -> None:
    env.write({"auths": {DOCKER_HUB_KEY: {"auth": b64("hubuser:pw")}}})
    assert lookup(registry) == Credentials("hubuser", "pw")


def test_docker_hub_entry_under_a_bare_host_is_found_after_the_hub_key(env: Env) -> None:
    env.write({"auths": {"docker.io": {"auth": b64("bare:1")}}})
    assert lookup("docker.io") == Credentials("bare", "1")
    env.write(
        {"auths": {"docker.io": {"auth": b64("bare:1")}, DOCKER_HUB_KEY: {"auth": b64("hub:2")}}}
    )
    assert lookup("docker.io") == Credentials("hub", "2")


def test_docker_hub_key_does_not_answer_for_other_registries(env: Env) -> None:
    env.write({"auths": {DOCKER_HUB_KEY: {"auth": b64("hubuser:pw")}}})
    assert lookup("localhost:5000") is None


# -- precedence: credHelpers, then credsStore, then auths ------------------------------------------

PRECEDENCE: list[tuple[str, dict[str, Any], str | None]] = [
    ("credHelpers wins over credsStore and auths",
     {"credHelpers": {"localhost:5000": "one"}, "credsStore": "default"}, "from-one"),
    ("credsStore wins over auths", {"credsStore": "default"}, "from-default"),
    ("credHelpers for another registry: credsStore",
     {"credHelpers": {"other:5000": "one"}, "credsStore": "default"}, "from-default"),
    ("credHelpers for another registry, no credsStore: auths",
     {"credHelpers": {"other:5000": "one"}}, "from-file"),
    ("neither: auths", {}, "from-file"),
    ("empty credHelpers entry opts out of credsStore",
     {"credHelpers": {"localhost:5000": ""}, "credsStore": "default"}, "from-file"),
    ("empty credsStore: auths", {"credsStore": ""}, "from-file"),
    ("helper that has nothing does not fall back to auths", {"credsStore": "empty"}, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "username"), [c[1:] for c in PRECEDENCE], ids=[c[0] for c in PRECEDENCE]
)
def test_precedence(env: Env, config: dict[str, Any], username: str | None) -> None:
    env.helper("one", get=answer("from-one", "1"))
    env.helper("default", get=answer("from-default", "2"))
    env.helper("empty", get=NOT_FOUND)
    env.write({**config, "auths": {"localhost:5000": {"auth": b64("from-file:3")}}})
    creds = lookup("localhost:5000")
    assert (creds.username if creds else None) == username


def test_credhelpers_key_is_matched_exactly_as_docker_does(env: Env) -> None:
    env.helper("one", get=answer("from-one", "1"))
    env.write({"credHelpers": {"https://localhost:5000": "one"}})
    assert lookup("localhost:5000") is None
    assert env.calls("one") == []


@pytest.mark.parametrize(
    ("registry", "server_url"),
    [
        ("docker.io", DOCKER_HUB_KEY),
        ("registry-1.docker.io", DOCKER_HUB_KEY),
        ("localhost:5000", "localhost:5000"),
        ("[::1]:5000", "[::1]:5000"),
    ],
)
def test_helper_get_receives_the_server_url_on_stdin(
    env: Env, registry: str, server_url: str
) -> None:
    env.helper("store", get=answer("alice", SECRET, server_url))
    env.write({"credsStore": "store"})
    assert lookup(registry) == Credentials("alice", SECRET)
    assert env.calls("store") == [("get", server_url)]


def test_credhelpers_for_docker_hub_use_the_hub_key(env: Env) -> None:
    env.helper("hub", get=answer("hubuser", "pw"))
    env.write({"credHelpers": {DOCKER_HUB_KEY: "hub"}})
    assert lookup("docker.io") == Credentials("hubuser", "pw")


def test_helper_identity_token(env: Env) -> None:
    env.helper("store", get=answer(TOKEN_USERNAME, "refresh-token"))
    env.write({"credsStore": "store"})
    assert lookup("localhost:5000") == Credentials(TOKEN_USERNAME, "refresh-token")


@pytest.mark.parametrize(
    "get",
    [
        pytest.param(NOT_FOUND, id="stdout, as docker-credential-helpers print it"),
        pytest.param('echo "Credentials not found" >&2; exit 1', id="stderr"),
        pytest.param(answer("", ""), id="empty answer"),
    ],
)
def test_helper_without_credentials_means_none(env: Env, get: str) -> None:
    env.helper("store", get=get)
    env.write({"credsStore": "store"})
    assert lookup("localhost:5000") is None


# -- helper failures -------------------------------------------------------------------------------


def error_of(env: Env, registry: str = "localhost:5000") -> str:
    with pytest.raises(CredentialError) as info:
        lookup(registry)
    message = str(info.value)
    assert "\n" not in message
    assert SECRET not in message
    assert isinstance(info.value, PullError)
    return message


def test_helper_crash_names_helper_and_first_stderr_line(env: Env) -> None:
    env.helper("store", get='echo "keychain locked" >&2; echo "second line" >&2; exit 3')
    env.write({"credsStore": "store"})
    message = error_of(env)
    assert "docker-credential-store" in message and "keychain locked" in message
    assert "second line" not in message and "exit status 3" in message


def test_helper_stderr_is_escaped_and_cut(env: Env) -> None:
    # OSC 0 (retitle the window), CSI 2J (clear the screen), a bidi override; 3000 times over
    env.helper(
        "store",
        get="printf '\\033]0;owned\\007\\033[2J\\342\\200\\256%.0s' $(seq 3000) >&2; exit 1",
    )
    env.write({"credsStore": "store"})
    message = error_of(env)
    assert "\\x1b]0;owned\\x07\\x1b[2J\\u202e" in message
    assert not any(c in message for c in "\x1b\x07\u202e")
    assert len(message) < 400 and message.endswith("…")


def test_helper_error_on_stdout_is_quoted_when_stderr_is_empty(env: Env) -> None:
    env.helper("store", get='echo "error getting credentials: dbus down"; exit 1')
    env.write({"credsStore": "store"})
    assert "dbus down" in error_of(env)


def test_helper_json_on_stdout_is_never_quoted(env: Env) -> None:
    env.helper("store", get=f"{answer('alice', SECRET)}; exit 1")
    env.write({"credsStore": "store"})
    error_of(env)  # checks SECRET is absent


def test_helper_answering_garbage_is_an_error_without_the_answer(env: Env) -> None:
    env.helper("store", get=f"printf '%s' 'Secret={SECRET}'")
    env.write({"credsStore": "store"})
    assert "no JSON object" in error_of(env)


def test_missing_helper_says_so(env: Env) -> None:
    env.write({"credsStore": "nonexistent"})
    message = error_of(env)
    assert "docker-credential-nonexistent" in message and "not found in PATH" in message


def evil_helper_in(directory: Path) -> Path:
    """A ``docker-credential-evil`` in ``directory`` that leaves a marker file when it runs;
    returns the marker's path."""
    marker = directory.parent / f"{directory.name}-evil-ran"
    script = directory / "docker-credential-evil"
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\necho '{{}}'\n")
    script.chmod(0o755)
    return marker


@pytest.mark.parametrize(
    ("path", "where"),
    [
        (":/usr/bin:/bin", "the current directory"),
        ("/usr/bin::/bin", "the current directory"),
        ("/usr/bin:/bin:", "the current directory"),
        (".:/usr/bin", "the relative PATH entry ."),
        ("work:/usr/bin", "the relative PATH entry work"),
    ],
    ids=["leading-empty", "middle-empty", "trailing-empty", "dot", "relative"],
)
def test_a_helper_is_never_run_from_an_empty_or_relative_path_entry(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, where: str
) -> None:
    cwd = tmp_path / "cwd"
    (cwd / "work").mkdir(parents=True)
    marker = evil_helper_in(cwd / "work" if "work" in path else cwd)
    env.write({"credsStore": "evil"})
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("PATH", path)
    message = error_of(env)
    assert message.startswith("credential helper docker-credential-evil not found in PATH")
    assert f"one in {where} is not run" in message
    assert not marker.exists()


def test_find_helper_searches_absolute_entries_only(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    evil_helper_in(tmp_path / "bin")
    absolute = str(tmp_path / "bin")
    assert (
        find_helper("docker-credential-evil", f"::{absolute}")
        == f"{absolute}/docker-credential-evil"
    )
    assert find_helper("docker-credential-evil", "") is None
    assert find_helper("docker-credential-nonexistent", absolute) is None


def test_the_cli_does_not_run_a_helper_from_the_current_directory(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = evil_helper_in(tmp_path)
    env.write({"credsStore": "evil"})
    monkeypatch.chdir(tmp_path)
    root = str(Path(__file__).resolve().parents[2])  # this checkout's package
    run = run_pypull("logout", "localhost:5000", env={"PATH": ":/usr/bin:/bin", "PYTHONPATH": root})
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "Error: credential helper docker-credential-evil not found in PATH (one in the current "
        "directory is not run: only absolute PATH entries are searched for credential helpers)"
    ]
    assert not marker.exists()


def test_helper_name_with_a_path_is_refused(env: Env) -> None:
    env.write({"credsStore": "../evil"})
    assert "invalid credential helper name" in error_of(env)


def test_hung_helper_times_out(env: Env) -> None:
    env.helper("slow", get="exec sleep 30")
    env.write({"credsStore": "slow"})
    store = CredentialStore(env.config, helper_timeout=0.2)
    with pytest.raises(CredentialError, match="docker-credential-slow get gave no answer"):
        store.lookup("localhost:5000")


# -- a broken file ---------------------------------------------------------------------------------

BROKEN: list[tuple[str, str]] = [
    ("invalid JSON", '{"auths": {"localhost:5000": {"auth": "' + SECRET + '"}'),
    ("not an object", json.dumps([SECRET])),
    ("auths not an object", json.dumps({"auths": [SECRET]})),
    ("an auths entry not an object", json.dumps({"auths": {"localhost:5000": SECRET}})),
    ("credHelpers not strings", json.dumps({"credHelpers": {"localhost:5000": 1}})),
    ("credsStore not a string", json.dumps({"credsStore": ["x"]})),
]


@pytest.mark.parametrize("text", [c[1] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_file_is_an_error_naming_the_file(env: Env, text: str) -> None:
    env.write(text)
    with pytest.raises(CredentialError) as info:
        CredentialStore.load()
    message = str(info.value)
    assert str(env.config) in message and info.value.path == str(env.config)
    assert SECRET not in message and "\n" not in message


def test_not_utf8_file_is_an_error(env: Env) -> None:
    env.config_dir.mkdir()
    env.config.write_bytes(b'{"psFormat": "\xff"}')
    with pytest.raises(CredentialError, match="not UTF-8"):
        CredentialStore.load()


def test_unreadable_file_is_an_error_naming_the_file(env: Env) -> None:
    env.config.mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(CredentialError, match="cannot read docker config") as info:
        CredentialStore.load()
    assert str(env.config) in str(info.value)


# -- login -----------------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_login_creates_directory_0700_and_file_0600_in_docker_format(env: Env) -> None:
    CredentialStore.load().login("localhost:5000", Credentials("alice", SECRET))
    assert mode(env.config_dir) == 0o700 and mode(env.config) == 0o600
    assert env.read() == {"auths": {"localhost:5000": {"auth": b64(f"alice:{SECRET}")}}}
    assert lookup("localhost:5000") == Credentials("alice", SECRET)
    assert [p.name for p in env.config_dir.iterdir()] == ["config.json"]  # no temp file left


def test_login_keeps_every_other_key_and_entry(env: Env) -> None:
    before = {
        "auths": {"other:5000": {"auth": b64("bob:pw"), "email": "b@example.test"}},
        "credHelpers": {"other:6000": "one"},
        "psFormat": "table {{.ID}}",
        "plugins": {"x": {"y": "z"}},
        "unknownFutureKey": [1, 2, 3],
    }
    env.write(before)
    CredentialStore.load().login("localhost:5000", Credentials("alice", "pw"))
    after = env.read()
    assert after["auths"].pop("localhost:5000") == {"auth": b64("alice:pw")}
    assert after == before


def test_login_replaces_the_entry_for_the_same_registry(env: Env) -> None:
    env.write({"auths": {"localhost:5000": {"username": "old", "password": "old"}}})
    CredentialStore.load().login("localhost:5000", Credentials("new", "pw"))
    assert env.read() == {"auths": {"localhost:5000": {"auth": b64("new:pw")}}}


@pytest.mark.parametrize("registry", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_login_to_docker_hub_uses_the_hub_key(env: Env, registry: str) -> None:
    CredentialStore.load().login(registry, Credentials("hubuser", "pw"))
    assert env.read() == {"auths": {DOCKER_HUB_KEY: {"auth": b64("hubuser:pw")}}}


def test_login_with_an_identity_token_files_it_as_docker_does(env: Env) -> None:
    CredentialStore.load().login("localhost:5000", Credentials(TOKEN_USERNAME, "tok"))
    assert env.read() == {"auths": {"localhost:5000": {"identitytoken": "tok"}}}
    assert lookup("localhost:5000") == Credentials(TOKEN_USERNAME, "tok")


def test_login_keeps_an_existing_files_mode(env: Env) -> None:
    env.write({})
    env.config.chmod(0o640)
    CredentialStore.load().login("localhost:5000", Credentials("alice", "pw"))
    assert mode(env.config) == 0o640


def test_login_through_a_symlinked_config_replaces_the_target(env: Env, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "docker.json"
    real.parent.mkdir()
    real.write_text(json.dumps({"psFormat": "x"}))
    env.config_dir.mkdir()
    env.config.symlink_to(real)
    CredentialStore.load().login("localhost:5000", Credentials("alice", "pw"))
    assert env.config.is_symlink()
    assert json.loads(real.read_text())["auths"] == {"localhost:5000": {"auth": b64("alice:pw")}}


@pytest.mark.parametrize("username", ["", "a:b"])
def test_login_refuses_a_username_that_would_not_read_back(env: Env, username: str) -> None:
    with pytest.raises(CredentialError) as info:
        CredentialStore.load().login("localhost:5000", Credentials(username, SECRET))
    assert SECRET not in str(info.value)
    assert not env.config.exists()


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"credsStore": "keychain"}, id="credsStore"),
        pytest.param({"credHelpers": {"localhost:5000": "keychain"}, "credsStore": "x"},
                     id="credHelpers"),
    ],
)  # fmt: skip
def test_login_through_a_helper_calls_store_and_keeps_no_secret(
    env: Env, config: dict[str, Any]
) -> None:
    env.helper("keychain")
    env.write({**config, "auths": {"localhost:5000": {"auth": b64("old:plaintext")}}})
    CredentialStore.load().login("localhost:5000", Credentials("alice", SECRET))
    [(action, stdin)] = env.calls("keychain")
    assert action == "store"
    assert json.loads(stdin) == {
        "ServerURL": "localhost:5000",
        "Username": "alice",
        "Secret": SECRET,
    }
    # docker leaves an empty placeholder, which also drops the old plaintext password
    assert env.read() == {**config, "auths": {"localhost:5000": {}}}
    assert SECRET not in env.config.read_text()


def test_login_to_docker_hub_through_a_helper_sends_the_hub_key(env: Env) -> None:
    env.helper("keychain")
    env.write({"credsStore": "keychain"})
    CredentialStore.load().login("docker.io", Credentials(TOKEN_USERNAME, "tok"))
    [(action, stdin)] = env.calls("keychain")
    assert (action, json.loads(stdin)) == (
        "store",
        {"ServerURL": DOCKER_HUB_KEY, "Username": TOKEN_USERNAME, "Secret": "tok"},
    )


def test_failing_helper_store_masks_the_secret_it_echoes(env: Env) -> None:
    env.helper("keychain", store='echo "cannot store $input" >&2; exit 1')
    env.write({"credsStore": "keychain"})
    with pytest.raises(CredentialError) as info:
        CredentialStore.load().login("localhost:5000", Credentials("alice", SECRET))
    message = str(info.value)
    assert "docker-credential-keychain store" in message and "cannot store" in message
    assert SECRET not in message
    assert env.read() == {"credsStore": "keychain"}  # the file is untouched


# -- logout ----------------------------------------------------------------------------------------


def test_logout_removes_every_matching_entry_and_keeps_the_rest(env: Env) -> None:
    env.write(
        {
            "auths": {
                "localhost:5000": {"auth": b64("a:1")},
                "https://localhost:5000/v2/": {"auth": b64("b:2")},
                "http://localhost:5000": {"auth": b64("c:3")},
                "localhost:5001": {"auth": b64("d:4")},
            },
            "psFormat": "x",
        }
    )
    store = CredentialStore.load()
    assert store.logout("localhost:5000") is True
    assert store.lookup("localhost:5000") is None
    assert env.read() == {"auths": {"localhost:5001": {"auth": b64("d:4")}}, "psFormat": "x"}
    assert store.logout("localhost:5000") is False


def test_logout_from_docker_hub(env: Env) -> None:
    env.write({"auths": {DOCKER_HUB_KEY: {"auth": b64("hubuser:pw")}}})
    assert CredentialStore.load().logout("docker.io") is True
    assert env.read() == {"auths": {}}


def test_logout_without_a_file_changes_nothing(env: Env) -> None:
    assert CredentialStore.load().logout("localhost:5000") is False
    assert not env.config.exists()


@pytest.mark.parametrize(
    ("erase", "removed"),
    [
        pytest.param("exit 0", True, id="erased"),
        pytest.param(NOT_FOUND, False, id="nothing to erase"),
    ],
)
def test_logout_through_a_helper_calls_erase(env: Env, erase: str, removed: bool) -> None:
    env.helper("keychain", erase=erase)
    env.write({"credsStore": "keychain"})
    assert CredentialStore.load().logout("docker.io") is removed
    assert env.calls("keychain") == [("erase", DOCKER_HUB_KEY)]


def test_logout_through_a_helper_also_drops_the_placeholder(env: Env) -> None:
    env.helper("keychain", erase=NOT_FOUND)
    env.write({"credsStore": "keychain", "auths": {"localhost:5000": {}}})
    assert CredentialStore.load().logout("localhost:5000") is True
    assert env.read() == {"credsStore": "keychain", "auths": {}}


def test_logout_through_a_failing_helper_is_an_error(env: Env) -> None:
    env.helper("keychain", erase='echo "keychain locked" >&2; exit 1')
    env.write({"credsStore": "keychain", "auths": {"localhost:5000": {}}})
    with pytest.raises(
        CredentialError, match=r"docker-credential-keychain erase .*keychain locked"
    ):
        CredentialStore.load().logout("localhost:5000")
    assert env.read()["auths"] == {"localhost:5000": {}}


def test_login_then_lookup_then_logout_round_trip(env: Env) -> None:
    store = CredentialStore.load()
    store.login("[::1]:5000", Credentials("alice", SECRET))
    store.login("127.0.0.1:5000", Credentials("bob", "pw"))
    assert store.lookup("[::1]:5000") == Credentials("alice", SECRET)
    assert store.lookup("127.0.0.1:5000") == Credentials("bob", "pw")
    assert store.logout("[::1]:5000") is True
    assert store.lookup("[::1]:5000") is None
    assert store.lookup("127.0.0.1:5000") == Credentials("bob", "pw")
