"""A small PromQL reader for the shipped dashboard and alert checks (tests/ship).

It does not evaluate anything: it finds, in one expression, every metric selector (with
the label names its ``{...}`` matchers use) and every aggregation's ``by``/``without``
labels together with the selectors the aggregation covers, which is what a check needs
to say "this dashboard asks for a metric, or a label, the relay does not export". Syntax
itself is left to ``promtool check rules`` (the real parser); this reader only has to be
right about where names are. Grafana variables (``$namespace``, ``[$__rate_interval]``)
are read as values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Expression", "Grouping", "Selector", "read"]

AGGREGATIONS = frozenset(
    ("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
     "bottomk", "topk", "quantile", "limitk", "limit_ratio")
)  # fmt: skip
# Words that are never metric names where they stand (binary operators, modifiers).
KEYWORDS = frozenset(
    ("by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
     "unless", "offset", "atan2")
)  # fmt: skip

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<var>\$\{[^}]*\}|\$\w+)
  | (?P<number>\d[\w.]*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[(){},=<>+\-*/%^@])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


@dataclass
class Selector:
    """One instant or range vector selector: ``metric{label="v", ...}``."""

    metric: str
    labels: frozenset[str]


@dataclass
class Grouping:
    """``sum by (labels) (...)`` (or ``without``, ``on``, ``ignoring``) over ``selectors``."""

    clause: str
    labels: tuple[str, ...]
    selectors: list[Selector] = field(default_factory=list)


@dataclass
class Expression:
    text: str
    selectors: list[Selector]
    groupings: list[Grouping]


def tokens(text: str) -> list[Token]:
    found: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"cannot read PromQL at {pos}: {text[pos : pos + 20]!r} in {text!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            found.append(Token(kind, match.group()))
        pos = match.end()
    return found


@dataclass
class _Frame:
    grouping: Grouping | None  # an aggregation's frame; None for a call or a parenthesis


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokens(text)
        self.i = 0
        self.selectors: list[Selector] = []
        self.groupings: list[Grouping] = []
        self.frames: list[_Frame] = []

    def peek(self, ahead: int = 0) -> Token | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def take(self, text: str) -> None:
        tok = self.peek()
        if tok is None or tok.text != text:
            raise ValueError(f"expected {text!r} at token {self.i} of {self.text!r}")
        self.i += 1

    def label_list(self) -> tuple[str, ...]:
        self.take("(")
        labels: list[str] = []
        while (tok := self.peek()) is not None and tok.text != ")":
            if tok.kind == "ident":
                labels.append(tok.text)
            elif tok.text != ",":
                raise ValueError(f"unexpected {tok.text!r} in a label list of {self.text!r}")
            self.i += 1
        self.take(")")
        return tuple(labels)

    def matchers(self) -> tuple[frozenset[str], str | None]:
        """``{a="x", b=~"y"}`` -> label names, and the ``__name__`` it pins, if any."""
        self.take("{")
        labels: set[str] = set()
        name: str | None = None
        while (tok := self.peek()) is not None and tok.text != "}":
            if tok.text == ",":
                self.i += 1
                continue
            op, value = self.peek(1), self.peek(2)
            if tok.kind != "ident" or op is None or op.text not in ("=", "!=", "=~", "!~"):
                raise ValueError(f"bad matcher at token {self.i} of {self.text!r}")
            if value is None or value.kind not in ("string", "var"):
                raise ValueError(f"matcher {tok.text} has no value in {self.text!r}")
            if tok.text == "__name__" and op.text == "=":
                name = value.text.strip("\"'`")
            else:
                labels.add(tok.text)
            self.i += 3
        self.take("}")
        return frozenset(labels), name

    def selector(self, metric: str | None) -> None:
        labels: frozenset[str] = frozenset()
        if (tok := self.peek()) is not None and tok.text == "{":
            labels, pinned = self.matchers()
            metric = metric or pinned
        if metric is None:
            raise ValueError(f"a selector without a metric name in {self.text!r}")
        found = Selector(metric, labels)
        self.selectors.append(found)
        for frame in self.frames:
            if frame.grouping is not None:
                frame.grouping.selectors.append(found)

    def read(self) -> Expression:
        while (tok := self.peek()) is not None:
            nxt = self.peek(1)
            if tok.kind == "ident" and tok.text in AGGREGATIONS:
                self.i += 1
                grouping = Grouping("", ())
                if nxt is not None and nxt.text in ("by", "without"):
                    self.i += 1
                    grouping = Grouping(nxt.text, self.label_list())
                self.take("(")
                self.frames.append(_Frame(grouping))
            elif tok.kind == "ident" and tok.text in ("on", "ignoring"):
                self.i += 1
                self.groupings.append(Grouping(tok.text, self.label_list(), self.selectors))
            elif tok.kind == "ident" and tok.text in ("group_left", "group_right"):
                self.i += 1
                if (after := self.peek()) is not None and after.text == "(":
                    self.groupings.append(Grouping(tok.text, self.label_list(), self.selectors))
            elif tok.kind == "ident" and tok.text == "offset":
                self.i += 2  # the duration
            elif tok.kind == "ident" and tok.text in KEYWORDS:
                self.i += 1
            elif tok.kind == "ident" and nxt is not None and nxt.text == "(":
                self.i += 2  # a function call: its arguments are expressions
                self.frames.append(_Frame(None))
            elif tok.kind == "ident":
                self.i += 1
                self.selector(tok.text)
            elif tok.text == "{":
                self.selector(None)
            elif tok.text == "(":
                self.i += 1
                self.frames.append(_Frame(None))
            elif tok.text == ")":
                self.i += 1
                if not self.frames:
                    raise ValueError(f"unbalanced ')' in {self.text!r}")
                self.close(self.frames.pop())
            else:
                self.i += 1
        if self.frames:
            raise ValueError(f"unbalanced '(' in {self.text!r}")
        return Expression(self.text, self.selectors, self.groupings)

    def close(self, frame: _Frame) -> None:
        grouping = frame.grouping
        if grouping is None:
            return
        after = self.peek()
        if not grouping.clause and after is not None and after.text in ("by", "without"):
            self.i += 1  # the trailing form: sum (x) by (labels)
            grouping.clause, grouping.labels = after.text, self.label_list()
        if grouping.clause:
            self.groupings.append(grouping)


def read(text: str) -> Expression:
    """The selectors and groupings of one PromQL expression; ValueError if unreadable."""
    return _Reader(text).read()
