"""Eight annotators at once through the real views on the embedded SQLite default; run by test_sqlite_concurrency.

    python -m tests.annotations.sqlite_writers  (with DATABASE_URL=sqlite:///... and DEBUG=1 in the environment)

Migrates the file, builds a study, and starts the annotators together (a barrier); each one, in its own thread
with its own connection, enters by link, consents, answers the demographics, and for every screen loads it,
autosaves each answer as the page's script does, and submits the screen. Prints one JSON line: the errors
(any unexpected status or exception) and the ratings acknowledged and stored.
"""

from __future__ import annotations

import json
import re
import threading
import traceback

ANNOTATORS = 8
_ASSIGNMENT = re.compile(r'name="assignment" value="(\d+)"')
_ROW = re.compile(r'data-explanation="(\d+)" data-construct="(\d+)"')


def main() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from annotations.models import Rating
    from annotations.tokens import invite_token
    from tests.annotations.factories import build_study
    from tests.annotations.test_sessions import DEMOGRAPHICS

    call_command("migrate", verbosity=0)
    study = build_study(n_items=24, per_annotator=8, ratings_per_explanation=3)
    start = threading.Barrier(ANNOTATORS)
    errors: list[str] = []
    acknowledged: dict[tuple[str, int, int], int] = {}
    lock = threading.Lock()

    def expect(response, status: int, what: str):
        if response.status_code != status:
            raise AssertionError(f"{what}: HTTP {response.status_code}, expected {status}")
        return response

    def annotate(label: str) -> None:
        client = Client()
        try:
            start.wait()
            invite = reverse("annotations:invite", args=[study.slug, invite_token(study_id=study.pk, label=label)])
            url = expect(client.get(invite), 302, "entry")["Location"]
            expect(client.post(url, {"action": "consent", "agree": "yes"}), 302, "consent")
            expect(client.post(url, {"action": "demographics", **DEMOGRAPHICS}), 302, "demographics")
            for number in range(8):
                page = expect(client.get(url), 200, f"screen {number + 1}").content.decode()
                assignment = _ASSIGNMENT.search(page).group(1)
                form = {"action": "screen", "assignment": assignment}
                for explanation, construct in _ROW.findall(page):
                    answer = {"assignment": assignment, "explanation": explanation, "construct": construct}
                    rating = 1 + (number + int(construct)) % 5
                    expect(client.post(url + "answer/", {**answer, "value": rating}), 200, "autosave")
                    form[f"r-{explanation}-{construct}"] = rating
                    with lock:
                        acknowledged[(label, int(explanation), int(construct))] = rating
                expect(client.post(url, form), 302, f"submit {number + 1}")
            expect(client.get(url), 200, "done page")
        except BaseException:  # reported with the thread's own traceback
            errors.append(f"{label}: {traceback.format_exc(limit=3)}")
        finally:
            connection.close()

    threads = [threading.Thread(target=annotate, args=(f"sqlite-{index}",)) for index in range(ANNOTATORS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    stored = {
        (label, explanation, construct): value
        for label, explanation, construct, value in Rating.objects.values_list(
            "annotator__external_id", "explanation_id", "construct_id", "value"
        )
    }
    print(
        json.dumps(
            {
                "errors": errors,
                "acknowledged": len(acknowledged),
                "stored": len(stored),
                "lost_or_changed": sum(1 for key, value in acknowledged.items() if stored.get(key) != value),
                "transaction_mode": connection.settings_dict["OPTIONS"].get("transaction_mode"),
                "journal_mode": _journal_mode(connection),
            }
        )
    )


def _journal_mode(connection) -> str:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        return cursor.fetchone()[0]


if __name__ == "__main__":
    main()
