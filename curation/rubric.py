"""Rubrics: what annotators fill in, how it renders to the model's output text, and how text parses back.

A rubric is a YAML file validated with pydantic. Its output template is a string with ``{field}``
placeholders and ``{field|singular|plural}`` word forms; every field appears exactly once, with literal
text between placeholders, so ``parse(render(fields)) == fields`` for every valid ``fields`` value.
``validate`` guarantees that by construction for typed fields and by a round-trip check for text.

Example::

    rubric = load_rubric("rubrics/surveillance_alert.yaml")
    text = rubric.render({"event": "TAILGATING", "persons": 2, "badge_events": 1, "door": 14, "time": "02:14"})
    # 'TAILGATING — 2 persons, 1 badge event, Door 14, 02:14'
    rubric.parse(text)  # the same fields back
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from curation.errors import RubricError

FieldType = Literal["choice", "ordinal", "integer", "number", "time", "text"]
TIME_FORMATS = {"hh:mm": r"\d{2}:\d{2}", "hh:mm:ss": r"\d{2}:\d{2}:\d{2}", "mm:ss": r"\d{2,}:\d{2}"}


class RubricField(BaseModel):
    """One output field. Type-specific options are checked against the type."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    type: FieldType
    description: str = ""
    required: bool = True
    choices: list[str] | None = None  # choice, ordinal (ordinal: in order, lowest first)
    min: float | None = None  # integer, number
    max: float | None = None
    decimals: Annotated[int, Field(ge=0, le=6)] = 2  # number
    format: str = "hh:mm"  # time
    multiline: bool = False  # text
    max_length: Annotated[int, Field(ge=1)] | None = None  # text
    stratify: bool = False  # choice, ordinal: the held-out split keeps this field's class proportions
    rare: list[str] = []  # choice, ordinal: rare events (both splits, over-sampled in train only)
    tolerance: Annotated[float, Field(ge=0)] = 0.0  # integer, number, time (seconds): answers this close agree
    similarity_threshold: Annotated[float, Field(ge=0, le=1)] = 0.8  # text: agreement threshold
    missing: str = "none"  # how an empty optional value renders

    @model_validator(mode="after")
    def _check_type_options(self) -> RubricField:
        if self.type in ("choice", "ordinal"):
            if not self.choices or len(self.choices) < 2:
                raise ValueError("a choice or ordinal field needs at least 2 choices")
            lowered = [c.lower() for c in self.choices]
            if len(set(lowered)) != len(lowered):
                raise ValueError("choices must be distinct (ignoring case)")
            if any(not c.strip() or c != c.strip() or "\n" in c for c in self.choices):
                raise ValueError("choices must be non-empty, without surrounding spaces or newlines")
            unknown = [r for r in self.rare if r not in self.choices]
            if unknown:
                raise ValueError(f"rare values {unknown} are not among the choices {self.choices}")
        else:
            if self.choices is not None:
                raise ValueError(f"'choices' is only for choice and ordinal fields, not {self.type}")
            if self.stratify or self.rare:
                raise ValueError("'stratify' and 'rare' are only for choice and ordinal fields")
        if self.type not in ("integer", "number") and (self.min is not None or self.max is not None):
            raise ValueError(f"'min'/'max' are only for integer and number fields, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.type == "time" and self.format not in TIME_FORMATS:
            raise ValueError(f"time format must be one of {sorted(TIME_FORMATS)}")
        if not self.missing.strip():
            raise ValueError("'missing' must be a visible word such as 'none'")
        if self.choices and self.missing.lower() in [c.lower() for c in self.choices] and not self.required:
            raise ValueError(f"'missing' ({self.missing!r}) must differ from every choice")
        return self

    @property
    def level(self) -> str:
        """Measurement level for agreement statistics."""
        return {"choice": "nominal", "ordinal": "ordinal", "text": "text"}.get(self.type, "interval")

    def to_number(self, value: Any) -> float | None:
        """Numeric value for interval statistics and tolerances (time -> seconds, ordinal -> rank)."""
        if value is None:
            return None
        if self.type in ("integer", "number"):
            return float(value)
        if self.type == "time":
            parts = [int(p) for p in str(value).split(":")]
            seconds = 0
            for part in parts:
                seconds = seconds * 60 + part
            return float(seconds * 60 if self.format == "hh:mm" else seconds)
        if self.type == "ordinal":
            return float(self.choices.index(value))
        raise TypeError(f"field {self.name!r} of type {self.type} has no numeric value")


class RubricExample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: dict[str, Any]
    output: str | None = None
    note: str = ""


class RubricOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str


class Rubric(BaseModel):
    """A validated rubric. Build with :func:`load_rubric` or :func:`parse_rubric_text`."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    instructions: str = ""
    prompt: Annotated[str, Field(min_length=1)]
    fields: Annotated[list[RubricField], Field(min_length=1)]
    output: RubricOutput
    examples: list[RubricExample] = []

    _pieces: list[tuple[str, str, tuple[str, ...]]] = PrivateAttr(default_factory=list)
    _regex: re.Pattern[str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_template(self) -> Rubric:
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"field names must be unique: {duplicates} repeated")
        self._pieces = _split_template(self.output.template, {f.name: f for f in self.fields})
        self._regex = re.compile(_template_regex(self._pieces, self.field_map), re.DOTALL | re.IGNORECASE)
        return self

    @property
    def field_map(self) -> dict[str, RubricField]:
        return {f.name: f for f in self.fields}

    @property
    def version(self) -> str:
        """Hash of the normalised content: the same rubric has the same version whatever its YAML layout."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def stratify_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.stratify]

    def normalise(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Coerce values to their canonical form (\"3\" -> 3 for integers, choice case, number rounding).

        Raises RubricError naming every offending field; unknown fields are errors too.
        """
        errors: list[str] = []
        unknown = sorted(set(fields) - set(self.field_map))
        if unknown:
            errors.append(f"unknown field(s) {unknown}; this rubric has {list(self.field_map)}")
        normalised: dict[str, Any] = {}
        for field in self.fields:
            try:
                normalised[field.name] = _normalise_value(field, fields.get(field.name))
            except ValueError as exc:
                errors.append(f"{field.name}: {exc}")
        if not errors:
            errors.extend(self._round_trip_errors(normalised))
        if errors:
            raise RubricError("; ".join(errors), problems=errors)
        return normalised

    def validate_fields(self, fields: dict[str, Any]) -> list[str]:
        """Every problem with ``fields``, one message per field; empty when valid."""
        try:
            self.normalise(fields)
        except RubricError as exc:
            return list(exc.problems)
        return []

    def render(self, fields: dict[str, Any]) -> str:
        """Fields -> output text. Validates first: an invalid value raises RubricError naming the field."""
        return self._render_unchecked(self.normalise(fields))

    def parse(self, text: str) -> dict[str, Any]:
        """Output text -> fields (inverse of :meth:`render`). Raises RubricError if the text does not fit."""
        match = self._regex.fullmatch(text.strip())
        if match is None:
            raise RubricError(f"output does not match the rubric template {self.output.template!r}: {text[:200]!r}")
        fields: dict[str, Any] = {}
        for field in self.fields:
            raw = match.group(field.name)
            try:
                fields[field.name] = _parse_value(field, raw)
            except ValueError as exc:
                raise RubricError(f"{field.name}: {exc}") from None
        return self.normalise(fields)

    def try_parse(self, text: str) -> dict[str, Any] | None:
        """Like :meth:`parse`, but None for text that does not fit (used to count format validity)."""
        try:
            return self.parse(text)
        except RubricError:
            return None

    def _render_unchecked(self, fields: dict[str, Any]) -> str:
        out: list[str] = []
        for kind, value, forms in self._pieces:
            if kind == "literal":
                out.append(value)
            elif kind == "field":
                out.append(_render_value(self.field_map[value], fields[value]))
            else:  # word form chosen by the count in another field
                count = fields[value]
                out.append(forms[0] if count == 1 else forms[1])
        return "".join(out)

    def _round_trip_errors(self, fields: dict[str, Any]) -> list[str]:
        # Typed values always round-trip; free text can contain the template's separators. Check, and name it.
        text_fields = [f for f in self.fields if f.type == "text" and fields.get(f.name) is not None]
        if not text_fields:
            return []
        match = self._regex.fullmatch(self._render_unchecked(fields).strip())
        # Name only the first text field (in template order) that comes back different: the fields after it
        # are displaced by it, not wrong themselves.
        order = [value for kind, value, _ in self._pieces if kind == "field"]
        for name in sorted((f.name for f in text_fields), key=order.index):
            if match is None or match.group(name) != _render_value(self.field_map[name], fields[name]):
                return [
                    f"{name}: the text contains the separator that follows it in the output template, so the "
                    "output could not be parsed back — rephrase it"
                ]
        return []


def _split_template(template: str, fields: dict[str, RubricField]) -> list[tuple[str, str, tuple[str, ...]]]:
    pieces: list[tuple[str, str, tuple[str, ...]]] = []
    seen: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"output.template: {exc} (write literal braces as '{{{{' and '}}}}')") from None
    for literal, name, spec, conversion in parsed:
        if literal:
            pieces.append(("literal", literal, ()))
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"output.template: '{{{name}:{spec}}}' — format specs are not supported")
        base, *forms = name.split("|")
        if base not in fields:
            raise ValueError(f"output.template: '{{{base}}}' is not a field; fields are {list(fields)}")
        if forms:
            if len(forms) != 2 or fields[base].type != "integer":
                raise ValueError(f"output.template: '{{{name}}}' — word forms need an integer field and 2 forms")
            pieces.append(("plural", base, tuple(forms)))
            continue
        if base in seen:
            raise ValueError(f"output.template: field '{base}' appears twice")
        if pieces and pieces[-1][0] != "literal":
            raise ValueError(f"output.template: put literal text before '{{{base}}}' so it can be parsed back")
        seen.append(base)
        pieces.append(("field", base, ()))
    missing = [n for n in fields if n not in seen]
    if missing:
        raise ValueError(f"output.template: fields {missing} are missing; every field must appear once")
    return pieces


def _value_pattern(field: RubricField) -> str:
    if field.type in ("choice", "ordinal"):
        options = sorted(field.choices, key=len, reverse=True)
        body = "|".join(re.escape(c) for c in options)
    elif field.type == "integer":
        body = r"[-+]?\d+"
    elif field.type == "number":
        body = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
    elif field.type == "time":
        body = TIME_FORMATS[field.format]
    else:
        body = r".+?" if field.multiline else r"[^\n]+?"
    if not field.required:
        body = f"{body}|{re.escape(field.missing)}"
    return body


def _template_regex(pieces: list[tuple[str, str, tuple[str, ...]]], fields: dict[str, RubricField]) -> str:
    parts: list[str] = []
    for kind, value, forms in pieces:
        if kind == "literal":
            # Models and people add or drop spaces around separators; tolerate runs of spaces only.
            parts.append(re.sub(r"(\\ )+", lambda m: r" +", re.escape(value)))
        elif kind == "field":
            parts.append(f"(?P<{value}>{_value_pattern(fields[value])})")
        else:
            options = sorted(forms, key=len, reverse=True)
            parts.append("(?:" + "|".join(re.escape(o) for o in options) + ")")
    return "".join(parts)


def _normalise_value(field: RubricField, value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip() and field.type != "text"):
        if field.required:
            raise ValueError("required")
        return None
    if field.type in ("choice", "ordinal"):
        lookup = {c.lower(): c for c in field.choices}
        key = str(value).strip().lower()
        if key not in lookup:
            raise ValueError(f"{value!r} is not one of {field.choices}")
        return lookup[key]
    if field.type == "integer":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{value!r} is not a whole number")
        try:
            number = int(str(value).strip()) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a whole number") from None
        return _check_bounds(field, number)
    if field.type == "number":
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not a finite number")
        # The output text shows `decimals` places; store what the text says so render/parse agree.
        return _check_bounds(field, float(f"{number:.{field.decimals}f}"))
    if field.type == "time":
        text = str(value).strip()
        if not re.fullmatch(TIME_FORMATS[field.format], text):
            raise ValueError(f"{value!r} is not a time in the form {field.format}")
        parts = [int(p) for p in text.split(":")]
        limits = {"hh:mm": (23, 59), "hh:mm:ss": (23, 59, 59), "mm:ss": (None, 59)}[field.format]
        for part, limit in zip(parts, limits, strict=True):
            if limit is not None and part > limit:
                raise ValueError(f"{value!r} is out of range for {field.format}")
        return text
    text = str(value)
    if not text.strip():
        if field.required:
            raise ValueError("required")
        return None
    if text != text.strip():
        text = text.strip()
    if not field.multiline and "\n" in text:
        raise ValueError("must be a single line")
    if field.max_length is not None and len(text) > field.max_length:
        raise ValueError(f"is {len(text)} characters; at most {field.max_length}")
    if not field.required and text.lower() == field.missing.lower():
        raise ValueError(f"{text!r} is the word for an empty value; leave the field empty instead")
    return text


def _check_bounds(field: RubricField, number: float) -> float:
    if field.min is not None and number < field.min:
        raise ValueError(f"{number} is below the minimum {field.min:g}")
    if field.max is not None and number > field.max:
        raise ValueError(f"{number} is above the maximum {field.max:g}")
    return number


def _render_value(field: RubricField, value: Any) -> str:
    if value is None:
        return field.missing
    if field.type == "number":
        return f"{value:.{field.decimals}f}"
    return str(value)


def _parse_value(field: RubricField, raw: str) -> Any:
    if not field.required and raw.lower() == field.missing.lower():
        return None
    if field.type == "integer":
        return int(raw)
    if field.type == "number":
        return float(raw)
    return raw


# ---------------------------------------------------------------------------------------------------------
# Loading, with errors that name the file, the line and the field path.


def parse_rubric_text(text: str, source: str = "<rubric>") -> Rubric:
    """Parse and validate rubric YAML. Raises RubricError with one line: source, line, field path, problem."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RubricError(f"{source}{where}: YAML syntax error: {problem}") from None
    if not isinstance(data, dict):
        raise RubricError(f"{source}: a rubric is a YAML mapping with name, prompt, fields and output")
    try:
        rubric = Rubric.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = [p for p in error["loc"] if not (isinstance(p, str) and p in _PYDANTIC_TAGS)]
        path = _format_path(location, data)
        line = _line_of(root, location)
        where = f" line {line}" if line else ""
        message = error["msg"].removeprefix("Value error, ")
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise RubricError(f"{source}{where}: {path}: {message}{more}") from None
    for index, example in enumerate(rubric.examples):
        try:
            rendered = rubric.render(example.fields)
        except RubricError as exc:
            raise RubricError(f"{source}: examples[{index}]: {exc}") from None
        if example.output is not None and rendered != example.output.strip():
            raise RubricError(
                f"{source}: examples[{index}].output: the template renders {rendered!r}, not {example.output!r}"
            )
    return rubric


def load_rubric(path: str | Path) -> Rubric:
    """Read and validate a rubric file. See :func:`parse_rubric_text` for the errors."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RubricError(f"{path}: no such rubric file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RubricError(f"{path}: cannot read rubric: {exc}") from None
    return parse_rubric_text(text, source=str(path))


_PYDANTIC_TAGS = {"function-after", "function-before", "constrained-str", "list", "dict"}


def _format_path(location: list[Any], data: Any) -> str:
    parts: list[str] = []
    node = data
    for item in location:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            name = node[item].get("name") if isinstance(node, list) and isinstance(node[item], dict) else None
            if name:
                parts[-1] = f"[{item}] ({name})"
        else:
            parts.append(("." if parts else "") + str(item))
        try:
            node = node[item]
        except (KeyError, IndexError, TypeError):
            node = None
    return "".join(parts) or "rubric"


def _line_of(node: yaml.Node | None, location: list[Any]) -> int | None:
    line = node.start_mark.line + 1 if node is not None else None
    for item in location:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == item), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(item, int) and item < len(node.value):
            match = node.value[item]
        else:
            match = None
        if match is None:
            break
        node = match
        line = node.start_mark.line + 1
    return line


def rubric_from_dict(data: dict[str, Any]) -> Rubric:
    """Build a rubric from an already-parsed mapping (tests, stored rubrics)."""
    return parse_rubric_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
