import pytest
import torch


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
