"""Apple-format FastViT checkpoints, generated, and a web server on 127.0.0.1 that serves them like Apple's site.

Shared by the tests of the URL loader (tests/test_convert/test_download.py) and of ``mmfastvit.get_model(name,
pretrained=True)``. Nothing here touches the internet: the files are random weights in the exact keys and shapes of
Apple's releases (recorded in tests/data/apple_fastvit_manifest.json.gz), laid out under the same folders as on
``https://docs-assets.developer.apple.com/ml-research/models/fastvit/``::

    with serve_apple_weights(tmp_path / 'site', archs=('t8',)) as base_url:      # 'http://127.0.0.1:PORT/'
        os.environ['MMFASTVIT_WEIGHTS_MIRROR'] = base_url
        ...

or, in a test, the ``apple_weights_mirror`` fixture, which also points ``TORCH_HOME`` at a fresh folder (import both
fixtures into the test module: ``from weights_server import apple_site_dir, apple_weights_mirror  # noqa: F401``).
"""
import contextlib
import functools
import gzip
import http.server
import json
import math
import os
import os.path as osp
import threading
from typing import Dict, Iterator, List, Optional, Sequence

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MANIFEST = osp.join(REPO, 'tests', 'data', 'apple_fastvit_manifest.json.gz')
APPLE_VARIANTS = ('t8', 't12', 's12', 'sa12', 'sa24', 'sa36', 'ma36')
# Apple's folders under the published prefix: (folder, distilled).
APPLE_FOLDERS = (('image_classification_models', False), ('image_classification_distilled_models', True))
MIRROR_ENV = 'MMFASTVIT_WEIGHTS_MIRROR'


@functools.lru_cache(maxsize=1)
def load_manifest() -> dict:
    """``{arch: {'apple_unfused': {key: shape}, 'apple_fused': {key: shape}, ...}}`` of Apple's released files."""
    with gzip.open(MANIFEST, 'rt') as f:
        return json.load(f)


def random_state_dict(shapes: Dict[str, Sequence[int]], seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random values for a manifest's key -> shape map, at scales that keep every activation of order one."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith('num_batches_tracked'):
            state[key] = torch.tensor(7)
        elif key.endswith('running_var'):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith('running_mean'):
            state[key] = torch.randn(shape, generator=gen) * 0.1
        elif 'layer_scale' in key:
            state[key] = torch.rand(shape, generator=gen) * 0.2 + 0.05
        elif len(shape) == 1 and key.endswith('weight'):  # BatchNorm scale
            state[key] = torch.rand(shape, generator=gen) * 0.5 + 0.75
        elif len(shape) == 1:  # biases
            state[key] = torch.randn(shape, generator=gen) * 0.1
        else:
            state[key] = torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
    return state


def apple_state_dict(arch: str = 't8', reparam: bool = False, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random weights in Apple's keys and shapes for ``fastvit_<arch>.pth.tar`` (or its ``_reparam`` twin)."""
    return random_state_dict(load_manifest()[arch]['apple_fused' if reparam else 'apple_unfused'], seed=seed)


def apple_relpath(arch: str, distilled: bool = False, reparam: bool = False) -> str:
    """The file's path under Apple's prefix, e.g. ``image_classification_models/fastvit_t8_reparam.pth.tar``."""
    folder = APPLE_FOLDERS[1][0] if distilled else APPLE_FOLDERS[0][0]
    return f'{folder}/fastvit_{arch}{"_reparam" if reparam else ""}.pth.tar'


def write_apple_file(root_dir, arch: str = 't8', distilled: bool = False, reparam: bool = False,
                     seed: Optional[int] = None) -> str:
    """Writes one generated Apple checkpoint (``{'state_dict': ...}``, as Apple's code reads them) at its path under
    ``root_dir`` and returns that path. The default seed differs per file, so no two files hold the same weights."""
    rel = apple_relpath(arch, distilled, reparam)
    if seed is None:
        seed = APPLE_VARIANTS.index(arch) * 4 + 2 * distilled + reparam
    path = osp.join(str(root_dir), rel)
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save({'state_dict': apple_state_dict(arch, reparam, seed)}, path)
    return path


def build_apple_site(root_dir, archs: Sequence[str] = ('t8',), distilled: Sequence[bool] = (False, True),
                     reparam: Sequence[bool] = (False, True)) -> List[str]:
    """Writes the Apple files of ``archs`` (each distilled / reparam combination) under ``root_dir``, skipping those
    already there; returns their relative paths."""
    rels = []
    for arch in archs:
        for dist in distilled:
            for rep in reparam:
                rel = apple_relpath(arch, dist, rep)
                if not osp.isfile(osp.join(str(root_dir), rel)):
                    write_apple_file(root_dir, arch, dist, rep)
                rels.append(rel)
    return rels


class MirrorURL(str):
    """The base URL (``'http://127.0.0.1:PORT/'``), with ``requests``: the paths asked for so far, in order."""
    requests: List[str]


def _handler(root_dir: str, break_after: Optional[int], requests: List[str]):

    class Handler(http.server.BaseHTTPRequestHandler):

        def do_GET(self):  # noqa: N802 (http.server's name)
            requests.append(self.path)
            rel = self.path.split('?', 1)[0].lstrip('/')
            path = osp.realpath(osp.join(root_dir, rel))
            if not path.startswith(osp.realpath(root_dir) + os.sep) or not osp.isfile(path):
                self.send_error(404, 'Not Found')
                return
            with open(path, 'rb') as f:
                data = f.read()
            self.send_response(200)
            self.send_header('Content-Type', 'application/octet-stream')
            self.send_header('Content-Length', str(len(data)))  # always the whole file's size
            self.end_headers()
            if break_after is not None:  # a server that breaks off mid-file
                self.wfile.write(data[:break_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002 (http.server's signature); keep test output quiet
            pass

    return Handler


@contextlib.contextmanager
def serve_apple_weights(root_dir, archs: Sequence[str] = ('t8',), break_after: Optional[int] = None,
                        generate: bool = True) -> Iterator[MirrorURL]:
    """Serves ``root_dir`` over HTTP on 127.0.0.1 (a free port) for the duration of the block.

    Args:
        root_dir: The site's root; files are read from disk at each request, so a test may replace one mid-way.
        archs: With ``generate``, the variants whose four Apple files (plain / distilled x unfused / ``_reparam``)
            are written under ``root_dir`` first (those already there are kept).
        break_after (int, optional): Send only this many bytes of each file (after a ``Content-Length`` header
            announcing all of it) and close the connection.
        generate (bool): Write the files of ``archs``. Defaults to True.

    Yields:
        MirrorURL: the base URL, ending in ``/``, to put in ``MMFASTVIT_WEIGHTS_MIRROR``; ``.requests`` lists the
        paths asked for.
    """
    root_dir = str(root_dir)
    os.makedirs(root_dir, exist_ok=True)
    if generate:
        build_apple_site(root_dir, archs)
    requests: List[str] = []
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _handler(root_dir, break_after, requests))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = MirrorURL(f'http://127.0.0.1:{server.server_address[1]}/')
    url.requests = requests
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope='session')
def apple_site_dir(tmp_path_factory):
    """A folder with T8's four generated Apple files, written once per session. Do not modify it: a test that changes
    a served file serves its own folder with :func:`serve_apple_weights`."""
    root = tmp_path_factory.mktemp('apple_site')
    build_apple_site(root, ('t8',))
    return root


@pytest.fixture()
def apple_weights_mirror(apple_site_dir, tmp_path, monkeypatch):
    """:func:`serve_apple_weights` of ``apple_site_dir``, with ``MMFASTVIT_WEIGHTS_MIRROR`` set to it and ``TORCH_HOME``
    (so the hub cache) in a fresh folder ``tmp_path / 'torch_home'``; yields the :class:`MirrorURL`."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    with serve_apple_weights(apple_site_dir, generate=False) as url:
        monkeypatch.setenv(MIRROR_ENV, url)
        yield url
