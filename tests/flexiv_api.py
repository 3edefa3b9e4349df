"""The API of a flexivrdk-like module as plain data, to hold the stand-ins (drivers.flexiv.standin) against
the real wheels: every public name with its kind; for an enum its members and values; for a class its
methods' signatures and its fields; for a plain value its repr.

A signature is the parameter list a caller sees, "(robot_sn, network_interface_whitelist=[], verbose=True,
lite=False)": names and defaults without types or `self`. pybind11's are read from the first line of each
docstring (every overload of an overloaded one); a Python stand-in's from inspect, where a positional-only
parameter reads `arg<i>` as pybind11 names the unnamed ones and a tuple default reads as a list.

    python tests/flexiv_api.py flexivrdk    # prints the description as JSON (run with the wheel on PYTHONPATH)

Standard library only, so it runs under a bare PYTHONPATH next to an unpacked wheel.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

_PYBIND_METHOD = "instancemethod"


def describe(module: ModuleType) -> dict[str, Any]:
    names = sorted(n for n in dir(module) if not n.startswith("_"))
    return {
        "version": getattr(module, "__version__", None),
        "names": {name: _describe(getattr(module, name)) for name in names},
    }


def _describe(value: Any) -> dict[str, Any]:
    if isinstance(value, type):
        if hasattr(value, "__members__"):
            return {"kind": "enum", "members": {n: int(m) for n, m in value.__members__.items()}}
        methods, fields = _methods(value), _fields(value)
        others = sorted(n for n in _members(value) if not n.startswith("_") and n not in methods and n not in fields)
        return {"kind": "class", "methods": methods, "fields": fields, "others": others}
    if inspect.ismodule(value):
        return {"kind": "module"}
    if callable(value):
        return {"kind": "function", "signatures": _signatures(value, value.__name__)}
    return {"kind": "value", "repr": repr(value)}


def _members(cls: type) -> dict[str, Any]:
    """The class's own attributes and its bases' (not object's), nearest first."""
    out: dict[str, Any] = {}
    for base in cls.__mro__:
        if base is object or base.__module__ == "pybind11_builtins":
            continue
        for name, attr in vars(base).items():
            out.setdefault(name, attr)
    return out


def _methods(cls: type) -> dict[str, list[str]]:
    out = {}
    for name, attr in _members(cls).items():
        if name.startswith("_") and name != "__init__":
            continue
        if type(attr).__name__ == _PYBIND_METHOD or inspect.isfunction(attr):
            out[name] = _signatures(attr, name)
    return dict(sorted(out.items()))


def _fields(cls: type) -> list[str]:
    members = _members(cls)
    slots = [s for base in cls.__mro__ for s in getattr(base, "__slots__", ())]
    properties = [n for n, a in members.items() if isinstance(a, property) and not n.startswith("_")]
    return sorted(set(slots) | set(properties))


def _signatures(func: Any, name: str) -> list[str]:
    if type(func).__name__ == _PYBIND_METHOD or type(func).__name__ == "builtin_function_or_method":
        return _pybind_signatures(func.__doc__ or "", name)
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    parts = []
    for index, param in enumerate(params):
        shown = f"arg{index}" if param.kind is param.POSITIONAL_ONLY else param.name
        if param.kind is param.VAR_POSITIONAL:
            shown = f"*{param.name}"
        elif param.kind is param.VAR_KEYWORD:
            shown = f"**{param.name}"
        elif param.default is not param.empty:
            default = list(param.default) if isinstance(param.default, tuple) else param.default
            shown += f"={default!r}"
        parts.append(shown)
    return [f"({', '.join(parts)})"]


def _pybind_signatures(doc: str, name: str) -> list[str]:
    lines = doc.strip().splitlines()
    if not lines:
        return []
    if lines[0].startswith(f"{name}(*args, **kwargs)"):
        heads = [m.group(1) for line in lines if (m := re.match(rf"^\d+\. ({re.escape(name)}\(.*)$", line))]
    else:
        heads = [lines[0]]
    return [_pybind_parameters(head[len(name) :]) for head in heads]


def _pybind_parameters(text: str) -> str:
    """'(self: X, a: T = d, b: U) -> R' as '(a=d, b)'."""
    body = text[1 : text.rindex(") -> ")] if ") -> " in text else text[1:-1]
    parts = []
    for param in _split_top_level(body):
        if param.startswith("*"):
            parts.append(param.split(":")[0])
            continue
        name, _, rest = param.partition(":")
        name = name.strip()
        if name == "self":
            continue
        default = _top_level_default(rest)
        parts.append(name if default is None else f"{name}={default}")
    return f"({', '.join(parts)})"


def _top_level(text: str) -> Iterator[int]:
    """Indexes of the characters outside brackets and quotes (brackets and quote marks themselves excluded)."""
    depth, quote = 0, ""
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([{<":
            depth += 1
        elif char in ")]}>":
            depth -= 1
        elif depth == 0:
            yield index


def _split_top_level(text: str) -> list[str]:
    commas = [index for index in _top_level(text) if text[index] == ","]
    bounds = zip([-1, *commas], [*commas, len(text)], strict=True)
    parts = [text[start + 1 : end].strip() for start, end in bounds]
    return parts[:-1] if parts and not parts[-1] else parts


def _top_level_default(text: str) -> str | None:
    for index in _top_level(text):
        if text.startswith(" = ", index):
            return text[index + 3 :].strip()
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/flexiv_api.py MODULE", file=sys.stderr)
        return 2
    print(json.dumps(describe(importlib.import_module(argv[0])), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
