"""Size and encode/decode speed of the candidate encodings of the 16-bit members (RAW mosaic, linear HQ).
See ``docs/benchmarks.md``."""

from __future__ import annotations

import argparse
import time

import numpy as np


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(path: str, repeat: int = 5) -> list[dict]:
    from rawsynth.io.png16 import decode_png16, encode_png16
    from rawsynth.shards import decode_sample, iter_shard
    from rawsynth.shards.npy import decode_npy, encode_npy

    arrays = {"raw": [], "hq": []}
    for s in iter_shard(path):
        d = decode_sample(s)
        arrays["raw"].append(d["raw_dn"])
        arrays["hq"].append(np.rint(d["hq"].astype(np.float64) * 65535).astype(np.uint16))
    rows = []
    codecs = {"png16": (encode_png16, lambda b: decode_png16(b, "bench")), "npy": (encode_npy, decode_npy)}
    for member, arrs in arrays.items():
        for name, (enc, dec) in codecs.items():
            blobs = [enc(a) for a in arrs]
            assert all(np.array_equal(dec(b), a) for a, b in zip(arrs, blobs)), f"{name} {member} not exact"
            n = len(arrs)
            enc_all = lambda enc=enc, arrs=arrs: [enc(a) for a in arrs]  # noqa: E731
            dec_all = lambda dec=dec, blobs=blobs: [dec(b) for b in blobs]  # noqa: E731
            rows.append({"member": member, "codec": name, "shape": "x".join(map(str, arrs[0].shape)),
                         "bytes": sum(map(len, blobs)) / n,
                         "encode_ms": 1e3 * _best(enc_all, repeat) / n,
                         "decode_ms": 1e3 * _best(dec_all, repeat) / n})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shard")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)
    print("| member | codec | shape | bytes/sample | encode ms | decode ms |\n|---|---|---|---|---|---|")
    for r in measure(a.shard, a.repeat):
        print(f"| {r['member']} | {r['codec']} | {r['shape']} | {r['bytes']:,.0f} | {r['encode_ms']:.2f} | "
              f"{r['decode_ms']:.2f} |")


if __name__ == "__main__":
    main()
