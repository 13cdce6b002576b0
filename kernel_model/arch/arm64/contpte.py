"""The contiguous bit (PTE_CONT) over a page table's leaf arrays.

Counterparts: arch/arm64/mm/contpte.c and arch/arm64/include/asm/pgtable.h.

A run is CONT_PTES entries (geometry.cont_pte) whose VA is aligned to CONT_PTE_SIZE.
It is folded (every entry gets PTE_CONT) when, as __contpte_try_fold() checks:
- every entry is valid, the pfns are contiguous and the first is aligned to the run
  (contpte_set_ptes() folds only when addr, next and the PA are CONT_PTE_SIZE aligned);
- all pages belong to one folio (the folio covers the whole run);
- the protections are identical (pte_pgprot() of each entry equals the first's; the
  access/dirty bits are ignored, and this model has none).
A change that touches only part of a folded run unfolds the whole run first
(contpte_try_unfold_partial() in clear/get_and_clear_full_ptes, __contpte_try_unfold()
on a single-entry change); the run is refolded afterwards when the rule holds again.
A change covering whole runs rewrites them without an unfold, as contpte_set_ptes()
and contpte_clear_full_ptes() do.

Counting: a fold is a run that gains PTE_CONT (or is unfolded and refolded by one
change); an unfold is a folded run partially touched by a change.

Contiguous PMDs (CONT_PMDS block entries, arch/arm64/mm/hugetlbpage.c) follow the same
rule over a PageTable's PMD block entries: hugetlb is their only Linux user, so a
folio must cover the whole CONT_PMD_SIZE run.
"""

from __future__ import annotations

import numpy as np


def ilog2(n: int) -> int:
    return int(n).bit_length() - 1


def contpte_runs_ok(pfn2: np.ndarray, prot2: np.ndarray, folio2: np.ndarray) -> np.ndarray:
    """For runs laid out as rows (nruns, CONT_PTES): True where a run may be folded."""
    c = pfn2.shape[1]
    first = pfn2[:, :1]
    return ((first[:, 0] >= 0)
            & (first[:, 0] % c == 0)
            & (pfn2 == first + np.arange(c, dtype=np.int64)).all(axis=1)
            & (prot2 == prot2[:, :1]).all(axis=1)
            & (folio2 == folio2[:, :1]).all(axis=1))


def contpte_update(pfn, prot, folio, cont, e0: int, e1: int, cont_ptes: int) -> tuple[int, int]:
    """After a change to entries [e0, e1) of one leaf table, recompute PTE_CONT for every
    run the change touched. The arrays are one table's rows (views, updated in place);
    `cont` still holds the bits from before the change. Returns (folds, unfolds)."""
    if e0 >= e1:
        return 0, 0
    c = cont_ptes
    r0, r1 = e0 // c, -(-e1 // c)
    if r1 - r0 <= _FEW_RUNS:
        return _contpte_update_few(pfn, prot, folio, cont, e0, e1, c, r0, r1)
    sl = slice(r0 * c, r1 * c)
    cont2 = cont[sl].reshape(-1, c)
    was = cont2[:, 0].copy()
    partial = np.zeros(r1 - r0, np.bool_)
    partial[0] |= e0 % c != 0
    partial[-1] |= e1 % c != 0
    unfold = was & partial
    ok = contpte_runs_ok(pfn[sl].reshape(-1, c), prot[sl].reshape(-1, c), folio[sl].reshape(-1, c))
    cont2[:] = ok[:, None]
    folds = int(np.count_nonzero(ok & (~was | unfold)))
    return folds, int(np.count_nonzero(unfold))


# A change touching at most this many runs (a fault, one folio's set_ptes) is screened
# run by run with scalar reads first: most such runs are not fully mapped yet, and
# reading two descriptors settles that without the ~15 array operations of the full check.
_FEW_RUNS = 2


def _contpte_update_few(pfn, prot, folio, cont, e0, e1, c, r0, r1) -> tuple[int, int]:
    folds = unfolds = 0
    for r in range(r0, r1):
        s, e = r * c, (r + 1) * c
        was = bool(cont[s])
        partial = (r == r0 and e0 % c != 0) or (r == r1 - 1 and e1 % c != 0)
        first = int(pfn[s])
        ok = first >= 0 and first % c == 0 and int(pfn[e - 1]) == first + c - 1
        if ok:
            ok = bool(contpte_runs_ok(pfn[s:e].reshape(1, c), prot[s:e].reshape(1, c),
                                      folio[s:e].reshape(1, c))[0])
        if was != ok or was:
            cont[s:e] = ok
        if was and partial:
            unfolds += 1
        if ok and (not was or (was and partial)):
            folds += 1
    return folds, unfolds


def contpte_set_update(pfn, prot, folio, cont, e0: int, e1: int, cont_ptes: int,
                       va_pa_congruent: bool) -> tuple[int, int]:
    """contpte_update() after set_ptes() stored one folio's contiguous pfns with one prot in
    [e0, e1): every run wholly inside is foldable exactly when the PA is congruent to the VA
    modulo the run (contpte_set_ptes()), so only the partially covered edge runs need the
    full check."""
    c = cont_ptes
    r0, r1 = -(-e0 // c), e1 // c  # wholly covered runs [r0, r1)
    if r0 >= r1:
        return contpte_update(pfn, prot, folio, cont, e0, e1, c)
    folds = unfolds = 0
    was = cont[r0 * c:r1 * c:c]
    if va_pa_congruent:
        folds += int(np.count_nonzero(~was))
    cont[r0 * c:r1 * c] = va_pa_congruent
    for a, b in ((e0, r0 * c), (r1 * c, e1)):
        if a < b:
            f, u = contpte_update(pfn, prot, folio, cont, a, b, c)
            folds, unfolds = folds + f, unfolds + u
    return folds, unfolds


def contpmd_update(blocks: dict, g: int, cont_pmds: int, pages_per_pmd: int,
                   touched_was_cont: bool) -> tuple[int, int]:
    """After PMD block entry g changed (set or cleared), recompute the contiguous bit of
    its CONT_PMDS run. `blocks` maps a PMD entry index to its pgtable.Block (pfn, prot,
    folio_pfn, folio_nr, cont). Returns (folds, unfolds)."""
    g0 = g - g % cont_pmds
    run = [blocks.get(k) for k in range(g0, g0 + cont_pmds)]
    was = touched_was_cont or any(b is not None and b.cont for b in run)
    ok = all(b is not None for b in run)
    if ok:
        first = run[0]
        ok = (first.pfn % (cont_pmds * pages_per_pmd) == 0
              and all(b.pfn == first.pfn + k * pages_per_pmd and b.prot == first.prot
                      and b.folio_pfn == first.folio_pfn for k, b in enumerate(run)))
    for b in run:
        if b is not None:
            b.cont = ok
    # a single-entry change is always partial for a run of more than one entry
    unfolds = 1 if was else 0
    folds = 1 if ok else 0
    return folds, unfolds
