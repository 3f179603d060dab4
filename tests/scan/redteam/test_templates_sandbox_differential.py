"""Differential test of the template model against Jinja's own sandbox.

Random templates are built from the pieces escapes are made of (dunder names spelled and built
at render time, computed keys, ``attr``/``map`` filters, ``namespace`` subscripts, method calls)
and from the pieces benign templates are made of. A separate process renders each one in
``jinja2.sandbox.SandboxedEnvironment``, whose ``SecurityError`` marks a template that reached
for something a sandbox must refuse. The property: every template mamori judges clean (nothing
at MEDIUM or above) renders without a ``SecurityError``. Nothing is rendered in this process.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

from mamori.findings import Severity
from mamori.scan._internal.jinja_check import check_template

_ROOTS = ["messages", "messages[0]", "m", "namespace", "ns", "'abc'", "loop", "tools", "x"]
_ATTRS = ["role", "content", "items", "upper", "format", "mro", "x", "get", "__class__",
          "__init__", "__globals__", "_private", "keys", "update", "pop", "copy"]  # fmt: skip
_KEYS = ["0", "'role'", "k", "u ~ 'init' ~ u", "m.role", "loop.index0", "'__class__'", "-1"]
_STEPS = [".{attr}", "[{key}]", "()", "|attr('{attr}')", "|map('attr', '{attr}')|list",
          "|first", "|string", "|default(0)", "('{{0.{attr}}}')", "|attr({key})"]  # fmt: skip
_PRELUDE = (
    "{% set u = '_' * 2 %}{% set k = u ~ 'class' ~ u %}{% set ns = namespace(a=1) %}"
    "{% for m in messages %}"
)

_RENDER = textwrap.dedent(
    """
    import json, sys
    from jinja2.sandbox import SandboxedEnvironment
    from jinja2.exceptions import SecurityError
    env = SandboxedEnvironment()
    out = []
    for source in json.load(sys.stdin):
        try:
            env.from_string(source).render(
                messages=[{"role": "user", "content": "hi"}], tools=[], x={"role": "r"}
            )
            out.append("ok")
        except SecurityError:
            out.append("security")
        except Exception:
            out.append("error")
    json.dump(out, sys.stdout)
    """
)


def _expression(rng: random.Random) -> str:
    expr = rng.choice(_ROOTS)
    for _ in range(rng.randint(1, 4)):
        step = rng.choice(_STEPS)
        expr = "(" + expr + step.format(attr=rng.choice(_ATTRS), key=rng.choice(_KEYS)) + ")"
    return expr


def test_every_template_judged_clean_is_also_clean_for_jinjas_sandbox():
    rng = random.Random(20261207)
    templates = sorted(
        {_PRELUDE + "{{ " + _expression(rng) + " }}{% endfor %}" for _ in range(2500)}
    )
    result = subprocess.run(
        [sys.executable, "-c", _RENDER],
        input=json.dumps(templates),
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    outcomes = json.loads(result.stdout)
    clean = [t for t in templates if all(i.severity < Severity.MEDIUM for i in check_template(t))]
    refused = dict(zip(templates, outcomes, strict=True))
    # The generator must produce both kinds, or the property proves nothing.
    assert sum(o == "security" for o in outcomes) >= 100
    assert len(clean) >= 50
    assert [t for t in clean if refused[t] == "security"] == []
