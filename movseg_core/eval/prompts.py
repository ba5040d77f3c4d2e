"""Evaluation vocabulary: dataset class names -> text queries, and predicted ids -> class ids.

The segmenter is asked for ``queries`` (one per class, in class-id order, from an editable YAML
such as ``config/nyu40_prompts.yaml``); its label ids (1..N in query order, 0 = unknown) are
mapped back to class ids through the names the segmenter reports with each result.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from movseg_core.data.nyuv2 import NYU40_CLASSES


def default_prompts_path() -> Path:
    """``config/nyu40_prompts.yaml`` of the source tree."""
    return Path(__file__).resolve().parents[2] / "config" / "nyu40_prompts.yaml"


@dataclass(frozen=True)
class PromptMap:
    """class_names[i] (class id i+1) is asked for as queries[i]."""

    class_names: tuple[str, ...]
    queries: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.queries) or not self.queries:
            raise ValueError(f"{len(self.class_names)} classes but {len(self.queries)} queries")
        dup = sorted({q for q in self.queries if self.queries.count(q) > 1})
        if dup:
            raise ValueError(f"prompts must be distinct (a label must name one class); repeated: {dup}")

    @property
    def num_classes(self) -> int:
        """Class ids 0..num_classes-1 (0 = unlabeled/unknown)."""
        return len(self.class_names) + 1

    def stuff_classes(self, stuff_queries: Sequence[str]) -> frozenset[int]:
        """Class ids whose query is a stuff query (case-insensitive), as the segmenter decides stuff
        (``objects.stuff_queries``: one region per class); e.g. NYU40 wall, floor, door, window, ceiling."""
        stuff = {q.casefold() for q in stuff_queries}
        return frozenset(i for i, q in enumerate(self.queries, start=1) if q.casefold() in stuff)

    def to_class_ids(self, labels: np.ndarray, names: Sequence[str], ids: Sequence[int]) -> np.ndarray:
        """HxW uint16 segmenter labels + the (names, ids) they were made with -> HxW uint16 class ids.

        Raises ValueError when a name is not one of the queries or a pixel holds an id not listed.
        """
        if len(names) != len(ids):
            raise ValueError(f"label info has {len(names)} names but {len(ids)} ids")
        lut = np.zeros(max([0, *ids]) + 1, dtype=np.uint16)
        for name, i in zip(names, ids):
            if name not in self.queries:
                raise ValueError(f"label {i} is {name!r}, which is not one of the evaluation queries "
                                 "(was the vocabulary changed during the evaluation?)")
            if i <= 0:
                raise ValueError(f"label id {i} for {name!r}: ids must be >= 1")
            lut[i] = self.queries.index(name) + 1
        labels = np.asarray(labels)
        if labels.size and int(labels.max()) >= lut.size:
            raise ValueError(f"labels contain id {int(labels.max())}, label info lists only {sorted(ids)}")
        return lut[labels]


def load_prompt_map(path: str | Path | None = None, class_names: Sequence[str] = NYU40_CLASSES) -> PromptMap:
    """Read ``prompts: {class name: query}``; every class needs an entry and no others are allowed.

    An optional ``classes: [name, ...]`` list in the file names the dataset's classes in id order
    (ids 1..N; e.g. synthetic scenes) instead of ``class_names``.
    """
    import yaml

    path = Path(path) if path is not None else default_prompts_path()
    if not path.is_file():
        raise ValueError(f"{path}: prompt mapping not found")
    data = yaml.safe_load(path.read_text()) or {}
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(prompts, dict):
        raise ValueError(f"{path}: expected a mapping 'prompts: {{class name: query}}'")
    if "classes" in data:
        class_names = data["classes"]
        if not isinstance(class_names, list) or not class_names or not all(isinstance(c, str) for c in class_names):
            raise ValueError(f"{path}: 'classes' must be a non-empty list of class names in id order")
    missing = [c for c in class_names if c not in prompts]
    extra = [k for k in prompts if k not in class_names]
    if missing or extra:
        raise ValueError(f"{path}: classes without a prompt {missing}; unknown classes {extra}")
    queries = []
    for c in class_names:
        q = prompts[c]
        if not isinstance(q, str) or not q.strip():
            raise ValueError(f"{path}: prompt for {c!r} must be a non-empty string, got {q!r}")
        queries.append(q.strip())
    return PromptMap(tuple(class_names), tuple(queries))
