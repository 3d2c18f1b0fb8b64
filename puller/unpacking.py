"""Unpacking: an image's layers applied in order to a directory, as a container runtime would.

    result = puller.unpack("redis:7", "./rootfs", store="./store")
    print(result.layers, result.files, result.skipped_devices)

The layers are read, inflated and verified by ``layers.Pipeline`` (each against its digest and
the config's ``rootfs.diff_ids``) and applied by ``rootfs.Tree``, which treats every entry as
hostile. Everything goes into a new directory beside DIR, renamed to DIR only when every layer
verified; a failure leaves no DIR behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UnpackError
from .layers import Pipeline, each_entry, image_layers
from .oci.manifest import Platform, parse_platform
from .oci.reference import Reference, parse
from .rootfs import Tree, new_directory
from .store.images import stored_layers
from .store.layout import Store, as_store

__all__ = ["Unpacked", "unpack"]


@dataclass(frozen=True, slots=True)
class Unpacked:
    """What an unpack did: layers applied, entries written (of every kind), bytes of file
    content written, and what was skipped because the caller is not root."""

    path: Path
    layers: int
    files: int
    bytes: int
    skipped_devices: int = 0
    skipped_owners: int = 0
    skipped_xattrs: int = 0


def _apply_layers(pipeline: Pipeline, tree: Tree, count: int) -> None:
    for i in range(count):
        tree.new_layer()
        each_entry(pipeline, i, tree.apply)
    tree.new_layer()


def _unpack_image(store: Store, ref: Reference, dest: Path, platform: Platform | None) -> Unpacked:
    what = str(ref)
    layers = image_layers(stored_layers(store, ref, platform), str(ref))
    dest = Path(os.path.abspath(dest))
    with new_directory(dest) as root_fd:
        tree = Tree(root_fd, as_root=os.geteuid() == 0)
        try:
            with Pipeline(store, layers, what) as pipeline:
                _apply_layers(pipeline, tree, len(layers))
            try:
                tree.finish()
            except OSError as e:
                raise UnpackError(f"{what}: setting directory modes: {e.strerror}") from None
        finally:
            tree.forget()
    return Unpacked(
        dest,
        len(layers),
        tree.files,
        tree.bytes,
        tree.skipped_devices,
        tree.skipped_owners,
        tree.skipped_xattrs,
    )


def unpack(
    image: str | Reference,
    dest: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str] | Store | None = None,
    platform: str | Platform | None = None,
) -> Unpacked:
    """Apply the layers of ``image`` (as pulled into ``store``) to the new directory ``dest``.
    Blocking. ``platform`` picks the child of a multi-platform image (default: this
    machine's). Raises ``UnpackError``, ``DigestMismatch``, ``NotFound``..., leaving no
    ``dest`` behind."""
    ref = image if isinstance(image, Reference) else parse(image)
    want = parse_platform(platform) if isinstance(platform, str) else platform
    held = as_store(store)
    with held.lease():  # a concurrent prune leaves every blob read here
        return _unpack_image(held, ref, Path(dest), want)
