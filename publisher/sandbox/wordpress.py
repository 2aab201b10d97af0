"""Stand-in of the WordPress REST API v2 (posts, categories, media) and the site's public pages.

Built from WordPress's own sources (class-wp-rest-posts-controller.php, -terms-, -attachments-,
rest-api.php, formatting.php): errors are `{"code", "message", "data": {"status"}}`; Basic auth
with an application password (anything non-alphanumeric in it is ignored, as WordPress strips it).
A wrong password or an unknown user makes the request anonymous, as a real WordPress 6.1 does (its
`incorrect_password` error is collected after the REST server has checked for it): reads of public
posts still answer 200, edit context and writes 401 `rest_forbidden_context`/`rest_cannot_*`, other
statuses 400 `rest_forbidden_status`. Parameters are validated before permissions, as WP_REST_Server
does. Slugs go through `sanitize_title` and `wp_unique_post_slug` (posts and attachments share one
namespace); trashing renames the slug to `<slug>__trashed`. Unknown category ids are dropped without a
word. The site runs in UTC with plain permalinks, so `link` is `<site>/?p=ID`, which serves the post to
readers only while it is published.
Content is stored as given: the sandbox user is an administrator, who has `unfiltered_html`.
A second user, `CONTRIBUTOR`, may write drafts but not publish, upload or create categories (403).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.sandbox.core import CREDENTIALS, FaultKind, Service, StandIn, fold_arrays, retry_after_header
from publisher.sandbox.wp_posts import Posts
from publisher.sandbox.wp_rules import (
    WPError,
    as_int,
    as_list,
    filename_from_disposition,
    fmt,
    invalid,
    no_route,
    sanitize_file_name,
    sanitize_title,
    text_field,
)

CONTRIBUTOR = ("contributor", "cont rib0 cont rib0 cont rib0")
SITE_NAME = "市安监局门户网站"
# A slice of get_allowed_mime_types(): the type comes from the file name's extension, as WordPress decides it.
MIME_TYPES = {
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
    "pdf": "application/pdf", "doc": "application/msword", "txt": "text/plain", "csv": "text/csv",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel", "zip": "application/zip", "rar": "application/rar",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt": "application/vnd.ms-powerpoint", "mp4": "video/mp4", "mp3": "audio/mpeg",
}
REST_RE = re.compile(r"/wp/v2/(posts|categories|media)(?:/(\d+))?")

User = tuple[int, str, str]  # (id, login, role)
RestHandler = Callable[[Request, "User | None", "int | None"], Awaitable[Response]]


class Site(StandIn):
    """One WordPress site: its users, posts, terms and uploads, kept in `service.store`."""

    def __init__(self, service: Service, base: str) -> None:
        self.users = {CREDENTIALS["wordpress_user"]: (1, CREDENTIALS["wordpress_app_password"], "administrator"),
                      CONTRIBUTOR[0]: (2, CONTRIBUTOR[1], "contributor")}
        self.posts = Posts(self)
        super().__init__(service, base)

    def routes(self) -> list[BaseRoute]:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]  # each reaches the REST server: a wrong one is rest_no_route
        return [
            Route("/", self.front),
            Route("/wp-json/{rest:path}", self.rest, methods=methods),
            Route("/wp-json", self.rest, methods=methods),
            Route("/wp-content/uploads/{file:path}", self.upload),
        ]

    def rest_routes(self) -> dict[str, RestHandler]:
        """The REST server's routes under /wp/v2: each resource's controller answers its methods."""
        return {"posts": self.posts.dispatch, "categories": self.categories, "media": self.media}

    def seed(self) -> None:
        self.store.update(posts={}, media={}, files={}, next_id=10, next_term=2, terms={
            1: {"id": 1, "name": "Uncategorized", "slug": "uncategorized", "description": "", "parent": 0}})

    def received(self) -> dict[str, Any]:
        s = self.store
        return {"posts": [self.post_json(p, "edit") for p in s["posts"].values()],
                "categories": [self.term_json(t) for t in s["terms"].values()],
                "media": [self.media_json(m) for m in s["media"].values()]}

    # --- auth and parameters ---------------------------------------------------------------

    def authenticate(self, request: Request) -> User | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            login, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None  # PHP never sees such a header as credentials: the request is anonymous
        if login not in self.users:
            return None  # WordPress 6.1 drops its invalid_username error: the request goes on anonymous
        uid, expected, role = self.users[login]
        if re.sub(r"[^a-zA-Z0-9]", "", password) != re.sub(r"[^a-zA-Z0-9]", "", expected):
            return None  # likewise incorrect_password (checked against a real WordPress 6.1.9)
        return uid, login, role

    @staticmethod
    async def params(request: Request, body: bool = True) -> dict[str, Any]:
        """The query, then a JSON or form body over it, as WP_REST_Request merges them."""
        out = fold_arrays(request.query_params.multi_items())
        ctype = request.headers.get("content-type", "")
        raw = await request.body() if body else b""
        if raw and "json" in ctype:
            try:
                data = json.loads(raw)
            except ValueError:
                raise WPError("rest_invalid_json", "Invalid JSON body passed.", 400, json_error_code=4,
                              json_error_message="Syntax error") from None
            out.update(data if isinstance(data, dict) else {})
        elif raw and ("form-urlencoded" in ctype or "multipart" in ctype):
            fold_arrays((await request.form()).multi_items(), into=out)
        return out

    # --- representations -------------------------------------------------------------------

    def post_json(self, p: dict[str, Any], context: str) -> dict[str, Any]:
        link = f"{self.base}/?p={p['id']}"
        excerpt = p["excerpt"] or " ".join(re.sub(r"<[^>]+>", " ", p["content"]).split()[:55])
        data: dict[str, Any] = {
            "id": p["id"], "date": fmt(p["date"]), "date_gmt": fmt(p["date"]), "guid": {"rendered": link},
            "modified": fmt(p["modified"]), "modified_gmt": fmt(p["modified"]), "slug": p["slug"],
            "status": p["status"], "type": "post", "link": link, "title": {"rendered": p["title"]},
            "content": {"rendered": p["content"], "protected": False},
            "excerpt": {"rendered": f"<p>{excerpt}</p>\n" if excerpt else "", "protected": False},
            "author": p["author"], "featured_media": 0, "comment_status": "open", "ping_status": "open",
            "sticky": False, "template": "", "format": "standard", "meta": [], "categories": p["categories"],
            "tags": [], "_links": {"self": [{"href": f"{self.base}/wp-json/wp/v2/posts/{p['id']}"}]},
        }
        if context == "edit":
            for key in ("title", "content", "excerpt"):
                data[key]["raw"] = p[key]
            data["guid"]["raw"] = link
            data.update(password="", generated_slug=p["slug"] or sanitize_title(p["title"]),
                        permalink_template=f"{self.base}/?p={p['id']}")
        return data

    def term_json(self, t: dict[str, Any]) -> dict[str, Any]:
        count = sum(1 for p in self.store["posts"].values()
                    if p["status"] == "publish" and t["id"] in p["categories"])
        return {**t, "count": count, "link": f"{self.base}/?cat={t['id']}", "taxonomy": "category", "meta": [],
                "_links": {"self": [{"href": f"{self.base}/wp-json/wp/v2/categories/{t['id']}"}]}}

    def media_json(self, m: dict[str, Any]) -> dict[str, Any]:
        source = f"{self.base}/wp-content/uploads/{m['file']}"
        return {"id": m["id"], "date": fmt(m["date"]), "date_gmt": fmt(m["date"]), "guid": {"rendered": source},
                "modified": fmt(m["date"]), "modified_gmt": fmt(m["date"]), "slug": m["slug"], "status": "inherit",
                "type": "attachment", "link": f"{self.base}/?attachment_id={m['id']}",
                "title": {"rendered": m["title"]}, "author": m["author"], "description": {"rendered": ""},
                "caption": {"rendered": ""}, "alt_text": "", "post": None, "mime_type": m["mime"],
                "media_type": "image" if m["mime"].startswith("image/") else "file", "source_url": source,
                "media_details": {"filesize": m["size"]}, "_links": {}}

    def unique_slug(self, slug: str, own_id: int) -> str:
        s = self.store
        taken = {p["slug"] for p in s["posts"].values() if p["id"] != own_id}
        taken |= {m["slug"] for m in s["media"].values() if m["id"] != own_id}
        candidate, n = slug, 2
        while candidate in taken:
            candidate, n = f"{slug[:200 - len(str(n)) - 1]}-{n}", n + 1
        return candidate


    # --- categories -------------------------------------------------------------------------

    async def categories(self, request: Request, user: User | None, term_id: int | None) -> Response:
        prm = await self.params(request)
        if term_id is not None and request.method == "GET":
            terms = self.store["terms"]
            if term_id not in terms:
                raise WPError("rest_term_invalid", "Term does not exist.", 404)
            return JSONResponse(self.term_json(terms[term_id]))
        if request.method == "GET":
            return self.list_categories(prm)
        if request.method != "POST" or term_id is not None:
            raise no_route()
        return self.create_category(prm, user)

    def list_categories(self, prm: dict[str, Any]) -> Response:
        per_page = as_int("per_page", prm.get("per_page", 10), 1, 100)
        page = as_int("page", prm.get("page", 1), 1)
        slugs = {sanitize_title(str(s)) for s in as_list(prm["slug"])} if prm.get("slug") else None
        rows = sorted((t for t in self.store["terms"].values() if slugs is None or t["slug"] in slugs),
                      key=lambda t: t["name"])
        total = len(rows)
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(math.ceil(total / per_page))}
        return JSONResponse([self.term_json(t) for t in rows[(page - 1) * per_page: page * per_page]],
                            headers=headers)

    def create_category(self, prm: dict[str, Any], user: User | None) -> Response:
        """wp_insert_term(): a name is required; the same name under one parent needs a new slug."""
        terms = self.store["terms"]
        name = prm.get("name")
        if name is None:
            raise WPError("rest_missing_callback_param", "Missing parameter(s): name", 400, params=["name"])
        if not isinstance(name, str):
            raise invalid("name", "name is not of type string.")
        if user is None or user[2] != "administrator":
            raise WPError("rest_cannot_create", "Sorry, you are not allowed to create terms in this taxonomy.",
                          401 if user is None else 403)
        if not name.strip():
            raise WPError("empty_term_name", "A name is required for this term.", 400)
        given = sanitize_title(str(prm["slug"])) if prm.get("slug") else ""
        slug = given or sanitize_title(name)
        parent = as_int("parent", prm.get("parent", 0))
        same_name = next((t for t in terms.values() if t["name"] == name and t["parent"] == parent), None)
        same_slug = next((t for t in terms.values() if t["slug"] == slug), None)
        if same_name and (not given or same_name["slug"] == slug or same_slug):
            raise WPError("term_exists", "A term with the name provided already exists with this parent.", 400,
                          term_id=same_name["id"])
        base, n = slug, 2
        while any(t["slug"] == slug for t in terms.values()):
            slug, n = f"{base}-{n}", n + 1
        term = {"id": self.store["next_term"], "name": name, "slug": slug,
                "description": str(prm.get("description", "")), "parent": parent}
        self.store["next_term"] += 1
        terms[term["id"]] = term
        return JSONResponse(self.term_json(term), status_code=201,
                            headers={"Location": f"{self.base}/wp-json/wp/v2/categories/{term['id']}"})

    # --- media ------------------------------------------------------------------------------

    async def media(self, request: Request, user: User | None, media_id: int | None) -> Response:
        if media_id is not None and request.method == "GET":
            if media_id not in self.store["media"]:
                raise WPError("rest_post_invalid_id", "Invalid post ID.", 404)
            return JSONResponse(self.media_json(self.store["media"][media_id]))
        if request.method != "POST" or media_id is not None:
            raise no_route()
        return await self.upload_media(request, user)

    async def upload_media(self, request: Request, user: User | None) -> Response:
        """A multipart `file` or a raw body with Content-Disposition; the type from the file name."""
        store = self.store
        prm = await self.params(request, body=False)
        if user is None or user[2] != "administrator":
            raise WPError("rest_cannot_create", "Sorry, you are not allowed to create posts as this user.",
                          401 if user is None else 403)
        data, filename = await _uploaded(request)
        filename = sanitize_file_name(filename)
        stem, ext = PurePosixPath(filename).stem, PurePosixPath(filename).suffix.lower().lstrip(".")
        if ext not in MIME_TYPES:
            raise WPError("rest_upload_sideload_error", "Sorry, you are not allowed to upload this file type.", 500)
        now = datetime.now(UTC).replace(microsecond=0)
        folder, n, name = now.strftime("%Y/%m"), 1, filename
        while f"{folder}/{name}" in store["files"]:  # wp_unique_filename()
            name, n = f"{stem}-{n}.{ext}", n + 1
        store["files"][f"{folder}/{name}"] = (data, MIME_TYPES[ext])
        title = text_field(prm.get("title")) or PurePosixPath(name).stem
        item = {"id": store["next_id"], "file": f"{folder}/{name}", "mime": MIME_TYPES[ext], "size": len(data),
                "title": title, "date": now, "author": user[0], "slug": ""}
        item["slug"] = self.unique_slug(sanitize_title(title) or str(item["id"]), item["id"])
        store["next_id"] += 1
        store["media"][item["id"]] = item
        return JSONResponse(self.media_json(item), status_code=201,
                            headers={"Location": f"{self.base}/wp-json/wp/v2/media/{item['id']}"})

    # --- the REST server and the public site ------------------------------------------------

    async def rest(self, request: Request) -> Response:
        """WP_REST_Server: the index at `/`, a controller for each route, errors as WordPress renders them."""
        route = "/" + request.path_params.get("rest", "").strip("/")
        try:
            user = self.authenticate(request)
            if route == "/":
                return self.index()
            match = REST_RE.fullmatch(route)
            if match is None:
                raise no_route()
            handler = self.rest_routes()[match[1]]
            return await handler(request, user, int(match[2]) if match[2] else None)
        except WPError as exc:
            return exc.response()

    def index(self) -> Response:
        return JSONResponse({"name": SITE_NAME, "url": self.base, "home": self.base, "gmt_offset": 0,
                             "timezone_string": "UTC", "namespaces": ["wp/v2"],
                             "authentication": {"application-passwords": {"endpoints": {
                                 "authorization": f"{self.base}/wp-admin/authorize-application.php"}}}})

    async def front(self, request: Request) -> Response:
        """The public site with plain permalinks: `/?p=ID` shows a published post, anything else 404s."""
        posts = self.store["posts"]
        wanted = request.query_params.get("p")
        if wanted is None:
            items = [p for p in posts.values() if p["status"] == "publish"][-10:]
            links = "".join(f'<li><a href="{self.base}/?p={p["id"]}">{p["title"]}</a></li>' for p in reversed(items))
            return HTMLResponse(f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{SITE_NAME}</title>"
                                f"</head><body><h1>{SITE_NAME}</h1><ul>{links}</ul></body></html>")
        post = posts.get(int(wanted)) if wanted.isdigit() else None
        if post is None or post["status"] != "publish":
            return HTMLResponse(f"<!DOCTYPE html><html><head><title>Page not found – {SITE_NAME}</title></head>"
                                "<body><h1>Oops! That page can’t be found.</h1></body></html>", status_code=404)
        return HTMLResponse(f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{post['title']} – "
                            f"{SITE_NAME}</title></head><body><article id=\"post-{post['id']}\"><h1>{post['title']}"
                            f"</h1><time>{fmt(post['date'])}</time>{post['content']}</article></body></html>")

    async def upload(self, request: Request) -> Response:
        found = self.store["files"].get(request.path_params["file"])
        if found is None:
            return HTMLResponse("<h1>Not Found</h1>", status_code=404)
        return Response(found[0], media_type=found[1])

    def render_fault(self, kind: FaultKind, retry_after: str | None) -> Response:
        headers = retry_after_header(retry_after)
        if kind == "unauthorized":
            return WPError("incorrect_password", "The provided password is an invalid application password.",
                           401).response()
        if kind == "rate_limited":
            return WPError("rest_too_many_requests", "Too many requests. Please slow down.", 429).response(headers)
        status = self.service.faults.error_status
        message = "There has been a critical error on this website."
        return WPError("internal_server_error", message, status).response(headers)


async def _uploaded(request: Request) -> tuple[bytes, str]:
    """The uploaded bytes and their file name, as the attachments controller reads them."""
    ctype = request.headers.get("content-type", "")
    if "multipart/form-data" in ctype:
        upload = (await request.form()).get("file")
        if upload is None or isinstance(upload, str):
            raise WPError("rest_upload_no_data", "No data supplied.", 400)
        return await upload.read(), upload.filename or ""
    data = await request.body()
    if not data:
        raise WPError("rest_upload_no_data", "No data supplied.", 400)
    if not ctype:
        raise WPError("rest_upload_no_content_type", "No Content-Type supplied.", 400)
    disposition = request.headers.get("content-disposition")
    if not disposition:
        raise WPError("rest_upload_no_content_disposition", "No Content-Disposition supplied.", 400)
    filename = filename_from_disposition(disposition)
    if not filename:
        raise WPError("rest_upload_invalid_disposition", "Invalid Content-Disposition supplied. Content-"
                      "Disposition needs to be formatted as `attachment; filename=\"image.png\"` or similar.", 400)
    return data, filename
