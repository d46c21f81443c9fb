"""Output folders: LESA never deletes or overwrites what it did not write.

An output (a bundle, a report, a sample folder) goes to a new folder, an empty one, or one LESA wrote
before — recognised by its metadata file (a bundle's ``lesa_bundle.json``, a report's ``report.json``, the
``lesa_output.json`` a command leaves in the folders it creates). Anything else is refused with an
:class:`~lesa_core.errors.OutputError` *before* any work, as is an output inside (or equal to) the data it
is made from. Writability and free space are checked before long work, and what LESA creates follows
the process umask (temporary folders and files are created private, then opened up to what the umask
allows before they are renamed into place).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from pathlib import Path

from lesa_core.errors import OutputError

__all__ = ["OUTPUT_MARKER", "check_claimable", "check_free_space", "check_not_nested", "check_output_folder",
           "check_writable", "claim_output_folder", "follow_umask", "nearest_existing", "process_umask"]

OUTPUT_MARKER = "lesa_output.json"
"""The file a command leaves in an output folder it creates (which command, when): the folder is then
recognised as LESA's, so a second run (or a resumed one) may write into it again."""


def process_umask() -> int:
    """The process umask (read from ``/proc/self/status`` where available, without changing it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it (and put it back at once)
    os.umask(mask)
    return mask


def follow_umask(path: Path) -> None:
    """Give ``path`` (and, for a folder, everything in it) the permissions a plain ``mkdir`` / ``open``
    would have given under the process umask: ``0o777 & ~umask`` for folders, ``0o666 & ~umask`` for
    files. For what ``tempfile.mkdtemp`` / ``mkstemp`` created private (0700 / 0600)."""
    mask = process_umask()
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest existing ancestor."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _listing(names: Iterable[str], limit: int = 5) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_output_folder(path: str | Path, *, markers: Collection[str], owned: Collection[str] | None = None,
                        what: str = "output") -> None:
    """Refuse ``path`` unless it is missing, an empty folder, or a folder LESA wrote (it holds one of
    ``markers``). With ``owned`` (the names LESA writes there), a folder of LESA's that also holds
    anything else is refused too: the write would replace the whole folder.

    :raises OutputError: saying what is there and what to do.
    """
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise OutputError(f"{what} '{path}' is a dangling symbolic link; remove it or choose another path")
        return
    if not path.is_dir():
        raise OutputError(f"{what} '{path}' is an existing file, not a folder; choose a new folder path "
                          "(LESA does not replace files it did not write)")
    entries = {p.name for p in path.iterdir()}
    if not entries:
        return
    if not entries & set(markers):
        raise OutputError(
            f"{what} folder '{path}' already holds files that LESA did not write ({_listing(entries)}); choose "
            "a new or empty folder — LESA replaces only a folder it wrote itself"
        )
    foreign = entries - set(owned) if owned is not None else set()
    if foreign:
        raise OutputError(
            f"{what} folder '{path}' holds a previous LESA output and files LESA did not write "
            f"({_listing(foreign)}), which replacing it would delete; move them out or choose another folder"
        )


def check_claimable(path: str | Path, *, command: str, markers: Collection[str] = ()) -> None:
    """Refuse an output folder ``command`` may not write into: one holding files LESA did not write (it holds
    none of ``markers`` nor :data:`OUTPUT_MARKER`), or one that cannot be created or written.

    :raises OutputError: saying what is there and what to do.
    """
    check_output_folder(path, markers=(*markers, OUTPUT_MARKER), what=f"`{command}` output")
    check_writable(path, what=f"`{command}` output")


def claim_output_folder(path: str | Path, *, command: str, markers: Collection[str] = ()) -> Path:
    """:func:`check_claimable`, then create the folder if needed and leave :data:`OUTPUT_MARKER` in it, so
    that a rerun or a resumed run is recognised.

    :raises OutputError: if the folder holds files LESA did not write, or cannot be created.
    """
    path = Path(path)
    check_claimable(path, command=command, markers=markers)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / OUTPUT_MARKER
    if not marker.exists():
        marker.write_text(json.dumps({"written_by": command,
                                      "created": datetime.now(UTC).isoformat(timespec="seconds")}) + "\n")
    return path


def check_not_nested(out: str | Path, data: str | Path, *, out_name: str = "--out",
                     data_name: str = "--data-dir", data_inside_ok: bool = False) -> None:
    """Refuse an output equal to or inside the data folder it is made from, or (unless ``data_inside_ok``:
    a report folder that keeps its data in a subfolder) containing it — writing or replacing it would
    delete the data.

    :raises OutputError: naming both folders.
    """
    out_path, data_path = Path(os.path.abspath(out)), Path(os.path.abspath(data))
    contains = out_path in data_path.parents and not data_inside_ok
    if out_path == data_path or data_path in out_path.parents or contains:
        relation = ("is" if out_path == data_path else "lies inside" if data_path in out_path.parents
                    else "contains")
        raise OutputError(f"{out_name} '{out}' {relation} {data_name} '{data}'; writing it would delete the "
                          f"trajectories and checkpoints there — choose an {out_name} outside {data_name}")


def check_writable(path: str | Path, *, what: str = "output") -> None:
    """Refuse a ``path`` that cannot be created or written: its closest existing ancestor must be a folder
    in which a file can really be created (probed with a temporary file, removed at once).

    :raises OutputError: with the system's reason.
    """
    path = Path(path)
    base = nearest_existing(path)
    if not base.is_dir():
        raise OutputError(f"{what} '{path}' cannot be created: '{base}' is a file, not a folder; choose "
                          "another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".lesa-write-probe.", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} '{path}' is not writable ({exc.strerror or exc}); choose a folder you can "
                          "write to, or fix its permissions") from None


def check_free_space(path: str | Path, needed: int, *, what: str = "output") -> None:
    """Refuse when the file system of ``path`` has fewer than ``needed`` bytes free (plus 1 %% margin).

    :raises OutputError: stating both amounts.
    """
    base = nearest_existing(Path(path))
    free = shutil.disk_usage(base).free
    if free < needed * 1.01:
        raise OutputError(f"{what} '{path}' needs about {_size(needed)} but its disk has {_size(free)} free; free "
                          "some space or choose a folder on another disk")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover
