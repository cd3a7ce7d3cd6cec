// teleway portal: the only script. Two small jobs, both optional (pages work without them):
// 1. Settings: live SMS preview while the template or the sample is edited.
// 2. Message page: live timeline over server-sent events.
"use strict";

function csrfToken() {
  const field = document.querySelector('input[name="csrf"]');
  return field ? field.value : "";
}

function setupPreview() {
  const form = document.getElementById("preferences");
  if (!form) return;
  const url = form.dataset.preview;
  const ids = ["sms_template", "long_sms_policy", "max_sms_parts", "sample_subject", "sample_body"];
  const fields = ids.map((id) => document.getElementById(id)).filter(Boolean);
  let timer = null;
  let sequence = 0;
  const update = async () => {
    const mine = ++sequence;
    const body = {
      sms_template: document.getElementById("sms_template").value,
      long_sms_policy: document.getElementById("long_sms_policy").value,
      max_sms_parts: document.getElementById("max_sms_parts").value,
      subject: document.getElementById("sample_subject").value,
      body: document.getElementById("sample_body").value,
    };
    try {
      const response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify(body),
      });
      if (!response.ok || mine !== sequence) return;
      const result = await response.json();
      document.getElementById("preview-text").textContent = result.text;
      document.getElementById("preview-encoding").textContent = result.encoding;
      document.getElementById("preview-chars").textContent = result.characters;
      document.getElementById("preview-parts").textContent = result.parts_needed;
      document.getElementById("preview-verdict").textContent = result.verdict;
      document.getElementById("preview-problems").textContent = result.problems.join("; ");
    } catch (error) {
      /* offline or logged out: the preview keeps its last state */
    }
  };
  for (const field of fields) {
    field.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(update, 200);
    });
  }
}

function setupLive() {
  const live = document.getElementById("live");
  if (!live || live.dataset.final === "yes" || !window.EventSource) return;
  const text = live.querySelector(".live-text");
  const source = new EventSource(live.dataset.events);
  live.classList.add("on");
  const reload = async () => {
    const response = await fetch(live.dataset.timeline, { credentials: "same-origin" });
    if (response.ok) document.getElementById("timeline").innerHTML = await response.text();
  };
  source.addEventListener("change", reload);
  source.addEventListener("done", async () => {
    source.close();
    await reload();
    live.classList.remove("on");
    live.dataset.final = "yes";
    text.textContent = "final";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupPreview();
  setupLive();
});
