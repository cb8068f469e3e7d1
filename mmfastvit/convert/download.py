"""Apple's published FastViT ImageNet checkpoints by URL: downloaded once, checked, converted and cached.

A config names Apple's file as mmdet's configs name theirs::

    init_cfg=dict(type='Pretrained', prefix='backbone.',
                  checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
                             'image_classification_models/fastvit_sa12.pth.tar')

:mod:`mmfastvit.models` registers a loader for that prefix with mmengine's ``CheckpointLoader``, which calls
:func:`load_apple_checkpoint`: the first time, the file is downloaded (with a progress bar), checked to be the
FastViT checkpoint its name promises, converted with :func:`~mmfastvit.convert.fastvit_to_mmfastvit` and cached;
afterwards the cached conversion is loaded without touching the network.

The cache lives in torch's hub folder (``torch.hub.get_dir()``: ``$TORCH_HOME/hub``, by default
``~/.cache/torch/hub``), one folder per Apple folder, because the plain and the distilled files share their names::

    checkpoints/mmfastvit/<apple folder>/fastvit_<v>[_reparam].pth.tar              Apple's file, as downloaded
    checkpoints/mmfastvit/<apple folder>/fastvit_<v>[_reparam]_mmfastvit.pth        the conversion (state_dict + meta)
    checkpoints/mmfastvit/<apple folder>/fastvit_<v>[_reparam].json                 the record

Apple publishes no checksums, so the record (written atomically, after both files) keeps the sha256 and size of what
was first downloaded and the sha256 of the conversion. A later download whose sha256 differs is refused, and each
cached file is checked against the record before it is used (a damaged conversion is redone from Apple's file; a
damaged Apple file is downloaded again and must match the record). Everything is written to temporary files first and
renamed into place only once the download is complete (as many bytes as ``Content-Length`` announced) and the
conversion succeeded: a failed or truncated download, or a file that is not the expected FastViT checkpoint, raises an
error naming the URL and leaves nothing in the cache.

``MMFASTVIT_WEIGHTS_MIRROR`` (e.g. ``http://mirror.local/fastvit/`` or ``file:///data/fastvit/``) replaces Apple's
prefix when downloading; the cache and the records stay keyed by Apple's URL.
"""
import datetime
import hashlib
import http.client
import json
import os
import os.path as osp
import re
import tempfile
import urllib.error
import urllib.request
from typing import Any, Callable, NamedTuple, Optional

import torch

from .. import __version__
from ..fileio import CheckpointError, atomic_save, atomic_write
from ..models.pretrained import APPLE_WEIGHTS_PREFIX
from .checkpoint import fastvit_to_mmfastvit

try:
    from tqdm import tqdm
except ImportError:  # torch.hub carries a minimal stand-in for the same interface
    from torch.hub import tqdm

MIRROR_ENV = 'MMFASTVIT_WEIGHTS_MIRROR'
# Apple's folders under APPLE_WEIGHTS_PREFIX, for distilled=False / True.
APPLE_FOLDERS = ('image_classification_models', 'image_classification_distilled_models')
# The variants Apple publishes (github.com/apple/ml-fastvit, README), a subset of FastViT.arch_zoo.
APPLE_ARCHS = ('t8', 't12', 's12', 'sa12', 'sa24', 'sa36', 'ma36')
CACHE_SUBDIR = osp.join('checkpoints', 'mmfastvit')
TIMEOUT_S = 60
_CHUNK = 1 << 20
_FILE_RE = re.compile(r'^(?P<folder>[a-z_]+)/fastvit_(?P<arch>[a-z0-9]+?)(?P<reparam>_reparam)?\.pth\.tar$')


class WeightsDownloadError(CheckpointError):
    """Apple's file could not be downloaded whole (network or HTTP error, fewer bytes than announced)."""


class WeightsChecksumError(CheckpointError):
    """A downloaded or cached file differs from the sha256 recorded when it was first downloaded."""


class AppleWeights(NamedTuple):
    """What an Apple URL names."""
    arch: str
    distilled: bool
    reparam: bool

    @property
    def relpath(self) -> str:
        """The file's path under :data:`APPLE_WEIGHTS_PREFIX`."""
        return f'{APPLE_FOLDERS[self.distilled]}/fastvit_{self.arch}{"_reparam" if self.reparam else ""}.pth.tar'

    @property
    def url(self) -> str:
        return APPLE_WEIGHTS_PREFIX + self.relpath


class CachePaths(NamedTuple):
    """Where one Apple file, its conversion and its record are cached."""
    source: str
    converted: str
    record: str


def apple_weights_url(arch: str, distilled: bool = False, reparam: bool = False) -> str:
    """The URL of Apple's published ImageNet-1k checkpoint of a FastViT variant.

    Args:
        arch (str): One of ``'t8'``, ``'t12'``, ``'s12'``, ``'sa12'``, ``'sa24'``, ``'sa36'``, ``'ma36'``.
        distilled (bool): The model trained with hard distillation from RegNetY-16GF. Defaults to False.
        reparam (bool): The fused (``_reparam``) file; build the model with ``deploy=True`` to load it.
            Defaults to False.

    Example:
        >>> apple_weights_url('sa12')
        'https://docs-assets.developer.apple.com/ml-research/models/fastvit/image_classification_models/fastvit_sa12.pth.tar'
    """
    if not isinstance(arch, str) or arch.lower() not in APPLE_ARCHS:
        raise ValueError(f'arch "{arch}" is not one of {list(APPLE_ARCHS)}')
    return AppleWeights(arch.lower(), bool(distilled), bool(reparam)).url


def parse_apple_weights_url(url: str) -> AppleWeights:
    """The variant, distillation and fusion an Apple URL names.

    Raises:
        CheckpointError: ``url`` is not one of Apple's published FastViT files.
    """
    rel = url[len(APPLE_WEIGHTS_PREFIX):] if url.startswith(APPLE_WEIGHTS_PREFIX) else None
    match = _FILE_RE.match(rel) if rel is not None else None
    if match is None or match['folder'] not in APPLE_FOLDERS or match['arch'] not in APPLE_ARCHS:
        raise CheckpointError(
            f'"{url}" is not one of Apple\'s published FastViT checkpoints: expected {APPLE_WEIGHTS_PREFIX}'
            f'{{{",".join(APPLE_FOLDERS)}}}/fastvit_<v>[_reparam].pth.tar with <v> in {list(APPLE_ARCHS)}')
    return AppleWeights(match['arch'], match['folder'] == APPLE_FOLDERS[1], bool(match['reparam']))


def cache_paths(url: str, hub_dir: Optional[str] = None) -> CachePaths:
    """The cache files of Apple's ``url`` under ``hub_dir`` (default ``torch.hub.get_dir()``)."""
    weights = parse_apple_weights_url(url)
    folder = osp.join(hub_dir or torch.hub.get_dir(), CACHE_SUBDIR, APPLE_FOLDERS[weights.distilled])
    stem = osp.join(folder, osp.basename(weights.relpath)[:-len('.pth.tar')])
    return CachePaths(source=stem + '.pth.tar', converted=stem + '_mmfastvit.pth', record=stem + '.json')


def download_source(url: str) -> str:
    """Where ``url`` is fetched from: ``url`` itself, or its path under ``$MMFASTVIT_WEIGHTS_MIRROR`` when set."""
    mirror = os.environ.get(MIRROR_ENV, '').strip()
    if not mirror:
        return url
    return mirror.rstrip('/') + '/' + parse_apple_weights_url(url).relpath


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def read_record(path: str) -> Optional[dict]:
    """The record at ``path``, or None if there is none.

    Raises:
        CheckpointError: the file is not a record this module wrote.
    """
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
        if not isinstance(record, dict) or not isinstance(record.get('sha256'), str):
            raise ValueError('no "sha256" entry')
    except ValueError as err:
        raise CheckpointError(f'download record "{path}" is unreadable ({err}); expected the JSON mmfastvit writes '
                              f'beside its cached download. Delete it to download the file afresh') from err
    return record


def _write_record(path: str, record: dict) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(record, indent=2, sort_keys=True) + '\n'), mode='w')


def _print_log(message: str) -> None:
    from mmengine.logging import print_log
    print_log(message, logger='current')


def _download(url: str, source: str, dst: str, progress: bool) -> int:
    """Downloads Apple's ``url`` from ``source`` (:func:`download_source`: itself or its mirror) into the open-able
    path ``dst``; returns its size.

    Raises:
        WeightsDownloadError: network or HTTP error, or fewer / more bytes than ``Content-Length`` announced.
    """
    via = f' (from mirror {source})' if source != url else ''
    request = urllib.request.Request(source, headers={'User-Agent': f'mmfastvit/{__version__}'})
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(dst, 'wb') as f:
            length = response.headers.get('Content-Length')
            expected = int(length) if length and length.isdigit() else None
            with tqdm(total=expected, disable=not progress, unit='B', unit_scale=True, unit_divisor=1024,
                      desc=osp.basename(source)) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b''):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise WeightsDownloadError(f'downloading {url}{via} failed: HTTP {err.code} {err.reason}; expected Apple\'s '
                                   f'FastViT checkpoint there. Nothing was cached') from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, 'reason', None) or err
        raise WeightsDownloadError(
            f'downloading {url}{via} failed after {received} bytes: {reason}. Nothing was cached; offline, convert a '
            f'copy of the file with tools/model_converters/fastvit_to_mmfastvit.py and give its path instead, or set '
            f'{MIRROR_ENV} to a folder or server that has it') from err
    if expected is not None and received != expected:
        raise WeightsDownloadError(f'download of {url}{via} is incomplete: received {received} of the {expected} '
                                   f'bytes its Content-Length announced. Nothing was cached; try again')
    if received == 0:
        raise WeightsDownloadError(f'download of {url}{via} is empty (0 bytes); expected Apple\'s FastViT '
                                   f'checkpoint. Nothing was cached')
    return received


def _convert(source: str, url: str, converted: str, source_sha256: str) -> str:
    """Converts the Apple file ``source`` (downloaded from ``url``) to ``converted``; returns that file's sha256.

    Raises:
        CheckpointError: the file is not the FastViT checkpoint ``url`` names.
    """
    weights = parse_apple_weights_url(url)
    form = 'fused (_reparam)' if weights.reparam else 'unfused'
    expected = f'Apple\'s {form} FastViT-{weights.arch.upper()} ImageNet checkpoint'
    try:
        result = fastvit_to_mmfastvit(source, arch=weights.arch)
    except (CheckpointError, FileNotFoundError, KeyError) as err:
        detail = str(err.args[0] if isinstance(err, KeyError) and err.args else err).replace(f'"{source}"', 'it')
        raise CheckpointError(f'{url} is not {expected}: {detail}. Nothing was cached') from err
    wanted_format = 'apple_fused' if weights.reparam else 'apple_unfused'
    if result.source_format != wanted_format:
        raise CheckpointError(f'{url} is not {expected}: its keys are those of the {result.source_format} layout. '
                              f'Nothing was cached')
    meta = dict(result.meta, source=url, source_sha256=source_sha256)
    atomic_save(dict(state_dict=result.state_dict, meta=meta), converted)
    return sha256_of(converted)


def _remove(*paths: str) -> None:
    for path in paths:
        if path and osp.exists(path):
            os.remove(path)


def _make_folder(folder: str) -> list:
    """Creates ``folder`` and returns the folders that did not exist, deepest first (to remove on failure)."""
    created, parent = [], osp.abspath(folder)
    while not osp.isdir(parent):
        created.append(parent)
        parent = osp.dirname(parent)
    os.makedirs(folder, exist_ok=True)
    return created


def fetch_apple_weights(url: str, progress: Optional[bool] = None, hub_dir: Optional[str] = None,
                        log: Optional[Callable[[str], None]] = None) -> str:
    """The path of the cached mmfastvit conversion of Apple's ``url``, downloading and converting it if needed.

    Args:
        url (str): One of Apple's FastViT URLs (:func:`apple_weights_url`).
        progress (bool, optional): Show a progress bar on stderr while downloading. Defaults to True on the first
            process of each machine (``LOCAL_RANK`` unset or 0).
        hub_dir (str, optional): torch hub folder of the cache. Defaults to ``torch.hub.get_dir()``.
        log (callable, optional): Receives one line per step (downloading, converting, a cached file refused).
            Defaults to mmengine's current logger.

    Raises:
        WeightsDownloadError: the download failed or stopped short.
        WeightsChecksumError: the downloaded file's sha256 differs from the recorded one.
        CheckpointError: the file is not the FastViT checkpoint ``url`` names; an unreadable record.
    """
    log = log or _print_log
    if progress is None:
        progress = os.environ.get('LOCAL_RANK', '0') == '0'
    paths = cache_paths(url, hub_dir)
    record = read_record(paths.record)
    if record is not None:
        if osp.isfile(paths.converted) and sha256_of(paths.converted) == record.get('converted_sha256'):
            return paths.converted  # the warm cache: no network
        if osp.isfile(paths.source) and sha256_of(paths.source) == record['sha256']:
            log(f'{paths.converted} is missing or does not match {paths.record}; converting the cached '
                f'{paths.source} again')
            converted_sha256 = _convert(paths.source, url, paths.converted, record['sha256'])
            _write_record(paths.record, dict(record, converted_sha256=converted_sha256, mmfastvit_version=__version__))
            return paths.converted
        if osp.isfile(paths.source):
            log(f'{paths.source} does not match the sha256 in {paths.record}; downloading it again')

    created = _make_folder(osp.dirname(paths.source))
    fd, tmp_source = tempfile.mkstemp(prefix=f'.{osp.basename(paths.source)}.', suffix='.part',
                                      dir=osp.dirname(paths.source))
    os.close(fd)
    wrote_converted = False
    try:
        source = download_source(url)
        log(f'downloading {url}{f" from {source}" if source != url else ""} to {paths.source}')
        size = _download(url, source, tmp_source, progress)
        digest = sha256_of(tmp_source)
        if record is not None and digest != record['sha256']:
            raise WeightsChecksumError(
                f'{url}: the downloaded file (sha256 {digest}, {size} bytes) differs from the one first downloaded '
                f'(sha256 {record["sha256"]}, {record.get("bytes")} bytes, recorded in {paths.record}); refused, '
                f'nothing was cached. If Apple republished the file on purpose, delete that record to accept it')
        log(f'converting {osp.basename(paths.source)} (sha256 {digest}) to {paths.converted}')
        converted_sha256 = _convert(tmp_source, url, paths.converted, digest)
        wrote_converted = True
        os.replace(tmp_source, paths.source)
        first = record or {}
        _write_record(paths.record, dict(
            url=url, sha256=digest, bytes=size, downloaded_from=source,
            downloaded_at=first.get('downloaded_at') or datetime.datetime.now(datetime.timezone.utc).isoformat(),
            converted=osp.basename(paths.converted), converted_sha256=converted_sha256,
            mmfastvit_version=__version__))
    except BaseException:
        _remove(tmp_source, paths.converted if wrote_converted else '')
        for folder in created:  # deepest first; only the folders this call made, and only while empty
            if osp.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        raise
    return paths.converted


def load_apple_checkpoint(url: str, map_location: Any = None) -> dict:
    """mmengine's ``CheckpointLoader`` entry for Apple's URLs: the converted classifier checkpoint
    (``{'state_dict': backbone.* and head.fc.* tensors, 'meta': ...}``), fetched once per machine.

    In a distributed run the first process downloads while the others wait, as mmengine's own HTTP loader does.
    """
    from mmengine.dist import barrier, get_dist_info

    rank, world_size = get_dist_info()
    if rank == 0:
        path = fetch_apple_weights(url)
    if world_size > 1:
        barrier()
        if rank > 0:
            path = fetch_apple_weights(url)
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if checkpoint.get('meta', {}).get('deploy'):
        _print_log(f'{url} is a fused checkpoint: build the backbone with deploy=True to load it')
    return checkpoint
