"""`pitcrew slack preview`: the incident message pitcrew would post, from a bundle (and an alert), as
Block Kit JSON and a Block Kit Builder link; no Slack workspace needed (exit 0, 2 bad input)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from bot.slack.preview import PreviewError, builder_link, preview_incident, render_preview


def cli_slack(args: argparse.Namespace) -> int:
    """`pitcrew slack preview`. Exit 0, or 2 for an unreadable bundle or alert file."""
    if args.slack_verb != "preview":  # pragma: no cover - argparse allows only the listed verbs
        return 2
    now = time.time()
    try:
        incident = preview_incident(args.snapshot, args.alert, now=now)
    except PreviewError as exc:
        print(f"pitcrew slack preview: {exc}", file=sys.stderr)
        return 2
    rendered = render_preview(incident, thread=args.thread, now=now)
    print(json.dumps(rendered, indent=2, ensure_ascii=False))
    print(f"\nBlock Kit Builder (message): {builder_link(rendered['message']['blocks'])}")
    for i, reply in enumerate(rendered.get("thread", ()), 1):
        print(f"Block Kit Builder (thread reply {i}): {builder_link(reply['blocks'])}")
    return 0
