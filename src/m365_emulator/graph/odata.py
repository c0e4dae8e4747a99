"""The OData `$filter` subset Microsoft Graph accepts on the emulated endpoints.

A tokenizer, a recursive-descent parser producing a small expression tree, and an
evaluator over plain records. Endpoint-specific rules (which properties and operators an
endpoint allows) live with the endpoints; this module only knows the OData syntax.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Literal

Value = str | datetime | int | float | bool | None

COMPARISON_OPERATORS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
STRING_FUNCTIONS = frozenset({"contains", "startswith", "endswith"})
_KEYWORD_VALUES: dict[str, Value] = {"true": True, "false": False, "null": None}


class ODataError(ValueError):
    """A `$filter` Graph would reject; the message is safe to show to the client."""


class TokenKind(Enum):
    DATETIME = "datetime"
    NUMBER = "number"
    STRING = "string"
    NAME = "name"
    OPEN = "("
    CLOSE = ")"
    COMMA = ","
    END = "end of input"


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    position: int


# Order matters: a timestamp starts like a number, so it is tried first.
_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<comma>,)
    """,
    re.VERBOSE,
)
_GROUP_KINDS = {
    "datetime": TokenKind.DATETIME,
    "number": TokenKind.NUMBER,
    "string": TokenKind.STRING,
    "name": TokenKind.NAME,
    "open": TokenKind.OPEN,
    "close": TokenKind.CLOSE,
    "comma": TokenKind.COMMA,
}


def tokenize(text: str) -> Iterator[Token]:
    """The tokens of `text`, ending with an END token."""
    position = 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if match is None or match.lastgroup is None:
            if text[position] == "'":
                raise ODataError(
                    f"Syntax error: unterminated string literal at position {position} in '{text}'."
                )
            raise ODataError(
                f"Syntax error: character '{text[position]}' is not valid at position "
                f"{position} in '{text}'."
            )
        if match.lastgroup != "space":
            yield Token(_GROUP_KINDS[match.lastgroup], match.group(), position)
        position = match.end()
    yield Token(TokenKind.END, "", len(text))


@dataclass(frozen=True, slots=True)
class Comparison:
    """`property operator literal`, e.g. `status eq 'delivered'`."""

    property: str
    operator: str
    value: Value


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """`function(property,'text')`; the function name is stored lower-cased."""

    function: str
    property: str
    argument: str


@dataclass(frozen=True, slots=True)
class Negation:
    operand: Expression


@dataclass(frozen=True, slots=True)
class Junction:
    operator: Literal["and", "or"]
    operands: tuple[Expression, ...]


Expression = Comparison | FunctionCall | Negation | Junction


def parse_filter(text: str) -> Expression:
    """Parse a `$filter` value; raises ODataError with Graph-like wording on bad syntax."""
    if not text.strip():
        raise ODataError("The $filter query option must not be empty.")
    return _Parser(text).parse()


def conjuncts(expression: Expression) -> list[Expression]:
    """The operands of a top-level `and` chain (the expression itself otherwise)."""
    if isinstance(expression, Junction) and expression.operator == "and":
        return [part for operand in expression.operands for part in conjuncts(operand)]
    return [expression]


def referenced_properties(expression: Expression) -> set[str]:
    """Every property name the expression compares or passes to a function."""
    if isinstance(expression, Junction):
        return set().union(*(referenced_properties(operand) for operand in expression.operands))
    if isinstance(expression, Negation):
        return referenced_properties(expression.operand)
    return {expression.property}


def parse_datetime(text: str) -> datetime:
    """An OData DateTimeOffset literal as an aware datetime."""
    return datetime.fromisoformat(text)


class _Parser:
    def __init__(self, text: str) -> None:
        self._text = text
        self._tokens = list(tokenize(text))
        self._index = 0

    def parse(self) -> Expression:
        expression = self._or()
        self._expect(TokenKind.END)
        return expression

    # grammar: or := and ('or' and)* ; and := unary ('and' unary)* ;
    #          unary := 'not' unary | primary
    def _or(self) -> Expression:
        operands = [self._and()]
        while self._keyword("or"):
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else Junction("or", tuple(operands))

    def _and(self) -> Expression:
        operands = [self._unary()]
        while self._keyword("and"):
            operands.append(self._unary())
        return operands[0] if len(operands) == 1 else Junction("and", tuple(operands))

    def _unary(self) -> Expression:
        if self._keyword("not"):
            return Negation(self._unary())
        return self._primary()

    def _primary(self) -> Expression:
        token = self._peek()
        if token.kind is TokenKind.OPEN:
            self._advance()
            expression = self._or()
            self._expect(TokenKind.CLOSE)
            return expression
        name = self._expect(TokenKind.NAME)
        if self._peek().kind is TokenKind.OPEN:
            return self._function_call(name)
        op_token = self._expect(TokenKind.NAME)
        if op_token.text not in COMPARISON_OPERATORS:
            raise self._error(op_token, "expected a comparison operator (eq, ne, gt, ge, lt, le)")
        return Comparison(name.text, op_token.text, self._literal())

    def _function_call(self, name: Token) -> FunctionCall:
        function = name.text.lower()
        if function not in STRING_FUNCTIONS:
            raise ODataError(f"An unknown function with name '{name.text}' was found.")
        self._expect(TokenKind.OPEN)
        prop = self._expect(TokenKind.NAME)
        self._expect(TokenKind.COMMA)
        argument = self._literal()
        self._expect(TokenKind.CLOSE)
        if not isinstance(argument, str):
            raise ODataError(f"The function '{name.text}' needs a string literal argument.")
        return FunctionCall(function, prop.text, argument)

    def _literal(self) -> Value:
        token = self._advance()
        if token.kind is TokenKind.STRING:
            return token.text[1:-1].replace("''", "'")
        if token.kind is TokenKind.DATETIME:
            try:
                return parse_datetime(token.text)
            except ValueError:
                raise self._error(token, "invalid date and time literal") from None
        if token.kind is TokenKind.NUMBER:
            return float(token.text) if "." in token.text else int(token.text)
        if token.kind is TokenKind.NAME and token.text in _KEYWORD_VALUES:
            return _KEYWORD_VALUES[token.text]
        raise self._error(token, "expected a literal value")

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token.kind is TokenKind.NAME and token.text == word:
            self._advance()
            return True
        return False

    def _peek(self) -> Token:
        return self._tokens[self._index]

    def _advance(self) -> Token:
        token = self._tokens[self._index]
        if token.kind is not TokenKind.END:
            self._index += 1
        return token

    def _expect(self, kind: TokenKind) -> Token:
        token = self._advance()
        if token.kind is not kind:
            raise self._error(token, f"expected {kind.value}")
        return token

    def _error(self, token: Token, what: str) -> ODataError:
        found = token.text or TokenKind.END.value
        return ODataError(
            f"Syntax error: {what} but found '{found}' at position {token.position} "
            f"in '{self._text}'."
        )


Lookup = Callable[[str], Value]


def evaluate(expression: Expression, lookup: Lookup) -> bool:
    """Whether a record (given by a property lookup) matches; strings compare case-insensitively.

    Exchange compares addresses, subjects and ids without regard to case, which is what the
    emulated endpoints need. `lookup` raises ODataError for an unknown property.
    """
    if isinstance(expression, Junction):
        results = (evaluate(operand, lookup) for operand in expression.operands)
        return all(results) if expression.operator == "and" else any(results)
    if isinstance(expression, Negation):
        return not evaluate(expression.operand, lookup)
    if isinstance(expression, FunctionCall):
        actual = lookup(expression.property)
        if not isinstance(actual, str):
            return False
        haystack, needle = actual.lower(), expression.argument.lower()
        if expression.function == "contains":
            return needle in haystack
        if expression.function == "startswith":
            return haystack.startswith(needle)
        return haystack.endswith(needle)
    return _compare(lookup(expression.property), expression.operator, expression.value)


_ORDERINGS: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


def _compare(actual: Value, op: str, expected: Value) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        actual, expected = actual.lower(), expected.lower()
    elif actual is not None and expected is not None and not _comparable(actual, expected):
        raise ODataError(
            "A binary operator with incompatible types was detected. Found operand types "
            f"'{edm_type(actual)}' and '{edm_type(expected)}' for operator kind '{op}'."
        )
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if actual is None or expected is None:
        return False
    return bool(_ORDERINGS[op](actual, expected))


def _comparable(a: Value, b: Value) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return True
    return type(a) is type(b)


def edm_type(value: Value) -> str:
    """The OData (EDM) type name of a literal, as Graph names it in error messages."""
    if isinstance(value, bool):
        return "Edm.Boolean"
    if isinstance(value, datetime):
        return "Edm.DateTimeOffset"
    if isinstance(value, int):
        return "Edm.Int32"
    if isinstance(value, float):
        return "Edm.Double"
    if value is None:
        return "null"
    return "Edm.String"
