"""`hil list`: the built-in scenarios (with guest and tags), suites and guest profiles, as text or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console as Terminal
from rich.markup import escape
from rich.text import Text

from hil.cli_run import GENERATED_SUITES
from hil.guest.profiles import get_profile, profile_names
from hil.reports.terminal import listing
from hil.runset import load_suite, suite_names
from hil.scenario import builtin_names, load_scenario, scenarios_tagged
from hil.tokio.suite import SUITE_DESCRIPTION as TOKIO_DESCRIPTION
from hil.tokio.suite import SUITE_NAME as TOKIO_SUITE

# Generated suites are built when run (tokio's needs an image): only their words are known up front.
GENERATED_DESCRIPTIONS = {TOKIO_SUITE: TOKIO_DESCRIPTION}


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print scenarios, suites and guests as JSON")
    parser.add_argument("--tag", action="append", default=[], metavar="TAG",
                        help="only scenarios with this tag (repeatable: any of them)")  # fmt: skip


def catalog(tags: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Everything `hil list` shows, as plain data (the JSON output and the text both come from this)."""
    names = scenarios_tagged(tags) if tags else builtin_names()
    return {"scenarios": [_scenario(name) for name in names], "suites": _suites(), "guests": _guests()}


def _scenario(name: str) -> dict[str, Any]:
    scenario = load_scenario(name)
    return {"name": name, "description": scenario.description, "guest": scenario.guest,
            "tags": list(scenario.tags), "steps": len(scenario.steps), "source": str(scenario.source)}  # fmt: skip


def _suites() -> list[dict[str, Any]]:
    suites = []
    for name in suite_names():
        plan = load_suite(name)
        scenarios = list(dict.fromkeys(cell.label for cell in plan.cells))
        suites.append({"name": name, "description": plan.description, "runs": len(plan.cells),
                       "scenarios": scenarios, "generated": False})  # fmt: skip
    for name in GENERATED_SUITES:
        suites.append({"name": name, "description": GENERATED_DESCRIPTIONS.get(name, ""), "runs": None,
                       "scenarios": [], "generated": True})  # fmt: skip
    return suites


def _guests() -> list[dict[str, Any]]:
    return [{"name": name, "description": get_profile(name).description} for name in profile_names()]


def list_command(args: argparse.Namespace, terminal: Terminal) -> int:
    data = catalog(args.tag)
    if args.json:
        terminal.out(json.dumps(data, indent=2), highlight=False)
        return 0
    terminal.print("[bold]Scenarios[/]  [dim](hil run NAME; hil run --tag TAG)[/]")
    terminal.print(listing((escape(s["name"]), _with_note(s["description"], _scenario_note(s)))
                           for s in data["scenarios"]))  # fmt: skip
    terminal.print("[bold]Suites[/]  [dim](hil run --suite NAME)[/]")
    terminal.print(listing((escape(s["name"]), _with_note(s["description"], _suite_note(s))) for s in data["suites"]))
    terminal.print("[bold]Guests[/]  [dim](hil run NAME --guest GUEST)[/]")
    terminal.print(listing((escape(g["name"]), Text(g["description"])) for g in data["guests"]))
    return 0


def _with_note(description: str, note: str) -> Text:
    text = Text(description)
    text.append("\n" + note, style="dim")
    return text


def _scenario_note(scenario: dict[str, Any]) -> str:
    tags = ", ".join(scenario["tags"]) or "none"
    return f"guest {scenario['guest']}; tags: {tags}"


def _suite_note(suite: dict[str, Any]) -> str:
    if suite["generated"]:
        return "generated when run"
    return f"{suite['runs']} runs of {', '.join(suite['scenarios'])}"
