"""``speech-gru info``: print a model card: labels, features, architecture, parameters,
test accuracy, operating point."""

from __future__ import annotations

import argparse
import json

from speech_gru.cli.options import CliError, add_model_argument


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="print the model card of a checkpoint or an export")
    add_model_argument(p)
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from speech_gru.analysis.card import format_card, model_card
    from speech_gru.runtime.checkpoint import ModelLoadError

    try:
        card = model_card(args.checkpoint, args.trust_torchscript)
    except ModelLoadError as err:
        raise CliError(str(err)) from None
    print(json.dumps(card, indent=2) if args.json else format_card(card))
    return 0
