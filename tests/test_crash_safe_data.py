"""Crash-safe synthetic data: atomic roots, manifest checks, read-only use, concurrent writers."""
from __future__ import annotations

import contextlib
import glob
import os
import os.path as osp
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from fade_mm.datasets import (
    SyntheticDataError,
    _common,
    ensure_synthetic,
    make_synthetic_ade,
    make_synthetic_coco,
    make_synthetic_coco_panoptic,
    verify_synthetic,
)

SMALL = dict(num_train=6, num_val=2, image_size=64)
MAKE = {'det': make_synthetic_coco, 'seg': make_synthetic_ade,
        'pan': make_synthetic_coco_panoptic}
ALIAS = {'det': 'mmdet', 'seg': 'mmseg', 'pan': 'panoptic'}
# A file of each split of each kind, as named in the manifest.
VAL_FILE = {'det': 'val/000002.png',
            'seg': 'annotations/validation/synthetic_validation_000001.png',
            'pan': 'annotations/panoptic_val/000001.png'}


# A generator's CLI (its ``main``) in a fresh interpreter, minus fade_mm/__init__.py: that one
# imports torch, seconds on busy cores, and the kill points should land in the drawing.
_RUN = ('import sys, types; pkg = types.ModuleType("fade_mm"); pkg.__path__ = [{path!r}]; '
        'sys.modules["fade_mm"] = pkg; '
        'from fade_mm.datasets.synthetic_{kind} import main; main(sys.argv[1:])')


def _cli(kind, root, *args):
    path = osp.dirname(osp.dirname(osp.abspath(_common.__file__)))
    return [sys.executable, '-c', _RUN.format(path=path, kind=kind), '--out', str(root),
            *map(str, args)]


def _leftovers(root):
    return glob.glob(glob.escape(str(root)) + '.tmp-*')


def _dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


@pytest.fixture(params=['det', 'seg', 'pan'])
def small_root(request, tmp_path):
    """A freshly generated small root of each kind: ``(kind, root, manifest)``."""
    kind = request.param
    info = MAKE[kind](str(tmp_path / 'data'), **SMALL)
    return kind, info['root'], verify_synthetic(info['root'])


# ----------------------------------------------------------------------------- killed generator

@pytest.mark.slow
def test_killed_generator_never_leaves_a_partial_root(tmp_path):
    args = ('--num-train', 30, '--num-val', 10, '--image-size', 64)
    ref = tmp_path / 'ref'
    start = time.perf_counter()
    subprocess.run(_cli('det', ref, *args), check=True, capture_output=True, timeout=300)
    duration = time.perf_counter() - start
    want = verify_synthetic(str(ref))['files']

    def check(root):
        # Whatever moment the generator died at, the root is absent or complete: never partial.
        was_there = osp.exists(root)
        if was_there:
            assert verify_synthetic(str(root))['files'] == want
        info = ensure_synthetic(str(root), 'det', num_train=30, num_val=10, image_size=64)
        assert info['generated'] == (not was_there)
        assert verify_synthetic(str(root))['files'] == want
        assert not _leftovers(root)  # the dead generator's directory was cleaned up

    rng = random.Random(12)
    for k, delay in enumerate(sorted(rng.uniform(0.0, duration) for _ in range(4))):
        root = tmp_path / f'kill{k}'
        proc = subprocess.Popen(_cli('det', root, *args), stdout=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check(root)

    # The probe's case, deterministically: killed while drawing the validation split.
    root = tmp_path / 'kill_in_val'
    proc = subprocess.Popen(_cli('det', root, *args), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not glob.glob(glob.escape(str(root)) + '.tmp-*/val/000001.png'):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not osp.exists(root) and len(_leftovers(root)) == 1
    with pytest.raises(SyntheticDataError, match='does not exist'):
        verify_synthetic(str(root))
    check(root)


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    from fade_mm.datasets import synthetic_det

    def boom(root, split, n, params):
        if split == 'val':
            raise RuntimeError('killed in val')
        return real(root, split, n, params)

    real = synthetic_det._generate_split
    monkeypatch.setattr(synthetic_det, '_generate_split', boom)
    with pytest.raises(RuntimeError, match='killed in val'):
        ensure_synthetic(str(tmp_path / 'data'), 'det', **SMALL)
    assert sorted(os.listdir(tmp_path)) == ['data.lock']


def test_leftovers_are_ignored_and_only_dead_local_ones_removed(tmp_path):
    root = str(tmp_path / 'data')
    host = socket.gethostname()
    dead = f'{root}.tmp-{host}-{_dead_pid()}-0000'
    alive = f'{root}.tmp-{host}-{os.getpid()}-0001'
    remote = f'{root}.tmp-elsewhere-{_dead_pid()}-0002'
    for d in (dead, alive, remote):
        os.makedirs(osp.join(d, 'train'))
    assert ensure_synthetic(root, 'det', **SMALL)['generated']
    assert sorted(_leftovers(root)) == sorted([alive, remote])


# ----------------------------------------------------------------------------- damaged roots

def _one_line_error(root, match, **kwargs):
    with pytest.raises(SyntheticDataError) as e:
        ensure_synthetic(root, kwargs.pop('kind'), **kwargs)
    msg = str(e.value)
    assert '\n' not in msg and root in msg and match in msg, msg
    return msg


@pytest.mark.parametrize('damage', ['truncate', 'delete', 'flip', 'extra', 'no_manifest',
                                    'old_manifest'])
def test_damaged_root_is_refused_then_rebuilt(small_root, damage):
    kind, root, manifest = small_root
    rel = VAL_FILE[kind]
    path = osp.join(root, rel)
    with open(path, 'rb') as f:
        data = f.read()
    if damage == 'truncate':
        with open(path, 'wb') as f:
            f.write(data[:len(data) // 2])
        match = f'{rel} has {len(data) // 2} bytes, expected {len(data)}'
    elif damage == 'delete':
        os.remove(path)
        match = f'{rel} missing'
    elif damage == 'flip':
        with open(path, 'wb') as f:
            f.write(data[:-1] + bytes([data[-1] ^ 1]))
        match = f'{rel} differs from its sha256'
    elif damage == 'extra':
        rel = osp.dirname(rel) + '/stray.png'
        with open(osp.join(root, rel), 'wb') as f:
            f.write(data)
        match = f'{rel} is not in manifest.json'
    elif damage == 'no_manifest':
        os.remove(osp.join(root, 'manifest.json'))
        match = 'no manifest.json: half-written, or not generated by fade_mm'
    else:
        with open(osp.join(root, 'manifest.json'), 'w') as f:
            f.write('{"params": {}}')
        match = 'manifest.json is from an older fade_mm'
    msg = _one_line_error(root, match, kind=kind)
    assert 'delete it' in msg and 'regenerate' in msg
    if damage == 'flip':  # sizes alone cannot see it
        ensure_synthetic(root, kind, verify='size')
    # Rebuilt with the manifest's arguments (the defaults when the manifest is gone).
    small = damage not in ('no_manifest', 'old_manifest')
    extra = {} if small else SMALL
    info = ensure_synthetic(root, kind, regenerate=True, **extra)
    assert info['generated'] and verify_synthetic(root)['files'] == manifest['files']
    assert not _leftovers(root)


def test_wrong_kind_and_foreign_directories(tmp_path, small_root):
    kind, root, _ = small_root
    other = 'seg' if kind == 'det' else 'det'
    _one_line_error(root, 'use another root', kind=other)
    foreign = tmp_path / 'mine'
    (foreign / 'train').mkdir(parents=True)
    (foreign / 'notes.txt').write_text('keep me')
    _one_line_error(str(foreign), 'no manifest.json', kind='det')
    # Even when asked to rebuild, a directory with files that are not the generator's stays.
    with pytest.raises(SyntheticDataError, match='holds notes.txt'):
        ensure_synthetic(str(foreign), 'det', regenerate=True, **SMALL)
    assert (foreign / 'notes.txt').read_text() == 'keep me'
    (tmp_path / 'empty_dir').mkdir()
    assert ensure_synthetic(str(tmp_path / 'empty_dir'), 'det', **SMALL)['generated']


def test_root_of_an_older_generator_version_is_redrawn(tmp_path):
    """A complete root drawn by an older generator (det: version 1, before instance masks)
    is redrawn with the arguments that made it."""
    import json
    root = str(tmp_path / 'data')
    info = make_synthetic_coco(root, seed=5, **SMALL)
    with open(osp.join(root, 'manifest.json')) as f:
        manifest = json.load(f)
    manifest['params']['version'] = 1
    with open(osp.join(root, 'manifest.json'), 'w') as f:
        json.dump(manifest, f)
    again = ensure_synthetic(root, 'det')
    assert again['generated'] and again['params'] == info['params']
    assert not ensure_synthetic(root, 'det')['generated']


# ----------------------------------------------------------------------------- read-only use

@contextlib.contextmanager
def _no_writes(monkeypatch):
    """Makes every way the package could write to disk fail loudly."""
    import builtins
    import shutil

    def refuse(*args, **kwargs):
        raise AssertionError(f'write attempted: {args}')

    real_open = builtins.open

    def open_(file, mode='r', *args, **kwargs):
        if any(c in mode for c in 'wax+'):
            refuse(file, mode)
        return real_open(file, mode, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(builtins, 'open', open_)
        for name in ('mkdir', 'makedirs', 'rename', 'replace', 'remove', 'unlink', 'rmdir'):
            m.setattr(os, name, refuse)
        m.setattr(shutil, 'rmtree', refuse)
        yield


def test_complete_root_is_read_without_writing(small_root, monkeypatch):
    kind, root, manifest = small_root
    with _no_writes(monkeypatch):
        assert not ensure_synthetic(root, kind)['generated']
        assert ensure_synthetic(root, ALIAS[kind])['splits'] == MAKE[kind](root, **SMALL)['splits']
        assert not MAKE[kind](root, **SMALL)['generated']
    with pytest.raises(ValueError, match='kind must be one of'):
        ensure_synthetic(root, 'detection')


@pytest.mark.skipif(not hasattr(os, 'geteuid') or os.geteuid() == 0,
                    reason='root ignores file permissions')
def test_complete_root_on_read_only_tree(tmp_path):
    root = str(tmp_path / 'ro' / 'data')
    make_synthetic_coco(root, **SMALL)
    subprocess.run(['chmod', '-R', 'a-w', str(tmp_path / 'ro')], check=True)
    try:
        before = sorted(os.listdir(tmp_path / 'ro'))
        info = ensure_synthetic(root, 'det')
        assert not info['generated'] and info['splits']['val']['num_images'] == 2
        assert not make_synthetic_coco(root, **SMALL)['generated']
        assert sorted(os.listdir(tmp_path / 'ro')) == before
    finally:
        subprocess.run(['chmod', '-R', 'u+w', str(tmp_path / 'ro')], check=True)


# ----------------------------------------------------------------------------- concurrent writers

def test_concurrent_generations_leave_one_valid_root(tmp_path):
    root = tmp_path / 'data'
    args = ('--num-train', 10, '--num-val', 3, '--image-size', 64)
    procs = [subprocess.Popen(_cli('seg', root, *args), stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    # The lock makes the second one wait, then reuse the first one's root.
    assert sorted(o.split(':')[0] for o in outs) == ['up to date, reused', 'wrote']
    assert verify_synthetic(str(root))['counts']['images/training'] == 10
    assert sorted(os.listdir(tmp_path)) == ['data', 'data.lock']


def test_rename_loser_uses_the_winners_root(tmp_path, monkeypatch):
    """Without a lock (non-POSIX), the writer that renames second drops its own copy."""
    from fade_mm.datasets import synthetic_det
    monkeypatch.setattr(_common, '_writer_lock', lambda root: contextlib.nullcontext())
    root = str(tmp_path / 'data')
    real = synthetic_det._generate_split
    raced = []

    def racing(directory, split, n, params):
        if not raced:  # another writer starts, and finishes, while this one draws
            raced.append('started')
            raced.append(make_synthetic_coco(root, **SMALL))
        return real(directory, split, n, params)

    monkeypatch.setattr(synthetic_det, '_generate_split', racing)
    info = make_synthetic_coco(root, **SMALL)
    assert raced[1]['generated'] and not info['generated']
    assert info['splits'] == raced[1]['splits']
    assert sorted(os.listdir(tmp_path)) == ['data']
