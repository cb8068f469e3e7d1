"""Peak CPU memory of one benchmark candidate: resident growth while it is built and run (Linux, glibc)."""
import ctypes
import gc
import os.path as osp

from .latency import proc_status_kib

MIB = 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def _libc():
    try:
        return ctypes.CDLL('libc.so.6')
    except OSError:
        return None


def _return_freed_memory() -> None:
    """Hands freed heap memory back to the OS (glibc) so that resident-set readings show live memory."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class CpuPeak:
    """Peak resident growth while building and running a candidate: ``VmHWM`` after, minus ``VmRSS`` before.

    On Linux the high-water mark is reset at the start (``/proc/self/clear_refs``) and, inside the block only, glibc
    serves blocks of 64 KiB and more from ``mmap`` (returned to the OS when freed), so the reading is this candidate's
    weights, activations and engine buffers, not what earlier candidates left. On leaving, large blocks go back to
    the heap (thresholds at glibc's adaptive maximum, 32 MiB), so the timed runs do not pay an ``mmap`` per tensor.
    Elsewhere the reading is None.
    """

    def __init__(self) -> None:
        self.supported = osp.exists('/proc/self/status')
        self.libc = _libc()

    def __enter__(self) -> 'CpuPeak':
        self.mib, self.reset = None, False
        if self.supported:
            if self.libc is not None:
                self.libc.mallopt(_M_MMAP_THRESHOLD, 65536)
            _return_freed_memory()
            self.baseline = proc_status_kib('VmRSS')
            try:
                with open('/proc/self/clear_refs', 'w') as f:
                    f.write('5')
                self.reset = True
            except OSError:
                pass
        return self

    def __exit__(self, *exc) -> None:
        if self.supported and self.reset:
            self.mib = (proc_status_kib('VmHWM') - self.baseline) / 1024
        if self.libc is not None:
            self.libc.mallopt(_M_MMAP_THRESHOLD, 32 * MIB)
            self.libc.mallopt(_M_TRIM_THRESHOLD, 64 * MIB)
