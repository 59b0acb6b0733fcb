import copy
import functools
import os
import os.path as osp

# Set before torch loads its OpenMP runtime, which reads it once (the tools the tests run
# as subprocesses inherit it): idle OpenMP threads sleep instead of spinning. With spinning
# threads (the default), a model test at torch's default 2 threads on 2 cores that other
# processes also use runs 3x slower than at 1 thread (a Faster R-CNN R50 train step on a
# loaded machine: 23 s, against 8 s at 1 thread and 7 s at 2 sleeping threads); sleeping
# threads still use both cores when they are free.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import pytest
import torch


def _cache_mmengine_config_lookups():
    """Cache two lookups behind every ``mmdet::`` / ``mmseg::`` config base for the session.

    For each such base, mmengine reloads ``pkg_resources`` (``is_installed``) and re-reads
    the package's model index and its ~100 metafile YAMLs (``_get_cfg_metainfo``): 1-2 s per
    ``Config.fromfile`` on 2 cores, and the suite parses a few hundred configs. Neither
    answer changes while the tests run (installed packages, files inside them), so both are
    computed once; what a lookup returns (and the ValueError for a name without a metafile,
    which sends mmengine to the package's ``_base_`` files) is what mmengine would give.
    Subprocesses (the tools) are not affected.
    """
    try:
        import mmengine.config.config as config_mod
        import mmengine.config.utils as utils_mod
        from mmengine.fileio import load
    except ImportError:  # the torch-only install (tests/test_torch_only.py)
        return
    if not (hasattr(utils_mod, '_get_cfg_metainfo') and hasattr(config_mod, 'is_installed')):
        return  # another mmengine: leave it alone

    @functools.lru_cache(maxsize=None)
    def model_index(package_path):
        index = load(osp.join(package_path, '.mim', 'model-index.yml'))
        configs = {}
        for meta_path in index['Import']:
            for model_cfg in load(osp.join(package_path, '.mim', meta_path))['Models']:
                if 'Config' in model_cfg:  # the first weights of a config win, as mmengine
                    configs.setdefault(model_cfg['Config'].partition('/')[-1], model_cfg)
        return configs

    def get_cfg_metainfo(package_path, cfg_path):
        configs = model_index(package_path)
        if cfg_path not in configs:
            raise ValueError(f'Expected configs: {configs.keys()}, but got {cfg_path}')
        return configs[cfg_path]

    utils_mod._get_cfg_metainfo = get_cfg_metainfo
    config_mod.is_installed = functools.lru_cache(maxsize=None)(config_mod.is_installed)


_cache_mmengine_config_lookups()


def _cache_config_files():
    """Parse each config file of this repository and of the installed OpenMMLab packages once
    per session: ``Config.fromfile`` re-parses a config's whole ``_base_`` chain (7-9 files,
    with temporary copies of each) for every config, ~0.2 s each, and the suite parses a few
    hundred configs that share their bases. ``Config._file2dict`` (one file with its bases
    merged in) is memoised by path, modification time and size; every call gets its own copy
    of the result, with the attributes mmengine keeps on ``ConfigDict`` (the ``scope`` of a
    base's variables) and the sharing of objects within it, as a fresh parse gives. Files
    elsewhere (the tests' temporary configs) and files that read environment variables
    (``{{$NAME}}``) are parsed every time."""
    try:
        from mmengine.config import Config, ConfigDict
    except ImportError:  # the torch-only install
        return
    original = Config.__dict__.get('_file2dict')
    if not isinstance(original, staticmethod):
        return  # another mmengine: leave it alone
    original = original.__func__
    repo_configs = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs') + os.sep
    cache = {}

    def cacheable(path):
        if not (path.startswith(repo_configs) or f'{os.sep}site-packages{os.sep}' in path):
            return False
        try:
            with open(path, encoding='utf-8') as f:
                return '{{$' not in f.read()
        except OSError:
            return False

    def copy_of(obj, memo):
        if id(obj) in memo:
            return memo[id(obj)]
        if type(obj) in (str, int, float, bool, type(None)):
            return obj
        if type(obj) is ConfigDict or type(obj) is dict:
            new = ConfigDict() if type(obj) is ConfigDict else {}
            memo[id(obj)] = new
            for key, value in dict.items(obj):  # no lazy building, no ConfigDict hooks
                dict.__setitem__(new, key, copy_of(value, memo))
            if type(obj) is ConfigDict:
                for name, value in vars(obj).items():  # `scope`, addict's bookkeeping
                    object.__setattr__(new, name, value)
            return new
        if type(obj) in (list, tuple):
            items = [copy_of(value, memo) for value in obj]
            new = items if type(obj) is list else tuple(items)
            memo[id(obj)] = new
            return new
        new = copy.deepcopy(obj, memo)
        memo[id(obj)] = new
        return new

    def file2dict(filename, use_predefined_variables=True, use_environment_variables=True,
                  lazy_import=None):
        path = osp.abspath(osp.expanduser(filename))
        try:
            stat = os.stat(path)
        except OSError:
            stat = None
        key = (path, stat and stat.st_mtime_ns, stat and stat.st_size,
               use_predefined_variables, use_environment_variables, lazy_import)
        if key not in cache:
            result = original(filename, use_predefined_variables, use_environment_variables,
                              lazy_import)
            if stat is None or not cacheable(path):
                return result
            cache[key] = result
        return copy_of(cache[key], {})

    Config._file2dict = staticmethod(file2dict)


_cache_config_files()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope='module')
def _one_thread(request):
    """Unit-test inputs are tiny: OpenMP hand-offs in small ops (softmax, layer_norm) cost
    milliseconds per call on 2 busy cores and dominate gradcheck. Modules that train real
    models opt out with ``pytestmark = pytest.mark.threads``."""
    if request.node.get_closest_marker('threads'):
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
