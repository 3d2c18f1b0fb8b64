"""Registry credentials where ``docker login`` keeps them: ``config.json`` and credential helpers.

Synchronous and standard library only; async callers run it in a thread.

Which source answers for a registry is docker's rule (docker/cli ``cli/config/configfile/file.go``:
``GetCredentialsStore`` and ``getConfiguredCredentialStore``; ``cli/config/credentials/
native_store.go``)::

    1. credHelpers[key]   a helper named for exactly this key (an empty name means "use the file")
    2. credsStore         otherwise the default helper, for every registry
    3. auths              otherwise the plain entries in config.json

The first that applies decides alone. When a helper applies, ``auths`` is not consulted even if the
helper has no credentials: docker overwrites the file entry's username and password with the
helper's (empty) answer. ``login`` and ``logout`` go to the same place ``lookup`` reads from.

The *key* of a registry is what docker files it under: ``https://index.docker.io/v1/`` for Docker
Hub (``docker.io``, ``index.docker.io``, ``registry-1.docker.io``), else the registry name itself
(``localhost:5000``, ``[::1]:5000``). ``credHelpers`` is matched on the exact key, as docker does.
``auths`` is matched on the exact key first, then on any key that names the same host once its
scheme and path are stripped (``https://localhost:5000/v2/`` matches ``localhost:5000``), in file
order. One leniency beyond docker: a Docker Hub entry filed under a bare Hub host name
(``docker.io``, as some other tools write it) is found too, after the conventional key.

An identity token (``identitytoken`` in ``auths``, or a helper answering ``Username: "<token>"``)
is returned as ``Credentials(username="<token>", password=<the token>)``: docker's convention that
the username ``<token>`` marks the password as an OAuth refresh token, not a password. ``login``
accepts the same form and files it the way docker does.

Helpers are looked up in the absolute entries of ``PATH`` only (see ``find_helper``): never in the
current directory through an empty or relative entry, as docker refuses too.

Secrets never appear in an exception message: errors name the file, the key and the helper only,
and a helper's own error text has any secret we handed it masked.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CredentialError
from ..text import shown
from .auth import Credentials

__all__ = [
    "DOCKER_HUB_KEY",
    "HELPER_TIMEOUT",
    "TOKEN_USERNAME",
    "CredentialError",
    "CredentialStore",
    "config_path",
    "find_helper",
]

#: The key docker uses for Docker Hub in ``config.json`` and when asking a credential helper.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
#: The username that marks a password as an identity (OAuth refresh) token, as docker uses it.
TOKEN_USERNAME = "<token>"
#: Seconds a credential helper may take before we give up on it.
HELPER_TIMEOUT = 30.0

_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_HELPER_PREFIX = "docker-credential-"
_NOT_FOUND = "credentials not found"
_MAX_DETAIL = 200
# Read-modify-write of config.json within this process; docker itself takes no lock across
# processes, so neither do we.
_write_lock = threading.Lock()


def config_path(env: Mapping[str, str] = os.environ) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (home from ``$HOME``)."""
    directory = env.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".docker" / "config.json"


def _host(key: str) -> str:
    """A config key without scheme, user info and path: docker's ``ConvertToHostname``."""
    rest = key.strip()
    if "://" in rest:
        rest = rest.split("://", 1)[1]
        for sep in "/?#":
            rest = rest.split(sep, 1)[0]
        return rest.rpartition("@")[2]
    return rest.split("/", 1)[0]


def _key(registry: str) -> str:
    """The key docker files a registry under: the Docker Hub key, else the host name."""
    host = _host(registry)
    if not host:
        raise ValueError(f"not a registry name: {registry!r}")
    return DOCKER_HUB_KEY if host.lower() in _HUB_HOSTS else host


def _matches(file_key: str, key: str) -> bool:
    return file_key == key or (_host(file_key) != "" and _key(file_key) == key)


@dataclass(frozen=True, slots=True)
class CredentialStore:
    """Docker's credential configuration at ``path``.

    The file is read afresh by every call, so a ``docker login`` in another terminal is seen at
    once; ``load`` reads it once up front so that a broken file is reported early. A registry
    name with no host in it (``""``) is a ``ValueError``.
    """

    path: Path
    helper_timeout: float = HELPER_TIMEOUT

    @classmethod
    def load(cls, path: Path | None = None) -> CredentialStore:
        """The store at ``path`` (default: ``config_path()``). A missing file holds no credentials;
        an unreadable file or invalid JSON raises ``CredentialError`` naming the file."""
        store = cls(config_path() if path is None else Path(path))
        store._read()
        return store

    def lookup(self, registry: str) -> Credentials | None:
        """The credentials for ``registry`` (``docker.io``, ``localhost:5000``, ...), or None."""
        key = _key(registry)
        config = self._read()
        helper = _helper_for(config, key, self.path)
        if helper is not None:
            return _helper_get(helper, key, self.helper_timeout)
        auths: dict[str, Any] = config.get("auths") or {}
        if key in auths:
            return self._from_entry(key, auths[key])
        for file_key, entry in auths.items():
            if _matches(file_key, key):
                return self._from_entry(file_key, entry)
        return None

    def login(self, registry: str, creds: Credentials) -> None:
        """Remember ``creds`` for ``registry`` where docker would: the helper that applies (its
        ``store`` action, leaving an empty placeholder in ``auths`` as docker does), else
        ``auths[key] = {"auth": base64("user:password")}`` in the file.

        Every other key and entry of the file is kept. A new file is created 0600 (its directory
        0700); an existing file keeps its mode, as docker keeps it. The write is atomic: a temp
        file in the same directory, then a rename (onto the target of a symlinked config.json).
        """
        key = _key(registry)
        if not creds.username or ":" in creds.username:
            # docker splits "user:password" at the first colon: such a name would not read back
            raise CredentialError(f"cannot store credentials for {key}: invalid username")
        with _write_lock:
            config = self._read()
            helper = _helper_for(config, key, self.path)
            if helper is not None:
                _helper_store(helper, key, creds, self.helper_timeout)
                entry: dict[str, str] = {}
            elif creds.username == TOKEN_USERNAME:
                entry = {"identitytoken": creds.password}
            else:
                raw = f"{creds.username}:{creds.password}".encode()
                entry = {"auth": base64.b64encode(raw).decode("ascii")}
            auths = config.get("auths")
            if not isinstance(auths, dict):
                auths = config["auths"] = {}
            auths[key] = entry
            self._write(config)

    def logout(self, registry: str) -> bool:
        """Forget ``registry``: the helper's ``erase`` if a helper applies, and every ``auths``
        entry that ``lookup`` could match. True if the helper erased something or an entry left
        the file; False if there was nothing to forget."""
        key = _key(registry)
        with _write_lock:
            config = self._read()
            helper = _helper_for(config, key, self.path)
            removed = _helper_erase(helper, key, self.helper_timeout) if helper else False
            auths: dict[str, Any] = config.get("auths") or {}
            stale = [file_key for file_key in auths if _matches(file_key, key)]
            for file_key in stale:
                del auths[file_key]
            if stale:
                self._write(config)
            return removed or bool(stale)

    # -- the file ----------------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        path = self.path
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise CredentialError(
                f"cannot read docker config {path}: {e.strerror or e}", path=str(path)
            ) from e
        try:
            text = raw.decode("utf-8-sig")
            # docker accepts an empty file as an empty config
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:  # its message gives a position, never the content
            raise CredentialError(
                f"invalid docker config {path}: {e.msg} at line {e.lineno} column {e.colno}",
                path=str(path),
            ) from None
        except UnicodeDecodeError:
            raise CredentialError(
                f"invalid docker config {path}: not UTF-8", path=str(path)
            ) from None
        if not isinstance(data, dict):
            raise CredentialError(
                f"invalid docker config {path}: not a JSON object", path=str(path)
            )
        auths = data.get("auths")
        if auths is not None and not (
            isinstance(auths, dict) and all(isinstance(v, dict) for v in auths.values())
        ):
            raise CredentialError(
                f'invalid docker config {path}: "auths" is not an object of objects', path=str(path)
            )
        helpers = data.get("credHelpers")
        if helpers is not None and not (
            isinstance(helpers, dict) and all(isinstance(v, str) for v in helpers.values())
        ):
            raise CredentialError(
                f'invalid docker config {path}: "credHelpers" is not an object of strings',
                path=str(path),
            )
        if not isinstance(data.get("credsStore", ""), str):
            raise CredentialError(
                f'invalid docker config {path}: "credsStore" is not a string', path=str(path)
            )
        return data

    def _from_entry(self, file_key: str, entry: dict[str, Any]) -> Credentials | None:
        # An identity token wins over a password, as in docker's registry login.
        token = entry.get("identitytoken")
        if isinstance(token, str) and token:
            return Credentials(TOKEN_USERNAME, token)
        auth = entry.get("auth")
        if isinstance(auth, str) and auth.strip():
            where = f"invalid auth for {file_key} in {self.path}"
            try:
                text = auth.strip()
                decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
                user, sep, password = decoded.decode("utf-8").partition(":")
            except (binascii.Error, ValueError):
                raise CredentialError(
                    f"{where}: not base64 of UTF-8", path=str(self.path)
                ) from None
            if not sep or not user:
                raise CredentialError(f"{where}: not user:password", path=str(self.path))
            return Credentials(user, password.strip("\x00"))
        name, secret = entry.get("username"), entry.get("password")
        if isinstance(name, str) and name and isinstance(secret, str):
            return Credentials(name, secret)
        return None

    def _write(self, config: dict[str, Any]) -> None:
        # Like docker: follow a symlinked config.json (even a dangling one) and replace its target.
        target = Path(os.path.realpath(self.path))
        tmp: str | None = None
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp made it 0600
                json.dump(config, f, indent="\t", ensure_ascii=False)
                f.flush()
                os.fsync(f.fileno())
            with suppress(FileNotFoundError):
                old = os.stat(target)
                os.chmod(tmp, stat.S_IMODE(old.st_mode))
                with suppress(OSError, AttributeError):  # only root may give a file away
                    os.chown(tmp, old.st_uid, old.st_gid)
            os.replace(tmp, target)
            tmp = None
        except OSError as e:
            raise CredentialError(
                f"cannot write docker config {self.path}: {e.strerror or e}", path=str(self.path)
            ) from e
        finally:
            if tmp is not None:
                with suppress(OSError):
                    os.unlink(tmp)


# -- credential helpers ----------------------------------------------------------------------------


def _helper_for(config: Mapping[str, Any], key: str, path: Path) -> str | None:
    """The helper that answers for ``key``: ``credHelpers[key]``, else ``credsStore``, else None.

    As in docker, a ``credHelpers`` entry wins even when empty, and an empty name means the file.
    """
    helpers: dict[str, str] = config.get("credHelpers") or {}
    name = helpers[key] if key in helpers else config.get("credsStore", "")
    if not name:
        return None
    if "/" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise CredentialError(
            f"invalid credential helper name {shown(repr(name), 100)} in {path}",
            path=str(path),
            helper=name,
        )
    return str(name)


def find_helper(program: str, path: str | None = None) -> str | None:
    """The absolute path of ``program`` in ``path`` (default: ``$PATH``), searching only its
    absolute entries.

    An empty entry means the current directory to a shell, and a relative one is relative to it:
    a helper found there would be whatever file the directory one happens to stand in provides
    (a cloned repository, a download folder). docker refuses the same (Go's ``exec.LookPath``
    answers ``ErrDot``), so such entries are skipped.
    """
    if path is None:
        path = os.environ.get("PATH", os.defpath)
    absolute = [d for d in path.split(os.pathsep) if os.path.isabs(d)]
    return shutil.which(program, path=os.pathsep.join(absolute)) if absolute else None


def _skipped_hint(program: str) -> str:
    """Why a helper that sits in an empty or relative PATH entry was not run, or ""."""
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if os.path.isabs(d):
            continue
        candidate = os.path.join(d or os.curdir, program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            where = f"the relative PATH entry {shown(d, 100)}" if d else "the current directory"
            return (
                f" (one in {where} is not run: only absolute PATH entries are searched for "
                "credential helpers)"
            )
    return ""


def _run(
    name: str, action: str, payload: bytes, timeout: float
) -> subprocess.CompletedProcess[bytes]:
    program = _HELPER_PREFIX + name
    exe = find_helper(program)
    if exe is None:
        raise CredentialError(
            f"credential helper {program} not found in PATH{_skipped_hint(program)}",
            helper=program,
        )
    try:
        return subprocess.run(
            [exe, action], input=payload, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise CredentialError(
            f"credential helper {program} {action} gave no answer within {timeout:g} s",
            helper=program,
        ) from None
    except OSError as e:
        raise CredentialError(
            f"cannot run credential helper {program}: {e.strerror or e}", helper=program
        ) from e


def _not_found(proc: subprocess.CompletedProcess[bytes]) -> bool:
    said = (proc.stdout + b"\n" + proc.stderr).decode("utf-8", "replace").lower()
    return _NOT_FOUND in said


def _first_line(data: bytes) -> str:
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip()
    return ""


def _failure(
    name: str, action: str, key: str, proc: subprocess.CompletedProcess[bytes], *secrets: str
) -> CredentialError:
    program = _HELPER_PREFIX + name
    # Helpers built on docker-credential-helpers print their error to stdout; a JSON answer there
    # could hold a secret, so stdout is quoted only when it does not look like one.
    out = _first_line(proc.stdout)
    detail = _first_line(proc.stderr) or ("" if out.startswith("{") else out)
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "***")
    # A helper is a program config.json names: what it says is escaped and cut like a
    # registry's words (after masking, so an escape cannot split a secret out of sight).
    detail = shown(detail, _MAX_DETAIL) or "no message"
    return CredentialError(
        f"credential helper {program} {action} for {key} failed (exit status {proc.returncode}): "
        f"{detail}",
        helper=program,
    )


def _helper_get(name: str, key: str, timeout: float) -> Credentials | None:
    proc = _run(name, "get", key.encode(), timeout)
    if proc.returncode != 0:
        if _not_found(proc):
            return None
        raise _failure(name, "get", key, proc)
    try:
        body = json.loads(proc.stdout)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise CredentialError(
            f"credential helper {_HELPER_PREFIX}{name} get for {key} answered no JSON object",
            helper=_HELPER_PREFIX + name,
        )
    user, secret = body.get("Username"), body.get("Secret")
    user = user if isinstance(user, str) else ""
    secret = secret if isinstance(secret, str) else ""
    if not user and not secret:
        return None
    return Credentials(user, secret)


def _helper_store(name: str, key: str, creds: Credentials, timeout: float) -> None:
    payload = {"ServerURL": key, "Username": creds.username, "Secret": creds.password}
    proc = _run(name, "store", json.dumps(payload).encode(), timeout)
    if proc.returncode != 0:
        raise _failure(name, "store", key, proc, creds.password)


def _helper_erase(name: str, key: str, timeout: float) -> bool:
    proc = _run(name, "erase", key.encode(), timeout)
    if proc.returncode == 0:
        return True
    if _not_found(proc):
        return False
    raise _failure(name, "erase", key, proc)
