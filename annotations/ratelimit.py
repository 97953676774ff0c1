"""A fixed-window rate limit for annotator writes, kept in the process's cache (no Redis needed).

Each gunicorn worker counts on its own, so the effective limit is per worker; that is enough to stop a
script hammering the submit endpoints, which is what it is for. Annotator pages must keep working when
Redis is down, so the counts never live there.
"""

from __future__ import annotations

import functools
import logging
import time

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger("evalsite.annotators")
CACHE_ALIAS = "ratelimit"


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind the TLS proxy (`BEHIND_TLS_PROXY`) the address the
    outermost of `TRUSTED_PROXY_COUNT` proxies recorded in X-Forwarded-For (REMOTE_ADDR is then the proxy's
    own, shared by every annotator). Entries left of it come from the client and are not believed."""
    remote = request.META.get("REMOTE_ADDR", "unknown")
    if not settings.BEHIND_TLS_PROXY:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if not hops:
        return remote
    return hops[-min(settings.TRUSTED_PROXY_COUNT, len(hops))]


def _over_limit(key: str, limit: int, window_s: int) -> bool:
    cache = caches[CACHE_ALIAS]
    bucket = f"rl:{key}:{int(time.time() // window_s)}"
    cache.add(bucket, 0, timeout=window_s * 2)
    try:
        count = cache.incr(bucket)
    except ValueError:  # evicted between add and incr
        cache.set(bucket, 1, timeout=window_s * 2)
        count = 1
    return count > limit


def limit_writes(view):
    """Refuse POSTs past `ANNOTATOR_WRITES_PER_MINUTE` per token and per client address with a 429."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if request.method == "POST":
            limit = settings.ANNOTATOR_WRITES_PER_MINUTE
            # Many annotators may share an address (a lab, a proxy), so it gets a wider allowance.
            checks = [(f"addr:{client_address(request)}", limit * 10)]
            if kwargs.get("token"):
                checks.append((f"token:{kwargs['token'][-24:]}", limit))
            for key, key_limit in checks:
                if _over_limit(key, key_limit, 60):
                    logger.warning("rate limit hit (429) %s %s", request.path, key.split(":")[0])
                    return JsonResponse({"error": "too many requests; slow down"}, status=429)
        return view(request, *args, **kwargs)

    return wrapped
