"""``all_reduce_grads`` averages (DDP's convention), in two real gloo processes: rank 0's gradient 1, rank 1's 3 ->
2 on both (a sum would give 4, a no-op 1 and 3: the ranks would still agree after a sum, which is why the
end-to-end DDP test alone could not tell); a parameter only one rank used gets half its gradient; one no rank
used keeps ``grad = None``."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rddm.train.distributed import DistEnv, all_reduce_grads


def _worker(rank: int, world: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        env = DistEnv(rank, world, rank, torch.device("cpu"))
        a, b, c = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
        a.grad = torch.full((3,), 1.0 + 2 * rank)
        if rank == 1:
            b.grad = torch.full((3,), 4.0)
        all_reduce_grads([a, b, c], env)
        torch.save({"a": a.grad, "b": b.grad, "c": c.grad}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_gradients_are_averaged_not_summed(tmp_path):
    init = f"file://{tmp_path / 'store'}"
    mp.spawn(_worker, args=(2, init, str(tmp_path)), nprocs=2, join=True)
    for r in range(2):
        g = torch.load(tmp_path / f"rank{r}.pt")
        assert torch.equal(g["a"], torch.full((3,), 2.0)), g
        assert torch.equal(g["b"], torch.full((3,), 2.0)), g
        assert g["c"] is None
