"""Single-threaded BLAS for fitting: many small factorisations lose badly to thread hand-offs on busy CPUs."""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:  # the maintained way; without it we fall back to OpenBLAS's own setter (below)
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - depends on the environment
    threadpool_limits = None

# numpy and scipy wheels each bundle an OpenBLAS whose symbols carry a prefix/suffix.
_OPENBLAS_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)


def _loaded_openblas() -> list[tuple[ctypes._CFuncPtr, ctypes._CFuncPtr]]:
    """(get, set) thread-count functions of every OpenBLAS this process has loaded (Linux only)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return []
    found = []
    for path in sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", maps.read_text()))):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for getter, setter in _OPENBLAS_SYMBOLS:
            if hasattr(library, getter) and hasattr(library, setter):
                found.append((getattr(library, getter), getattr(library, setter)))
                break
    return found


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with one BLAS thread, restoring the previous counts afterwards.

    Measured on a loaded 2-core machine: a 500 x 500 Cholesky took 3 ms on one OpenBLAS thread and 500 ms
    on two, because OpenBLAS threads spin while they wait for a core. The fits here make hundreds of such
    calls on matrices too small to gain from threads.
    """
    if threadpool_limits is not None:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
        return
    libraries = _loaded_openblas()
    previous = [get() for get, _ in libraries]
    for _, set_threads in libraries:
        set_threads(1)
    try:
        yield
    finally:
        for (_, set_threads), count in zip(libraries, previous, strict=True):
            set_threads(count)
