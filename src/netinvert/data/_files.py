"""Where file-based datasets are looked for, and reading their (possibly gzipped) files.

Search order for a dataset named ``name`` whose user gave ``root``: ``root`` itself, then the
usual sub-folders of ``root`` (e.g. ``cifar-10-batches-py`` as the official archive unpacks).
Without ``root``: ``$NETINVERT_DATA/<name>`` (and its usual sub-folders) when the variable is set,
then system folders such as the one Debian's ``dataset-fashion-mnist`` package installs.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import DatasetError
from ._base import DatasetStatus

#: Environment variable naming a folder with one sub-folder per dataset.
DATA_ENV = "NETINVERT_DATA"


@dataclass(frozen=True)
class FileLayout:
    """The files a dataset needs, where to look for them, and how a user obtains them.

    ``files`` lists each required file as a tuple of accepted names, in order of preference
    (e.g. ``("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz")``).
    """

    name: str
    title: str
    files: tuple[tuple[str, ...], ...]
    obtain: str
    input_shape: tuple[int, int, int]
    n_classes: int
    subdirs: tuple[str, ...] = ()
    system_dirs: tuple[Path, ...] = ()

    def candidates(self, root: Path | None) -> list[Path]:
        """Folders to search, in order."""
        if root is not None:
            bases = [Path(root).expanduser()]
        else:
            env = os.environ.get(DATA_ENV)
            bases = [Path(env).expanduser() / self.name] if env else []
        # Sub-folders are searched only where they exist, so the error lists real places.
        folders = list(bases)
        folders += [base / s for base in bases for s in self.subdirs if (base / s).is_dir()]
        if root is None:
            folders.extend(self.system_dirs)
        return folders

    def find(self, root: Path | None) -> tuple[Path, list[Path]]:
        """The first candidate folder holding every required file, and those files.

        Raises
        ------
        DatasetError
            Naming the files looked for, every folder searched and how to obtain the files.
        """
        searched = []
        for folder in self.candidates(root):
            if not folder.is_dir():
                searched.append(f"{folder} (no such folder)")
                continue
            found, missing = [], []
            for names in self.files:
                path = next((folder / n for n in names if (folder / n).is_file()), None)
                if path is None:
                    missing.append(_spell(names))
                else:
                    found.append(path)
            if not missing:
                return folder, found
            searched.append(f"{folder} (missing {', '.join(missing)})")
        wanted = ", ".join(_spell(n) for n in self.files)
        where = (f"in {'; '.join(searched)}" if searched
                 else f"but no folder was given and ${DATA_ENV} is not set")
        raise DatasetError(
            f"{self.title} files not found. Looked for {wanted} {where}. To obtain them: "
            f"{self.obtain} Then pass their folder as root (CLI: --data-root DIR) or place it "
            f"at ${DATA_ENV}/{self.name}."
        )

    def locate(self, root: Path | None) -> DatasetStatus:
        """Locator for the registry: are the files present (not yet validated)?"""
        try:
            folder, _ = self.find(root)
        except DatasetError as exc:
            where = ", ".join(str(f) for f in self.candidates(root))
            return DatasetStatus(self.name, False, where, str(exc), self.input_shape, self.n_classes)
        return DatasetStatus(self.name, True, str(folder), "", self.input_shape, self.n_classes)


def _spell(names: tuple[str, ...]) -> str:
    """``("a", "a.gz")`` -> ``"a[.gz]"``; other alternatives joined with ``|``."""
    if len(names) == 2 and names[1] == names[0] + ".gz":
        return f"{names[0]}[.gz]"
    return "|".join(names)


def read_bytes(path: Path) -> bytes:
    """Read a file whole, gunzipping it when its name ends in ``.gz``.

    Raises
    ------
    DatasetError
        If the file cannot be read or is not a complete gzip stream.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DatasetError(
            f"{path} is not a complete gzip file ({exc}); download it again or gunzip it yourself."
        ) from exc
    except OSError as exc:
        raise DatasetError(f"Cannot read {path}: {exc}.") from exc
