"""WordPress's posts controller (class-wp-rest-posts-controller.php, wp_insert_post(), wp_trash_post()),
as the stand-in applies it to the site's posts: listing, creating, reading, editing and deleting.
Apart from publisher/sandbox/wordpress.py, which keeps the site's state, users and routes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from publisher.sandbox.wp_rules import (
    WPError,
    as_bool,
    as_int,
    as_list,
    invalid,
    no_route,
    one_of,
    parse_date,
    sanitize_title,
    text_field,
)

if TYPE_CHECKING:
    from publisher.sandbox.wordpress import Site, User

POST_STATUSES = ("publish", "future", "draft", "pending", "private")
LIST_STATUSES = (*POST_STATUSES, "trash", "auto-draft", "inherit", "any")
ORDERBY = ("author", "date", "id", "include", "modified", "parent", "relevance", "slug", "include_slugs", "title")
CONTEXTS = ("view", "embed", "edit")

Post = dict[str, Any]
ItemHandler = Callable[[Post, dict[str, Any], str, "User | None"], Response]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Posts:
    """`/wp/v2/posts` and `/wp/v2/posts/<id>` of one site; the methods are named as the controller's."""

    def __init__(self, site: Site) -> None:
        self.site = site

    async def dispatch(self, request: Request, user: User | None, post_id: int | None) -> Response:
        """Parameters and context are checked before the route's method, as this controller does."""
        prm = await self.site.params(request)
        context = prm.get("context", "view")
        if context not in CONTEXTS:
            raise invalid("context", f"context is not one of {one_of(CONTEXTS)}.", "rest_not_in_enum")
        if post_id is None:
            collection = {"GET": self.get_items, "POST": self.create_item}.get(request.method)
            if collection is None:
                raise no_route()
            return collection(prm, context, user)
        if request.method in ("POST", "PUT", "PATCH"):
            self.validate(prm)
        post = self.find(post_id)
        item: dict[str, ItemHandler] = {"GET": self.get_item, "POST": self.update_item, "PUT": self.update_item,
                                        "PATCH": self.update_item, "DELETE": self.delete_item}
        if request.method not in item:
            raise no_route()
        return item[request.method](post, prm, context, user)

    # --- the endpoints ----------------------------------------------------------------------

    def get_items(self, prm: dict[str, Any], context: str, user: User | None) -> Response:
        rows, total, pages = self.query(prm, user)  # parameters (status) are checked before the context
        if context == "edit" and user is None:
            raise WPError("rest_forbidden_context", "Sorry, you are not allowed to edit posts in this post type.", 401)
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        return JSONResponse([self.site.post_json(p, context) for p in rows], headers=headers)

    def create_item(self, prm: dict[str, Any], context: str, user: User | None) -> Response:
        self.validate(prm)
        if prm.get("id"):
            raise WPError("rest_post_exists", "Cannot create existing post.", 400)
        if user is None:
            raise WPError("rest_cannot_create", "Sorry, you are not allowed to create posts as this user.", 401)
        store, now = self.site.store, _now()
        post = {"id": store["next_id"], "author": user[0], "date": now, "modified": now, "slug": "", "title": "",
                "content": "", "excerpt": "", "status": "draft", "categories": [1]}
        self.save(post, prm, user, creating=True)
        store["next_id"] += 1
        store["posts"][post["id"]] = post
        return JSONResponse(self.site.post_json(post, "edit"), status_code=201,
                            headers={"Location": f"{self.site.base}/wp-json/wp/v2/posts/{post['id']}"})

    def get_item(self, post: Post, prm: dict[str, Any], context: str, user: User | None) -> Response:
        if context == "edit" and user is None:
            raise WPError("rest_forbidden_context", "Sorry, you are not allowed to edit this post.", 401)
        if post["status"] != "publish" and user is None:
            raise WPError("rest_forbidden", "Sorry, you are not allowed to do that.", 401)
        return JSONResponse(self.site.post_json(post, context))

    def update_item(self, post: Post, prm: dict[str, Any], context: str, user: User | None) -> Response:
        if user is None or (user[2] == "contributor" and post["author"] != user[0]):
            raise WPError("rest_cannot_edit", "Sorry, you are not allowed to edit this post.",
                          401 if user is None else 403)
        self.save(post, prm, user, creating=False)
        return JSONResponse(self.site.post_json(post, "edit"))

    def delete_item(self, post: Post, prm: dict[str, Any], context: str, user: User | None) -> Response:
        """To the trash (410 when it is there already), or, with `force`, gone for good."""
        force = as_bool("force", prm.get("force", False))
        contributor = user is not None and user[2] == "contributor"
        if user is None or (contributor and (post["author"] != user[0] or post["status"] == "publish")):
            raise WPError("rest_cannot_delete", "Sorry, you are not allowed to delete this post.",
                          401 if user is None else 403)
        if force:
            previous = self.site.post_json(post, "edit")
            del self.site.store["posts"][post["id"]]
            return JSONResponse({"deleted": True, "previous": previous})
        if post["status"] == "trash":
            raise WPError("rest_already_trashed", "The post has already been deleted.", 410)
        post["trashed_from"], post["status"] = post["status"], "trash"
        if post["slug"] and not post["slug"].endswith("__trashed"):
            post["slug"] = post["slug"][:191] + "__trashed"
        post["modified"] = _now()
        return JSONResponse(self.site.post_json(post, "edit"))

    # --- the controller's rules -------------------------------------------------------------

    def find(self, post_id: int) -> Post:
        post: Post | None = self.site.store["posts"].get(post_id)
        if post is None:
            raise WPError("rest_post_invalid_id", "Invalid post ID.", 404)
        return post

    def validate(self, prm: dict[str, Any]) -> None:
        """The schema's checks of a create's or an edit's arguments (categories become ints)."""
        if "status" in prm and prm["status"] not in POST_STATUSES:
            raise invalid("status", f"status is not one of {one_of(POST_STATUSES)}.", "rest_not_in_enum")
        if "slug" in prm and not isinstance(prm["slug"], str):
            raise invalid("slug", "slug is not of type string.")
        if "categories" in prm:
            prm["categories"] = [as_int(f"categories[{i}]", v) for i, v in enumerate(as_list(prm["categories"]))]
        for key in ("date", "date_gmt"):
            if prm.get(key) is not None:
                parse_date(key, prm[key])

    def save(self, post: Post, prm: dict[str, Any], user: User | None, *, creating: bool) -> Post:
        """wp_insert_post(): the fields, the status a date implies, the categories that exist, a unique slug."""
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
        now = _now()
        if status == "publish" and post["date"] > now:
            status = "future"  # wp_insert_post(): a publish dated later is scheduled
        elif status == "future" and post["date"] <= now:
            status = "publish"
        if "categories" in prm:
            post["categories"] = [i for i in prm["categories"] if i in self.site.store["terms"]]
        slug = sanitize_title(prm["slug"]) if prm.get("slug") else post["slug"]
        if not slug and status not in ("draft", "pending"):
            slug = sanitize_title(post["title"]) or str(post["id"])
        post["slug"] = slug if status in ("draft", "pending") else self.site.unique_slug(slug, post["id"])
        post["status"], post["modified"] = status, now
        return post

    def query(self, prm: dict[str, Any], user: User | None) -> tuple[list[Post], int, int]:
        """One page of the posts the list's arguments select, with the totals of every page."""
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
        rows = [p for p in self.site.store["posts"].values() if p["status"] in wanted
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
