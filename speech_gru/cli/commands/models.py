"""``speech-gru models``: the models that ship with the package, with their card figures
(``speech_gru.runtime.bundled``)."""

from __future__ import annotations

import argparse
import json

from speech_gru.core.audio import printable


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "models",
        help="list the bundled models and their measured figures",
        description="List the models that ship with the package: each is used by name of "
        "its file (--checkpoint PATH), and the first (the default) by every command given "
        "no --checkpoint.",
    )
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from speech_gru.runtime.bundled import DEFAULT, bundled_models

    models = bundled_models()
    if args.json:
        print(json.dumps([{"path": str(m.path), **m.card} for m in models], indent=2))
        return 0
    if not models:
        print("no bundled models in this installation")
    for model in models:
        card = model.card
        default = " (default)" if model.name == DEFAULT else ""
        print(f"{model.name}{default}: {card.get('description', '')}")
        print(f"  file: {printable(model.path)} ({model.path.stat().st_size / 1e6:.2f} MB)")
        print(f"  card: {printable(model.card_text)}")
        print(f"  labels: {' '.join(card.get('labels', []))}")
        point = card.get("operating_point") or {}
        if point:
            print(
                f"  operating point: threshold {point.get('threshold')}, average "
                f"{point.get('average_s')} s, calibrated for {point.get('target_fa_per_hour')} "
                "false alarms/h"
            )
        for figure in card.get("figures", []):
            print(f"  {figure['what']}: {figure['value']}")
    return 0
