"""``mamori demo``: runnable demonstrations, thin over :mod:`mamori.genai.demo`."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from mamori.cli.exitcodes import DONE_EPILOG

__all__ = ["demo_app"]

demo_app = typer.Typer(help="Runnable demonstrations.", no_args_is_help=True)


@demo_app.command("hospital", epilog=DONE_EPILOG)
def hospital(
    llm_url: str = typer.Option("", help="OpenAI-compatible base URL to drive the tool calls."),
    llm_model: str = typer.Option("", help="Model name for --llm-url."),
) -> None:
    """Run the same adversarial conversation as a receptionist, a doctor and a patient."""
    from mamori.genai.demo import OpenAIDriver, run_hospital_demo  # noqa: PLC0415 -- heavy

    console = Console()
    driver = OpenAIDriver(llm_url, llm_model) if llm_url else None
    current = ""
    for step in run_hospital_demo(driver=driver):
        if step.user != current:
            current = step.user
            console.rule(f"[bold]{current}")
        console.print(f"[cyan]LLM>[/] {step.said}  →  {step.tool}({json.dumps(step.arguments)})")
        if step.result.ok:
            console.print("  ok", json.dumps(step.result.data)[:400], markup=False, highlight=False)
        else:
            console.print("  denied:", step.result.error, markup=False, highlight=False)
