"""Command-line flags declared on the fields of an options dataclass, so that each option is written once: its
default, its flag and its help (stdlib only).

A field made with :func:`option` carries its ``argparse`` flags; :func:`add_arguments` adds them to a parser (``dest``
is the field's name, the default the field's) and :func:`from_args` builds the dataclass from the parsed namespace,
whose ``__post_init__`` then validates.
"""
import argparse
import dataclasses
from typing import Any, Callable, Tuple, TypeVar, Union

T = TypeVar('T')
Lazy = Union[Any, Callable[[], Any]]  # help / choices may be computed when the parser is built (from a registry)


def option(default: Any = dataclasses.MISSING, *flags: str, also: Tuple[Tuple[Tuple[str, ...], dict], ...] = (),
           **argparse_kwargs: Lazy) -> Any:
    """A dataclass field with the default ``default`` and the flag ``flags`` (``argparse_kwargs``: ``help``,
    ``nargs``, ``action``, ...); ``also`` adds more flags for the same field, as ``((flags...), kwargs)`` pairs
    (``--fp16`` / ``--fp32``). Without flags the field is not on the command line."""
    specs = ((flags, argparse_kwargs),) + tuple(also) if flags else ()
    return dataclasses.field(default=default, metadata=dict(cli=specs))


def add_arguments(cls: type, parser: argparse.ArgumentParser) -> None:
    """Adds the flags of ``cls``'s fields to ``parser``, in field order."""
    for f in dataclasses.fields(cls):
        for flags, kwargs in f.metadata.get('cli', ()):
            kwargs = {k: v() if callable(v) and k in ('help', 'choices') else v for k, v in kwargs.items()}
            if f.default is not dataclasses.MISSING:
                kwargs.setdefault('default', f.default)
            parser.add_argument(*flags, dest=f.name, **kwargs)


def from_args(cls: Callable[..., T], namespace: argparse.Namespace) -> T:
    """``cls`` built from the namespace's attributes named as its fields (the others keep their defaults)."""
    given = vars(namespace)
    return cls(**{f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given})
