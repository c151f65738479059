"""Reading Crypto Pay API parameters the way its clients send them: from a query string or a form every
value is a string (booleans ``"true"``/``"false"``, lists comma-joined), from a JSON body values are typed
(``amount`` a number). A bad value is a 400 named after the parameter (``COUNT_INVALID``), with the
reason in the call log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sandbox.cryptobot.format import ASSET_USD, ApiError, bad

Params = Mapping[str, Any]
_DECIMAL = re.compile(r"(\d+(\.\d*)?|\.\d+)")
_ID = re.compile(r"\d{1,18}")


def _error(name: str, suffix: str = "INVALID") -> str:
    return f"{name.upper()}_{suffix}"


def text(
    params: Params, name: str, *, max_chars: int | None = None, max_bytes: int | None = None
) -> str | None:
    """An optional string parameter, at most ``max_chars`` characters / ``max_bytes`` UTF-8 bytes."""
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(_error(name), f"{name} must be a string, not {type(value).__name__}")
    if max_chars is not None and len(value) > max_chars:
        raise bad(_error(name, "TOO_LONG"), f"{name} is {len(value)} characters; at most {max_chars}")
    if max_bytes is not None and len(value.encode("utf-8")) > max_bytes:
        raise bad(_error(name, "TOO_LONG"), f"{name} is over {max_bytes} bytes in UTF-8")
    return value


def choice(params: Params, name: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
    """An optional parameter that must be one of ``allowed`` (exactly, case included)."""
    value = text(params, name)
    if value is None or value == "":
        return default
    if value not in allowed:
        raise bad(_error(name), f"{name} must be one of {', '.join(allowed)}; got {value[:40]!r}")
    return value


def boolean(params: Params, name: str, default: bool) -> bool:
    """A boolean: JSON ``true``/``false`` or the strings ``"true"``/``"false"`` (any case)."""
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad(_error(name), f"{name} must be true or false; got {str(value)[:40]!r}")


def integer(params: Params, name: str, *, default: int | None, low: int, high: int) -> int | None:
    """An integer (a JSON number or decimal digits) between ``low`` and ``high``."""
    value = params.get(name)
    if value is None or value == "":
        return default
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not low <= number <= high:
        raise bad(_error(name), f"{name} must be an integer from {low} to {high}; got {str(value)[:40]!r}")
    return number


def amount(value: Any, name: str = "amount") -> Decimal:
    """A positive amount from a decimal string (``"125.50"``) or a JSON number (``125.5``)."""
    if value is None:
        raise bad("AMOUNT_INVALID", f"{name} is required")
    number: Decimal | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, float) and math.isfinite(value):
        number = Decimal(repr(value))
    elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        number = Decimal(value.strip())  # the pattern lets only plain decimals through
    if number is None or number <= 0:
        raise bad("AMOUNT_INVALID", f"{name} must be a positive decimal number; got {str(value)[:40]!r}")
    return number


def asset(value: Any, name: str = "asset") -> str:
    """A supported asset code; an unknown one is UNSUPPORTED_ASSET."""
    if not isinstance(value, str) or value not in ASSET_USD:
        raise bad("UNSUPPORTED_ASSET", f"{name} {str(value)[:40]!r} is not one of {', '.join(ASSET_USD)}")
    return value


def asset_list(params: Params, name: str = "accepted_assets") -> list[str] | None:
    """``accepted_assets``: a comma-separated string (``"USDT,TON"``, spaces allowed). A JSON array is
    what the real API answers 500 APP_ERROR to (CONTRACTS.md: sent as a string, returned as an array)."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, list):
        raise ApiError(
            500, "APP_ERROR", f"{name} came as a JSON array; Crypto Pay takes a comma-separated string"
        )
    if not isinstance(value, str):
        raise bad(_error(name), f"{name} must be a comma-separated string of assets")
    codes = [part.strip() for part in value.split(",") if part.strip()]
    return list(dict.fromkeys(asset(code, name) for code in codes)) or None


def id_list(params: Params, name: str = "invoice_ids") -> list[int] | None:
    """``invoice_ids``: comma-separated integers (``"1,2,3"``), or one JSON integer."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return [value]
    parts = [part.strip() for part in value.split(",")] if isinstance(value, str) else []
    if not parts or not all(_ID.fullmatch(part) for part in parts):
        raise bad(
            _error(name), f"{name} must be comma-separated integers like '1,2,3'; got {str(value)[:60]!r}"
        )
    return [int(part) for part in parts]
