"""Helpers shared by the fault-path tests: a process on a fresh System, and the ASCII
layout of a range (docs/design.md, Conventions): one letter per kernel page naming its
folio (A, B, ... in order of first appearance), `.` an empty PTE, `z` the zero page, `p`
an EOF padding page."""

from kernel_model import System


def proc(kernel="4K", page="4K", memory="64M", **knobs):
    s = System(kernel, memory, **knobs)
    return s, s.execve(page_size=page)


def layout(p, addr, nr):
    s = p.system
    pfn, _, heads = p.mm.pgtable.read_ptes(addr, nr)
    names, out = {}, []
    for pf, h in zip(pfn.tolist(), heads.tolist()):
        folio = s.folios.get(h)
        if pf < 0:
            out.append(".")
        elif s.zero_folio is not None and h == s.zero_folio.pfn:
            out.append("z")
        elif folio is not None and folio.padding:
            out.append("p")
        else:
            out.append(names.setdefault(h, chr(ord("A") + len(names))))
    return "".join(out)


def folio_at(p, addr):
    return p.system.pfn_folio(p.mm.pgtable.pte_get(addr)[0])
