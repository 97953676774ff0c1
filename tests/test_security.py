"""Who may see and change what: staff pages need staff, cookie-authenticated forms need a CSRF token, annotator
endpoints need a valid signed token of their own study and session, and writes are rate limited.

`manage.py check --deploy` being clean is tested in tests/test_settings.py; the screen-level checks that an
annotator cannot rate another's explanation, and that tampered or foreign session links are refused, are in
tests/annotations/test_sessions.py. This file covers the rest of the surface.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Permission, User
from django.core import signing
from django.core.cache import caches
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.converters import IntConverter
from django.urls.resolvers import RoutePattern

from annotations import ratelimit
from annotations.models import Annotator, Rating
from annotations.tokens import ANNOTATOR_SALT, annotator_token, invite_token
from tests.annotations.factories import build_study
from tests.annotations.test_sessions import current, enter_by_link, screen_form, start_rating

pytestmark = pytest.mark.django_db

# Public by design: the login page, logout (POST only, nothing to protect), and Django's "view on site"
# shortcut, which only redirects to an object's public URL.
PUBLIC_ADMIN_NAMES = {"admin:login", "admin:logout", "admin:view_on_site"}
STAFF_SITE_NAMES = {"annotations:dashboard", "annotations:report", "annotations:report_file"}
# URL arguments whose pattern takes only certain values.
SAMPLE_VALUES = {"app_label": "annotations", "token": "guessed"}


def _walk(patterns, namespace: str, converters: dict) -> list[tuple[str, dict]]:
    found = []
    for entry in patterns:
        own = _converters(entry.pattern)
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}".strip(":") if entry.namespace else namespace
            found += _walk(entry.url_patterns, inner, {**converters, **own})
        elif isinstance(entry, URLPattern) and entry.name:
            found.append((f"{namespace}:{entry.name}".strip(":"), {**converters, **own}))
    return found


def _converters(pattern) -> dict:
    if isinstance(pattern, RoutePattern):
        return dict(pattern.converters)
    return {name: None for name in pattern.regex.groupindex}


def staff_only_urls() -> list[str]:
    """Every named URL of the admin (ours, crowd pages, the RQ dashboard) and the staff pages of the site."""
    urls = set()
    for name, converters in _walk(get_resolver().url_patterns, "", {}):
        is_admin = name.startswith("admin:") and name not in PUBLIC_ADMIN_NAMES
        if not (is_admin or name in STAFF_SITE_NAMES):
            continue
        kwargs = {
            key: SAMPLE_VALUES.get(key, 1 if isinstance(conv, IntConverter) else "1")
            for key, conv in converters.items()
        }
        urls.add(reverse(name, kwargs=kwargs or None))
    return sorted(urls)


def refused(response) -> bool:
    """A redirect to the admin login, or a plain refusal (django-rq's token-authenticated stats answer 401)."""
    if response.status_code == 302:
        return response["Location"].startswith(reverse("admin:login"))
    return response.status_code in (401, 403)


@pytest.fixture
def admin_csrf_client():
    """A superuser, so that a refusal can only come from the CSRF check."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("admin", password="admin-password-1"))
    return client


def test_every_admin_and_staff_page_refuses_anonymous_and_non_staff_users():
    urls = staff_only_urls()
    expected = [
        reverse("annotations:dashboard", args=["1"]),
        reverse("annotations:report", args=["1"]),
        reverse("admin:annotations_crowdbatch_launch"),
        reverse("admin:evalsite_job_changelist"),
        reverse("admin:django_rq_home"),
    ]
    assert len(urls) > 50 and set(urls) >= set(expected), "the walk found the staff pages"

    member = Client()
    member.force_login(User.objects.create_user("member", password="member-password-1"))
    for who, client in (("anonymous", Client()), ("non-staff", member)):
        reached = [url for url in urls if not refused(client.get(url))]
        assert reached == [], f"{who} reached staff pages"


def test_staff_reach_the_dashboard_and_admins_the_job_list():
    # The other side of the refusals above: the same pages open for staff.
    study = build_study()
    staff = Client()
    user = User.objects.create_user("staff", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_study"))
    staff.force_login(user)
    assert staff.get(reverse("annotations:dashboard", args=[study.slug])).status_code == 200
    admin = Client()
    admin.force_login(User.objects.create_superuser("admin"))
    assert admin.get(reverse("admin:evalsite_job_changelist")).status_code == 200


def test_admin_login_needs_a_csrf_token():
    User.objects.create_user("staff", password="staff-password-1", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    credentials = {"username": "staff", "password": "staff-password-1", "next": "/admin/"}
    refused_login = client.post(reverse("admin:login"), credentials)
    assert refused_login.status_code == 403 and b"CSRF" in refused_login.content

    client.get(reverse("admin:login"))  # the form sets the cookie
    token = client.cookies["csrftoken"].value
    assert client.post(reverse("admin:login"), {**credentials, "csrfmiddlewaretoken": token}).status_code == 302


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("admin:annotations_study_add", []),
        ("admin:annotations_crowdbatch_launch", []),
        ("admin:evalsite_job_changelist", []),  # admin actions, such as cancelling jobs
        ("annotations:report", ["some-study"]),  # "run the analysis again"
        ("admin:logout", []),
    ],
)
def test_cookie_authenticated_staff_forms_need_a_csrf_token(admin_csrf_client, name, args):
    url = reverse(name, args=args)
    without = admin_csrf_client.post(url, {})
    assert without.status_code == 403 and b"CSRF" in without.content

    admin_csrf_client.get(reverse("admin:index"))  # the logout form on the page sets the cookie
    with_token = admin_csrf_client.post(url, {"csrfmiddlewaretoken": admin_csrf_client.cookies["csrftoken"].value})
    assert with_token.status_code != 403, "the refusal above was the missing token, not the user"


# -- annotator endpoints: csrf_exempt, so the signed token in the URL is the whole credential ---------------------


def answer_data(assignment, construct, value=4) -> dict:
    return {
        "assignment": assignment.pk,
        "explanation": assignment.explanation_id,
        "construct": construct.pk,
        "value": value,
    }


def test_a_token_signed_without_the_site_key_opens_nothing_and_stores_nothing(client):
    study = build_study()
    url = start_rating(client, study)
    client.get(url)
    annotator = Annotator.objects.get()
    assignment = current(annotator)
    # Everything right but the key: the attacker knows the annotator's id and the token format.
    forged = signing.dumps(
        {"s": study.pk, "a": str(annotator.public_id)}, key="not-the-site-key", salt=ANNOTATOR_SALT, compress=True
    )
    forged_url = reverse("annotations:session", args=[study.slug, forged])
    assert client.get(forged_url).status_code == 403
    assert client.post(forged_url, screen_form(annotator, assignment)).status_code == 403
    saved = client.post(forged_url + "answer/", answer_data(assignment, study.constructs.first()))
    assert saved.status_code == 403 and saved.json() == {"error": "invalid token"}
    for garbage in ("", "x", "null"):
        assert client.post(f"/study/{study.slug}/s/{garbage}/answer/", {}).status_code in (403, 404)
    assert Rating.objects.count() == 0


def test_invitations_and_session_tokens_are_not_interchangeable(client):
    study = build_study()
    session_url = enter_by_link(client, study, "ann-1")
    annotator = Annotator.objects.get()
    session_token = annotator_token(study_id=study.pk, annotator_public_id=str(annotator.public_id))
    # A session token is no invitation (another salt), and an invitation is no session.
    assert client.get(reverse("annotations:invite", args=[study.slug, session_token])).status_code == 403
    invite = invite_token(study_id=study.pk, label="ann-1")
    assert client.get(reverse("annotations:session", args=[study.slug, invite])).status_code == 403
    assert client.get(session_url).status_code == 200
    assert Annotator.objects.count() == 1


def test_a_session_token_of_one_study_is_refused_by_the_answer_endpoint_of_another(client):
    study = build_study()
    other = build_study(slug="other-study")
    url = start_rating(client, study)
    client.get(url)
    annotator = Annotator.objects.get()
    token = url.rstrip("/").rsplit("/", 1)[1]
    reused = client.post(
        reverse("annotations:answer", args=[other.slug, token]),
        answer_data(current(annotator), other.constructs.first()),
    )
    assert reused.status_code == 403
    assert Rating.objects.count() == 0


def test_an_annotator_cannot_autosave_into_another_annotators_screen(client):
    study = build_study()
    url_a = start_rating(client, study, "ann-a")
    url_b = start_rating(client, study, "ann-b")
    client.get(url_a)
    client.get(url_b)
    b = Annotator.objects.get(external_id="ann-b")
    theirs = current(b)
    refused_save = client.post(url_a + "answer/", answer_data(theirs, study.constructs.first()))
    assert refused_save.status_code == 403
    assert "not part of your assignment" in refused_save.json()["error"]
    assert Rating.objects.count() == 0


@pytest.fixture
def writes_limited_to_5(settings, monkeypatch):
    settings.ANNOTATOR_WRITES_PER_MINUTE = 5
    caches[ratelimit.CACHE_ALIAS].clear()
    # One fixed clock, so the per-minute window cannot roll over half-way through a test.
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: 1_700_000_000.0))
    yield
    caches[ratelimit.CACHE_ALIAS].clear()


def test_the_sixth_write_of_a_session_in_a_minute_is_refused_with_429_and_not_stored(client, writes_limited_to_5):
    study = build_study()
    url = start_rating(client, study)
    client.get(url)
    annotator = Annotator.objects.get()
    assignment = current(annotator)
    construct = study.constructs.first()
    caches[ratelimit.CACHE_ALIAS].clear()  # consent and demographics were writes too: count from here

    for value in (1, 2, 3, 4, 5):
        assert client.post(url + "answer/", answer_data(assignment, construct, value)).status_code == 200
    throttled = client.post(url + "answer/", answer_data(assignment, construct, 1))
    assert throttled.status_code == 429
    assert client.post(url, screen_form(annotator, assignment)).status_code == 429, "the screen form is limited too"
    assert Rating.objects.get().value == 5, "the refused write changed nothing"
    assert client.get(url).status_code == 200, "reading is not limited"


def test_many_sessions_from_one_address_share_ten_times_the_limit(client, writes_limited_to_5):
    study = build_study()
    urls = [enter_by_link(client, study, f"ann-{index}") for index in range(11)]
    for url in urls[:10]:
        for _ in range(5):
            assert client.post(url + "answer/", {}).status_code == 400  # counted even though malformed
    assert client.post(urls[10] + "answer/", {}).status_code == 429, "the address has used its 50"
    assert client.post(urls[10] + "answer/", {}, REMOTE_ADDR="10.0.0.2").status_code == 400, "others still may"


def test_behind_the_proxy_the_rate_limit_counts_per_client_address_not_per_proxy(client, writes_limited_to_5, settings):
    settings.BEHIND_TLS_PROXY = True
    settings.TRUSTED_PROXY_COUNT = 1
    study = build_study()
    urls = [enter_by_link(client, study, f"ann-{index}") for index in range(12)]
    via_proxy = {"REMOTE_ADDR": "10.0.0.1"}  # every request reaches the site from the proxy's own address
    for url in urls[:10]:
        for _ in range(5):
            response = client.post(url + "answer/", {}, HTTP_X_FORWARDED_FOR="198.51.100.7", **via_proxy)
            assert response.status_code == 400
    assert client.post(urls[10] + "answer/", {}, HTTP_X_FORWARDED_FOR="198.51.100.7", **via_proxy).status_code == 429
    other_client = client.post(urls[10] + "answer/", {}, HTTP_X_FORWARDED_FOR="203.0.113.9", **via_proxy)
    assert other_client.status_code == 400, "another annotator behind the same proxy has their own allowance"
    # A client cannot buy a fresh bucket by sending its own X-Forwarded-For: the proxy appends the real address.
    forged = client.post(urls[11] + "answer/", {}, HTTP_X_FORWARDED_FOR="192.0.2.1, 198.51.100.7", **via_proxy)
    assert forged.status_code == 429


def test_the_client_address_comes_from_the_proxy_header_only_behind_the_proxy(settings):
    from django.test import RequestFactory

    def address(**meta) -> str:
        return ratelimit.client_address(RequestFactory().post("/", **meta))

    settings.BEHIND_TLS_PROXY = False
    assert address(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.1") == "10.0.0.1", "not believed directly"
    settings.BEHIND_TLS_PROXY = True
    settings.TRUSTED_PROXY_COUNT = 1
    assert address(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.1, 198.51.100.7") == "198.51.100.7"
    assert address(REMOTE_ADDR="10.0.0.1") == "10.0.0.1", "no header: the peer's address"
    settings.TRUSTED_PROXY_COUNT = 2  # a CDN in front of the TLS proxy: the CDN's address is the last entry
    assert address(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.1, 198.51.100.7, 172.16.0.5") == (
        "198.51.100.7"
    )
    assert address(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7") == "198.51.100.7"
