"""The credentials an `http_push` portal takes: a bearer token, HTTP Basic, or an HMAC signature of the body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BasicAuth(_Strict):
    username: str
    password: SecretStr


class HmacAuth(_Strict):
    secret: SecretStr
    header: str = "X-Signature"
    timestamp_header: str = "X-Timestamp"


class Auth(_Strict):
    """Exactly one of the three ways such portals take credentials."""

    bearer: SecretStr | None = None
    basic: BasicAuth | None = None
    hmac: HmacAuth | None = None

    @model_validator(mode="after")
    def _one(self) -> Auth:
        if sum(x is not None for x in (self.bearer, self.basic, self.hmac)) != 1:
            raise ValueError("auth takes exactly one of bearer, basic or hmac")
        return self

    def headers(self, body: bytes) -> dict[str, str]:
        """The headers that carry the credentials for a request with this body."""
        if self.bearer is not None:
            return {"Authorization": f"Bearer {self.bearer.get_secret_value()}"}
        if self.basic is not None:
            pair = f"{self.basic.username}:{self.basic.password.get_secret_value()}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        assert self.hmac is not None
        # Wall time, not the injected clock: the portal checks the stamp against its own clock.
        stamp = str(int(time.time()))
        digest = hmac.new(self.hmac.secret.get_secret_value().encode(), stamp.encode() + b"." + body,
                          hashlib.sha256).hexdigest()
        return {self.hmac.timestamp_header: stamp, self.hmac.header: f"sha256={digest}"}
