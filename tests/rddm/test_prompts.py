"""RAW prompt extraction: the text encoder equals diffusers' encode_prompt, the cache, extractor specs, the RAM/DAPE
adapter (against a stand-in ``ram`` package), plugins, and the RPE chain RAW → DDNet/bilinear → PTP → extractor."""

from __future__ import annotations

import sys
import textwrap
import types

import pytest
import torch
from torch import nn

from rawsynth.errors import ShapeError
from rawsynth.isp import ISPParams, fixed_isp_params, process
from rawsynth.mns import Pattern, demosaic_bilinear, mosaic
from rddm.errors import ConfigError, WeightsError
from rddm.models.ddnet import DDNet
from rddm.prompts import (NEGATIVE_PROMPT, FixedPrompt, PromptEncoder, RAMTagger, RawPromptExtractor,
                          build_extractor, raw_to_srgb)

from .conftest import TINY_DDNET


@pytest.fixture(scope="module")
def encoder(sd21_folder) -> PromptEncoder:
    return PromptEncoder.from_sd(sd21_folder)


def _count_rows(enc: PromptEncoder) -> list[int]:
    """Record the batch size of every text-encoder call."""
    rows: list[int] = []
    fwd = enc.text_encoder.forward

    def counting(input_ids, *a, **k):
        rows.append(int(input_ids.shape[0]))
        return fwd(input_ids, *a, **k)

    enc.text_encoder.forward = counting
    return rows


# ------------------------------------------------------------------------------------------------ PromptEncoder


def test_embeddings_equal_stable_diffusion_pipeline_encode_prompt(sd21_folder, encoder):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(sd21_folder), safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False, local_files_only=True)
    prompts = ["a photo of a cat", "red, brick, wall"]
    with torch.no_grad():
        pos, neg = pipe.encode_prompt(prompts, "cpu", 1, True, negative_prompt=[NEGATIVE_PROMPT, ""])
    ours = encoder.encode([*prompts, NEGATIVE_PROMPT, ""])
    assert ours.shape == (4, 77, 32) and ours.dtype == torch.float32 and not ours.requires_grad
    assert torch.equal(ours[:2], pos)
    assert torch.equal(ours[2], neg[0]) and torch.equal(ours[3], neg[1])  # negative and unconditional
    assert not torch.equal(ours[0], ours[1])


def test_each_distinct_text_is_encoded_once(sd21_folder):
    enc = PromptEncoder.from_sd(sd21_folder)
    rows = _count_rows(enc)
    out = enc.encode(["a", "b", "a", "a"])
    assert rows == [2]  # one call, the two distinct texts
    assert torch.equal(out[0], out[2]) and torch.equal(out[0], out[3]) and not torch.equal(out[0], out[1])
    again = enc.encode(["b", "c", "b"])
    assert rows == [2, 1]  # only "c" was new
    assert torch.equal(again[0], out[1])
    enc.encode(["a", "c"])
    assert rows == [2, 1]
    assert enc.cache_info() == {"hits": 3, "misses": 3, "size": 3, "maxsize": 256}
    assert torch.equal(enc.encode("a")[0], out[0])  # a single string is a batch of one


def test_cache_is_a_bounded_lru(sd21_folder):
    enc = PromptEncoder.from_sd(sd21_folder, cache_size=2)
    rows = _count_rows(enc)
    enc.encode(["a", "b"])
    enc.encode(["a"])  # "a" is now the most recent
    enc.encode(["c"])  # evicts "b"
    assert enc.cache_info()["size"] == 2
    enc.encode(["a", "c"])
    assert rows == [2, 1]
    enc.encode(["b"])
    assert rows == [2, 1, 1]
    off = PromptEncoder.from_sd(sd21_folder, cache_size=0)
    rows0 = _count_rows(off)
    off.encode(["x", "x"])
    off.encode(["x"])
    assert rows0 == [1, 1] and off.cache_info()["size"] == 0


def test_cache_is_dtype_aware(sd21_folder):
    enc = PromptEncoder.from_sd(sd21_folder)
    rows = _count_rows(enc)
    e32 = enc.encode(["a photo"])
    enc.to(dtype=torch.float64)
    e64 = enc.encode(["a photo"])
    assert rows == [1, 1] and e64.dtype == torch.float64
    assert torch.allclose(e64.float(), e32, atol=1e-5)
    enc.to(dtype=torch.float32)
    assert torch.equal(enc.encode(["a photo"]), e32) and rows == [1, 1]


def test_from_sd_errors_name_the_folder_and_the_fix(tmp_path, sd21_folder):
    with pytest.raises(WeightsError, match="no such Stable Diffusion folder") as e:
        PromptEncoder.from_sd(tmp_path / "nope")
    assert e.value.path == str(tmp_path / "nope") and "text_encoder/" in e.value.fix
    (tmp_path / "sd" / "tokenizer").mkdir(parents=True)
    for f in (sd21_folder / "tokenizer").iterdir():
        (tmp_path / "sd" / "tokenizer" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(WeightsError, match="no text_encoder/config.json"):
        PromptEncoder.from_sd(tmp_path / "sd")
    (tmp_path / "sd" / "text_encoder").mkdir()
    (tmp_path / "sd" / "text_encoder" / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match="cannot load the text encoder"):
        PromptEncoder.from_sd(tmp_path / "sd")


def test_encode_rejects_non_strings(encoder):
    with pytest.raises(ShapeError):
        encoder.encode([])
    with pytest.raises(ShapeError):
        encoder.encode(["a", 3])


# -------------------------------------------------------------------------------------------------- extractors


@pytest.mark.parametrize("spec, text", [("none", ""), ('fixed:"a photo of a cat"', "a photo of a cat"),
                                        ("fixed:a photo", "a photo"), ("fixed:'it''s'", "it''s"), ("fixed:", "")])
def test_fixed_specs(spec, text):
    ex = build_extractor(spec)
    assert isinstance(ex, FixedPrompt) and ex.text == text and ex.uses_image is False
    assert ex(torch.rand(3, 3, 4, 4)) == [text] * 3
    assert build_extractor(ex.spec) == ex  # the spec round-trips


@pytest.mark.parametrize("spec", ["", "nothing", "none:x", "fixed", "tagger:", "python:", "python:mod",
                                  "python::Cls"])
def test_bad_specs_are_config_errors(spec):
    with pytest.raises(ConfigError):
        build_extractor(spec)


def test_plugin_that_cannot_be_imported():
    with pytest.raises(ConfigError, match="cannot import"):
        build_extractor("python:no_such_module_h5:Tagger")
    with pytest.raises(ConfigError, match="cannot import"):
        build_extractor("python:rddm.prompts:NoSuchClass")


def test_tagger_missing_weights_and_missing_package(tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="no such tagger"):
        build_extractor(f"tagger:{tmp_path / 'none.pth'}")
    with pytest.raises(WeightsError, match="no ram_swin_large_14m.pth"):
        build_extractor(f"tagger:{tmp_path}")
    (tmp_path / "ram_swin_large_14m.pth").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "ram", None)  # not installed
    with pytest.raises(ConfigError, match="ram") as e:
        build_extractor(f"tagger:{tmp_path}")
    assert "pip install git+https://github.com/xinyu1205/recognize-anything.git" in e.value.fix


class _FakeRAM(nn.Module):
    """Stands in for RAM: a parameter to load into, records its input, tags by the brightest channel."""

    def __init__(self, joiner: str):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.joiner, self.seen = joiner, []

    def generate_tag(self, image):
        self.seen.append(image)
        names = ["red", "green", "blue"]
        tags = [self.joiner.join(["photo", names[int(i)]]) for i in image.mean((2, 3)).argmax(1)]
        return tags, ["x"] * len(tags)


@pytest.fixture
def fake_ram(monkeypatch):
    """A stand-in ``ram`` package: ``ram.models.ram`` (upstream, " | ") and ``ram.models.ram_lora.ram`` (the
    SeeSR/OSEDiff fork DAPE needs, ", "); records how the models were built."""
    built = []

    def builder(joiner):
        def ram(pretrained="", **kw):
            built.append((joiner, pretrained, kw))
            return _FakeRAM(joiner)
        return ram

    pkg, models, lora = (types.ModuleType(n) for n in ("ram", "ram.models", "ram.models.ram_lora"))
    models.ram, lora.ram = builder(" | "), builder(", ")
    pkg.models, models.ram_lora = models, lora
    for m in (pkg, models, lora):
        monkeypatch.setitem(sys.modules, m.__name__, m)
    return built


def test_ram_tagger_preprocesses_like_osediff_and_joins_tags(tmp_path, fake_ram):
    from torchvision import transforms

    (tmp_path / "ram_swin_large_14m.pth").write_bytes(b"")
    tagger = build_extractor(f"tagger:{tmp_path / 'ram_swin_large_14m.pth'}")
    assert isinstance(tagger, RAMTagger) and tagger.dape_file is None
    assert fake_ram == [(" | ", str(tmp_path / "ram_swin_large_14m.pth"), {"image_size": 384, "vit": "swin_l"})]
    srgb = torch.rand(2, 3, 40, 56)
    srgb[0, 0] += 2.0  # reddest
    srgb[1, 2] += 2.0  # bluest
    assert tagger(srgb) == ["photo, red", "photo, blue"]  # upstream " | " becomes ", "
    # OSEDiff / SeeSR: transforms.Resize((384, 384)) + Normalize(ImageNet) on the [0, 1] tensor
    oracle = transforms.Compose([transforms.Resize((384, 384)),
                                 transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])(srgb)
    seen = tagger.model.seen[0]
    assert seen.shape == (2, 3, 384, 384) and torch.allclose(seen, oracle, atol=1e-5)


def test_dape_folder_uses_the_ram_lora_fork_and_loads_its_weights(tmp_path, fake_ram):
    (tmp_path / "ram_swin_large_14m.pth").write_bytes(b"")
    torch.save({"w": torch.tensor([1.0, 2.0, 3.0])}, tmp_path / "DAPE.pth")
    tagger = build_extractor(f"tagger:{tmp_path}", dtype=torch.float64)
    assert tagger.dape_file == tmp_path / "DAPE.pth" and fake_ram[0][0] == ", "
    assert torch.equal(tagger.model.w, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    # black after ImageNet normalisation: blue is the least negative channel, (0 - 0.406) / 0.225
    assert tagger(torch.zeros(1, 3, 8, 8)) == ["photo, blue"] and tagger.model.seen[0].dtype == torch.float64


def test_dape_without_the_fork_says_what_to_install(tmp_path, fake_ram, monkeypatch):
    (tmp_path / "ram_swin_large_14m.pth").write_bytes(b"")
    torch.save({}, tmp_path / "DAPE.pth")
    monkeypatch.setitem(sys.modules, "ram.models.ram_lora", None)
    with pytest.raises(ConfigError, match="ram_lora") as e:
        build_extractor(f"tagger:{tmp_path}")
    assert "SeeSR or OSEDiff" in e.value.fix


# ------------------------------------------------------------------------------------------------------------ RPE


PLUGIN = '''
import torch

NAMES = ["red", "green", "blue"]


class ColourTagger:
    """Names each image by its dominant sRGB channel; remembers what it was given."""

    def __init__(self, prefix="a photo of"):
        self.prefix, self.seen = prefix, []

    def __call__(self, srgb):
        self.seen.append(srgb)
        return [f"{self.prefix} {NAMES[int(i)]}" for i in srgb.mean((2, 3)).argmax(1)]
'''


@pytest.fixture
def plugin_module(tmp_path, monkeypatch) -> str:
    (tmp_path / "h5_colour_tagger.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "h5_colour_tagger", raising=False)
    return "h5_colour_tagger"


@pytest.fixture(scope="module")
def ddnet_folder(tmp_path_factory):
    torch.manual_seed(0)
    net = DDNet(**TINY_DDNET)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = tmp_path_factory.mktemp("ddnet") / "ddnet"
    net.save_pretrained(out)
    return out


def _scene():
    """Three flat camera-RGB colours (reddish, green, bluish), one Bayer pattern and one ISP each."""
    pats = [Pattern.RGGB, Pattern.GBRG, Pattern.BGGR]
    lin = torch.tensor([[0.30, 0.25, 0.10], [0.05, 0.30, 0.05], [0.08, 0.20, 0.30]])[:, :, None, None]
    raw = mosaic(lin.expand(3, 3, 16, 24).contiguous(), pats) + 0.01 * torch.rand(3, 1, 16, 24)
    isp = [fixed_isp_params(), fixed_isp_params(red_gain=1.5), fixed_isp_params(blue_gain=2.5)]
    return raw, pats, isp


def test_rpe_gives_the_plugin_the_ptp_srgb_of_ddnet(plugin_module, ddnet_folder, encoder):
    raw, pats, isp = _scene()
    ddnet = DDNet.from_pretrained(ddnet_folder)
    rpe = RawPromptExtractor(build_extractor(f"python:{plugin_module}:ColourTagger:the colour"), encoder, ddnet)
    texts = rpe.texts(raw, pats, isp)
    seen = rpe.extractor.seen[0]
    with torch.no_grad():  # independent oracle: DDNet, then rawsynth's PTP per sample, clamped
        oracle = process(DDNet.from_pretrained(ddnet_folder)(raw, pats), isp).clamp(0, 1)
    assert seen.shape == (3, 3, 16, 24) and torch.equal(seen, oracle)
    assert not torch.equal(seen, process(demosaic_bilinear(raw, pats), isp))  # DDNet was used, not bilinear
    assert texts == ["the colour red", "the colour green", "the colour blue"]
    emb = rpe.embeds(raw, pats, isp)
    assert torch.equal(emb, encoder.encode(texts))


def test_rpe_without_ddnet_is_bilinear_plus_ptp(plugin_module, encoder):
    raw, pats, isp = _scene()
    rpe = RawPromptExtractor(build_extractor(f"python:{plugin_module}:ColourTagger"), encoder)
    texts = rpe.texts(raw, pats, isp)
    oracle = process(demosaic_bilinear(raw, pats), isp).clamp(0, 1)
    assert torch.equal(rpe.extractor.seen[0], oracle)
    assert torch.equal(raw_to_srgb(raw, pats, isp), oracle)
    assert texts == ["a photo of red", "a photo of green", "a photo of blue"]


def test_image_free_extractors_skip_ddnet_and_ptp(encoder, monkeypatch):
    import rddm.prompts.rpe as prompts

    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, *a):
            raise AssertionError("DDNet must not run")

    def no_ptp(*a, **k):
        raise AssertionError("PTP must not run")

    monkeypatch.setattr(prompts, "to_srgb", no_ptp)
    monkeypatch.setattr(prompts, "demosaic_bilinear", no_ptp)
    raw = torch.rand(2, 1, 8, 8)
    for spec, text in (("none", ""), ('fixed:"a sharp photo"', "a sharp photo")):
        rpe = RawPromptExtractor(build_extractor(spec), encoder, ddnet=Boom())
        assert not rpe.uses_image
        assert rpe.texts(raw, "RGGB", None) == [text, text]
        assert torch.equal(rpe.embeds(raw, ["RGGB", "BGGR"], None), encoder.encode([text, text]))


def test_build_from_paths(sd21_folder, ddnet_folder, plugin_module):
    rpe = RawPromptExtractor.build(sd21_folder, f"python:{plugin_module}:ColourTagger", ddnet=ddnet_folder)
    assert isinstance(rpe.ddnet, DDNet) and isinstance(rpe.encoder, PromptEncoder)
    raw, pats, isp = _scene()
    assert rpe.embeds(raw, pats, isp).shape == (3, 77, 32)
    fixed = RawPromptExtractor.build(sd21_folder, "none", ddnet=ddnet_folder)
    assert fixed.ddnet is None  # not loaded: the extractor ignores images


def test_rpe_errors(encoder, plugin_module):
    raw = torch.rand(2, 1, 8, 8)
    rpe = RawPromptExtractor(build_extractor(f"python:{plugin_module}:ColourTagger"), encoder)
    with pytest.raises(ShapeError, match="ISP parameters"):
        rpe.texts(raw, "RGGB", None)
    with pytest.raises(ShapeError):
        rpe.texts(torch.rand(2, 3, 8, 8), "RGGB", fixed_isp_params())
    with pytest.raises(ShapeError, match="3 patterns for a batch of 2"):
        rpe.texts(raw, ["RGGB"] * 3, fixed_isp_params())
    bad = RawPromptExtractor(lambda srgb: ["only one"], encoder)
    with pytest.raises(ConfigError, match="expected a list of 2 strings"):
        bad.texts(raw, "RGGB", fixed_isp_params())
    with pytest.raises(ConfigError, match="no PromptEncoder"):
        RawPromptExtractor(build_extractor("none"), None).embeds(raw, "RGGB", None)


def test_isp_params_per_sample_change_the_prompt(plugin_module):
    """The same RAW rendered with each sample's own white balance: a strong red gain turns it red."""
    lin = torch.tensor([0.20, 0.30, 0.20])[None, :, None, None].expand(2, 3, 8, 8).contiguous()
    raw = mosaic(lin, "RGGB")
    isp = [fixed_isp_params(red_gain=1.0, blue_gain=1.0),
           ISPParams.from_rgb2cam(fixed_isp_params().rgb2cam, 1.0, 4.0, 1.0)]
    rpe = RawPromptExtractor(build_extractor(f"python:{plugin_module}:ColourTagger"), None)
    assert rpe.texts(raw, "RGGB", isp) == ["a photo of green", "a photo of red"]
