"""Facet counts, filters and evidence ordering over one index generation, with NumPy.

Built once per generation from the index's facet postings and sort columns (search.py reads
them from Whoosh); every query then costs a few vectorised operations over a boolean mask of
the matching documents, instead of per-document Python work inside Whoosh's collectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .fields import SORT_COLUMNS

Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class FacetStore:
    """Doc numbers per facet value, live documents, and sort columns of one generation."""

    size: int
    alive: Mask
    postings: dict[str, dict[str, NDArray[np.int32]]]
    columns: dict[str, NDArray[np.int32]]

    def mask_of(self, docnums: Iterable[int]) -> Mask:
        """Boolean mask of the given doc numbers, restricted to live documents."""
        mask = np.zeros(self.size, dtype=bool)
        ids = np.fromiter(docnums, dtype=np.int64)
        if ids.size:
            mask[ids] = True
        return mask & self.alive

    def any_of(self, facet: str, values: Iterable[str]) -> Mask:
        """Documents having at least one of `values` in `facet` (OR within a facet)."""
        mask = np.zeros(self.size, dtype=bool)
        for value in values:
            ids = self.postings.get(facet, {}).get(value)
            if ids is not None:
                mask[ids] = True
        return mask

    def filtered(self, base: Mask, filters: Mapping[str, Iterable[str]], skip: str | None = None) -> Mask:
        """`base` narrowed by every facet filter (AND across facets), except `skip`."""
        mask = base.copy()
        for facet, values in filters.items():
            if facet != skip:
                mask &= self.any_of(facet, values)
        return mask

    def counts(self, facet: str, mask: Mask) -> dict[str, int]:
        """Documents in `mask` per value of `facet` (zero counts left out)."""
        out = {}
        for value, ids in self.postings.get(facet, {}).items():
            n = int(np.count_nonzero(mask[ids]))
            if n:
                out[value] = n
        return out

    def ordered(self, mask: Mask, sort: str) -> NDArray[np.int64]:
        """Doc numbers in `mask`, ordered by the sort's columns (ties by doc number)."""
        ids = np.flatnonzero(mask)
        keys = [self.columns[name][ids] for name in reversed(SORT_COLUMNS[sort])]
        return ids[np.lexsort(keys)] if keys else ids
