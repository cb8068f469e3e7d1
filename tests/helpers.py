"""Shared test helpers."""
import contextlib
import io
import logging
import os
import random
import subprocess
import sys
import traceback
import warnings
from typing import Optional

from torch import nn

from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_ as randomize_  # noqa: F401
from mmfastvit.models.utils.fusion_checks import relative_error  # noqa: F401


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# conftest.tiny_imagenet, the tiny ImageNet of the classification runs: 4 classes, 2 training and 1 validation image
# each, 40 px
TINY_IMAGENET = dict(num_classes=4, train_per_class=2, val_per_class=1, size=40)


def run_tool(script: str, *args, cwd, env: Optional[dict] = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Runs a tool as a user does: ``python SCRIPT ARGS`` in ``cwd``, the repository importable, one thread per
    process (on a busy 2-core machine two OpenMP threads wait on each other at every op, 10x slower steps)."""
    base = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, str(script), *map(str, args)], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def check_ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``result`` if it exited 0; else a failure that shows the end of its output."""
    assert result.returncode == 0, f'exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}'
    return result


def build_once(tmp_path_factory, name: str, build):
    """``build(folder)`` made once per test session: in a new folder of its own with one pytest process; under
    pytest-xdist the first worker to ask builds it while holding a lock and records what it returned (this suite's own
    file, pickled), and every other worker waits for and reads that record. For the tiny trainings several test
    files share."""
    if 'PYTEST_XDIST_WORKER' not in os.environ:
        return build(tmp_path_factory.mktemp(name))
    import pickle

    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # the run's folder, above each worker's own
    record = shared / f'{name}.pkl'
    with FileLock(str(shared / f'{name}.lock')):
        if not record.exists():
            folder = shared / name
            folder.mkdir()
            value = build(folder)
            record.write_bytes(pickle.dumps(value))
            return value
    return pickle.loads(record.read_bytes())


_TOOLS = {}


def load_tool(script: str):
    """The tool at ``script`` (tools/train.py, ...) as a module, loaded once per path and kept."""
    import importlib.util

    path = os.path.abspath(str(script))
    if path not in _TOOLS:
        name = 'mmfastvit_tool_' + ''.join(c if c.isalnum() else '_' for c in os.path.relpath(path, REPO)[:-3])
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _TOOLS[path] = module
    return _TOOLS[path]


def _manager_classes() -> list:
    """mmengine's globally accessible classes (MMLogger, MessageHub, DefaultScope, the visualizers, ...): each keeps its
    own instances by name, and the newest one is "current"."""
    from mmengine.utils import ManagerMixin

    found, todo = [], [ManagerMixin]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _close_instance(instance) -> None:
    for handler in list(getattr(instance, 'handlers', [])):  # MMLogger: the run's log file
        if isinstance(handler, logging.FileHandler):
            handler.close()
    if hasattr(instance, 'close') and hasattr(instance, '_vis_backends'):  # Visualizer: TensorBoard writers
        instance.close()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _as_a_fresh_process(argv: list, cwd, env: dict):
    """What a tool may change in the interpreter, set as in a new process and put back afterwards: sys.argv, cwd,
    the environment, sys.path, torch's thread count, the random generators, deterministic mode, OpenCV's thread
    count, multiprocessing's start method, the warning filters, and mmengine's loggers / message hubs / default
    scopes / visualizers (the run starts with none; the instances it created are dropped, their files closed, and the
    earlier ones come back)."""
    import multiprocessing

    import cv2
    import numpy as np
    import torch

    instances = {cls: cls._instance_dict.copy() for cls in _manager_classes()}
    for cls in instances:  # none yet, as in a new process (a logger of an earlier test may write to a closed stream)
        cls._instance_dict.clear()
    saved_argv, saved_path, saved_env, saved_cwd = sys.argv, (sys.path, sys.path[:]), dict(os.environ), os.getcwd()
    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    start_method = multiprocessing.get_start_method(allow_none=True)  # mmengine's Runner sets 'fork'
    rng = random.getstate(), np.random.get_state(), torch.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()  # Python's own defaults, not pytest's capture
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter('ignore', category)
            warnings.showwarning = _show_warning
            sys.argv = [str(a) for a in argv]
            os.environ.update(env)
            os.chdir(cwd)
            torch.set_num_threads(int(env.get('OMP_NUM_THREADS', threads)))
            yield
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        sys.path = saved_path[0]
        sys.path[:] = saved_path[1]
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv2_threads)
        if multiprocessing.get_start_method(allow_none=True) != start_method:
            multiprocessing.set_start_method(start_method, force=True)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        for cls in _manager_classes():
            for instance in cls._instance_dict.values():  # the run's own
                _close_instance(instance)
            cls._instance_dict.clear()
            cls._instance_dict.update(instances.get(cls, {}))


def run_in_process(script: str, *args, cwd, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Runs a tool's ``main(argv)`` in this interpreter, with what :func:`run_tool` gives its process (``sys.argv``,
    ``cwd``, the environment, one thread, Python's warning filters) and its output captured; what the run changed in
    the interpreter is put back afterwards. Returns what :func:`run_tool` returns: the exit status (``SystemExit``'s
    code, ``main``'s int, 0, or 1 with the traceback on stderr for an exception) and the output.

    For the runs that need nothing of a new interpreter: bad input refused before or inside the Runner, and short
    train / test runs whose results are checked. Saves the imports (torch, mmengine, the task package) of each run.
    """
    argv = [str(script), *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    with _as_a_fresh_process(argv, cwd, {'OMP_NUM_THREADS': '1', **(env or {})}):
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = load_tool(script).main(argv[1:])
                code = code if isinstance(code, int) else 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
            except Exception:  # what the interpreter does with an uncaught exception
                traceback.print_exc()
                code = 1
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


class LogRecords(logging.Handler):
    """Keeps the messages logged to the logger it is added to (``logger.addHandler(records)``)."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())
