"""Reports: the paper's published rows (:mod:`.published`), Markdown tables (:mod:`.table`) and the static HTML
report (:mod:`.html`). See ``docs/benchmarks.md``."""
