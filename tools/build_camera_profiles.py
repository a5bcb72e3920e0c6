"""Build rawsynth's bundled camera profiles (``rawsynth/profiles/<camera>.json``) from the published data in
``shared/data/`` (see its README): ELD's noise calibrations and LibRaw's colour-matrix table.

Run from the repository root: ``python tools/build_camera_profiles.py ../shared/data``. The output is committed;
this script records how it was made. Conversions (and nothing else):

* ELD ``Kmin``/``Kmax`` → ``k_range``; ``Profile-N.G_scale``/``g_scale``/``R_scale`` → laws ``sigma_tl``/
  ``sigma_gauss``/``sigma_row`` unchanged.
* ELD's ``G_shape`` and ``color_bias`` lists (one entry per equal-width bin of ``[Kmin, Kmax]``) → ``bins``
  with ``K`` at each bin centre; ELD packs Bayer planes R, G1, B, G2 (its ``pack_raw_bayer``, "RGBG"), so the
  colour bias is reordered to rawsynth's R, G1, G2, B.
* LibRaw ``xyz_to_cam_x10000`` / 10000 → ``camera.xyz2cam`` (matched by LibRaw's rule: the first table row
  whose model is a prefix of the camera's model); ``maximum`` → white level when LibRaw overrides it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# camera name in ELD -> (make, EXIF model, black level, white level, where the levels come from)
CAMERAS = {
    "CanonEOS5D4": ("Canon", "EOS 5D Mark IV", 2048, 16383, "14-bit Canon, black 2048 (nominal)"),
    "CanonEOS700D": ("Canon", "EOS 700D", 2048, None, "14-bit Canon, black 2048 (nominal), white: LibRaw"),
    "CanonEOS70D": ("Canon", "EOS 70D", 2048, None, "14-bit Canon, black 2048 (nominal), white: LibRaw"),
    "NikonD850": ("Nikon", "D850", 400, 16383, "14-bit Nikon, black 400 (nominal)"),
    "SonyA7S2": ("Sony", "ILCE-7SM2", 512, 16383, "14-bit, black 512, white 16383 (SID/ELD convention)"),
}
ELD_SRC = ("ELD (Wei et al., CVPR 2020 / TPAMI 2021), Vandermode/ELD camera_params/release/{cam}_params.npy, "
           "{profile}")
LIBRAW_SRC = "LibRaw src/tables/colordata.cpp adobe_coeff (Adobe DNG Converter matrices)"


def libraw_lookup(table: list[dict], make: str, model: str) -> dict | None:
    for row in table:
        if row["make"] == make and row["model"] and model.startswith(row["model"]):
            return row
    return None


def build(data: Path, out: Path) -> list[Path]:
    eld = json.loads((data / "eld_camera_params.json").read_text())
    table = json.loads((data / "camera_color_matrices.json").read_text())["cameras"]
    written = []
    for cam, (make, model, black, white, levels_src) in CAMERAS.items():
        p = eld[cam]
        row = libraw_lookup(table, make, model)
        if white is None:
            white = row["maximum"] if row and row["maximum"] else 16383
        m = row["xyz_to_cam_x10000"] if row and len(row["xyz_to_cam_x10000"]) == 9 else None
        xyz2cam = [[v / 10000 for v in m[i:i + 3]] for i in (0, 3, 6)] if m else None
        n = len(p["G_shape"])
        if len(p["color_bias"]) != n:
            raise SystemExit(f"{cam}: G_shape and color_bias have different bin counts")
        lo, hi = p["Kmin"], p["Kmax"]
        width = (hi - lo) / n
        bins = [{"K": lo + (i + 0.5) * width, "tukey_lambda": p["G_shape"][i],
                 "color_bias": [cb[0], cb[1], cb[3], cb[2]]} for i, cb in enumerate(p["color_bias"])]
        for prof in sorted(k for k in p if k.startswith("Profile-")):
            name = cam if prof == "Profile-1" else f"{cam}-P{prof.split('-')[1]}"
            laws = {"sigma_tl": p[prof]["G_scale"], "sigma_gauss": p[prof]["g_scale"], "sigma_row": p[prof]["R_scale"]}
            src = ELD_SRC.format(cam=cam, profile=prof)
            matrix_src = (f"ColorMatrix: {LIBRAW_SRC}, row {row['make']} {row['model']!r}" if xyz2cam else
                          "ColorMatrix: none in LibRaw's table for this model (Brooks' mix is used)")
            doc = {
                "name": name, "kind": "physics",
                "description": f"{make} {model}: ELD's physics noise calibration ({prof}), Tukey-lambda read noise",
                "source": f"{src}; {matrix_src}; levels: {levels_src}",
                "read_model": "tukey", "k_range": [lo, hi], "lambda_choice": "random",
                "components": ["shot", "read", "row", "color_bias", "quant"],
                "laws": {k: {"slope": v["slope"], "bias": v["bias"], "sigma": v["sigma"]} for k, v in laws.items()},
                "bins": bins,
                "camera": {"make": make, "model": model, "bit_depth": 14, "black_level": black,
                           "white_level": int(white), "xyz2cam": xyz2cam, "source": f"{matrix_src}; {levels_src}"},
            }
            path = out / f"{name}.json"
            path.write_text(json.dumps(doc, indent=1) + "\n")
            written.append(path)
    return written


if __name__ == "__main__":
    data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    for p in build(data, Path(__file__).resolve().parents[1] / "rawsynth" / "profiles"):
        print(p)
