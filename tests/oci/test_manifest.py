"""Manifests and indexes: what parses into what, what is refused with which words, and which
entry of an index a platform selects."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from puller.errors import ManifestError, PlatformNotFound, PullError
from puller.oci.digest import Digest, digest_of
from puller.oci.manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    MAX_MANIFEST_SIZE,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    Platform,
    host_platform,
    parse_manifest,
    parse_platform,
    select_platform,
)

WHERE = "http://127.0.0.1:5000/v2/app/manifests/latest"

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ATTESTATION = {"vnd.docker.reference.type": "attestation-manifest"}

CONFIG = digest_of(b"config")
LAYER1 = digest_of(b"layer one")
LAYER2 = digest_of(b"layer two")
AMD64 = digest_of(b"amd64 manifest")
ARM64 = digest_of(b"arm64 manifest")
ATTEST = digest_of(b"attestation")


def desc(media_type: str, digest: Digest, size: int, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(digest), "size": size, **extra}


def image(media_type: str | None, config_type: str, layer_type: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "config": desc(config_type, CONFIG, 6),
        "layers": [desc(layer_type, LAYER1, 9), desc(layer_type, LAYER2, 9)],
    }
    if media_type is not None:
        doc["mediaType"] = media_type
    return doc


def index(media_type: str | None, manifest_type: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "manifests": [
            desc(manifest_type, AMD64, 100, platform={"architecture": "amd64", "os": "linux"}),
            desc(
                manifest_type,
                ARM64,
                200,
                platform={"architecture": "arm64", "os": "linux", "variant": "v8"},
            ),
            desc(
                manifest_type,
                ATTEST,
                300,
                platform={"architecture": "unknown", "os": "unknown"},
                annotations=ATTESTATION,
            ),
        ],
    }
    if media_type is not None:
        doc["mediaType"] = media_type
    return doc


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def oci_manifest() -> dict[str, Any]:
    return image(OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)


# --- what parses -------------------------------------------------------------------------------

IMAGES = [
    pytest.param(oci_manifest(), None, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, id="oci"),
    pytest.param(
        image(DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
        None,
        DOCKER_MANIFEST,
        DOCKER_CONFIG,
        DOCKER_LAYER,
        id="docker-v2",
    ),
    pytest.param(
        image(None, OCI_CONFIG, OCI_LAYER),
        None,
        OCI_MANIFEST,
        OCI_CONFIG,
        OCI_LAYER,
        id="oci-no-mediaType-inferred",
    ),
    pytest.param(
        image(None, DOCKER_CONFIG, DOCKER_LAYER),
        DOCKER_MANIFEST,
        DOCKER_MANIFEST,
        DOCKER_CONFIG,
        DOCKER_LAYER,
        id="no-mediaType-taken-from-content-type",
    ),
    pytest.param(
        oci_manifest(),
        OCI_MANIFEST,
        OCI_MANIFEST,
        OCI_CONFIG,
        OCI_LAYER,
        id="content-type-agrees",
    ),
    pytest.param(
        oci_manifest(),
        f"{OCI_MANIFEST}; charset=utf-8",
        OCI_MANIFEST,
        OCI_CONFIG,
        OCI_LAYER,
        id="content-type-with-parameters",
    ),
    pytest.param(
        oci_manifest(),
        OCI_MANIFEST.upper(),
        OCI_MANIFEST,
        OCI_CONFIG,
        OCI_LAYER,
        id="content-type-case-insensitive",
    ),
    pytest.param(
        oci_manifest(),
        "application/json",
        OCI_MANIFEST,
        OCI_CONFIG,
        OCI_LAYER,
        id="generic-application-json",
    ),
    pytest.param(
        oci_manifest(),
        "application/json; charset=utf-8",
        OCI_MANIFEST,
        OCI_CONFIG,
        OCI_LAYER,
        id="generic-json-with-charset",
    ),
    pytest.param(
        oci_manifest(),
        "application/octet-stream",
        OCI_MANIFEST,
        OCI_CONFIG,
        OCI_LAYER,
        id="generic-octet-stream",
    ),
    pytest.param(
        oci_manifest(),
        "text/plain",
        OCI_MANIFEST,
        OCI_CONFIG,
        OCI_LAYER,
        id="generic-text-plain",
    ),
    pytest.param(oci_manifest(), "", OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, id="empty-content-type"),
]


@pytest.mark.parametrize(("doc", "content_type", "media_type", "config_type", "layer_type"), IMAGES)
def test_image_manifest_parses_into_config_and_layers(
    doc: dict[str, Any],
    content_type: str | None,
    media_type: str,
    config_type: str,
    layer_type: str,
) -> None:
    m = parse_manifest(raw(doc), content_type, WHERE)
    assert isinstance(m, Manifest)
    assert m.media_type == media_type
    assert m.config == Descriptor(config_type, CONFIG, 6)
    assert m.layers == (Descriptor(layer_type, LAYER1, 9), Descriptor(layer_type, LAYER2, 9))


INDEXES = [
    pytest.param(index(OCI_INDEX, OCI_MANIFEST), None, OCI_INDEX, OCI_MANIFEST, id="oci-index"),
    pytest.param(
        index(DOCKER_LIST, DOCKER_MANIFEST),
        None,
        DOCKER_LIST,
        DOCKER_MANIFEST,
        id="docker-manifest-list",
    ),
    pytest.param(
        index(None, OCI_MANIFEST), None, OCI_INDEX, OCI_MANIFEST, id="oci-index-no-mediaType"
    ),
    pytest.param(
        index(DOCKER_LIST, DOCKER_MANIFEST),
        "application/json",
        DOCKER_LIST,
        DOCKER_MANIFEST,
        id="docker-list-generic-content-type",
    ),
    pytest.param(
        index(None, DOCKER_MANIFEST),
        DOCKER_LIST,
        DOCKER_LIST,
        DOCKER_MANIFEST,
        id="no-mediaType-taken-from-content-type",
    ),
]


@pytest.mark.parametrize(("doc", "content_type", "media_type", "entry_type"), INDEXES)
def test_index_parses_into_platform_descriptors(
    doc: dict[str, Any], content_type: str | None, media_type: str, entry_type: str
) -> None:
    ix = parse_manifest(raw(doc), content_type, WHERE)
    assert isinstance(ix, Index)
    assert ix.media_type == media_type
    assert [(d.media_type, d.digest, d.size) for d in ix.manifests] == [
        (entry_type, AMD64, 100),
        (entry_type, ARM64, 200),
        (entry_type, ATTEST, 300),
    ]
    assert [d.platform for d in ix.manifests] == [
        Platform("linux", "amd64"),
        Platform("linux", "arm64", "v8"),
        Platform("unknown", "unknown"),
    ]
    assert ix.manifests[2].annotations == ATTESTATION


def test_empty_index_parses() -> None:
    ix = parse_manifest(raw({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}))
    assert ix == Index(OCI_INDEX, ())


def test_unknown_fields_are_tolerated() -> None:
    doc = oci_manifest()
    doc["annotations"] = {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    doc["subject"] = desc(OCI_MANIFEST, AMD64, 100)
    doc["x-vendor"] = [1, 2, 3]
    doc["layers"][0]["urls"] = ["https://example.com/layer"]
    assert isinstance(parse_manifest(raw(doc)), Manifest)


def test_descriptor_round_trips_through_to_json() -> None:
    entry = desc(
        OCI_MANIFEST,
        ARM64,
        200,
        platform={"architecture": "arm64", "os": "linux", "variant": "v8"},
        annotations={"a": "b"},
    )
    ix = parse_manifest(raw({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}))
    assert isinstance(ix, Index)
    assert ix.manifests[0].to_dict() == entry


def test_manifest_exactly_at_the_size_limit_is_accepted() -> None:
    body = raw(oci_manifest())
    padded = body + b" " * (MAX_MANIFEST_SIZE - len(body))
    assert len(padded) == MAX_MANIFEST_SIZE
    assert isinstance(parse_manifest(padded), Manifest)


# --- what is refused ---------------------------------------------------------------------------


def _with(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**doc, **changes}


def _layer0(**changes: Any) -> dict[str, Any]:
    doc = oci_manifest()
    doc["layers"] = [{**doc["layers"][0], **changes}, doc["layers"][1]]
    return doc


def _without_layer0(key: str) -> dict[str, Any]:
    doc = oci_manifest()
    del doc["layers"][0][key]
    return doc


def _entry1(**changes: Any) -> dict[str, Any]:
    doc = index(OCI_INDEX, OCI_MANIFEST)
    doc["manifests"][1] = {**doc["manifests"][1], **changes}
    return doc


SCHEMA1 = {
    "schemaVersion": 1,
    "name": "library/app",
    "tag": "latest",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": str(LAYER1)}],
    "history": [{"v1Compatibility": "{}"}],
}
TRAVERSAL = "sha256:../../etc/passwd"

# raw body, Content-Type, words the message must contain
REFUSED = [
    # --- not a manifest at all
    pytest.param(b"{not json", None, ["is not valid JSON"], id="invalid-json"),
    pytest.param(b"", None, ["is not valid JSON"], id="empty-body"),
    pytest.param(b"\xff\xfe\xfa", None, ["is not valid JSON"], id="not-utf8"),
    pytest.param(b"[]", None, ["is not a JSON object"], id="array"),
    pytest.param(b'"manifest"', None, ["is not a JSON object"], id="string"),
    pytest.param(b"null", None, ["is not a JSON object"], id="null"),
    pytest.param(b"2", None, ["is not a JSON object"], id="number"),
    pytest.param(
        raw(oci_manifest()) + b" " * MAX_MANIFEST_SIZE,
        None,
        [f"over the {MAX_MANIFEST_SIZE} byte limit"],
        id="over-4MiB",
    ),
    pytest.param(
        b" " * (MAX_MANIFEST_SIZE + 1), None, ["byte limit"], id="over-4MiB-checked-before-json"
    ),
    # --- schema 1 and versions
    pytest.param(raw(SCHEMA1), None, ["Docker schema 1", "not supported"], id="schema1-body"),
    pytest.param(
        raw(SCHEMA1),
        DOCKER_SCHEMA1_SIGNED,
        ["Docker schema 1", "not supported"],
        id="schema1-signed-content-type",
    ),
    pytest.param(
        raw(SCHEMA1),
        DOCKER_SCHEMA1,
        ["Docker schema 1", "not supported"],
        id="schema1-content-type",
    ),
    pytest.param(
        raw({**SCHEMA1, "mediaType": DOCKER_SCHEMA1}),
        None,
        ["Docker schema 1"],
        id="schema1-declared",
    ),
    pytest.param(
        raw(_with(oci_manifest(), schemaVersion=3)),
        None,
        ["schemaVersion 3, want 2"],
        id="schemaVersion-3",
    ),
    pytest.param(
        raw({k: v for k, v in oci_manifest().items() if k != "schemaVersion"}),
        None,
        ["schemaVersion None, want 2"],
        id="schemaVersion-missing",
    ),
    # --- media types
    pytest.param(
        raw(_with(oci_manifest(), mediaType="application/vnd.example.thing+json")),
        None,
        ["unsupported media type 'application/vnd.example.thing+json'"],
        id="unknown-media-type",
    ),
    pytest.param(
        raw(image(None, OCI_CONFIG, OCI_LAYER)),
        "application/vnd.example.thing+json",
        ["unsupported media type 'application/vnd.example.thing+json'"],
        id="unknown-content-type",
    ),
    pytest.param(
        raw(_with(oci_manifest(), mediaType=2)),
        None,
        ["non-string mediaType"],
        id="mediaType-not-a-string",
    ),
    pytest.param(
        raw(oci_manifest()),
        DOCKER_MANIFEST,
        [f"mediaType {OCI_MANIFEST} disagrees with Content-Type {DOCKER_MANIFEST}"],
        id="mediaType-disagrees-with-content-type",
    ),
    pytest.param(
        raw(index(OCI_INDEX, OCI_MANIFEST)),
        OCI_MANIFEST,
        [f"mediaType {OCI_INDEX} disagrees with Content-Type {OCI_MANIFEST}"],
        id="index-served-as-manifest",
    ),
    # --- shape
    pytest.param(
        raw({k: v for k, v in oci_manifest().items() if k != "layers"}),
        None,
        ["has no layers list"],
        id="no-layers",
    ),
    pytest.param(
        raw(_with(oci_manifest(), layers={"0": {}})),
        None,
        ["has no layers list"],
        id="layers-not-a-list",
    ),
    pytest.param(
        raw({k: v for k, v in oci_manifest().items() if k != "config"}),
        None,
        ["config: descriptor is not an object"],
        id="no-config",
    ),
    pytest.param(
        raw(_with(index(OCI_INDEX, OCI_MANIFEST), manifests=None)),
        None,
        ["index", "has no manifests list"],
        id="index-without-manifests",
    ),
    # --- descriptors: what decides where bytes go is strict
    pytest.param(
        raw(_layer0(digest=TRAVERSAL)),
        None,
        ["layer 0", "invalid digest", TRAVERSAL],
        id="layer-digest-traversal",
    ),
    pytest.param(
        raw(_layer0(digest="sha256:" + "A" * 64)),
        None,
        ["layer 0", "lowercase hex"],
        id="layer-digest-uppercase",
    ),
    pytest.param(
        raw(_layer0(digest="md5:" + "0" * 32)),
        None,
        ["layer 0", "unsupported algorithm"],
        id="layer-digest-md5",
    ),
    pytest.param(
        raw(_without_layer0("digest")),
        None,
        ["layer 0", "invalid digest", "not a string"],
        id="layer-digest-missing",
    ),
    pytest.param(
        raw(_layer0(size=-1)), None, ["layer 0", "invalid size -1"], id="layer-size-negative"
    ),
    pytest.param(
        raw(_layer0(size=True)), None, ["layer 0", "invalid size True"], id="layer-size-bool"
    ),
    pytest.param(
        raw(_layer0(size="9")), None, ["layer 0", "invalid size '9'"], id="layer-size-string"
    ),
    pytest.param(
        raw(_layer0(size=9.0)), None, ["layer 0", "invalid size 9.0"], id="layer-size-float"
    ),
    pytest.param(
        raw(_without_layer0("size")),
        None,
        ["layer 0", "invalid size None"],
        id="layer-size-missing",
    ),
    pytest.param(
        raw(_without_layer0("mediaType")),
        None,
        ["layer 0", "descriptor has no mediaType"],
        id="layer-mediaType-missing",
    ),
    pytest.param(
        raw(_with(oci_manifest(), layers=["sha256:abc"])),
        None,
        ["layer 0", "descriptor is not an object"],
        id="layer-not-an-object",
    ),
    pytest.param(
        raw(_with(oci_manifest(), config=desc(OCI_CONFIG, CONFIG, -6))),
        None,
        ["config", "invalid size -6"],
        id="config-size-negative",
    ),
    pytest.param(
        raw(_with(oci_manifest(), config={**desc(OCI_CONFIG, CONFIG, 6), "digest": TRAVERSAL})),
        None,
        ["config", TRAVERSAL],
        id="config-digest-traversal",
    ),
    pytest.param(
        raw(_entry1(digest=TRAVERSAL)),
        None,
        ["index", "entry 1", TRAVERSAL],
        id="index-entry-digest-traversal",
    ),
    pytest.param(
        raw(_entry1(size=False)),
        None,
        ["index", "entry 1", "invalid size False"],
        id="index-entry-size-bool",
    ),
]


@pytest.mark.parametrize(("body", "content_type", "words"), REFUSED)
def test_refused_manifest_says_what_and_where(
    body: bytes, content_type: str | None, words: list[str]
) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(body, content_type, WHERE)
    message = str(info.value)
    assert f"from {WHERE}" in message
    for w in words:
        assert w in message
    assert isinstance(info.value, PullError)


def test_refusal_without_source_names_no_source() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(b"[]")
    assert str(info.value) == "manifest is not a JSON object"


# --- parse_platform ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
        ("windows/amd64", Platform("windows", "amd64")),
        (" linux/s390x\n", Platform("linux", "s390x")),
    ],
    ids=str,
)
def test_parse_platform(text: str, expected: Platform) -> None:
    p = parse_platform(text)
    assert p == expected
    assert str(p) == text.strip()


@pytest.mark.parametrize(
    "text",
    ["", "linux", "linux/", "/amd64", "linux//v7", "linux/amd64/", "linux/arm/v7/extra", "/"],
    ids=repr,
)
def test_parse_platform_refuses_what_is_not_os_arch_variant(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_platform(text)
    assert str(info.value) == (
        f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/amd64"
    )


# --- Platform.matches --------------------------------------------------------------------------

MATCHES = [
    ("linux/arm64", "linux/arm64/v8", True),
    ("linux/aarch64", "linux/arm64", True),
    ("linux/aarch64", "linux/arm64/v8", True),
    ("linux/x86_64", "linux/amd64", True),
    ("linux/x86-64", "linux/amd64", True),
    ("linux/amd64/v1", "linux/amd64", True),
    ("linux/arm", "linux/arm/v7", True),
    ("linux/armhf", "linux/arm/v7", True),
    ("Linux/amd64", "linux/amd64", True),
    ("linux/amd64", "linux/amd64", True),
    ("linux/amd64", "linux/arm64", False),
    ("linux/amd64", "windows/amd64", False),
    ("linux/arm/v6", "linux/arm/v7", False),
    ("linux/arm", "linux/arm/v6", False),
    ("linux/arm64/v9", "linux/arm64", False),
    ("linux/amd64/v3", "linux/amd64", False),
    ("linux/arm64", "linux/arm", False),
]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [pytest.param(a, b, s, id=f"{a}{'==' if s else '!='}{b}") for a, b, s in MATCHES],
)
def test_platform_matches_after_normalization(a: str, b: str, same: bool) -> None:
    pa, pb = parse_platform(a), parse_platform(b)
    assert pa.matches(pb) is same
    assert pb.matches(pa) is same  # symmetric


# --- select_platform ---------------------------------------------------------------------------


def _index(doc: dict[str, Any]) -> Index:
    ix = parse_manifest(raw(doc))
    assert isinstance(ix, Index)
    return ix


@pytest.mark.parametrize(
    ("wanted", "digest"),
    [
        pytest.param("linux/arm64/v8", ARM64, id="arm64/v8"),
        pytest.param("linux/arm64", ARM64, id="arm64-implies-v8"),
        pytest.param("linux/aarch64", ARM64, id="aarch64"),
        pytest.param("linux/amd64", AMD64, id="amd64"),
        pytest.param("linux/x86_64", AMD64, id="x86_64"),
    ],
)
@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(index(OCI_INDEX, OCI_MANIFEST), id="oci"),
        pytest.param(index(DOCKER_LIST, DOCKER_MANIFEST), id="docker"),
    ],
)
def test_select_platform_picks_the_matching_manifest(
    doc: dict[str, Any], wanted: str, digest: Digest
) -> None:
    assert select_platform(_index(doc), parse_platform(wanted)).digest == digest


def test_select_platform_skips_attestations_and_lists_what_the_index_has() -> None:
    ix = _index(index(OCI_INDEX, OCI_MANIFEST))
    with pytest.raises(PlatformNotFound) as info:
        select_platform(ix, parse_platform("linux/s390x"), "app:latest")
    e = info.value
    assert str(e) == (
        "no manifest for platform linux/s390x in app:latest"
        " (available: linux/amd64, linux/arm64/v8)"
    )
    assert "unknown" not in str(e)
    assert e.wanted == "linux/s390x"
    assert e.available == ["linux/amd64", "linux/arm64/v8"]
    assert isinstance(e, ManifestError)


def test_select_platform_lists_none_when_the_index_holds_only_attestations() -> None:
    only_attestation = index(OCI_INDEX, OCI_MANIFEST)
    only_attestation["manifests"] = only_attestation["manifests"][2:]
    with pytest.raises(PlatformNotFound) as info:
        select_platform(_index(only_attestation), Platform("linux", "amd64"))
    assert "(available: none)" in str(info.value)


def test_select_platform_skips_entries_without_platform_or_not_image_manifests() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            desc(OCI_MANIFEST, ATTEST, 1),  # no platform
            desc(OCI_INDEX, LAYER1, 2, platform={"architecture": "amd64", "os": "linux"}),
            desc(OCI_MANIFEST, AMD64, 3, platform={"architecture": "amd64", "os": "linux"}),
            desc(OCI_MANIFEST, LAYER2, 4, platform={"architecture": "amd64", "os": "linux"}),
        ],
    }
    chosen = select_platform(_index(doc), Platform("linux", "amd64"))
    assert chosen.digest == AMD64  # the first *image manifest* for the platform


def test_select_platform_on_empty_index_says_none_available() -> None:
    with pytest.raises(PlatformNotFound) as info:
        select_platform(Index(OCI_INDEX, ()), Platform("linux", "amd64"))
    assert str(info.value) == "no manifest for platform linux/amd64 (available: none)"


def _platforms_index(platforms: list[dict[str, str]]) -> Index:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [desc(OCI_MANIFEST, AMD64, 100, platform=p) for p in platforms],
    }
    return _index(doc)


def test_platform_not_found_in_a_huge_index_lists_ten_and_counts_the_rest() -> None:
    ix = _platforms_index([{"os": "linux", "architecture": f"arch{i}"} for i in range(19_000)])
    with pytest.raises(PlatformNotFound) as info:
        select_platform(ix, Platform("linux", "s390x"), "app:latest")
    message = str(info.value)
    shown_names = ", ".join(f"linux/arch{i}" for i in range(10))
    assert message == (
        "no manifest for platform linux/s390x in app:latest"
        f" (available: {shown_names} and 18990 more)"
    )
    assert len(info.value.available) == 19_000  # the data keeps them all


def test_platform_not_found_lists_each_platform_once() -> None:
    ix = _platforms_index([{"os": "linux", "architecture": "amd64"}] * 50)
    with pytest.raises(PlatformNotFound) as info:
        select_platform(ix, Platform("linux", "s390x"))
    assert str(info.value).endswith("(available: linux/amd64)")


def test_platform_not_found_escapes_and_cuts_hostile_platform_names() -> None:
    hostile = "\x1b]0;owned\x07\x1b[2J"
    ix = _platforms_index(
        [
            {"os": "linux", "architecture": hostile, "variant": "\u202e"},
            {"os": "linux", "architecture": "a" * 10_000},
        ]
    )
    with pytest.raises(PlatformNotFound) as info:
        select_platform(ix, Platform("linux", "s390x"))
    message = str(info.value)
    assert "linux/\\x1b]0;owned\\x07\\x1b[2J/\\u202e" in message
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in message)
    assert len(message) < 300


# --- host_platform -----------------------------------------------------------------------------

HOST = [
    pytest.param("x86_64", "linux/amd64", id="x86_64"),
    pytest.param("AMD64", "linux/amd64", id="windows-AMD64"),
    pytest.param("aarch64", "linux/arm64", id="aarch64"),
    pytest.param("arm64", "linux/arm64", id="macos-arm64"),
    pytest.param("ppc64le", "linux/ppc64le", id="ppc64le"),
    pytest.param("s390x", "linux/s390x", id="s390x"),
    pytest.param("riscv64", "linux/riscv64", id="riscv64"),
    pytest.param(
        "armv7l",
        "linux/arm/v7",
        id="armv7l",
    ),
    pytest.param(
        "armv6l",
        "linux/arm/v6",
        id="armv6l",
    ),
    pytest.param(
        "i686",
        "linux/386",
        id="i686",
    ),
]


@pytest.mark.parametrize(("machine", "expected"), HOST)
def test_host_platform_is_linux_and_the_normalized_machine_arch(
    monkeypatch: pytest.MonkeyPatch, machine: str, expected: str
) -> None:
    real = os.uname()
    fake = os.uname_result((real.sysname, real.nodename, real.release, real.version, machine))
    monkeypatch.setattr(os, "uname", lambda: fake)
    assert str(host_platform()) == expected


def test_host_platform_of_this_machine_is_linux_and_normalized() -> None:
    p = host_platform()
    assert p.os == "linux"
    assert p == p.normalized()
    assert p.architecture not in ("x86_64", "aarch64", "")
    import platform  # what it used to read: os.uname() gives the same machine

    assert p == Platform("linux", platform.machine().lower()).normalized()
