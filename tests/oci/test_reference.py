"""Reference parsing, held to the cases of github.com/distribution/reference.

The tables port the facts of distribution's reference_test.go, normalize_test.go and regexp_test.go,
re-expressed through docker's normalization (ParseNormalizedNamed plus the default tag), because
that is what ``parse`` implements: ``test_com`` is ``docker.io/library/test_com:latest`` here.
Where pypull deliberately differs, the row says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from puller.errors import InvalidReference, PullError
from puller.oci.digest import parse_digest
from puller.oci.reference import Reference, parse

F256 = "sha256:" + "f" * 64
F512 = "sha512:" + "f" * 128
DBCC = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
E669 = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"
BE17 = "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912"
B86E = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
N123 = "sha256:1234567890098765432112345667890098765432112345667890098765432112"
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
SONG = "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev"  # 64, not hex
HUB = "docker.io"


def _id(text: str) -> str:
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} chars)"


def _params(rows: Sequence[tuple[object, ...]]) -> list[object]:
    return [pytest.param(*row, id=_id(str(row[0]))) for row in rows]


# input -> domain, path, tag, digest
VALID: list[tuple[str, str, str, str | None, str | None]] = [
    # --- the examples this module is built for
    ("redis", HUB, "library/redis", "latest", None),
    ("user/app", HUB, "user/app", "latest", None),
    ("localhost:5000/x", "localhost:5000", "x", "latest", None),
    ("ghcr.io/o/r", "ghcr.io", "o/r", "latest", None),
    ("registry.example.com/redis", "registry.example.com", "redis", "latest", None),
    ("localhost/redis", "localhost", "redis", "latest", None),
    ("index.docker.io/redis", HUB, "library/redis", "latest", None),
    # --- reference_test.go TestReferenceParse
    ("test_com", HUB, "library/test_com", "latest", None),
    ("test.com:tag", HUB, "library/test.com", "tag", None),
    ("test.com:5000", HUB, "library/test.com", "5000", None),  # one component: 5000 is a tag
    ("test.com/repo:tag", "test.com", "repo", "tag", None),
    ("test:5000/repo", "test:5000", "repo", "latest", None),
    ("test:5000/repo:tag", "test:5000", "repo", "tag", None),
    (f"test:5000/repo@{F256}", "test:5000", "repo", None, F256),
    (f"test:5000/repo:tag@{F256}", "test:5000", "repo", "tag", F256),
    ("lowercase:Uppercase", HUB, "library/lowercase", "Uppercase", None),
    ("a/" * 127 + "a:tag-puts-this-over-max", HUB, "a/" * 127 + "a", "tag-puts-this-over-max",
     None),
    # only the path counts towards 255: the host does not (distribution/reference PR #9)
    ("example.com/" + "a" * 255 + ":tag", "example.com", "a" * 255, "tag", None),
    ("a" * 247, HUB, "library/" + "a" * 247, "latest", None),  # "library/" counts: 255 in all
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux", "latest", None),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux",
     "some-long-tag", None),
    ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io", "test.example.com/my-app",
     "test.example.com", None),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", None),
    (f"xn--7o8h.com/myimage:xn--7o8h.com@{F512}", "xn--7o8h.com", "myimage", "xn--7o8h.com", F512),
    ("foo_bar.com:8080", HUB, "library/foo_bar.com", "8080", None),
    ("foo/foo_bar.com:8080", HUB, "foo/foo_bar.com", "8080", None),
    ("192.168.1.1", HUB, "library/192.168.1.1", "latest", None),
    ("192.168.1.1:tag", HUB, "library/192.168.1.1", "tag", None),
    ("192.168.1.1:5000", HUB, "library/192.168.1.1", "5000", None),
    ("192.168.1.1/repo", "192.168.1.1", "repo", "latest", None),
    ("192.168.1.1:5000/repo", "192.168.1.1:5000", "repo", "latest", None),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", None),
    ("[2001:db8::1]/repo", "[2001:db8::1]", "repo", "latest", None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]", "repo", "tag", None),
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "repo", "latest", None),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000", "repo", "tag", None),
    (f"[2001:db8::1]:5000/repo@{F256}", "[2001:db8::1]:5000", "repo", None, F256),
    (f"[2001:db8::1]:5000/repo:tag@{F256}", "[2001:db8::1]:5000", "repo", "tag", F256),
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo", "latest", None),
    ("[::1]:5000/repo", "[::1]:5000", "repo", "latest", None),
    # --- reference_test.go TestSerialization
    ("example.com:8000/named", "example.com:8000", "named", "latest", None),
    ("example.com:8000/named:tagged", "example.com:8000", "named", "tagged", None),
    (f"other.com/named@{N123}", "other.com", "named", None, N123),
    # --- reference_test.go TestDomainAndPath, normalize_test.go TestNormalizedSplitHostname
    ("test.com/foo", "test.com", "foo", "latest", None),
    ("test_com/foo", HUB, "test_com/foo", "latest", None),
    ("docker/migrator", HUB, "docker/migrator", "latest", None),
    ("test:8080/foo", "test:8080", "foo", "latest", None),
    ("test.com:8080/foo", "test.com:8080", "foo", "latest", None),
    ("test-com:8080/foo", "test-com:8080", "foo", "latest", None),
    ("foo", HUB, "library/foo", "latest", None),
    ("xn--n3h.com/foo", "xn--n3h.com", "foo", "latest", None),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", "latest", None),
    ("docker.io/foo", HUB, "library/foo", "latest", None),
    ("docker.io/library/foo", HUB, "library/foo", "latest", None),
    ("docker.io/library/foo/bar", HUB, "library/foo/bar", "latest", None),
    # --- normalize_test.go TestParseAnyReference (the named cases)
    ("redis:latest", HUB, "library/redis", "latest", None),
    ("docker.io/library/redis:latest", HUB, "library/redis", "latest", None),
    (f"redis@{DBCC}", HUB, "library/redis", None, DBCC),
    (f"docker.io/library/redis@{DBCC}", HUB, "library/redis", None, DBCC),
    ("dmcgowan/myapp", HUB, "dmcgowan/myapp", "latest", None),
    ("dmcgowan/myapp:latest", HUB, "dmcgowan/myapp", "latest", None),
    ("docker.io/mcgowan/myapp:latest", HUB, "mcgowan/myapp", "latest", None),
    (f"dmcgowan/myapp@{DBCC}", HUB, "dmcgowan/myapp", None, DBCC),
    (f"docker.io/dmcgowan/myapp@{DBCC}", HUB, "dmcgowan/myapp", None, DBCC),
    (DBCC[7:-1], HUB, "library/" + DBCC[7:-1], "latest", None),  # 63 hex digits is a name
    ("dbcc1", HUB, "library/dbcc1", "latest", None),
    # a bare digest is not a reference: as in docker it reads as repository "sha256" and a tag
    (DBCC, HUB, "library/sha256", DBCC[7:], None),
    # --- normalize_test.go TestParseDockerRef (pypull keeps the tag next to the digest)
    ("busybox", HUB, "library/busybox", "latest", None),
    (f"busybox@{E669}", HUB, "library/busybox", None, E669),
    ("library/busybox", HUB, "library/busybox", "latest", None),
    ("library/busybox:latest", HUB, "library/busybox", "latest", None),
    ("docker.io/busybox:latest", HUB, "library/busybox", "latest", None),
    ("gcr.io/library/busybox", "gcr.io", "library/busybox", "latest", None),
    (f"gcr.io/library/busybox:latest@{E669}", "gcr.io", "library/busybox", "latest", E669),
    # --- normalize_test.go TestParseReferenceWithTagAndDigest
    (f"busybox:latest@{B86E}", HUB, "library/busybox", "latest", B86E),
    # --- normalize_test.go TestValidateReferenceName
    ("docker/docker", HUB, "docker/docker", "latest", None),
    ("library/debian", HUB, "library/debian", "latest", None),
    ("docker.io/docker/docker", HUB, "docker/docker", "latest", None),
    ("index.docker.io/docker/docker", HUB, "docker/docker", "latest", None),
    ("index.docker.io/library/debian", HUB, "library/debian", "latest", None),
    ("127.0.0.1:5000/docker/docker", "127.0.0.1:5000", "docker/docker", "latest", None),
    ("127.0.0.1:5000/library/debian", "127.0.0.1:5000", "library/debian", "latest", None),
    ("127.0.0.1:5000/debian", "127.0.0.1:5000", "debian", "latest", None),
    ("192.168.0.1:80", HUB, "library/192.168.0.1", "80", None),
    ("192.168.0.1:8/debian", "192.168.0.1:8", "debian", "latest", None),
    ("192.168.0.2:25000/debian", "192.168.0.2:25000", "debian", "latest", None),
    (SONG, HUB, f"library/{SONG}", "latest", None),
    ("[fc00::1]:5000/docker", "[fc00::1]:5000", "docker", "latest", None),
    ("[fc00::1]:5000/docker/docker", "[fc00::1]:5000", "docker/docker", "latest", None),
    ("[fc00:1:2:3:4:5:6:7]:5000/library/debian", "[fc00:1:2:3:4:5:6:7]:5000", "library/debian",
     "latest", None),
    (f"docker.io/{HEX64}", HUB, f"library/{HEX64}", "latest", None),  # a host makes it a name
    # uppercase is allowed in a host, so an uppercase first component is taken as one
    ("Docker/docker", "Docker", "docker", "latest", None),
    ("DOCKER/docker", "DOCKER", "docker", "latest", None),
    # --- normalize_test.go TestValidateRemoteName
    ("docker-rules/docker", HUB, "docker-rules/docker", "latest", None),
    ("docker---rules/docker", HUB, "docker---rules/docker", "latest", None),
    ("doc/docker", HUB, "doc/docker", "latest", None),
    ("d/docker", HUB, "d/docker", "latest", None),
    ("jess/t", HUB, "jess/t", "latest", None),
    ("dock__er/docker", HUB, "dock__er/docker", "latest", None),
    # --- regexp_test.go TestDomainRegexp (as hosts in front of a path)
    ("test.com:10304/repo", "test.com:10304", "repo", "latest", None),
    ("localhost:8080/repo", "localhost:8080", "repo", "latest", None),
    ("a.b/repo", "a.b", "repo", "latest", None),
    ("ab.cd.com/repo", "ab.cd.com", "repo", "latest", None),
    ("a-b.com/repo", "a-b.com", "repo", "latest", None),
    ("ab.c-om/repo", "ab.c-om", "repo", "latest", None),
    ("0101.com/repo", "0101.com", "repo", "latest", None),
    ("001a.com/repo", "001a.com", "repo", "latest", None),
    ("b.gbc.io:443/repo", "b.gbc.io:443", "repo", "latest", None),
    ("Asdf.com/repo", "Asdf.com", "repo", "latest", None),
    # the grammar does not range-check ports or IPv6 addresses; a connection attempt will
    ("192.168.1.1:750050/repo", "192.168.1.1:750050", "repo", "latest", None),
    ("[fd00:1:2::3]:75050/repo", "[fd00:1:2::3]:75050", "repo", "latest", None),
    ("[fd00123123123]:75050/repo", "[fd00123123123]:75050", "repo", "latest", None),
    ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050/repo",
     "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050", "repo", "latest", None),
    # --- regexp_test.go TestFullNameRegexp
    ("docker/stevvooe/app", HUB, "docker/stevvooe/app", "latest", None),
    ("aa/aa/bb/bb/bb", HUB, "aa/aa/bb/bb/bb", "latest", None),
    ("a/a/a/a", HUB, "a/a/a/a", "latest", None),
    ("aa-a/a", HUB, "aa-a/a", "latest", None),
    ("foo.com/bar/baz", "foo.com", "bar/baz", "latest", None),
    ("localhost:8080/bar", "localhost:8080", "bar", "latest", None),
    ("foo_bar", HUB, "library/foo_bar", "latest", None),
    ("foo_bar.com", HUB, "library/foo_bar.com", "latest", None),
    ("foo.com/foo_bar", "foo.com", "foo_bar", "latest", None),
    ("example.com/xn--7o8h.com/myimage", "example.com", "xn--7o8h.com/myimage", "latest", None),
    ("example.com/some_separator__underscore/myimage", "example.com",
     "some_separator__underscore/myimage", "latest", None),
    ("do__cker/docker", HUB, "do__cker/docker", "latest", None),
    ("registry.io/foo/project--id.module--name.ver---sion--name", "registry.io",
     "foo/project--id.module--name.ver---sion--name", "latest", None),
    ("Asdf.com/foo/bar", "Asdf.com", "foo/bar", "latest", None),
    # --- regexp_test.go TestReferenceRegexp
    ("registry.com:8080/myapp:tag", "registry.com:8080", "myapp", "tag", None),
    (f"registry.com:8080/myapp@{BE17}", "registry.com:8080", "myapp", None, BE17),
    (f"registry.com:8080/myapp:tag2@{BE17}", "registry.com:8080", "myapp", "tag2", BE17),
    (f"localhost:8080@{BE17}", HUB, "library/localhost", "8080", BE17),  # no '/': not a host
    (f"localhost:8080/name@{BE17}", "localhost:8080", "name", None, BE17),
    (f"localhost@{BE17}", HUB, "library/localhost", None, BE17),
    # --- regexp_test.go TestIdentifierRegexp: only exactly 64 lowercase hex digits is an ID
    ("da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf", HUB,
     "library/da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf", "latest", None),
    ("da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482", HUB,
     "library/da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482", "latest",
     None),
]  # fmt: skip


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest"), _params(VALID))
def test_parses_into_normalized_domain_path_tag_and_digest(
    text: str, domain: str, path: str, tag: str | None, digest: str | None
) -> None:
    ref = parse(text)
    assert (ref.domain, ref.path, ref.tag) == (domain, path, tag)
    assert ref.digest == (parse_digest(digest) if digest else None)


@pytest.mark.parametrize("text", [pytest.param(row[0], id=_id(row[0])) for row in VALID])
def test_canonical_and_familiar_strings_parse_back_to_the_same_reference(text: str) -> None:
    ref = parse(text)
    assert parse(str(ref)) == ref
    assert parse(ref.familiar) == ref


@pytest.mark.parametrize(
    ("text", "tag", "digest"),
    [
        ("redis", "latest", None),
        ("redis:7", "7", None),
        (f"redis@{DBCC}", None, DBCC),
        (f"redis:7@{DBCC}", "7", DBCC),
    ],
)
def test_tag_defaults_to_latest_only_without_tag_or_digest(
    text: str, tag: str | None, digest: str | None
) -> None:
    ref = parse(text)
    assert ref.tag == tag
    assert (str(ref.digest) if ref.digest else None) == digest


# normalize_test.go TestParseRepositoryInfo: the familiar name, the fully qualified name and any
# other spelling all parse to the same repository.
# familiar name, fully qualified name, other spelling
SAME_REPOSITORY: list[tuple[str, str, str | None]] = [
    ("fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar"),
    ("ubuntu", "docker.io/library/ubuntu", "library/ubuntu"),
    ("nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", None),
    ("other/library", "docker.io/other/library", None),
    ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", None),
    ("127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", None),
    ("example.com/private/moonbase", "example.com/private/moonbase", None),
    ("example.com/privatebase", "example.com/privatebase", None),
    ("example.com:8000/private/moonbase", "example.com:8000/private/moonbase", None),
    ("example.com:8000/privatebasee", "example.com:8000/privatebasee", None),
    ("ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base",
     "index.docker.io/library/ubuntu-12.04-base"),
    ("foo", "docker.io/library/foo", "docker.io/foo"),
    # "library/" is dropped only in front of a single component
    ("library/foo/bar", "docker.io/library/foo/bar", None),
    ("store/foo/bar", "docker.io/store/foo/bar", None),
    ("Foo/bar", "Foo/bar", None),
    ("FOO/bar", "FOO/bar", None),
    ("ghcr.io/o/r", "ghcr.io/o/r", None),
    ("localhost:5000/x", "localhost:5000/x", "localhost:5000/x:latest"),
]  # fmt: skip


def _distinct(*spellings: str | None) -> list[str]:
    return list(dict.fromkeys(s for s in spellings if s))


@pytest.mark.parametrize(
    ("spelling", "familiar_name", "name"),
    [
        pytest.param(spelling, familiar_name, name, id=spelling)
        for familiar_name, name, other in SAME_REPOSITORY
        for spelling in _distinct(familiar_name, name, other)
    ],
)
def test_every_spelling_of_a_repository_has_one_name_and_one_familiar_name(
    spelling: str, familiar_name: str, name: str
) -> None:
    ref = parse(spelling)
    assert ref.name == name
    assert ref.familiar_name == familiar_name
    assert ref == parse(name)


@pytest.mark.parametrize(
    ("text", "canonical", "familiar"),
    [
        ("redis", "docker.io/library/redis:latest", "redis:latest"),
        ("user/app:1", "docker.io/user/app:1", "user/app:1"),
        ("localhost:5000/x:t", "localhost:5000/x:t", "localhost:5000/x:t"),
        ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
        (f"redis@{DBCC}", f"docker.io/library/redis@{DBCC}", f"redis@{DBCC}"),
        (f"d.io/p:t@{DBCC}", f"d.io/p:t@{DBCC}", f"d.io/p:t@{DBCC}"),
        (f"busybox:latest@{B86E}", f"docker.io/library/busybox:latest@{B86E}",
         f"busybox:latest@{B86E}"),
        ("docker.io/library/foo/bar:v1", "docker.io/library/foo/bar:v1", "library/foo/bar:v1"),
        ("index.docker.io/user/app", "docker.io/user/app:latest", "user/app:latest"),
    ],
)  # fmt: skip
def test_prints_fully_qualified_and_as_docker_shows_it(
    text: str, canonical: str, familiar: str
) -> None:
    ref = parse(text)
    assert str(ref) == canonical
    assert ref.familiar == familiar


@pytest.mark.parametrize(
    ("text", "identifier", "is_docker_hub"),
    [
        ("redis", "latest", True),
        ("ghcr.io/o/r:v2", "v2", False),
        (f"localhost:5000/x@{DBCC}", DBCC, False),
        (f"user/app:1@{DBCC}", DBCC, True),  # the digest, not the tag, picks the manifest
        ("index.docker.io/user/app", "latest", True),
    ],
)
def test_manifest_identifier_and_docker_hub(
    text: str, identifier: str, is_docker_hub: bool
) -> None:
    ref = parse(text)
    assert ref.identifier == identifier
    assert ref.is_docker_hub is is_docker_hub


def test_reference_is_an_immutable_value_changed_with_replace() -> None:
    ref = parse("redis")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.tag = "7"  # type: ignore[misc]
    pinned = dataclasses.replace(ref, digest=parse_digest(DBCC))
    assert str(pinned) == f"docker.io/library/redis:latest@{DBCC}"
    assert pinned.identifier == DBCC
    assert Reference("docker.io", "library/redis", "latest", None) == ref
    assert len({ref, parse("docker.io/library/redis:latest")}) == 1


# input -> what the message says is wrong
INVALID: list[tuple[str, str]] = [
    # --- reference_test.go TestReferenceParse
    ("", "empty reference"),
    (":justtag", "missing repository name"),
    (f"@{F256}", "missing repository name"),
    ("repo@sha256:" + "f" * 34, "invalid digest 'sha256:fff"),
    ("validname@invaliddigest:" + "f" * 64, "invalid digest 'invaliddigest:fff"),
    ("Uppercase:tag", "repository name must be lowercase: 'Uppercase'"),
    ("test:5000/Uppercase/lowercase:tag",
     "repository name must be lowercase: 'Uppercase/lowercase'"),
    ("a/" * 128 + "a:tag", "repository name too long (257 > 255 characters)"),
    ("domain/" + "a" * 256 + ":tag", "repository name too long (263 > 255 characters)"),
    ("aa/asdf$$^/aa", "invalid repository name component 'asdf$$^'"),
    ("[2001:db8::1]", "a registry host alone is not a reference"),
    ("[2001:db8::1]:5000", "a registry host alone is not a reference"),
    ("[2001:db8::1]:tag", "a registry host alone is not a reference"),
    ("[fe80::1%eth0]:5000/repo", "invalid registry host '[fe80::1%eth0]:5000'"),
    ("[fe80::1%@invalidzone]:5000/repo", "invalid digest 'invalidzone]:5000/repo'"),
    # --- normalize_test.go TestValidateReferenceName, TestValidateRemoteName
    ("https://github.com/docker/docker", "a reference is not a URL: remove 'https://'"),
    ("docker/Docker", "repository name must be lowercase: 'docker/Docker'"),
    ("-docker", "invalid repository name component '-docker'"),
    ("-docker/docker", "invalid repository name component '-docker'"),
    ("-docker.io/docker/docker", "invalid registry host '-docker.io'"),
    ("docker///docker", "empty path component"),
    ("docker.io/docker/Docker", "repository name must be lowercase: 'docker/Docker'"),
    ("docker.io/docker///docker", "empty path component"),
    ("[fc00::1]", "a registry host alone is not a reference"),
    ("[fc00::1]:5000", "a registry host alone is not a reference"),
    ("fc00::1:5000/debian", "invalid registry host 'fc00::1:5000'"),
    ("[fe80::1%eth0]:5000/debian", "invalid registry host '[fe80::1%eth0]:5000'"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian",
     "invalid registry host '[2001:db8:3:4::192.0.2.33]:5000'"),
    (HEX64, "cannot specify 64-byte hexadecimal strings"),
    ("docker-/docker", "invalid repository name component 'docker-'"),
    ("-docker-/docker", "invalid repository name component '-docker-'"),
    ("____/____", "invalid repository name component '____'"),
    ("_docker/_docker", "invalid repository name component '_docker'"),
    ("dock..er/docker", "invalid registry host 'dock..er'"),
    ("dock_.er/docker", "invalid registry host 'dock_.er'"),
    ("dock-.er/docker", "invalid registry host 'dock-.er'"),
    ("docker/", "empty path component"),
    ("_".join(["this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255"] * 4)
     + "/docker", "repository name too long (278 > 255 characters)"),
    # --- normalize_test.go TestInvalidReferenceComponents
    ("-foo", "invalid repository name component '-foo'"),
    # --- regexp_test.go TestDomainRegexp (as hosts in front of a path)
    ("test.com:http/repo", "invalid registry host 'test.com:http'"),
    ("-ab.com/repo", "invalid registry host '-ab.com'"),
    ("ab-.com/repo", "invalid registry host 'ab-.com'"),
    ("ab.-com/repo", "invalid registry host 'ab.-com'"),
    ("ab.com-/repo", "invalid registry host 'ab.com-'"),
    ("[fd00:1:2::3]75050/repo", "invalid registry host '[fd00:1:2::3]75050'"),
    ("[fd00:1:2::3]::75050/repo", "invalid registry host '[fd00:1:2::3]::75050'"),
    ("[fd00:1:2::3%eth0]:75050/repo", "invalid registry host '[fd00:1:2::3%eth0]:75050'"),
    ("fd00:1:2::3:75050/repo", "invalid registry host 'fd00:1:2::3:75050'"),
    # --- regexp_test.go TestFullNameRegexp
    ("a/a/a/a/", "empty path component"),
    ("a//a/a", "empty path component"),
    ("foo.com/", "missing repository name after registry host 'foo.com'"),
    ("docker.io/", "missing repository name after registry host 'docker.io'"),
    ("foo.com:http/bar", "invalid registry host 'foo.com:http'"),
    ("a^a", "invalid repository name component 'a^a'"),
    ("asdf$$^/aa", "invalid repository name component 'asdf$$^'"),
    ("a-/a/a/a", "invalid repository name component 'a-'"),
    ("foo.com/a-/a/a", "invalid repository name component 'a-'"),
    ("-foo/bar", "invalid repository name component '-foo'"),
    ("foo/bar-", "invalid repository name component 'bar-'"),
    ("foo-/bar", "invalid repository name component 'foo-'"),
    ("foo/-bar", "invalid repository name component '-bar'"),
    ("_foo/bar", "invalid repository name component '_foo'"),
    ("foo_bar.com:8080/app", "invalid registry host 'foo_bar.com:8080'"),
    ("docker_/docker_", "invalid repository name component 'docker_'"),
    ("example.com/__underscore/myimage", "invalid repository name component '__underscore'"),
    ("example.com/..dots/myimage", "invalid repository name component '..dots'"),
    ("example.com/.dots/myimage", "invalid repository name component '.dots'"),
    ("example.com/nodouble..dots/myimage", "invalid repository name component 'nodouble..dots'"),
    ("docker./docker", "invalid registry host 'docker.'"),
    (".docker/docker", "invalid registry host '.docker'"),
    ("do..cker/docker", "invalid registry host 'do..cker'"),
    ("do__cker:8080/docker", "invalid registry host 'do__cker:8080'"),
    ("Foo/FarB", "repository name must be lowercase: 'FarB'"),
    # --- regexp_test.go TestReferenceRegexp
    ("registry.com:8080/myapp@sha256:badbadbadbad", "invalid digest 'sha256:badbadbadbad'"),
    ("registry.com:8080/myapp:invalid~tag", "invalid tag 'invalid~tag'"),
    ("bad_hostname.com:8080/myapp:tag", "invalid registry host 'bad_hostname.com:8080'"),
    (f"localhost:http/name@{BE17}", "invalid registry host 'localhost:http'"),
    ("registry.com:8080/myapp@bad", "invalid digest 'bad'"),
    ("registry.com:8080/myapp@2bad", "invalid digest '2bad'"),
    # --- regexp_test.go TestIdentifierRegexp: uppercase hex is a name, and names are lowercase
    (HEX64.upper(), "repository name must be lowercase"),
    # --- the rest of the grammar
    ("redis:", "invalid tag ''"),
    ("redis:-x", "invalid tag '-x'"),
    ("redis:.x", "invalid tag '.x'"),
    ("redis:" + "a" * 129, "invalid tag 'aaa"),
    ("redis:t\u00e4g", "invalid tag 't\u00e4g'"),  # \w in the grammar is ASCII only
    ("redis:a/b", "invalid registry host 'redis:a'"),  # a '/' after a tag makes it a host
    ("redis@", "invalid digest ''"),
    ("redis@sha256:" + "F" * 64, "invalid digest 'sha256:FFF"),
    ("redis@sha384:" + "f" * 96, "invalid digest 'sha384:fff"),  # pypull verifies sha256/sha512
    (f"redis@{DBCC}@{DBCC}", "invalid digest"),
    ("a" * 248, "repository name too long (256 > 255 characters)"),  # counted with "library/"
    ("Foo_Bar/x", "repository name must be lowercase: 'Foo_Bar/x'"),
    # pypull differs here: distribution accepts this as a name with no host at all
    ("foo_bar.com/app", "invalid registry host 'foo_bar.com'"),
    (" redis", "invalid repository name component ' redis'"),
    ("redis\n", "invalid repository name component 'redis\\n'"),  # no '$'-before-newline slip
    ("redis:latest\n", "invalid tag 'latest\\n'"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "reason"), _params(INVALID))
def test_rejects_invalid_reference_saying_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse(text)
    assert reason in caught.value.reason


def test_error_message_quotes_the_input_and_is_a_value_error() -> None:
    with pytest.raises(InvalidReference) as caught:
        parse("docker.io/Library/Redis:7")
    error = caught.value
    assert isinstance(error, ValueError)
    assert isinstance(error, PullError)
    assert error.text == "docker.io/Library/Redis:7"
    assert str(error) == (
        "invalid reference 'docker.io/Library/Redis:7': "
        "repository name must be lowercase: 'Library/Redis'"
    )


def test_rejects_a_non_string() -> None:
    with pytest.raises(InvalidReference, match="not a string"):
        parse(None)  # type: ignore[arg-type]
