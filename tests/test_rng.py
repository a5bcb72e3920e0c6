import hashlib

import numpy as np
import pytest
import torch

from rawsynth.rng import derive_seed, numpy_rng, torch_generator


def test_derived_generators_depend_only_on_seed_key_stream():
    np.random.seed(0)
    torch.manual_seed(0)
    a = numpy_rng(1, "k", "isp").random(4)
    np.random.seed(1)
    torch.manual_seed(1)  # global state plays no part
    assert np.array_equal(a, numpy_rng(1, "k", "isp").random(4))
    assert not np.array_equal(a, numpy_rng(1, "k", "noise").random(4))
    assert not np.array_equal(a, numpy_rng(2, "k", "isp").random(4))
    assert not np.array_equal(a, numpy_rng(1, "k2", "isp").random(4))
    t = torch.randn(4, generator=torch_generator(1, "k"))
    assert torch.equal(t, torch.randn(4, generator=torch_generator(1, "k")))


def test_golden_value_is_stable_across_platforms():
    # SHA-256 based: this value must never change, or every dataset's samples would change.
    assert derive_seed(0, "a", "") == derive_seed(0, "a")
    assert 0 <= derive_seed(0, "a") < 2**63
    digest = hashlib.sha256(b"0\x1fa\x1f").digest()
    assert derive_seed(0, "a") == int.from_bytes(digest[:8], "little") >> 1
    with pytest.raises(TypeError):
        derive_seed("0", "a")
