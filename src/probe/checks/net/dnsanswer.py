"""Which records of a reply answer the question: judged as a stub resolver does (RFC 1034 3.6.2, 4.3.2).

A server may put anything in the answer section: records of other names (a stale or hostile cache),
other classes, a CNAME chain with a loop or a gap. A resolver takes only the chain that starts at the
question's name: records of the question's class, owned by the name asked or by the target of a CNAME
already on the chain. probe does the same, so an extra ``A`` record of some other name can never satisfy
``answers_contain``. dnspython's ``Message.resolve_chaining`` is the reference (tests/test_dns_answers.py).
"""

from __future__ import annotations

from typing import NamedTuple

from probe.checks.net.dnswire import ANY, CNAME, Malformed, Query, Record, Response

MAX_CHAIN = 16
"""CNAMEs followed at most, as dnspython's resolver (``dns.message.MAX_CHAIN``); longer is a loop."""


class Answer(NamedTuple):
    records: tuple[Record, ...]  # of the asked type (any type for ANY), owned by the end of the chain
    cnames: tuple[str, ...] = ()  # the chain's targets, in order
    ignored: tuple[Record, ...] = ()  # answer-section records that answer nothing

    @property
    def values(self) -> list[str]:
        return [r.text for r in self.records]


def follow(response: Response, query: Query) -> Answer:
    """The records answering ``query``: the CNAME chain from the question's name, then the asked type.

    A question of type CNAME or ANY is answered by the name's own records: the chain is not followed.
    Raises ``Malformed`` for a chain longer than ``MAX_CHAIN``.
    """
    owned: dict[str, list[Record]] = {}
    for record in response.answers:
        if record.rdclass == query.rdclass:
            owned.setdefault(record.name.lower(), []).append(record)
    name, cnames, used = query.name, list[str](), set[int]()
    while True:
        here = owned.get(name, [])
        matching = [r for r in here if query.rdtype in (ANY, r.rdtype)]
        if matching or query.rdtype in (CNAME, ANY):
            break
        alias = next((r for r in here if r.rdtype == CNAME), None)
        if alias is None:
            break
        if len(cnames) == MAX_CHAIN:
            raise Malformed(f"CNAME chain longer than {MAX_CHAIN} (a loop?) from {query.name}")
        cnames.append(alias.text)
        used.add(id(alias))
        name = alias.text.lower()
    used.update(id(r) for r in matching)
    ignored = tuple(r for r in response.answers if id(r) not in used)
    return Answer(tuple(matching), tuple(cnames), ignored)
