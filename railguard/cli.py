"""`railguard`: the one command line over every package, and the only module that imports them all.

The gateway (`serve`, `prepare`, `records`, `review`, `keys`), the classifiers (`classifiers`,
`classify`), steering with railguard's refusal detector (`steer`), training (`train`) and evaluation
(`eval`) keep their own CLIs; this module only dispatches, so no package has to import another for the
sake of the command line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]


def _steer(argv: list[str]) -> int:
    from classifiers.refusals import is_refusal
    from steering.cli import main as steering_main

    return steering_main(argv, is_refusal=is_refusal)


def _classifiers(argv: list[str]) -> int:
    from classifiers.cli import main as classifiers_main

    return classifiers_main(argv)


def _train(argv: list[str]) -> int:
    from trainer.cli import main as train_main

    return train_main(argv)


def _registry(argv: list[str]) -> int:
    from trainer.registry_cli import main as registry_main

    return registry_main(argv)


def _data(argv: list[str]) -> int:
    from trainer.data_cli import main as data_main

    return data_main(argv)


def _label(argv: list[str]) -> int:
    from trainer.nightly import label_main

    return label_main(argv)


def _eval(argv: list[str]) -> int:
    from evaluation.cli import main as eval_main

    return eval_main(argv)


_COMMANDS: dict[str, tuple[Callable[[list[str]], int], bool]] = {
    # name: (entry point, whether it takes the command name itself as its first argument)
    "classifiers": (_classifiers, True),
    "classify": (_classifiers, True),
    "steer": (_steer, False),
    "train": (_train, False),
    "eval": (_eval, False),
    "registry": (_registry, False),
    "data": (_data, False),
    "label": (_label, False),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _COMMANDS:
        entry, keep_name = _COMMANDS[args[0]]
        return entry(args if keep_name else args[1:])
    from gateway.cli import main as gateway_main

    return gateway_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
