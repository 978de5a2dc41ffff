"""20 Newsgroups: find or download an archive and read its posts (``trainer.split`` splits them).

Three public versions (http://qwone.com/~jason/20Newsgroups/): ``19997`` is the original set with all
headers and cross-posts (the Keras blog's ``20_newsgroup`` folder), ``bydate`` is sorted by date into
train/test with duplicates and group-identifying headers removed (what scikit-learn loads), ``18828`` has
duplicates removed and only ``From:``/``Subject:`` headers.

A source is an archive (``.tar.gz``, read by streaming it once) or an extracted folder. Documents come in
the blog's order: subset, then sorted group names, then file names sorted as strings, digit names only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pathlib
import tarfile
import zlib
from typing import Iterator

import filelock

from trainer import config as config_module
from trainer import paths

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Archive:
    """One public 20 Newsgroups archive and the top-level folders it unpacks to."""

    version: str
    filename: str
    url: str
    sha256: str
    size_hint: str
    # (subset, top-level folder) pairs in load order.
    folders: tuple[tuple[str, str], ...]

    @property
    def top_folders(self) -> tuple[str, ...]:
        return tuple(folder for _, folder in self.folders)


# SHA-256 and sizes of the public files as published in huggingface/datasets
# datasets/newsgroup/dataset_infos.json ("download_checksums" of the qwone.com URLs).
ARCHIVES = {archive.version: archive for archive in (
    Archive("19997", "20news-19997.tar.gz", "http://qwone.com/~jason/20Newsgroups/20news-19997.tar.gz",
            "ab7bbf82b7831f7dbb1a09d9312f66fa78565c8de25526999b0d66f69d37e414", "17,332,201 bytes",
            (("all", "20_newsgroups"),)),
    # scikit-learn's fetcher pins this figshare copy with the same SHA-256 as the qwone.com file.
    Archive("bydate", "20news-bydate.tar.gz", "https://ndownloader.figshare.com/files/5975967",
            "8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610", "14,464,277 bytes",
            (("train", "20news-bydate-train"), ("test", "20news-bydate-test"))),
    Archive("18828", "20news-18828.tar.gz", "http://qwone.com/~jason/20Newsgroups/20news-18828.tar.gz",
            "380962ab5174e64eb8fee393d539d0793e03eb2b59a69df2318398935f4a48e2", "14,666,916 bytes",
            (("all", "20news-18828"),)),
)}
assert set(ARCHIVES) == set(config_module.choices("dataset")), "every dataset version needs an ARCHIVES entry"

_ALL_TOP_FOLDERS = {folder: archive.version for archive in ARCHIVES.values() for folder in archive.top_folders}

# The 20 groups every public version holds (http://qwone.com/~jason/20Newsgroups/, "Organization").
NEWSGROUPS = (
    "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware", "comp.sys.mac.hardware",
    "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles", "rec.sport.baseball", "rec.sport.hockey",
    "sci.crypt", "sci.electronics", "sci.med", "sci.space", "soc.religion.christian", "talk.politics.guns",
    "talk.politics.mideast", "talk.politics.misc", "talk.religion.misc",
)
# Escape for the test suite's tiny corpora, which hold 4 of the 20 groups: "1" accepts a source holding only
# some groups (their names must still be known). Never set it for a study: a missing group changes the task.
ALLOW_GROUP_SUBSET_ENV = "GLOVESWEEP_ALLOW_GROUP_SUBSET"
# A post is binary when it holds a NUL byte or more than this fraction of control bytes; the real archives'
# worst post (sci.crypt/16017, an encrypted block) holds 7.4 %.
MAX_CONTROL_FRACTION = 0.3
# Control bytes other than tab, newline, carriage return, vertical tab and form feed.
_CONTROL_BYTES = bytes(byte for byte in (*range(32), 127) if byte not in b"\t\n\r\x0b\x0c")


@dataclasses.dataclass(frozen=True)
class Document:
    """One post: ``doc_id`` is ``"<group>/<filename>"``, ``subset`` is train/test (bydate) or all."""

    doc_id: str
    subset: str
    group: str
    text: str


# --------------------------------------------------------------------------------------------- sources


def resolve_dataset(
    version: str,
    *,
    data_path: str | os.PathLike = "",
    data_home: str | os.PathLike | None = None,
    download_if_missing: bool = True,
) -> pathlib.Path:
    """Find the archive or extracted folder for one dataset version, downloading it if allowed.

    Looks in order at ``data_path`` (an archive, the folder holding the top-level folder(s), or a
    top-level folder itself), then the data home (``<data home>/<archive name>``, then the top-level
    folder(s) directly inside the data home), then downloads the archive into the data home.

    Parameters
    ----------
    version : str
        One of ``trainer.config.DATASETS``.
    data_path : str or path-like
        Explicit archive or folder; when given, nothing else is tried.
    data_home : str or path-like, optional
        Overrides ``$GLOVESWEEP_DATA`` (see ``trainer.paths.data_home``).
    download_if_missing : bool
        Download the public archive (checksummed) when nothing is found locally.

    Returns
    -------
    pathlib.Path
        An archive file or a folder that ``load_documents`` reads.

    Raises
    ------
    ValueError
        For an unknown ``version``.
    OSError
        When ``data_path`` is missing or is not this version's layout, or when nothing is found and
        downloads are off or fail.
    """
    archive = _archive(version)
    if data_path:
        explicit = pathlib.Path(data_path).expanduser()
        if not explicit.exists():
            raise OSError(f"data_path={str(data_path)!r} does not exist; give the path of {archive.filename} "
                          f"or of its extracted folder, or leave data_path empty to use the data home")
        if explicit.is_dir():
            _subset_folders(explicit, archive)  # Raises OSError naming the expected layout.
        elif not tarfile.is_tarfile(explicit):
            raise OSError(f"data_path={str(data_path)!r} is neither a folder nor a tar archive; "
                          f"expected {archive.filename} or its extracted folder")
        return explicit

    home = paths.data_home(data_home)
    local_archive = home / archive.filename
    if local_archive.is_file():
        return local_archive
    if all((home / folder).is_dir() for folder in archive.top_folders):
        return home
    if not download_if_missing:
        raise OSError(
            f"20 Newsgroups {version!r} not found: neither {archive.filename} nor the folder(s) "
            f"{', '.join(archive.top_folders)} are in the data home {home}, and downloads are off. Download "
            f"{archive.url} (sha256 {archive.sha256}) and place it at {local_archive}, or set "
            f"{paths.DATA_ENV} to the folder holding it, or pass data_path=<archive or extracted folder>."
        )
    # Several trials on one node may start at once: one downloads, the others wait and reuse the file.
    home.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(local_archive) + ".lock", timeout=1800):
        if not local_archive.is_file():
            paths.download(archive.url, local_archive, sha256=archive.sha256, size_hint=archive.size_hint)
    return local_archive


def load_documents(source: str | os.PathLike, version: str, *,
                   require_all_groups: bool | None = None) -> list[Document]:
    """Read every post of one version from an archive or an extracted folder.

    Texts are decoded Latin-1 from the raw bytes, as scikit-learn's ``load_files`` does. The blog's
    text-mode ``open(fpath, encoding='latin-1')`` also turned ``\\r\\n`` into ``\\n``; that touches one post
    in each real archive, and is not copied. Only digit file names count (Keras blog: ``if fname.isdigit():``).

    Returns
    -------
    list of Document
        Ordered by subset (train before test), then sorted group name, then file name sorted as a string.

    ``require_all_groups`` (default: unless ``$GLOVESWEEP_ALLOW_GROUP_SUBSET`` is ``1``, the tests' escape)
    refuses a source that lacks some of the 20 groups (``check_entries``).

    Raises
    ------
    OSError
        When the source holds no posts in this version's layout, is truncated or corrupt, lacks groups,
        holds a group of another name, or holds a binary post.
    """
    archive = _archive(version)
    source = pathlib.Path(source)
    if source.is_dir():
        entries = list(_read_folder(source, archive))
    else:
        entries = list(_read_archive(source, archive))
    if not entries:
        raise OSError(f"{source} holds no posts laid out as {_layout(archive)}; is it the {version!r} version?")
    check_entries(entries, source, require_all_groups=require_all_groups)
    subset_order = {subset: index for index, (subset, _) in enumerate(archive.folders)}
    # Keras blog (2016): sorted(os.listdir(TEXT_DATA_DIR)), then sorted(os.listdir(path)) per group.
    entries.sort(key=lambda entry: (subset_order[entry[0]], entry[1], entry[2]))
    return [Document(doc_id=f"{group}/{name}", subset=subset, group=group, text=data.decode("latin-1"))
            for subset, group, name, data in entries]


class ArchiveReader:
    """Reads each source at most once and keeps its documents: the data sets of one archive (strip modes,
    subsets) are prepared from one read instead of one read each.

    Hold one only while those data sets are prepared (a read 19997 archive is about 40 MB of text).
    """

    def __init__(self) -> None:
        self._documents: dict[tuple[str, str], list[Document]] = {}

    def documents(self, source: str | os.PathLike, version: str) -> list[Document]:
        """``load_documents(source, version)``, read on the first call for this source and version."""
        key = (str(pathlib.Path(source).resolve()), version)
        if key not in self._documents:
            self._documents[key] = load_documents(source, version)
        return self._documents[key]


def source_sha256(source: str | os.PathLike) -> str:
    """Identity of a source: the archive's SHA-256, or a fingerprint of an extracted folder.

    For a folder the fingerprint is the SHA-256 of one line ``<relative path> <size> <mtime_ns>`` per post
    file (digit file names two or three levels down: ``<group>/<id>`` or ``<top>/<group>/<id>``, sorted).
    It is cheap and changes whenever a post is added, removed or rewritten; a copy of the same bytes with new
    mtimes also changes it, which only costs a cache miss.

    Returns
    -------
    str
        64 hex characters.
    """
    source = pathlib.Path(source)
    if not source.is_dir():
        return paths.file_sha256(source)
    post_files = [*_post_files(source, depth=2), *_post_files(source, depth=3)]
    digest = hashlib.sha256(b"glovesweep folder fingerprint v1\n")
    for file_path in sorted(post_files):
        stat = file_path.stat()
        digest.update(f"{file_path.relative_to(source).as_posix()} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def is_published(source: str | os.PathLike, version: str) -> bool:
    """True when ``source`` is the public archive of ``version`` byte for byte (its SHA-256 is the published
    one): its posts, groups and layout are then known, and reading it to check them would prove nothing new."""
    source = pathlib.Path(source)
    return source.is_file() and source_sha256(source) == _archive(version).sha256


def _archive(version: str) -> Archive:
    if version not in ARCHIVES:
        raise ValueError(f"dataset version {version!r} is not known; allowed: {', '.join(ARCHIVES)}")
    return ARCHIVES[version]


def _layout(archive: Archive) -> str:
    return " and ".join(f"{folder}/<group>/<id>" for folder in archive.top_folders)


def _subset_folders(folder: pathlib.Path, archive: Archive) -> dict[str, pathlib.Path]:
    """Map each subset to its top-level folder inside ``folder``; raise OSError if the layout is wrong."""
    if all((folder / top).is_dir() for _, top in archive.folders):
        return {subset: folder / top for subset, top in archive.folders}
    # The top-level folder itself was given (bydate: either one, with its sibling beside it).
    if folder.name in archive.top_folders and all((folder.parent / top).is_dir() for top in archive.top_folders):
        return {subset: folder.parent / top for subset, top in archive.folders}
    # A single-subset version's folder under another name, e.g. the blog's TEXT_DATA_DIR '20_newsgroup'.
    other_version = _ALL_TOP_FOLDERS.get(folder.name)
    if len(archive.folders) == 1 and other_version is None and _holds_groups(folder):
        return {archive.folders[0][0]: folder}
    found = f" (that is the {other_version!r} version's folder)" if other_version else ""
    raise OSError(f"{folder}{found} is not an extracted {archive.version!r} folder: expected {_layout(archive)} "
                  f"inside it, or the top-level folder itself")


def _holds_groups(folder: pathlib.Path) -> bool:
    """Whether ``folder`` directly holds group folders with digit-named posts."""
    return any(True for _ in _post_files(folder, depth=2))


def _post_files(root: pathlib.Path, *, depth: int) -> Iterator[pathlib.Path]:
    """Digit-named regular files exactly ``depth`` levels below ``root`` (2: <group>/<id>)."""
    with os.scandir(root) as entries:
        for entry in entries:
            if depth == 1:
                if entry.name.isdigit() and entry.is_file():
                    yield pathlib.Path(entry.path)
            elif entry.is_dir():
                yield from _post_files(pathlib.Path(entry.path), depth=depth - 1)


def _read_folder(folder: pathlib.Path, archive: Archive) -> Iterator[tuple[str, str, str, bytes]]:
    for subset, top in _subset_folders(folder, archive).items():
        for file_path in _post_files(top, depth=2):
            yield subset, file_path.parent.name, file_path.name, file_path.read_bytes()


def _read_archive(path: pathlib.Path, archive: Archive) -> Iterator[tuple[str, str, str, bytes]]:
    """Read the archive once, in order, keeping ``<top>/<group>/<id>`` members of this version.

    ``r:*`` (not the stream mode ``r|*``): its gzip reader raises ``EOFError`` on a truncated file, where the
    stream mode silently stops at the last whole member (1 cut in 10 of a test archive went unnoticed).
    """
    subset_of = {top: subset for subset, top in archive.folders}
    others: set[str] = set()
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = member.name.split("/")
                if len(parts) < 3 or not member.isfile() or not parts[-1].isdigit():
                    continue
                top, group, name = parts[-3:]
                if top not in subset_of:
                    others.add(top)
                    continue
                yield subset_of[top], group, name, tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise OSError(f"cannot read archive {path}: it is truncated or corrupt ({error}); delete it and download "
                      f"or copy {archive.filename} again") from error
    if others:
        logger.debug("skipped posts under other top-level folders in %s: %s", path, sorted(others))


def check_entries(entries: list[tuple[str, str, str, bytes]], source: str | os.PathLike, *,
                  require_all_groups: bool | None = None) -> None:
    """Refuse a source that would train on the wrong task: unknown or missing groups, or binary posts.

    ``entries`` are ``(subset, group, file name, raw bytes)``. ``require_all_groups=None`` reads
    ``$GLOVESWEEP_ALLOW_GROUP_SUBSET`` (``1``: some groups may be absent; only the test suite sets it).

    Raises
    ------
    OSError
        Naming the source and the unknown or missing groups, or the first binary post.
    """
    if require_all_groups is None:
        require_all_groups = os.environ.get(ALLOW_GROUP_SUBSET_ENV, "").strip() != "1"
    groups = {group for _, group, _, _ in entries}
    unknown = sorted(groups - set(NEWSGROUPS))
    if unknown:
        raise OSError(f"{source} holds group folder(s) {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} "
                      f"that are not 20 Newsgroups groups; use an unmodified 20 Newsgroups archive")
    missing = [group for group in NEWSGROUPS if group not in groups]
    if missing and require_all_groups:
        raise OSError(f"{source} holds {len(groups)} of the 20 groups (missing: {', '.join(missing)}); use the "
                      f"complete archive (documents_per_group subsets each group, never drops one)")
    for subset, group, name, data in entries:
        controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
        if b"\x00" in data or controls > MAX_CONTROL_FRACTION * len(data):
            raise OSError(f"{source}: post {group}/{name} ({subset}) is binary, not text ({controls} control bytes "
                          f"of {len(data)}); use an unmodified 20 Newsgroups archive")
