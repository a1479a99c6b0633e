"""Writing files so that no reader ever sees half of one: the package's one atomic write.

    with atomic_write(path) as f:        # text; atomic_write(path, binary=True) for bytes
        f.write(text)

A new path or an existing regular file is written under a unique temporary name in the same
directory (`.NAME.PID.XXXXXXXX.tmp`) and renamed over the target when complete, so concurrent
writers never collide and a concurrent reader sees the old file or the new one, whole. The
temporary file is removed on every error path, Ctrl-C included. Anything else (a device such as
/dev/null, a FIFO, a terminal, a symlink such as /dev/stdout) is written directly and never
replaced: renaming over /dev/null as root would turn the system's /dev/null into a file.

`-` is standard output, written directly. Errors name the path the user gave (never the temporary one) and what is wrong, as OutputError.
`check_writable(path)` makes the same checks before a long run, so a bad output path fails in a
second rather than after the work (ENOSPC and read-only file systems included).

This module imports nothing of the package but errors: every layer may write through it.
"""
import contextlib
import errno
import os
import stat
import sys
import tempfile

from slmprof.errors import OutputError

STDOUT = "-"        # the name that means standard output, wherever an output path is taken


def is_special(path) -> bool:
    """True for an existing path that must be written in place: not a regular file, or a
    symlink (to a device, a FIFO, /proc/self/fd/1, or a file someone else owns the name of)."""
    path = os.fspath(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise OutputError(_message(path, e)) from None
    return stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode)


def _message(path, err) -> str:
    reason = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif err.errno == errno.EROFS:
        reason = "read-only file system"
    return f"cannot write {path}: {reason}"


def _read_umask():
    mask = os.umask(0o022)      # umask can only be read by setting it: done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _new_file_mode(existing):
    """The mode a plain open() would give: the replaced file's, or 0666 less the umask."""
    if existing is not None:
        return stat.S_IMODE(existing.st_mode)
    return 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_write(path, binary=False, encoding="utf-8", sync=False):
    """Yield a file object for `path`; on success the target holds exactly what was written.
    sync: fsync before the rename (for large files a crash must not leave empty)."""
    path = os.fspath(path)
    mode = "wb" if binary else "w"
    kw = {} if binary else {"encoding": encoding}
    if path == STDOUT:
        stream = sys.stdout.buffer if binary else sys.stdout
        yield stream
        stream.flush()
        return
    if os.path.isdir(path):
        raise OutputError(f"cannot write {path}: it is a directory")
    if is_special(path):
        try:
            f = open(path, mode, **kw)
        except OSError as e:
            raise OutputError(_message(path, e)) from None
        try:
            with f:
                yield f
        except OutputError:
            raise
        except OSError as e:
            raise OutputError(_message(path, e)) from None
        return
    folder, name = os.path.split(path)
    try:
        existing = os.stat(path)
    except FileNotFoundError:
        existing = None
    except OSError as e:
        raise OutputError(_message(path, e)) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(name), suffix=".tmp", dir=folder or ".")
    except FileNotFoundError:
        raise OutputError(f"cannot write {path}: directory {folder or '.'} does not exist") from None
    except OSError as e:
        raise OutputError(_message(path, e)) from None
    try:
        try:
            os.fchmod(fd, _new_file_mode(existing))
            f = os.fdopen(fd, mode, **kw)
        except BaseException:
            os.close(fd)
            raise
        with f:
            yield f
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OutputError:
        _unlink(tmp)
        raise
    except OSError as e:
        _unlink(tmp)
        raise OutputError(_message(path, e)) from None
    except BaseException:
        _unlink(tmp)
        raise


def _temp_prefix(name):
    # the pid lets sweep_stale tell a killed writer's file from a live one's
    return f".{name}.{os.getpid()}."


def sweep_stale(directory):
    """Remove temporary files left in `directory` by writers that were killed before they could
    clean up (SIGKILL, power loss); a live process's file is left alone."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(".") and name.endswith((".tmp", ".partial"))):
            continue
        parts = name.split(".")         # .NAME.PID.XXXXXXXX.tmp, or .NAME.PID.partial
        pid = parts[-3] if name.endswith(".tmp") and len(parts) >= 5 else parts[-2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue                      # still being written
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError, ValueError):
            continue                      # someone else's live process
        _unlink(os.path.join(directory, name))


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def make_parent(path):
    """Create the directory `path` goes in (a cache's subfolder); OutputError names `path`."""
    folder = os.path.dirname(os.fspath(path))
    if folder:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise OutputError(_message(os.fspath(path), e)) from None


def write_text(path, text, encoding="utf-8"):
    with atomic_write(path, encoding=encoding) as f:
        f.write(text)
    return path


def write_bytes(path, data):
    with atomic_write(path, binary=True) as f:
        f.write(data)
    return path


def check_writable(path, what="output"):
    """Raise OutputError now if `path` cannot be written later: a missing or unwritable
    directory, a directory given as the file, a read-only or full file system. A regular or
    new path is probed by writing a temporary file beside it (removed again); a special file
    is checked for write permission without opening it (opening a FIFO would wait for a
    reader). `-` (standard output) always passes."""
    path = os.fspath(path)
    if path == STDOUT:
        return
    if not path:
        raise OutputError(f"{what}: an empty file name")
    if os.path.isdir(path):
        raise OutputError(f"cannot write {path}: it is a directory")
    if is_special(path):
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise OutputError(f"cannot write {path}: permission denied")
        return
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise OutputError(f"cannot write {path}: directory {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(os.path.basename(path)), suffix=".tmp",
                                   dir=folder)
    except OSError as e:
        raise OutputError(_message(path, e)) from None
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)
    except OSError as e:
        raise OutputError(_message(path, e)) from None
    finally:
        os.close(fd)
        _unlink(tmp)
