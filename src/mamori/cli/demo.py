"""``mamori demo``: runnable demonstrations, thin over :mod:`mamori.genai.demo`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from mamori.cli.exitcodes import DONE_EPILOG

if TYPE_CHECKING:
    from mamori.audit import AuditRecord
    from mamori.genai.demo import DemoStep

__all__ = ["demo_app"]

#: Cedar's reason for a deny that no forbid decided (mamori.policy.engine).
_DEFAULT_DENY = "no policy permits this request"

demo_app = typer.Typer(help="Runnable demonstrations.", no_args_is_help=True)


def _json(value: Any) -> str:
    # ASCII-only JSON: control characters and escape sequences in model- or data-supplied text
    # print as escapes, never as terminal commands.
    return json.dumps(value, ensure_ascii=True, sort_keys=True)


def _printable(text: str) -> str:
    """``text`` with anything unprintable (newlines, ESC, bidi controls) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _deciders(record: AuditRecord) -> str:
    """Who withheld it: the forbidding policies, Cedar's default deny, or a check before Cedar."""
    if record.policy_ids:
        return f"by policy {', '.join(record.policy_ids)} ({record.reason})"
    if record.reason == _DEFAULT_DENY:
        return "by default deny: no policy permits it"
    return f"before any policy: {record.reason}"


def _lines(step: DemoStep) -> list[str]:
    """The step as whole lines: nothing is cut, each audit record is one line."""
    lines = [f"LLM> {step.said}  ->  {step.tool}({_json(step.arguments)})"]
    result = step.result
    lines.append(
        f"  ok: {_json(result.data)}" if result.ok else _printable(f"  denied: {result.error}")
    )
    if result.withheld:
        lines.append(_printable(f"  withheld ids: {', '.join(result.withheld)}"))
    lines.extend(
        _printable(f"  withheld {record.resource} ({record.action}) {_deciders(record)}")
        for record in step.audit
        if record.decision == "deny"
    )
    if result.redacted:
        lines.append(f"  projected away: {', '.join(result.redacted)}")
    lines.append(f"  audit ({len(step.audit)} records):")
    lines.extend(f"    {_json(record.to_json())}" for record in step.audit)
    return lines


@demo_app.command("hospital", epilog=DONE_EPILOG)
def hospital(
    llm_url: str = typer.Option("", help="OpenAI-compatible base URL to drive the tool calls."),
    llm_model: str = typer.Option("", help="Model name for --llm-url."),
) -> None:
    """Run the same adversarial conversation as a receptionist, a doctor and a patient.

    For each step it prints what came back, what was withheld and by which policy id, which
    fields were projected away, and every audit record the step wrote.
    """
    from mamori.genai.demo import OpenAIDriver, run_hospital_demo  # noqa: PLC0415 -- heavy

    # soft_wrap: long records stay one line each (the terminal wraps them, rich does not cut).
    console = Console(soft_wrap=True, highlight=False)
    driver = OpenAIDriver(llm_url, llm_model) if llm_url else None
    current = ""
    for step in run_hospital_demo(driver=driver):
        if step.user != current:
            current = step.user
            console.rule(f"[bold]{current}")
        for line in _lines(step):
            console.print(line, markup=False)
