"""Files for admins who publish HITs by hand on the MTurk Requester website: a batch CSV and its HTML template."""

from __future__ import annotations

import csv
from pathlib import Path

from annotations.crowd.mturk import entry_url
from evalsite.csvsafe import safe_row

# The Requester website shows this layout in a frame whose URL carries assignmentId, hitId, workerId and
# turkSubmitTo; the script passes them on to our entry page, which sends the worker back to MTurk when done.
# The completion-code field is the fallback for a worker whose tab closed before that.
HTML_TEMPLATE = """<!-- evalsite layout for study {slug}; ${{study_url}} comes from the batch CSV. -->
<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form answer-format="flatten-objects">
  <h2>{title}</h2>
  <p>Rate short explanations of answers to everyday questions. It takes about {minutes} minutes.</p>
  <p id="preview-note">Accept the HIT to get your personal link.</p>
  <p><a id="study-link" href="#" target="_blank" rel="noopener" style="display:none">Open the study in a new tab</a></p>
  <p>When you finish, the study sends your work back to MTurk. If it cannot, paste the completion code here:</p>
  <crowd-input name="completion_code" label="Completion code" required></crowd-input>
</crowd-form>
<script>
  (function () {{
    var here = new URLSearchParams(window.location.search);
    var assignmentId = here.get("assignmentId") || "";
    if (!assignmentId || assignmentId === "ASSIGNMENT_ID_NOT_AVAILABLE") {{ return; }}
    var url = new URL("${{study_url}}");
    ["assignmentId", "hitId", "workerId", "turkSubmitTo"].forEach(function (name) {{
      url.searchParams.set(name, here.get(name) || "");
    }});
    var link = document.getElementById("study-link");
    link.href = url.toString();
    link.style.display = "inline";
    document.getElementById("preview-note").style.display = "none";
  }})();
</script>
"""


def export_mturk_batch(
    *, study_slug: str, title: str, public_url: str, out_dir: Path, n_hits: int = 1, minutes: int = 15
) -> list[Path]:
    """Write ``<slug>-mturk-batch.csv`` (one row per HIT, column ``study_url``) and ``<slug>-mturk-layout.html``."""
    if n_hits < 1:
        raise ValueError("need at least one HIT")
    out_dir.mkdir(parents=True, exist_ok=True)
    url = entry_url(public_url, study_slug)
    csv_path = out_dir / f"{study_slug}-mturk-batch.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study_url"])
        for _ in range(n_hits):
            writer.writerow(safe_row([url]))
    html_path = out_dir / f"{study_slug}-mturk-layout.html"
    html_path.write_text(HTML_TEMPLATE.format(slug=study_slug, title=_html(title), minutes=minutes), encoding="utf-8")
    return [csv_path, html_path]


def _html(text: str) -> str:
    from html import escape

    return escape(text)
