"""Megatron-LM-style flags and YAML files -> any config dataclass tree: every entry point's parser.

An entry point declares its flags once, as a dataclass: each leaf field is the flag
``--field-name`` (Megatron-LM's names with underscores), nested dataclass fields are sections
(flattened: flag names are unique across the tree), and each field's one-line attribute docstring
is its ``--help`` text. ``--config run.yaml`` gives base values (flat keys, flag names with dashes
or underscores); flags after it override the YAML. Values are coerced to the field's type while
parsing; ``Literal[...]`` fields accept only their listed values, so a typo fails in milliseconds
with the choices named, before anything heavy is imported. Bool flags stand alone (``--bf16``),
take an explicit ``true|false``, or are negated (``--no-exact-dedup`` for ``exact_dedup``). List
fields take every value up to the next flag. A repeated flag replaces its earlier value (as with
argparse, so a script may append overrides to a shared command line). Fields
marked ``positional()`` are filled, in order, by arguments that follow no flag. A field named
for what it holds keeps Megatron-LM's flag with ``flag_name()`` (``cfg.model.preset`` is
``--model``).

Entry points with several commands (``convert_checkpoint.py hf-to-mcore ...``) map command names to
config classes. ``run_entry_point`` parses, prints ``--help``, and turns a ValueError into one
``error:`` line with exit code 2.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import os
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

POSITIONAL = "positional"
FLAG_NAME = "flag_name"
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")

ConfigSpec = type | Mapping[str, type]
"""A root config class, or command name -> root config class."""


def positional(default: Any = dataclasses.MISSING) -> Any:
    """A field filled by a bare command-line argument (list fields take all of them)."""
    return dataclasses.field(default=default, metadata={POSITIONAL: True})


def flag_name(name: str, default: Any = dataclasses.MISSING) -> Any:
    """A field whose flag is ``--name`` (Megatron-LM's) while the field says what it holds."""
    return dataclasses.field(default=default, metadata={FLAG_NAME: name})


def _key(f: dataclasses.Field) -> str:
    """The flag name (underscored) of a dataclass field."""
    return f.metadata.get(FLAG_NAME, f.name)


class HelpRequested(Exception):
    """``-h``/``--help`` was given: the text to print is the exception's message."""


@dataclasses.dataclass(frozen=True)
class Flag:
    """One leaf field of a config tree, as the command line sees it."""

    name: str
    """The flag without dashes, underscored (the field name unless ``flag_name()`` says otherwise)."""
    attribute: str
    """The dataclass field that holds the value."""
    path: tuple[str, ...]
    """Section fields leading from the root to the dataclass that holds it."""
    type: Any
    """The field's resolved annotation."""
    default: Any
    """Default value; dataclasses.MISSING when the flag is required."""
    help: str
    """The field's attribute docstring."""
    positional: bool

    @property
    def flag(self) -> str:
        """``--field-name``."""
        return "--" + self.name.replace("_", "-")


def normalize_key(key: str) -> str:
    """'--tensor-model-parallel-size' / 'tensor_model_parallel_size' -> the field name."""
    return key.lstrip("-").replace("-", "_")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the string literal that follows its declaration in ``cls``'s source, or in
    the source of the dataclass it inherits the field from."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[1:]):
        if dataclasses.is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    return {**docs, **_own_field_docs(cls)}


def _own_field_docs(cls: type) -> dict[str, str]:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


@functools.cache
def flags(root: type) -> dict[str, Flag]:
    """Every leaf field of the tree under ``root``, by field name (names are unique)."""
    found: dict[str, Flag] = {}

    def walk(cls: type, path: tuple[str, ...]) -> None:
        hints, docs = typing.get_type_hints(cls), field_docs(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if _is_section(hints[f.name]):
                walk(hints[f.name], (*path, f.name))
                continue
            key = _key(f)
            if key in found:
                raise TypeError(f"{root.__name__}: field {key} is declared twice")
            found[key] = Flag(name=key, attribute=f.name, path=path, type=hints[f.name],
                              default=_default(f), help=docs.get(f.name, ""),
                              positional=f.metadata.get(POSITIONAL, False))

    walk(root, ())
    return found


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(underlying type, accepts None) for annotations like ``int | None``."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"config fields take one type or that type | None, not {tp}")
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _item_type(tp: Any) -> Any | None:
    """The element type of list[X] / tuple[X, ...]; None for scalar types."""
    if typing.get_origin(tp) in (list, tuple):
        return typing.get_args(tp)[0]
    return None


def type_name(tp: Any) -> str:
    """A short readable type: int, str | None, {a,b}, list[str]."""
    base, nullable = _unwrap_optional(tp)
    if typing.get_origin(base) is Literal:
        text = "{" + ",".join(str(v) for v in typing.get_args(base)) + "}"
    elif _item_type(base) is not None:
        text = f"list[{type_name(_item_type(base))}]"
    else:
        text = getattr(base, "__name__", str(base))
    return f"{text} | None" if nullable else text


def _coerce_scalar(flag: Flag, base: Any, value: Any) -> Any:
    if typing.get_origin(base) is Literal:
        choices = typing.get_args(base)
        for choice in choices:
            if value == choice or str(value) == str(choice):
                return choice
        raise ValueError(f"{flag.flag} {value!r}: choose one of {', '.join(map(str, choices))}")
    if base is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in _TRUE + _FALSE:
            return str(value).lower() in _TRUE
        raise ValueError(f"{flag.flag}: cannot read {value!r} as true/false")
    try:
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            number = float(value) if isinstance(value, str) and "e" in value.lower() else value
            if isinstance(number, float) and not number.is_integer():
                raise ValueError(value)
            return int(number)
        return base(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{flag.flag}: cannot read {value!r} as {type_name(base)}") from err


def coerce(flag: Flag, value: Any) -> Any:
    """A YAML or command-line value converted to the flag's type (ValueError if it cannot be)."""
    base, nullable = _unwrap_optional(flag.type)
    if value is None or (nullable and isinstance(value, str) and value.lower() in ("none", "null")):
        if nullable:
            return None
        raise ValueError(f"{flag.flag} needs a value, not null")
    item = _item_type(base)
    if item is None:
        return _coerce_scalar(flag, base, value)
    values = value.split() if isinstance(value, str) else list(value)
    items = [_coerce_scalar(flag, item, v) for v in values]
    return tuple(items) if typing.get_origin(base) is tuple else items


def _resolve(token: str, known: Mapping[str, Flag]) -> tuple[Flag, bool]:
    """(flag, negated) for a ``--name``; ``--no-name`` negates a bool field ``name``."""
    key = normalize_key(token)
    if key in known and not known[key].positional:
        return known[key], False
    if key.startswith("no_") and key[3:] in known and _unwrap_optional(known[key[3:]].type)[0] is bool:
        return known[key[3:]], True
    raise ValueError(f"unknown flag --{key.replace('_', '-')} (see --help for the flags)")


def parse_cli(argv: list[str], known: Mapping[str, Flag]) -> tuple[str | None, dict[str, Any]]:
    """Split argv into (--config path, {field: raw value}); raises HelpRequested on -h/--help."""
    config_path, values = None, {}
    slots = [f for f in known.values() if f.positional]
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token in ("-h", "--help"):
            raise HelpRequested
        if not token.startswith("--"):
            if not slots:
                raise ValueError(f"unexpected argument {token!r}: flags look like --name value")
            slot = slots[0]
            if _item_type(_unwrap_optional(slot.type)[0]) is None:
                values[slot.name] = token
                slots.pop(0)
            else:
                values.setdefault(slot.name, []).append(token)
            continue
        name, eq, inline = token.partition("=")
        if normalize_key(name) == "config":
            if not eq and (i >= len(argv) or argv[i].startswith("--")):
                raise ValueError("--config takes one YAML file")
            config_path = inline if eq else argv[i]
            i += 0 if eq else 1
            continue
        flag, negated = _resolve(name, known)
        base = _unwrap_optional(flag.type)[0]
        if base is bool:
            if eq:
                value = inline
            elif i < len(argv) and argv[i].lower() in _TRUE + _FALSE:
                value, i = argv[i], i + 1
            else:
                value = "true"
            values[flag.name] = (not _coerce_scalar(flag, bool, value)) if negated else value
        elif _item_type(base) is not None:
            items = [inline] if eq else []
            while not eq and i < len(argv) and not argv[i].startswith("--"):
                items.append(argv[i])
                i += 1
            values[flag.name] = items
        else:
            if not eq and (i >= len(argv) or argv[i].startswith("--")):
                raise ValueError(f"{flag.flag} needs a value")
            values[flag.name] = inline if eq else argv[i]
            i += 0 if eq else 1
    return config_path, values


def load_yaml(path: str | Path, known: Mapping[str, Flag]) -> dict[str, Any]:
    """A flat mapping of flag names to values from a YAML config file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config {path}: no such file")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of flag names to values")
    values = {normalize_key(str(k)): v for k, v in data.items()}
    for key in values:
        if key not in known:
            raise ValueError(f"{path}: unknown key {key!r} (keys are flag names, see --help)")
    return values


def build(root: type, values: Mapping[str, Any]) -> Any:
    """Instantiate ``root`` from {field: already-coerced value}; missing required fields raise."""
    known = flags(root)

    def make(cls: type, path: tuple[str, ...]) -> Any:
        hints, kwargs = typing.get_type_hints(cls), {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if _is_section(hints[f.name]):
                kwargs[f.name] = make(hints[f.name], (*path, f.name))
            elif _key(f) in values:
                kwargs[f.name] = values[_key(f)]
            elif known[_key(f)].default is dataclasses.MISSING:
                flag = known[_key(f)]
                what = f"the {flag.name.upper()} argument" if flag.positional else flag.flag
                raise ValueError(f"{what} is required (see --help)")
        return cls(**kwargs)

    return make(root, ())


def flat_values(config: Any) -> dict[str, Any]:
    """Every leaf field of a config tree by its flag name (what a checkpoint's ``args`` records)."""
    values = {}
    for f in flags(type(config)).values():
        node = config
        for section in f.path:
            node = getattr(node, section)
        values[f.name] = getattr(node, f.attribute)
    return values


def parse_args(root: type, argv: list[str]) -> Any:
    """The config tree from ``[--config X.yaml] [--flag value ...]`` (flags override the YAML)."""
    known = flags(root)
    config_path, cli = parse_cli(argv, known)
    raw = load_yaml(config_path, known) if config_path else {}
    raw.update(cli)
    return build(root, {key: coerce(known[key], value) for key, value in raw.items()})


def parse_command(commands: Mapping[str, type], argv: list[str]) -> tuple[str, Any]:
    """(command name, its config) from ``COMMAND [flags]``."""
    if not argv or argv[0] in ("-h", "--help"):
        raise HelpRequested
    if argv[0] not in commands:
        raise ValueError(f"unknown command {argv[0]!r}: choose one of {', '.join(commands)}")
    return argv[0], parse_args(commands[argv[0]], argv[1:])


def _describe(cls: type) -> str:
    return (inspect.getdoc(cls) or "").split("\n")[0]


def help_text(root: type, prog: str, description: str = "") -> str:
    """Usage, then every flag grouped by section, with its type, help line and default."""
    known = flags(root)
    slots = " ".join(f.name.upper() + ("..." if _item_type(f.type) else "")
                     for f in known.values() if f.positional)
    lines = [f"usage: {prog} {slots + ' ' if slots else ''}[--config X.yaml] [--flag value ...]"]
    lines += [description, ""] if description else [""]
    section = None
    for f in known.values():
        if f.path != section:
            section = f.path
            lines.append(f"{'.'.join(section) or 'options'}:")
        default = (" [required]" if f.default is dataclasses.MISSING else
                   "" if f.default is None else f" [default: {f.default}]")
        name = f.name.upper() if f.positional else f.flag
        lines.append(f"  {name} {type_name(f.type)}")
        lines.append(f"      {f.help}{default}")
    return "\n".join(lines)


def commands_help(commands: Mapping[str, type], prog: str, description: str = "") -> str:
    """Usage of a multi-command entry point: one line per command."""
    lines = [f"usage: {prog} {{{','.join(commands)}}} [--flag value ...]", description, ""]
    lines += [f"  {name:<14} {_describe(cls)}" for name, cls in commands.items()]
    lines += ["", f"{prog} COMMAND --help lists the command's flags"]
    return "\n".join(lines)


def flag_surface(spec: ConfigSpec) -> str:
    """Every flag with its type and default, one per line: what golden files freeze."""
    if isinstance(spec, Mapping):
        return "".join(f"[{name}]\n{flag_surface(cls)}" for name, cls in spec.items())
    lines = []
    for f in flags(spec).values():
        default = "REQUIRED" if f.default is dataclasses.MISSING else repr(f.default)
        lines.append(f"{f.name.upper() if f.positional else f.flag} {type_name(f.type)} = {default}\n")
    return "".join(lines)


def run_entry_point(spec: ConfigSpec, run: Callable[[Any], int | None] | Mapping[str, Callable],
                    argv: list[str] | None = None, *, prog: str, description: str = "") -> int:
    """Parse ``argv`` into ``spec``'s config and call ``run`` with it (per command for a mapping).

    Returns the exit code: 0 after ``--help``, 2 with one ``error:`` line for bad flags or a
    ValueError raised by ``run``, else what ``run`` returns (None = 0).
    """
    argv = sys.argv[1:] if argv is None else argv
    # transformers' per-tensor "Loading weights" bars would bury each tool's own lines.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        if isinstance(spec, Mapping):
            try:
                command, config = parse_command(spec, argv)
            except HelpRequested:
                if argv and argv[0] in spec:
                    raise HelpRequested(help_text(spec[argv[0]], f"{prog} {argv[0]}",
                                                  _describe(spec[argv[0]]))) from None
                raise HelpRequested(commands_help(spec, prog, description)) from None
            return run[command](config) or 0
        try:
            config = parse_args(spec, argv)
        except HelpRequested:
            raise HelpRequested(help_text(spec, prog, description)) from None
        return run(config) or 0
    except HelpRequested as text:
        print(text)
        return 0
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
