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
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from publisher.sandbox import CREDENTIALS
from publisher.sandbox.core import FaultKind, Service
from publisher.sandbox.wp_rules import (
    WPError,
    as_bool,
    as_int,
    as_list,
    fmt,
    invalid,
    one_of,
    parse_date,
    sanitize_file_name,
    sanitize_title,
    text_field,
)

CONTRIBUTOR = ("contributor", "cont rib0 cont rib0 cont rib0")
SITE_NAME = "市安监局门户网站"
POST_STATUSES = ("publish", "future", "draft", "pending", "private")
LIST_STATUSES = (*POST_STATUSES, "trash", "auto-draft", "inherit", "any")
ORDERBY = ("author", "date", "id", "include", "modified", "parent", "relevance", "slug", "include_slugs", "title")
# A slice of get_allowed_mime_types(): the type comes from the file name's extension, as WordPress decides it.
MIME_TYPES = {
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
    "pdf": "application/pdf", "doc": "application/msword", "txt": "text/plain", "csv": "text/csv",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel", "zip": "application/zip", "rar": "application/rar",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt": "application/vnd.ms-powerpoint", "mp4": "video/mp4", "mp3": "audio/mpeg",
}
class Site:
    """One WordPress site: its users, posts, terms and uploads, kept in `service.store`."""

    def __init__(self, service: Service, base: str) -> None:
        self.service, self.base = service, base
        self.users = {CREDENTIALS["wordpress_user"]: (1, CREDENTIALS["wordpress_app_password"], "administrator"),
                      CONTRIBUTOR[0]: (2, CONTRIBUTOR[1], "contributor")}
        service.hooks.append(self.seed)
        service.received = self.received  # type: ignore[method-assign]
        self.seed()

    def seed(self) -> None:
        s = self.service.store
        s.update(posts={}, media={}, files={}, next_id=10, next_term=2,
                 terms={1: {"id": 1, "name": "Uncategorized", "slug": "uncategorized", "description": "", "parent": 0}})

    def received(self) -> dict[str, Any]:
        s = self.service.store
        return {"posts": [self.post_json(p, "edit") for p in s["posts"].values()],
                "categories": [self.term_json(t) for t in s["terms"].values()],
                "media": [self.media_json(m) for m in s["media"].values()]}

    # --- auth and parameters ---------------------------------------------------------------

    def authenticate(self, request: Request) -> tuple[int, str, str] | None:
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
        out: dict[str, Any] = {}
        for key, value in request.query_params.multi_items():
            if key.endswith("[]"):
                out.setdefault(key[:-2], []).append(value)
            else:
                out[key] = value
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
            form = await request.form()
            for key, field in form.multi_items():
                if key.endswith("[]"):
                    out.setdefault(key[:-2], []).append(field)
                else:
                    out[key] = field
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
        count = sum(1 for p in self.service.store["posts"].values()
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

    # --- posts -----------------------------------------------------------------------------

    def unique_slug(self, slug: str, own_id: int) -> str:
        s = self.service.store
        taken = {p["slug"] for p in s["posts"].values() if p["id"] != own_id}
        taken |= {m["slug"] for m in s["media"].values() if m["id"] != own_id}
        candidate, n = slug, 2
        while candidate in taken:
            candidate, n = f"{slug[:200 - len(str(n)) - 1]}-{n}", n + 1
        return candidate

    def save_post(self, post: dict[str, Any], prm: dict[str, Any], user: tuple[int, str, str] | None,
                  creating: bool) -> dict[str, Any]:
        status = prm.get("status", post["status"])
        if user is not None and user[2] == "contributor" and status in ("publish", "future", "private"):
            raise WPError("rest_cannot_publish", "Sorry, you are not allowed to publish posts in this post type.", 403)
        for key in ("title", "content", "excerpt"):
            if (value := text_field(prm.get(key))) is not None:
                post[key] = value
        if creating and not (post["title"] or post["content"] or post["excerpt"]):
            raise WPError("empty_content", "Content, title, and excerpt are empty.", 400)
        if "date_gmt" in prm or "date" in prm:
            post["date"] = parse_date("date_gmt" if "date_gmt" in prm else "date", prm.get("date_gmt", prm.get("date")))
        now = datetime.now(UTC).replace(microsecond=0)
        if status == "publish" and post["date"] > now:
            status = "future"  # wp_insert_post(): a publish dated later is scheduled
        elif status == "future" and post["date"] <= now:
            status = "publish"
        if "categories" in prm:
            post["categories"] = [i for i in prm["categories"] if i in self.service.store["terms"]]
        slug = sanitize_title(prm["slug"]) if prm.get("slug") else post["slug"]
        if not slug and status not in ("draft", "pending"):
            slug = sanitize_title(post["title"]) or str(post["id"])
        post["slug"] = slug if status in ("draft", "pending") else self.unique_slug(slug, post["id"])
        post["status"], post["modified"] = status, now
        return post

    def validate_post_params(self, prm: dict[str, Any]) -> None:
        if "status" in prm and prm["status"] not in POST_STATUSES:
            raise invalid("status", f"status is not one of {one_of(POST_STATUSES)}.", "rest_not_in_enum")
        if "slug" in prm and not isinstance(prm["slug"], str):
            raise invalid("slug", "slug is not of type string.")
        if "categories" in prm:
            prm["categories"] = [as_int(f"categories[{i}]", v) for i, v in enumerate(as_list(prm["categories"]))]
        for key in ("date", "date_gmt"):
            if prm.get(key) is not None:
                parse_date(key, prm[key])

    def get_post(self, post_id: int) -> dict[str, Any]:
        post = self.service.store["posts"].get(post_id)
        if post is None:
            raise WPError("rest_post_invalid_id", "Invalid post ID.", 404)
        return post

    def list_posts(self, prm: dict[str, Any], user: tuple[int, str, str] | None) -> tuple[list[dict], int, int]:
        statuses = as_list(prm.get("status", "publish"))
        for st in statuses:
            if st not in LIST_STATUSES:
                raise invalid("status", f"status[0] is not one of {one_of(LIST_STATUSES)}.", "rest_not_in_enum")
            if st != "publish" and user is None:  # sanitize_post_statuses(): a sanitize error, so 400
                raise WPError("rest_invalid_param", "Invalid parameter(s): status", 400,
                              params={"status": "Status is forbidden."},
                              details={"status": {"code": "rest_forbidden_status", "message": "Status is forbidden.",
                                                  "data": {"status": 401}}})
        per_page = as_int("per_page", prm.get("per_page", 10), 1, 100)
        page = as_int("page", prm.get("page", 1), 1)
        orderby, order = prm.get("orderby", "date"), prm.get("order", "desc")
        if orderby not in ORDERBY:
            raise invalid("orderby", f"orderby is not one of {one_of(ORDERBY)}.", "rest_not_in_enum")
        if order not in ("asc", "desc"):
            raise invalid("order", "order is not one of asc and desc.", "rest_not_in_enum")
        bounds = {k: parse_date(k, prm[k]) for k in ("after", "before", "modified_after", "modified_before")
                  if k in prm}
        wanted = set(statuses) if "any" not in statuses else set(POST_STATUSES)
        slugs = {sanitize_title(str(s)) for s in as_list(prm["slug"])} if prm.get("slug") else None
        cats = {as_int("categories", c) for c in as_list(prm["categories"])} if prm.get("categories") else None
        search = str(prm.get("search", "")).lower()
        rows = [p for p in self.service.store["posts"].values() if p["status"] in wanted
                and (slugs is None or p["slug"] in slugs) and (cats is None or cats & set(p["categories"]))
                and (not search or search in (p["title"] + p["content"]).lower())
                and ("after" not in bounds or p["date"] > bounds["after"])
                and ("before" not in bounds or p["date"] < bounds["before"])
                and ("modified_after" not in bounds or p["modified"] > bounds["modified_after"])
                and ("modified_before" not in bounds or p["modified"] < bounds["modified_before"])]
        key = {"modified": "modified", "id": "id", "slug": "slug", "title": "title"}.get(orderby, "date")
        rows.sort(key=lambda p: (p[key], p["id"]), reverse=order == "desc")
        total, pages = len(rows), math.ceil(len(rows) / per_page)
        if page > pages and total:
            raise WPError("rest_post_invalid_page_number",
                          "The page number requested is larger than the number of pages available.", 400)
        return rows[(page - 1) * per_page: page * per_page], total, pages

    async def posts(self, request: Request, user: tuple[int, str, str] | None, post_id: int | None) -> Response:
        method, store = request.method, self.service.store
        prm = await self.params(request)
        context = prm.get("context", "view")
        if context not in ("view", "embed", "edit"):
            raise invalid("context", "context is not one of view, embed, and edit.", "rest_not_in_enum")
        if post_id is None and method == "GET":
            rows, total, pages = self.list_posts(prm, user)  # parameters (status) are checked before the context
            if context == "edit" and user is None:
                raise WPError("rest_forbidden_context", "Sorry, you are not allowed to edit posts in this post type.",
                              401)
            headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
            return JSONResponse([self.post_json(p, context) for p in rows], headers=headers)
        if post_id is None and method == "POST":
            self.validate_post_params(prm)
            if prm.get("id"):
                raise WPError("rest_post_exists", "Cannot create existing post.", 400)
            if user is None:
                raise WPError("rest_cannot_create", "Sorry, you are not allowed to create posts as this user.", 401)
            now = datetime.now(UTC).replace(microsecond=0)
            post = {"id": store["next_id"], "author": user[0], "date": now, "modified": now, "slug": "", "title": "",
                    "content": "", "excerpt": "", "status": "draft", "categories": [1]}
            self.save_post(post, prm, user, creating=True)
            store["next_id"] += 1
            store["posts"][post["id"]] = post
            return JSONResponse(self.post_json(post, "edit"), status_code=201,
                                headers={"Location": f"{self.base}/wp-json/wp/v2/posts/{post['id']}"})
        if post_id is None:
            raise WPError("rest_no_route", "No route was found matching the URL and request method.", 404)
        if method in ("POST", "PUT", "PATCH"):
            self.validate_post_params(prm)
        post = self.get_post(post_id)
        if context == "edit" and user is None and method == "GET":
            raise WPError("rest_forbidden_context", "Sorry, you are not allowed to edit this post.", 401)
        if method == "GET":
            if post["status"] != "publish" and user is None:
                raise WPError("rest_forbidden", "Sorry, you are not allowed to do that.", 401)
            return JSONResponse(self.post_json(post, context))
        if method in ("POST", "PUT", "PATCH"):
            if user is None or (user[2] == "contributor" and post["author"] != user[0]):
                raise WPError("rest_cannot_edit", "Sorry, you are not allowed to edit this post.", 401 if user is None
                              else 403)
            self.save_post(post, prm, user, creating=False)
            return JSONResponse(self.post_json(post, "edit"))
        if method == "DELETE":
            force = as_bool("force", prm.get("force", False))
            contributor = user is not None and user[2] == "contributor"
            if user is None or (contributor and (post["author"] != user[0] or post["status"] == "publish")):
                raise WPError("rest_cannot_delete", "Sorry, you are not allowed to delete this post.",
                              401 if user is None else 403)
            if force:
                previous = self.post_json(post, "edit")
                del store["posts"][post_id]
                return JSONResponse({"deleted": True, "previous": previous})
            if post["status"] == "trash":
                raise WPError("rest_already_trashed", "The post has already been deleted.", 410)
            post["trashed_from"], post["status"] = post["status"], "trash"
            if post["slug"] and not post["slug"].endswith("__trashed"):
                post["slug"] = post["slug"][:191] + "__trashed"
            post["modified"] = datetime.now(UTC).replace(microsecond=0)
            return JSONResponse(self.post_json(post, "edit"))
        raise WPError("rest_no_route", "No route was found matching the URL and request method.", 404)

    # --- categories and media --------------------------------------------------------------

    async def categories(self, request: Request, user: tuple[int, str, str] | None, term_id: int | None) -> Response:
        terms = self.service.store["terms"]
        prm = await self.params(request)
        if term_id is not None and request.method == "GET":
            if term_id not in terms:
                raise WPError("rest_term_invalid", "Term does not exist.", 404)
            return JSONResponse(self.term_json(terms[term_id]))
        if request.method == "GET":
            per_page = as_int("per_page", prm.get("per_page", 10), 1, 100)
            page = as_int("page", prm.get("page", 1), 1)
            slugs = {sanitize_title(str(s)) for s in as_list(prm["slug"])} if prm.get("slug") else None
            rows = sorted((t for t in terms.values() if slugs is None or t["slug"] in slugs), key=lambda t: t["name"])
            total = len(rows)
            headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(math.ceil(total / per_page))}
            return JSONResponse([self.term_json(t) for t in rows[(page - 1) * per_page: page * per_page]],
                                headers=headers)
        if request.method != "POST" or term_id is not None:
            raise WPError("rest_no_route", "No route was found matching the URL and request method.", 404)
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
        # wp_insert_term(): the same name under the same parent is a duplicate unless a new slug is given
        same_name = next((t for t in terms.values() if t["name"] == name and t["parent"] == parent), None)
        same_slug = next((t for t in terms.values() if t["slug"] == slug), None)
        if same_name and (not given or same_name["slug"] == slug or same_slug):
            raise WPError("term_exists", "A term with the name provided already exists with this parent.", 400,
                          term_id=same_name["id"])
        base, n = slug, 2
        while any(t["slug"] == slug for t in terms.values()):
            slug, n = f"{base}-{n}", n + 1
        store = self.service.store
        term = {"id": store["next_term"], "name": name, "slug": slug,
                "description": str(prm.get("description", "")), "parent": parent}
        store["next_term"] += 1
        terms[term["id"]] = term
        return JSONResponse(self.term_json(term), status_code=201,
                            headers={"Location": f"{self.base}/wp-json/wp/v2/categories/{term['id']}"})

    async def media(self, request: Request, user: tuple[int, str, str] | None, media_id: int | None) -> Response:
        store = self.service.store
        if media_id is not None and request.method == "GET":
            if media_id not in store["media"]:
                raise WPError("rest_post_invalid_id", "Invalid post ID.", 404)
            return JSONResponse(self.media_json(store["media"][media_id]))
        if request.method != "POST" or media_id is not None:
            raise WPError("rest_no_route", "No route was found matching the URL and request method.", 404)
        prm = await self.params(request, body=False)
        if user is None or user[2] != "administrator":
            raise WPError("rest_cannot_create", "Sorry, you are not allowed to create posts as this user.",
                          401 if user is None else 403)
        ctype = request.headers.get("content-type", "")
        if "multipart/form-data" in ctype:
            upload = (await request.form()).get("file")
            if upload is None or isinstance(upload, str):
                raise WPError("rest_upload_no_data", "No data supplied.", 400)
            data, filename = await upload.read(), upload.filename or ""
        else:
            data = await request.body()
            if not data:
                raise WPError("rest_upload_no_data", "No data supplied.", 400)
            if not ctype:
                raise WPError("rest_upload_no_content_type", "No Content-Type supplied.", 400)
            disposition = request.headers.get("content-disposition")
            if not disposition:
                raise WPError("rest_upload_no_content_disposition", "No Content-Disposition supplied.", 400)
            filename = ""
            for part in disposition.encode("latin-1").decode("utf-8", "replace").split(";")[1:]:
                key, _, value = part.partition("=")
                if key.strip() == "filename":  # get_filename_from_disposition() reads `filename=` only
                    filename = value.strip().removeprefix('"').removesuffix('"')
            if not filename:
                raise WPError("rest_upload_invalid_disposition", "Invalid Content-Disposition supplied. Content-"
                              "Disposition needs to be formatted as `attachment; filename=\"image.png\"` or similar.",
                              400)
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

    # --- dispatch and public pages ---------------------------------------------------------

    async def rest(self, request: Request) -> Response:
        route = "/" + request.path_params.get("rest", "").strip("/")
        try:
            user = self.authenticate(request)
            if route == "/":
                return JSONResponse({"name": SITE_NAME, "url": self.base, "home": self.base, "gmt_offset": 0,
                                     "timezone_string": "UTC", "namespaces": ["wp/v2"],
                                     "authentication": {"application-passwords": {"endpoints": {
                                         "authorization": f"{self.base}/wp-admin/authorize-application.php"}}}})
            match = re.fullmatch(r"/wp/v2/(posts|categories|media)(?:/(\d+))?", route)
            if match is None:
                raise WPError("rest_no_route", "No route was found matching the URL and request method.", 404)
            handler = {"posts": self.posts, "categories": self.categories, "media": self.media}[match[1]]
            return await handler(request, user, int(match[2]) if match[2] else None)
        except WPError as exc:
            return exc.response()

    async def front(self, request: Request) -> Response:
        """The public site with plain permalinks: `/?p=ID` shows a published post, anything else 404s."""
        posts = self.service.store["posts"]
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
        found = self.service.store["files"].get(request.path_params["file"])
        if found is None:
            return HTMLResponse("<h1>Not Found</h1>", status_code=404)
        return Response(found[0], media_type=found[1])

    def render_fault(self, kind: FaultKind, retry_after: str | None) -> Response:
        headers = {"Retry-After": retry_after} if retry_after else None
        if kind == "unauthorized":
            return WPError("incorrect_password", "The provided password is an invalid application password.",
                           401).response()
        if kind == "rate_limited":
            return WPError("rest_too_many_requests", "Too many requests. Please slow down.", 429).response(headers)
        status = self.service.faults.error_status
        message = "There has been a critical error on this website."
        return WPError("internal_server_error", message, status).response(headers)


def make(service: Service, public_base_url: str) -> tuple[Starlette, Any]:
    site = Site(service, public_base_url.rstrip("/"))
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app = Starlette(routes=[
        Route("/", site.front),
        Route("/wp-json/{rest:path}", site.rest, methods=methods),
        Route("/wp-json", site.rest, methods=methods),
        Route("/wp-content/uploads/{file:path}", site.upload),
    ])
    return app, site.render_fault
