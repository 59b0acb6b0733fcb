"""Helpers shared by the synthetic data generators: image-size forms, and crash-safe roots
(atomic generation, manifest verification, :func:`ensure_synthetic`)."""
from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import importlib
import inspect
import json
import os
import os.path as osp
import secrets
import shutil
import socket
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

ImageSize = Union[int, Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]
SizeRange = Tuple[Tuple[int, int], Tuple[int, int]]


def normalise_size(image_size: ImageSize, min_side: int) -> SizeRange:
    """Turns every accepted ``image_size`` form into inclusive ``((h_lo, h_hi), (w_lo, w_hi))``.

    Raises:
        ValueError: on another form, or a side outside ``min_side <= lo <= hi``.
    """
    def as_range(v: Any) -> Tuple[int, int]:
        lo, hi = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
        lo, hi = int(lo), int(hi)
        if not min_side <= lo <= hi:
            raise ValueError(f'image sides must satisfy {min_side} <= lo <= hi, got {v!r}')
        return lo, hi

    if isinstance(image_size, (int, np.integer)):
        return as_range(image_size), as_range(image_size)
    try:
        h, w = image_size
    except (TypeError, ValueError):
        raise ValueError(f'image_size must be int, (H, W) or ((h_lo, h_hi), (w_lo, w_hi)), '
                         f'got {image_size!r}') from None
    return as_range(h), as_range(w)


def parse_size(text: str) -> ImageSize:
    """CLI form: ``'160'``, ``'128x192'``, ``'128-192'`` or ``'128-160x160-224'`` (H x W,
    ranges inclusive)."""
    def side(t: str) -> Tuple[int, int]:
        lo, _, hi = t.partition('-')
        return int(lo), int(hi or lo)

    parts = text.lower().split('x')
    try:
        if len(parts) == 1:
            return side(parts[0]), side(parts[0])
        if len(parts) == 2:
            return side(parts[0]), side(parts[1])
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f'bad image size {text!r}')


# ----------------------------------------------------------------------------- crash-safe roots
#
# A dataset root is written whole or not at all: a generator draws into a temporary sibling
# directory, writes the manifest (every file with its size and sha256) last, and renames the
# directory to the root. A killed generator leaves only its temporary directory, which readers
# never look at; a root therefore either verifies against its manifest or is refused.

MANIFEST = 'manifest.json'
MANIFEST_FORMAT = 2  # 1: the in-place generators before crash-safe roots (no file table)
_TEMP_TAG = '.tmp-'  # ROOT.tmp-<host>-<pid>-<random>: generations in progress, or leftovers
_KINDS = {'det': ('synthetic_det', 'make_synthetic_coco'),
          'seg': ('synthetic_seg', 'make_synthetic_ade'),
          'pan': ('synthetic_pan', 'make_synthetic_coco_panoptic')}
_KINDS.update(mmdet=_KINDS['det'], mmseg=_KINDS['seg'], panoptic=_KINDS['pan'])


class SyntheticDataError(ValueError):
    """A dataset root that must not be used: half-written, damaged or not fade_mm's."""


def _refuse(root: str, problem: str,
            fix: str = 'delete it, or rebuild it with regenerate=True (tools/train.py: '
                       '--regenerate)') -> SyntheticDataError:
    return SyntheticDataError(f'synthetic data root {root}: {problem}; {fix}')


def write_bytes(path: str, data: bytes) -> None:
    # Plain writes: the whole root is published at once, so a single file needs no care.
    with open(path, 'wb') as f:
        f.write(data)


def sha256(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def _tree(root: str) -> List[str]:
    """Every file under ``root`` but the manifest, as sorted ``/``-separated relative paths."""
    out = []
    for d, _, names in os.walk(root):
        out += [osp.relpath(osp.join(d, n), root).replace(os.sep, '/') for n in names]
    return sorted(p for p in out if p != MANIFEST)


def verify_synthetic(root: str, generator: Optional[str] = None,
                     verify: str = 'full') -> Dict[str, Any]:
    """Checks a generated root against its manifest, without writing anything.

    Args:
        root: Dataset root.
        generator: Module name the data must come from (e.g.
            ``'fade_mm.datasets.synthetic_det'``); ``None`` accepts any.
        verify: ``'full'`` checks every file's size and sha256 (about 30 ms for the default
            sizes once cached), ``'size'`` only sizes.

    Returns:
        The manifest: ``format``, ``generator``, ``params`` (generator arguments),
        ``counts`` (files per directory), ``stats`` and ``files`` (``path: [size, sha256]``).

    Raises:
        SyntheticDataError: (a ``ValueError``) with one line naming ``root``, the first
            problem found and the fix.
    """
    if verify not in ('full', 'size'):
        raise ValueError(f"verify must be 'full' or 'size', got {verify!r}")
    if not osp.isdir(root):
        raise _refuse(root, 'does not exist or is not a directory')
    try:
        with open(osp.join(root, MANIFEST), 'rb') as f:
            manifest = json.loads(f.read())
    except FileNotFoundError:
        raise _refuse(root, f'no {MANIFEST}: half-written, or not generated by fade_mm') from None
    except (OSError, ValueError) as e:
        raise _refuse(root, f'unreadable {MANIFEST} ({e})') from None
    if not isinstance(manifest, dict) or manifest.get('format') != MANIFEST_FORMAT:
        raise _refuse(root, f'{MANIFEST} is from an older fade_mm (no file table)')
    if generator is not None and manifest.get('generator') != generator:
        raise _refuse(root, f"holds {manifest.get('generator')} data, not {generator}",
                      'use another root for this kind of data')
    try:
        files = {str(rel): (int(size), str(digest))
                 for rel, (size, digest) in manifest['files'].items()}
        counts = {str(d): int(n) for d, n in manifest['counts'].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _refuse(root, f'malformed {MANIFEST}') from None
    for rel, (size, digest) in sorted(files.items()):
        path = osp.join(root, rel)
        try:
            found = os.stat(path).st_size
        except FileNotFoundError:
            raise _refuse(root, f'{rel} missing') from None
        if found != size:
            raise _refuse(root, f'{rel} has {found} bytes, expected {size} (truncated?)')
        if verify == 'full' and sha256(path) != digest:
            raise _refuse(root, f'{rel} differs from its sha256 in {MANIFEST}')
    extra = sorted(set(_tree(root)) - set(files))
    if extra:  # mmseg scans image directories: a stray file would become a sample
        raise _refuse(root, f'{extra[0]} is not in {MANIFEST}')
    for d, n in sorted(counts.items()):
        found = len([p for p in files if osp.dirname(p) == d])  # = on disk, checked above
        if found != n:
            raise _refuse(root, f'{d}/ holds {found} files, expected {n}')
    return manifest


def _reusable(root: str, generator: str, params: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The manifest of a valid generation with exactly these ``params``, else ``None``."""
    try:
        manifest = verify_synthetic(root, generator)
    except SyntheticDataError:
        return None
    return manifest if manifest['params'] == json.loads(json.dumps(params)) else None


@contextlib.contextmanager
def _writer_lock(root: str) -> Iterator[None]:
    # Writers only (readers need no lock, so a read-only copy works): the ranks of a torchrun
    # job then generate once instead of each drawing the same data.
    with open(root + '.lock', 'a') as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: concurrent writers still end with one whole root
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _temp_name(root: str) -> str:
    return f'{root}{_TEMP_TAG}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}'


def _remove_leftovers(root: str) -> None:
    """Deletes the temporary directories of dead generators of ``root`` on this host.

    Only this host's: on a shared filesystem another node's pid means nothing here.
    """
    if os.name != 'posix':  # os.kill(pid, 0) would terminate the process on Windows
        return
    parent, prefix = osp.dirname(root), osp.basename(root) + _TEMP_TAG
    for name in os.listdir(parent):
        if not name.startswith(prefix):
            continue
        host, _, pid = name[len(prefix):].rpartition('-')[0].rpartition('-')
        if host != socket.gethostname() or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(osp.join(parent, name), ignore_errors=True)
        except OSError:  # alive, owned by another user
            pass


def _check_replaceable(root: str, generator: str, layout: Sequence[str]) -> None:
    # Regenerating swaps the whole directory, so never swap out something that is not ours.
    if not osp.exists(root):
        return
    foreign = sorted(set(os.listdir(root)) - set(layout) - {MANIFEST}) if osp.isdir(root) \
        else [osp.basename(root)]
    if foreign:
        raise _refuse(root, f'not a {generator} dataset (it holds {foreign[0]}), so it is not '
                      f'replaced', 'delete it yourself or choose another root')


def generate_atomic(root: str, generator: str, params: Dict[str, Any], layout: Sequence[str],
                    write: Callable[[str], Tuple[Dict[str, int], Dict[str, Any]]],
                    force: bool = False) -> Tuple[Dict[str, Any], bool]:
    """Reuses a valid generation of ``params`` under ``root``, or writes one atomically.

    Args:
        root: Absolute dataset root.
        generator: Module name recorded in (and required from) the manifest.
        params: Generator arguments (JSON types); a root made with others is regenerated.
        layout: Top-level names the generator writes; a root holding anything else is never
            replaced.
        write: ``write(directory)`` draws the whole dataset into ``directory`` and returns
            ``(counts, stats)``: files per relative directory, and statistics kept in the
            manifest.
        force: Regenerate even if a valid generation exists.

    Returns:
        ``(manifest, generated)``.

    Raises:
        SyntheticDataError: ``root`` exists and holds something else than this generator's
            layout.
    """
    if not force:  # lock-free fast path: works on a read-only copy
        manifest = _reusable(root, generator, params)
        if manifest is not None:
            return manifest, False
    os.makedirs(osp.dirname(root), exist_ok=True)
    with _writer_lock(root):
        if not force:  # another process may have written it while this one waited
            manifest = _reusable(root, generator, params)
            if manifest is not None:
                return manifest, False
        _check_replaceable(root, generator, layout)
        _remove_leftovers(root)
        tmp = _temp_name(root)
        os.mkdir(tmp)
        try:
            counts, stats = write(tmp)
            manifest = dict(format=MANIFEST_FORMAT, generator=generator, params=params,
                            counts=counts, stats=stats,
                            files={rel: [os.stat(osp.join(tmp, rel)).st_size,
                                         sha256(osp.join(tmp, rel))] for rel in _tree(tmp)})
            # No fsync: a SIGKILL loses nothing the kernel holds, and after a power cut the
            # sizes and hashes in the manifest expose what the disk lost.
            with open(osp.join(tmp, MANIFEST), 'w', encoding='utf-8') as f:
                json.dump(manifest, f, indent=1)
            return _publish(tmp, root, generator, params, manifest, force)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # no-op once renamed


def _publish(tmp: str, root: str, generator: str, params: Dict[str, Any],
             manifest: Dict[str, Any], force: bool) -> Tuple[Dict[str, Any], bool]:
    """Renames the finished ``tmp`` to ``root``; a root already there is replaced, unless it
    is an equal generation written concurrently and not ``force`` (then ``tmp`` is dropped)."""
    try:
        os.rename(tmp, root)  # atomic; also replaces an empty directory
        return manifest, True
    except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    winner = None if force else _reusable(root, generator, params)
    if winner is not None:  # a writer without the lock (non-POSIX) finished first
        return winner, False
    old = _temp_name(root)
    os.rename(root, old)  # rename(2) cannot replace a non-empty directory: swap in two steps
    os.rename(tmp, root)
    shutil.rmtree(old, ignore_errors=True)
    return manifest, True


def ensure_synthetic(root: str, kind: str, regenerate: bool = False, verify: str = 'full',
                     **kwargs: Any) -> Dict[str, Any]:
    """Makes sure ``root`` holds a complete synthetic dataset of ``kind``; never a partial one.

    A missing (or empty) root is generated (atomically; concurrent callers generate once). An
    existing root is used as it is, whatever arguments made it, once it verifies against its
    manifest; reading needs no lock and no write access. A complete root drawn by an older
    version of the generator (e.g. detection data from before instance masks) is redrawn with
    its arguments. Temporary directories of killed generators are ignored (and removed by the
    next generation on this host).

    Args:
        root: Dataset root.
        kind: ``'det'`` (:func:`make_synthetic_coco`), ``'seg'`` (:func:`make_synthetic_ade`)
            or ``'pan'`` (:func:`make_synthetic_coco_panoptic`); ``'mmdet'``, ``'mmseg'`` and
            ``'panoptic'`` are aliases.
        regenerate: Rebuild an invalid root (with the arguments in its manifest when it is
            readable, else the defaults) instead of raising. A valid root is kept, so every
            rank of a job may pass it.
        verify: ``'full'`` (sizes and sha256 of every file) or ``'size'``.
        **kwargs: Generator arguments for a root that must be generated (default: the
            generator's defaults); for a rebuild they override those of the manifest.

    Returns:
        The generator's result dict (``root``, ``classes``, ``splits``, ...; ``generated``
        tells whether this call wrote the data).

    Raises:
        SyntheticDataError: (a ``ValueError``) ``root`` is half-written, damaged, of the other
            kind or not fade_mm's, in one line naming the problem and the fix.
        ValueError: unknown ``kind`` or ``verify``.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
    module_name, func_name = _KINDS[kind]
    module = importlib.import_module(f'{__package__}.{module_name}')
    generate = getattr(module, func_name)
    root = osp.abspath(root)
    if not osp.exists(root) or (osp.isdir(root) and not os.listdir(root)):
        return generate(root, **kwargs)
    try:
        manifest = verify_synthetic(root, module.__name__, verify)
    except SyntheticDataError:
        if not regenerate:
            raise
        return generate(root, **{**_arguments(root, module.__name__, generate), **kwargs})
    if manifest['params'].get('version') != module.GENERATOR_VERSION:
        return generate(root, **{**_arguments(root, module.__name__, generate), **kwargs})
    return module._result(root, manifest, generated=False)


def _arguments(root: str, generator: str, generate: Callable[..., Any]) -> Dict[str, Any]:
    """The arguments recorded in ``root``'s manifest, if it is readable and ``generator``'s."""
    try:
        with open(osp.join(root, MANIFEST), 'rb') as f:
            manifest = json.loads(f.read())
        params = manifest['params'] if manifest['generator'] == generator else {}
        accepted = inspect.signature(generate).parameters
        return {k: v for k, v in params.items() if k in accepted and k != 'force'}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
