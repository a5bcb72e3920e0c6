"""Resume that seeks (issue 16): the shard stream restarts each reader at its saved place (no replay) and gives
bitwise the uninterrupted run's batches, with loader workers, a shuffle buffer spanning shards and DDP rank
splitting; the same for the on-the-fly stream; the guard's counts survive a resume; a world-size change is refused;
a save refused or failed on rank 0 fails every rank (two gloo processes) instead of leaving them at a barrier."""

from __future__ import annotations

import json
import os
import tarfile
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks.perf.resume import write_rekeyed
from rawsynth.shards import iter_shard
from rddm.config import DataConfig, DDNetTrainConfig, OnTheFlyConfig
from rddm.errors import CheckpointError, ConfigError, TrainingDivergedError
from rddm.train.checkpoint import Run, pack_readers, unpack_readers
from rddm.train.distributed import DistEnv
from rddm.train.guard import NonFiniteGuard
from rddm.train.streams import BatchStream, OnTheFlyStream, StreamPosition, resolve_data


def _many_shards(src: Path, dst: Path, shards: int, per_shard: int) -> list[str]:
    """The fixture's samples copied under new keys into ``shards`` tars of ``per_shard`` samples (no stats
    sidecar: read unchecked)."""
    proto = [s for p in sorted(src.glob("shard-*.tar")) for s in iter_shard(p)]
    assert not dst.exists()
    return write_rekeyed(proto, dst, shards * per_shard, per_shard)


def _same(a: dict, b: dict) -> bool:
    return (a["key"] == b["key"] and a["meta"] == b["meta"] and a["pattern"] == b["pattern"]
            and torch.equal(a["raw"], b["raw"]) and torch.equal(a["hq"], b["hq"]))


def _through_checkpoint(pos: StreamPosition) -> StreamPosition:
    """``pos`` as :meth:`Run.load_checkpoint` gives it back from ``trainer_state.json``."""
    packed = json.loads(json.dumps([list(pos), pack_readers(pos.readers)]))
    return StreamPosition(*packed[0], readers=unpack_readers(packed[1]))


@pytest.mark.parametrize("workers, shuffle, rank", [(0, 0, None), (2, 6, 1)])
def test_shard_stream_resumes_by_seeking_bitwise(shards, tmp_path, monkeypatch, workers, shuffle, rank):
    """11 shards of 4 samples, batch 2. (0 workers, file order, one process) and (2 workers, a 6-sample shuffle
    buffer spanning shards, rank 1 of 2: shards 1,3,..,9, split 3/2 over the workers, so one worker ends first):
    resumed at several positions (one before the epoch's end, the rest crosses into epoch 1), through the
    checkpoint's JSON, the batches are bitwise the uninterrupted stream's."""
    if rank is not None:
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
    urls = _many_shards(shards, tmp_path / "many", 11, 4)
    data = DataConfig(mode="ddnet", crop=16, flips=True, shuffle=shuffle, num_workers=workers, handler="raise")
    straight = BatchStream(urls, data, 2, 5)
    n = 26 if rank is None else 12
    ref, pos = [], []
    for _ in range(n):
        ref.append(straight.next())
        pos.append(straight.position)
    per_epoch = 22 if rank is None else 10  # 44 samples; rank 1: 20 samples (worker 0: 12, worker 1: 8)
    assert pos[per_epoch - 1] == (0, per_epoch) and pos[per_epoch] == (1, 1)
    for k in ((3, 14, per_epoch - 1) if rank is None else (1, 4, 7, 9)):
        resumed = BatchStream(urls, data, 2, 5, _through_checkpoint(pos[k - 1]))
        for j in range(k, min(k + 3, n)):
            assert _same(resumed.next(), ref[j]), (k, j)
        assert resumed.position == pos[min(k + 3, n) - 1]


def test_seek_reads_and_decodes_only_what_follows(shards, tmp_path, monkeypatch):
    """Resumed after 20 of 22 batches (file order, no workers): the first batch decodes its 2 samples only, and
    reads the members of those 2 only: shards 0-8 are not opened, shard 9 (where the last sample read sits) is
    streamed past without reading a member; replaying would decode all 42."""
    import rawsynth.data_stages as stages

    urls = _many_shards(shards, tmp_path / "many", 11, 4)
    data = DataConfig(mode="ddnet", crop=16, flips=True, shuffle=0, num_workers=0, handler="raise")
    straight = BatchStream(urls, data, 2, 5)
    for _ in range(20):
        straight.next()
    pos, want = straight.position, straight.next()
    members = len([f for f in next(iter_shard(urls[0])) if not f.startswith("__")])
    decoded, read, opened = [], [], []
    decode = stages.decode_pair
    monkeypatch.setattr(stages, "decode_pair", lambda s, name: decoded.append(s["__key__"]) or decode(s, name))
    extract = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, m: read.append(m.name) or extract(self, m))
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: (opened.append(str(f)) if str(f).endswith(".tar")
                                                            else None) or real_open(f, *a, **k))
    got = BatchStream(urls, data, 2, 5, _through_checkpoint(pos)).next()
    assert _same(got, want) and got["key"] == ["0000040_0000", "0000041_0000"]
    assert decoded == got["key"]
    assert sorted({m.split(".")[0] for m in read}) == got["key"] and len(read) == 2 * members
    assert opened == urls[9:11]  # the shard of the last sample read (streamed past unread), then the next


def test_on_the_fly_stream_resumes_with_workers_and_ranks():
    """On-the-fly pairs, rank 1 of 2 with 2 loader workers: a stream started at a saved position gives bitwise
    the uninterrupted stream's batches (it starts its sampler there: nothing is replayed)."""
    data = DataConfig(mode="ddnet", crop=16, shuffle=8, num_workers=2, onthefly=OnTheFlyConfig(sources=()))
    src = resolve_data(data)  # the 8 bundled photos: 4 samples per rank, 2 batches of 2 an epoch
    straight = OnTheFlyStream(src, 2, 3, rank=1, world_size=2)
    ref = [straight.next() for _ in range(3)]
    resumed = OnTheFlyStream(src, 2, 3, _through_checkpoint(StreamPosition(0, 1)), rank=1, world_size=2)
    for j in (1, 2):
        assert _same(resumed.next(), ref[j])
    assert resumed.position == straight.position == (1, 1)


# ------------------------------------------------------------------------------------- checkpoint state


class _Tiny(torch.nn.Linear):
    """A model a checkpoint can hold: ``save_pretrained`` / ``load_checkpoint_weights``."""

    def __init__(self, value: float = 0.0):
        super().__init__(2, 2)
        torch.nn.init.constant_(self.weight, value)

    def save_pretrained(self, folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), Path(folder) / "w.pt")

    def load_checkpoint_weights(self, folder):
        self.load_state_dict(torch.load(Path(folder) / "w.pt", weights_only=True))


def _cfg() -> DDNetTrainConfig:
    return DDNetTrainConfig(keep_checkpoints=0)


def test_guard_counts_survive_a_resume_and_a_world_size_change_is_refused(tmp_path):
    env = DistEnv(0, 1, 0, torch.device("cpu"))
    run = Run(tmp_path, _cfg(), env, None)
    guard = NonFiniteGuard(env, 3)
    guard.end_step(9, True)
    guard.end_step(10, True)  # two skipped in a row when the checkpoint is written
    pos = StreamPosition(2, 5, readers={"last": 1, "workers": {"0": {"after": [3, 1], "buf": [[2, 0], [3, 1]],
                                                                     "draws": 7}, "1": {"after": [0, 2]}}})
    ckpt = run.save_checkpoint(10, {"m": _Tiny(1.0)}, {"guard": guard}, pos)
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["readers"][0]["workers"]["0"]["buf"] == "2:0 3:1"  # compact: a buffer holds data.shuffle places

    again = NonFiniteGuard(env, 3)
    step, got = Run(tmp_path, _cfg(), env, ckpt).load_checkpoint({"m": _Tiny()}, {"guard": again})
    assert step == 10 and got == (2, 5) and got.readers == json.loads(json.dumps(pos.readers))
    assert (again.skipped, again.consecutive, again.first_bad) == (2, 2, 9)
    with pytest.raises(TrainingDivergedError, match=r"3 steps in a row \(9..11\)"):
        again.end_step(11, True)  # the third in a row, across the resume: the run stops

    # an older checkpoint without the guard's counts still loads (the guard starts at zero)
    blobs = torch.load(ckpt / "training_state.pt", weights_only=True)
    del blobs["guard"]
    torch.save(blobs, ckpt / "training_state.pt")
    fresh = NonFiniteGuard(env, 3)
    Run(tmp_path, _cfg(), env, ckpt).load_checkpoint({"m": _Tiny()}, {"guard": fresh})
    assert (fresh.skipped, fresh.consecutive) == (0, 0)

    two = DistEnv(0, 2, 0, torch.device("cpu"))  # no process group needed: refused before any collective
    with pytest.raises(ConfigError) as e:
        Run(tmp_path, _cfg(), two, ckpt).load_checkpoint({"m": _Tiny()}, {"guard": NonFiniteGuard(two, 3)})
    assert "written by 1 process(es)" in e.value.message and "this run has 2" in e.value.message
    assert "--nproc_per_node 1" in e.value.fix


def _save_worker(rank: int, world: int, init: str, out: str) -> None:
    import rddm.train.checkpoint as ck

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    env = DistEnv(rank, world, rank, torch.device("cpu"))
    run = Run(Path(out) / "run", _cfg(), env, None)
    results = []
    # 1. rank 0 refuses to save non-finite weights (only rank 0 looks at them)
    try:
        run.save_checkpoint(1, {"m": _Tiny(float("nan"))}, {}, StreamPosition(0, 1))
        results.append("saved")
    except CheckpointError as e:
        results.append(e.message)
    # 2. rank 0's write fails (a full disk)
    real = ck.write_checkpoint_dir
    if rank == 0:
        def full(root, name, write, needed):
            raise CheckpointError("no space left to write a checkpoint", path=root, fix="free some space")
        ck.write_checkpoint_dir = full
    try:
        run.save_checkpoint(2, {"m": _Tiny(1.0)}, {}, StreamPosition(0, 2))
        results.append("saved")
    except CheckpointError as e:
        results.append(f"{e.message} | {e.fix}")
    ck.write_checkpoint_dir = real
    # 3. a good save goes through on both
    results.append(run.save_checkpoint(3, {"m": _Tiny(1.0)}, {}, StreamPosition(0, 3)).name)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def test_a_refused_or_failed_save_on_rank_0_fails_every_rank(tmp_path):
    ctx = mp.start_processes(_save_worker, args=(2, f"file://{tmp_path / 'store'}", str(tmp_path)), nprocs=2,
                             join=False, start_method="fork")  # fork: the children need not import torch again
    deadline = time.monotonic() + 60
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:  # a rank left waiting at a barrier: the bug this test is about
            for p in ctx.processes:
                if p.is_alive():
                    os.kill(p.pid, 9)
            pytest.fail("a rank hung after rank 0's save failed")
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0 == r1, (r0, r1)
    assert "non-finite weights" in r0[0] and "not saved" in r0[0]
    assert r0[1] == "no space left to write a checkpoint | free some space"
    assert r0[2] == "step-000003"
    assert [p.name for p in Run.checkpoints(tmp_path / "run")] == ["step-000003"]
