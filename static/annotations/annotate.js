// Rating screens: save each answer as it is given, digits pick a point on the focused row, Enter moves on.
(function () {
  "use strict";
  const form = document.getElementById("screen-form");
  if (!form) return;
  const status = document.getElementById("save-status");
  const answerUrl = form.dataset.answerUrl;
  const assignment = form.dataset.assignment;
  const rows = Array.from(form.querySelectorAll("[data-row]"));

  function say(text) { if (status) status.textContent = text; }

  function save(input) {
    const row = input.closest("[data-row]");
    let body;
    if (input.name === "preference") {  // a pair screen's "which is better?"
      body = new URLSearchParams({ assignment: assignment, preference: input.value });
    } else if (row && row.dataset.construct) {
      body = new URLSearchParams({
        assignment: assignment, explanation: row.dataset.explanation,
        construct: row.dataset.construct, value: input.value,
      });
    } else {
      return;  // attention rows go with the whole screen
    }
    fetch(answerUrl, { method: "POST", body: body, credentials: "omit" })
      .then(function (response) { say(response.ok ? "Saved." : "Not saved; it will be sent with the screen."); })
      .catch(function () { say("Offline; your answers will be sent with the screen."); });
  }

  function rowOf(element) { return element && element.closest ? element.closest("[data-row]") : null; }

  function focusRow(index, options) {
    const row = rows[Math.max(0, Math.min(rows.length - 1, index))];
    if (!row) return;
    const input = row.querySelector("input:checked") || row.querySelector("input");
    if (input) input.focus(options);
  }

  form.addEventListener("change", function (event) {
    if (event.target.matches("input[type=radio]")) save(event.target);
  });

  form.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const row = rowOf(document.activeElement);
    if (/^[1-9]$/.test(event.key) && row) {
      const input = row.querySelector('input[value="' + event.key + '"]');
      if (input) {
        event.preventDefault();
        input.checked = true;
        input.dispatchEvent(new Event("change", { bubbles: true }));
        focusRow(rows.indexOf(row) + 1);
      }
    } else if (event.key === "Enter" && document.activeElement.tagName !== "BUTTON") {
      event.preventDefault();
      if (form.reportValidity()) form.requestSubmit();
    }
  });

  form.addEventListener("submit", function () {
    const button = document.getElementById("next");
    if (button) button.disabled = true;  // one submit per screen
  });

  const firstOpen = rows.find(function (row) { return !row.querySelector("input:checked"); });
  // Without scrolling: a screen opens on its question, even when a long explanation pushes the rows down.
  if (firstOpen) focusRow(rows.indexOf(firstOpen), { preventScroll: true });
  form.dataset.ready = "true";  // the keys work from here on (tests wait for it instead of racing the script)
})();
