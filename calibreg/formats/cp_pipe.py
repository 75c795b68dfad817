"""Writing and reading cp_pipe's ``cpFlatNormScales`` structure (SPEC §5).

cp_pipe's butler stores it as a StructuredDataDict YAML: nested mappings whose detector and
exposure keys are ints and amplifier keys are strings. YAML keeps int keys; JSON cannot (object
keys are strings), so :func:`load_cp_pipe` turns digit keys back into ints.
"""

from __future__ import annotations

from typing import Any

import yaml

from calibreg.domain.jsonable import dumps
from calibreg.formats._common import SafeYAMLLoader


def dump_cp_pipe(structure: dict[str, Any], fmt: str = "yaml") -> str:
    """Serialize the structure as YAML (int keys kept) or JSON (NaN → null).

    YAML is the form in which the butler stores cp_pipe's ``cpFlatNormScales``
    (a StructuredDataDict), so that output reads like cp_pipe's own files; JSON is for tools
    that do not read YAML.

    Parameters
    ----------
    structure : dict
        The ``{"expScale": ..., "detScale": ...}`` mapping of
        `calibreg.engine.to_cp_pipe_scales`.
    fmt : {"yaml", "json"}
        Output format. YAML keeps int keys and writes NaN as ``.nan``, keys sorted; JSON
        (indent 1) turns keys into strings and NaN into ``null``, as strict JSON has no NaN.

    Returns
    -------
    str
        The document, ending with a newline.

    Raises
    ------
    ValueError
        For a ``fmt`` other than ``"yaml"`` or ``"json"``.
    """
    if fmt == "json":
        return dumps(structure, indent=1) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(structure, sort_keys=True, default_flow_style=False)
    raise ValueError(f"unknown format {fmt!r}: yaml or json")


def _int_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            (int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k): _int_keys(v)
            for k, v in obj.items()
        }
    return obj


def load_cp_pipe(text: str) -> dict[str, Any]:
    """Parse YAML or JSON cp_pipe scales, restoring int detector/exposure keys.

    Parameters
    ----------
    text : str
        A document written by `dump_cp_pipe` (either format: JSON is read as YAML).

    Returns
    -------
    dict
        The structure, with every key made only of digits (and an optional leading ``-``)
        turned back into an ``int``. A NaN written as JSON ``null`` comes back as ``None``;
        YAML ``.nan`` comes back as NaN.

    Raises
    ------
    yaml.YAMLError
        If ``text`` is neither valid YAML nor JSON, or its aliases would expand past
        `~calibreg.formats._common.MAX_ALIAS_EXPANSION` nodes.
    """
    data = yaml.load(text, Loader=SafeYAMLLoader)
    return _int_keys(data)
