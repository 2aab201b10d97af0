"""WordPress's own rules, as the stand-in applies them: formatting.php's `sanitize_title` and
`sanitize_file_name`, the REST argument coercions of rest-api.php (`rest_sanitize_boolean`, integer
ranges, ISO 8601 dates) and its error body `{"code", "message", "data": {"status"}}`.
Apart from publisher/sandbox/wordpress.py, which keeps the site's state and routes.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}(:?\d{2})?)?$")
_SAVE_DASH = ("%c2%a0", "%e2%80%91", "%e2%80%93", "%e2%80%94")
_SAVE_STRIP = ("%c2%ad", "%c2%a1", "%c2%bf", "%c2%ab", "%c2%bb", "%e2%80%b9", "%e2%80%ba", "%e2%80%98", "%e2%80%99",
               "%e2%80%9c", "%e2%80%9d", "%e2%80%9a", "%e2%80%9b", "%e2%80%9e", "%e2%80%9f", "%e2%80%a2", "%c2%a9",
               "%c2%ae", "%c2%b0", "%e2%80%a6", "%e2%84%a2", "%c2%b4", "%e2%80%8b", "%ef%bb%bf")
_FILE_SPECIALS = set("?[]/\\=<>:;,'\"&$#*()|~`!{}%+’«»”“\0")


class WPError(Exception):
    def __init__(self, code: str, message: str, status: int, **data: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.data = code, message, status, data

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {"code": self.code, "message": self.message, "data": {"status": self.status, **self.data}}
        return JSONResponse(body, status_code=self.status, headers=headers)


def no_route() -> WPError:
    return WPError("rest_no_route", "No route was found matching the URL and request method.", 404)


def invalid(param: str, message: str, code: str = "rest_invalid_type") -> WPError:
    return WPError("rest_invalid_param", f"Invalid parameter(s): {param}", 400, params={param: message},
                   details={param: {"code": code, "message": message, "data": None}})


def one_of(values: tuple[str, ...]) -> str:
    return ", ".join(values[:-1]) + ", and " + values[-1]


def sanitize_title(title: str) -> str:
    """WordPress's sanitize_title() in the 'save' context: what becomes of a slug or a title."""
    t = re.sub(r"<[^>]*>", "", title)
    # remove_accents(): Latin letters lose their marks; every other script is left alone
    t = "".join(unicodedata.normalize("NFD", c) if ord(c) < 0x250 else c for c in t)
    t = "".join(c for c in t if not (unicodedata.combining(c) and ord(c) < 0x370))
    t = re.sub(r"%([a-fA-F0-9]{2})", r"---\1---", t).replace("%", "")
    t = re.sub(r"---([a-fA-F0-9]{2})---", r"%\1", t).lower()
    encoded, size = "", 0
    for ch in t:  # utf8_uri_encode( $title, 200 )
        part = ch if ord(ch) < 128 else "".join(f"%{b:02x}" for b in ch.encode("utf-8"))
        if size + len(part) > 200:
            break
        encoded, size = encoded + part, size + len(part)
    t = encoded.lower()
    for seq in _SAVE_DASH:
        t = t.replace(seq, "-")
    for seq in _SAVE_STRIP:
        t = t.replace(seq, "")
    t = t.replace("%c3%97", "x")
    t = re.sub(r"&.+?;", "", t).replace(".", "-")
    t = re.sub(r"[^%a-z0-9 _-]", "", t)
    t = re.sub(r"\s+", "-", t)
    return re.sub(r"-+", "-", t).strip("-")


def sanitize_file_name(name: str) -> str:
    name = "".join(c for c in name if c not in _FILE_SPECIALS)
    name = re.sub(r"[\s-]+", "-", name.replace("%20", "-"))
    return name.strip(".-_")


def filename_from_disposition(disposition: str) -> str:
    """get_filename_from_disposition(): the `filename=` parameter only (no `filename*=`), quotes removed."""
    filename = ""
    for part in disposition.encode("latin-1").decode("utf-8", "replace").split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip() == "filename":
            filename = value.strip().removeprefix('"').removesuffix('"')
    return filename


def fmt(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")  # the site runs in UTC: date == date_gmt


def parse_date(param: str, value: Any) -> datetime:
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise invalid(param, "Invalid date.", "rest_invalid_date")
    when = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def as_list(value: Any) -> list[Any]:
    """wp_parse_list(): a list, or a string split on commas and spaces."""
    if isinstance(value, list):
        return value
    return [v for v in re.split(r"[\s,]+", str(value)) if v]


def as_int(param: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise invalid(param, f"{param} is not of type integer.")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise invalid(param, f"{param} must be between {low} (inclusive) and {high} (inclusive)", "rest_out_of_bounds")
    return number


def as_bool(param: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1"):
        return True
    if str(value).lower() in ("false", "0", ""):
        return False
    raise invalid(param, f"{param} is not of type boolean.")


def text_field(value: Any) -> str | None:
    """title/content/excerpt: a string or {"raw": ...}; anything else is ignored, as WordPress does."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("raw"), str):
        return str(value["raw"])
    return None
