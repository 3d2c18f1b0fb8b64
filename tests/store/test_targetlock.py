"""The lock per target repository (``puller.targetlock``): where its files go, what they are
named, and the directories it refuses. Waiting, ``--no-wait`` and a killed holder are shown end
to end in ``test_sync_e2e.py``."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from puller.errors import LockError, PullError, TargetBusy
from puller.targetlock import hold, lock_dir, lock_path


def test_locks_are_files_named_by_a_hash_in_a_directory_only_the_user_may_enter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    odd = "r.example:5000/../../etc/passwd"  # a name is never a path
    with hold([odd, "r.example/m/redis"]):
        where = tmp_path / "run" / "pypull"
        assert lock_dir() == where
        names = sorted(os.listdir(where))
        assert len(names) == 2 and all(re.fullmatch(r"[0-9a-f]{64}\.lock", n) for n in names)
        assert stat.S_IMODE(where.stat().st_mode) == 0o700
        assert lock_path(odd).read_text() == f"{odd}\npid {os.getpid()}\n"
    assert sorted(os.listdir(where)) == names  # kept: no unlink can race a waiter


def test_a_relative_xdg_runtime_dir_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "run")
    assert lock_dir().is_absolute()
    assert lock_dir({"XDG_RUNTIME_DIR": "/x/run"}) == Path("/x/run/pypull")


def test_a_lock_held_elsewhere_is_busy_without_waiting(tmp_path: Path) -> None:
    with (
        hold(["r.example/a", "r.example/b"], directory=tmp_path),
        pytest.raises(TargetBusy) as busy,
        hold(["r.example/b", "r.example/c"], directory=tmp_path, wait=False),
    ):
        pass
    assert busy.value.repository == "r.example/b"
    assert str(busy.value) == "r.example/b is busy: another pypull is writing to it"
    assert isinstance(busy.value, PullError)
    with hold(["r.example/c"], directory=tmp_path, wait=False):  # the one it took, let go
        pass


def test_a_directory_others_may_write_to_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(LockError) as refused, hold(["r.example/a"], directory=shared):
        pass
    assert str(refused.value).startswith(f"cannot use {shared} for locks: it is not only yours")
    assert os.listdir(shared) == []


def test_a_directory_that_is_a_link_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(LockError) as refused, hold(["r.example/a"], directory=tmp_path / "link"):
        pass
    assert str(refused.value) == f"cannot use {tmp_path / 'link'} for locks: a symbolic link"
