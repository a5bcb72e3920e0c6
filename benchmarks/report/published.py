"""The paper's published rows (Tables 1 and 8), from ``benchmarks/data/published.yaml`` — labelled as published
everywhere. See ``docs/benchmarks.md``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

__all__ = ["PublishedRow", "published_rows", "citation"]


@dataclass(frozen=True)
class PublishedRow:
    """One published row: ``method`` as shown (aliases applied), the paper's own name, table and metrics."""

    method: str
    paper_name: str
    table: str
    dataset: str
    metrics: dict
    conventions: dict = None

    @property
    def source(self) -> str:
        return f"published, {self.table}"


@lru_cache(maxsize=1)
def _data() -> dict:
    text = resources.files("benchmarks").joinpath("data", "published.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def citation() -> str:
    return " ".join(_data()["citation"].split())


def published_rows(dataset: str) -> list[PublishedRow]:
    """Rows for ``dataset`` (``div2k-val``, ``realsr``, ``drealsr``; none for others), Table 1 first. A row whose
    numbers repeat an earlier row (Table 8's "Ours" = Table 1's "Ours-s1") is shown once."""
    d = _data()
    names, aliases = d["metrics"], d.get("aliases", {})
    out, seen = [], set()
    for table in d["tables"]:
        for row in table["rows"].get(dataset, []):
            name, values = row[0], tuple(float(v) for v in row[1:])
            if values in seen:
                continue
            seen.add(values)
            out.append(PublishedRow(aliases.get(name, name), name, table["label"], dataset,
                                    dict(zip(names, values, strict=True)),
                                    dict(table.get("conventions") or d.get("conventions") or {})))
    return out
