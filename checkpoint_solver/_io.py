"""JSON files: canonical text, atomic writes, schema validation with readable errors."""

from __future__ import annotations

import json
import os
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from checkpoint_solver.errors import FileFormatError

__all__ = [
    "canonical_json",
    "check_header",
    "load_json",
    "parse_json",
    "validate",
    "write_atomic",
]


def canonical_json(obj: Any) -> str:
    """Stable text: sorted keys, two-space indent (one list item per line), trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and `os.replace`.

    Either the whole new file is there afterwards or the old state is untouched: a failure leaves
    no partial file and no temporary file behind.

    Raises
    ------
    OSError
        When the folder does not exist or is not writable; the message names the path.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OSError(
            exc.errno, f"cannot write {target}: {exc.strerror}; choose a writable folder"
        ) from None
    try:
        # mkstemp makes 0600 files; give the result the mode a plain open() would have.
        os.chmod(tmp, _existing_mode(target))
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def _existing_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def load_json(path: str | os.PathLike[str], what: str) -> Any:
    """Read JSON from `path`: the one reading path of every file we load.

    A missing file is a `FileNotFoundError` naming it; a folder, an unreadable file, bytes that
    are not UTF-8, text that is not JSON, ``NaN``/``Infinity`` (not JSON; our files never hold
    them) and nesting too deep to parse are a `FileFormatError` naming the file and what is
    wrong with it.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file {p} does not exist; check the path") from None
    except IsADirectoryError:
        raise FileFormatError(
            f"{what} file {p} is a folder; give the path of a JSON file in it"
        ) from None
    except OSError as exc:
        raise FileFormatError(
            f"{what} file {p} cannot be read ({exc.strerror or exc}); check its permissions"
        ) from None
    return parse_json(raw, f"{what} file {p}")


def parse_json(raw: bytes | str, source: str) -> Any:
    """Parse JSON text or UTF-8 bytes; every failure is a `FileFormatError` naming `source`."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            f"{source} is not UTF-8 text (byte {exc.start} is {raw[exc.start : exc.start + 1]!r}); "
            f"it is not a file checkpoint_solver wrote: regenerate it"
        ) from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise FileFormatError(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}); regenerate it or fix the file"
        ) from None
    except _Constant as exc:
        raise FileFormatError(
            f"{source} holds {exc.args[0]}, which is not JSON (numbers must be finite); "
            f"regenerate it or fix the file"
        ) from None
    except RecursionError:
        raise FileFormatError(
            f"{source} nests arrays or objects too deeply to read; it is not a file "
            f"checkpoint_solver wrote"
        ) from None


class _Constant(Exception):
    pass


def _no_constant(name: str) -> Any:
    raise _Constant(name)


@cache
def _schema(package: str, name: str) -> dict[str, Any]:
    text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate(data: Any, package: str, schema_name: str, what: str) -> None:
    """Validate `data` against a JSON Schema shipped in `package`.

    Raises
    ------
    FileFormatError
        Naming the first failing field by its JSON path.
    """
    import jsonschema

    schema = _schema(package, schema_name)
    validator = jsonschema.Draft202012Validator(schema)
    try:
        errors = sorted(
            validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]
        )
    except RecursionError:
        raise FileFormatError(
            f"{what} nests arrays or objects too deeply to check against {schema_name}"
        ) from None
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise FileFormatError(f"{what} does not match {schema_name} at {where}: {err.message}")


def check_header(
    data: Any,
    fmt: str,
    versions: tuple[int, ...],
    source: str,
    *,
    other_format_hint: str,
    upgrade_hint: str,
) -> None:
    """Check that `data` is a JSON object of format `fmt` and a supported version.

    Raises
    ------
    FileFormatError
        Naming what was found, what is expected, and the given hints.
    """
    if not isinstance(data, dict):
        raise FileFormatError(f"{source} must be a JSON object, got {type(data).__name__}")
    found = data.get("format")
    if found != fmt:
        raise FileFormatError(
            f"{source} has format {found!r}; expected {fmt!r} {other_format_hint}"
        )
    version = data.get("version")
    if version not in versions:
        raise FileFormatError(
            f"{source} has version {version!r}; this checkpoint_solver reads versions "
            f"{', '.join(map(str, versions))}{upgrade_hint}"
        )
