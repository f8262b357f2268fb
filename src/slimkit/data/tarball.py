"""Tarballs of image-folder trees: safe extraction under `cache_dir()`, reused while unchanged."""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

from slimkit.data.common import _as_path, _find_split_root, _one_line, _require_file, cache_dir
from slimkit.errors import DataError

__all__ = ["unpack_tarball"]

_UNPACK_MARKER = ".slimkit-unpacked"
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")


def _tarball_stem(path: Path) -> str:
    name = path.name
    for suffix in _TAR_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_tarball_name(name: str) -> bool:
    return name.lower().endswith(_TAR_SUFFIXES)


def _unsafe_name(name: str) -> bool:
    pure = PurePosixPath(name.replace("\\", "/"))
    return pure.is_absolute() or ".." in pure.parts or bool(re.match(r"^[A-Za-z]:", name))


def _check_member(member: tarfile.TarInfo, tar_path: Path, filter_available: bool) -> None:
    """Refuse members that could write outside the destination or create special files."""
    problem = None
    if _unsafe_name(member.name):
        problem = "an absolute path or '..'"
    elif member.isdev() or member.isfifo():
        problem = "a device or FIFO"
    elif member.issym() or member.islnk():
        if not filter_available:
            problem = "a link (this Python lacks tarfile's safe 'data' filter)"
        elif _unsafe_name(member.linkname):
            problem = f"a link to '{member.linkname}'"
    if problem:
        raise DataError(
            f"tarball '{tar_path}' has unsafe member '{member.name}' ({problem}): "
            "refusing to extract it; repack it with relative paths only"
        )


def _split_root_in_names(names: list[str]) -> str | None:
    """The shallowest prefix P with both P/train and P/test among tar member names.

    Looks at most two levels down, like `_find_split_root` does on disk after extraction.
    """
    seen: dict[tuple[str, ...], set[str]] = {}
    for name in names:
        parts = PurePosixPath(name).parts
        for i, part in enumerate(parts[:3]):
            if part in ("train", "test"):
                seen.setdefault(parts[:i], set()).add(part)
    roots = [p for p, splits in seen.items() if splits == {"train", "test"}]
    return "/".join(min(roots, key=len)) if roots else None


def _extract(tar_path: Path, into: Path) -> None:
    filter_available = hasattr(tarfile, "data_filter")
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, tar_path, filter_available)
            if _split_root_in_names([m.name for m in members]) is None:
                raise DataError(
                    f"tarball '{tar_path}' has no train/ and test/ folders: pack an image-folder "
                    "tree (train/<class>/..., test/<class>/...)"
                )
            if filter_available:
                tar.extractall(into, members=members, filter="data")
            else:
                tar.extractall(into, members=members)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(
            f"cannot unpack tarball '{tar_path}' ({_one_line(exc)}): re-fetch it"
        ) from exc


def _tarball_stamp(tar_path: Path) -> str:
    st = tar_path.stat()
    return f"{tar_path.resolve()}\n{st.st_size}\n{st.st_mtime_ns}\n"


def _marker_matches(dest: Path, stamp: str) -> bool:
    try:
        return (dest / _UNPACK_MARKER).read_text() == stamp
    except OSError:
        return False


def _move_into_place(tmp: Path, dest: Path, stamp: str) -> None:
    """Rename the finished extraction to `dest`, replacing a stale slimkit unpack if present."""
    if _marker_matches(dest, stamp):
        return  # another process finished the same unpack first and may be reading it: keep it
    stale = None
    if dest.exists():
        stale = dest.with_name(f".{dest.name}.stale-{os.getpid()}")
        os.replace(dest, stale)
    try:
        os.replace(tmp, dest)
    except OSError:
        # Another process finished the same unpack first; theirs is as good as ours.
        if not _marker_matches(dest, stamp):
            raise
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


def unpack_tarball(
    tar_path: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None
) -> Path:
    """Safely unpack an image-folder tarball and return the folder holding train/ and test/.

    Unpacks into `dest` (default `cache_dir()/<tarball stem>`) via a temporary folder beside it
    and a rename, so a crash never leaves a half-unpacked tree. Members with absolute paths, '..',
    escaping links or device files are refused. A tree this function already unpacked from the
    same (unchanged) tarball is returned without extracting again.
    """
    tar_path = _as_path(tar_path)
    _require_file(tar_path, "tarball")
    dest = _as_path(dest) if dest is not None else cache_dir() / _tarball_stem(tar_path)
    stamp = _tarball_stamp(tar_path)
    if not _marker_matches(dest, stamp):
        if dest.exists() and not (dest / _UNPACK_MARKER).exists():
            raise DataError(
                f"'{dest}' already exists and was not unpacked by slimkit: "
                "pass another dest or remove it"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            _extract(tar_path, tmp)
            (tmp / _UNPACK_MARKER).write_text(stamp)
            _move_into_place(tmp, dest, stamp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    root = _find_split_root(dest)
    if root is None:
        raise DataError(f"unpacked tarball '{dest}' has no train/ and test/ folders: remove it")
    return root
