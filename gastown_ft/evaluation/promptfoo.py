"""Promptfoo test suites (the gt-model-eval format) read and scored without Node or an API.

Loading follows promptfoo's config semantics for what patrol suites use:

- a `promptfooconfig.yaml` with `prompts` (raw text or `file://` references, globs allowed; a text file
  may hold several prompts separated by a `---` line), `tests` (inline tests, `file://` test files or
  globs of them), `defaultTest` (`vars`, `assert` and `options` merged into every test, its asserts
  first) - or a single test file, or a directory of test files, whose prompts and `defaultTest` come
  from the nearest `promptfooconfig.yaml` in it or above it (or from an explicit prompt file);
- `vars` values may be `file://` references (read relative to the config's directory; JSON and YAML
  files are parsed); a list value expands the test into one case per value (all combinations);
- prompts are Nunjucks templates; they are rendered with Jinja2, which reads the same `{{ var }}`,
  `{% if x is defined %}` forms (plus Nunjucks' `dump` filter). A rendered prompt that is a JSON list
  of `{role, content}` messages is a chat; otherwise it is one user message.

Scoring (one case = one test x one prompt):

- `options.transform` (a JavaScript expression or function body over `output` and `context`) runs first;
- `javascript` asserts run in an embedded JavaScript engine (QuickJS), exactly as promptfoo does:
  a one-line value is an expression, a multi-line value a function body, called with `output` and
  `context` ({vars, prompt, test, config}); a boolean, a number (against `threshold`, else > 0) or a
  `{pass, score, reason}` object is the verdict; an exception fails the assert;
- `is-json`, `contains`, `icontains`, `contains-any`, `icontains-any`, `contains-all`,
  `icontains-all`, `equals`, `starts-with`, `regex` (and every `not-` form) are evaluated directly;
  `cost` passes at 0 (a local model has no per-call cost) and `latency` uses the measured time;
- anything else (`llm-rubric` and the other model-graded asserts, `python`, `webhook`, schemas, ...)
  is reported as `unsupported`: never counted as a pass, never as a fail.

A case passes when every supported assert passes (with a test `threshold`: when the weighted score
reaches it); a case with no supported assert is `unscored` and left out of the accuracy.
"""

from __future__ import annotations

import glob as globlib
import itertools
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gastown_ft.errors import GastownFTError

CONFIG_NAMES = ("promptfooconfig.yaml", "promptfooconfig.yml")
SUITE_HINT = (
    "point --suite at a promptfooconfig.yaml, a directory holding one, or a YAML test file "
    "(a list of {description, vars, assert}) next to or below such a config"
)
DIRECT_TYPES = frozenset(
    {
        "javascript",
        "is-json",
        "contains",
        "icontains",
        "contains-any",
        "icontains-any",
        "contains-all",
        "icontains-all",
        "equals",
        "starts-with",
        "regex",
        "cost",
        "latency",
    }
)
JS_TIME_LIMIT_S = 2
JS_MEMORY_LIMIT = 64 * 1024 * 1024


# -- the suite ------------------------------------------------------------------------------------


@dataclass
class PatrolCase:
    case_id: str
    description: str
    source: str  # the test file (relative to the suite root) or "inline"
    prompt_label: str
    vars: dict[str, Any]
    asserts: list[dict[str, Any]]
    messages: list[dict[str, Any]]  # the rendered prompt as chat messages
    prompt_text: str  # the rendered prompt as promptfoo passes it to `context.prompt`
    transform: str | None = None
    threshold: float | None = None


@dataclass
class Suite:
    path: Path
    description: str
    cases: list[PatrolCase]
    prompts: list[str] = field(default_factory=list)  # labels
    warnings: list[str] = field(default_factory=list)  # e.g. test files the config names but lacks


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GastownFTError(f"cannot read {path}: {e}", hint=SUITE_HINT) from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise GastownFTError(f"{path} is not valid YAML/JSON: {e}", hint=SUITE_HINT) from None


def _file_ref(ref: str, base: Path) -> list[Path]:
    """The files a `file://` reference (maybe a glob) names, relative to `base`, sorted."""
    target = ref[len("file://") :] if ref.startswith("file://") else ref
    pattern = target if Path(target).is_absolute() else str(base / target)
    if any(c in target for c in "*?["):
        return [Path(p) for p in sorted(globlib.glob(pattern, recursive=True))]
    return [Path(pattern)]


def _load_var(value: Any, base: Path) -> Any:
    if not (isinstance(value, str) and value.startswith("file://")):
        return value
    path = _file_ref(value, base)[0]
    if path.suffix in (".py", ".js", ".mjs", ".cjs", ".ts"):
        raise GastownFTError(
            f"vars value {value} is a script; only data files can be read here", hint=SUITE_HINT
        )
    if not path.is_file():
        raise GastownFTError(f"vars file not found: {path} (from {value})", hint=SUITE_HINT)
    if path.suffix in (".json", ".yaml", ".yml"):
        return _read_yaml(path)
    return path.read_text(encoding="utf-8")


def _prompts(spec: Any, base: Path) -> list[tuple[str, str]]:
    """(label, template) of each prompt of a config's `prompts`."""
    items = spec if isinstance(spec, list) else [spec] if spec else []
    out: list[tuple[str, str]] = []
    for item in items:
        label = None
        if isinstance(item, dict):
            label = item.get("label")
            item = item.get("raw") or item.get("id") or ""
        if not isinstance(item, str):
            raise GastownFTError(f"a prompt entry is not a string or table: {item!r}", hint=SUITE_HINT)
        if not item.startswith("file://"):
            out.append((label or item[:40], item))
            continue
        paths = _file_ref(item, base)
        if not paths or not all(p.is_file() for p in paths):
            raise GastownFTError(f"prompt file not found: {item} (relative to {base})", hint=SUITE_HINT)
        for path in paths:
            if path.suffix in (".py", ".js", ".mjs", ".cjs", ".ts"):
                raise GastownFTError(f"prompt {path} is a script; only text and JSON prompts are read")
            text = path.read_text(encoding="utf-8")
            parts = [text] if path.suffix == ".json" else re.split(r"\n-{3,}\n", text)
            for i, part in enumerate(parts):
                name = label or path.name
                out.append((name if len(parts) == 1 else f"{name}#{i + 1}", part))
    return out


def _test_entries(spec: Any, base: Path, warnings: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(source, test) of each test of a config's `tests` (inline tables and file references).

    A named test file that does not exist is skipped with a warning (a shared suite often lists files
    that are not checked in); a glob that matches nothing is an error."""
    items = spec if isinstance(spec, list) else [spec] if spec else []
    out: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if isinstance(item, dict):
            out.append(("inline", item))
            continue
        if not isinstance(item, str):
            raise GastownFTError(f"a tests entry is neither a test nor a file: {item!r}", hint=SUITE_HINT)
        paths = _file_ref(item, base)
        if not paths:
            raise GastownFTError(f"no test files match {item} (relative to {base})", hint=SUITE_HINT)
        for path in paths:
            if not path.exists():
                warnings.append(f"test file not found, skipped: {item}")
                continue
            out.extend(_tests_in_file(path, base))
    return out


def _tests_in_file(path: Path, base: Path) -> list[tuple[str, dict[str, Any]]]:
    if not path.is_file():
        raise GastownFTError(f"test file not found: {path}", hint=SUITE_HINT)
    if path.suffix not in (".yaml", ".yml", ".json"):
        raise GastownFTError(
            f"test file {path.name}: only YAML and JSON test files are read here", hint=SUITE_HINT
        )
    data = _read_yaml(path)
    if isinstance(data, dict) and "tests" in data:
        data = data["tests"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(t, dict) for t in data):
        raise GastownFTError(f"{path} does not hold a list of tests", hint=SUITE_HINT)
    try:
        source = path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        source = path.name
    return [(source, t) for t in data]


def _is_config(data: Any) -> bool:
    return isinstance(data, dict) and bool({"prompts", "providers", "defaultTest"} & set(data))


def _find_config(start: Path, levels: int = 3) -> Path | None:
    d = start
    for _ in range(levels):
        for name in CONFIG_NAMES:
            if (d / name).is_file():
                return d / name
        if d.parent == d:
            break
        d = d.parent
    return None


def load_suite(path: str | Path, prompt_file: str | Path | None = None) -> Suite:
    """The cases of a promptfoo suite: a config, a directory, or a test file (see the module doc)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise GastownFTError(f"suite not found: {path}", hint=SUITE_HINT)
    config: dict[str, Any] = {}
    config_path: Path | None = None
    tests: list[tuple[str, dict[str, Any]]]
    if path.is_dir():
        config_path = _find_config(path, levels=1)
        if config_path is None:
            files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            if not files:
                raise GastownFTError(
                    f"{path} holds no promptfoo config and no YAML test files", hint=SUITE_HINT
                )
            config_path = _find_config(path.parent)
            base = config_path.parent if config_path else path
            tests = [t for f in files for t in _tests_in_file(f, base)]
            if config_path:
                config = _read_yaml(config_path) or {}
        else:
            config = _read_yaml(config_path) or {}
            tests = []
    else:
        data = _read_yaml(path)
        if _is_config(data):
            config_path, config, tests = path, data, []
        else:
            config_path = _find_config(path.parent)
            base = config_path.parent if config_path else path.parent
            tests = _tests_in_file(path, base)
            if config_path:
                config = _read_yaml(config_path) or {}
    if not isinstance(config, dict):
        raise GastownFTError(f"{config_path} is not a promptfoo config (a YAML table)", hint=SUITE_HINT)
    base = config_path.parent if config_path else (path if path.is_dir() else path.parent)
    warnings: list[str] = []
    if not tests:
        tests = _test_entries(config.get("tests"), base, warnings)
    if prompt_file is not None:
        pf = Path(prompt_file).expanduser()
        if not pf.is_file():
            raise GastownFTError(f"prompt file not found: {pf}")
        prompts = _prompts(f"file://{pf.resolve()}", base)
    else:
        prompts = _prompts(config.get("prompts"), base)
    if not prompts:
        raise GastownFTError(
            f"no prompt for the suite {path}: no promptfooconfig.yaml with `prompts` was found in or above it",
            hint="pass --prompt FILE (the prompt template the tests fill in)",
        )
    if not tests:
        raise GastownFTError(f"the suite {path} has no tests", hint=SUITE_HINT)
    default = config.get("defaultTest") or {}
    if isinstance(default, str):
        default = _read_yaml(_file_ref(default, base)[0]) or {}
    cases: list[PatrolCase] = []
    counters: Counter[str] = Counter()
    for source, test in tests:
        index = counters[source]
        counters[source] += 1
        cases.extend(_cases_of(test, default, source, index, prompts, base))
    return Suite(
        path=path,
        description=str(config.get("description") or path.name),
        cases=cases,
        prompts=[label for label, _ in prompts],
        warnings=warnings,
    )


def _expand_vars(variables: dict[str, Any]) -> list[dict[str, Any]]:
    """promptfoo's rule: a list value runs the test once per value (every combination)."""
    keys = [k for k, v in variables.items() if isinstance(v, list)]
    if not keys:
        return [variables]
    out = []
    for combo in itertools.product(*(variables[k] for k in keys)):
        out.append({**variables, **dict(zip(keys, combo, strict=True))})
    return out


def _cases_of(
    test: dict[str, Any],
    default: dict[str, Any],
    source: str,
    index: int,
    prompts: list[tuple[str, str]],
    base: Path,
) -> list[PatrolCase]:
    raw_vars = {**(default.get("vars") or {}), **(test.get("vars") or {})}
    raw_vars = {k: _load_var(v, base) for k, v in raw_vars.items()}
    asserts = [*(default.get("assert") or []), *(test.get("assert") or [])]
    options = {**(default.get("options") or {}), **(test.get("options") or {})}
    transform = options.get("transform")
    description = str(test.get("description") or f"{source} #{index + 1}")
    out = []
    expanded = _expand_vars(raw_vars)
    for k, variables in enumerate(expanded):
        for label, template in prompts:
            text = render_template(template, variables)
            case_id = f"{source}#{index + 1}" + (f".{k + 1}" if len(expanded) > 1 else "")
            if len(prompts) > 1:
                case_id += f"@{label}"
            out.append(
                PatrolCase(
                    case_id=case_id,
                    description=description,
                    source=source,
                    prompt_label=label,
                    vars=variables,
                    asserts=[a for a in asserts if isinstance(a, dict)],
                    messages=_as_messages(text),
                    prompt_text=text,
                    transform=transform if isinstance(transform, str) else None,
                    threshold=test.get("threshold"),
                )
            )
    return out


def render_template(template: str, variables: dict[str, Any]) -> str:
    """Render a Nunjucks template with Jinja2 (the same syntax for what prompts use)."""
    import jinja2

    env = jinja2.Environment(autoescape=False, keep_trailing_newline=True, undefined=jinja2.Undefined)
    env.filters["dump"] = lambda v, *a: json.dumps(v)
    try:
        return env.from_string(template).render(**variables)
    except jinja2.TemplateError as e:
        raise GastownFTError(f"cannot render a prompt template: {e}", hint=SUITE_HINT) from None


def _as_messages(text: str) -> list[dict[str, Any]]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            msgs = json.loads(stripped)
        except json.JSONDecodeError:
            msgs = None
        if (
            isinstance(msgs, list)
            and msgs
            and all(isinstance(m, dict) and "role" in m and "content" in m for m in msgs)
        ):
            return [{"role": m["role"], "content": str(m["content"])} for m in msgs]
    return [{"role": "user", "content": text}]


# -- scoring --------------------------------------------------------------------------------------


@dataclass
class AssertResult:
    type: str
    status: str  # pass | fail | unsupported | error
    reason: str = ""
    score: float | None = None
    weight: float = 1.0


@dataclass
class CaseResult:
    case_id: str
    description: str
    source: str
    status: str  # pass | fail | unscored
    output: str
    score: float | None
    asserts: list[AssertResult]
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    new_tokens: int = 0
    truncated: bool = False

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class JavaScript:
    """A QuickJS context for assert functions and transforms (compiled once per distinct body)."""

    def __init__(self) -> None:
        import quickjs

        self._quickjs = quickjs
        self._ctx = quickjs.Context()
        self._ctx.set_memory_limit(JS_MEMORY_LIMIT)
        self._ctx.set_time_limit(JS_TIME_LIMIT_S)
        self._fns: dict[str, Any] = {}

    def call(self, body: str, output: str, context: dict[str, Any]) -> Any:
        """Run `body` (promptfoo's rule: one line is an expression, several a function body)."""
        code = body if "\n" in body.strip() or body.strip().startswith("return ") else f"return {body}"
        fn = self._fns.get(code)
        if fn is None:
            wrapper = (
                "(function (__output, __context) {\n"
                "  const __user = function (output, context) {\n" + code + "\n  };\n"
                "  const __r = __user(__output, JSON.parse(__context));\n"
                "  return JSON.stringify({t: typeof __r, v: __r === undefined ? null : __r});\n"
                "})"
            )
            fn = self._ctx.eval(wrapper)
            self._fns[code] = fn
        result = json.loads(fn(output, json.dumps(context)))
        return result["v"] if result["t"] != "undefined" else None

    @property
    def error(self) -> type[Exception]:
        return self._quickjs.JSException


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(value)]


def _direct(kind: str, value: Any, output: str) -> tuple[bool, str] | None:
    """Verdict of a text assert, or None when `kind` is not one of them."""
    if kind in ("contains", "icontains"):
        fold = kind.startswith("i")
        needle = str(value)
        ok = (needle.lower() in output.lower()) if fold else (needle in output)
        return ok, f"{'found' if ok else 'missing'}: {needle!r}"
    if kind in ("contains-any", "icontains-any", "contains-all", "icontains-all"):
        fold = kind.startswith("i")
        hay = output.lower() if fold else output
        needles = _as_list(value)
        found = [n for n in needles if (n.lower() if fold else n) in hay]
        ok = bool(found) if kind.endswith("any") else len(found) == len(needles)
        return ok, f"found {found} of {needles}"
    if kind == "equals":
        if isinstance(value, (dict, list)):
            try:
                ok = json.loads(output) == value
            except json.JSONDecodeError:
                ok = False
        else:
            ok = output == str(value)
        return ok, "equal" if ok else "not equal"
    if kind == "starts-with":
        ok = output.startswith(str(value))
        return ok, "starts with it" if ok else "does not start with it"
    if kind == "regex":
        ok = re.search(str(value), output) is not None
        return ok, "matches" if ok else "no match"
    return None


def score_output(
    case: PatrolCase, raw_output: str, latency_ms: float, js: JavaScript | None = None
) -> tuple[str, list[AssertResult], float | None, str]:
    """(status, assert results, weighted score, the output the asserts saw) of one model output."""
    js = js or JavaScript()
    context = {
        "vars": case.vars,
        "prompt": case.prompt_text,
        "test": {"description": case.description, "vars": case.vars},
    }
    output = raw_output
    results: list[AssertResult] = []
    if case.transform:
        if case.transform.startswith("file://"):
            results.append(AssertResult("transform", "unsupported", "a transform file cannot run here"))
        else:
            try:
                out = js.call(case.transform, output, context)
                output = out if isinstance(out, str) else json.dumps(out)
            except js.error as e:
                results.append(AssertResult("transform", "error", f"transform threw: {e}"))
    for a in case.asserts:
        results.append(_score_assert(a, output, latency_ms, context, case.vars, js))
    supported = [r for r in results if r.status in ("pass", "fail", "error")]
    if not supported:
        return "unscored", results, None, output
    total = sum(r.weight for r in supported) or 1.0
    score = (
        sum(r.weight * (r.score if r.score is not None else r.status == "pass") for r in supported) / total
    )
    if case.threshold is not None:
        passed = score >= float(case.threshold)
    else:
        passed = all(r.status == "pass" for r in supported)
    return ("pass" if passed else "fail"), results, score, output


def _score_assert(
    a: dict[str, Any],
    output: str,
    latency_ms: float,
    context: dict[str, Any],
    variables: dict,
    js: JavaScript,
) -> AssertResult:
    kind = str(a.get("type") or "")
    inverse = kind.startswith("not-")
    base_kind = kind[4:] if inverse else kind
    weight = float(a.get("weight", 1.0))
    value = a.get("value")
    if isinstance(value, str) and "{{" in value and base_kind != "javascript":
        value = render_template(value, variables)
    if base_kind not in DIRECT_TYPES or (base_kind == "is-json" and value):
        return AssertResult(kind, "unsupported", f"`{kind}` cannot be evaluated here", weight=weight)
    threshold = a.get("threshold")
    if base_kind == "javascript":
        if not isinstance(value, str) or value.startswith("file://"):
            return AssertResult(kind, "unsupported", "only inline JavaScript runs here", weight=weight)
        try:
            result = js.call(value, output, {**context, "config": a.get("config") or {}})
        except js.error as e:
            return AssertResult(kind, "fail", f"threw: {str(e).splitlines()[0]}", 0.0, weight)
        if isinstance(result, bool):
            ok, score, reason = result, float(result), f"returned {str(result).lower()}"
        elif isinstance(result, (int, float)):
            ok = result >= float(threshold) if threshold is not None else result > 0
            score, reason = float(result), f"returned {result}"
        elif isinstance(result, dict) and "pass" in result:
            ok = bool(result["pass"])
            score = float(result.get("score", ok))
            reason = str(result.get("reason") or "")
        else:
            return AssertResult(
                kind, "error", f"returned {result!r}, not a boolean, number or result", 0.0, weight
            )
    elif base_kind == "is-json":
        try:
            json.loads(output)
            ok, reason = True, "valid JSON"
        except json.JSONDecodeError as e:
            ok, reason = False, f"not JSON: {e.msg}"
        score = float(ok)
    elif base_kind == "cost":
        limit = float(threshold) if threshold is not None else float("inf")
        ok, reason, score = 0.0 <= limit, "local inference: no per-call cost", 1.0
    elif base_kind == "latency":
        limit = float(threshold) if threshold is not None else float("inf")
        ok = latency_ms <= limit
        reason, score = f"{latency_ms:.0f} ms (limit {limit:.0f})", float(ok)
    else:
        ok, reason = _direct(base_kind, value, output)  # type: ignore[misc]
        score = float(ok)
    if inverse:
        ok, score = not ok, 1.0 - score
    return AssertResult(kind, "pass" if ok else "fail", reason, score, weight)


def summarize(results: Sequence[CaseResult]) -> dict[str, Any]:
    """Accuracy over the scored cases, with counts and the unsupported assert types."""
    scored = [r for r in results if r.status != "unscored"]
    passed = sum(r.passed for r in scored)
    unsupported: Counter[str] = Counter()
    assert_total = assert_passed = 0
    for r in results:
        for a in r.asserts:
            if a.status == "unsupported":
                unsupported[a.type] += 1
            else:
                assert_total += 1
                assert_passed += a.status == "pass"
    return {
        "cases": len(results),
        "scored": len(scored),
        "passed": passed,
        "failed": len(scored) - passed,
        "unscored": len(results) - len(scored),
        "accuracy": passed / len(scored) if scored else 0.0,
        "asserts": assert_total,
        "asserts_passed": assert_passed,
        "assert_pass_rate": assert_passed / assert_total if assert_total else 0.0,
        "unsupported_asserts": dict(sorted(unsupported.items())),
    }
