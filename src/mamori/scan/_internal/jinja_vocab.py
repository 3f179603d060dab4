"""The vocabulary real chat templates use, for the conservative template check.

Built from the chat templates of Llama 2/3/3.1/3.2/4, Mistral (v1-v7, tekken, tool use),
ChatML/Qwen 1.5-3 (tools, thinking), Gemma 1-3, Phi-3/3.5/4, DeepSeek (V2/V3/R1), Command-R,
Hermes/NousResearch tool use, Granite, SmolLM/SmolVLM, Zephyr and the templates transformers
ships in its processors (tests/assets/chat_templates holds the reviewed set; a test keeps every
one SAFE). A template that needs a word outside these sets is not forbidden, it is *reported*:
the check is conservative by design (CVE-2024-34359: unsandboxed renderers exist).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ATTRIBUTE_FILTERS",
    "CALLABLE_GLOBALS",
    "CONTEXT_NAMES",
    "DANGEROUS_DUNDERS",
    "DANGEROUS_NAMES",
    "FIELD_NAMES",
    "GADGET_GLOBALS",
    "LOOP_ATTRIBUTES",
    "METHOD_NAMES",
    "NUMERIC_FILTERS",
    "STRING_BUILDERS",
    "TERMINAL_FILTERS",
]

# Variables a chat-template renderer passes (transformers apply_chat_template, llama.cpp,
# vLLM, TGI) and special tokens. A name outside this set and not bound by the template itself
# is an object we know nothing about; reading a field of it outside FIELD_NAMES is reported.
CONTEXT_NAMES: Final = frozenset(
    {
        "messages", "tools", "documents", "add_generation_prompt", "continue_final_message",
        "bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token",
        "mask_token", "additional_special_tokens", "custom_tools", "builtin_tools",
        "tools_in_user_message", "date_string", "system_message", "enable_thinking",
        "thinking", "reasoning_effort", "add_vision_id", "tool_choice", "xml_tools",
        "python_tools", "model_identity", "chat_template_kwargs", "image_token",
        "video_token", "audio_token", "default_system_message", "keep_past_thinking",
        "truncate_history_thinking", "add_system_prompt", "controls", "available_tools",
        "citation_mode", "safety_mode", "loop", "varargs", "kwargs", "caller",
    }
)  # fmt: skip

# Global functions the renderers define. Calling them is what templates do; any other use
# (an attribute of one, a subscript, passing one around) is the start of an escape.
CALLABLE_GLOBALS: Final = frozenset(
    {"namespace", "range", "dict", "raise_exception", "strftime_now"}
)

# Keys of messages, tool schemas and documents, read as ``x.key`` or ``x['key']``.
FIELD_NAMES: Final = frozenset(
    {
        "role", "content", "name", "type", "text", "tool_calls", "tool_call_id", "function",
        "arguments", "parameters", "properties", "description", "required", "enum",
        "items", "reasoning_content", "reasoning", "thinking", "image", "image_url", "url",
        "video", "audio", "input_audio", "id", "title", "tool_call", "tools", "system",
        "user", "assistant", "tool", "ipython", "value", "default", "format", "return",
        "returns", "responses", "response", "data", "doc", "documents", "source", "snippet",
        "prefix", "suffix", "thought", "thoughts", "output", "input", "result", "results",
        "call_id", "index", "path", "parameter_definitions", "args", "kwargs", "code",
        "language", "date", "timestamp", "metadata", "image_id", "video_id", "audio_id",
        "min_pixels", "max_pixels", "caption", "file", "partial", "recipient", "channel",
        "tool_name", "tool_responses", "additionalProperties", "anyOf", "oneOf", "allOf",
        "nullable", "minimum", "maximum", "pattern", "examples", "example", "strict",
        "content_type", "display_name", "system_prompt", "is_tool", "is_first", "found",
        "is_last_user", "last_query_index", "multi_step_tool", "is_output", "prev_role",
        "first", "last", "length", "reasoning_effort", "model_identity", "citations",
    }
)  # fmt: skip

# LoopContext attributes (jinja2.runtime.LoopContext) and methods.
LOOP_ATTRIBUTES: Final = frozenset(
    {"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth",
     "depth0", "previtem", "nextitem", "cycle", "changed"}
)  # fmt: skip

# Methods of str, dict and list that format conversations and can reach nothing but data.
# Left out on purpose: str.format/format_map (they read attributes named in the format
# string: "{0.__class__}"), and every mutator but dict.update/list.append, which templates use
# to build values (they only change data the template made).
METHOD_NAMES: Final = frozenset(
    {
        "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith",
        "endswith", "title", "upper", "lower", "capitalize", "replace", "join", "items",
        "keys", "values", "get", "append", "count", "find", "rfind", "index", "isdigit",
        "isalpha", "isalnum", "isspace", "isupper", "islower", "removeprefix",
        "removesuffix", "partition", "rpartition", "zfill", "center", "ljust", "rjust",
        "casefold", "swapcase", "update", "cycle", "changed", "copy",
    }
)  # fmt: skip

# Filters whose argument is an attribute name (a dotted path), looked up with getattr.
# Value: the positional index of the attribute argument, or None when only ``attribute=``.
ATTRIBUTE_FILTERS: Final[dict[str, int | None]] = {
    "attr": 0,
    "selectattr": 0,
    "rejectattr": 0,
    "groupby": 0,
    "map": None,
    "sort": None,
    "sum": None,
    "unique": None,
    "min": None,
    "max": None,
    "dictsort": None,
}

# Filters that build or reshape strings: the tools for assembling a dunder name character by
# character ("%c"|format(95), (x|string|list)[n], [...]|join).
STRING_BUILDERS: Final = frozenset(
    {"join", "format", "string", "replace", "reverse", "lower", "upper", "list", "first",
     "last", "trim", "title", "capitalize", "center", "indent", "truncate", "wordwrap",
     "urlencode", "e", "escape", "forceescape", "safe", "striptags", "tojson", "pprint",
     "batch", "slice", "random", "min", "max", "sort", "unique"}
)  # fmt: skip

# Filters whose result is text or a number: nothing of the input object survives them.
TERMINAL_FILTERS: Final = frozenset(
    {"string", "tojson", "length", "count", "trim", "upper", "lower", "title", "capitalize",
     "int", "float", "abs", "round", "e", "escape", "forceescape", "safe", "striptags",
     "wordcount", "truncate", "center", "indent", "wordwrap", "urlencode", "pprint",
     "filesizeformat", "urlize", "xmlattr"}
)  # fmt: skip

# Filters whose result is a number: their output is a safe index.
NUMERIC_FILTERS: Final = frozenset(
    {"length", "count", "int", "abs", "round", "float", "sum", "wordcount"}
)


DANGEROUS_DUNDERS: Final = frozenset(
    {
        "__globals__",  # function -> module globals (os, sys, builtins)
        "__subclasses__",  # object.__subclasses__() -> every loaded class, e.g. Popen
        "__mro__",  # class -> object
        "__base__",  # class -> base class
        "__bases__",  # class -> base classes
        "__class__",  # instance -> class
        "__init__",  # class -> function object with __globals__
        "__builtins__",  # -> eval, exec, __import__, open
        "__import__",  # import any module
        "__dict__",  # attribute dictionary of anything
        "__getattribute__",  # attribute access that bypasses Jinja's getattr
        "__code__",  # function bytecode
        "__func__",  # bound method -> function
        "__self__",  # bound method -> object
        "__loader__",  # module loader -> import machinery
        "__spec__",  # module spec -> loader
        "__reduce__",  # pickle protocol gadgets
        "__reduce_ex__",
    }
)

# Globals of a default jinja2.Environment (and Flask's) that lead to __globals__ in one step;
# HF's chat-template environment defines none of them, so a chat template has no reason to use
# them. `namespace` and `range` are left out on purpose: real templates (Llama 3.1, Qwen) use
# `namespace(...)`, and both are only dangerous through dunder access, which is flagged anyway.
GADGET_GLOBALS: Final = frozenset(
    {
        "cycler",  # jinja2.utils.Cycler: cycler.__init__.__globals__
        "joiner",  # jinja2.utils.Joiner: joiner.__init__.__globals__
        "lipsum",  # jinja2.utils.generate_lorem_ipsum.__globals__
        "self",  # TemplateReference: self._TemplateReference__context
        "config",  # Flask config object: config.__class__.from_envvar.__globals__
        "request",  # Flask request: request.application.__globals__
        "url_for",  # Flask helper: url_for.__globals__
        "get_flashed_messages",  # Flask helper: get_flashed_messages.__globals__
        "g",  # Flask app globals
    }
)

# Attribute and variable names of process, import and evaluation primitives. None of them is a
# legitimate part of formatting a conversation.
DANGEROUS_NAMES: Final = frozenset(
    {
        "os",
        "sys",
        "subprocess",
        "builtins",
        "popen",
        "system",
        "spawn",
        "execv",
        "fork",
        "eval",
        "exec",
        "compile",
        "import_module",
        "importlib",
        "getattr",
        "setattr",
        "globals",
        "locals",
        "open",
        "mro",
        "func_globals",
        "f_globals",
        "gi_frame",
        "tb_frame",
        "f_back",
    }
)
